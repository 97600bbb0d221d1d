/**
 * Parameter values that make a cacheable-looking statement volatile: `SELECT $1::timestamptz`
 * is cacheable by its text, but PostgreSQL resolves a bound 'now' or 'today' at execution time.
 * The classifier never sees values; the cache unit checks each text-format parameter with this.
 */
import { VOLATILE_STRINGS } from './keywords';

/**
 * True when a text-format parameter value is one of the date/time inputs that PostgreSQL resolves
 * at execution time ('now', 'today', ...): `SELECT $1::timestamptz` with 'now' must not be cached.
 */
export function isVolatileInput(buf: Buffer, start: number, end: number): boolean {
  const n = end - start;
  if (n < 3 || n > 12) return false;
  // Most values are numbers or words that cannot be one of these: decide on the first letter.
  let i = start;
  while (i < end && (buf[i] === 0x20 || (buf[i]! >= 0x09 && buf[i]! <= 0x0d))) i++;
  const c = (buf[i] ?? 0) | 0x20; // ASCII lower case
  if (c !== 0x6e && c !== 0x74 && c !== 0x79) return false; // n, t, y
  return VOLATILE_STRINGS.has(buf.toString('latin1', start, end).trim().toLowerCase());
}
