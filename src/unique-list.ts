/**
 * Lists without duplicates, kept as arrays (their users index and iterate them). Up to SMALL
 * entries a scan is cheapest; past that a Set kept beside the array answers, so that a text
 * naming 40,000 tables costs linear time rather than quadratic (issue 15, security finding 14:
 * `select * from t0,...,t39999` stalled every session for seconds).
 *
 * Additions go through addUnique. A list that grew another way is noticed (its Set's size differs
 * from its length) and indexed again, so an answer is never wrong, only slower.
 */
const SMALL = 16;
const indexes = new WeakMap<readonly unknown[], Set<unknown>>();

function indexOf<T>(list: readonly T[]): Set<T> | null {
  if (list.length < SMALL) return null;
  let set = indexes.get(list) as Set<T> | undefined;
  if (set === undefined || set.size !== list.length) {
    set = new Set(list);
    indexes.set(list, set);
  }
  return set;
}

/** Append x unless the list has it. */
export function addUnique<T>(list: T[], x: T): void {
  const set = indexOf(list);
  if (set === null) {
    if (!list.includes(x)) list.push(x);
    return;
  }
  if (!set.has(x)) {
    set.add(x);
    list.push(x);
  }
}

/** The list has x. */
export function hasUnique<T>(list: readonly T[], x: T): boolean {
  const set = indexOf(list);
  return set === null ? list.includes(x) : set.has(x);
}
