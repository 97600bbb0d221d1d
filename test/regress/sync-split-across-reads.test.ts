// Regression: a Sync whose bytes straddle two socket reads used to stream through uninspected,
// so it was not counted: its ReadyForQuery then looked like the answer to the *next* request and
// a shutdown closed the session while that request was still running.
import t from 'tap';
import { sleep } from '../harness/time';
import { clusterAndProxies, sigterm } from '../helpers/fixture';
import { describeMessages, enc, errorsIn } from '../harness/wire';

const { fx } = clusterAndProxies(t);

t.test('a Sync split across two reads still counts: shutdown waits for the request after it', async (t) => {
  const p = await fx.launch(['--shutdown-grace', '60000']);
  const c = await fx.session(p.port);
  const batch = Buffer.concat([enc.parse('', 'select 1'), enc.bind('', '', []), enc.execute(''), enc.sync()]);
  c.write(batch.subarray(0, batch.length - 3)); // P/B/E and the first 2 bytes of the Sync
  await sleep(100);
  const exit = sigterm(p); // the session is busy: the proxy must wait for it
  await sleep(200);
  c.write(Buffer.concat([batch.subarray(batch.length - 3), enc.query('select pg_sleep(0.5), 2 as two')]));
  const r = await c.readUntilClosed(10000);
  t.ok(r.closed, 'closed after the work is done');
  const seq = r.msgs.map((m) => m.type).join('');
  t.equal(seq, '12DCZTDCZE', `both requests answered, then 57P01 (got ${describeMessages(r.msgs)})`);
  t.equal(errorsIn(r.msgs)[0]?.['C'], '57P01', 'closed with 57P01');
  t.same(await exit(4000), { code: 0, signal: null }, 'exits 0 long before the 60 s grace');
});
