// Which pgbench accounts two sessions of a captured TPC-B run both updated, read off the JSON
// query log (--log-format json --log-replay).
//
// Why the replay tests need it: TPC-B's `SELECT abalance ... WHERE aid = :aid` reads the balance
// its own UPDATE just set, which includes every earlier update of that account by any client. Two
// clients that drew the same account see each other's deltas in the order they ran at capture;
// replay runs sessions in another order (--sessions-in-order, or --speed max), so the select's
// rows can differ, and replay rightly reports that as a changed outcome. With --random-seed,
// pgbench draws the same accounts for each client on every run, so a test can choose a seed
// whose clients share no account and assert "no outcome changed" strictly.
import * as fs from 'node:fs';

/** The aid of one TPC-B account update: a bound parameter (extended, prepared) or a literal (simple). */
function updatedAccount(o: { type?: unknown; sql?: unknown; params?: unknown }): string | null {
  if (typeof o.sql !== 'string' || !/^\s*update pgbench_accounts\b/i.test(o.sql)) return null;
  if (o.type === 'B' && Array.isArray(o.params)) {
    const aid: unknown = o.params[1];
    return typeof aid === 'string' ? aid : null;
  }
  if (o.type === 'Q') return /\bwhere aid = (\d+)/i.exec(o.sql)?.[1] ?? null;
  return null;
}

/** Accounts updated by more than one session (conn) across these log files, sorted. */
export function accountsSharedBySessions(files: readonly string[]): string[] {
  const owner = new Map<string, number>();
  const shared = new Set<string>();
  let updates = 0;
  for (const f of files) {
    for (const l of fs.readFileSync(f, 'utf8').split('\n')) {
      if (l === '') continue;
      const o = JSON.parse(l) as { conn?: unknown; type?: unknown; sql?: unknown; params?: unknown };
      const aid = updatedAccount(o);
      if (aid === null || typeof o.conn !== 'number') continue;
      updates++;
      const first = owner.get(aid);
      if (first === undefined) owner.set(aid, o.conn);
      else if (first !== o.conn) shared.add(aid);
    }
  }
  // A log without a single account update would make "none shared" meaningless.
  if (updates === 0) throw new Error(`no pgbench_accounts update found in ${files.join(', ')}`);
  return [...shared].sort();
}
