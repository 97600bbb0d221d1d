/**
 * Collects the byte ranges to send to one socket while a chunk is processed, and writes them
 * with as few socket writes as possible: consecutive ranges of the same chunk merge into one.
 */
import type { Socket } from 'node:net';

export class Outbox {
  private bufs: Buffer[] = [];
  private buf: Buffer | null = null;
  private start = 0;
  private end = 0;

  /** Queue buf[start, end) after everything queued so far. The bytes must stay untouched until flush(). */
  push(buf: Buffer, start: number, end: number): void {
    if (buf === this.buf && start === this.end) {
      this.end = end;
      return;
    }
    if (this.buf !== null) this.bufs.push(this.buf.subarray(this.start, this.end));
    this.buf = buf;
    this.start = start;
    this.end = end;
  }

  get empty(): boolean {
    return this.buf === null;
  }

  /** Write what is queued. Returns socket.write's verdict (false: the peer is slow, stop reading). */
  flush(socket: Socket): boolean {
    if (this.buf === null) return true;
    const last = this.start === 0 && this.end === this.buf.length ? this.buf : this.buf.subarray(this.start, this.end);
    this.buf = null;
    let data: Buffer;
    if (this.bufs.length === 0) {
      data = last;
    } else {
      this.bufs.push(last);
      data = Buffer.concat(this.bufs);
      this.bufs = [];
    }
    if (socket.destroyed || !socket.writable) return true;
    return socket.write(data);
  }

  /**
   * Whether bytes pushed here may still be referenced after flush(): something is queued, or
   * the socket (null: none yet) did not take its last write whole. A reused read buffer
   * (src/net/reused-reads.ts) must not be overwritten while they are.
   */
  holds(socket: Socket | null): boolean {
    return this.buf !== null || socket === null || socket.writableLength !== 0;
  }

  /** Forget what is queued (the connection is being torn down). */
  clear(): void {
    this.buf = null;
    this.bufs = [];
  }
}
