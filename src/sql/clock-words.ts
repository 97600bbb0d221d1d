/**
 * The date/time input words PostgreSQL resolves when a statement runs ('now', 'today',
 * 'tomorrow', 'yesterday'), found wherever PostgreSQL could read them as a date/time (issue 14,
 * finding 9): inside any string literal or parameter value, not only when the whole value is the
 * word. The datetime parser (ParseDateTime) reads a run of letters as one field and takes
 * punctuation, digits and spaces as delimiters, so `'[now,)'::tstzrange`, `'{now}'::date[]`,
 * `'(now,1)'::composite`, `' Today '` and `'today 10:00'` all reach it. The rule here: one of
 * the words as a maximal run of ASCII letters, in any case. A superset (a note saying "see you
 * tomorrow" also matches), which costs only a cache miss.
 *
 * @see https://www.postgresql.org/docs/15/datatype-datetime.html#DATATYPE-DATETIME-SPECIAL-TABLE
 */

/** A char code that is an ASCII letter. */
function isLetter(c: number): boolean {
  const l = c | 32;
  return l >= 97 && l <= 122;
}

/** The lower-case letter run [i, j) of `at` is one of the words. */
function isClockRun(at: (k: number) => number, i: number, j: number): boolean {
  const n = j - i;
  if (n !== 3 && n !== 5 && n !== 8 && n !== 9) return false;
  let w = '';
  for (let k = i; k < j; k++) w += String.fromCharCode(at(k) | 32);
  return w === 'now' || w === 'today' || w === 'tomorrow' || w === 'yesterday';
}

/** First letters of the words (n, t, y), lower case. */
function mayStart(c: number): boolean {
  const l = c | 32;
  return l === 110 || l === 116 || l === 121;
}

/** The text holds one of the words as a maximal run of ASCII letters, in any case. */
export function hasClockWord(s: string): boolean {
  const n = s.length;
  const at = (k: number): number => s.charCodeAt(k);
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (!isLetter(c)) continue;
    let j = i + 1;
    while (j < n && isLetter(s.charCodeAt(j))) j++;
    if (mayStart(c) && isClockRun(at, i, j)) return true;
    i = j;
  }
  return false;
}

/** hasClockWord over the bytes [start, end) read as latin1 (a parameter value in any format). */
export function hasClockWordBytes(buf: Buffer, start: number, end: number): boolean {
  const at = (k: number): number => buf[k]!;
  for (let i = start; i < end; i++) {
    const c = buf[i]!;
    if (!isLetter(c)) continue;
    let j = i + 1;
    while (j < end && isLetter(buf[j]!)) j++;
    if (mayStart(c) && isClockRun(at, i, j)) return true;
    i = j;
  }
  return false;
}

/** Hex digit value, or -1. */
function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 32;
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

/**
 * The content of a string literal with its escapes decoded as an E'...' string decodes them
 * (`\x6f`, `\157`, `\u006f`, `\U0000006f`, `\n` ..., and a doubled quote), whatever kind of
 * literal it came from: callers test both the raw and the decoded text, a superset.
 * @see https://www.postgresql.org/docs/15/sql-syntax-lexical.html#SQL-SYNTAX-STRINGS-ESCAPE
 */
export function decodeEscapes(raw: string): string {
  let out = '';
  const n = raw.length;
  for (let i = 0; i < n; i++) {
    const c = raw.charCodeAt(i);
    if (c === 39 && raw.charCodeAt(i + 1) === 39) { out += "'"; i++; continue; }
    if (c !== 92 || i + 1 >= n) { out += raw[i]!; continue; }
    const e = raw[i + 1]!;
    i++;
    if (e >= '0' && e <= '7') {
      let v = 0;
      let k = 0;
      while (k < 3 && i < n && raw[i]! >= '0' && raw[i]! <= '7') { v = v * 8 + raw.charCodeAt(i) - 48; i++; k++; }
      i--;
      out += String.fromCharCode(v & 0xff);
      continue;
    }
    const digits = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
    if (digits > 0) {
      let v = 0;
      let k = 0;
      while (k < digits && i + 1 < n && hexValue(raw.charCodeAt(i + 1)) >= 0) { v = v * 16 + hexValue(raw.charCodeAt(i + 1)); i++; k++; }
      if (k === 0) { out += e; continue; }
      out += v <= 0x10ffff ? String.fromCodePoint(v) : '';
      continue;
    }
    out += e === 'b' ? '\b' : e === 'f' ? '\f' : e === 'n' ? '\n' : e === 'r' ? '\r' : e === 't' ? '\t' : e;
  }
  return out;
}

/** A string literal's content (escapes not processed) holds a clock word, raw or decoded. */
export function literalHasClockWord(raw: string): boolean {
  if (hasClockWord(raw)) return true;
  return (raw.includes('\\') || raw.includes("''")) && hasClockWord(decodeEscapes(raw));
}
