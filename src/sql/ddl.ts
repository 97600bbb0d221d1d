/**
 * DDL: CREATE / ALTER / DROP / GRANT / REVOKE / COMMENT / SECURITY LABEL / IMPORT FOREIGN SCHEMA /
 * REASSIGN OWNED / REFRESH MATERIALIZED VIEW. All are writes ('ddl'; REFRESH: 'write').
 *
 * - `tables` are the target relation for CREATE TABLE t, CREATE [UNIQUE] INDEX ... ON t, ALTER
 *   TABLE t, DROP TABLE t1, t2, REFRESH MATERIALIZED VIEW v. Null (invalidate the whole
 *   database) when a target cannot be parsed, with DROP ... CASCADE or ALTER TABLE ALL IN
 *   TABLESPACE, and for any other DDL: views, functions, policies, grants and roles change the
 *   answers of other relations.
 * - CREATE TEMP/TEMPORARY/LOCAL TEMP/GLOBAL TEMP TABLE|VIEW|SEQUENCE, and CREATE TABLE pg_temp.x:
 *   'temp-table', a write that taints the session.
 */
import { COMMA } from './lexer';
import { isTempName } from './names';
import { result, type SqlClass } from './sql-class';
import { addUnique, type Stmt } from './stmt';

/** The DDL statement whose keyword kw is at p, up to b. */
export function classifyDdl(s: Stmt, kw: string, p: number, b: number): SqlClass {
  let j = p + 1;
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
    if (what === 'table' || what === 'view' || what === 'sequence' || (what === 'recursive' && s.w(j + 1) === 'view')) {
      j += what === 'recursive' ? 2 : 1;
      if (s.w(j) === 'if' && s.w(j + 1) === 'not' && s.w(j + 2) === 'exists') j += 3;
      const nm = s.name(j);
      if (nm !== null && isTempName(nm[0])) temp = true;
      if (temp) return result(false, 'temp-table', true, nm === null ? null : [nm[0]], true);
      if (what === 'table' && nm !== null) return result(false, 'ddl', false, [nm[0]], true);
      return result(false, 'ddl', false, null, true);
    }
    if (temp) return result(false, 'temp-table', true, null, true);
    if (what === 'index' || (what === 'unique' && s.w(j + 1) === 'index')) {
      for (; j < b; j++) {
        if (s.w(j) === 'on') {
          let k = j + 1;
          if (s.w(k) === 'only') k++;
          const nm = s.name(k);
          return result(false, 'ddl', false, nm === null ? null : [nm[0]], true);
        }
      }
    }
    return result(false, 'ddl', false, null, true);
  }
  if (kw === 'alter' && s.w(j) === 'table') {
    j++;
    if (s.w(j) === 'if' && s.w(j + 1) === 'exists') j += 2;
    if (s.w(j) === 'only') j++;
    if (s.w(j) === 'all') return result(false, 'ddl', false, null, true);
    const nm = s.name(j);
    return result(false, 'ddl', false, nm === null ? null : [nm[0]], true);
  }
  if (kw === 'drop' && s.w(j) === 'table') {
    j++;
    if (s.w(j) === 'if' && s.w(j + 1) === 'exists') j += 2;
    const names: string[] = [];
    for (;;) {
      const nm = s.name(j);
      if (nm === null) return result(false, 'ddl', false, null, true);
      addUnique(names, nm[0]);
      j = nm[1];
      if (s.k(j) !== COMMA) break;
      j++;
    }
    if (s.w(j) === 'cascade') return result(false, 'ddl', false, null, true);
    return result(false, 'ddl', false, names, true);
  }
  if (kw === 'refresh' && s.w(j) === 'materialized' && s.w(j + 1) === 'view') {
    j += 2;
    if (s.w(j) === 'concurrently') j++;
    const nm = s.name(j);
    return result(false, 'write', false, nm === null ? null : [nm[0]], true);
  }
  return result(false, 'ddl', false, null, true);
}
