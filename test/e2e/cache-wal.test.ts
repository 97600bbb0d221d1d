// Issue 16: with --cache-invalidation wal, a write straight to PostgreSQL (psql, not through
// pgscribe) that changes what a cached read returns is seen through pgscribe once the change
// stream delivered it, with an hour's TTL, whatever wrote the rows: a trigger, a cascade, a rule,
// a writable view, a partition or inheritance child, INSERT ... ON CONFLICT, TRUNCATE, a function,
// two-phase commit. A rolled-back write invalidates nothing; a table without a replica identity
// is relayed (not cached) and its writes keep working. In every worker mode, and as two
// instances sharing Redis (each reading the stream itself).
import t, { type Test as Tap } from 'tap';
import { startCluster, type PgCluster } from '../harness/pg-cluster';
import type { Proxy } from '../harness/proxy';
import { startRedis, type RedisServer } from '../harness/redis';
import { waitFor } from '../harness/time';
import { queryValue, RawClient } from '../harness/wire';
import { workerArgs } from '../helpers/cache';
import { proxyFixture } from '../helpers/fixture';
import { admin, cacheModes, type CacheMode } from '../helpers/safe-cache';

let pg: PgCluster;
let redis: RedisServer | null = null;
const fx = proxyFixture({ upstreamPort: () => pg.port, user: 'postgres' });
const HOUR = '3600000';
const DEADLINE_MS = 60_000;

t.before(async () => {
  pg = await startCluster({ conf: { max_prepared_transactions: '10' } });
  if (cacheModes().some((m) => m.redis)) redis = await startRedis();
});

t.teardown(async () => {
  await fx.cleanup();
  await redis?.stop();
  await pg?.stop();
});

/** Every table the cases use; keyed (so that pgscribe publishes them) but for `nokey`. */
const SCHEMA: readonly string[] = [
  "CREATE TABLE kv (id int PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'one'), (2, 'two')",
  'CREATE TABLE src (id int PRIMARY KEY); CREATE TABLE audit (id int PRIMARY KEY)',
  'CREATE FUNCTION audit_it() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit VALUES (NEW.id); RETURN NEW; END $$',
  'CREATE TRIGGER audit_src AFTER INSERT ON src FOR EACH ROW EXECUTE FUNCTION audit_it()',
  'CREATE TABLE p_cas (id int PRIMARY KEY); CREATE TABLE p_nul (id int PRIMARY KEY); CREATE TABLE p_def (id int PRIMARY KEY)',
  'INSERT INTO p_cas VALUES (1), (2), (3); INSERT INTO p_nul VALUES (1), (2), (3); INSERT INTO p_def VALUES (1), (2), (3)',
  'CREATE TABLE c_cascade (id int PRIMARY KEY, pid int REFERENCES p_cas ON DELETE CASCADE); INSERT INTO c_cascade VALUES (10, 1), (20, 2), (30, 3)',
  'CREATE TABLE c_null (id int PRIMARY KEY, pid int REFERENCES p_nul ON DELETE SET NULL); INSERT INTO c_null VALUES (10, 1), (20, 2), (30, 3)',
  'CREATE TABLE c_def (id int PRIMARY KEY, pid int DEFAULT 3 REFERENCES p_def ON DELETE SET DEFAULT); INSERT INTO c_def VALUES (10, 1), (20, 2)',
  'CREATE TABLE ruled (id int PRIMARY KEY); CREATE TABLE rule_log (id int PRIMARY KEY)',
  'CREATE RULE log_it AS ON INSERT TO ruled DO ALSO INSERT INTO rule_log VALUES (NEW.id)',
  "CREATE TABLE base_w (id int PRIMARY KEY, v text); INSERT INTO base_w VALUES (1, 'w'); CREATE VIEW wv AS SELECT id, v FROM base_w",
  "CREATE TABLE pt (k int PRIMARY KEY, v text) PARTITION BY RANGE (k); CREATE TABLE pt_a PARTITION OF pt FOR VALUES FROM (0) TO (100); CREATE TABLE pt_b PARTITION OF pt FOR VALUES FROM (100) TO (200); INSERT INTO pt VALUES (1, 'a'), (101, 'b')",
  "CREATE TABLE ih (id int PRIMARY KEY, v text); CREATE TABLE ih_c (PRIMARY KEY (id)) INHERITS (ih); INSERT INTO ih VALUES (1, 'parent'); INSERT INTO ih_c VALUES (2, 'child')",
  'CREATE TABLE tr (id int PRIMARY KEY); INSERT INTO tr VALUES (1), (2)',
  'CREATE TABLE fn_t (id int PRIMARY KEY, n int); INSERT INTO fn_t VALUES (1, 0)',
  'CREATE FUNCTION bump() RETURNS void LANGUAGE plpgsql AS $$ BEGIN UPDATE fn_t SET n = n + 1; END $$',
  "CREATE TABLE tp (id int PRIMARY KEY, v text); INSERT INTO tp VALUES (1, 'before')",
  "CREATE TABLE rb (id int PRIMARY KEY, v text); INSERT INTO rb VALUES (1, 'kept')",
  "CREATE TABLE nokey (v text); INSERT INTO nokey VALUES ('k0')",
];

interface Case {
  name: string;
  read: string;
  /** Straight to PostgreSQL, one Query each on one session. */
  write: readonly string[];
}

const CASES: readonly Case[] = [
  { name: 'a plain UPDATE by psql', read: 'SELECT v FROM kv WHERE id = 1', write: ["UPDATE kv SET v = 'uno' WHERE id = 1"] },
  { name: 'a trigger writing another table', read: 'SELECT count(*) FROM audit', write: ['INSERT INTO src VALUES (1)'] },
  { name: 'ON DELETE CASCADE', read: 'SELECT count(*) FROM c_cascade', write: ['DELETE FROM p_cas WHERE id = 1'] },
  { name: 'ON DELETE SET NULL', read: 'SELECT count(*) FROM c_null WHERE pid IS NULL', write: ['DELETE FROM p_nul WHERE id = 2'] },
  { name: 'ON DELETE SET DEFAULT', read: 'SELECT string_agg(pid::text, \',\' ORDER BY id) FROM c_def', write: ['DELETE FROM p_def WHERE id = 1 OR id = 2'] },
  { name: 'a rule', read: 'SELECT count(*) FROM rule_log', write: ['INSERT INTO ruled VALUES (1)'] },
  { name: 'a writable view (read through the view)', read: 'SELECT v FROM wv WHERE id = 1', write: ["UPDATE wv SET v = 'w2' WHERE id = 1"] },
  { name: 'a partition written, the parent read', read: 'SELECT string_agg(v, \',\' ORDER BY k) FROM pt', write: ["INSERT INTO pt_a VALUES (2, 'a2')"] },
  { name: 'the partitioned parent written, a partition read', read: 'SELECT string_agg(v, \',\' ORDER BY k) FROM pt_b', write: ["UPDATE pt SET v = 'b2' WHERE k = 101"] },
  { name: 'INSERT ... ON CONFLICT into a partition', read: 'SELECT v FROM pt WHERE k = 1', write: ["INSERT INTO pt_a VALUES (1, 'x') ON CONFLICT (k) DO UPDATE SET v = 'upserted'"] },
  { name: 'an inheritance child written, the parent read', read: 'SELECT string_agg(v, \',\' ORDER BY id) FROM ih', write: ["INSERT INTO ih_c VALUES (3, 'child2')"] },
  { name: 'the inheritance parent written, the child read', read: 'SELECT string_agg(v, \',\' ORDER BY id) FROM ih_c', write: ["UPDATE ih SET v = v || '!'"] },
  { name: 'TRUNCATE', read: 'SELECT count(*) FROM tr', write: ['TRUNCATE tr'] },
  { name: 'a function that writes', read: 'SELECT n FROM fn_t WHERE id = 1', write: ['SELECT bump()'] },
  {
    name: 'two-phase commit',
    read: 'SELECT v FROM tp WHERE id = 1',
    write: ['BEGIN', "UPDATE tp SET v = 'after' WHERE id = 1", "PREPARE TRANSACTION 'pgscribe_wal_2pc'", "COMMIT PREPARED 'pgscribe_wal_2pc'"],
  },
];

/** One pgscribe session on a database, as postgres. */
const session = (port: number, db: string): Promise<RawClient> => fx.session(port, db);

const value = (c: RawClient, sql: string): Promise<string | null> => queryValue(c, sql);

const direct = async (db: string, sql: string): Promise<string | null> => (await admin(pg, [sql], db))[0]!.value;
/** The last stats line read, for the messages of a timeout. */
let last: Record<string, number> = {};
const hits = (s: Record<string, number>): number => (s['cache_hits'] ?? 0) + (s['cache_l2_hits'] ?? 0);

/** A read through p that was answered from the cache (hit counter moved); its value. */
async function readHit(p: Proxy, c: RawClient, sql: string): Promise<{ v: string | null; hit: boolean }> {
  const before = hits(await p.stats());
  const v = await value(c, sql);
  last = await p.stats();
  return { v, hit: hits(last) > before };
}

/** Read until an answer comes from the cache (the stream is up, the tables are published and known). */
async function cached(p: Proxy, c: RawClient, sql: string): Promise<string | null> {
  return waitFor(
    async () => {
      const r = await readHit(p, c, sql);
      return r.hit ? { v: r.v } : undefined;
    },
    { timeoutMs: DEADLINE_MS, intervalMs: 100, timeout: () => `${sql} was never answered from the cache; stats: ${JSON.stringify(last)}` },
  ).then((x) => x.v);
}

/** Wait until each instance's stream delivered a commit past `before` (its wal_commits moved). */
async function delivered(proxies: readonly Proxy[], before: readonly number[]): Promise<void> {
  for (const [i, p] of proxies.entries()) {
    await waitFor(async () => (((await p.stats())['wal_commits'] ?? 0) > before[i]! ? true : undefined), {
      timeoutMs: DEADLINE_MS,
      intervalMs: 50,
      timeout: () => `instance ${i}: the change stream delivered nothing`,
    });
  }
}

async function commitCounts(proxies: readonly Proxy[]): Promise<number[]> {
  const out: number[] = [];
  for (const p of proxies) out.push((await p.stats())['wal_commits'] ?? 0);
  return out;
}

let dbs = 0;

async function runMode(tt: Tap, mode: CacheMode): Promise<void> {
  const db = `wal_${++dbs}`;
  await admin(pg, [`CREATE DATABASE ${db}`]);
  await admin(pg, SCHEMA, db);
  const shared = mode.redis && redis !== null ? ['--redis', `127.0.0.1:${redis.port}`, '--redis-prefix', `${db}:`, '--redis-timeout-ms', '2000'] : [];
  const args = ['--cache', '--cache-ttl', HOUR, '--cache-invalidation', 'wal', '--catalog-user', 'postgres', ...workerArgs(mode.workers), ...shared];
  const proxies = [await fx.launch(args)];
  if (mode.redis) proxies.push(await fx.launch(args));
  const sessions: RawClient[] = [];
  for (const p of proxies) sessions.push(await session(p.port, db));

  // A rolled-back write invalidates nothing: the stream reports no commit for it, and the answer
  // stays cached (the hit counter moves). First, before any case: TRUNCATE changes pg_class, and
  // the catalog poll that notices it drops the whole database, whatever the stream says.
  const rbRead = 'SELECT v FROM rb WHERE id = 1';
  for (const [i, p] of proxies.entries()) await cached(p, sessions[i]!, rbRead);
  const beforeRb = await commitCounts(proxies);
  const invalidationsRb: number[] = [];
  for (const p of proxies) invalidationsRb.push((await p.stats())['wal_invalidations'] ?? 0);
  await admin(pg, ['BEGIN', "UPDATE rb SET v = 'rolled back' WHERE id = 1", 'ROLLBACK'], db);
  await admin(pg, ["UPDATE kv SET v = 'marker' WHERE id = 2"], db);
  await delivered(proxies, beforeRb);
  for (const [i, p] of proxies.entries()) {
    const st = await p.stats();
    tt.equal(st['wal_commits'], beforeRb[i]! + 1, `rolled back: instance ${i} received the marker's commit alone`);
    tt.equal(st['wal_invalidations'], invalidationsRb[i]! + 1, `rolled back: instance ${i} invalidated for the marker alone`);
    const r = await readHit(p, sessions[i]!, rbRead);
    tt.same(r, { v: 'kept', hit: true }, `rolled back: instance ${i} still answers from the cache`);
  }

  for (const k of CASES) {
    const was = await direct(db, k.read);
    for (const [i, p] of proxies.entries()) tt.equal(await cached(p, sessions[i]!, k.read), was, `${k.name}: instance ${i} caches the answer PostgreSQL gives`);
    const before = await commitCounts(proxies);
    await admin(pg, k.write, db);
    const now = await direct(db, k.read);
    tt.not(now, was, `${k.name}: the write changed the answer (${was} -> ${now})`);
    await delivered(proxies, before);
    for (const i of proxies.keys()) tt.equal(await value(sessions[i]!, k.read), now, `${k.name}: instance ${i} answers as PostgreSQL once the stream delivered it`);
  }

  // A table without a replica identity: not in the publication, so relayed; its writes work.
  tt.equal(await direct(db, "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgscribe_all' AND tablename = 'nokey'"), '0', 'nokey is not published');
  tt.equal(await direct(db, "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgscribe_all' AND tablename = 'kv'"), '1', 'kv is');
  for (const [i, p] of proxies.entries()) {
    await value(sessions[i]!, 'SELECT v FROM nokey');
    const r = await readHit(p, sessions[i]!, 'SELECT v FROM nokey');
    tt.equal(r.hit, false, `instance ${i}: a read of the keyless table is relayed`);
  }
  await admin(pg, ["UPDATE nokey SET v = 'k1'", "DELETE FROM nokey WHERE v = 'nothing'"], db);
  tt.equal(await value(sessions[0]!, "UPDATE nokey SET v = 'k2' RETURNING v"), 'k2', 'an UPDATE through pgscribe still works');
  tt.equal(await value(sessions[0]!, 'SELECT v FROM nokey'), 'k2');

  for (const c of sessions) c.sock.destroy();
  for (const p of proxies) await fx.stopProxy(p);
}

for (const mode of cacheModes()) {
  t.test(mode.name, (tt) => runMode(tt, mode));
}
