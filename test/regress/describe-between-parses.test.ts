// A Describe of a statement between two Parses of one batch, with the log on and no cache: the
// ledger queued an entry for the Describe's answer, which only the cache's sessions follow, so
// the second ParseComplete met that entry instead of its own Parse's. The second statement was
// then taken for failed and dropped at ReadyForQuery, and every later Bind and Execute of it was
// logged as `sql=?`. JDBC batches send exactly this (Parse, Describe statement, Parse, ...).
import t from 'tap';
import { rawSessionThrough } from '../harness/in-process';
import { startCluster, type PgCluster } from '../harness/pg-cluster';
import { describeMessages, enc, value } from '../harness/wire';

let pg: PgCluster;
t.before(async () => {
  pg = await startCluster();
});
t.teardown(async () => {
  await pg?.stop();
});

t.test('a statement parsed after a Describe keeps its SQL in the log', async (t) => {
  const { ip, c, startup } = await rawSessionThrough(t, pg.port);
  t.equal(startup[startup.length - 1]?.type, 'Z', 'session started');

  c.write(Buffer.concat([enc.parse('s1', 'select 1 as one'), enc.describe('S', 's1'), enc.parse('s2', 'select 2 as two'), enc.describe('S', 's2'), enc.sync()]));
  const prepared = await c.readZ(1);
  t.same(prepared.map((m) => m.type).join(''), '1tT1tTZ', `both prepared and described: ${describeMessages(prepared)}`);

  for (const name of ['s2', 's1']) {
    c.write(Buffer.concat([enc.bind('', name, []), enc.execute(''), enc.sync()]));
    const ran = await c.readZ(1);
    t.equal(value(ran), name === 's1' ? '1' : '2', `${name} ran`);
  }
  const lines = ip.logger.queries.filter((q) => q.type === 'B' || q.type === 'E').map((q) => `${q.type} ${q.statement} ${q.sql}`);
  t.same(lines, ['B s2 select 2 as two', 'E s2 select 2 as two', 'B s1 select 1 as one', 'E s1 select 1 as one'], 'every Bind and Execute logged with its SQL');
});
