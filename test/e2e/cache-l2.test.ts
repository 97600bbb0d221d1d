// The shared cache in Redis (--redis) with two pgscribe instances in front of one PostgreSQL,
// both real, with a redis-server started here: a read through A serves B, a write through A is
// seen through B, Redis trouble (killed, stopped) never reaches a client, a tampered value in
// Redis is never an answer, and with --redis-singleflight identical reads through both
// instances run once.
//
// As in cache-flight.test.ts, reads are held back deterministically where timing matters: a direct
// session holds an ACCESS EXCLUSIVE lock, so the leading query blocks inside PostgreSQL (visible
// in pg_stat_activity) until it is released.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test as Tap } from 'tap';
import { encodeEntry, decodeEntry } from '../../src/cache/l2-value';
import { PG_BIN, USERS } from '../harness/pg-cluster';
import { run, type RunResult } from '../harness/run';
import { clusterAndProxies } from '../helpers/fixture';
import { TEST_REDIS_KEY, type Proxy } from '../harness/proxy';
import {
  WORKER_MODES, calls, extUnit, holdTableLock, lockWaitersSql, waitCounter, waitUntilCount, wireBytes, cacheArgs,
} from '../helpers/cache';
import { parseProm, value as sample } from '../helpers/prom';
import { startRedis, type RedisServer } from '../harness/redis';
import { command } from '../helpers/resp-client';
import { RawClient, column, describeMessages, enc, errorsIn, value, type BackendMessage } from '../harness/wire';
import { sleep } from '../harness/time';

const { pg, fx } = clusterAndProxies(t);
const USER = USERS.trust.user;
const HOUR = '3600000';
const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';
let redis: RedisServer;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-cache-l2-'));
fs.chmodSync(dir, 0o755);

t.before(async () => {
  redis = await startRedis();
  await pg().psql(
    [
      'CREATE TABLE kv (id int PRIMARY KEY, v text)',
      "INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 100) g",
      'CREATE TABLE slow (id int PRIMARY KEY, v int)',
      'INSERT INTO slow SELECT g, g FROM generate_series(1, 1000) g',
      `GRANT ALL ON kv, slow TO ${USER}`,
    ].join('; '),
  );
  const init = await run(PGBENCH, ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(pg().port), '-U', 'postgres', 'postgres'], { timeoutMs: 120_000 });
  if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`);
  await pg().psql('CREATE TABLE ctr (id int PRIMARY KEY, v bigint); INSERT INTO ctr SELECT g, 0 FROM generate_series(1, 4) g');
  fs.writeFileSync(path.join(dir, 'hot.sql'), '\\set aid random(1, 50)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n');
  fs.writeFileSync(
    path.join(dir, 'ryw.sql'),
    // A read below the client's own committed write is a stale answer: divide by zero, abort.
    '\\set id random(1, 4)\nUPDATE ctr SET v = v + 1 WHERE id = :id RETURNING v AS w \\gset\nSELECT v AS r FROM ctr WHERE id = :id \\gset\n\\if :r < :w\nSELECT 1 / 0 AS stale_read;\n\\endif\n',
  );
});
t.teardown(async () => {
  await redis?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

let prefixes = 0;

/**
 * Two instances sharing Redis under a prefix of their own, both past their first connect; stopped
 * when test t ends. Their Redis commands may take 2 s unless extra says otherwise: on a busy
 * machine a reply can take longer than the default 50 ms, and a test that is not about timeouts
 * must not see a store time out or the breaker open.
 */
async function pair(t: Tap, workers: number, extra: string[] = []): Promise<[Proxy, Proxy]> {
  const timeout = extra.includes('--redis-timeout-ms') ? [] : ['--redis-timeout-ms', '2000'];
  const args = ['--cache', '--singleflight', '--cache-ttl', HOUR, '--redis', `127.0.0.1:${redis.port}`, '--redis-prefix', `t${++prefixes}:`, ...cacheArgs(workers), ...timeout, ...extra];
  const a = await fx.launch(args);
  const b = await fx.launch(args);
  t.teardown(() => Promise.all([fx.stopProxy(a), fx.stopProxy(b)]).then(() => undefined));
  await a.waitStderr(/redis: shared cache available/);
  await b.waitStderr(/redis: shared cache available/);
  return [a, b];
}

function prefixOf(p: Proxy): string {
  const args = p.proc.spawnargs;
  return args[args.indexOf('--redis-prefix') + 1]!;
}

/** The log lines of p whose SQL is exactly `sql`. */
function linesOf(p: Proxy, sql: string): string[] {
  return p.logLines().filter((l) => l.endsWith(` sql=${sql}`));
}

/** Wait until p's log holds n lines of `sql` (the log is written asynchronously), and return them. */
async function logged(p: Proxy, sql: string, n: number): Promise<string[]> {
  const deadline = Date.now() + 10000;
  for (;;) {
    const lines = linesOf(p, sql);
    if (lines.length >= n) return lines;
    if (Date.now() > deadline) throw new Error(`${lines.length} log lines of ${sql}, expected ${n}`);
    await sleep(20);
  }
}

async function query(c: RawClient, sql: string): Promise<BackendMessage[]> {
  const r = await c.query(sql);
  if (errorsIn(r).length > 0) throw new Error(`${sql}: ${describeMessages(r)}`);
  return r;
}

async function resetStatements(): Promise<void> {
  await pg().psql('SELECT pg_stat_statements_reset()');
}

for (const workers of WORKER_MODES) {
  const mode = `workers=${workers}`;

  t.test(`${mode}: a read through A, then through B, is answered from L2 byte for byte; PostgreSQL runs it once`, async (t) => {
    const [a, b] = await pair(t, workers);
    const ca = await fx.session(a.port);
    const cb = await fx.session(b.port);
    await resetStatements();
    const sql = 'SELECT v, id FROM kv WHERE id < 4 ORDER BY id';
    const ra = await query(ca, sql);
    t.same(column(ra), ['v1', 'v2', 'v3'], 'A: the rows');
    await waitCounter(a, 'cache_l2_stores', 1);
    const rb = await query(cb, sql);
    t.ok(wireBytes(rb).equals(wireBytes(ra)), 'B answers exactly the bytes PostgreSQL sent A');
    t.equal(await calls(pg(), 'SELECT v, id FROM kv WHERE id < $1 ORDER BY id'), 1, 'pg_stat_statements: executed once, through A');
    t.match(await logged(b, sql, 1), [/ Q cache=l2 /], "B's log line says cache=l2");
    t.match(await logged(a, sql, 1), [/ Q cache=miss flight=leader /], "A's says it ran upstream");
    const again = await query(cb, sql);
    t.ok(wireBytes(again).equals(wireBytes(ra)), 'B again: same bytes');
    t.match((await logged(b, sql, 2))[1], / Q cache=hit /, "the next read through B comes from B's own cache (L1)");

    // The extended protocol: B asks without a Parse of its own (a statement prepared first),
    // A with one; each gets its own shape, the same rows, and PostgreSQL runs the query once.
    const ext = 'SELECT v FROM kv WHERE id = $1';
    cb.write(Buffer.concat([enc.parse('s1', ext), enc.sync()]));
    t.equal(describeMessages(await cb.readZ(1)), '1 Z', 'B: statement s1 prepared');
    await resetStatements();
    ca.write(extUnit({ sql: ext, params: ['42'] }));
    const ea = await ca.readZ(1);
    t.equal(describeMessages(ea), '1 2 T D C Z', 'A: ParseComplete, BindComplete, RowDescription, row, CommandComplete, ReadyForQuery');
    await waitCounter(a, 'cache_l2_stores', 2);
    cb.write(extUnit({ sql: null, statement: 's1', params: ['42'] }));
    const eb = await cb.readZ(1);
    t.equal(describeMessages(eb), '2 T D C Z', 'B: its own shape, without ParseComplete');
    t.ok(wireBytes(eb).equals(wireBytes(ea.slice(1))), 'B: the same bytes after ParseComplete');
    t.equal(await calls(pg(), ext), 1, 'pg_stat_statements: the Execute ran once');
    const s = await b.stats();
    t.equal(s['cache_l2_hits'], 2, 'B: two L2 hits');
    t.equal(s['cache_l2_refused'], 0, 'B: nothing refused');
  });

  t.test(`${mode}: an UPDATE through A is seen by the next read through B; a rolled-back one changes nothing`, async (t) => {
    const [a, b] = await pair(t, workers);
    const ca = await fx.session(a.port);
    const cb = await fx.session(b.port);
    const id = 7 + workers;
    const sql = `SELECT v FROM kv WHERE id = ${id}`;
    t.equal(value(await query(cb, sql)), `v${id}`, 'B reads the row (B caches it, L1 and L2)');
    t.equal(value(await query(ca, sql)), `v${id}`, 'A reads it (from L2)');
    await query(ca, `UPDATE kv SET v = 'new' WHERE id = ${id}`);
    t.equal(value(await query(cb, sql)), 'new', 'the next read through B: the new value');
    t.equal(value(await query(ca, sql)), 'new', 'and through A');
    for (const q of ['BEGIN', `UPDATE kv SET v = 'rolled back' WHERE id = ${id}`, 'ROLLBACK']) await query(ca, q);
    t.equal(value(await query(cb, sql)), 'new', 'a rolled-back UPDATE: still the new value');
    t.match((await logged(b, sql, 3))[2], / Q cache=hit /, 'and B still answers from its cache: nothing was invalidated');
    await query(ca, 'BEGIN');
    await query(ca, `UPDATE kv SET v = 'in tx' WHERE id = ${id}`);
    t.equal(value(await query(cb, sql)), 'new', 'not committed yet: B still reads the new value');
    await query(ca, 'COMMIT');
    t.equal(value(await query(cb, sql)), 'in tx', 'after COMMIT through A, B reads the committed value');
    const sa = await a.stats();
    const sb = await b.stats();
    t.ok(sa['cache_l2_invalidations_sent']! >= 2, `A published its commits (${sa['cache_l2_invalidations_sent']})`);
    t.ok(sb['cache_l2_invalidations_received']! >= 2, `B heard them (${sb['cache_l2_invalidations_received']})`);
    t.ok(sb['cache_l2_stale']! >= 1, `B found the entry in Redis stale after the UPDATE (${sb['cache_l2_stale']})`);
    t.equal(sb['cache_l2_refused'], 0, 'and refused nothing: a stale entry is not a bad one');
  });
}

t.test("a commit's answer waits until Redis has its invalidation", async (t) => {
  const [a] = await pair(t, 0, ['--redis-timeout-ms', '60000']);
  const ca = await fx.session(a.port);
  redis.pause();
  let early: BackendMessage | null = null;
  try {
    ca.write(enc.query("UPDATE kv SET v = 'held' WHERE id = 50"));
    // Committed in PostgreSQL (seen directly), so its CommandComplete and ReadyForQuery are at pgscribe...
    await waitUntilCount(pg(), "SELECT count(*) FROM kv WHERE id = 50 AND v = 'held'", 1);
    // ...which does not pass them on while Redis has not acknowledged the new generation.
    early = await ca.read(500).catch(() => null);
  } finally {
    redis.resume();
  }
  t.equal(early, null, 'nothing reached the client while Redis was stopped');
  const r = await ca.readZ(1);
  t.equal(describeMessages(r), 'C Z', 'then the commit is answered: CommandComplete, ReadyForQuery');
  t.equal((await a.stats())['cache_l2_invalidations_sent'], 1, 'its invalidation went to Redis');
});

t.test('/metrics shows the shared cache; POST /cache/flush on A empties the cache of every instance', async (t) => {
  const [a, b] = await pair(t, 0, ['--admin', '127.0.0.1:0']);
  const adminOf = async (p: Proxy) => `http://127.0.0.1:${/admin=http:\/\/127\.0\.0\.1:(\d+)\//.exec(await p.waitStderr(/admin server listening admin=\S+/))![1]}`;
  const [ua, ub] = [await adminOf(a), await adminOf(b)];
  const ca = await fx.session(a.port);
  const cb = await fx.session(b.port);
  await resetStatements();
  const sql = 'SELECT v FROM kv WHERE id = 40';
  await query(ca, sql);
  await waitCounter(a, 'cache_l2_stores', 1);
  await query(cb, sql);
  const m = parseProm(await (await fetch(`${ub}/metrics`)).text());
  t.equal(sample(m, 'pgscribe_cache_l2_up'), 1, 'pgscribe_cache_l2_up 1');
  t.equal(sample(m, 'pgscribe_cache_l2_hits_total'), 1, 'one L2 hit');
  t.equal(sample(m, 'pgscribe_cache_l2_misses_total'), 0, 'no L2 miss');
  t.equal(sample(m, 'pgscribe_cache_l2_refused_total'), 0, 'nothing refused');
  t.equal(sample(m, 'pgscribe_cache_l2_pending_invalidations'), 0, 'nothing waits');
  t.equal((await fetch(`${ua}/cache/flush`, { method: 'POST' })).status, 200, 'flush through A');
  await b.waitStderr(/INFO cache: dropping this instance's cached answers reason="another pgscribe instance flushed the shared cache"/);
  t.equal(value(await query(cb, sql)), 'v40');
  t.match((await logged(b, sql, 2))[1], / Q cache=miss /, "B's next read is neither in its L1 nor in Redis: it goes upstream");
  t.equal(await calls(pg(), 'SELECT v FROM kv WHERE id = $1'), 2, 'PostgreSQL ran it again');
  // B's store into Redis follows its answer; A reads only once it is there.
  await waitCounter(b, 'cache_l2_stores', 1);
  t.equal(value(await query(ca, sql)), 'v40');
  t.match((await logged(a, sql, 2))[1], / Q cache=l2 /, "and A reads B's fresh answer from Redis");
});

/** The answer with its DataRows' one value replaced by `to` (lengths rewritten). */
function forgeRow(answer: Buffer, to: string): Buffer {
  const out: Buffer[] = [];
  for (let off = 0; off < answer.length; ) {
    const len = answer.readUInt32BE(off + 1);
    const m = answer.subarray(off, off + 1 + len);
    if (m[0] === 0x44) {
      const v = Buffer.from(to);
      const head = Buffer.from([0x44, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
      head.writeUInt32BE(4 + 2 + 4 + v.length, 1);
      head.writeUInt32BE(v.length, 7);
      out.push(head, v);
    } else out.push(m);
    off += 1 + len;
  }
  return Buffer.concat(out);
}

/** An entry's parts read by its layout (format 1 or 2), nothing checked: what anyone reading Redis sees. */
function layoutOf(v: Buffer): { hasParse: boolean; generations: string[]; answer: Buffer } {
  let off = v[4] === 1 ? 6 : 12;
  const count = v[off++]!;
  const generations: string[] = [];
  for (let i = 0; i < count; i++) {
    const len = v[off++]!;
    generations.push(v.toString('latin1', off, off + len));
    off += len;
  }
  const n = v.readUInt32BE(off);
  return { hasParse: (v[5]! & 1) === 1, generations, answer: v.subarray(off + 4, off + 4 + n) };
}

/** An entry in format 1, as pgscribe checked it before issue 15: SHA-256, no key, no expiry. */
function unkeyedFormat1(digest: Buffer, bytes: Buffer, hasParse: boolean, gens: string[]): Buffer {
  const head = Buffer.from([0x70, 0x67, 0x73, 0x63, 1, hasParse ? 1 : 0, gens.length]);
  const parts = [head, ...gens.flatMap((g) => [Buffer.from([g.length]), Buffer.from(g, 'latin1')])];
  const n = Buffer.alloc(4);
  n.writeUInt32BE(bytes.length);
  const body = Buffer.concat([...parts, n, bytes]);
  return Buffer.concat([body, createHash('sha256').update(digest).update(body).digest().subarray(0, 16)]);
}

t.test('a tampered value in Redis is never an answer', async (t) => {
  const [a, b] = await pair(t, 0);
  const ca = await fx.session(a.port);
  const cb = await fx.session(b.port);
  const prefix = prefixOf(a);
  const keys = async (): Promise<string[]> => ((await command(redis, ['KEYS', `${prefix}db:postgres:v:*`])) as Buffer[]).map(String);
  /** A reads `sql` (storing it in L2) and returns the new key and its value. */
  const stored = async (sql: string): Promise<{ key: string; value: Buffer; answer: BackendMessage[] }> => {
    const before = new Set(await keys());
    const n = (await a.stats())['cache_l2_stores'] ?? 0;
    const answer = await query(ca, sql);
    await waitCounter(a, 'cache_l2_stores', n + 1);
    const key = (await keys()).filter((k) => !before.has(k));
    if (key.length !== 1) throw new Error(`expected one new key, got ${key.length}`);
    return { key: key[0]!, value: (await command(redis, ['GET', key[0]!])) as Buffer, answer };
  };
  const other = await stored('SELECT v FROM kv WHERE id = 99');
  const tamperings: [string, (v: Buffer, key: string) => Promise<void>][] = [
    [
      "one byte of the answer changed ('v11' becomes 'v12')",
      async (v, key) => {
        const w = Buffer.from(v);
        const at = w.indexOf('v11');
        w[at + 2] = 0x32;
        await command(redis, ['SET', key, w]);
      },
    ],
    ['cut short', async (v, key) => void (await command(redis, ['SET', key, v.subarray(0, v.length - 20)]))],
    ["another request's valid value copied over it", async (_v, key) => void (await command(redis, ['SET', key, other.value]))],
    ['garbage from another program', async (_v, key) => void (await command(redis, ['SET', key, '{"v": "v12"}']))],
    [
      'a list instead of a string',
      async (_v, key) => {
        await command(redis, ['DEL', key]);
        await command(redis, ['RPUSH', key, 'v12']);
      },
    ],
    [
      // Issue 15, security finding 4: the entry's checksum was unkeyed SHA-256 over a digest that
      // is the key's own last part, so whoever answers Redis reads could forge any answer. This is
      // that forgery (format 1, as it was). Now refused as foreign.
      "a forged row under the unkeyed checksum of format 1 ('v16' becomes 'forged')",
      async (v, key) => {
        // Read as an attacker would: by its layout, without checking anything.
        const digest = Buffer.from(key.slice(key.lastIndexOf(':') + 1), 'base64url');
        const d = layoutOf(v);
        await command(redis, ['SET', key, unkeyedFormat1(digest, forgeRow(d.answer, 'forged'), d.hasParse, d.generations)]);
      },
    ],
    [
      "a forged row in today's format, signed with a key other than the instances' ('v17' becomes 'forged')",
      async (v, key) => {
        const digest = Buffer.from(key.slice(key.lastIndexOf(':') + 1), 'base64url');
        const d = layoutOf(v);
        const forged = { bytes: forgeRow(d.answer, 'forged'), hasParse: d.hasParse };
        await command(redis, ['SET', key, encodeEntry(Buffer.from('a guessed key, not the instances\' one'), digest, forged, d.generations, Date.now() + 60_000)!]);
      },
    ],
    [
      'an entry signed with the right key (an insider) and current generations whose answer is cut before its ReadyForQuery',
      async (v, key) => {
        // Made with pgscribe's own encoder and key: the tag proves who wrote it, not that it is
        // an answer; the shape check still refuses it.
        const digest = Buffer.from(key.slice(key.lastIndexOf(':') + 1), 'base64url');
        const d = decodeEntry(Buffer.from(TEST_REDIS_KEY), digest, v, Date.now());
        if (!d.ok) throw new Error('the stored entry does not decode');
        const cut = d.entry.bytes.subarray(0, d.entry.bytes.length - 6);
        await command(redis, ['SET', key, encodeEntry(Buffer.from(TEST_REDIS_KEY), digest, { bytes: cut, hasParse: d.entry.hasParse }, d.generations, d.expiresAt)!]);
      },
    ],
  ];
  let id = 10;
  for (const [what, tamper] of tamperings) {
    id++;
    const sql = `SELECT v FROM kv WHERE id = ${id} AND v <> 'tamper ${id}'`;
    const s = await stored(sql);
    await tamper(s.value, s.key);
    const refused = (await b.stats())['cache_l2_refused'] ?? 0;
    const r = await query(cb, sql);
    t.equal(value(r), `v${id}`, `${what}: B answers PostgreSQL's row`);
    t.ok(wireBytes(r).equals(wireBytes(s.answer)), `${what}: byte for byte what PostgreSQL sent A`);
    t.match(await logged(b, sql, 1), [/ Q cache=miss /], `${what}: B's log says cache=miss`);
    const after = (await b.stats())['cache_l2_refused'] ?? 0;
    // A list is not a value at all: MGET reads it as missing, nothing to refuse.
    if (!what.startsWith('a list')) t.equal(after, refused + 1, `${what}: counted in cache_l2_refused`);
  }
});

t.test('Redis stopped (SIGSTOP) and continued: every query is answered; the breaker opens and closes by itself', async (t) => {
  // Short enough that the stop is noticed at once, long enough that a loaded machine's slow
  // reply after the resume is not taken for a second outage (50 ms was: the breaker opened twice
  // in a make test run with a cluster starting beside it).
  const [a, b] = await pair(t, 0, ['--redis-timeout-ms', '250']);
  const ca = await fx.session(a.port);
  const cb = await fx.session(b.port);
  const sql = 'SELECT v FROM kv WHERE id = 20';
  t.equal(value(await query(cb, sql)), 'v20', 'B reads v20 before the stop (L1 and L2)');
  redis.pause();
  try {
    for (let i = 21; i <= 24; i++) t.equal(value(await query(ca, `SELECT v FROM kv WHERE id = ${i}`)), `v${i}`, `while Redis is stopped, A answers id ${i} from PostgreSQL`);
    await a.waitStderr(/WARN redis: shared cache unavailable;.* reason="3 failures in a row, the last: no reply from Redis within 250 ms"/);
    await query(ca, "UPDATE kv SET v = 'twenty' WHERE id = 20");
    t.equal(value(await query(ca, sql)), 'twenty', 'A sees its own write at once');
    t.equal((await a.stats())['cache_l2_pending_invalidations'], 1, 'the invalidation waits for Redis');
  } finally {
    redis.resume();
  }
  await a.waitStderr(/INFO redis: shared cache available again; using it/, 20000);
  // The probe that closed A's breaker sent the waiting invalidation first: B hears it.
  await waitCounter(b, 'cache_l2_invalidations_received', 1);
  t.equal(value(await query(cb, sql)), 'twenty', 'after Redis is back, B reads the new value');
  t.equal((await a.stats())['cache_l2_pending_invalidations'], 0, 'nothing waits any more');
  t.equal(a.stderr().match(/shared cache unavailable/g)?.length, 1, 'A said unavailable once');
  t.equal(a.stderr().match(/shared cache available again/g)?.length, 1, 'and available again once');
  t.notMatch(a.stderr(), /ERROR/, 'no error logged');
});

function pgbench(port: number, args: string[]): Promise<RunResult> {
  return run(PGBENCH, ['-n', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', ...args, 'postgres'], { timeoutMs: 120_000, cwd: dir });
}

function failed(r: RunResult): number {
  const m = /number of failed transactions: (\d+)/.exec(r.stdout);
  return m ? Number(m[1]) : -1;
}

t.test('Redis killed during pgbench through both instances: no failed transaction; sharing resumes after restart', async (t) => {
  // A killed Redis drops the connection, which opens the breaker at once; pair()'s generous
  // command timeout keeps a busy machine's slow replies from opening it a second time, so that
  // the lines below count the outage, not the load.
  const [a, b] = await pair(t, 0);
  const args = ['-c', '4', '-j', '2', '-T', '8', '-M', 'prepared', '-f', 'hot.sql@4', '-f', 'ryw.sql@1'];
  const runs = Promise.all([pgbench(a.port, args), pgbench(b.port, args)]);
  await sleep(2000);
  await redis.kill();
  await sleep(2000);
  await redis.restart();
  const [ra, rb] = await runs;
  for (const [name, r] of [
    ['A', ra],
    ['B', rb],
  ] as const) {
    t.equal(r.code, 0, `pgbench through ${name} exits 0: ${r.stderr.slice(-400)}`);
    t.equal(failed(r), 0, `pgbench through ${name}: 0 failed transactions`);
    t.notMatch(r.stderr, /aborted|stale_read|pgscribe/, `through ${name}: no client aborted, no stale read, no pgscribe error`);
  }
  for (const [name, p] of [
    ['A', a],
    ['B', b],
  ] as const) {
    await p.waitStderr(/shared cache available again/, 20000);
    // On a failure, the breaker's lines say why it changed state (a reason= per line).
    const diag = { redisLines: p.stderr().split('\n').filter((l) => / redis: /.test(l)) };
    t.equal(p.stderr().match(/WARN redis: shared cache unavailable/g)?.length, 1, `${name}: one line when Redis went away`, diag);
    t.equal(p.stderr().match(/INFO redis: shared cache available again/g)?.length, 1, `${name}: one line when it came back`, diag);
  }
  // Sharing works again: a new read through A is answered from L2 through B.
  const ca = await fx.session(a.port);
  const cb = await fx.session(b.port);
  const sql = 'SELECT v FROM kv WHERE id = 30';
  await query(ca, sql);
  await waitCounter(a, 'cache_l2_stores', 1);
  t.equal(value(await query(cb, sql)), 'v30');
  t.match(await logged(b, sql, 1), [/ cache=l2 /], 'after the restart B is answered from L2 again');
});

/** Lock `slow`, send `sql` through `leader` and wait until it blocks inside PostgreSQL. */
async function blockedLeader(leader: RawClient, sql: string): Promise<{ release(): Promise<void> }> {
  const lock = await holdTableLock(pg(), 'slow');
  leader.write(enc.query(sql));
  await waitUntilCount(pg(), lockWaitersSql(sql), 1);
  return lock;
}

/** A's client leads `sql` (blocked in PostgreSQL), B's clients send it and wait for A's flight. */
async function remoteWaiting(a: RawClient, bs: RawClient[], b: Proxy, sql: string): Promise<{ release(): Promise<void> }> {
  const lock = await blockedLeader(a, sql);
  for (const c of bs) c.write(enc.query(sql));
  await waitCounter(b, 'cache_l2_remote_waits', 1);
  return lock;
}

const SLOW = 'SELECT count(*), sum(v) FROM slow';

t.test('--redis-singleflight: identical reads through both instances run once', async (t) => {
  const [a, b] = await pair(t, 0, ['--redis-singleflight']);
  const as = await Promise.all(Array.from({ length: 5 }, () => fx.session(a.port)));
  const bs = await Promise.all(Array.from({ length: 5 }, () => fx.session(b.port)));
  await resetStatements();
  const lock = await remoteWaiting(as[0]!, [...as.slice(1), ...bs], b, SLOW);
  await waitCounter(b, 'cache_waiters', 4);
  await waitCounter(a, 'cache_waiters', 4);
  await waitUntilCount(pg(), lockWaitersSql(SLOW), 1); // only A's leader reached PostgreSQL
  await lock.release();
  const answers = await Promise.all([...as, ...bs].map((c) => c.readZ(1)));
  for (const [i, r] of answers.entries()) {
    t.strictSame(errorsIn(r), [], `client ${i}: no error`);
    t.ok(wireBytes(r).equals(wireBytes(answers[0]!)), `client ${i}: the same bytes`);
  }
  t.same(column(answers[0]!), ['1000'], 'the right count');
  t.equal(await calls(pg(), SLOW), 1, 'pg_stat_statements: PostgreSQL ran it once for both instances');
  const bl = await logged(b, SLOW, 5);
  t.match(bl.filter((l) => / flight=remote /.test(l)), [/ Q cache=l2 flight=remote /], "B's leader says it waited for another instance and read L2");
  t.equal((await a.stats())['cache_l2_remote_leads'], 1, 'A led the cross-instance flight');
});

t.test('--redis-singleflight: the leading instance dies; the other one runs the query itself after --redis-lock-ms', async (t) => {
  const [a, b] = await pair(t, 0, ['--redis-singleflight', '--redis-lock-ms', '1000']);
  const ca = await fx.session(a.port);
  const bs = await Promise.all(Array.from({ length: 3 }, () => fx.session(b.port)));
  const sql = `${SLOW} WHERE id > 1`;
  const lock = await remoteWaiting(ca, bs, b, sql);
  a.proc.kill('SIGKILL');
  await waitCounter(b, 'cache_l2_remote_timeouts', 1, 15000);
  await waitUntilCount(pg(), lockWaitersSql(sql), 2); // B's leader reached PostgreSQL
  await lock.release();
  for (const [i, c] of bs.entries()) {
    const r = await c.readZ(1);
    t.strictSame(errorsIn(r), [], `B client ${i}: no error`);
    t.same(column(r), ['999'], `B client ${i}: the right count`);
  }
});

t.test("--redis-singleflight: the leading instance's client goes away; the others are told at once", async (t) => {
  const [a, b] = await pair(t, 0, ['--redis-singleflight', '--redis-lock-ms', '600000']);
  const ca = await fx.session(a.port);
  const cb = await fx.session(b.port);
  const sql = `${SLOW} WHERE id > 2`;
  const lock = await remoteWaiting(ca, [cb], b, sql);
  ca.sock.destroy();
  // A frees the lock and says the flight is over: B does not wait out the ten-minute lock.
  await waitUntilCount(pg(), lockWaitersSql(sql), 2);
  await lock.release();
  const r = await cb.readZ(1);
  t.same(column(r), ['998'], 'B: the right count');
  t.equal((await b.stats())['cache_l2_remote_timeouts'], 0, 'B did not time out');
});

t.test('--redis-singleflight: a client waiting for another instance can be cancelled (57014); its session carries on', async (t) => {
  const [a, b] = await pair(t, 0, ['--redis-singleflight', '--redis-lock-ms', '600000']);
  const ca = await fx.session(a.port);
  const waiter = await fx.sessionWithKey(b.port);
  const sql = `${SLOW} WHERE id > 3`;
  const lock = await remoteWaiting(ca, [waiter.c], b, sql);
  const cancel = await RawClient.connect(b.port);
  cancel.write(enc.cancel(waiter.pid, waiter.secret));
  const r = await waiter.c.readZ(1);
  t.equal(errorsIn(r)[0]?.['C'], '57014', 'query_canceled');
  t.equal(value(await query(waiter.c, 'SELECT 41 + 1')), '42', 'the session carries on');
  await lock.release();
  t.same(column(await ca.readZ(1)), ['997'], "A's client gets its answer");
});
