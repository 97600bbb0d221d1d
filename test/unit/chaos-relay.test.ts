// The chaos relay of the fault-injection tests (test/helpers/chaos-relay.ts) in front of an echo
// server: each fault does what the e2e tests rely on, and the bytes that do get through are the
// bytes that were sent, in order.
import t from 'tap';
import * as net from 'node:net';
import { startChaosRelay, type ChaosRelay } from '../helpers/chaos-relay';
import { sleep, waitFor } from '../harness/time';

interface Echo {
  port: number;
  /** Connections whose client side ended (the server read EOF). */
  ended: number;
  close(): Promise<void>;
}

function echoServer(): Promise<Echo> {
  const socks = new Set<net.Socket>();
  const e = { port: 0, ended: 0, close: async () => {} };
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('close', () => socks.delete(s));
    s.on('error', () => {});
    s.on('end', () => e.ended++);
    s.pipe(s);
  });
  e.close = () => {
    for (const s of socks) s.destroy();
    return new Promise((r) => srv.close(() => r()));
  };
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve({ ...e, port: (srv.address() as net.AddressInfo).port, get ended() { return e.ended; } } as Echo)));
}

interface Peer {
  sock: net.Socket;
  got: () => Buffer;
  ended: () => boolean;
  error: () => string | null;
  closed: () => boolean;
}

function connect(port: number): Promise<Peer> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let ended = false;
    let error: string | null = null;
    let closed = false;
    s.on('data', (b: Buffer) => chunks.push(b));
    s.on('end', () => (ended = true));
    s.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
    s.on('close', () => (closed = true));
    s.once('connect', () => resolve({ sock: s, got: () => Buffer.concat(chunks), ended: () => ended, error: () => error, closed: () => closed }));
    s.once('error', reject);
  });
}

const until = (what: string, probe: () => boolean, timeoutMs = 5000): Promise<boolean> =>
  waitFor(() => (probe() ? true : undefined), { timeoutMs, timeout: () => `timed out waiting for ${what}` });

let echo: Echo;
let relay: ChaosRelay;
t.before(async () => {
  echo = await echoServer();
  relay = await startChaosRelay(echo.port);
});
t.teardown(async () => {
  await relay.close();
  await echo.close();
});
t.afterEach(() => relay.heal());

const payload = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251));

t.test('forwards both ways, byte for byte', async (t) => {
  const p = await connect(relay.port);
  p.sock.write(payload);
  await until('the echo', () => p.got().length >= payload.length);
  t.ok(p.got().equals(payload), 'the bytes come back unchanged');
  t.equal(relay.counts().active, 1, 'one connection open');
  p.sock.destroy();
  await until('the relay to forget it', () => relay.counts().active === 0);
});

t.test('latency delays each chunk and keeps the order', async (t) => {
  relay.setLatency(150);
  const p = await connect(relay.port);
  const t0 = performance.now();
  p.sock.write('one');
  await sleep(20);
  p.sock.write('two');
  await until('both echoed', () => p.got().length >= 6);
  t.ok(performance.now() - t0 >= 290, `two passes through the relay take at least 2 x 150 ms (${Math.round(performance.now() - t0)} ms)`);
  t.equal(p.got().toString(), 'onetwo', 'in order');
  p.sock.destroy();
});

t.test('one-byte writes: one write per byte, the same bytes', async (t) => {
  relay.oneByteWrites(true);
  const p = await connect(relay.port);
  const before = relay.counts().writes;
  const small = payload.subarray(0, 300);
  p.sock.write(small);
  await until('the echo', () => p.got().length >= small.length, 15000);
  t.ok(p.got().equals(small), 'the bytes come back unchanged');
  t.equal(relay.counts().writes - before, 2 * small.length, 'a write per byte, each way');
  p.sock.destroy();
});

t.test('stall holds the bytes; resume forwards them', async (t) => {
  const p = await connect(relay.port);
  relay.stall('toClient');
  p.sock.write('held');
  await sleep(300);
  t.equal(p.got().length, 0, 'nothing comes back while stalled');
  relay.resume();
  await until('the echo', () => p.got().length >= 4);
  t.equal(p.got().toString(), 'held', 'the held bytes, after resume');
  p.sock.destroy();
});

t.test('halfCloseAll(toTarget): the target reads EOF, its end comes back', async (t) => {
  const p = await connect(relay.port);
  p.sock.write('x');
  await until('the echo', () => p.got().length >= 1);
  const ended = echo.ended;
  relay.halfCloseAll('toTarget');
  await until('the target to read EOF', () => echo.ended > ended);
  await until('the client to read EOF', () => p.ended());
  t.equal(p.error(), null, 'a clean end, no reset');
  p.sock.destroy();
});

t.test('halfCloseAll(toClient): the client reads EOF', async (t) => {
  const p = await connect(relay.port);
  p.sock.write('x');
  await until('the echo', () => p.got().length >= 1);
  relay.halfCloseAll('toClient');
  await until('the client to read EOF', () => p.ended());
  t.equal(p.error(), null, 'a clean end');
  p.sock.destroy();
});

t.test('resetAll: the client gets ECONNRESET', async (t) => {
  const p = await connect(relay.port);
  p.sock.write('x');
  await until('the echo', () => p.got().length >= 1);
  relay.resetAll();
  await until('the close', () => p.closed());
  t.equal(p.error(), 'ECONNRESET', 'reset, not ended');
  await until('the relay to forget it', () => relay.counts().active === 0);
});

t.test('dropNewConnections: new connections are reset, open ones carry on', async (t) => {
  const open = await connect(relay.port);
  relay.dropNewConnections(true);
  const dropped = relay.counts().dropped;
  // The reset may come before or after the client has seen its connect.
  const outcome = await connect(relay.port).then(
    async (p) => {
      await until('the close', () => p.closed());
      return `closed with ${p.error()} after ${p.got().length} bytes`;
    },
    (err: NodeJS.ErrnoException) => `closed with ${err.code} after 0 bytes`,
  );
  t.equal(outcome, 'closed with ECONNRESET after 0 bytes', 'reset, nothing forwarded');
  t.equal(relay.counts().dropped, dropped + 1, 'counted');
  open.sock.write('still');
  await until('the echo', () => open.got().length >= 5);
  t.equal(open.got().toString(), 'still', 'the open connection still works');
  open.sock.destroy();
});

t.test('holdEnds: an end() waits until it is released', async (t) => {
  const p = await connect(relay.port);
  p.sock.write('x');
  await until('the echo', () => p.got().length >= 1);
  const ended = echo.ended;
  relay.holdEnds(true);
  p.sock.end();
  await sleep(300);
  t.equal(echo.ended, ended, 'the target has not read EOF');
  relay.holdEnds(false);
  await until('the target to read EOF', () => echo.ended > ended);
  await until('its end to come back', () => p.ended());
  p.sock.destroy();
});
