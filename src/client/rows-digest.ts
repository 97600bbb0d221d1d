/**
 * log-replay's `rowsDigest`: SHA-1 over the DataRow bodies of one query's answer, in order, so
 * that a replay can tell whether the same query gave the same rows without the log holding them.
 * DataRows reach the session whole (inside one socket read) or in pieces (streamed through,
 * framer.ts); both feed the same hash, which the completion tracker takes when the query ends.
 */
import { createHash, type Hash } from 'node:crypto';
import { Backend } from '../protocol/codes';

export class RowsDigest {
  private hash: Hash | null = null;
  /** Body bytes of a streamed DataRow still to come; 0 between messages. */
  private left = 0;

  /** A whole DataRow at buf[start, end), header included. */
  whole(buf: Buffer, start: number, end: number): void {
    this.update(buf, start + 5, end);
  }

  /** A piece of a streamed DataRow; the framer hands a message's 5-byte header first, whole. */
  piece(buf: Buffer, start: number, end: number): void {
    if (this.left === 0) {
      this.left = buf.readUInt32BE(start + 1) - 4;
      start += 5;
    }
    this.left -= end - start;
    this.update(buf, start, end);
  }

  /** An answer pgscribe gives itself (from the cache): its DataRows, walked message by message. */
  answer(buf: Buffer): void {
    let off = 0;
    while (off + 5 <= buf.length) {
      const end = off + 1 + buf.readUInt32BE(off + 1);
      if (end > buf.length) return;
      if (buf[off] === Backend.DataRow) this.update(buf, off + 5, end);
      off = end;
    }
  }

  /** The digest of the rows since the last take (first 16 hex digits), or undefined when there were none. */
  take(): string | undefined {
    const h = this.hash;
    if (h === null) return undefined;
    this.hash = null;
    return h.digest('hex').slice(0, 16);
  }

  private update(buf: Buffer, start: number, end: number): void {
    if (end > start) (this.hash ??= createHash('sha1')).update(buf.subarray(start, end));
  }
}
