// Issue 16 review, finding 1: under synchronous replication PostgreSQL streams a commit as soon
// as its record is flushed, but other sessions see it only after the standby's acknowledgement.
// pgscribe invalidated when the commit arrived; a read in between got, and cached, the old row,
// which then stayed for the TTL (an hour here). Since commit-settling.ts a streamed commit is
// invalidated again once a snapshot shows it finished. On the build before, the read after the
// cancelled wait below kept answering 'old' from the cache.
//
// And synchronous_standby_names = '*' made pgscribe's own walsender a candidate synchronous
// standby: commits waited for pgscribe's timer-driven acknowledgement and counted as replicated
// once pgscribe, which keeps nothing, had read them. The stream now refuses to run while the
// setting names it, at start and when it changes.
import t from 'tap';
import { startCluster, type PgCluster } from '../harness/pg-cluster';
import { waitFor } from '../harness/time';
import { queryValue, type RawClient } from '../harness/wire';
import { proxyFixture } from '../helpers/fixture';
import { admin } from '../helpers/safe-cache';
import type { Proxy } from '../harness/proxy';

let pg: PgCluster;
const fx = proxyFixture({ upstreamPort: () => pg.port, user: 'postgres' });
const WAL = ['--cache', '--cache-ttl', '3600000', '--cache-invalidation', 'wal', '--catalog-user', 'postgres'];
const READ = 'SELECT v FROM kv WHERE id = 1';

t.before(async () => {
  pg = await startCluster();
  await admin(pg, ["CREATE TABLE kv (id int PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'old')"]);
});
t.teardown(async () => {
  await fx.cleanup();
  await pg?.stop();
});

const stat = async (p: Proxy, k: string): Promise<number> => (await p.stats())[k] ?? 0;

async function setSyncNames(v: string): Promise<void> {
  await admin(pg, [`ALTER SYSTEM SET synchronous_standby_names = '${v}'`, 'SELECT pg_reload_conf()']);
  await waitFor(async () => ((await admin(pg, ['SHOW synchronous_standby_names']))[0]!.value === v ? true : undefined), { timeoutMs: 10_000, timeout: () => 'reload' });
}

/** Read until answered from the cache. */
async function cached(p: Proxy, c: RawClient): Promise<string | null> {
  return waitFor(
    async () => {
      const before = await stat(p, 'cache_hits');
      const v = await queryValue(c, READ);
      return (await stat(p, 'cache_hits')) > before ? v : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 50, timeout: () => 'never answered from the cache' },
  );
}

t.test('a commit streamed while it waits for its synchronous standby: nothing cached meanwhile outlives its visibility', async (t) => {
  const p = await fx.launch(WAL);
  // A standby that never connects: every commit waits (set first: a reload may make the catalog poll drop the cache).
  await setSyncNames('nobody');
  const c = await fx.session(p.port);
  t.equal(await cached(p, c), 'old');
  const w = await fx.session(pg.port); // straight to PostgreSQL
  const pid = await queryValue(w, 'SELECT pg_backend_pid()');
  await queryValue(w, 'SET synchronous_commit = on'); // the test cluster runs with it off
  const commits = await stat(p, 'wal_commits');
  const answer = w.query("UPDATE kv SET v = 'new' WHERE id = 1", 60_000);
  // The commit is flushed and streamed, but still waits for the standby: not visible yet.
  await waitFor(async () => ((await stat(p, 'wal_commits')) > commits ? true : undefined), { timeoutMs: 10_000, timeout: () => 'the waiting commit was never streamed' });
  t.equal(await cached(p, c), 'old', 'the old row, cached again after the stream invalidated it: what PostgreSQL answers now');
  t.ok((await stat(p, 'wal_commits_unsettled')) >= 1, 'the commit is known to be not visible yet');
  await admin(pg, [`SELECT pg_cancel_backend(${pid})`]); // the wait ends; the commit becomes visible
  await answer;
  t.equal((await admin(pg, [READ]))[0]!.value, 'new', 'PostgreSQL now answers the new row');
  const fresh = await waitFor(async () => ((await queryValue(c, READ)) === 'new' ? true : undefined), { timeoutMs: 5_000, intervalMs: 20, timeout: () => 'the cached old row outlived the commit' });
  t.ok(fresh);
  t.ok((await stat(p, 'wal_settled_invalidations')) >= 1, 'invalidated again once visible');
  t.equal(await cached(p, c), 'new', 'and cached again, fresh');
  w.sock.destroy();
  c.sock.destroy();
  await setSyncNames('');
  await fx.stopProxy(p);
});

t.test("synchronous_standby_names = '*': the stream does not run (relayed), at start and when the setting changes", async (t) => {
  await setSyncNames('*');
  const p = await fx.launch(WAL);
  const c = await fx.session(p.port);
  await queryValue(c, READ);
  await p.waitStderr(/would make pgscribe's change stream \(application_name 'pgscribe changes'\) a synchronous standby/);
  t.equal(await stat(p, 'wal_streams_up'), 0, 'no stream');
  t.equal((await admin(pg, ["SELECT count(*) FROM pg_stat_replication"]))[0]!.value, '0', 'no walsender of pgscribe: not a standby candidate');
  const hits = await stat(p, 'cache_hits');
  for (let i = 0; i < 3; i++) await queryValue(c, READ);
  t.equal(await stat(p, 'cache_hits'), hits, 'relayed meanwhile');
  await setSyncNames('');
  t.equal(await cached(p, c), 'new', 'streaming and cached once the setting names only real standbys');
  t.equal(await stat(p, 'wal_streams_up'), 1);

  // The setting changes while streaming: the next commit's check ends the stream.
  await setSyncNames('*');
  const w = await fx.session(pg.port);
  await queryValue(w, 'SET synchronous_commit = local'); // no real standby here: this session does not wait
  await queryValue(w, "UPDATE kv SET v = 'newer' WHERE id = 1 RETURNING v");
  await p.waitStderr(/synchronous_standby_names changed to '\*'/);
  await waitFor(async () => ((await admin(pg, ["SELECT count(*) FROM pg_stat_replication"]))[0]!.value === '0' ? true : undefined), { timeoutMs: 10_000, timeout: () => "pgscribe's walsender stayed" });
  t.equal(await queryValue(c, READ), 'newer', 'fresh, relayed');
  await setSyncNames('');
  t.equal(await cached(p, c), 'newer', 'back once the setting is cleared');
  w.sock.destroy();
  c.sock.destroy();
  await fx.stopProxy(p);
});
