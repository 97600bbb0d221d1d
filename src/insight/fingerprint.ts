/**
 * Query fingerprints: one normal form per query shape, so that `... WHERE aid = 1` and
 * `... where aid = 2` are counted as one digest, and a stable 16-hex-char id for it.
 *
 * ## The normal form (`normalizeSql`)
 *
 * Close to what pg_stat_statements (PostgreSQL 15, checked against a real server) shows, then
 * lower-cased and whitespace-folded:
 *
 * - Comments (`--`, nested block comments) are dropped; they count as whitespace.
 * - Literals become `$n`, numbered left to right from one past the highest `$n` placeholder in
 *   the text (pg_stat_statements does the same, so a Parse'd statement mixing `$1` and a literal
 *   gives `$1 ... $2`): numbers (`42`, `1.5e-3`, `.5`, `0x1F`), '...' strings, E'...' (backslash
 *   escapes), B'...', X'...', N'...', U&'...' and $tag$...$tag$ / $$...$$. Like
 *   pg_stat_statements: TRUE, FALSE and NULL are literals too, except after IS / IS NOT / IS [NOT]
 *   DISTINCT FROM (`x is null` stays), and NULL after NOT (`a int not null`). Deviation:
 *   pg_stat_statements shows N'abc' as `N$1`; here it is `$1`.
 * - Minus signs follow PostgreSQL's grammar (doNegate): a `-` that is a unary minus directly
 *   before a number is part of the literal (`x = -5`, `x = - 5`, `abalance + -123`, `2*-3` give
 *   `$n`), a binary minus stays (`a - 5`, `a -5` give `a - $1`, `a -$1`). Unary means: at the
 *   start, after an operator, `(`, `,`, `[`, `;`, or after a keyword that cannot end an operand
 *   (SELECT, WHERE, AND, THEN, BETWEEN, LIMIT ...; the list is UNARY_CONTEXT). Operator runs are
 *   split the way PostgreSQL's lexer splits them (`=-5` is `=` then `-5`). `+5` stays `+$1`, as in
 *   pg_stat_statements; `-5::int` gives `-$1::int` (the cast binds tighter than the minus).
 * - Kept as written, as pg_stat_statements keeps them: type modifiers (`numeric(10,2)`,
 *   `varchar(3)`, `::vector(3)`, `timestamp(3)`), and positional references in the ORDER BY / GROUP
 *   BY of a SELECT (`order by 1, 2`; but a number in a window's or an aggregate's ORDER BY, or in
 *   an expression such as `order by 1 + a`, is a literal).
 * - `IN (` a list of only literals and `$n` `)` becomes `in (...)`, however long, and literals in
 *   it take no number (so `in (1, 2) and b = 3` and `in (4) and b = 5` agree). pg_stat_statements
 *   15 keeps such lists; 18 squashes them into `($1 /*, ... *\/)`.
 * - Whitespace runs become one space; none is written after `(` nor before `,` `)` `;`. Nothing
 *   else is respaced (`a=1` stays `a=$1`, `count (*)` keeps its space), as pg_stat_statements
 *   keeps the spacing of the text. Trailing `;` and spaces are removed.
 * - Unquoted identifiers and keywords are lower-cased (ASCII letters only, as PostgreSQL folds
 *   them); "quoted identifiers" are kept as written.
 * - pg_stat_statements 15 shows utility statements (SET, CREATE ...) as sent; they are
 *   normalised here like everything else (`set work_mem = $1`), and a text with several
 *   statements is one digest (`begin; select $1; commit`), numbered across its statements.
 * - Assumes standard_conforming_strings = on (plain '...' strings take no backslash escapes).
 *   An unterminated string, quoted identifier or dollar quote runs to the end of the text; an
 *   unterminated comment drops the rest. Normalising never throws.
 *
 * ## Cost
 *
 * One pass over the characters (no regular expression, no per-token object or string), writing
 * into a reused Uint16Array, then one string made from it. A text with both `$n` placeholders and
 * literals takes a second pass (the literal numbers start after the highest placeholder, which is
 * known only at the end). The lexical rules (identifier characters, operators, strings) are the
 * classifier's (src/sql/lexer.ts); its tokenizer is not reused because it builds an
 * object and a string per token, which the record() hot path cannot afford.
 */
import { blockCommentEnd, dollarTagEnd, isDigit, isIdentChar, isIdentStart, isOpChar, lineCommentEnd, numberEnd, operatorRunEnd, scanString } from '../sql/lexer';

// ---------------------------------------------------------------------------------------------
// Words the normaliser must recognise, by id. Flags say what a word means for its neighbours.

/** After this word a `-` is a unary minus (the word cannot end an operand). */
const F_UNARY = 1;
/** A type name that takes a modifier: `numeric(10,2)`. */
const F_TYPE = 2;
/** Ends an ORDER BY / GROUP BY list. */
const F_BYEND = 4;
/** Starts a query: `(select ...)` is a subquery, whose ORDER BY may hold positions. */
const F_QUERY = 8;

const W_OTHER = 1; // any word without an entry below
const WORDS: Array<[string, number]> = [];
const FLAGS: number[] = [0, 0];
function word(w: string, flags: number): number {
  const id = FLAGS.length;
  FLAGS.push(flags);
  WORDS.push([w, id]);
  return id;
}
const W_IS = word('is', 0);
const W_NOT = word('not', F_UNARY);
const W_DISTINCT = word('distinct', F_UNARY);
const W_FROM = word('from', F_UNARY | F_BYEND);
const W_TRUE = word('true', 0);
const W_FALSE = word('false', 0);
const W_NULL = word('null', 0);
const W_IN = word('in', 0);
const W_ORDER = word('order', F_BYEND);
const W_GROUP = word('group', F_BYEND);
const W_BY = word('by', F_UNARY);
for (const w of ['where', 'having', 'limit', 'offset', 'returning', 'union', 'intersect', 'except']) word(w, F_UNARY | F_BYEND);
word('select', F_UNARY | F_BYEND | F_QUERY);
for (const w of ['with', 'values', 'table']) word(w, F_QUERY | F_BYEND);
for (const w of ['window', 'fetch', 'for', 'into', 'on']) word(w, w === 'on' ? F_UNARY | F_BYEND : F_BYEND);
/** Keywords after which an operand starts (so a `-` there is unary). */
const UNARY_CONTEXT = ['and', 'or', 'when', 'then', 'else', 'case', 'between', 'all', 'any', 'some', 'like',
  'ilike', 'similar', 'escape', 'return', 'using', 'do', 'set', 'to', 'array', 'exists'];
for (const w of UNARY_CONTEXT) word(w, F_UNARY);
for (const w of ['bit', 'char', 'character', 'varying', 'varchar', 'numeric', 'decimal', 'dec', 'float',
  'interval', 'time', 'timestamp', 'timestamptz', 'timetz', 'nchar']) word(w, F_TYPE);

const MAX_WORD = 12;
/** Candidates by (length, first letter): CANDIDATES[len * 128 + first]. */
const CANDIDATES: Array<Array<[string, number]> | undefined> = new Array((MAX_WORD + 1) * 128);
for (const [w, id] of WORDS) {
  const k = w.length * 128 + w.charCodeAt(0);
  (CANDIDATES[k] ??= []).push([w, id]);
}

// ---------------------------------------------------------------------------------------------
// Token kinds (of the last token written)

const K_NONE = 0;
const K_WORD = 1;
const K_QID = 2;
const K_LIT = 3; // a literal written as $n
const K_PARAM = 4;
const K_OP = 5;
const K_LP = 6;
const K_RP = 7;
const K_COMMA = 8;
const K_SEMI = 9;
const K_DOT = 10;
const K_LB = 11;
const K_RB = 12;
const K_CAST = 13;
const K_OTHER = 14;
const K_NUM = 15; // a number kept as written (type modifier, ORDER BY position)

/** Deeper parentheses than this are not tracked for subquery ORDER BY positions. */
const MAX_DEPTH = 256;

// Scratch state, reused by every call (normalizeSql is synchronous and not re-entrant).
let out = new Uint16Array(4096);
let outBytes = Buffer.from(out.buffer);
const queryParen = new Uint8Array(MAX_DEPTH + 1);
/** Highest $n placeholder of the last pass. */
let maxParam = 0;
/** Literals written ($n) by the last pass. */
let literals = 0;

const SHRINK_ABOVE = 1 << 20;

/** Normalised text: see the module header. */
export function normalizeSql(sql: string): string {
  return normalizeSqlCounting(sql).text;
}

/** The normal form plus how many literals it replaced (0: the text was already a shape). */
export interface Normalized {
  text: string;
  literals: number;
}

const result: Normalized = { text: '', literals: 0 };

/**
 * normalizeSql, also saying how many literals became `$n` (the caller may memoise texts without
 * literals: those repeat). Returns a shared object, overwritten by the next call.
 */
export function normalizeSqlCounting(sql: string): Normalized {
  let len = pass(sql, 0);
  if (literals > 0 && maxParam > 0) len = pass(sql, maxParam);
  result.text = decode(len);
  result.literals = literals;
  if (out.length > SHRINK_ABOVE) {
    out = new Uint16Array(4096);
    outBytes = Buffer.from(out.buffer);
  }
  return result;
}

/** Uint16Array memory read as UTF-16LE: true on every platform Node runs on in practice. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * The string of out[0, len). Buffer#toString('utf16le') on a view of `out` costs about 55 ns for
 * a pgbench statement, String.fromCharCode.apply about 200 ns (measured on Node 20).
 */
function decode(len: number): string {
  if (LITTLE_ENDIAN) return outBytes.toString('utf16le', 0, len * 2);
  let s = '';
  for (let i = 0; i < len; i += 4096) {
    s += String.fromCharCode.apply(null, out.subarray(i, Math.min(len, i + 4096)) as unknown as number[]);
  }
  return s;
}

function grow(need: number): void {
  let n = out.length * 2;
  while (n < need) n *= 2;
  const b = new Uint16Array(n);
  b.set(out);
  out = b;
  outBytes = Buffer.from(out.buffer);
}

/** Index just after the whitespace and comments at i. */
function skipBlank(sql: string, i: number): number {
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 32 || (c >= 9 && c <= 13)) { i++; continue; }
    const d = sql.charCodeAt(i + 1);
    if (c === 45 && d === 45) {
      i = lineCommentEnd(sql, i);
      continue;
    }
    if (c === 47 && d === 42) {
      const e = blockCommentEnd(sql, i);
      i = e < 0 ? n : e;
      continue;
    }
    break;
  }
  return i;
}

/** Id of the lower-case word out[s, s+len), or W_OTHER. */
function wordId(s: number, len: number): number {
  if (len > MAX_WORD) return W_OTHER;
  const first = out[s]!;
  if (first >= 128) return W_OTHER;
  const cands = CANDIDATES[len * 128 + first];
  if (cands === undefined) return W_OTHER;
  outer: for (const [w, id] of cands) {
    for (let k = 1; k < len; k++) if (w.charCodeAt(k) !== out[s + k]) continue outer;
    return id;
  }
  return W_OTHER;
}

/**
 * One normalising pass writing into `out`; returns the length written. Literals are numbered
 * from base + 1. Sets maxParam and literals.
 */
function pass(sql: string, base: number): number {
  const n = sql.length;
  if (out.length < n + 64) grow(n + 64);
  let o = 0;
  let space = false; // whitespace or a comment since the last token
  let lastKind = K_NONE;
  // The operator run being split (see K_OP): where it ends, and the last index in it of a
  // character that keeps a trailing + or - (before its last character) and of one not + or -.
  let runEnd = -1;
  let runLastSpecial = -1;
  let runLastOther = -1;
  let lastWord = 0; // id of the last token if it was a word, else 0
  let prevWord = 0; // id of the token before it if that was a word, else 0
  let typeWord = false; // the last word names a type (after ::, or a type keyword)
  let depth = 0;
  let typmodDepth = -1; // inside numeric( ... ): numbers are kept
  let byDepth = -1; // inside an ORDER BY / GROUP BY list at this depth
  let inDepth = -1; // inside a candidate IN ( ... ) list at this depth
  let inState = 0; // 1: an element is expected, 2: a ',' or ')' is expected
  let inAt = 0; // where its '(' was written
  let inLiterals = 0; // literals before it
  let freshParen = false; // the last token was '(' (the next word may start a subquery)
  let lits = 0;
  let maxP = 0;
  queryParen[0] = 1;

  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 32 || (c >= 9 && c <= 13)) { space = true; i++; continue; }
    const d = sql.charCodeAt(i + 1);
    if (c === 45 && d === 45) { // -- comment
      i = lineCommentEnd(sql, i);
      space = true;
      continue;
    }
    if (c === 47 && d === 42) { // /* nested */ comment
      const e = blockCommentEnd(sql, i);
      i = e < 0 ? n : e;
      space = true;
      continue;
    }

    // What the token is: kind, where it ends, whether it is written as a literal.
    let kind: number;
    let end: number;
    let literal = false;
    let wid = 0;

    if (c === 39) { // 'string'
      end = scanString(sql, i + 1, false);
      if (end < 0) end = n;
      kind = K_LIT;
      literal = true;
    } else if (c === 34) { // "identifier": kept as written
      let j = i + 1;
      for (;;) {
        const q = sql.indexOf('"', j);
        if (q < 0) { j = n; break; }
        if (sql.charCodeAt(q + 1) === 34) { j = q + 2; continue; }
        j = q + 1;
        break;
      }
      end = j;
      kind = K_QID;
    } else if (c === 36) { // $n or $tag$...$tag$
      if (isDigit(d)) {
        let j = i + 1;
        let v = 0;
        // Saturates: the literal numbers after it must stay small integers (the server rejects
        // such a placeholder anyway; PostgreSQL allows 65535 parameters).
        while (j < n && isDigit(sql.charCodeAt(j))) {
          if (v < 100_000_000) v = v * 10 + sql.charCodeAt(j) - 48;
          j++;
        }
        if (v > maxP) maxP = v;
        end = j;
        kind = K_PARAM;
      } else {
        const j = dollarTagEnd(sql, i);
        if (j >= 0) {
          const close = sql.indexOf(sql.slice(i, j + 1), j + 1);
          end = close < 0 ? n : close + (j + 1 - i);
          kind = K_LIT;
          literal = true;
        } else {
          end = i + 1;
          kind = K_OTHER;
        }
      }
    } else if (isIdentStart(c)) {
      let j = i + 1;
      while (j < n && isIdentChar(sql.charCodeAt(j))) j++;
      end = j;
      kind = K_WORD;
      if (j === i + 1) {
        const lc = c | 32;
        if (d === 39 && (lc === 101 || lc === 98 || lc === 120 || lc === 110)) { // E'' B'' X'' N''
          end = scanString(sql, i + 2, lc === 101);
          if (end < 0) end = n;
          kind = K_LIT;
          literal = true;
        } else if (lc === 117 && d === 38) { // U&'...' (a literal) or U&"..." (an identifier)
          const q = sql.charCodeAt(i + 2);
          if (q === 39) {
            end = scanString(sql, i + 3, false);
            if (end < 0) end = n;
            kind = K_LIT;
            literal = true;
          } else if (q === 34) {
            const e = sql.indexOf('"', i + 3);
            end = e < 0 ? n : e + 1;
            while (end < n && sql.charCodeAt(end) === 34) { // "" inside
              const f = sql.indexOf('"', end + 1);
              end = f < 0 ? n : f + 1;
            }
            kind = K_QID;
          }
        }
      }
    } else if (isDigit(c) || (c === 46 && isDigit(d))) {
      end = numberEnd(sql, i);
      kind = K_LIT;
      literal = true;
      // Kept as written: a type modifier, or a position in a query's ORDER BY / GROUP BY.
      if (typmodDepth === depth) {
        kind = K_NUM;
        literal = false;
      } else if (byDepth === depth && (lastWord === W_BY || lastKind === K_COMMA)) {
        const k = skipBlank(sql, end);
        const f = k < n ? sql.charCodeAt(k) : 59;
        if (f === 44 || f === 41 || f === 59 || (isIdentStart(f) && f < 128)) {
          kind = K_NUM;
          literal = false;
        }
      }
    } else {
      end = i + 1;
      switch (c) {
        case 40: kind = K_LP; break;
        case 41: kind = K_RP; break;
        case 44: kind = K_COMMA; break;
        case 59: kind = K_SEMI; break;
        case 46: kind = K_DOT; break;
        case 91: kind = K_LB; break;
        case 93: kind = K_RB; break;
        case 58:
          if (d === 58) { kind = K_CAST; end = i + 2; }
          else kind = K_OP;
          break;
        default:
          if (!isOpChar(c)) { kind = K_OTHER; break; }
          kind = K_OP;
          {
            // The run of operator characters i is in, scanned once per run: `+-+-...` splits into
            // one-character operators, and scanning the rest of the run again from each of them
            // was quadratic (issue 15, security finding 3: 28 KB stalled every session for 7 s).
            if (i >= runEnd) {
              runEnd = operatorRunEnd(sql, i);
              runLastSpecial = -1;
              runLastOther = -1;
              for (let k = i; k < runEnd; k++) {
                const e = sql.charCodeAt(k);
                if (k < runEnd - 1 && (e === 126 || e === 33 || e === 64 || e === 35 || e === 94 || e === 38 || e === 124 ||
                  e === 96 || e === 63 || e === 37)) runLastSpecial = k;
                if (e !== 43 && e !== 45) runLastOther = k;
              }
            }
            let j = runEnd;
            // PostgreSQL's lexer: a multi-character operator does not end in + or - unless it
            // contains one of ~ ! @ # % ^ & | ` ? (so `=-5` is `=` then `-5`): trailing + and -
            // go, back to the last other character, leaving at least one.
            if (j - i > 1) {
              const last = sql.charCodeAt(j - 1);
              if ((last === 43 || last === 45) && runLastSpecial < i) j = Math.max(i + 1, runLastOther + 1);
            }
            end = j;
          }
          // A unary minus before a number belongs to the literal (PostgreSQL's doNegate), unless
          // a cast binds the number first (`-5::int` negates a cast, not a constant).
          if (c === 45 && end === i + 1 && (lastKind === K_NONE || lastKind === K_OP || lastKind === K_LP ||
            lastKind === K_COMMA || lastKind === K_LB || lastKind === K_SEMI ||
            (lastKind === K_WORD && (FLAGS[lastWord]! & F_UNARY) !== 0))) {
            const k = skipBlank(sql, i + 1);
            const f = sql.charCodeAt(k);
            if (isDigit(f) || (f === 46 && isDigit(sql.charCodeAt(k + 1)))) {
              const e = numberEnd(sql, k);
              const a = skipBlank(sql, e);
              if (!(sql.charCodeAt(a) === 58 && sql.charCodeAt(a + 1) === 58)) {
                end = e;
                kind = K_LIT;
                literal = true;
              }
            }
          }
      }
    }

    // TRUE / FALSE / NULL are literals unless tested by IS (and NULL after NOT).
    if (kind === K_WORD) {
      // Lower-case the word straight into place (after the space, if one is due).
      if (o + (end - i) + 16 > out.length) grow(o + (end - i) + 16);
      if (space && o > 0 && lastKind !== K_LP) out[o++] = 32;
      space = false;
      const s = o;
      for (let k = i; k < end; k++) {
        const e = sql.charCodeAt(k);
        out[o++] = e >= 65 && e <= 90 ? e + 32 : e;
      }
      wid = wordId(s, end - i);
      if (wid === W_TRUE || wid === W_FALSE || wid === W_NULL) {
        const tested = lastWord === W_IS || (lastWord === W_NOT && (wid === W_NULL || prevWord === W_IS)) ||
          (lastWord === W_FROM && prevWord === W_DISTINCT);
        if (!tested) {
          o = s;
          kind = K_LIT;
          literal = true;
        }
      }
      if (kind === K_WORD) {
        typeWord = lastKind === K_CAST || (lastKind === K_DOT && typeWord) || (FLAGS[wid]! & F_TYPE) !== 0;
        if (freshParen && (FLAGS[wid]! & F_QUERY) !== 0 && depth <= MAX_DEPTH) queryParen[depth] = 1;
        if ((FLAGS[wid]! & F_BYEND) !== 0 && byDepth === depth) byDepth = -1;
        if (wid === W_BY && (lastWord === W_ORDER || lastWord === W_GROUP) && (depth > MAX_DEPTH ? false : queryParen[depth] === 1)) {
          byDepth = depth;
        }
        if (inDepth >= 0) inDepth = -1;
      }
    }

    if (kind !== K_WORD) {
      if (o + (end - i) + 16 > out.length) grow(o + (end - i) + 16);
      // An IN ( ... ) candidate: only literals and placeholders separated by commas.
      if (inDepth >= 0) {
        if (kind === K_LIT || kind === K_PARAM) {
          if (inState === 1) inState = 2;
          else inDepth = -1;
        } else if (kind === K_COMMA && inState === 2) inState = 1;
        else if (kind === K_RP && inState === 2 && depth === inDepth) {
          // Collapse: `(...)` replaces the list, whose literals take no number.
          o = inAt;
          out[o++] = 40; out[o++] = 46; out[o++] = 46; out[o++] = 46; out[o++] = 41; // (...)
          lits = inLiterals;
          inDepth = -1;
          depth--;
          if (typmodDepth > depth) typmodDepth = -1;
          if (byDepth > depth) byDepth = -1;
          space = false;
          prevWord = lastWord;
          lastWord = 0;
          lastKind = K_RP;
          freshParen = false;
          i = end;
          continue;
        } else inDepth = -1;
      }
      if (space && o > 0 && lastKind !== K_LP && kind !== K_COMMA && kind !== K_RP && kind !== K_SEMI) out[o++] = 32;
      space = false;
      if (literal) {
        let v = base + ++lits;
        out[o++] = 36; // $
        if (v < 10) out[o++] = 48 + v;
        else {
          let digits = 0;
          for (let x = v; x > 0; x = (x / 10) | 0) digits++;
          for (let k = o + digits - 1; k >= o; k--) { out[k] = 48 + (v % 10); v = (v / 10) | 0; }
          o += digits;
        }
      } else if (kind === K_NUM) {
        for (let k = i; k < end; k++) { // 1E5 -> 1e5
          const e = sql.charCodeAt(k);
          out[o++] = e >= 65 && e <= 90 ? e + 32 : e;
        }
      } else {
        for (let k = i; k < end; k++) out[o++] = sql.charCodeAt(k);
      }
      if (kind === K_LP) {
        depth++;
        if (depth <= MAX_DEPTH) queryParen[depth] = 0;
        if (lastKind === K_WORD && typeWord) typmodDepth = depth;
        if (lastKind === K_WORD && lastWord === W_IN && inDepth < 0) {
          inDepth = depth;
          inState = 1;
          inAt = o - 1;
          inLiterals = lits;
        }
      } else if (kind === K_RP) {
        if (depth > 0) depth--;
        if (typmodDepth > depth) typmodDepth = -1;
        if (byDepth > depth) byDepth = -1;
      } else if (kind === K_SEMI) {
        depth = 0;
        typmodDepth = -1;
        byDepth = -1;
        inDepth = -1;
      }
    }
    freshParen = kind === K_LP;
    prevWord = lastWord;
    lastWord = kind === K_WORD ? wid : 0;
    lastKind = kind;
    i = end;
  }
  // Trailing ';' and spaces go.
  while (o > 0 && (out[o - 1] === 59 || out[o - 1] === 32)) o--;
  maxParam = maxP;
  literals = lits;
  return o;
}

// ---------------------------------------------------------------------------------------------
// Ids

const HEX: string[] = [];
for (let i = 0; i < 256; i++) HEX.push((i < 16 ? '0' : '') + i.toString(16));

/**
 * Stable 16-hex-char id of a normalised text: FNV-1a 64 over its UTF-16 code units (each unit
 * XORed in whole, so for ASCII and latin1 text it is FNV-1a 64 of the bytes). About 1 ns per
 * character; computed once per new digest, not per query.
 */
export function fingerprintId(normalized: string): string {
  // 64-bit state as two 32-bit halves; the prime is 2^40 + 0x1b3.
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  for (let i = 0; i < normalized.length; i++) {
    lo ^= normalized.charCodeAt(i);
    lo >>>= 0;
    const m = lo * 0x1b3; // < 2^41: exact in a double
    hi = (Math.imul(hi, 0x1b3) + (lo << 8) + Math.floor(m / 4294967296)) >>> 0;
    lo = m >>> 0;
  }
  return HEX[hi >>> 24]! + HEX[(hi >>> 16) & 255]! + HEX[(hi >>> 8) & 255]! + HEX[hi & 255]! +
    HEX[lo >>> 24]! + HEX[(lo >>> 16) & 255]! + HEX[(lo >>> 8) & 255]! + HEX[lo & 255]!;
}
