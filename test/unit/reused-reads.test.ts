// Reading in place (src/net/reused-reads.ts, src/net/adopt.ts): a read's buffer is reused only
// when its taker says nothing holds a view of it. An echo server that writes each read back
// as a view, to a client that does not read for a while (so the writes queue), must return
// every byte as sent; the same server told "nothing holds it" must not, which shows the test
// can see the hazard the rule guards against.
import t from 'tap';
import * as net from 'node:net';
import { once } from 'node:events';
import { adoptAccepted, adoptable } from '../../src/net/adopt';
import { READ_BUFFER_BYTES, reusedReads } from '../../src/net/reused-reads';
import { prng } from '../harness/prng';

t.test('the next read gets a new buffer exactly when the taker holds the last one', async (t) => {
  let holds = false;
  const opts = reusedReads(() => holds);
  const next = opts.buffer as () => Uint8Array;
  const first = next();
  t.equal(first.length, READ_BUFFER_BYTES);
  opts.callback(10, first);
  t.equal(next(), first, 'nothing held: the same buffer');
  holds = true;
  opts.callback(10, first);
  const second = next();
  t.not(second, first, 'held: a fresh buffer');
  holds = false;
  opts.callback(10, second);
  t.equal(next(), second);
});

/**
 * An echo server whose connections are adopted with onread; honest: whether the taker reports the
 * write still queued (the real rule) or always says "nothing held".
 */
async function echoServer(honest: boolean): Promise<{ server: net.Server; port: number; adopted: () => number }> {
  let adopted = 0;
  const server = net.createServer({ pauseOnConnect: true }, (accepted) => {
    if (adoptable(accepted)) adopted++;
    let sock: net.Socket | null = null;
    sock = adoptAccepted(accepted, (chunk) => {
      sock!.write(chunk);
      return honest && sock!.writableLength > 0;
    });
    sock.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as net.AddressInfo).port, adopted: () => adopted };
}

/** Send `data` in random pieces, read nothing until it is all sent, then read everything back. */
async function echoRoundTrip(port: number, data: Buffer, seed: number): Promise<Buffer> {
  const client = net.connect(port, '127.0.0.1');
  await once(client, 'connect');
  client.pause();
  const got: Buffer[] = [];
  let gotBytes = 0;
  const all = new Promise<void>((resolve) => {
    client.on('data', (c: Buffer) => {
      got.push(c);
      gotBytes += c.length;
      if (gotBytes >= data.length) resolve();
    });
  });
  const rnd = prng(seed);
  for (let off = 0; off < data.length; ) {
    const n = Math.min(data.length - off, 1 + Math.floor(rnd() * 48 * 1024));
    if (!client.write(data.subarray(off, off + n))) {
      // The server's echoes are queued on its side; keep sending while it reads.
      await new Promise((r) => setTimeout(r, 1));
    }
    off += n;
  }
  await new Promise((r) => setTimeout(r, 200));
  client.resume();
  await all;
  client.destroy();
  return Buffer.concat(got).subarray(0, data.length);
}

function pattern(bytes: number, seed: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

t.test('queued writes keep their bytes: every byte comes back as sent', async (t) => {
  const { server, port, adopted } = await echoServer(true);
  t.teardown(() => server.close());
  for (const seed of [1, 2, 3]) {
    const data = pattern(6 * 1024 * 1024, seed);
    const back = await echoRoundTrip(port, data, seed);
    t.ok(back.equals(data), `seed ${seed}: ${data.length} bytes echoed intact`);
  }
  t.equal(adopted(), 3, 'each accepted connection was moved to an onread socket');
});

t.test('reusing a buffer a queued write still holds corrupts the echo (the hazard is real)', async (t) => {
  const { server, port } = await echoServer(false);
  t.teardown(() => server.close());
  const data = pattern(6 * 1024 * 1024, 9);
  const back = await echoRoundTrip(port, data, 9);
  t.notOk(back.equals(data), 'bytes were overwritten before they were sent');
});

t.test('a socket that already reads is not moved: its reads still reach the callback', async (t) => {
  const server = net.createServer((accepted) => {
    t.notOk(adoptable(accepted), 'reading started (no pauseOnConnect)');
    const sock = adoptAccepted(accepted, (chunk) => {
      sock.write(chunk);
      return sock.writableLength > 0;
    });
    t.equal(sock, accepted);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const data = pattern(1024 * 1024, 4);
  const back = await echoRoundTrip((server.address() as net.AddressInfo).port, data, 4);
  t.ok(back.equals(data), 'echoed intact through the ordinary reads');
});
