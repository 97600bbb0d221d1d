// Issue 16 review: pgscribe's own publication pgscribe_all only ever grew (src/wal/publication.ts
// added each table with a usable replica identity). A published table that then lost it (ALTER
// TABLE ... DROP CONSTRAINT its primary key, REPLICA IDENTITY NOTHING, its identity index
// dropped) stayed published, and PostgreSQL refused every UPDATE and DELETE on it, through
// pgscribe or not: 55000 "cannot update table ... because it does not have a replica identity and
// publishes updates". pgscribe's publication broke the user's application. On the build before
// the fix the table never left pgscribe_all, and the waits below timed out.
//
// pgscribe now drops such a table from its own publication when the catalog poll sees the change;
// reads of it are relayed from then on, and what was cached of it is dropped. What remains: the
// time between the DDL and the poll (catalog-poll-ms, 1 s by default), during which PostgreSQL
// still refuses the UPDATE; this file measures it and prints it as a comment.
//
// A table whose only key is a DEFERRABLE primary key has no replica identity either (PostgreSQL
// takes only an immediate unique index): it must never be added.
import t, { type Test as Tap } from 'tap';
import { startCluster, type PgCluster } from '../harness/pg-cluster';
import type { Proxy } from '../harness/proxy';
import { waitFor } from '../harness/time';
import { errorFields, queryValue, RawClient } from '../harness/wire';
import { proxyFixture } from '../helpers/fixture';
import { admin } from '../helpers/safe-cache';

let pg: PgCluster;
const fx = proxyFixture({ upstreamPort: () => pg.port, user: 'postgres' });
const DB = 'rv_loses_key';
const DEADLINE_MS = 20_000;

t.before(async () => {
  pg = await startCluster();
  await admin(pg, [`CREATE DATABASE ${DB}`]);
  await admin(pg, [
    "CREATE TABLE kv (id int PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'one')",
    "CREATE TABLE ri_nothing (id int PRIMARY KEY, v text); INSERT INTO ri_nothing VALUES (1, 'one')",
    "CREATE TABLE ri_index (id int NOT NULL, v text); CREATE UNIQUE INDEX ri_index_id ON ri_index (id); ALTER TABLE ri_index REPLICA IDENTITY USING INDEX ri_index_id; INSERT INTO ri_index VALUES (1, 'one')",
    "CREATE TABLE via (id int PRIMARY KEY, v text); INSERT INTO via VALUES (1, 'one')",
    "CREATE TABLE deferred (id int PRIMARY KEY DEFERRABLE, v text); INSERT INTO deferred VALUES (1, 'one')",
  ], DB);
});
t.teardown(async () => {
  await fx.cleanup();
  await pg?.stop();
});

const published = async (table: string): Promise<boolean> =>
  (await admin(pg, [`SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgscribe_all' AND tablename = '${table}'`], DB))[0]!.value === '1';

const hits = async (p: Proxy): Promise<number> => {
  const s = await p.stats();
  return (s['cache_hits'] ?? 0) + (s['cache_l2_hits'] ?? 0);
};

/** Read through pgscribe until the answer comes from the cache. */
async function cached(p: Proxy, c: RawClient, sql: string): Promise<string | null> {
  return waitFor(async () => {
    const before = await hits(p);
    const v = await queryValue(c, sql);
    return (await hits(p)) > before ? { v } : undefined;
  }, { timeoutMs: DEADLINE_MS, intervalMs: 100, timeout: () => `${sql} was never answered from the cache` }).then((r) => r.v);
}

/**
 * Run `ddl` (straight on PostgreSQL, or on `via`), then UPDATE the table straight on PostgreSQL
 * every 10 ms until it is accepted: how long PostgreSQL refused it with 55000 (the window pgscribe
 * leaves).
 */
async function loseKey(tt: Tap, table: string, ddl: string, via: RawClient | null): Promise<number> {
  const direct = await fx.session(pg.port, DB);
  try {
    const r0 = await (via ?? direct).query(ddl, 30_000);
    const t0 = Date.now();
    tt.same(r0.filter((m) => m.type === 'E').map((m) => errorFields(m.body)['M']), [], ddl);
    let refused = 0;
    const ms = await waitFor(async () => {
      const r = await direct.query(`UPDATE ${table} SET v = v WHERE id = 1`, 30_000);
      const e = r.find((m) => m.type === 'E');
      if (e === undefined) return Date.now() - t0;
      const f = errorFields(e.body);
      if (f['C'] !== '55000') throw new Error(`UPDATE ${table}: ${f['C']} ${f['M']}`);
      refused++;
      return undefined;
    }, { intervalMs: 10, timeoutMs: DEADLINE_MS, timeout: () => `UPDATE ${table} was still refused (55000, ${refused} times) ${DEADLINE_MS} ms after ${ddl}: pgscribe never dropped it from its publication` });
    tt.comment(`${table}: UPDATE refused ${refused} times, for ${ms} ms after: ${ddl}${via === null ? '' : ' (through pgscribe)'}`);
    return ms;
  } finally {
    direct.sock.destroy();
  }
}

t.test('a published table that loses its replica identity leaves pgscribe_all: its writes work, its reads are relayed and fresh', async (tt) => {
  const p = await fx.launch(['--cache', '--cache-ttl', '3600000', '--cache-invalidation', 'wal', '--catalog-user', 'postgres']);
  const c = await fx.session(p.port, DB);
  const cases = [
    { table: 'kv', ddl: 'ALTER TABLE kv DROP CONSTRAINT kv_pkey' },
    { table: 'ri_nothing', ddl: 'ALTER TABLE ri_nothing REPLICA IDENTITY NOTHING' },
    { table: 'ri_index', ddl: 'DROP INDEX ri_index_id' },
    // Through pgscribe: the catalog is read again at once (no poll to wait for), yet not before
    // PostgreSQL answers the DDL, so a write right behind it is still refused.
    { table: 'via', ddl: 'ALTER TABLE via DROP CONSTRAINT via_pkey', through: true },
  ];
  for (const k of cases) {
    const read = `SELECT v FROM ${k.table} WHERE id = 1`;
    tt.equal(await cached(p, c, read), 'one', `${k.table}: its reads are cached`);
    tt.ok(await published(k.table), `${k.table} is in pgscribe_all`);
  }
  for (const k of cases) {
    const read = `SELECT v FROM ${k.table} WHERE id = 1`;
    await loseKey(tt, k.table, k.ddl, k.through === true ? c : null);
    tt.notOk(await published(k.table), `${k.table} is no longer in pgscribe_all`);
    tt.equal(await queryValue(c, `UPDATE ${k.table} SET v = 'through' WHERE id = 1 RETURNING v`), 'through', `${k.table}: an UPDATE through pgscribe works`);
    // Straight on PostgreSQL: the stream no longer carries it, so only a relayed read sees it.
    await admin(pg, [`UPDATE ${k.table} SET v = 'elsewhere' WHERE id = 1`, `DELETE FROM ${k.table} WHERE id = 2`], DB);
    for (let i = 0; i < 3; i++) {
      const before = await hits(p);
      tt.equal(await queryValue(c, read), 'elsewhere', `${k.table}: read ${i} is fresh`);
      tt.equal(await hits(p), before, `${k.table}: read ${i} is relayed, not answered from the cache`);
    }
  }
  c.sock.destroy();
  await fx.stopProxy(p);
});

t.test('a table whose only key is DEFERRABLE is never added (PostgreSQL does not take it as replica identity)', async (tt) => {
  const p = await fx.launch(['--cache', '--cache-ttl', '3600000', '--cache-invalidation', 'wal', '--catalog-user', 'postgres']);
  const c = await fx.session(p.port, DB);
  // A keyed table read from the cache: the stream is up and the publication was filled.
  await admin(pg, ["CREATE TABLE marker (id int PRIMARY KEY, v text); INSERT INTO marker VALUES (1, 'm')"], DB);
  await cached(p, c, 'SELECT v FROM marker WHERE id = 1');
  tt.notOk(await published('deferred'), 'deferred is not in pgscribe_all');
  tt.equal(await queryValue(c, "UPDATE deferred SET v = 'two' WHERE id = 1 RETURNING v"), 'two', 'an UPDATE of it works');
  c.sock.destroy();
  await fx.stopProxy(p);
});
