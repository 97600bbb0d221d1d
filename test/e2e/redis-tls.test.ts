// TLS to Redis (issue 15, security finding 4): with --redis-tls the shared cache's two connections
// are encrypted, and with verify-full the Redis certificate must chain to --redis-tls-ca and name
// the host. A Redis that fails the check is never used: every query is answered by PostgreSQL, and
// one operational line says why. A Redis that speaks only TLS is no use to a plaintext client.
import * as fs from 'node:fs';
import t, { type Test as Tap } from 'tap';
import { USERS } from '../harness/pg-cluster';
import { makeCerts, type TestCerts } from '../harness/certs';
import { startRedis, type RedisServer } from '../harness/redis';
import { CATALOG_ARGS } from '../helpers/cache';
import type { Proxy } from '../harness/proxy';
import { clusterAndProxies } from '../helpers/fixture';
import { command } from '../helpers/resp-client';
import { value, type RawClient } from '../harness/wire';
import { sleep } from '../harness/time';

const { pg, fx } = clusterAndProxies(t);
let certs: TestCerts;
let redis: RedisServer;
let prefixes = 0;

t.before(async () => {
  certs = makeCerts();
  redis = await startRedis({ tls: certs.server });
  await pg().psql(`CREATE TABLE kv (id int PRIMARY KEY, v text); INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 10) g; GRANT SELECT ON kv TO ${USERS.trust.user}`);
});
t.teardown(async () => {
  await redis?.stop();
});

async function launch(t: Tap, tls: string[]): Promise<Proxy> {
  const p = await fx.launch([...CATALOG_ARGS, '--cache', '--cache-ttl', '3600000', '--redis', `127.0.0.1:${redis.port}`, '--redis-prefix', `tls${++prefixes}:`, '--redis-timeout-ms', '2000', ...tls]);
  t.teardown(() => fx.stopProxy(p));
  return p;
}

async function read(c: RawClient, sql: string): Promise<string | null> {
  return value(await c.query(sql));
}

async function waitStat(p: Proxy, name: string, atLeast: number): Promise<number> {
  for (let i = 0; ; i++) {
    const n = (await p.stats())[name] ?? 0;
    if (n >= atLeast || i >= 100) return n;
    await sleep(50);
  }
}

t.test('verify-full against the right CA: answers are stored in Redis over TLS', async (t) => {
  const tls = ['--redis-tls', 'verify-full', '--redis-tls-ca', certs.ca];
  const a = await launch(t, tls);
  await a.waitStderr(/redis: shared cache available/);
  const ca = await fx.session(a.port);
  t.equal(await read(ca, 'SELECT v FROM kv WHERE id = 3'), 'v3', 'A reads from PostgreSQL');
  t.equal(await waitStat(a, 'cache_l2_stores', 1), 1, 'and stores the answer in Redis over TLS');
  const keys = (await redisKeys(`tls${prefixes}:*v:*`)).length;
  t.equal(keys, 1, 'the entry is in Redis');
});

t.test('the same prefix read by a second instance over TLS is a shared-cache hit', async (t) => {
  const tls = ['--redis-tls', 'verify-full', '--redis-tls-ca', certs.ca];
  const prefix = `tls-shared-${process.pid}:`;
  const args = [...CATALOG_ARGS, '--cache', '--cache-ttl', '3600000', '--redis', `127.0.0.1:${redis.port}`, '--redis-prefix', prefix, '--redis-timeout-ms', '2000', ...tls];
  const a = await fx.launch(args);
  const b = await fx.launch(args);
  t.teardown(() => Promise.all([fx.stopProxy(a), fx.stopProxy(b)]).then(() => undefined));
  await a.waitStderr(/redis: shared cache available/);
  await b.waitStderr(/redis: shared cache available/);
  t.equal(await read(await fx.session(a.port), 'SELECT v FROM kv WHERE id = 4'), 'v4');
  await waitStat(a, 'cache_l2_stores', 1);
  t.equal(await read(await fx.session(b.port), 'SELECT v FROM kv WHERE id = 4'), 'v4', 'B answers the same');
  t.equal((await b.stats())['cache_l2_hits'], 1, "B's answer came from Redis, over TLS");
});

for (const [what, tls, reason] of [
  ['verify-full against another CA', () => ['--redis-tls', 'verify-full', '--redis-tls-ca', certs.otherCa], /unable to verify|UNABLE_TO_VERIFY|self.signed|certificate/i],
  ['plaintext to a Redis that speaks only TLS', () => [], /./],
] as const) {
  t.test(`${what}: Redis is never used, every query is answered by PostgreSQL`, async (t) => {
    const p = await launch(t, tls());
    const line = await p.waitStderr(/redis: shared cache unavailable[^\n]*/, 15_000);
    t.match(line, reason, `the operational line says why: ${line}`);
    const c = await fx.session(p.port);
    for (let i = 0; i < 3; i++) t.equal(await read(c, 'SELECT v FROM kv WHERE id = 5'), 'v5', `read ${i + 1} answered`);
    const s = await p.stats();
    t.equal(s['cache_l2_hits'] ?? 0, 0, 'no shared-cache hit');
    t.equal(s['cache_l2_stores'] ?? 0, 0, 'nothing stored');
  });
}

t.test('require: encrypted without checking the certificate (like sslmode=require)', async (t) => {
  const p = await launch(t, ['--redis-tls', 'require']);
  await p.waitStderr(/redis: shared cache available/);
  const c = await fx.session(p.port);
  t.equal(await read(c, 'SELECT v FROM kv WHERE id = 6'), 'v6');
  t.equal(await waitStat(p, 'cache_l2_stores', 1), 1, 'stored in Redis');
});

/** Keys matching pattern, read over TLS by the test's own client. */
async function redisKeys(pattern: string): Promise<string[]> {
  return ((await command(redis, ['KEYS', pattern], 0, { ca: fs.readFileSync(certs.ca) })) as Buffer[]).map(String);
}
