/**
 * Splits a byte stream into PostgreSQL protocol messages without copying when it can.
 *
 * Only the header (type byte + 4-byte length, or the 4-byte length of an untyped startup packet)
 * is parsed here. A message that lies whole inside one socket chunk is handed over as a view of
 * that chunk. A message that straddles chunks is either assembled into one copy (types the caller
 * wants to look inside) or passed through piece by piece as it arrives (everything else), so a
 * 1 GB DataRow never has to sit in memory.
 *
 * Delivery can be held between two messages (hold/release): the rest of the chunk waits, as a
 * view, until the consumer can take more. The query log uses it to push back per message, not
 * per socket read: one 64 KiB read of Executes is thousands of log lines.
 *
 * @see https://www.postgresql.org/docs/15/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS
 */
import { MAX_STARTUP_PACKET_BYTES } from './codes';

export interface FrameHandler {
  /**
   * A complete message, header included, at buf[start, end). type is 0 for startup packets.
   * The view is only valid during the call: copy what you keep.
   */
  onMessage(type: number, buf: Buffer, start: number, end: number): void;
  /** A piece of a message that is streamed through instead of assembled, in order, header first. */
  onPassthrough(type: number, buf: Buffer, start: number, end: number): void;
  /** The declared length is impossible or over the limit; the framer ignores all further input. */
  onFramingError(reason: string, type: number, declaredLength: number): void;
}

export interface FramerOptions {
  /** Largest accepted message, counted as the length field declares it (excludes the type byte). */
  maxLength: number;
  /** Message types (by byte) that must be delivered whole through onMessage. */
  inspect: Iterable<number>;
  /** Start in startup mode: untyped packets (length + payload) until setStartup(false). */
  startup?: boolean;
  /** Largest accepted startup packet, length word included (default: PostgreSQL's, 10004). */
  maxStartupLength?: number;
  /** Largest accepted message of an inspected type (they are assembled in memory); default maxLength. */
  maxInspectLength?: number;
}

export class Framer {
  private readonly handler: FrameHandler;
  private readonly maxLength: number;
  private readonly maxStartupLength: number;
  private maxInspectLength: number;
  private readonly inspect = new Uint8Array(256);
  private startup: boolean;
  private failed = false;

  /** Header bytes of a message whose header straddles two chunks. */
  private readonly hdr = Buffer.alloc(5);
  private hdrLen = 0;
  /** A message being assembled across chunks. */
  private acc: Buffer | null = null;
  private accLen = 0;
  private accType = 0;
  /** Bytes still to pass through for a streamed message. */
  private streamRemaining = 0;
  private streamType = 0;
  /** Delivery is held (hold()): whole messages wait in `rest` until release(). */
  private held = false;
  /** What a held push did not deliver yet (a view of its chunk, or a copy when chunks pile up). */
  private rest: Buffer | null = null;

  constructor(handler: FrameHandler, opts: FramerOptions) {
    this.handler = handler;
    this.maxLength = opts.maxLength;
    this.maxStartupLength = opts.maxStartupLength ?? MAX_STARTUP_PACKET_BYTES;
    this.maxInspectLength = Math.min(opts.maxInspectLength ?? opts.maxLength, opts.maxLength);
    this.startup = opts.startup ?? false;
    for (const t of opts.inspect) this.inspect[t] = 1;
  }

  /** Largest message of an inspected type from now on (never above maxLength). */
  setMaxInspectLength(n: number): void {
    this.maxInspectLength = Math.min(n, this.maxLength);
  }

  /** Switch between untyped startup packets and typed messages. Call between messages only. */
  setStartup(on: boolean): void {
    this.startup = on;
  }

  /** True while part of a streamed message has been handed out and the rest has not. */
  get midPassthrough(): boolean {
    return this.streamRemaining > 0;
  }

  /** True when no partial message is held or being streamed. */
  get atBoundary(): boolean {
    return this.streamRemaining === 0 && this.acc === null && this.hdrLen === 0;
  }

  /** Bytes of a partially received message held in memory (assembly buffer or header), and of held input. */
  get bufferedBytes(): number {
    return (this.acc === null ? 0 : this.accLen) + this.hdrLen + (this.rest === null ? 0 : this.rest.length);
  }

  /**
   * Deliver nothing more after the message being delivered now (or from the next push): the
   * rest waits for release(). The caller pauses the socket too, so what waits is one read.
   */
  hold(): void {
    this.held = true;
  }

  /** Deliver what hold() kept back, then carry on as usual (until the next hold()). */
  release(): void {
    if (!this.held) return;
    this.held = false;
    const rest = this.rest;
    this.rest = null;
    if (rest !== null && !this.failed) this.push(rest);
  }

  /** hold() kept part of a pushed chunk back (as a view of it, until release()). */
  get holdsInput(): boolean {
    return this.rest !== null;
  }

  get isFailed(): boolean {
    return this.failed;
  }

  /** Stop delivering anything (the connection is going away). */
  stop(): void {
    this.failed = true;
    this.acc = null;
    this.rest = null;
  }

  push(chunk: Buffer): void {
    if (this.failed) return;
    if (this.held) {
      // A read that was already under way when delivery was held.
      this.rest = this.rest === null ? chunk : Buffer.concat([this.rest, chunk]);
      return;
    }
    const len = chunk.length;
    let off = 0;

    if (this.streamRemaining > 0) {
      const n = Math.min(this.streamRemaining, len);
      this.streamRemaining -= n;
      this.handler.onPassthrough(this.streamType, chunk, 0, n);
      if (this.streamRemaining > 0 || this.failed) return;
      off = n;
    } else if (this.acc !== null) {
      const acc = this.acc;
      const n = Math.min(acc.length - this.accLen, len);
      chunk.copy(acc, this.accLen, 0, n);
      this.accLen += n;
      if (this.accLen < acc.length) return;
      this.acc = null;
      off = n;
      this.handler.onMessage(this.accType, acc, 0, acc.length);
      if (this.failed) return;
      if (this.held) return this.keep(chunk, off);
    } else if (this.hdrLen > 0) {
      const hs = this.startup ? 4 : 5;
      const n = Math.min(hs - this.hdrLen, len);
      chunk.copy(this.hdr, this.hdrLen, 0, n);
      this.hdrLen += n;
      off = n;
      if (this.hdrLen < hs) return;
      this.hdrLen = 0;
      const type = this.startup ? 0 : this.hdr[0]!;
      const length = this.hdr.readUInt32BE(hs - 4);
      const total = this.check(type, length);
      if (total < 0) return;
      const header = Buffer.from(this.hdr.subarray(0, hs));
      if (this.startup || this.inspect[type] === 1) {
        const acc = Buffer.allocUnsafe(total);
        header.copy(acc, 0);
        const m = Math.min(total - hs, len - off);
        chunk.copy(acc, hs, off, off + m);
        off += m;
        if (hs + m < total) {
          this.acc = acc;
          this.accLen = hs + m;
          this.accType = type;
          return;
        }
        this.handler.onMessage(type, acc, 0, total);
        if (this.failed) return;
        if (this.held) return this.keep(chunk, off);
      } else {
        this.handler.onPassthrough(type, header, 0, hs);
        if (this.failed) return;
        const m = Math.min(total - hs, len - off);
        if (m > 0) this.handler.onPassthrough(type, chunk, off, off + m);
        off += m;
        if (hs + m < total) {
          this.streamRemaining = total - hs - m;
          this.streamType = type;
          return;
        }
      }
    }

    while (off < len && !this.failed) {
      const startup = this.startup;
      const hs = startup ? 4 : 5;
      if (len - off < hs) {
        chunk.copy(this.hdr, 0, off, len);
        this.hdrLen = len - off;
        return;
      }
      const type = startup ? 0 : chunk[off]!;
      const length = chunk.readUInt32BE(off + hs - 4);
      const total = this.check(type, length);
      if (total < 0) return;
      if (len - off >= total) {
        this.handler.onMessage(type, chunk, off, off + total);
        off += total;
        if (this.held) return this.keep(chunk, off);
        continue;
      }
      // The message straddles into the next chunk.
      if (startup || this.inspect[type] === 1) {
        const acc = Buffer.allocUnsafe(total);
        chunk.copy(acc, 0, off, len);
        this.acc = acc;
        this.accLen = len - off;
        this.accType = type;
      } else {
        this.streamRemaining = total - (len - off);
        this.streamType = type;
        this.handler.onPassthrough(type, chunk, off, len);
      }
      return;
    }
  }

  /** Delivery was held at chunk[off]: keep what is left of the chunk for release(). */
  private keep(chunk: Buffer, off: number): void {
    if (off < chunk.length) this.rest = chunk.subarray(off);
  }

  /** Validate a declared length; returns the full message size or -1 after reporting. */
  private check(type: number, length: number): number {
    if (this.startup) {
      if (length < 8 || length > this.maxStartupLength) {
        this.failed = true;
        this.handler.onFramingError(
          length < 8 ? `invalid startup packet length ${length}` : `startup packet length ${length} exceeds ${this.maxStartupLength}`,
          0,
          length,
        );
        return -1;
      }
      return length;
    }
    const max = this.inspect[type] === 1 ? this.maxInspectLength : this.maxLength;
    if (length < 4 || length > max) {
      this.failed = true;
      this.handler.onFramingError(
        length < 4
          ? `invalid message length ${length} for message type ${describeType(type)}`
          : `message type ${describeType(type)} of ${length} bytes exceeds the limit of ${max} bytes`,
        type,
        length,
      );
      return -1;
    }
    return length + 1;
  }
}

/** 'Q' (0x51) style rendering of a message type byte for error messages. */
export function describeType(type: number): string {
  const hex = '0x' + type.toString(16).padStart(2, '0');
  return type >= 0x20 && type < 0x7f ? `'${String.fromCharCode(type)}' (${hex})` : hex;
}
