// A client that reads in short bursts while a large result streams, half of it trickling out in
// small chunks: the proxy's writes to the client queue up, it pauses the upstream and resumes it,
// many times over; every byte must still arrive intact and in order.
import t from 'tap';
import { clusterAndProxies } from '../helpers/fixture';
import { corruptMd5Rows, enc, readZInBursts, value } from '../harness/wire';
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

// The other direction: the client sends faster than the server reads (a trigger sleeps every 40
// rows). pgscribe's writes to the server queue up while it keeps reading the client into its
// reused read buffer (issue 21): a queued write holds the bytes of that read, so the next read
// must not land on them.
t.test('a COPY sent faster than the server reads arrives intact (log on, 60000 rows)', async (t) => {
  const p = await fx.launch([]);
  const c = await fx.session(p.port);
  await c.query('create temp table copied (n int, pad text)');
  await c.query(`create function pg_temp.slow_copy() returns trigger language plpgsql as $$ begin if new.n % 40 = 0 then perform pg_sleep(0.001); end if; return new; end $$`);
  await c.query('create trigger slow before insert on copied for each row execute function pg_temp.slow_copy()');
  c.write(enc.query('copy copied from stdin'));
  t.equal((await c.read()).type, 'G', 'CopyInResponse');
  const ROWS = 60000;
  const parts: Buffer[] = [];
  for (let n = 1; n <= ROWS; n++) parts.push(enc.copyData(`${n}\t${'x'.repeat(n % 397)}${n}\n`));
  parts.push(enc.copyDone());
  // About 12 MB at once: far more than the kernel buffers between pgscribe and the server hold.
  c.write(Buffer.concat(parts));
  const done = await c.readUntilReady(60_000);
  t.same(done.filter((m) => m.type === 'E').map((m) => m.body.toString('latin1')), [], 'no error');
  const sums = await c.query(`select count(*) || ' ' || sum(n) || ' ' || bool_and(pad = repeat('x', n % 397) || n) from copied`);
  t.equal(value(sums), `${ROWS} ${(ROWS * (ROWS + 1)) / 2} true`, 'every row as sent');
});
