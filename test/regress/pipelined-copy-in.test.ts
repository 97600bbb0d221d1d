// Regression (found while testing issue 21): a client may send COPY FROM STDIN's data and its
// CopyDone right behind the Query, without waiting for CopyInResponse; PostgreSQL reads them once
// it asks for them. pgscribe put the session in copy-in at CopyInResponse regardless, so when the
// COPY was the only request in flight the ReadyForQuery after it looked like a server protocol
// violation: the client got FATAL 08006 instead of its COPY's answer. The session now knows the
// client's copy already ended, with the log on and off, and whether the data comes in the same
// write as the Query or while the COPY waits for a lock.
import t from 'tap';
import { sleep } from '../harness/time';
import { clusterAndProxies } from '../helpers/fixture';
import { describeMessages, enc, errorsIn, value } from '../harness/wire';

const { fx } = clusterAndProxies(t);

const ROWS = ['1', '2', '3'];
const copyIn = (table: string): Buffer => Buffer.concat([enc.query(`copy ${table} from stdin`), ...ROWS.map((r) => enc.copyData(`${r}\n`)), enc.copyDone()]);

for (const log of [true, false]) {
  t.test(`COPY FROM STDIN with its data and CopyDone sent with the Query (log ${log ? 'on' : 'off'})`, async (t) => {
    const p = await fx.launch(log ? [] : ['--log', 'none']);
    const c = await fx.session(p.port);
    await c.query('create temp table pipelined (n int)');
    c.write(copyIn('pipelined'));
    const r = await c.readUntilReady(10_000);
    t.equal(r.map((m) => m.type).join(''), 'GCZ', `CopyInResponse, CommandComplete, ReadyForQuery (got ${describeMessages(r)})`);
    t.same(errorsIn(r), [], 'no error');
    t.equal(value(await c.query('select sum(n) from pipelined')), '6', 'every row copied');
    // And the session goes on as usual: an ordinary COPY, then a query.
    c.write(enc.query('copy pipelined from stdin'));
    t.equal((await c.read()).type, 'G', 'a COPY that waits for CopyInResponse still works');
    c.write(Buffer.concat([enc.copyData('4\n'), enc.copyDone()]));
    t.equal((await c.readUntilReady()).map((m) => m.type).join(''), 'CZ');
    t.equal(value(await c.query('select count(*) from pipelined')), '4');
  });
}

t.test('COPY FROM STDIN pipelined while it waits for a lock', async (t) => {
  const p = await fx.launch([]);
  const holder = await fx.session(p.port);
  await holder.query('create table locked_copy (n int)');
  t.teardown(async () => void (await holder.query('drop table if exists locked_copy')));
  await holder.query('begin');
  await holder.query('lock table locked_copy in access exclusive mode');
  const c = await fx.session(p.port);
  c.write(copyIn('locked_copy'));
  await sleep(300);
  await holder.query('commit');
  const r = await c.readUntilReady(10_000);
  t.equal(r.map((m) => m.type).join(''), 'GCZ', `answered once the lock went (got ${describeMessages(r)})`);
  t.equal(value(await c.query('select sum(n) from locked_copy')), '6');
});
