// Issue 16 review, finding 3: an operator's publication that does not publish updates (publish =
// 'insert'). ensurePublication only warned (setup.ts) and judge.ts cached every table the
// publication lists, whatever it publishes: an UPDATE straight to PostgreSQL was never streamed,
// and the cached answer stayed for the TTL (an hour here), long after later commits were
// delivered. Since f4d7a2b such a publication is refused: the stream stays down, the database is
// relayed, and the operator is told what to change. On the build before it, the read below was
// cached and answered 'one' after the UPDATE. (The review's other wal findings: a published table
// losing its key is issue-16-03, a commit streamed before it is visible under synchronous
// replication issue-16-04.)
import t from 'tap';
import { startCluster, type PgCluster } from '../harness/pg-cluster';
import { sleep } from '../harness/time';
import { queryValue } from '../harness/wire';
import { proxyFixture } from '../helpers/fixture';
import { admin } from '../helpers/safe-cache';

let pg: PgCluster;
const fx = proxyFixture({ upstreamPort: () => pg.port, user: 'postgres' });

t.before(async () => {
  pg = await startCluster();
});
t.teardown(async () => {
  await fx.cleanup();
  await pg?.stop();
});

const READ = 'SELECT v FROM kv WHERE id = 1';

t.test("an operator's publication with publish = 'insert' is refused: nothing of its tables is cached, an UPDATE elsewhere is seen at once", async (t) => {
  const db = 'rv_pub_insert';
  await admin(pg, [`CREATE DATABASE ${db}`]);
  await admin(pg, [
    "CREATE TABLE kv (id int PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'one')",
    "CREATE PUBLICATION ops FOR TABLE kv WITH (publish = 'insert')",
  ], db);
  const p = await fx.launch(['--cache', '--cache-ttl', '3600000', '--cache-invalidation', 'wal', '--catalog-user', 'postgres', '--cache-wal-publication', 'ops']);
  const c = await fx.session(p.port, db);
  await p.waitStderr(/leaves out the update, delete, truncate changes/);
  for (let i = 0; i < 3; i++) t.equal(await queryValue(c, READ), 'one');
  await sleep(500);
  t.equal(await queryValue(c, READ), 'one');
  const s = await p.stats();
  t.equal(s['cache_hits'] ?? 0, 0, 'nothing answered from the cache: the database is relayed');
  t.equal(s['wal_streams_up'] ?? 0, 0, 'the stream stays down');
  await admin(pg, ["UPDATE kv SET v = 'uno' WHERE id = 1"], db);
  t.equal(await queryValue(c, READ), 'uno', 'the UPDATE made elsewhere is seen at once');
  t.match(p.stderr(), /ALTER PUBLICATION "ops" SET \(publish = 'insert, update, delete, truncate'\)/, 'the operator is told what to change');
  await fx.stopProxy(p);
});
