/**
 * What a statement refers to besides relations and named calls, for the catalog to judge
 * (statement-facts.ts): operators, types it casts to, names after a dot (attribute notation may
 * call a function: `x.f` is `f(x)`), and the names its WITH clauses define. And the clock rule of
 * casts (issue 14, finding 9): a cast to a date/time type (CLOCK_TYPES) of anything but a plain
 * literal or parameter is volatile, since the value may be a text reading 'now' at execution:
 * `('n'||'ow')::timestamptz`, `CAST(textcol AS date)`, `'now'::text::timestamptz`.
 *
 * - Operators: every operator token, split as PostgreSQL's lexer splits a run (`=-1` is `=` then
 *   `-`), `!=` as `<>`; LIKE / ILIKE / SIMILAR TO as `~~` / `~~*` / `~` (and their negations);
 *   OPERATOR(s.op) as `s.op`. The comparisons that IN, BETWEEN, ORDER BY, DISTINCT, joins ...
 *   use without a symbol are the catalog's to add (it treats `=`, `<>`, `<`, ... as always used).
 * - Types: after `::`, in CAST(x AS t), and before a string literal (`date 'today'`, `mytype 'x'`,
 *   any word not in NOT_LITERAL_TYPE). SQL-standard spellings become their pg_catalog names
 *   (`double precision` -> `pg_catalog.float8`): the grammar resolves them there whatever the
 *   search_path. Type modifiers, `[]` and ARRAY are dropped.
 */
import { CAST, COMMA, DOT, LB, LP, OP, PARAM, QID, RB, RP, STR, WORD } from './lexer';
import { CLOCK_TYPES, NOT_LITERAL_TYPE } from './keywords';
import { isPlainOperand } from './calls';
import { renderQuoted } from './names';
import type { Facts, Stmt } from './stmt';

/** SQL-standard type keywords and the pg_catalog type each names. */
const SQL_TYPES: ReadonlyMap<string, string> = new Map([
  ['int', 'int4'], ['integer', 'int4'], ['smallint', 'int2'], ['bigint', 'int8'], ['real', 'float4'],
  ['float', 'float8'], ['decimal', 'numeric'], ['dec', 'numeric'], ['numeric', 'numeric'], ['boolean', 'bool'],
  ['char', 'bpchar'], ['character', 'bpchar'], ['nchar', 'bpchar'], ['varchar', 'varchar'], ['bit', 'bit'],
  ['interval', 'interval'], ['time', 'time'], ['timestamp', 'timestamp'],
]);

/** Words that may follow INTERVAL in a type: `interval day to second`. */
const INTERVAL_FIELDS: ReadonlySet<string> = new Set(['year', 'month', 'day', 'hour', 'minute', 'second', 'to']);

/** The type name written at j: its name (see the file comment) and the index after it, or null. */
function readType(s: Stmt, j: number): [string, number] | null {
  let w = s.w(j);
  let name: string;
  if (w === 'double' && s.w(j + 1) === 'precision') { name = 'float8'; j += 2; }
  else {
    if (w === 'national') { j++; w = s.w(j); }
    if (w === 'character' || w === 'char' || w === 'nchar' || w === 'bit') {
      j++;
      const varying = s.w(j) === 'varying';
      if (varying) j++;
      name = w === 'bit' ? (varying ? 'varbit' : 'bit') : (varying ? 'varchar' : 'bpchar');
    } else if (w === 'time' || w === 'timestamp') {
      j++;
      if (s.k(j) === LP) j = s.match[j]! + 1;
      const tz = s.w(j) === 'with';
      if ((tz || s.w(j) === 'without') && s.w(j + 1) === 'time' && s.w(j + 2) === 'zone') j += 3;
      name = tz ? w + 'tz' : w;
    } else if (w !== '' && SQL_TYPES.has(w)) { name = SQL_TYPES.get(w)!; j++; }
    else {
      const nm = s.name(j);
      if (nm === null) return null;
      j = nm[1];
      if (s.k(j) === LP) j = s.match[j]! + 1;
      while (s.k(j) === LB) j = s.match[j]! + 1;
      if (s.w(j) === 'array') { j++; if (s.k(j) === LB) j = s.match[j]! + 1; }
      return [nm[0], j];
    }
  }
  if (s.k(j) === LP) j = s.match[j]! + 1;
  if (name === 'interval') while (INTERVAL_FIELDS.has(s.w(j))) { j++; if (s.k(j) === LP) j = s.match[j]! + 1; }
  while (s.k(j) === LB) j = s.match[j]! + 1;
  if (s.w(j) === 'array') { j++; if (s.k(j) === LB) j = s.match[j]! + 1; }
  return ['pg_catalog.' + name, j];
}

/** The type name reads a date/time (unqualified or in pg_catalog). */
function isClockType(name: string): boolean {
  const last = name.startsWith('pg_catalog.') ? name.slice(11) : name;
  return CLOCK_TYPES.has(last);
}

/** The operand that ends right before the `::` at i is a plain literal or parameter. */
function plainBeforeCast(s: Stmt, i: number): boolean {
  const k = s.k(i - 1);
  if (k === STR || k === PARAM || s.w(i - 1) === 'null') return true;
  if (k !== RP) return false;
  const m = s.match[i - 1]!;
  const pk = s.k(m - 1);
  if (pk === QID || pk === RB || pk === RP || (pk === WORD && !NOT_LITERAL_TYPE.has(s.w(m - 1)))) return false; // a call or subscript
  return isPlainOperand(s, m, i);
}

/** The tokens of an operator run as PostgreSQL's lexer reads them. */
function operatorSymbols(op: string): string[] {
  const out: string[] = [];
  let main = op;
  if (main.length > 1 && !/[~!@#^&|`?%]/.test(main)) {
    while (main.length > 1 && (main.endsWith('+') || main.endsWith('-'))) {
      out.push(main[main.length - 1]!);
      main = main.slice(0, -1);
    }
  }
  out.push(main === '!=' ? '<>' : main);
  return out;
}

/** Records the operators, types, attribute names and CTE names of [a, b) in s.out; judges clock casts. */
export function scanRefs(s: Stmt, f: Facts, a: number, b: number): void {
  const out = s.out;
  for (let i = a; i < b; i++) {
    const tok = s.t[i]!;
    switch (tok.k) {
      case OP: {
        const v = tok.v;
        if (v === ':' || v === '=>') break;
        if (v === '*' && (s.k(i - 1) === DOT || s.k(i - 1) === LP || s.k(i - 1) === COMMA || s.k(i + 1) === RP ||
          s.k(i + 1) === COMMA || s.w(i - 1) === 'select' || s.w(i + 1) === 'from')) break; // t.*, count(*), select *
        for (const sym of operatorSymbols(v)) out.operator(sym);
        break;
      }
      case CAST: {
        const ty = readType(s, i + 1);
        if (ty === null) break;
        out.type(ty[0]);
        if (isClockType(ty[0]) && !plainBeforeCast(s, i)) { f.volatile = true; f.clock = true; }
        break;
      }
      case STR: {
        const ty = literalType(s, i);
        if (ty !== null) out.type(ty);
        break;
      }
      case WORD: case QID: {
        const v = tok.v;
        if (tok.k === WORD && s.k(i - 1) !== DOT) {
          if (v === 'operator' && s.k(i + 1) === LP) { i = operatorCall(s, i + 1); break; }
          if (v === 'cast' && s.k(i + 1) === LP) castCall(s, f, i + 1);
          else if (v === 'like' || v === 'ilike') {
            const neg = s.w(i - 1) === 'not' ? '!' : '';
            out.operator(neg + (v === 'like' ? '~~' : '~~*'));
          } else if (v === 'similar' && s.w(i + 1) === 'to') out.operator(s.w(i - 1) === 'not' ? '!~' : '~');
        }
        if (s.k(i - 1) === DOT && s.k(i + 1) !== LP && s.k(i + 1) !== DOT) out.attribute(tok.k === QID ? renderQuoted(v) : v);
        if (s.k(i - 1) !== DOT && isCteName(s, i)) out.cte(tok.k === QID ? renderQuoted(v) : v);
        break;
      }
    }
  }
}

/** `name [(cols)] AS [NOT] [MATERIALIZED] (` starts at i: a WITH item (or a WINDOW item: harmless). */
function isCteName(s: Stmt, i: number): boolean {
  let j = i + 1;
  if (s.k(j) === LP) j = s.match[j]! + 1;
  if (s.w(j) !== 'as') return false;
  const n = s.w(j + 1);
  return s.k(j + 1) === LP || n === 'not' || n === 'materialized';
}

/** OPERATOR( [schema.] op ) whose `(` is at lp: records `schema.op`; returns the index of its `)`. */
function operatorCall(s: Stmt, lp: number): number {
  const m = s.match[lp]!;
  let prefix = '';
  let j = lp + 1;
  while ((s.k(j) === WORD || s.k(j) === QID) && s.k(j + 1) === DOT) {
    prefix += (s.k(j) === QID ? renderQuoted(s.t[j]!.v) : s.t[j]!.v) + '.';
    j += 2;
  }
  if (s.k(j) === OP && j + 1 === m) s.out.operator(prefix + (s.t[j]!.v === '!=' ? '<>' : s.t[j]!.v));
  return m;
}

/** CAST( expr AS type ) whose `(` is at lp: records the type; judges the clock rule. */
function castCall(s: Stmt, f: Facts, lp: number): void {
  const m = s.match[lp]!;
  let as = -1;
  for (let j = lp + 1; j < m; j++) {
    const k = s.k(j);
    if (k === LP || k === LB) { j = s.match[j]!; continue; }
    if (s.w(j) === 'as') as = j;
  }
  if (as < 0) return;
  const ty = readType(s, as + 1);
  if (ty === null) return;
  s.out.type(ty[0]);
  if (isClockType(ty[0]) && !isPlainOperand(s, lp + 1, as)) { f.volatile = true; f.clock = true; }
}

/** The type of a typed literal `type 'string'` whose string is at i, or null when none is written. */
function literalType(s: Stmt, i: number): string | null {
  let j = i - 1;
  if (s.k(j) === STR) return null; // a continued literal
  if (s.k(j) === RP) { // varchar(3) 'abc', interval(2) '1 s'
    const m = s.match[j]!;
    j = m - 1;
    if (s.k(j) !== WORD && s.k(j) !== QID) return null;
  }
  const k = s.k(j);
  if (k === QID) return s.nameEndingAt(j);
  if (k !== WORD) return null;
  const w = s.w(j);
  if (w === 'zone' && s.w(j - 1) === 'time' && (s.w(j - 2) === 'with' || s.w(j - 2) === 'without')) {
    const base = s.w(j - 3) === 'timestamp' || (s.k(j - 3) === RP && s.w(s.match[j - 3]! - 1) === 'timestamp') ? 'timestamp' : 'time';
    return 'pg_catalog.' + base + (s.w(j - 2) === 'with' ? 'tz' : '');
  }
  if (w === 'precision' && s.w(j - 1) === 'double') return 'pg_catalog.float8';
  if (w === 'varying') return s.w(j - 1) === 'bit' ? 'pg_catalog.varbit' : 'pg_catalog.varchar';
  if (NOT_LITERAL_TYPE.has(w)) return null;
  if (s.k(j - 1) !== DOT && SQL_TYPES.has(w)) return 'pg_catalog.' + SQL_TYPES.get(w)!;
  return s.nameEndingAt(j);
}
