// The cache never serves what the rules forbid: stale rows after a committed write, rows from
// inside a transaction, a temporary table's rows to another session, another user's rows under
// row-level security, another search_path's rows. The TTL is an hour, so nothing here passes
// because an entry expired.
import t from 'tap';
import { USERS } from '../harness/pg-cluster';
import { clusterAndProxies } from '../helpers/fixture';
import type { Proxy } from '../harness/proxy';
import { WORKER_MODES, calls, runUnit, waitCounter, waitUntilCount, cacheArgs } from '../helpers/cache';
import { RawClient, describeMessages, enc, errorsIn, value } from '../harness/wire';
import { sleep, waitFor } from '../harness/time';

const { pg, fx } = clusterAndProxies(t);
const USER = USERS.trust.user;
const HOUR = '3600000';

t.before(async () => {
  await pg().psql(
    [
      'CREATE TABLE kv (id int PRIMARY KEY, v text)',
      "INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 10) g",
      'CREATE TABLE ctr (id int PRIMARY KEY, v bigint)',
      'INSERT INTO ctr SELECT g, 0 FROM generate_series(1, 4) g',
      'CREATE TABLE shadow (v text)',
      "INSERT INTO shadow VALUES ('public')",
      'CREATE ROLE rls_b LOGIN',
      'CREATE TABLE rls (owner name, secret text)',
      `INSERT INTO rls VALUES ('${USER}', 'for ${USER}'), ('rls_b', 'for rls_b')`,
      'ALTER TABLE rls ENABLE ROW LEVEL SECURITY',
      'CREATE POLICY own ON rls USING (owner = current_user)',
      'CREATE SCHEMA sa',
      'CREATE SCHEMA sb',
      "CREATE TABLE sa.where_am_i AS SELECT 'schema a' AS v",
      "CREATE TABLE sb.where_am_i AS SELECT 'schema b' AS v",
      "CREATE TABLE public.where_am_i AS SELECT 'schema public' AS v",
      `GRANT ALL ON kv, ctr, shadow TO ${USER}`,
      `GRANT SELECT ON rls TO ${USER}, rls_b`,
      `GRANT USAGE ON SCHEMA sa, sb TO ${USER}`,
      `GRANT SELECT ON sa.where_am_i, sb.where_am_i, public.where_am_i TO ${USER}`,
      `GRANT CREATE ON SCHEMA public TO rls_b`,
    ].join('; '),
  );
});

async function cachedProxy(workers: number, extra: string[] = []): Promise<Proxy> {
  return fx.launch(['--cache', '--singleflight', '--cache-ttl', HOUR, ...cacheArgs(workers), ...extra]);
}

/** A read through the proxy: its value, and whether the proxy's hit counter moved (nothing else runs meanwhile). */
async function read(p: Proxy, c: RawClient, sql: string): Promise<{ v: string | null; hit: boolean }> {
  const before = (await p.stats())['cache_hits'] ?? 0;
  const r = await c.query(sql);
  if (errorsIn(r).length > 0) throw new Error(`${sql}: ${describeMessages(r)}`);
  const after = (await p.stats())['cache_hits'] ?? 0;
  return { v: value(r), hit: after > before };
}

for (const workers of WORKER_MODES) {
  const mode = `workers=${workers}`;

  t.test(`${mode}: an UPDATE through the proxy is seen by the next read; a rolled-back one changes nothing`, async (t) => {
    const p = await cachedProxy(workers);
    const a = await fx.session(p.port);
    const b = await fx.session(p.port);
    const q = 'SELECT v FROM kv WHERE id = 1';
    t.strictSame(await read(p, a, q), { v: 'v1', hit: false }, 'first read: a miss');
    t.strictSame(await read(p, b, q), { v: 'v1', hit: true }, 'second read, other session: a hit');

    await a.query("UPDATE kv SET v = 'new' WHERE id = 1");
    t.strictSame(await read(p, b, q), { v: 'new', hit: false }, 'after the UPDATE committed: the new value, from PostgreSQL');
    t.strictSame(await read(p, a, q), { v: 'new', hit: true }, 'then cached again');

    await a.query('BEGIN');
    await a.query("UPDATE kv SET v = 'rolled back' WHERE id = 1");
    t.strictSame(await read(p, b, q), { v: 'new', hit: true }, 'while the transaction is open: the committed value');
    t.strictSame(await read(p, a, q), { v: 'rolled back', hit: false }, 'inside the transaction: its own row, never from the cache');
    await a.query('ROLLBACK');
    t.strictSame(await read(p, b, q), { v: 'new', hit: true }, 'after ROLLBACK: still cached, nothing was invalidated');
    t.equal((await p.stats())['cache_invalidated_entries'], 1, 'one entry invalidated in all (by the committed UPDATE)');

    await a.query('BEGIN');
    await a.query("UPDATE kv SET v = 'committed' WHERE id = 1");
    t.strictSame(await read(p, b, q), { v: 'new', hit: true }, 'before COMMIT: the old value is still right');
    await a.query('COMMIT');
    t.strictSame(await read(p, b, q), { v: 'committed', hit: false }, 'after COMMIT: the new value');
  });

  t.test(`${mode}: a read inside a transaction block is never served from the cache`, async (t) => {
    const p = await cachedProxy(workers);
    const a = await fx.session(p.port);
    const q = 'SELECT v FROM kv WHERE id = 2';
    await read(p, a, q);
    t.equal((await read(p, a, q)).hit, true, 'cached');
    await pg().psql('SELECT pg_stat_statements_reset()');
    await a.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    t.equal((await read(p, a, q)).hit, false, 'inside BEGIN: not a hit');
    t.equal((await read(p, a, q)).hit, false, 'and again not');
    await a.query('COMMIT');
    t.equal(await calls(pg(), 'SELECT v FROM kv WHERE id = $1'), 2, 'PostgreSQL ran both reads of the transaction');
    t.equal((await read(p, a, q)).hit, true, 'after COMMIT (a read-only transaction): cached again');
  });

  t.test(`${mode}: writes in every form invalidate: extended protocol, COPY, DDL, multi-statement, functions`, async (t) => {
    const p = await cachedProxy(workers);
    const a = await fx.session(p.port);
    const b = await fx.session(p.port);
    const q = 'SELECT v FROM kv WHERE id = 3';
    const cycle = async (what: string, write: () => Promise<unknown>, expect: string) => {
      // Cached before the write, so that a fresh read after it means something. Read until a hit:
      // the catalog poll may drop the database between two reads (the TRUNCATE cycle rewrites
      // pg_class, which the poll sees up to catalog-poll-ms later).
      const cached = await waitFor(async () => ((await read(p, b, q)).hit ? true : undefined), {
        timeoutMs: 10_000,
        intervalMs: 10,
        timeout: () => `${what}: never answered from the cache before the write`,
      });
      t.equal(cached, true, `${what}: cached before`);
      await write();
      t.strictSame(await read(p, b, q), { v: expect, hit: false }, `${what}: the next read is fresh`);
    };
    await cycle('extended-protocol UPDATE', () => runUnit(a, { sql: 'UPDATE kv SET v = $1 WHERE id = 3', params: ['ext'] }), 'ext');
    await cycle('named prepared UPDATE', async () => {
      a.write(Buffer.concat([enc.parse('up', 'UPDATE kv SET v = $1 WHERE id = $2'), enc.sync()]));
      await a.readZ(1);
      return runUnit(a, { sql: null, statement: 'up', params: ['prep', '3'] });
    }, 'prep');
    await cycle('COPY FROM STDIN', async () => {
      a.write(enc.query('COPY kv (id, v) FROM STDIN'));
      await a.read(); // CopyInResponse
      a.write(Buffer.concat([enc.copyData('100\tcopied\n'), enc.copyDone()]));
      await a.readZ(1);
      await a.query("UPDATE kv SET v = 'after copy' WHERE id = 3");
    }, 'after copy');
    await cycle('DELETE + INSERT in one simple query', () => a.query("DELETE FROM kv WHERE id = 3; INSERT INTO kv VALUES (3, 'multi')"), 'multi');
    await cycle('a user function (tables unknown: the whole database)', async () => {
      await pg().psql(`CREATE OR REPLACE FUNCTION set_kv(text) RETURNS void LANGUAGE sql AS $$ UPDATE kv SET v = $1 WHERE id = 3 $$; GRANT EXECUTE ON FUNCTION set_kv(text) TO ${USER}`);
      return a.query("SELECT set_kv('func')");
    }, 'func');
    await cycle('TRUNCATE + INSERT in a transaction', async () => {
      await a.query('BEGIN');
      await a.query('TRUNCATE kv');
      await a.query("INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 10) g");
      await a.query("UPDATE kv SET v = 'truncated' WHERE id = 3");
      await a.query('COMMIT');
    }, 'truncated');
    // COMMIT AND CHAIN commits although the session stays in a transaction block.
    await cycle('COMMIT AND CHAIN', async () => {
      await a.query('BEGIN');
      await a.query("UPDATE kv SET v = 'chained' WHERE id = 3");
      await a.query('COMMIT AND CHAIN');
    }, 'chained');
    await a.query('COMMIT');
  });

  t.test(`${mode}: an answer computed while a write committed is not stored`, async (t) => {
    const p = await cachedProxy(workers);
    const reader = await fx.session(p.port);
    const writer = await fx.session(p.port);
    await writer.query("UPDATE kv SET v = 'before' WHERE id = 4");
    // The read takes its snapshot at once, then spends a while counting.
    const slow = "SELECT v, (SELECT count(*) FROM generate_series(1, 10000000)) AS n FROM kv WHERE id = 4";
    reader.write(enc.query(slow));
    await waitUntilCount(pg(), `SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT v, (SELECT count(*)%'`, 1);
    await writer.query("UPDATE kv SET v = 'after' WHERE id = 4");
    const r = await reader.readZ(1, 60000);
    t.equal(value(r), 'before', 'the slow read saw the old snapshot (correct for it)');
    // (With worker threads the shard-side counters arrive with the shard's next message.)
    t.ok(((await waitCounter(p, 'cache_stale_skips', 1))['cache_stale_skips'] ?? 0) >= 1, 'its answer was not stored (stale_skips)');
    t.strictSame(await read(p, reader, slow), { v: 'after', hit: false }, 'the next read runs again and sees the write');
  });

  t.test(`${mode}: read-your-writes under concurrency: a read after a committed write never goes back`, async (t) => {
    const p = await cachedProxy(workers);
    const cs = await Promise.all(Array.from({ length: 8 }, () => fx.session(p.port)));
    let violations = 0;
    let hits = 0;
    const deadline = Date.now() + 3000;
    await Promise.all(
      cs.map(async (c, i) => {
        const id = (i % 4) + 1;
        for (let n = 0; Date.now() < deadline; n++) {
          const w = value(await (n % 2 === 0 ? c.query(`UPDATE ctr SET v = v + 1 WHERE id = ${id} RETURNING v`) : runUnit(c, { sql: 'UPDATE ctr SET v = v + 1 WHERE id = $1 RETURNING v', params: [String(id)] })));
          for (let k = 0; k < 3; k++) {
            const r = value(await (k % 2 === 0 ? c.query(`SELECT v FROM ctr WHERE id = ${id}`) : runUnit(c, { sql: 'SELECT v FROM ctr WHERE id = $1', params: [String(id)] })));
            if (Number(r) < Number(w)) violations++;
          }
        }
      }),
    );
    hits = (await p.stats())['cache_hits'] ?? 0;
    t.equal(violations, 0, 'no read returned a value older than the reader\'s own committed write');
    t.ok(hits > 0, `the cache did serve reads meanwhile (${hits} hits)`);
  });

  t.test(`${mode}: a temporary table that shadows a real one is never served across sessions`, async (t) => {
    const p = await cachedProxy(workers);
    const a = await fx.session(p.port);
    const b = await fx.session(p.port);
    const q = 'SELECT v FROM shadow';
    t.strictSame(await read(p, a, q), { v: 'public', hit: false }, 'a: the real table');
    t.strictSame(await read(p, a, q), { v: 'public', hit: true }, 'a: cached');
    await b.query("CREATE TEMP TABLE shadow (v text); INSERT INTO shadow VALUES ('temp of b')");
    t.strictSame(await read(p, b, q), { v: 'temp of b', hit: false }, 'b: its temp table');
    t.strictSame(await read(p, b, q), { v: 'temp of b', hit: false }, 'b: never from the cache');
    // b's INSERT names "shadow": the real table's entries were invalidated too (a superset is safe).
    t.equal((await read(p, a, q)).v, 'public', 'a: the real table');
    t.strictSame(await read(p, a, q), { v: 'public', hit: true }, 'a: the real table, cached again');
    t.strictSame(await read(p, b, q), { v: 'temp of b', hit: false }, 'b: still its temp table, not a\'s entry');
    const c = await fx.session(p.port);
    t.strictSame(await read(p, c, q), { v: 'public', hit: true }, 'a new session: the real table');
  });

  t.test(`${mode}: two users under row-level security never see each other's cached rows`, async (t) => {
    const p = await cachedProxy(workers);
    const a = await fx.session(p.port);
    const b = await RawClient.connect(p.port);
    await b.startup('rls_b');
    const q = 'SELECT secret FROM rls';
    for (let i = 0; i < 2; i++) {
      t.strictSame(await read(p, a, q), { v: `for ${USER}`, hit: i > 0 }, `${USER}, read ${i + 1}`);
      t.strictSame(await read(p, b, q), { v: 'for rls_b', hit: i > 0 }, `rls_b, read ${i + 1}`);
    }
    b.sock.destroy();
  });

  t.test(`${mode}: search_path from SET or from the startup packet keeps sessions apart`, async (t) => {
    const p = await cachedProxy(workers);
    const q = 'SELECT v FROM where_am_i';
    const viaStartup = async (schema: string) => {
      const c = await RawClient.connect(p.port);
      await c.startup(USER, 'postgres', { options: `-c search_path=${schema}` });
      return c;
    };
    const a = await viaStartup('sa');
    const b = await viaStartup('sb');
    t.equal((await read(p, a, q)).v, 'schema a', 'options=-c search_path=sa');
    t.strictSame(await read(p, b, q), { v: 'schema b', hit: false }, 'options=-c search_path=sb: not the other one\'s entry');
    t.strictSame(await read(p, b, q), { v: 'schema b', hit: true }, 'its own entry');
    // A SET does not end a session's use of the cache: it is asked for its settings again, and
    // its answers are keyed by what it has now.
    const c = await fx.session(p.port);
    await c.query('SET search_path = sa');
    t.strictSame(await read(p, c, q), { v: 'schema a', hit: false }, 'after SET: not the entry of a session whose startup packet differs');
    t.strictSame(await read(p, c, q), { v: 'schema a', hit: true }, 'after SET: its own entry, under the setting it has now');
    await c.query('SET search_path = sb');
    t.strictSame(await read(p, c, q), { v: 'schema b', hit: false }, 'after another SET: not the entry of its old setting');
    const d = await fx.session(p.port);
    await d.query('SET search_path = sb');
    t.strictSame(await read(p, d, q), { v: 'schema b', hit: true }, 'another session after the same SET: the same entry');
    await d.query('RESET search_path');
    t.strictSame(await read(p, d, q), { v: 'schema public', hit: false }, 'after RESET: the default path\'s answer, not the SET one\'s');
    a.sock.destroy();
    b.sock.destroy();
  });

  t.test(`${mode}: a session that SETs more than 64 custom settings is relayed, not probed for each`, async (t) => {
    const p = await cachedProxy(workers);
    const c = await fx.session(p.port);
    const q = 'SELECT v FROM kv WHERE id = 1 /* custom settings */';
    await c.query('SET app.n1 = 1');
    await read(p, c, q);
    t.equal((await read(p, c, q)).hit, true, 'one custom setting: asked for by name, served');
    await c.query(Array.from({ length: 64 }, (_, i) => `SET app.n${i + 2} = 1`).join('; '));
    await read(p, c, q);
    t.equal((await read(p, c, q)).hit, false, '65 of them: the session is relayed from now on');
  });

  t.test(`${mode}: volatile functions, locking reads and catalog reads are never cached`, async (t) => {
    const p = await cachedProxy(workers);
    const a = await fx.session(p.port);
    for (const q of [
      'SELECT now()',
      'SELECT random()',
      'SELECT v FROM kv WHERE id = 5 FOR UPDATE',
      "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'",
      "SELECT $$now$$::timestamptz > '2000-01-01'",
    ]) {
      await read(p, a, q);
      t.equal((await read(p, a, q)).hit, false, `${q}: not cached`);
    }
    const r1 = await runUnit(a, { sql: 'SELECT $1::timestamptz', params: ['now'] });
    await sleep(5);
    const r2 = await runUnit(a, { sql: 'SELECT $1::timestamptz', params: ['now'] });
    t.not(value(r1), value(r2), "a bound 'now' is resolved by PostgreSQL each time");
  });

  t.test(`${mode}: cache-rules: "never" and a TTL per pattern`, async (t) => {
    const rules = JSON.stringify([
      { pattern: 'id = 6', ttl: 'never' },
      { pattern: 'id = 7', ttl: 200 },
    ]);
    const p = await cachedProxy(workers, ['--cache-rules', rules]);
    const a = await fx.session(p.port);
    await read(p, a, 'SELECT v FROM kv WHERE id = 6');
    t.equal((await read(p, a, 'SELECT v FROM kv WHERE id = 6')).hit, false, 'never: not cached');
    await read(p, a, 'SELECT v FROM kv WHERE id = 7');
    t.equal((await read(p, a, 'SELECT v FROM kv WHERE id = 7')).hit, true, 'ttl 200: cached');
    await sleep(300);
    t.equal((await read(p, a, 'SELECT v FROM kv WHERE id = 7')).hit, false, 'ttl 200: expired after 300 ms');
    t.equal((await read(p, a, 'SELECT v FROM kv WHERE id = 8')).hit, false, 'default TTL: first a miss');
    t.equal((await read(p, a, 'SELECT v FROM kv WHERE id = 8')).hit, true, 'default TTL: then a hit');
  });
}
