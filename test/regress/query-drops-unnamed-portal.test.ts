// A simple Query replaces the unnamed portal, inside a transaction block too: PostgreSQL runs the
// Query in an unnamed portal of its own and drops it, so an Execute of the unnamed portal after it
// (without a new Bind) gets 34000, portal "" does not exist. The ledger kept the old portal until
// the transaction ended, and the log gave that Execute the SQL of a statement it never ran.
import t from 'tap';
import { rawSessionThrough } from '../harness/in-process';
import { startCluster, type PgCluster } from '../harness/pg-cluster';
import { describeMessages, enc, errorsIn } from '../harness/wire';

let pg: PgCluster;
t.before(async () => {
  pg = await startCluster();
});
t.teardown(async () => {
  await pg?.stop();
});

t.test('an Execute of the unnamed portal after a Query is logged without the SQL it never ran', async (t) => {
  const { ip, c, startup } = await rawSessionThrough(t, pg.port);
  t.equal(startup[startup.length - 1]?.type, 'Z', 'session started');

  c.write(enc.query('begin'));
  await c.readZ(1);
  c.write(Buffer.concat([enc.parse('', 'select 42 as answer'), enc.bind('', '', []), enc.sync()]));
  const bound = await c.readZ(1);
  t.equal(bound.map((m) => m.type).join(''), '12Z', `parsed and bound inside the block: ${describeMessages(bound)}`);
  c.write(enc.query('select 1'));
  await c.readZ(1);
  c.write(Buffer.concat([enc.execute(''), enc.sync()]));
  const ran = await c.readZ(1);
  t.equal(errorsIn(ran)[0]?.['C'], '34000', `PostgreSQL: the unnamed portal is gone: ${describeMessages(ran)}`);
  c.write(enc.query('rollback'));
  await c.readZ(1);

  const e = ip.logger.queries.filter((q) => q.type === 'E');
  t.equal(e.length, 1, 'one Execute logged');
  t.equal(e[0]?.sql, null, 'with no SQL (sql=?), not the SQL of the portal the Query replaced');
});
