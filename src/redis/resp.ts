/**
 * RESP2, the Redis serialization protocol: commands out (arrays of bulk strings), replies in
 * (simple strings, errors, integers, bulk strings, arrays, nested, and their null forms).
 *
 * The parser is incremental and synchronous: push() takes socket chunks as they come and calls
 * onReply for every complete top-level reply, in order, before it returns. Nothing is re-scanned
 * when a reply straddles chunks: a bulk string's payload is copied into a buffer of its declared
 * size as it arrives, a header line is kept only while its CRLF is missing, and arrays are
 * filled on an explicit stack. Lengths are distrusted: a bulk larger than maxBulkBytes, an array
 * longer than maxArrayLength, a header line longer than maxLineBytes or nesting deeper than
 * maxDepth is a protocol error, never an allocation; so is a reply whose parts add up to more than
 * maxReplyBytes (an array of a million large strings would otherwise be held whole).
 *
 * Bulk strings are returned as Buffers of their own (copies, never views of socket chunks):
 * callers keep them (cache entries).
 *
 * @see https://redis.io/docs/latest/develop/reference/protocol-spec/
 */

/** An error reply (`-ERR ...`, `-WRONGPASS ...`): a value, not an exception. */
export class RespError {
  constructor(readonly message: string) {}
}

/** A reply: simple string, error, integer, bulk string (null: `$-1`), array (null: `*-1`). */
export type RespValue = string | number | Buffer | null | RespError | RespValue[];

/** The stream is not RESP (or breaks a limit): the connection must be dropped. */
export class RespProtocolError extends Error {
  readonly code = 'PGSCRIBE_RESP_PROTOCOL';
}

export interface RespLimits {
  /** Largest bulk string accepted. */
  maxBulkBytes: number;
  /** Most elements of one array. */
  maxArrayLength: number;
  /** Longest header line (type byte to CRLF): simple strings, errors, integers, lengths. */
  maxLineBytes: number;
  /** Deepest array nesting. */
  maxDepth: number;
  /** Most bytes of one whole reply, its arrays' elements and header lines included. */
  maxReplyBytes: number;
}

export const DEFAULT_LIMITS: RespLimits = {
  maxBulkBytes: 512 << 20,
  maxArrayLength: 1 << 20,
  maxLineBytes: 64 << 10,
  maxDepth: 8,
  maxReplyBytes: (512 << 20) + (1 << 20),
};

const CR = 13;
const LF = 10;
const PLUS = 0x2b; // '+'
const MINUS = 0x2d; // '-'
const COLON = 0x3a; // ':'
const DOLLAR = 0x24; // '$'
const STAR = 0x2a; // '*'

/** Bulk strings at least this long get a backing store of their own (not a slice of Node's pool). */
const OWN_STORE_BYTES = 1024;

/** `*<n>\r\n` then `$<len>\r\n<bytes>\r\n` per argument, in one buffer. */
export function encodeCommand(args: readonly (string | Buffer)[]): Buffer {
  let size = 3 + String(args.length).length;
  const lens = new Array<number>(args.length);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const n = typeof a === 'string' ? Buffer.byteLength(a) : a.length;
    lens[i] = n;
    size += 5 + String(n).length + n;
  }
  const out = Buffer.allocUnsafe(size);
  let off = out.write(`*${args.length}\r\n`, 0, 'latin1');
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    off += out.write(`$${lens[i]}\r\n`, off, 'latin1');
    off += typeof a === 'string' ? out.write(a, off, 'utf8') : a.copy(out, off);
    out[off++] = CR;
    out[off++] = LF;
  }
  return out;
}

interface Frame {
  items: RespValue[];
  remaining: number;
}

export class RespParser {
  private readonly onReply: (v: RespValue) => void;
  private readonly limits: RespLimits;
  private readonly stack: Frame[] = [];
  /** A header line whose CRLF has not arrived yet. */
  private partial: Buffer | null = null;
  /** A bulk string being filled across chunks. */
  private bulk: Buffer | null = null;
  private bulkFilled = 0;
  /** CRLF bytes still expected after a bulk payload (2, 1 or 0). */
  private crlf = 0;
  private failed = false;
  /** Bytes of the reply being read so far (see maxReplyBytes). */
  private replyBytes = 0;

  constructor(onReply: (v: RespValue) => void, limits: Partial<RespLimits> = {}) {
    this.onReply = onReply;
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  /** Nothing partial is held: the bytes so far were whole replies. */
  get atBoundary(): boolean {
    return this.partial === null && this.bulk === null && this.crlf === 0 && this.stack.length === 0;
  }

  /** Forget any partial reply (the connection it came from is gone). */
  reset(): void {
    this.stack.length = 0;
    this.partial = null;
    this.bulk = null;
    this.bulkFilled = 0;
    this.crlf = 0;
    this.failed = false;
    this.replyBytes = 0;
  }

  /** Parse a chunk. Throws RespProtocolError; after that the parser ignores input until reset(). */
  push(chunk: Buffer): void {
    if (this.failed) return;
    try {
      this.consume(chunk);
    } catch (err) {
      this.failed = true;
      throw err;
    }
  }

  private consume(chunk: Buffer): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.bulk !== null || this.crlf > 0) {
        i = this.continueBulk(chunk, i);
        continue;
      }
      const nl = chunk.indexOf(LF, i);
      if (nl < 0) {
        this.hold(chunk, i, n);
        return;
      }
      let line: Buffer;
      let from: number;
      let to: number;
      if (this.partial !== null) {
        line = Buffer.concat([this.partial, chunk.subarray(i, nl + 1)]);
        this.partial = null;
        from = 0;
        to = line.length;
      } else {
        line = chunk;
        from = i;
        to = nl + 1;
      }
      if (to - from > this.limits.maxLineBytes) throw new RespProtocolError(`header line longer than ${this.limits.maxLineBytes} bytes`);
      this.count(to - from);
      i = nl + 1;
      if (to - from < 3 || line[to - 2] !== CR) throw new RespProtocolError('header line does not end with CRLF');
      const type = line[from]!;
      const textEnd = to - 2;
      switch (type) {
        case PLUS:
          this.emit(line.toString('utf8', from + 1, textEnd));
          break;
        case MINUS:
          this.emit(new RespError(line.toString('utf8', from + 1, textEnd)));
          break;
        case COLON:
          this.emit(parseInteger(line, from + 1, textEnd, 'integer'));
          break;
        case DOLLAR: {
          const len = parseInteger(line, from + 1, textEnd, 'bulk length');
          if (len === -1) {
            this.emit(null);
            break;
          }
          if (len < 0) throw new RespProtocolError(`negative bulk length ${len}`);
          if (len > this.limits.maxBulkBytes) throw new RespProtocolError(`bulk string of ${len} bytes is over the limit of ${this.limits.maxBulkBytes}`);
          this.count(len + 2);
          if (n - i >= len + 2) {
            // Whole in this chunk: one copy.
            if (chunk[i + len] !== CR || chunk[i + len + 1] !== LF) throw new RespProtocolError('bulk string not followed by CRLF');
            const v = len >= OWN_STORE_BYTES ? Buffer.allocUnsafeSlow(len) : Buffer.allocUnsafe(len);
            chunk.copy(v, 0, i, i + len);
            i += len + 2;
            this.emit(v);
          } else {
            this.bulk = len >= OWN_STORE_BYTES ? Buffer.allocUnsafeSlow(len) : Buffer.allocUnsafe(len);
            this.bulkFilled = 0;
            this.crlf = 2;
          }
          break;
        }
        case STAR: {
          const count = parseInteger(line, from + 1, textEnd, 'array length');
          if (count === -1) {
            this.emit(null);
            break;
          }
          if (count < 0) throw new RespProtocolError(`negative array length ${count}`);
          if (count > this.limits.maxArrayLength) throw new RespProtocolError(`array of ${count} elements is over the limit of ${this.limits.maxArrayLength}`);
          if (count === 0) {
            this.emit([]);
            break;
          }
          if (this.stack.length >= this.limits.maxDepth) throw new RespProtocolError(`arrays nested deeper than ${this.limits.maxDepth}`);
          this.stack.push({ items: [], remaining: count });
          break;
        }
        default:
          throw new RespProtocolError(`unexpected reply type byte 0x${type.toString(16).padStart(2, '0')}`);
      }
    }
  }

  /** Keep the start of a header line until its LF comes. */
  private hold(chunk: Buffer, from: number, to: number): void {
    const have = this.partial === null ? 0 : this.partial.length;
    if (have + to - from > this.limits.maxLineBytes) throw new RespProtocolError(`header line longer than ${this.limits.maxLineBytes} bytes`);
    const piece = chunk.subarray(from, to);
    this.partial = this.partial === null ? Buffer.from(piece) : Buffer.concat([this.partial, piece]);
  }

  /** Fill the bulk string in progress, then its CRLF; returns where parsing goes on. */
  private continueBulk(chunk: Buffer, i: number): number {
    const n = chunk.length;
    const b = this.bulk;
    if (b !== null && this.bulkFilled < b.length) {
      const take = Math.min(n - i, b.length - this.bulkFilled);
      chunk.copy(b, this.bulkFilled, i, i + take);
      this.bulkFilled += take;
      i += take;
      if (this.bulkFilled < b.length) return i;
    }
    while (this.crlf > 0 && i < n) {
      const want = this.crlf === 2 ? CR : LF;
      if (chunk[i] !== want) throw new RespProtocolError('bulk string not followed by CRLF');
      this.crlf--;
      i++;
    }
    if (this.crlf === 0 && b !== null) {
      this.bulk = null;
      this.emit(b);
    }
    return i;
  }

  /** A complete value: into the array being filled, or out as a reply. */
  /** n more bytes of the reply being read; throws past maxReplyBytes. */
  private count(n: number): void {
    this.replyBytes += n;
    if (this.replyBytes > this.limits.maxReplyBytes) throw new RespProtocolError(`reply of more than ${this.limits.maxReplyBytes} bytes`);
  }

  private emit(v: RespValue): void {
    for (;;) {
      const top = this.stack[this.stack.length - 1];
      if (top === undefined) {
        this.replyBytes = 0;
        this.onReply(v);
        return;
      }
      top.items.push(v);
      if (--top.remaining > 0) return;
      this.stack.pop();
      v = top.items;
    }
  }
}

/** A decimal integer (optional '-') in buf[from, to). */
function parseInteger(buf: Buffer, from: number, to: number, what: string): number {
  let i = from;
  let neg = false;
  if (buf[i] === MINUS) {
    neg = true;
    i++;
  }
  if (i >= to || to - i > 19) throw new RespProtocolError(`bad ${what} ${JSON.stringify(buf.toString('latin1', from, to))}`);
  let v = 0;
  for (; i < to; i++) {
    const d = buf[i]! - 48;
    if (d < 0 || d > 9) throw new RespProtocolError(`bad ${what} ${JSON.stringify(buf.toString('latin1', from, to))}`);
    v = v * 10 + d;
  }
  return neg ? -v : v;
}
