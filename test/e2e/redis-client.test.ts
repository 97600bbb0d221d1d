// The Redis client against a real redis-server started here: pipelining keeps replies matched to
// their commands, AUTH and SELECT run on every connect, a stopped server gives timeouts (and the
// FIFO stays aligned after it resumes), the queue is bounded, a killed server is reconnected to by
// itself, a subscriber gets its pushes, and a server speaking garbage is dropped.
import * as net from 'node:net';
import t from 'tap';
import { RedisClient, type RedisClientOptions, type RedisFailure } from '../../src/redis/client';
import type { RespValue } from '../../src/redis/resp';
import { startRedis, type RedisServer } from '../harness/redis';
import { command } from '../helpers/resp-client';
import { sleep } from '../harness/time';

let redis: RedisServer;
let secured: RedisServer;
const clients: RedisClient[] = [];

t.before(async () => {
  redis = await startRedis();
  secured = await startRedis({ password: 's3cret' });
});
t.teardown(async () => {
  for (const c of clients) c.close();
  await redis.stop();
  await secured.stop();
});


interface Watched {
  client: RedisClient;
  downs: string[];
  readies: number;
  pushes: RespValue[];
}

function client(server: RedisServer, o: Partial<RedisClientOptions> = {}): Watched {
  const w: Watched = { client: null!, downs: [], readies: 0, pushes: [] };
  w.client = new RedisClient({
    host: '127.0.0.1',
    port: server.port,
    password: '',
    user: '',
    db: 0,
    timeoutMs: 1000,
    onDown: (r) => w.downs.push(r),
    onReady: () => w.readies++,
    onPush: (v) => w.pushes.push(v),
    ...o,
  });
  clients.push(w.client);
  w.client.connect();
  return w;
}

async function until(what: string, cond: () => boolean, ms = 10000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function call(c: RedisClient, args: (string | Buffer)[]): Promise<{ f: RedisFailure | null; r: RespValue }> {
  return new Promise((resolve) => c.call(args, (f, r) => resolve({ f, r })));
}

t.test('pipelining: 3000 commands issued in one turn are answered in order', async (t) => {
  const w = client(redis);
  await until('ready', () => w.client.ready);
  const n = 1000;
  const all: Promise<{ f: RedisFailure | null; r: RespValue }>[] = [];
  for (let i = 0; i < n; i++) {
    all.push(call(w.client, ['SET', `p:${i}`, `v${i}`]));
    all.push(call(w.client, ['GET', `p:${i}`]));
    all.push(call(w.client, ['INCRBY', 'p:counter', String(i)]));
  }
  const res = await Promise.all(all);
  t.equal(res.filter((x) => x.f !== null).length, 0, 'no failure');
  let wrong = 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    total += i;
    if (res[3 * i]!.r !== 'OK') wrong++;
    if (!(res[3 * i + 1]!.r as Buffer).equals(Buffer.from(`v${i}`))) wrong++;
    if (res[3 * i + 2]!.r !== total) wrong++;
  }
  t.equal(wrong, 0, 'every reply belongs to its own command');
  const big = Buffer.alloc(1 << 20, 0xab);
  big.write('\r\n$-1\r\n', 12345);
  await call(w.client, ['SET', 'p:big', big]);
  const got = await call(w.client, ['GET', 'p:big']);
  t.ok(Buffer.isBuffer(got.r) && got.r.equals(big), 'a 1 MiB binary value round-trips');
  const err = await call(w.client, ['INCR', 'p:big']);
  t.equal(err.f?.code, 'error', 'an error reply is a failure with code error');
  t.match(err.f?.message, /not an integer/);
  t.equal((await call(w.client, ['PING'])).r, 'PONG', 'and the connection carries on');
});

t.test('AUTH and SELECT on connect; a wrong password is reported and retried, never sent on', async (t) => {
  const ok = client(secured, { password: 's3cret', db: 5 });
  await until('ready', () => ok.client.ready);
  await call(ok.client, ['SET', 'where', 'db5']);
  const db0 = await command(secured, ['GET', 'where']);
  t.equal(db0, null, 'the key is not in database 0');
  const db5 = await command(secured, ['GET', 'where'], 5);
  t.same(db5, Buffer.from('db5'), 'it is in database 5');

  const wrong = client(secured, { password: 'nope' });
  await until('a down report', () => wrong.downs.length > 0);
  t.match(wrong.downs[0], /AUTH failed: WRONGPASS.*--redis-password/, `the reason names AUTH and the setting: ${wrong.downs[0]}`);
  t.equal(wrong.readies, 0, 'never ready');
  const r = await call(wrong.client, ['PING']);
  t.equal(r.f?.code, 'unavailable', 'commands fail at once while not ready');
  await until('a retry', () => wrong.downs.length >= 2, 5000);
  t.match(wrong.downs[1], /AUTH failed: WRONGPASS/, 'it tries again by itself (after the longest backoff) and is refused again');

  const none = client(secured);
  await until('ready or down', () => none.client.ready || none.downs.length > 0, 3000).catch(() => {});
  // Without AUTH the connection is up, and the server refuses commands.
  const noauth = await call(none.client, ['GET', 'x']);
  t.equal(noauth.f?.code, 'error');
  t.match(noauth.f?.message, /NOAUTH/);
});

t.test('a stopped server: timeouts, a bounded queue, and replies stay matched after it resumes', async (t) => {
  const w = client(redis, { timeoutMs: 50, maxPending: 100 });
  await until('ready', () => w.client.ready);
  await call(w.client, ['SET', 'q:a', 'A']);
  // On a busy machine the SET itself can outlast 50 ms: its late reply must be in before the
  // stop, so that exactly one command (the GET below) waits when the flood comes.
  await until('the SET answered', () => w.client.pendingCount === 0);
  redis.pause();
  try {
    const timedOut = await call(w.client, ['GET', 'q:a']);
    t.equal(timedOut.f?.code, 'timeout', 'no reply within 50 ms: timeout');
    t.match(timedOut.f?.message, /within 50 ms/);
    const flood = await Promise.all(Array.from({ length: 150 }, () => call(w.client, ['GET', 'q:a'])));
    const full = flood.filter((x) => x.f?.code === 'queue-full').length;
    t.equal(full, 51, '100 may wait (one earlier among them): the other 51 fail with queue-full at once');
    t.equal(flood.filter((x) => x.f?.code === 'timeout').length, 99, 'the rest time out');
  } finally {
    redis.resume();
  }
  await until('the late replies drained', () => w.client.pendingCount === 0);
  await call(w.client, ['SET', 'q:b', 'B']);
  const a = await call(w.client, ['GET', 'q:a']);
  const b = await call(w.client, ['GET', 'q:b']);
  t.same([a.r, b.r], [Buffer.from('A'), Buffer.from('B')], 'after the late replies, each reply is its command\'s');
  t.equal(w.downs.length, 0, 'the connection was kept');
});

t.test('a killed server: waiting commands fail, the client reconnects by itself', async (t) => {
  const w = client(redis, { timeoutMs: 1000 });
  await until('ready', () => w.client.ready);
  const readies = w.readies;
  const slow = call(w.client, ['BLPOP', 'never', '0.5']);
  await sleep(50);
  await redis.kill();
  const lost = await slow;
  t.equal(lost.f?.code, 'disconnected', 'a command in flight fails: disconnected');
  await until('a down report', () => w.downs.length > 0);
  t.match(w.downs[0], /closed|ECONNRESET/, `reason: ${w.downs[0]}`);
  const meanwhile = await call(w.client, ['PING']);
  t.equal(meanwhile.f?.code, 'unavailable', 'while it is down, commands fail at once');
  await redis.restart();
  await until('ready again', () => w.readies > readies, 10000);
  t.equal((await call(w.client, ['PING'])).r, 'PONG', 'works again');
});

t.test('a subscriber gets pushes; replies to its own commands still match', async (t) => {
  const isPush = (v: RespValue) => Array.isArray(v) && Buffer.isBuffer(v[0]) && v[0].toString() === 'message';
  const w = client(redis, { isPush });
  await until('ready', () => w.client.ready);
  const sub = await call(w.client, ['SUBSCRIBE', 'chan']);
  t.same(sub.r, [Buffer.from('subscribe'), Buffer.from('chan'), 1], 'SUBSCRIBE answered');
  for (const m of ['one', 'two\0three']) await command(redis, ['PUBLISH', 'chan', m]);
  await until('two pushes', () => w.pushes.length === 2);
  t.same(w.pushes, [
    [Buffer.from('message'), Buffer.from('chan'), Buffer.from('one')],
    [Buffer.from('message'), Buffer.from('chan'), Buffer.from('two\0three')],
  ]);
  const ping = await call(w.client, ['PING']);
  t.same(ping.r, [Buffer.from('pong'), Buffer.from('')], 'PING in subscribed mode is a reply, not a push');
});

/** A TCP server that answers every write with `reply`. */
function fakeServer(reply: Buffer): Promise<{ port: number; close: () => void }> {
  return new Promise((resolve) => {
    const socks = new Set<net.Socket>();
    const srv = net.createServer((s) => {
      socks.add(s);
      s.on('error', () => {});
      s.on('close', () => socks.delete(s));
      s.on('data', () => s.write(reply));
    });
    srv.listen(0, '127.0.0.1', () =>
      resolve({
        port: (srv.address() as net.AddressInfo).port,
        close: () => {
          for (const s of socks) s.destroy();
          srv.close();
        },
      }),
    );
  });
}

t.test('a server that does not speak RESP is dropped with the reason; nothing throws', async (t) => {
  for (const [what, reply, re] of [
    ['garbage', Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'), /invalid reply from Redis: unexpected reply type byte 0x48/],
    ['a huge bulk length', Buffer.from('$99999999999\r\n'), /invalid reply from Redis: bulk string of 99999999999 bytes is over the limit/],
    ['two replies for one command', Buffer.from('+OK\r\n+OK\r\n'), /a reply came for no command/],
  ] as const) {
    const fake = await fakeServer(reply);
    const w = client({ port: fake.port } as RedisServer);
    await until('ready', () => w.client.ready);
    const r = await call(w.client, ['PING']);
    await until(`${what}: a down report`, () => w.downs.length > 0);
    t.match(w.downs[0], re, `${what}: ${w.downs[0]}`);
    t.ok(r.f === null || r.f.code === 'disconnected', `${what}: the command got an answer or a failure, once`);
    w.client.close();
    fake.close();
  }
});

// Issue 15, security finding 5: a hostile Redis streaming one huge reply (a million elements of
// up to 1 MiB each) took RSS to 372 MB; and a reply begun and never finished held its part.
t.test('a reply too big as a whole, or one that never ends, drops the connection with the reason', async (t) => {
  const elements = 3000;
  const huge = Buffer.concat([Buffer.from(`*${elements}\r\n`), Buffer.from(`$1000\r\n${'x'.repeat(1000)}\r\n`.repeat(elements))]);
  for (const [what, reply, re] of [
    ['3 MB in one array, each element under the bulk limit', huge, /invalid reply from Redis: reply of more than 1049600 bytes/],
    ['a reply begun and never finished', Buffer.from('*3\r\n$5\r\nhello\r\n'), /a reply from Redis stalled: not complete within 1000 ms/],
  ] as const) {
    const fake = await fakeServer(reply);
    const w = client({ port: fake.port } as RedisServer, { timeoutMs: 200, maxBulkBytes: 1024 });
    await until('ready', () => w.client.ready);
    void call(w.client, ['PING']);
    await until(`${what}: a down report`, () => w.downs.length > 0);
    t.match(w.downs[0], re, `${what}: ${w.downs[0]}`);
    w.client.close();
    fake.close();
  }
});

t.test('close(): waiting commands fail with unavailable, no reconnect', async (t) => {
  const w = client(redis, { timeoutMs: 5000 });
  await until('ready', () => w.client.ready);
  const waiting = call(w.client, ['BLPOP', 'never', '1']);
  w.client.close();
  t.equal((await waiting).f?.code, 'unavailable');
  t.equal((await call(w.client, ['PING'])).f?.code, 'unavailable');
  await sleep(300);
  t.equal(w.readies, 1, 'not reconnected');
});
