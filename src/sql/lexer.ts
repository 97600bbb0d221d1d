/**
 * The SQL tokeniser the classifier reads, and the character scanners it is made of (shared with
 * src/insight/fingerprint.ts, whose normaliser cannot afford a token object per word but must
 * agree on where a string, a comment, a number or an identifier ends).
 *
 * One pass over the text (no regular expressions per character, no allocation per character, one
 * small object per token). It understands `--` and nested `/* *\/` comments, '...' strings with ''
 * escapes, E'...' strings with backslash escapes, B''/X''/N'' strings, $$...$$ and $tag$...$tag$
 * dollar quotes, "quoted identifiers" (case kept, may contain dots and spaces), numbers, operators
 * and `$n` placeholders. A `;` outside those separates statements. It assumes
 * standard_conforming_strings = on (the default since PostgreSQL 9.1) unless told otherwise: for a
 * session whose server reported `off`, plain '...' strings take backslash escapes.
 * A text it cannot tokenise with confidence (an unterminated quote or comment, a stray `$`,
 * U&'...' escapes) gives null, which the classifier treats as 'unknown'.
 */

// ---------------------------------------------------------------------------------------------
// Token kinds

export const WORD = 0; // unquoted identifier or keyword; v lower-cased
export const QID = 1; // "quoted identifier"; v = the name, "" unescaped
export const STR = 2; // any string literal; v = its content (escapes not processed)
export const NUM = 3;
export const PARAM = 4; // $n
export const OP = 5; // operator run or stray character; v = its text
export const LP = 6;
export const RP = 7;
export const COMMA = 8;
export const SEMI = 9;
export const DOT = 10;
export const LB = 11;
export const RB = 12;
export const CAST = 13; // ::

/** One token: its kind (above) and its text (see each kind for what `v` holds). */
export interface Tok {
  k: number;
  v: string;
}

// ---------------------------------------------------------------------------------------------
// Character classes

/** A character that may start an unquoted identifier: ASCII letters, `_`, and any non-ASCII. */
export function isIdentStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c >= 128;
}
/** A character that may continue an unquoted identifier: the above, digits and `$`. */
export function isIdentChar(c: number): boolean {
  return isIdentStart(c) || (c >= 48 && c <= 57) || c === 36;
}
/** An ASCII digit. */
export function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}
/** + - * / < > = ~ ! @ # % ^ & | ` ? */
export function isOpChar(c: number): boolean {
  return c === 43 || c === 45 || c === 42 || c === 47 || c === 60 || c === 62 || c === 61 ||
    c === 126 || c === 33 || c === 64 || c === 35 || c === 37 || c === 94 || c === 38 || c === 124 ||
    c === 96 || c === 63;
}

/** PostgreSQL's NAMEDATALEN - 1: the most bytes of an identifier; the scanner cuts the rest. */
export const MAX_IDENTIFIER_BYTES = 63;

/**
 * An identifier as PostgreSQL's scanner keeps it (truncate_identifier): at most 63 bytes of
 * UTF-8, cut at a character boundary. `"a...a"` of 1 MiB names the same relation as its first 63
 * bytes, and nothing downstream (digests, table heat, the catalog) holds more than that.
 */
export function truncateIdentifier(v: string): string {
  // 21 UTF-16 units are at most 63 bytes of UTF-8 (3 per unit; a surrogate pair is 4 for 2).
  if (v.length <= 21 || Buffer.byteLength(v, 'utf8') <= MAX_IDENTIFIER_BYTES) return v;
  let bytes = 0;
  let i = 0;
  while (i < v.length) {
    const c = v.codePointAt(i)!;
    const n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (bytes + n > MAX_IDENTIFIER_BYTES) break;
    bytes += n;
    i += c >= 0x10000 ? 2 : 1;
  }
  return v.slice(0, i);
}

/**
 * Folds ASCII letters only, as PostgreSQL does for identifiers in multi-byte encodings.
 * hasUpper false: the caller saw no upper-case letter, s is returned as it is.
 */
export function foldAscii(s: string, hasUpper: boolean): string {
  if (!hasUpper) return s;
  let out = '';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) {
      out += s.slice(from, i) + String.fromCharCode(c + 32);
      from = i + 1;
    }
  }
  return out + s.slice(from);
}

// ---------------------------------------------------------------------------------------------
// The tokeniser

/**
 * Tokens of the text, or null when it cannot be tokenised with confidence. scs: the session's
 * standard_conforming_strings.
 */
export function tokenize(sql: string, scs: boolean): Tok[] | null {
  const toks: Tok[] = [];
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 32 || c === 9 || c === 10 || c === 13 || c === 12 || c === 11) { i++; continue; }
    if (c === 45 && sql.charCodeAt(i + 1) === 45) { // -- comment
      i = lineCommentEnd(sql, i);
      continue;
    }
    if (c === 47 && sql.charCodeAt(i + 1) === 42) { // /* nested */ comment
      const e = blockCommentEnd(sql, i);
      if (e < 0) return null;
      i = e;
      continue;
    }
    if (c === 39) { // 'string'
      const e = scanString(sql, i + 1, !scs);
      if (e < 0) return null;
      toks.push({ k: STR, v: sql.slice(i + 1, e - 1) });
      i = e;
      continue;
    }
    if (c === 34) { // "identifier"
      let j = i + 1;
      let v = '';
      let from = j;
      for (;;) {
        if (j >= n) return null;
        if (sql.charCodeAt(j) === 34) {
          if (sql.charCodeAt(j + 1) === 34) { v += sql.slice(from, j + 1); j += 2; from = j; continue; }
          break;
        }
        j++;
      }
      v += sql.slice(from, j);
      if (v.length === 0) return null;
      toks.push({ k: QID, v: truncateIdentifier(v) });
      i = j + 1;
      continue;
    }
    if (c === 36) { // $n or $tag$...$tag$
      const d = sql.charCodeAt(i + 1);
      if (isDigit(d)) {
        let j = i + 1;
        while (j < n && isDigit(sql.charCodeAt(j))) j++;
        toks.push({ k: PARAM, v: sql.slice(i, j) });
        i = j;
        continue;
      }
      const j = dollarTagEnd(sql, i);
      if (j < 0) return null; // a stray $: not something we understand
      const tag = sql.slice(i, j + 1);
      const close = sql.indexOf(tag, j + 1);
      if (close < 0) return null;
      toks.push({ k: STR, v: sql.slice(j + 1, close) });
      i = close + tag.length;
      continue;
    }
    if (isIdentStart(c)) {
      let j = i + 1;
      let upper = c >= 65 && c <= 90;
      while (j < n) {
        const e = sql.charCodeAt(j);
        if (!isIdentChar(e)) break;
        if (e >= 65 && e <= 90) upper = true;
        j++;
      }
      if (j === i + 1) {
        const next = sql.charCodeAt(j);
        const lc = c | 32;
        if (next === 39 && (lc === 101 || lc === 98 || lc === 120 || lc === 110)) { // E'' B'' X'' N''
          const e = scanString(sql, j + 1, lc === 101 || !scs);
          if (e < 0) return null;
          toks.push({ k: STR, v: sql.slice(j + 1, e - 1) });
          i = e;
          continue;
        }
        if (lc === 117 && next === 38) { // U&'...' / U&"...": escapes we do not decode
          const q = sql.charCodeAt(j + 1);
          if (q === 39 || q === 34) return null;
        }
      }
      toks.push({ k: WORD, v: truncateIdentifier(foldAscii(sql.slice(i, j), upper)) });
      i = j;
      continue;
    }
    if (isDigit(c) || (c === 46 && isDigit(sql.charCodeAt(i + 1)))) {
      const j = numberEnd(sql, i);
      toks.push({ k: NUM, v: sql.slice(i, j) });
      i = j;
      continue;
    }
    switch (c) {
      case 40: toks.push({ k: LP, v: '(' }); i++; continue;
      case 41: toks.push({ k: RP, v: ')' }); i++; continue;
      case 44: toks.push({ k: COMMA, v: ',' }); i++; continue;
      case 59: toks.push({ k: SEMI, v: ';' }); i++; continue;
      case 46: toks.push({ k: DOT, v: '.' }); i++; continue;
      case 91: toks.push({ k: LB, v: '[' }); i++; continue;
      case 93: toks.push({ k: RB, v: ']' }); i++; continue;
      case 58:
        if (sql.charCodeAt(i + 1) === 58) { toks.push({ k: CAST, v: '::' }); i += 2; }
        else { toks.push({ k: OP, v: ':' }); i++; }
        continue;
    }
    if (isOpChar(c)) {
      const j = operatorRunEnd(sql, i);
      toks.push({ k: OP, v: sql.slice(i, j) });
      i = j;
      continue;
    }
    toks.push({ k: OP, v: sql[i]! });
    i++;
  }
  return toks;
}

// ---------------------------------------------------------------------------------------------
// Scanners (each returns the index where its construct ends)

/**
 * Index of the character that ends the `--` comment at i: its first `\n` or `\r` (PostgreSQL's
 * lexer: a comment is `--` then any characters but newline, and a newline is either), or the end
 * of the text. Ending only at `\n` hid `SELECT 1 --<CR>; DELETE FROM t` from the classifier
 * (issue 14, finding 3).
 */
export function lineCommentEnd(sql: string, i: number): number {
  const n = sql.length;
  for (let j = i + 2; j < n; j++) {
    const c = sql.charCodeAt(j);
    if (c === 10 || c === 13) return j;
  }
  return n;
}

/** End of the run of operator characters at i (a `--` or `/*` inside it starts a comment, not an operator). */
export function operatorRunEnd(sql: string, i: number): number {
  const n = sql.length;
  let j = i + 1;
  while (j < n && isOpChar(sql.charCodeAt(j))) {
    const e = sql.charCodeAt(j);
    const f = sql.charCodeAt(j + 1);
    if ((e === 45 && f === 45) || (e === 47 && f === 42)) break; // a comment starts
    j++;
  }
  return j;
}

/** For a `$` at i: the index of the `$` that closes a dollar-quote tag (`$$`, `$tag$`), or -1 when it is not one. */
export function dollarTagEnd(sql: string, i: number): number {
  const n = sql.length;
  let j = i + 1;
  if (isIdentStart(sql.charCodeAt(j))) {
    j++;
    while (j < n) {
      const e = sql.charCodeAt(j);
      if (!isIdentStart(e) && !isDigit(e)) break;
      j++;
    }
  }
  return sql.charCodeAt(j) === 36 ? j : -1;
}

/** Index after the (nested) block comment whose slash-star is at i; -1 when it never ends. */
export function blockCommentEnd(sql: string, i: number): number {
  const n = sql.length;
  let depth = 1;
  i += 2;
  while (i < n && depth > 0) {
    const d = sql.charCodeAt(i);
    if (d === 47 && sql.charCodeAt(i + 1) === 42) {
      depth++;
      i += 2;
    } else if (d === 42 && sql.charCodeAt(i + 1) === 47) {
      depth--;
      i += 2;
    } else i++;
  }
  return depth > 0 ? -1 : i;
}

/**
 * Index after a number starting at i: digits, letters, _ (so 0x1F, 1_000 and junk like 12abc
 * stay one token), '.' (not '..'), and an exponent's sign.
 */
export function numberEnd(sql: string, i: number): number {
  const n = sql.length;
  let j = i + 1;
  while (j < n) {
    const e = sql.charCodeAt(j);
    if (isDigit(e) || e === 95 || (e >= 97 && e <= 122) || (e >= 65 && e <= 90)) {
      if ((e === 101 || e === 69) && (sql.charCodeAt(j + 1) === 43 || sql.charCodeAt(j + 1) === 45)) j++;
      j++;
    } else if (e === 46 && sql.charCodeAt(j + 1) !== 46) j++;
    else break;
  }
  return j;
}

/**
 * Index just after the closing quote of a string whose content starts at i, or -1. backslash:
 * a backslash escapes the next character (E'...' strings, or standard_conforming_strings off).
 */
export function scanString(sql: string, i: number, backslash: boolean): number {
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 39) {
      if (sql.charCodeAt(i + 1) === 39) { i += 2; continue; }
      return i + 1;
    }
    if (c === 92 && backslash) { i += 2; continue; }
    i++;
  }
  return -1;
}
