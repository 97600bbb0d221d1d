/**
 * EXPLAIN and COPY, whose verdict depends on the statement or query they hold.
 *
 * - EXPLAIN stmt (without ANALYZE): 'utility', not a write, tables those of stmt. EXPLAIN ANALYZE
 *   runs stmt: when stmt writes, the EXPLAIN is a write ('ddl' for DDL, else 'write') of stmt's
 *   tables. ANALYZE counts in both syntaxes: `EXPLAIN ANALYZE [VERBOSE] stmt` and
 *   `EXPLAIN (ANALYZE [true|on|1|...], ...) stmt`; ANALYZE false/off/0/no does not.
 * - COPY t ... TO: 'utility', not a write, tables [t]. COPY t ... FROM: 'write' of t. COPY
 *   (query) TO: 'utility' with the query's tables and taint, or 'write' when the query writes.
 *   COPY of anything not understood: a write of unknown tables.
 */
import { COMMA, LP } from './lexer';
import { result, UNKNOWN_TAINT, type SqlClass } from './sql-class';
import type { ClassifyRange, Stmt } from './stmt';

/** EXPLAIN [options] stmt, from its keyword at p up to b; inner classifies stmt. */
export function classifyExplain(s: Stmt, p: number, b: number, inner: ClassifyRange): SqlClass {
  let j = p + 1;
  let analyze = false;
  if (s.k(j) === LP) {
    const m = s.match[j]!;
    for (let i = j + 1; i < m; i++) {
      const v = s.w(i);
      if ((v === 'analyze' || v === 'analyse') && (s.k(i - 1) === LP || s.k(i - 1) === COMMA)) {
        const val = s.k(i + 1) === COMMA || i + 1 === m ? 'true' : s.t[i + 1]!.v.toLowerCase();
        analyze = !(val === 'false' || val === 'off' || val === '0' || val === 'no');
      }
    }
    j = m + 1;
  } else {
    while (s.w(j) === 'analyze' || s.w(j) === 'analyse' || s.w(j) === 'verbose') {
      if (s.w(j) !== 'verbose') analyze = true;
      j++;
    }
  }
  if (j >= b) return UNKNOWN_TAINT();
  const stmt = inner(s, j, b);
  if (analyze && stmt.writes) return result(false, stmt.reason === 'ddl' ? 'ddl' : 'write', stmt.taintsSession, stmt.tables, true);
  return result(false, 'utility', false, stmt.tables, false);
}

/** COPY t [(cols)] FROM|TO ... or COPY (query) TO ..., from its keyword at p; inner classifies the query. */
export function classifyCopy(s: Stmt, p: number, inner: ClassifyRange): SqlClass {
  let j = p + 1;
  if (s.k(j) === LP) { // COPY (query) TO ...
    const m = s.match[j]!;
    if (m <= j + 1) return UNKNOWN_TAINT();
    const query = inner(s, j + 1, m);
    if (query.writes) return result(false, 'write', query.taintsSession, query.tables, true);
    return result(false, 'utility', query.taintsSession, query.tables, false);
  }
  const nm = s.name(j);
  if (nm === null) {
    s.out.writesUnknown = true;
    return result(false, 'write', false, null, true);
  }
  j = nm[1];
  if (s.k(j) === LP) j = s.match[j]! + 1;
  if (s.w(j) === 'to') {
    s.out.read(nm[0]);
    return result(false, 'utility', false, [nm[0]], false);
  }
  if (s.w(j) === 'from') s.out.write(nm[0]);
  else s.out.writesUnknown = true;
  return result(false, 'write', false, s.w(j) === 'from' ? [nm[0]] : null, true);
}
