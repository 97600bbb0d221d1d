/**
 * The frontend messages replay sends, rebuilt from log lines byte for byte as the original
 * client sent them (names, parameter types and formats, values, row limits).
 *
 * Unlike src/pg/messages.ts (pgscribe's own connection, which refuses to build a string with a
 * NUL in it), these never throw: a text from a damaged or hostile log goes to the target as it
 * is, and the target refuses the message, which ends that session alone. log-lines.ts has already
 * kept out the numbers the wire cannot carry.
 *
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html
 */
import { Frontend } from '../protocol/codes';
import type { LoggedParam } from './log-lines';

/** A growing message: type byte, length patched at the end. */
class MessageWriter {
  private buf: Buffer;
  private len = 5;

  constructor(type: number, hint = 64) {
    this.buf = Buffer.allocUnsafe(Math.max(hint, 16));
    this.buf[0] = type;
  }
  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  cstring(s: string): this {
    const n = Buffer.byteLength(s);
    this.room(n + 1);
    this.buf.write(s, this.len, 'utf8');
    this.len += n;
    this.buf[this.len++] = 0;
    return this;
  }
  int16(v: number): this {
    this.room(2);
    this.buf.writeInt16BE(v, this.len);
    this.len += 2;
    return this;
  }
  int32(v: number): this {
    this.room(4);
    this.buf.writeInt32BE(v, this.len);
    this.len += 4;
    return this;
  }
  uint32(v: number): this {
    this.room(4);
    this.buf.writeUInt32BE(v >>> 0, this.len);
    this.len += 4;
    return this;
  }
  bytes(b: Buffer): this {
    this.room(b.length);
    b.copy(this.buf, this.len);
    this.len += b.length;
    return this;
  }
  byte(v: number): this {
    this.room(1);
    this.buf[this.len++] = v;
    return this;
  }
  done(): Buffer {
    this.buf.writeUInt32BE(this.len - 1, 1);
    return this.buf.subarray(0, this.len);
  }
}

export function encodeQueryMessage(sql: string): Buffer {
  return new MessageWriter(Frontend.Query, Buffer.byteLength(sql) + 6).cstring(sql).done();
}

export function encodeParse(name: string, sql: string, paramTypes: readonly number[]): Buffer {
  const w = new MessageWriter(Frontend.Parse, Buffer.byteLength(sql) + name.length + 16 + paramTypes.length * 4).cstring(name).cstring(sql).int16(paramTypes.length);
  // OIDs are unsigned 32-bit.
  for (const t of paramTypes) w.uint32(t);
  return w.done();
}

/** A logged parameter's bytes: text as UTF-8, hex back to bytes; null stays NULL. */
export function paramBytes(p: LoggedParam): Buffer | null {
  if (p === null) return null;
  return 'hex' in p ? Buffer.from(p.hex, 'hex') : Buffer.from(p.text, 'utf8');
}

export function encodeBind(portal: string, statement: string, paramFormats: readonly number[], params: readonly LoggedParam[], resultFormats: readonly number[]): Buffer {
  const w = new MessageWriter(Frontend.Bind, 64).cstring(portal).cstring(statement).int16(paramFormats.length);
  for (const f of paramFormats) w.int16(f);
  w.int16(params.length);
  for (const p of params) {
    const b = paramBytes(p);
    if (b === null) w.int32(-1);
    else w.int32(b.length).bytes(b);
  }
  w.int16(resultFormats.length);
  for (const f of resultFormats) w.int16(f);
  return w.done();
}

export function encodeExecute(portal: string, maxRows: number): Buffer {
  return new MessageWriter(Frontend.Execute).cstring(portal).int32(maxRows).done();
}

export function encodeDescribe(target: 'S' | 'P', name: string): Buffer {
  return new MessageWriter(Frontend.Describe).byte(target.charCodeAt(0)).cstring(name).done();
}

export function encodeClose(target: 'S' | 'P', name: string): Buffer {
  return new MessageWriter(Frontend.Close).byte(target.charCodeAt(0)).cstring(name).done();
}

export const SYNC = Buffer.from([Frontend.Sync, 0, 0, 0, 4]);
export const FLUSH = Buffer.from([Frontend.Flush, 0, 0, 0, 4]);
