// A slow, obvious PostgreSQL protocol encoder and a raw-socket client, used only by tests.
// Deliberately independent of src/protocol so that tests compare two implementations.

import * as net from 'net';
import { createHash } from 'crypto';
import { sleep } from './time';

/** A backend or frontend message: type byte, length, body. */
export function msg(type: string, body: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.write(type, 0, 'latin1');
  h.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([h, body]);
}
export const cstr = (s: string) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
export const i16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
export const i32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

export const enc = {
  startup(params: Record<string, string>, version = 0x00030000): Buffer {
    const parts = [i32(version)];
    for (const [k, v] of Object.entries(params)) parts.push(cstr(k), cstr(v));
    parts.push(Buffer.from([0]));
    const body = Buffer.concat(parts);
    return Buffer.concat([i32(body.length + 4), body]);
  },
  sslRequest: () => Buffer.concat([i32(8), i32(80877103)]),
  gssencRequest: () => Buffer.concat([i32(8), i32(80877104)]),
  cancel: (pid: number, secret: number) => Buffer.concat([i32(16), i32(80877102), i32(pid), i32(secret)]),
  query: (sql: string) => msg('Q', cstr(sql)),
  parse: (name: string, sql: string, types: number[] = []) => msg('P', Buffer.concat([cstr(name), cstr(sql), i16(types.length), ...types.map(i32)])),
  bind: (portal: string, stmt: string, params: (string | Buffer | null)[], paramFormats: number[] = [], resultFormats: number[] = []) =>
    msg(
      'B',
      Buffer.concat([
        cstr(portal),
        cstr(stmt),
        i16(paramFormats.length),
        ...paramFormats.map(i16),
        i16(params.length),
        ...params.flatMap((p) => (p === null ? [i32(-1)] : [i32(Buffer.byteLength(p)), Buffer.from(p)])),
        i16(resultFormats.length),
        ...resultFormats.map(i16),
      ]),
    ),
  execute: (portal = '', maxRows = 0) => msg('E', Buffer.concat([cstr(portal), i32(maxRows)])),
  describe: (kind: 'S' | 'P', name: string) => msg('D', Buffer.concat([Buffer.from(kind), cstr(name)])),
  close: (kind: 'S' | 'P', name: string) => msg('C', Buffer.concat([Buffer.from(kind), cstr(name)])),
  sync: () => msg('S', Buffer.alloc(0)),
  flush: () => msg('H', Buffer.alloc(0)),
  terminate: () => msg('X', Buffer.alloc(0)),
  copyData: (data: string | Buffer) => msg('d', Buffer.from(data)),
  copyDone: () => msg('c', Buffer.alloc(0)),
  /** FunctionCall (fastpath): function `oid` with text-format arguments (null: SQL NULL), a text result. */
  functionCall: (oid: number, args: (string | null)[]) =>
    msg(
      'F',
      Buffer.concat([
        i32(oid),
        i16(1),
        i16(0), // one format code: every argument is text
        i16(args.length),
        ...args.flatMap((a) => (a === null ? [i32(-1)] : [i32(Buffer.byteLength(a)), Buffer.from(a)])),
        i16(0), // result format: text
      ]),
    ),
  raw: msg,
};

export interface BackendMessage {
  type: string;
  body: Buffer;
}

/** Decode the fields of an ErrorResponse/NoticeResponse body. */
export function errorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let off = 0;
  while (off < body.length && body[off] !== 0) {
    const code = String.fromCharCode(body[off]!);
    let end = body.indexOf(0, off + 1);
    // A field without its NUL (a malformed error from a hostile server) runs to the end of the body.
    if (end < 0) end = body.length;
    out[code] = body.toString('utf8', off + 1, end);
    off = end + 1;
  }
  return out;
}

/** The fields of every ErrorResponse among msgs, in order. */
export function errorsIn(msgs: BackendMessage[]): Record<string, string>[] {
  return msgs.filter((m) => m.type === 'E').map((m) => errorFields(m.body));
}

/** Message types in order, with the fields of ErrorResponse/NoticeResponse: for assertion messages. */
export function describeMessages(msgs: BackendMessage[]): string {
  return msgs
    .map((m) => (m.type === 'E' || m.type === 'N' ? `${m.type}${JSON.stringify(errorFields(m.body))}` : m.type))
    .join(' ');
}

/** Values of the first column of every DataRow, as text (null for NULL). */
export function column(msgs: BackendMessage[]): (string | null)[] {
  return msgs
    .filter((m) => m.type === 'D')
    .map((d) => {
      const len = d.body.readInt32BE(2);
      return len < 0 ? null : d.body.toString('utf8', 6, 6 + len);
    });
}

/** The first column of the first row of `sql`'s answer, as text (null for NULL or no row); throws on an ErrorResponse. */
export async function queryValue(c: RawClient, sql: string, timeoutMs = 30_000): Promise<string | null> {
  const r = await c.query(sql, timeoutMs);
  if (errorsIn(r).length > 0) throw new Error(`${sql}: ${describeMessages(r)}`);
  return column(r)[0] ?? null;
}

/** Every column of the first row, as text. */
export function firstRow(msgs: BackendMessage[]): (string | null)[] {
  const d = msgs.find((m) => m.type === 'D');
  if (d === undefined) return [];
  const out: (string | null)[] = [];
  let off = 2;
  for (let i = 0; i < d.body.readInt16BE(0); i++) {
    const len = d.body.readInt32BE(off);
    off += 4;
    out.push(len < 0 ? null : d.body.toString('utf8', off, off + len));
    if (len > 0) off += len;
  }
  return out;
}

/** The first column of the first row. */
export function value(msgs: BackendMessage[]): string | null {
  return column(msgs)[0] ?? null;
}

/** Type + body, with per-session values (BackendKeyData, ParameterStatus values) blanked: for comparing sessions. */
export function normalizeMessages(msgs: BackendMessage[]): string[] {
  return msgs.map((m) => {
    if (m.type === 'K') return `K:<${m.body.length}>`;
    if (m.type === 'S') return `S:${m.body.toString('utf8', 0, m.body.indexOf(0))}=*`;
    return `${m.type}:${m.body.toString('hex')}`;
  });
}

/** A raw protocol client: write bytes, read whole backend messages. */
export class RawClient {
  readonly sock: net.Socket;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;
  /** Single bytes received before any typed message (answers to SSLRequest/GSSENCRequest). */
  constructor(sock: net.Socket) {
    this.sock = sock;
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => {});
  }
  static connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }
  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  private async waitData(deadline: number): Promise<void> {
    if (this.closed) throw new Error('connection closed');
    const left = deadline - Date.now();
    if (left <= 0) throw new Error('timed out waiting for data');
    await new Promise<void>((r) => {
      const t = setTimeout(r, left);
      this.waiters.push(() => {
        clearTimeout(t);
        r();
      });
    });
  }
  write(b: Buffer): void {
    this.sock.write(b);
  }
  /** Read exactly one byte (the answer to SSLRequest/GSSENCRequest). */
  async readByte(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < 1) await this.waitData(deadline);
    const c = String.fromCharCode(this.buf[0]!);
    this.buf = this.buf.subarray(1);
    return c;
  }
  /** Read one backend message. */
  async read(timeoutMs = 5000): Promise<BackendMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.buf.length >= 5) {
        const len = this.buf.readUInt32BE(1);
        if (this.buf.length >= len + 1) {
          const m = { type: String.fromCharCode(this.buf[0]!), body: Buffer.from(this.buf.subarray(5, len + 1)) };
          this.buf = this.buf.subarray(len + 1);
          return m;
        }
      }
      await this.waitData(deadline);
    }
  }
  /** Read messages up to and including the next ReadyForQuery (or an ErrorResponse when the peer closes). */
  async readUntilReady(timeoutMs = 5000): Promise<BackendMessage[]> {
    const out: BackendMessage[] = [];
    for (;;) {
      let m: BackendMessage;
      try {
        m = await this.read(timeoutMs);
      } catch (e) {
        if (this.closed) return out;
        throw e;
      }
      out.push(m);
      if (m.type === 'Z') return out;
    }
  }
  /** Read messages until `n` ReadyForQuery have arrived; throws on a close or a timeout before that. */
  async readZ(n: number, timeoutMs = 10000): Promise<BackendMessage[]> {
    const out: BackendMessage[] = [];
    let z = 0;
    while (z < n) {
      const m = await this.read(timeoutMs);
      out.push(m);
      if (m.type === 'Z') z++;
    }
    return out;
  }
  /** Simple query; returns the messages through ReadyForQuery. */
  async query(sql: string, timeoutMs = 10000): Promise<BackendMessage[]> {
    this.write(enc.query(sql));
    return this.readZ(1, timeoutMs);
  }
  /**
   * Everything the peer sends until it closes the connection. `closed` is false when it did not
   * close within timeoutMs (or a read failed otherwise); `msgs` then holds what arrived so far.
   */
  async readUntilClosed(timeoutMs: number): Promise<{ msgs: BackendMessage[]; closed: boolean }> {
    const msgs: BackendMessage[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) return { msgs, closed: false };
      try {
        msgs.push(await this.read(left));
      } catch {
        return { msgs, closed: this.closed };
      }
    }
  }
  /** Startup with trust auth; returns messages through the first ReadyForQuery. */
  async startup(user: string, database = 'postgres', extra: Record<string, string> = {}): Promise<BackendMessage[]> {
    this.write(enc.startup({ user, database, ...extra }));
    return this.readUntilReady();
  }
  /** Resolves when the peer has closed the connection. */
  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) await this.waitData(deadline).catch((e) => {
      if (!this.closed) throw e;
    });
  }
  end(): void {
    this.sock.end();
  }
}

/**
 * Read through `n` ReadyForQuery in short bursts (readable for 1 ms, then paused for gapMs), so
 * that the socket's buffers stay nearly full and the proxy's writes to this client keep queueing.
 */
export async function readZInBursts(c: RawClient, gapMs: number, n = 1, timeoutMs = 30_000): Promise<BackendMessage[]> {
  let done = false;
  const stutter = (async () => {
    while (!done) {
      c.sock.resume();
      await sleep(1);
      c.sock.pause();
      await sleep(gapMs);
    }
    c.sock.resume();
  })();
  try {
    return await c.readZ(n, timeoutMs);
  } finally {
    done = true;
    await stutter;
  }
}

/**
 * Rows of `select g, repeat(md5(g::text), 20) ...` (g from 1) that are not what PostgreSQL sent:
 * how many, and a description of the first `limit`.
 */
export function corruptMd5Rows(rows: BackendMessage[], limit = 5): { count: number; examples: string[] } {
  let count = 0;
  const examples: string[] = [];
  for (let i = 0; i < rows.length; i++) {
    const body = rows[i]!.body;
    // DataRow: int16 count, then (int32 len, bytes) per column
    const l1 = body.readInt32BE(2);
    const g = body.toString('utf8', 6, 6 + l1);
    const l2 = body.readInt32BE(6 + l1);
    const text = body.toString('utf8', 10 + l1, 10 + l1 + l2);
    if (g === String(i + 1) && text === createHash('md5').update(g).digest('hex').repeat(20)) continue;
    count++;
    if (examples.length < limit) examples.push(`row ${i + 1} corrupted: ${g} ${text.slice(0, 40)}...`);
  }
  return { count, examples };
}
