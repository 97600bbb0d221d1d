/**
 * The bytes of one shared (L2) cache entry in Redis, and the names of the keys around it.
 *
 * An entry is an answer as PostgreSQL sent it plus what is needed to trust it:
 *
 *   0   4  magic "pgsc"
 *   4   1  format version (2)
 *   5   1  flags: bit 0, the answer starts with ParseComplete
 *   6   6  expiry: ms since the epoch (big-endian) after which it is no answer
 *  12   1  number of generations g
 *  13      g times: length (1 byte), generation (latin1)
 *   .   4  answer length n (big-endian)
 *   .   n  the answer: backend messages, byte for byte
 *   .  16  tag: the first 16 bytes of HMAC-SHA256(key, identity digest, everything above)
 *
 * The identity digest is SHA-256 of the request's identity (session scope and request key), the
 * same digest that names the Redis key. The tag covers it, so a value is accepted only for the
 * request it was stored for: a value copied under another key, written by another program or
 * another format version, truncated or with any byte changed is refused, never answered.
 *
 * The tag is keyed (--redis-key, the same secret in every instance): whoever can answer
 * pgscribe's Redis reads (a compromised or impersonated Redis, anyone on an unencrypted link)
 * cannot forge an answer, since an unkeyed checksum over a digest that is the key's own last part
 * can be computed by anyone. What such a Redis can still do is replay a genuine entry of the same
 * request, or hide one: the expiry inside the tag bounds a replay to the entry's own TTL, as if
 * the write that made it stale had gone unseen for that long (see the README's shared cache
 * section). TLS to Redis (--redis-tls) keeps the link itself private.
 *
 * The generations are those of the relations the answer read (and of the database and of the
 * whole cache) when the flight that computed it began; a value whose generations are not all
 * current was computed before a write that committed since (see l2.ts).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

const MAGIC = 0x70677363; // "pgsc"
export const FORMAT_VERSION = 2;
const TAG_BYTES = 16;
/** Largest expiry the 6 bytes hold (the year 10889). */
const MAX_EXPIRY = 2 ** 48 - 1;
const FLAG_PARSE = 1;
/** Bytes before the generations: magic, version, flags, expiry, count. */
const HEAD_BYTES = 13;
/** Generations per entry (database-wide, whole cache, and the relations read). */
export const MAX_GENERATIONS = 255;
const MAX_GENERATION_LENGTH = 255;

export interface L2Entry {
  /** The answer, a copy of its own. */
  bytes: Buffer;
  hasParse: boolean;
}

export type DecodeResult =
  | { ok: true; entry: L2Entry; generations: string[]; expiresAt: number }
  /**
   * foreign: not this format or version; corrupt: tag or structure wrong (another request's value,
   * another key, or forged); expired: past the expiry it was stored with (Redis kept it longer).
   */
  | { ok: false; why: 'foreign' | 'corrupt' | 'expired' };

/** SHA-256 of a request's identity: the session's scope (UTF-8) and its key (latin1: the bytes the client sent). */
export function identityDigest(scope: string, key: string): Buffer {
  return createHash('sha256').update(scope, 'utf8').update('\0').update(key, 'latin1').digest();
}

function tag(key: Buffer, digest: Buffer, body: Buffer, end: number): Buffer {
  return createHmac('sha256', key).update(digest).update(body.subarray(0, end)).digest().subarray(0, TAG_BYTES);
}

/**
 * The entry's bytes, tagged with key; null when a generation does not fit the format (the answer
 * is then not shared). expiresAt: ms since the epoch.
 */
export function encodeEntry(key: Buffer, digest: Buffer, entry: L2Entry, generations: readonly string[], expiresAt: number): Buffer | null {
  if (generations.length > MAX_GENERATIONS) return null;
  let size = HEAD_BYTES + 4 + entry.bytes.length + TAG_BYTES;
  for (const g of generations) {
    if (g.length > MAX_GENERATION_LENGTH) return null;
    size += 1 + g.length;
  }
  const out = Buffer.allocUnsafe(size);
  out.writeUInt32BE(MAGIC, 0);
  out[4] = FORMAT_VERSION;
  out[5] = entry.hasParse ? FLAG_PARSE : 0;
  out.writeUIntBE(Math.max(0, Math.min(MAX_EXPIRY, Math.round(expiresAt))), 6, 6);
  out[12] = generations.length;
  let off = HEAD_BYTES;
  for (const g of generations) {
    out[off++] = g.length;
    off += out.write(g, off, 'latin1');
  }
  out.writeUInt32BE(entry.bytes.length, off);
  off += 4;
  off += entry.bytes.copy(out, off);
  tag(key, digest, out, off).copy(out, off);
  return out;
}

/** Check and take apart a value read from Redis for the request with this identity digest, at now (ms since the epoch). */
export function decodeEntry(key: Buffer, digest: Buffer, v: Buffer, now: number): DecodeResult {
  if (v.length < HEAD_BYTES + 4 + TAG_BYTES || v.readUInt32BE(0) !== MAGIC || v[4] !== FORMAT_VERSION) return { ok: false, why: 'foreign' };
  const end = v.length - TAG_BYTES;
  // The tag first: nothing of a value is believed (not even its lengths) before it holds.
  if (!timingSafeEqual(tag(key, digest, v, end), v.subarray(end))) return { ok: false, why: 'corrupt' };
  if ((v[5]! & ~FLAG_PARSE) !== 0) return { ok: false, why: 'corrupt' };
  const expiresAt = v.readUIntBE(6, 6);
  if (expiresAt <= now) return { ok: false, why: 'expired' };
  const count = v[12]!;
  const generations: string[] = [];
  let off = HEAD_BYTES;
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
  return { ok: true, entry: { bytes, hasParse: (v[5]! & FLAG_PARSE) !== 0 }, generations, expiresAt };
}

/**
 * A name part inside a Redis key or a channel message: `%` and `:` percent-encoded, so that a
 * database or relation name containing `:` cannot make two different keys equal.
 */
export function keyPart(s: string): string {
  return /[%:]/.test(s) ? s.replace(/%/g, '%25').replace(/:/g, '%3A') : s;
}
