/**
 * The shape of a SQL text for memoising its classification: numbers replaced, everything else
 * kept. Its scanning rules follow the tokeniser's (lexer.ts) for the constructs it handles and
 * give up (return the text as it is) on the others.
 */
import { isIdentChar } from './lexer';

/**
 * The text with every numeric literal replaced by `1`. Numbers inside '...' and "..." stay. A text with a backslash, a dollar quote or a comment
 * is returned as it is (their quoting rules are the tokeniser's business, not worth a second copy).
 */
export function shapeOf(sql: string): string {
  let out = '';
  let from = 0;
  const n = sql.length;
  for (let i = 0; i < n; ) {
    const c = sql.charCodeAt(i);
    if (c === 39 || c === 34) {
      // '...' or "...": a doubled quote stays inside
      let j = i + 1;
      for (;;) {
        const q = sql.indexOf(c === 39 ? "'" : '"', j);
        if (q < 0) return sql; // unterminated: leave it to the tokeniser
        if (sql.charCodeAt(q + 1) === c) j = q + 2;
        else {
          i = q + 1;
          break;
        }
      }
      continue;
    }
    if (c === 92) return sql; // backslash
    if (c === 36 && !(sql.charCodeAt(i + 1) >= 48 && sql.charCodeAt(i + 1) <= 57)) return sql; // $tag$
    if ((c === 45 && sql.charCodeAt(i + 1) === 45) || (c === 47 && sql.charCodeAt(i + 1) === 42)) return sql; // -- /*
    if (c >= 48 && c <= 57 && (i === 0 || (!isIdentChar(sql.charCodeAt(i - 1)) && sql.charCodeAt(i - 1) !== 46))) {
      // A number (the tokeniser's rule: digits, letters, _, '.' not before '.', exponent sign).
      let j = i + 1;
      while (j < n) {
        const e = sql.charCodeAt(j);
        if (isIdentChar(e) && e !== 36) {
          if ((e === 101 || e === 69) && (sql.charCodeAt(j + 1) === 43 || sql.charCodeAt(j + 1) === 45)) j++;
          j++;
        } else if (e === 46 && sql.charCodeAt(j + 1) !== 46) j++;
        else break;
      }
      if (j - i > 1 || c !== 49) {
        out += sql.slice(from, i) + '1';
        from = j;
      }
      i = j;
      continue;
    }
    i++;
  }
  return from === 0 ? sql : out + sql.slice(from);
}

/** Statement kinds whose verdict no number can change: queries and plain DML. */
const NUMBER_BLIND: ReadonlySet<string> = new Set(['select', 'values', 'table', 'with', 'insert', 'update', 'delete', 'merge']);

/** Every statement of a text without comments, dollar quotes or backslashes starts with a NUMBER_BLIND word. */
function everyStatementNumberBlind(sql: string): boolean {
  const n = sql.length;
  let i = 0;
  while (i < n) {
    // The start of a statement: its first word, after spaces and opening parentheses.
    while (i < n) {
      const c = sql.charCodeAt(i);
      if (c === 32 || (c >= 9 && c <= 13) || c === 40 || c === 59) i++;
      else break;
    }
    if (i >= n) return true;
    let j = i;
    while (j < n && isIdentChar(sql.charCodeAt(j))) j++;
    if (!NUMBER_BLIND.has(sql.slice(i, j).toLowerCase())) return false;
    // Its end: the next `;` outside quotes.
    for (i = j; i < n; i++) {
      const c = sql.charCodeAt(i);
      if (c === 59) break;
      if (c === 39 || c === 34) {
        const q = sql.indexOf(c === 39 ? "'" : '"', i + 1);
        if (q < 0) return false;
        i = q; // a doubled quote closes and reopens: the same statement either way
      }
    }
  }
  return true;
}

/**
 * The key of a text in the classification memo (src/cache/policy.ts): its shape (shapeOf) when
 * every statement in it is a query or plain DML, whose verdict no number changes; the text itself
 * otherwise. `EXPLAIN (ANALYZE 0) UPDATE ...` and `EXPLAIN (ANALYZE 1) UPDATE ...` differ in
 * whether they write, and `COPY ... (HEADER 0)` variants are not worth the risk: sharing one
 * entry made the write that came second count as none (issue 14, finding 7).
 */
export function memoKeyOf(sql: string): string {
  const shape = shapeOf(sql);
  if (shape === sql) return sql;
  return everyStatementNumberBlind(shape) ? shape : sql;
}
