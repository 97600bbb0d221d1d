/**
 * The second reference relay (issue 21): what Node itself allows a relay that still does not look
 * at the bytes. bench/relay.ts is the naive pipe() relay; this one reads both legs with
 * net.Socket's `onread` option (one preallocated buffer per connection instead of a Buffer
 * allocated per read, and no Readable stream in between) and writes each read straight to the
 * other socket.
 *
 * `onread` is taken only by the net.Socket constructor and net.connect(), not by
 * net.createServer() (nodejs/node#53792), so an accepted connection is taken paused
 * (pauseOnConnect) and its handle rewrapped in a Socket that has the option.
 *
 * A read's bytes are written without a copy. Most writes complete at once (libuv writes a small
 * buffer synchronously); one that does not keeps a reference to the buffer, so the reading leg
 * moves on to a fresh buffer before its next read (src/net/reused-reads.ts, which pgscribe's own
 * legs use too).
 *
 * Usage: node build/bench/relay-onread.js LISTEN_PORT UPSTREAM_HOST:UPSTREAM_PORT
 * Prints "listening PORT" on stdout once bound (LISTEN_PORT 0 picks a free port).
 */
import * as net from 'node:net';
import { adoptAccepted } from '../src/net/adopt';
import { reusedReads } from '../src/net/reused-reads';

const [listenArg, upstreamArg] = process.argv.slice(2);
if (listenArg === undefined || upstreamArg === undefined) {
  process.stderr.write('usage: relay-onread LISTEN_PORT UPSTREAM_HOST:UPSTREAM_PORT\n');
  process.exit(2);
}
const sep = upstreamArg.lastIndexOf(':');
const upHost = upstreamArg.slice(0, sep);
const upPort = Number(upstreamArg.slice(sep + 1));

/** Write each read as it is to `to()`; true when the write is still queued (it holds the bytes). */
function relayTo(to: () => net.Socket | null): (chunk: Buffer) => boolean {
  return (chunk) => {
    const out = to();
    if (out === null || out.destroyed) return false;
    // A full socket stops the other side being read until it drains.
    if (!out.write(chunk)) stopReadingFor.get(out)?.pause();
    return out.writableLength > 0;
  };
}

/** The socket whose reads fill each socket's buffer (paused while that buffer is full). */
const stopReadingFor = new WeakMap<net.Socket, net.Socket>();

const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (accepted) => {
  let client: net.Socket | null = null;
  const upstream = net.connect({ host: upHost, port: upPort, onread: reusedReads(relayTo(() => client)) });
  upstream.setNoDelay(true);
  client = adoptAccepted(accepted, relayTo(() => upstream));
  const c = client;
  stopReadingFor.set(upstream, c);
  stopReadingFor.set(c, upstream);
  upstream.on('drain', () => c.resume());
  c.on('drain', () => upstream.resume());
  const close = (): void => {
    c.destroy();
    upstream.destroy();
  };
  c.on('error', close);
  upstream.on('error', close);
  c.on('close', close);
  upstream.on('close', close);
  c.on('end', close);
  upstream.on('end', close);
});
server.listen({ host: '127.0.0.1', port: Number(listenArg) }, () => {
  process.stdout.write(`listening ${(server.address() as net.AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
