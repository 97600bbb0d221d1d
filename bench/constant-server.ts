/**
 * The ceiling for a cache built on Node's `net` sockets: a fake PostgreSQL that completes any
 * startup with trust, and answers every Query (and every Sync of an extended request) with one
 * constant row, as fast as Node can read and write. No parsing beyond the 5-byte headers, no log.
 * Not a server to use: run pgbench against it to see the best tps a Node proxy could reach when
 * every answer comes from memory (README, Performance).
 *
 * Usage: node build/bench/constant-server.js [PORT]   (default 7777, on 127.0.0.1; 0 = any free port)
 * `make bench` runs it as the node-ceiling target of the hotset workloads.
 */
import * as net from 'node:net';

function msg(type: string, body: Buffer): Buffer {
  const b = Buffer.allocUnsafe(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeUInt32BE(body.length + 4, 1);
  body.copy(b, 5);
  return b;
}
const cstr = (s: string): Buffer => Buffer.from(s + '\0');
const param = (k: string, v: string): Buffer => msg('S', Buffer.concat([cstr(k), cstr(v)]));

const READY = msg('Z', Buffer.from('I'));
const STARTED = Buffer.concat([
  msg('R', Buffer.alloc(4)), // AuthenticationOk
  param('server_version', '15.0'),
  param('server_encoding', 'UTF8'),
  param('client_encoding', 'UTF8'),
  param('DateStyle', 'ISO, MDY'),
  param('integer_datetimes', 'on'),
  param('standard_conforming_strings', 'on'),
  msg('K', Buffer.alloc(8)),
  READY,
]);
// One int4 column "abalance", one row "0", SELECT 1.
const ROW = Buffer.concat([
  msg('T', Buffer.concat([Buffer.from([0, 1]), cstr('abalance'), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0])])),
  msg('D', Buffer.from([0, 1, 0, 0, 0, 1, 0x30])),
  msg('C', cstr('SELECT 1')),
]);
const SIMPLE = Buffer.concat([ROW, READY]);
const EXTENDED = Buffer.concat([msg('1', Buffer.alloc(0)), msg('2', Buffer.alloc(0)), ROW, READY]);
const SSL_REQUEST = 80877103;

const port = Number(process.argv[2] ?? 7777);
const server = net.createServer({ noDelay: true }, (sock) => {
  let started = false;
  let pending: Buffer | null = null;
  sock.on('error', () => {});
  sock.on('data', (chunk: Buffer) => {
    const buf = pending === null ? chunk : Buffer.concat([pending, chunk]);
    const out: Buffer[] = [];
    let off = 0;
    for (;;) {
      if (!started) {
        if (buf.length - off < 8) break;
        const len = buf.readUInt32BE(off);
        if (buf.length - off < len) break;
        const code = buf.readUInt32BE(off + 4);
        off += len;
        if (code === SSL_REQUEST) out.push(Buffer.from('N'));
        else {
          started = true;
          out.push(STARTED);
        }
        continue;
      }
      if (buf.length - off < 5) break;
      const len = buf.readUInt32BE(off + 1);
      if (buf.length - off < len + 1) break;
      const type = buf[off];
      if (type === 0x51) out.push(SIMPLE); // Query
      else if (type === 0x53) out.push(EXTENDED); // Sync (after Parse/Bind/Describe/Execute)
      else if (type === 0x58) sock.end(); // Terminate
      off += len + 1;
    }
    pending = off < buf.length ? Buffer.from(buf.subarray(off)) : null;
    if (out.length > 0) sock.write(out.length === 1 ? out[0]! : Buffer.concat(out));
  });
});
// Port 0 picks a free port; the line says which (make bench reads it).
server.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${(server.address() as net.AddressInfo).port}\n`));
