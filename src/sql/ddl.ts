/**
 * DDL: CREATE / ALTER / DROP / GRANT / REVOKE / COMMENT / SECURITY LABEL / IMPORT FOREIGN SCHEMA /
 * REASSIGN OWNED / REFRESH MATERIALIZED VIEW. All are writes ('ddl'; REFRESH: 'write').
 *
 * - `tables` are null (invalidate the whole database) for every DDL statement: DDL changes what
 *   other relations' answers mean (a view, a function, a policy, a grant, a default), and even a
 *   statement naming one table may make its name answer for another relation (`ALTER TABLE s.x
 *   RENAME TO t` changes what `t` reads; issue 14, finding 10).
 * - REFRESH MATERIALIZED VIEW v is a write of v (its data, not its meaning).
 * - CREATE TEMP/TEMPORARY/LOCAL TEMP/GLOBAL TEMP TABLE|VIEW|SEQUENCE, and CREATE TABLE pg_temp.x:
 *   'temp-table', a write of that name that taints the session (only that session sees it, and
 *   the taint keeps it from the cache; invalidating the database for each temp table would cost
 *   every other session its answers).
 * - Facts (statement-facts.ts): the query of CREATE TABLE ... AS / CREATE MATERIALIZED VIEW ... AS
 *   / SELECT INTO runs now, so its calls and reads are the statement's (and so is its taint);
 *   ALTER TABLE and ALTER DOMAIN may evaluate expressions on existing rows (a volatile DEFAULT, a
 *   USING, a CHECK), so their calls are recorded; CREATE/ALTER EXTENSION runs a script: opaque.
 */
import { LP } from './lexer';
import { DDL_NOT_CALL, READ_START } from './keywords';
import { isTempName } from './names';
import { scanCalls } from './calls';
import { scanRefs } from './refs';
import { result, type SqlClass } from './sql-class';
import { Facts, type ClassifyRange, type Stmt } from './stmt';

/** The DDL statement whose keyword kw is at p, up to b; inner classifies a query it runs. */
export function classifyDdl(s: Stmt, kw: string, p: number, b: number, inner: ClassifyRange): SqlClass {
  let j = p + 1;
  if (kw === 'refresh' && s.w(j) === 'materialized' && s.w(j + 1) === 'view') {
    j += 2;
    if (s.w(j) === 'concurrently') j++;
    const nm = s.name(j);
    if (nm === null) s.out.writesUnknown = true;
    else s.out.write(nm[0]);
    return result(false, 'write', false, nm === null ? null : [nm[0]], true);
  }
  if ((kw === 'create' || kw === 'alter') && s.w(j) === 'extension') s.out.opaque = true;
  if (kw === 'alter' && (s.w(j) === 'table' || s.w(j) === 'domain')) scanExpressions(s, j, b);
  if (kw === 'create') {
    let temp = false;
    for (;;) {
      const v = s.w(j);
      if (v === 'or' && s.w(j + 1) === 'replace') { j += 2; continue; }
      if (v === 'global' || v === 'local' || v === 'unlogged') { j++; continue; }
      if (v === 'temp' || v === 'temporary') { temp = true; j++; continue; }
      break;
    }
    const what = s.w(j);
    const matview = what === 'materialized' && s.w(j + 1) === 'view';
    if (what === 'table' || what === 'view' || what === 'sequence' || matview || (what === 'recursive' && s.w(j + 1) === 'view')) {
      j += what === 'recursive' || matview ? 2 : 1;
      if (s.w(j) === 'if' && s.w(j + 1) === 'not' && s.w(j + 2) === 'exists') j += 3;
      const nm = s.name(j);
      if (nm !== null && isTempName(nm[0])) temp = true;
      const taints = (what === 'table' || matview) && nm !== null ? createAs(s, nm[1], b, inner) : false;
      if (temp) {
        if (nm === null) s.out.writesUnknown = true;
        else s.out.write(nm[0]);
        return result(false, 'temp-table', true, nm === null ? null : [nm[0]], true);
      }
      return ddl(s, taints);
    }
    if (temp) {
      s.out.writesUnknown = true;
      return result(false, 'temp-table', true, null, true);
    }
  }
  return ddl(s, false);
}

/** A DDL verdict: a write of the whole database. */
function ddl(s: Stmt, taints: boolean): SqlClass {
  s.out.writesUnknown = true;
  return result(false, 'ddl', taints, null, true);
}

/**
 * CREATE TABLE / MATERIALIZED VIEW name ... AS query, from the index after the name: classifies
 * the query (its facts become the statement's); true when it taints the session. AS EXECUTE runs
 * a prepared statement this text does not show: opaque.
 */
function createAs(s: Stmt, j: number, b: number, inner: ClassifyRange): boolean {
  for (; j < b; j++) {
    if (s.k(j) === LP) { j = s.match[j]!; continue; }
    if (s.w(j) !== 'as') continue;
    const n = s.w(j + 1);
    if (n === 'execute') { s.out.opaque = true; return false; }
    if (j + 1 < b && (READ_START.has(n) || s.k(j + 1) === LP)) return inner(s, j + 1, b).taintsSession;
  }
  return false;
}

/** ALTER TABLE / DOMAIN from j: records the calls, operators and types its expressions hold. */
function scanExpressions(s: Stmt, j: number, b: number): void {
  for (let i = j; i < b; i++) {
    if (s.k(i + 1) !== LP) continue;
    // Words before `(` that are syntax here (PRIMARY KEY (a), USING gist (...)), and the table of REFERENCES t(a).
    if (DDL_NOT_CALL.has(s.w(i)) || s.w(i - 1) === 'references') s.notCall[i] = 1;
    else if (s.w(i - 2) === 'references' || s.w(i - 3) === 'references') s.notCall[i] = 1; // REFERENCES s.t(a)
  }
  const f = new Facts();
  scanCalls(s, f, j, b);
  scanRefs(s, f, j, b);
}
