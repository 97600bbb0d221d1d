// A slow, obvious RESP client, independent of src/redis, to inspect and tamper with what pgscribe
// keeps in Redis, and to check src/redis/resp.ts against.

import * as net from 'node:net';
import * as tls from 'node:tls';

export type Reply = string | number | Buffer | null | { error: string } | Reply[];

/** `*N` then `$len` bulk strings. */
export function encodeRequest(args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(a, 'utf8');
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** One whole reply at buf[off..], or null when more bytes are needed. Recursive, re-parses from the start. */
export function parseReply(buf: Buffer, off = 0): { value: Reply; end: number } | null {
  const lineEnd = buf.indexOf('\r\n', off);
  if (lineEnd < 0) return null;
  const type = String.fromCharCode(buf[off]!);
  const text = buf.toString('utf8', off + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: text, end: next };
    case '-':
      return { value: { error: text }, end: next };
    case ':':
      return { value: Number(text), end: next };
    case '$': {
      const n = Number(text);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: Buffer.from(buf.subarray(next, next + n)), end: next + n + 2 };
    }
    case '*': {
      const n = Number(text);
      if (n < 0) return { value: null, end: next };
      const items: Reply[] = [];
      let at = next;
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, at);
        if (r === null) return null;
        items.push(r.value);
        at = r.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`bad reply type ${JSON.stringify(type)}`);
  }
}

/** Connect (over TLS with secure), AUTH and SELECT if needed, send one command, read its reply, close. */
export function redisCommand(port: number, args: (string | Buffer)[], password = '', db = 0, secure: tls.ConnectionOptions | null = null): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const sock = secure === null ? net.connect({ host: '127.0.0.1', port }) : tls.connect({ ...secure, host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    let skip = (password === '' ? 0 : 1) + (db === 0 ? 0 : 1);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no reply to ${args[0]} within 10 s`));
    }, 10000);
    sock.on(secure === null ? 'connect' : 'secureConnect', () => {
      if (password !== '') sock.write(encodeRequest(['AUTH', password]));
      if (db !== 0) sock.write(encodeRequest(['SELECT', String(db)]));
      sock.write(encodeRequest(args));
    });
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const r = parseReply(buf);
        if (r === null) return;
        buf = buf.subarray(r.end);
        if (skip > 0) {
          skip--;
          continue;
        }
        clearTimeout(timer);
        sock.destroy();
        resolve(r.value);
        return;
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** `redisCommand` against a started server (its port and password). */
export function command(server: { port: number; password: string }, args: (string | Buffer)[], db = 0, secure: tls.ConnectionOptions | null = null): Promise<Reply> {
  return redisCommand(server.port, args, server.password, db, secure);
}
