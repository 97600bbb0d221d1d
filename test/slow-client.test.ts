// A client that reads in short bursts while a large result streams, half of it trickling out in
// small chunks: the proxy's writes to the client queue up, it pauses the upstream and resumes it,
// many times over; every byte must still arrive intact and in order.
import t from 'tap';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { clusterAndProxies } from './helpers/fixture';
import { enc } from './helpers/wire';

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
  let done = false;
  const stutter = (async () => {
    while (!done) {
      c.sock.resume();
      await sleep(1);
      c.sock.pause();
      await sleep(20);
    }
    c.sock.resume();
  })();
  const msgs = await c.readZ(1, 30_000);
  done = true;
  await stutter;
  const rows = msgs.filter((m) => m.type === 'D');
  t.equal(rows.length, ROWS, 'every row arrived');
  let bad = 0;
  for (let i = 0; i < rows.length && bad < 5; i++) {
    const body = rows[i]!.body;
    // DataRow: int16 count, then (int32 len, bytes) per column
    const l1 = body.readInt32BE(2);
    const g = body.toString('utf8', 6, 6 + l1);
    const l2 = body.readInt32BE(6 + l1);
    const text = body.toString('utf8', 10 + l1, 10 + l1 + l2);
    const want = createHash('md5').update(String(i + 1)).digest('hex').repeat(20);
    if (g !== String(i + 1) || text !== want) {
      bad++;
      t.fail(`row ${i + 1} corrupted: ${g} ${text.slice(0, 40)}...`);
    }
  }
  t.equal(bad, 0, 'no row corrupted');
  t.equal(msgs[msgs.length - 1]?.type, 'Z', 'ends with ReadyForQuery');
});
