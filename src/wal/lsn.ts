/**
 * WAL positions (LSNs) and PostgreSQL timestamps as the replication protocol carries them.
 *
 * An LSN is an unsigned 64-bit byte position in the WAL: a bigint here, because a Number loses
 * exactness past 2^53 and a busy server's WAL passes that (8 PiB of WAL is not absurd over a
 * cluster's life, and pg_resetwal can jump far ahead). SQL shows it as two hex halves, `16/B374D848`.
 *
 * @see https://www.postgresql.org/docs/15/datatype-pg-lsn.html
 */

/** The invalid LSN (InvalidXLogRecPtr): "no position". */
export const INVALID_LSN = 0n;

const MAX_LSN = 0xffff_ffff_ffff_ffffn;

/** `16/B374D848` (as pg_current_wal_lsn() prints it) to a bigint; null when it is not an LSN. */
export function parseLsn(text: string): bigint | null {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (m === null) return null;
  return (BigInt('0x' + m[1]!) << 32n) | BigInt('0x' + m[2]!);
}

/** A bigint LSN as PostgreSQL prints it: upper and lower 32 bits in hex, upper case. */
export function formatLsn(lsn: bigint): string {
  if (lsn < 0n || lsn > MAX_LSN) throw new RangeError(`not an LSN: ${lsn}`);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

/** Milliseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC). */
const PG_EPOCH_MS = 946_684_800_000;

/** A TimestampTz (microseconds since 2000-01-01 UTC) as Unix milliseconds (sub-ms truncated). */
export function pgTimeToMs(micros: bigint): number {
  return Number(micros / 1000n) + PG_EPOCH_MS;
}

/** Unix milliseconds as a TimestampTz (microseconds since 2000-01-01 UTC). */
export function msToPgTime(ms: number): bigint {
  return BigInt(Math.trunc(ms) - PG_EPOCH_MS) * 1000n;
}
