/**
 * Parameter values that make a cacheable-looking statement volatile: `SELECT $1::timestamptz`
 * is cacheable by its text, but PostgreSQL resolves a bound 'now' or 'today' at execution time.
 * The classifier never sees values; the cache unit checks every parameter value with this.
 */
import { hasClockWordBytes } from './clock-words';

/**
 * True when a parameter value may hold a date/time input that PostgreSQL resolves at execution
 * time ('now', 'today', 'tomorrow', 'yesterday', in any case, anywhere in the value: `[now,)` for
 * a range, `{now}` for an array, ` Today `), whatever the parameter's format: a binary-format
 * text parameter is its bytes, a binary array of text holds its elements' bytes. The rule is
 * clock-words.ts's (a maximal run of ASCII letters), so a binary value whose bytes happen to
 * spell one of the words is refused too, which only costs a cache miss.
 */
export function isVolatileInput(buf: Buffer, start: number, end: number): boolean {
  return end - start >= 3 && hasClockWordBytes(buf, start, end);
}
