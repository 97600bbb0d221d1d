/**
 * The relay that bench/relay-onread.ts and bench/relay-minlog.ts run (issue 21's references):
 * both legs read with net.Socket's `onread` option (one reused buffer per socket, no Readable
 * stream), and each read written straight to the other socket.
 *
 * `onread` is taken only by the net.Socket constructor and net.connect(), not by
 * net.createServer() (nodejs/node#53792), so an accepted connection is taken paused
 * (pauseOnConnect) and its handle rewrapped in a Socket that has the option.
 *
 * A read's bytes are written without a copy. Most writes complete at once (libuv writes a small
 * buffer synchronously); one that does not keeps a reference to the buffer, so the reading leg
 * moves on to a fresh buffer before its next read (src/net/reused-reads.ts, which pgscribe's own
 * legs use too).
 */
import * as net from 'node:net';
import { adoptAccepted } from '../../src/net/adopt';
import { reusedReads } from '../../src/net/reused-reads';

/** Sees each client read before it is written on (it must not keep the chunk: it is reused). */
export type ReadObserver = (chunk: Buffer) => void;

/** The socket whose reads fill each socket's buffer (paused while that buffer is full). */
const stopReadingFor = new WeakMap<net.Socket, net.Socket>();

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

/** relayTo, with `seen` shown each read first (a closure of its own: the plain relay pays nothing for it). */
function observedRelayTo(to: () => net.Socket | null, seen: ReadObserver): (chunk: Buffer) => boolean {
  const relay = relayTo(to);
  return (chunk) => {
    seen(chunk);
    return relay(chunk);
  };
}

/**
 * Listen on 127.0.0.1:listenPort and relay each connection to upstream (HOST:PORT); prints
 * "listening PORT" once bound. observeClient, when given, makes an observer for each connection's
 * client reads.
 */
export function startOnreadRelay(listenPort: number, upstream: string, observeClient?: () => ReadObserver): void {
  const sep = upstream.lastIndexOf(':');
  const upHost = upstream.slice(0, sep);
  const upPort = Number(upstream.slice(sep + 1));
  const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (accepted) => {
    let client: net.Socket | null = null;
    const up = net.connect({ host: upHost, port: upPort, onread: reusedReads(relayTo(() => client)) });
    up.setNoDelay(true);
    const toUpstream = (): net.Socket => up;
    client = adoptAccepted(accepted, observeClient === undefined ? relayTo(toUpstream) : observedRelayTo(toUpstream, observeClient()));
    const c = client;
    stopReadingFor.set(up, c);
    stopReadingFor.set(c, up);
    up.on('drain', () => c.resume());
    c.on('drain', () => up.resume());
    const close = (): void => {
      c.destroy();
      up.destroy();
    };
    c.on('error', close);
    up.on('error', close);
    c.on('close', close);
    up.on('close', close);
    c.on('end', close);
    up.on('end', close);
  });
  server.listen({ host: '127.0.0.1', port: listenPort }, () => {
    process.stdout.write(`listening ${(server.address() as net.AddressInfo).port}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
}
