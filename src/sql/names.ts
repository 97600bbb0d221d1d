/**
 * Relation names as the classifier writes them, and what a name tells about the relation.
 *
 * - Unquoted identifiers are folded to lower case; a quoted identifier that is a plain lower case
 *   name is written bare ("t" -> t), any other is written quoted the way quote_ident does
 *   ("My Table" -> "My Table", "a.b" -> "a.b" with its quotes), so splitting a name on dots
 *   outside quotes is unambiguous.
 * - Qualification is kept as written: public.t stays public.t and t stays t. Users of the names
 *   (the cache's invalidation, insight's table heat) therefore match by the last component,
 *   relationName(), or they would miss that `UPDATE public.t` changes what `SELECT ... FROM t`
 *   returns.
 * - Whether a name is a temporary relation or a catalog is decided from the name alone
 *   (isTempName, isCatalogName); dml.ts says what follows for a read.
 */

/** Lower-case plain names stay bare; others are written quoted, the way quote_ident does. */
export function renderQuoted(v: string): string {
  if (/^[a-z_][a-z0-9_$]*$/.test(v)) return v;
  return '"' + v.replace(/"/g, '""') + '"';
}

/** A relation in the session's temporary schema: `pg_temp.x` or `pg_temp_N.x`. */
export function isTempName(name: string): boolean {
  return name.startsWith('pg_temp.') || /^pg_temp_\d+\./.test(name);
}

/**
 * System catalogs and views (pg_class, pg_stat_activity, pg_locks, pg_prepared_statements, ...)
 * and information_schema: some show live or per-session state (which a cached copy would hand
 * to another session), and DDL changes the rest; none is worth caching.
 */
export function isCatalogName(name: string): boolean {
  return name.startsWith('pg_') || name.startsWith('information_schema.') || /(^|\.)pg_[^.]*$/.test(name);
}

/**
 * The relation name a qualified name ends with: `public.t` -> `t`, `"s"."a.b"` -> `"a.b"`.
 * Reads and writes are matched by this part only (search_path decides the schema, and a
 * superset of invalidations is always safe).
 */
export function relationName(name: string): string {
  if (name.indexOf('.') < 0) return name;
  let inQuote = false;
  let last = 0;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 34) inQuote = !inQuote; // '"'; a doubled quote toggles twice
    else if (c === 46 && !inQuote) last = i + 1; // '.'
  }
  return name.slice(last);
}

/**
 * The components of a name written as above: `public.t` -> ['public', 't'], `"My S"."a.b"` ->
 * ['My S', 'a.b'] (quotes removed, doubled quotes undone). Used to look names up in the catalog.
 */
export function nameParts(name: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inQuote = false;
  for (let i = 0; i < name.length; i++) {
    const ch = name[i]!;
    if (ch === '"') {
      if (inQuote && name[i + 1] === '"') { cur += '"'; i++; continue; }
      inQuote = !inQuote;
      continue;
    }
    if (ch === '.' && !inQuote) { out.push(cur); cur = ''; continue; }
    cur += ch;
  }
  out.push(cur);
  return out;
}
