// A client that reads in short bursts while a large result streams, half of it trickling out in
// small chunks: the proxy's writes to the client queue up, it pauses the upstream and resumes it,
// many times over; every byte must still arrive intact and in order.
import t from 'tap';
import { clusterAndProxies } from '../helpers/fixture';
import { corruptMd5Rows, enc, readZInBursts } from '../harness/wire';
import { sleep } from '../harness/time';

const { fx } = clusterAndProxies(t);

t.test('a stuttering reader gets every byte of a 10 MB result, half of it trickling, intact', async (t) => {
  const p = await fx.launch(['--log', 'none']);
  const c = await fx.session(p.port);
  // The first half fills the kernel buffers fast; then rows trickle out (PostgreSQL flushes every
  // 8 KiB), so the proxy reads many small chunks while its writes to the client are queued.
  const ROWS = 16000;
  c.sock.pause();
  c.write(enc.query(`select g, repeat(md5(g::text), 20) from generate_series(1, ${ROWS}) g, lateral (select case when g > 8000 then pg_sleep(0.00005) end) s`));
  await sleep(1500);
  // Read in short bursts: the kernel buffers stay nearly full while the rows trickle in.
  const msgs = await readZInBursts(c, 20);
  const rows = msgs.filter((m) => m.type === 'D');
  t.equal(rows.length, ROWS, 'every row arrived');
  const bad = corruptMd5Rows(rows);
  for (const e of bad.examples) t.fail(e);
  t.equal(bad.count, 0, 'no row corrupted');
  t.equal(msgs[msgs.length - 1]?.type, 'Z', 'ends with ReadyForQuery');
});
