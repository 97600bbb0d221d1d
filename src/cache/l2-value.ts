/**
 * The bytes of one shared (L2) cache entry in Redis, and the names of the keys around it.
 *
 * An entry is an answer as PostgreSQL sent it plus what is needed to trust it:
 *
 *   0   4  magic "pgsc"
 *   4   1  format version (1)
 *   5   1  flags: bit 0, the answer starts with ParseComplete
 *   6   1  number of generations g
 *   7      g times: length (1 byte), generation (latin1)
 *   .   4  answer length n (big-endian)
 *   .   n  the answer: backend messages, byte for byte
 *   .  16  checksum: the first 16 bytes of SHA-256(identity digest, everything above)
 *
 * The identity digest is SHA-256 of the request's identity (session scope and request key), the
 * same digest that names the Redis key. The checksum covers it, so a value is accepted only for
 * the request it was stored for: a value copied under another key, written by another program or
 * another format version, truncated or with any byte changed is refused, never answered.
 * The generations are those of the relations the answer read (and of the database and of the
 * whole cache) when the flight that computed it began; a value whose generations are not all
 * current was computed before a write that committed since (see l2.ts).
 *
 * Anyone who can write to Redis can still forge an entry (the scheme is not a secret): Redis is
 * inside the trust boundary, like the PostgreSQL server. Protect it with AUTH and the network.
 */
import { createHash } from 'node:crypto';

const MAGIC = 0x70677363; // "pgsc"
export const FORMAT_VERSION = 1;
const CHECKSUM_BYTES = 16;
const FLAG_PARSE = 1;
/** Generations per entry (database-wide, whole cache, and the relations read). */
export const MAX_GENERATIONS = 255;
const MAX_GENERATION_LENGTH = 255;

export interface L2Entry {
  /** The answer, a copy of its own. */
  bytes: Buffer;
  hasParse: boolean;
}

export type DecodeResult =
  | { ok: true; entry: L2Entry; generations: string[] }
  /** foreign: not this format or version; corrupt: checksum or structure wrong (or another request's value). */
  | { ok: false; why: 'foreign' | 'corrupt' };

/** SHA-256 of a request's identity: the session's scope (UTF-8) and its key (latin1: the bytes the client sent). */
export function identityDigest(scope: string, key: string): Buffer {
  return createHash('sha256').update(scope, 'utf8').update('\0').update(key, 'latin1').digest();
}

function checksum(digest: Buffer, body: Buffer, end: number): Buffer {
  return createHash('sha256').update(digest).update(body.subarray(0, end)).digest().subarray(0, CHECKSUM_BYTES);
}

/** The entry's bytes; null when a generation does not fit the format (the answer is then not shared). */
export function encodeEntry(digest: Buffer, entry: L2Entry, generations: readonly string[]): Buffer | null {
  if (generations.length > MAX_GENERATIONS) return null;
  let size = 7 + 4 + entry.bytes.length + CHECKSUM_BYTES;
  for (const g of generations) {
    if (g.length > MAX_GENERATION_LENGTH) return null;
    size += 1 + g.length;
  }
  const out = Buffer.allocUnsafe(size);
  out.writeUInt32BE(MAGIC, 0);
  out[4] = FORMAT_VERSION;
  out[5] = entry.hasParse ? FLAG_PARSE : 0;
  out[6] = generations.length;
  let off = 7;
  for (const g of generations) {
    out[off++] = g.length;
    off += out.write(g, off, 'latin1');
  }
  out.writeUInt32BE(entry.bytes.length, off);
  off += 4;
  off += entry.bytes.copy(out, off);
  checksum(digest, out, off).copy(out, off);
  return out;
}

/** Check and take apart a value read from Redis for the request with this identity digest. */
export function decodeEntry(digest: Buffer, v: Buffer): DecodeResult {
  if (v.length < 7 + 4 + CHECKSUM_BYTES || v.readUInt32BE(0) !== MAGIC || v[4] !== FORMAT_VERSION) return { ok: false, why: 'foreign' };
  const end = v.length - CHECKSUM_BYTES;
  // The checksum first: nothing of a value is believed (not even its lengths) before it holds.
  if (!checksum(digest, v, end).equals(v.subarray(end))) return { ok: false, why: 'corrupt' };
  if ((v[5]! & ~FLAG_PARSE) !== 0) return { ok: false, why: 'corrupt' };
  const count = v[6]!;
  const generations: string[] = [];
  let off = 7;
  for (let i = 0; i < count; i++) {
    if (off >= end) return { ok: false, why: 'corrupt' };
    const len = v[off++]!;
    if (off + len > end) return { ok: false, why: 'corrupt' };
    generations.push(v.toString('latin1', off, off + len));
    off += len;
  }
  if (off + 4 > end) return { ok: false, why: 'corrupt' };
  const n = v.readUInt32BE(off);
  off += 4;
  if (off + n !== end) return { ok: false, why: 'corrupt' };
  // A copy of its own, not a view of the reply buffer: exactly what the L1 entry holds.
  const bytes = Buffer.allocUnsafeSlow(n);
  v.copy(bytes, 0, off, end);
  return { ok: true, entry: { bytes, hasParse: (v[5]! & FLAG_PARSE) !== 0 }, generations };
}

/**
 * A name part inside a Redis key or a channel message: `%` and `:` percent-encoded, so that a
 * database or relation name containing `:` cannot make two different keys equal.
 */
export function keyPart(s: string): string {
  return /[%:]/.test(s) ? s.replace(/%/g, '%25').replace(/:/g, '%3A') : s;
}
