/**
 * What no log line may carry raw, for the query log (format.ts) and the operational log (ops.ts):
 * characters that end a line for some reader, move a terminal's cursor, or reorder what a human
 * sees. Both logs hold text a client chose (SQL, parameters, user names), and a reader must never
 * be shown a line or a record the proxy did not write.
 *
 * - C0 controls and DEL (newlines, escape sequences), and C1 controls (U+0085 ends a line for
 *   Python's splitlines, U+009B starts a terminal escape);
 * - U+2028 and U+2029, line and paragraph separators (splitlines, JavaScript);
 * - the bidirectional formatting characters (U+061C, U+200E, U+200F, U+202A-U+202E,
 *   U+2066-U+2069): "Trojan Source" text that shows one statement and holds another.
 */

/** In a text field: C0, DEL, C1 (escaped as \xHH), backslash, and the characters above (\uHHHH). */
// eslint-disable-next-line no-control-regex
export const TEXT_UNSAFE = /[\x00-\x1f\x7f-\x9f\\\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;
// eslint-disable-next-line no-control-regex
export const TEXT_UNSAFE_ALL = /[\x00-\x1f\x7f-\x9f\\\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/** What JSON.stringify leaves raw (it escapes C0 and quotes): DEL, C1 and the characters above. */
const JSON_UNSAFE = /[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;
const JSON_UNSAFE_ALL = /[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

function unicodeEscape(c: string): string {
  return '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0');
}

/** JSON text (from JSON.stringify) with nothing raw that a reader could take for a line end or a reordering. */
export function jsonSafe(json: string): string {
  // test() first: almost every line has nothing to escape, and a replace() with a function
  // costs more than the scan even then (a 200-character line: 240 ns against 170, issue 21).
  return JSON_UNSAFE.test(json) ? json.replace(JSON_UNSAFE_ALL, unicodeEscape) : json;
}
