/**
 * Queries and data-modifying statements: SELECT / VALUES / TABLE / WITH ... and INSERT / UPDATE /
 * DELETE / MERGE (one function: a WITH may hold both), and TRUNCATE.
 *
 * - Cacheable = exactly one statement that is SELECT / VALUES / TABLE t / WITH ... SELECT,
 *   without SELECT INTO, without FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE (at any depth;
 *   'locking'), without data-modifying CTEs, without volatile functions (calls.ts), without
 *   `pg_temp` relations ('temp-table'), without catalog relations ('catalog', names.ts), and
 *   whose tables could all be read from the FROM / JOIN lists (from-list.ts; else 'unknown').
 * - `tables` of a read are every relation named after FROM / JOIN (at any depth, including
 *   subqueries, CTE bodies and parenthesised joins) plus `TABLE t`. CTE names are included as if
 *   they were tables: a superset, harmless for invalidation.
 * - Writes ('write'): INSERT INTO t, UPDATE t, DELETE FROM t, MERGE INTO t, data-modifying CTEs,
 *   SELECT INTO t, TRUNCATE t1, t2; `tables` are their targets only, null when a target cannot be
 *   parsed, with TRUNCATE ... CASCADE, or when an unknown function is called (a read calling
 *   one is 'volatile', a write with tables null). SELECT INTO TEMP is 'temp-table' and taints.
 * - Reads of `pg_*` relations (system catalogs and views, some per-session or live state such as
 *   pg_prepared_statements and pg_stat_activity) and of `information_schema.*`: 'catalog'.
 * - Reads of `pg_temp.x` (or `pg_temp_N.x`): 'temp-table'. Unqualified reads of a temp table are
 *   covered by the session taint of the CREATE TEMP that made it.
 */
import { LB, LP, QID, RP, WORD } from './lexer';
import { DML_WORDS, SET_OPS } from './keywords';
import { isCatalogName, isTempName } from './names';
import { scanCalls } from './calls';
import { scanFrom, scanUsing } from './from-list';
import { scanRefs } from './refs';
import { result, type SqlClass, type SqlReason } from './sql-class';
import { Facts, relationList, type Stmt } from './stmt';
import { addUnique } from '../unique-list';

/** The target relation of the DML keyword at i; marks an INSERT column list as not a call. */
function dmlTarget(s: Stmt, i: number): string | null {
  const v = s.w(i);
  i++;
  if (v === 'insert' || v === 'merge') { if (s.w(i) !== 'into') return null; i++; }
  else if (v === 'delete') { if (s.w(i) !== 'from') return null; i++; }
  if (s.w(i) === 'only') i++;
  const nm = s.name(i);
  if (nm === null) return null;
  i = nm[1];
  if (v === 'insert') {
    if (s.w(i) === 'as') i += 2;
    if (s.k(i) === LP) s.notCall[i - 1] = 1;
  }
  return nm[0];
}

/** SELECT / VALUES / TABLE / WITH ... and INSERT / UPDATE / DELETE / MERGE. */
export function classifyDml(s: Stmt, kw: string, p: number, a: number, b: number): SqlClass {
  const f = new Facts();
  let targetsKnown = true;
  let mainKw = kw;
  let mainAt = p;
  if (kw === 'with') {
    // CTE names (and their column lists) and the main statement: the first read/DML keyword at depth 0.
    let j = p + 1;
    if (s.w(j) === 'recursive') j++;
    mainKw = '';
    while (j < b) {
      const k = s.k(j);
      if (k === LP || k === LB) {
        if (s.k(j - 1) === WORD || s.k(j - 1) === QID) s.notCall[j - 1] = 1;
        j = s.match[j]! + 1;
        continue;
      }
      const v = s.w(j);
      if ((v === 'select' || v === 'values' || v === 'table' || DML_WORDS.has(v)) && s.w(j - 1) !== 'set') {
        mainKw = v;
        mainAt = j;
        break;
      }
      j++;
    }
    if (mainKw === '') {
      return result(false, 'unknown', false, null, true);
    }
  }
  // Data-modifying statements: the main one and any nested right after '('.
  for (let i = a; i < b; i++) {
    if (s.k(i) !== WORD || !DML_WORDS.has(s.t[i]!.v)) continue;
    if (i !== mainAt && s.k(i - 1) !== LP) continue;
    const target = dmlTarget(s, i);
    if (target === null) { targetsKnown = false; s.out.writesUnknown = true; }
    else addUnique(f.written, target);
  }
  const isWrite = f.written.length > 0 || !targetsKnown;
  scanFrom(s, f, a, b);
  // DELETE ... USING and MERGE ... USING read relations too (at the depth of their keyword).
  for (let i = a; i < b; i++) {
    const v = s.w(i);
    if (v !== 'delete' && v !== 'merge') continue;
    if (i !== mainAt && s.k(i - 1) !== LP) continue;
    let depth = 0;
    for (let j = i + 1; j < b; j++) {
      const k = s.k(j);
      if (k === LP) depth++;
      else if (k === RP) { if (--depth < 0) break; }
      else if (depth === 0 && s.w(j) === 'using') {
        scanUsing(s, f, j + 1, s.k(i - 1) === LP ? s.match[i - 1]! : b, v === 'merge');
        break;
      } else if (depth === 0 && (s.w(j) === 'where' || s.w(j) === 'returning' || s.w(j) === 'on')) break;
    }
  }
  // TABLE t: as the statement, in a subquery `(TABLE t)`, or after UNION / INTERSECT / EXCEPT.
  for (let i = a; i < b; i++) {
    if (s.k(i) !== WORD || s.t[i]!.v !== 'table') continue;
    const prev = s.w(i - 1);
    if (i !== mainAt && s.k(i - 1) !== LP && !SET_OPS.has(prev)) continue;
    let j = i + 1;
    if (s.w(j) === 'only') j++;
    const nm = s.name(j);
    if (nm === null) f.uncertain = true;
    else addUnique(f.reads, nm[0]);
  }
  // SELECT INTO (at depth 0 of the statement)
  let into: string | null | undefined; // undefined: none
  let intoTemp = false;
  if (!isWrite) {
    let depth = 0;
    for (let i = a; i < b; i++) {
      const k = s.k(i);
      if (k === LP) depth++;
      else if (k === RP) depth--;
      else if (depth === 0 && s.w(i) === 'into') {
        let j = i + 1;
        for (;;) {
          const v = s.w(j);
          if (v === 'temp' || v === 'temporary') { intoTemp = true; j++; continue; }
          if (v === 'local' || v === 'global' || v === 'unlogged' || v === 'table') { j++; continue; }
          break;
        }
        const nm = s.name(j);
        into = nm === null ? null : nm[0];
        if (into !== null && isTempName(into)) intoTemp = true;
        break;
      }
    }
  }
  scanCalls(s, f, a, b);
  scanRefs(s, f, a, b);
  for (let i = a; i < b; i++) {
    if (s.w(i) !== 'for') continue;
    const n = s.w(i + 1);
    if (n === 'update' || n === 'share' || (n === 'no' && s.w(i + 2) === 'key') || (n === 'key' && s.w(i + 2) === 'share')) {
      f.locking = true;
      break;
    }
  }

  // The facts: what the catalog judges, and what the text alone rules out (statement-facts.ts).
  for (const r of f.reads) s.out.read(r);
  for (const w of f.written) s.out.write(w);
  if (into === null) s.out.writesUnknown = true;
  else if (into !== undefined) s.out.write(into);
  s.out.dmlBlocker = isWrite || into !== undefined ? (intoTemp ? 'temp-table' : 'write') : f.locking ? 'locking'
    : f.clock ? 'volatile' : f.reads.some(isTempName) ? 'temp-table' : f.reads.some(isCatalogName) ? 'catalog'
      : f.uncertain ? 'unknown' : null;

  const writeTables = (extra: string[]): string[] | null => {
    if (!targetsKnown || f.writeTablesUnknown) return null;
    const out = extra.slice();
    for (const t of f.written) addUnique(out, t);
    return out;
  };
  if (isWrite) return result(false, 'write', f.taints, writeTables([]), true);
  if (into !== undefined) {
    if (intoTemp) return result(false, 'temp-table', true, into === null ? null : [into], true);
    return result(false, 'write', f.taints, into === null ? null : writeTables([into]), true);
  }
  if (f.mayWrite) return result(false, 'volatile', f.taints, writeTables([]), true);
  const tables = f.uncertain ? null : f.reads;
  let reason: SqlReason | null = null;
  if (f.locking) reason = 'locking';
  else if (f.volatile) reason = 'volatile';
  else if (f.reads.some(isTempName)) reason = 'temp-table';
  else if (f.reads.some(isCatalogName)) reason = 'catalog';
  else if (f.uncertain) reason = 'unknown';
  return result(reason === null, reason, f.taints, tables, false);
}

/** TRUNCATE [TABLE] [ONLY] t [*], ... [CASCADE]: a write of its tables (of anything with CASCADE). */
export function classifyTruncate(s: Stmt, p: number, b: number): SqlClass {
  const list = relationList(s, p + 1);
  let cascade = list === null;
  for (let j = list === null ? b : list[1]; j < b; j++) if (s.w(j) === 'cascade') cascade = true;
  if (cascade || list === null) {
    s.out.writesUnknown = true;
    return result(false, 'write', false, null, true);
  }
  for (const w of list[0]) s.out.write(w);
  return result(false, 'write', false, list[0], true);
}
