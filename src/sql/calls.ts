/**
 * Function calls, clock keywords and clock strings: what makes a read volatile or a possible
 * write.
 *
 * - A call is allowed only when its name is in the modest `SAFE_FUNCTIONS` allowlist
 *   (functions.ts; unqualified or `pg_catalog.`-qualified). A name in `UNCACHEABLE_FUNCTIONS` is
 *   'volatile'. Any other call (a user-defined function, another schema, a "quoted" name) cannot
 *   be proven immutable nor free of side effects: 'volatile', and the statement counts as a
 *   write with tables null (it may write anything). Data-changing built-ins (nextval, setval,
 *   lo_*, dblink*) are writes too; nextval('seq') / setval('seq', ...) with a plain literal name
 *   write table `seq`. set_config(...) taints the session.
 * - The SQL keywords CURRENT_DATE, CURRENT_TIME, CURRENT_TIMESTAMP, LOCALTIME, LOCALTIMESTAMP
 *   are volatile (with or without parentheses), and so are the date/time input strings 'now',
 *   'today', 'tomorrow', 'yesterday' ('now'::timestamptz).
 * - CURRENT_USER, SESSION_USER, CURRENT_ROLE, USER, CURRENT_CATALOG, CURRENT_SCHEMA and
 *   version() are cacheable: stable within a session, the cache key covers database and user,
 *   and SET ROLE / SET SESSION AUTHORIZATION / SET search_path taint the session.
 * - Not calls: casts (`::numeric(10,2)`, CAST(x AS varchar(3))), keyword constructs (IN, EXISTS,
 *   ANY, ALL, ARRAY, ROW, VALUES, OVER, FILTER, WITHIN GROUP ...), column lists of aliases and
 *   CTEs.
 */
import { CAST, COMMA, DOT, LP, QID, RP, STR, WORD, foldAscii } from './lexer';
import { SAFE_FUNCTIONS, isUncacheableFunction } from './functions';
import { NOT_CALL, VOLATILE_KEYWORDS, VOLATILE_STRINGS } from './keywords';
import { addUnique, type Facts, type Stmt } from './stmt';

/** Judges every function call, clock keyword and clock string in [a, b). */
export function scanCalls(s: Stmt, f: Facts, a: number, b: number): void {
  for (let i = a; i < b; i++) {
    const tok = s.t[i]!;
    if (tok.k === STR) {
      if (tok.v.length <= 16 && VOLATILE_STRINGS.has(tok.v.trim().toLowerCase())) f.volatile = true;
      continue;
    }
    if (tok.k !== WORD && tok.k !== QID) continue;
    if (tok.k === WORD && VOLATILE_KEYWORDS.has(tok.v)) { f.volatile = true; continue; }
    if (s.k(i + 1) !== LP || s.notCall[i] === 1) continue;
    const pk = s.k(i - 1);
    if (pk === RP || pk === CAST || s.w(i - 1) === 'as') continue;
    const m = s.match[i + 1]!;
    if (s.w(m + 1) === 'as' && (s.k(m + 2) === LP || s.w(m + 2) === 'not' || s.w(m + 2) === 'materialized')) {
      continue; // a CTE's column list: WITH x(a, b) AS (...)
    }
    if (tok.k === QID) { unknownCall(f); continue; }
    if (NOT_CALL.has(tok.v) || (tok.v === 'insert' && s.w(i - 1) === 'then')) continue;
    if (pk === DOT) {
      if (s.w(i - 2) === 'pg_catalog' && s.k(i - 3) !== DOT) judgeCall(s, f, tok.v, i);
      else unknownCall(f);
      continue;
    }
    judgeCall(s, f, tok.v, i);
  }
}

/** A call that may do anything: volatile, and a write of unknown tables. */
function unknownCall(f: Facts): void {
  f.volatile = true;
  f.mayWrite = true;
  f.writeTablesUnknown = true;
}

/** Judges a call of `name` (lower case) whose `(` is at i + 1. */
function judgeCall(s: Stmt, f: Facts, name: string, i: number): void {
  if (name === 'nextval' || name === 'setval') {
    f.volatile = true;
    f.mayWrite = true;
    const arg = s.t[i + 2];
    const after = s.k(i + 3);
    if (arg !== undefined && s.k(i + 2) === STR && (after === RP || after === COMMA || after === CAST) &&
      /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/.test(arg.v)) {
      addUnique(f.written, foldAscii(arg.v, true));
    } else f.writeTablesUnknown = true;
    return;
  }
  if (name === 'set_config') f.taints = true;
  if (name === 'lowrite' || name.startsWith('lo_') || name.startsWith('dblink')) {
    f.volatile = true;
    f.mayWrite = true;
    f.writeTablesUnknown = true;
    return;
  }
  if (isUncacheableFunction(name)) { f.volatile = true; return; }
  if (SAFE_FUNCTIONS.has(name)) return;
  unknownCall(f);
}
