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
 *   are volatile (with or without parentheses), and so is any string literal holding one of the
 *   date/time inputs 'now', 'today', 'tomorrow', 'yesterday' anywhere (clock-words.ts: ranges,
 *   arrays, escapes decoded, literals continued across a newline joined), and a function-style
 *   cast of a non-literal to a date/time type (`date(textcol)`; refs.ts judges `::` and CAST).
 * - Facts (statement-facts.ts): every call is recorded as written, except the grammar forms of
 *   GRAMMAR_CALLS (COALESCE, TRIM ...). `Facts.clock` marks volatility the catalog cannot clear
 *   (the clock, a function known volatile or per-session by name); an unknown function is
 *   volatile for the verdict but left to the catalog for the facts.
 * - CURRENT_USER, SESSION_USER, CURRENT_ROLE, USER, CURRENT_CATALOG, CURRENT_SCHEMA and
 *   version() are cacheable: stable within a session, the cache key covers database and user,
 *   and SET ROLE / SET SESSION AUTHORIZATION / SET search_path taint the session.
 * - Not calls: casts (`::numeric(10,2)`, CAST(x AS varchar(3))), keyword constructs (IN, EXISTS,
 *   ANY, ALL, ARRAY, ROW, VALUES, OVER, FILTER, WITHIN GROUP ...), column lists of aliases and
 *   CTEs.
 */
import { CAST, COMMA, DOT, LP, PARAM, QID, RP, STR, WORD, foldAscii } from './lexer';
import { literalHasClockWord } from './clock-words';
import { SAFE_FUNCTIONS, isUncacheableFunction } from './functions';
import { CLOCK_CAST_FUNCTIONS, GRAMMAR_CALLS, NOT_CALL, VOLATILE_KEYWORDS } from './keywords';
import { renderQuoted } from './names';
import { type Facts, type Stmt } from './stmt';
import { addUnique } from '../unique-list';

/** Volatile whatever the catalog says (a clock, a known volatile or session-specific function). */
function clock(f: Facts): void {
  f.volatile = true;
  f.clock = true;
}

/**
 * The string literal at i holds a clock word, alone or continued by the literals right after it
 * (PostgreSQL joins string constants separated by a newline: 'n' <newline> 'ow'). Returns the
 * index after the run of literals.
 */
function scanLiterals(s: Stmt, f: Facts, i: number, b: number): number {
  let j = i;
  let run = '';
  while (j < b && s.k(j) === STR) {
    const v = s.t[j]!.v;
    if (literalHasClockWord(v)) clock(f);
    run += v;
    j++;
  }
  if (j - i > 1 && literalHasClockWord(run)) clock(f);
  return j;
}

/** The tokens [a, b) are one plain literal or parameter (in parentheses or not), or NULL. */
export function isPlainOperand(s: Stmt, a: number, b: number): boolean {
  while (s.k(a) === LP && s.match[a] === b - 1) { a++; b--; }
  if (b - a === 1) return s.k(a) === PARAM || s.k(a) === STR || s.w(a) === 'null';
  for (let j = a; j < b; j++) if (s.k(j) !== STR) return false;
  return b > a; // adjacent literals: one constant
}

/** Judges every function call, clock keyword and clock string in [a, b), and records the calls in s.out. */
export function scanCalls(s: Stmt, f: Facts, a: number, b: number): void {
  for (let i = a; i < b; i++) {
    const tok = s.t[i]!;
    if (tok.k === STR) {
      i = scanLiterals(s, f, i, b) - 1;
      continue;
    }
    if (tok.k !== WORD && tok.k !== QID) continue;
    if (tok.k === WORD && VOLATILE_KEYWORDS.has(tok.v)) { clock(f); continue; }
    if (s.k(i + 1) !== LP || s.notCall[i] === 1) continue;
    const pk = s.k(i - 1);
    if (pk === RP || pk === CAST || s.w(i - 1) === 'as') continue;
    const m = s.match[i + 1]!;
    if (s.w(m + 1) === 'as' && (s.k(m + 2) === LP || s.w(m + 2) === 'not' || s.w(m + 2) === 'materialized')) {
      continue; // a CTE's column list: WITH x(a, b) AS (...)
    }
    const qualified = pk === DOT;
    if (tok.k === WORD && !qualified && tok.v === 'operator') {
      // OPERATOR(schema.op): an operator (refs.ts records it); outside pg_catalog, not vouched for.
      if (s.w(i + 2) !== 'pg_catalog') unknownCall(f);
      continue;
    }
    if (tok.k === WORD && !qualified && (NOT_CALL.has(tok.v) || (tok.v === 'insert' && s.w(i - 1) === 'then'))) continue;
    // Grammar forms (COALESCE, TRIM(... FROM ...), EXTRACT ...) call pg_catalog built-ins or none.
    if (tok.k === WORD && !qualified && GRAMMAR_CALLS.has(tok.v)) { judgeCall(s, f, tok.v, i); continue; }
    s.out.call(qualified ? s.nameEndingAt(i) : tok.k === QID ? renderQuoted(tok.v) : tok.v);
    if (tok.k === QID) { unknownCall(f); continue; }
    if (qualified) {
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
  if (CLOCK_CAST_FUNCTIONS.has(name) && !isPlainOperand(s, i + 2, s.match[i + 1]!)) clock(f); // date(textcol) casts
  if (name === 'nextval' || name === 'setval') {
    clock(f);
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
    clock(f);
    f.mayWrite = true;
    f.writeTablesUnknown = true;
    return;
  }
  if (isUncacheableFunction(name)) {
    // current_setting() answers from the session's settings, which the session part of the cache
    // key covers in catalog mode: the catalog may clear it (facts); the text alone does not.
    if (name === 'current_setting') f.volatile = true;
    else clock(f);
    return;
  }
  if (SAFE_FUNCTIONS.has(name)) return;
  unknownCall(f);
}
