// Issue 15, security finding 6: after an error PostgreSQL reads and discards every message up to
// the Sync, answering none, so nothing pushed back on a client that kept pipelining: each Execute
// left a pending completion in pgscribe until the Sync. A bad Parse and 1.5 M Executes without a
// Sync (15 MB sent) took RSS from 52 to 274 MB. Now the group the server failed is known as such
// from its ErrorResponse on: what the client still adds to it ends at once as skipped, and the
// ledger keeps nothing for messages the server discards (a Query among them included, which
// PostgreSQL discards too).
import t from 'tap';
import { clusterAndProxies } from '../helpers/fixture';
import { enc, errorsIn, value, type RawClient } from '../harness/wire';
import { rssBytes } from '../harness/proc';
import { sleep } from '../harness/time';

const { fx } = clusterAndProxies(t);

const EXECUTES = 600_000;
const PER_WRITE = 20_000;
/**
 * RSS growth allowed while the Executes go through: the log's buffer (8 MiB by default) and the
 * heap's slack, not a per-message cost. Measured here: +61 MiB with 200 k, 600 k and 1.2 M
 * Executes alike (flat); the code before the fix grew +174 MiB with 600 k.
 */
const RSS_GROWTH_BOUND = 100 * 2 ** 20;

/** Write b and wait until the socket took it (so the test process holds no backlog of its own). */
function writeAll(c: RawClient, b: Buffer): Promise<void> {
  return new Promise((resolve, reject) => c.sock.write(b, (err) => (err ? reject(err) : resolve())));
}

t.test(`a failed Parse, then ${EXECUTES} Executes and a Query without Sync: pgscribe's memory stays flat, the log says skipped`, async (t) => {
  // Completion tracking and the cache both follow every message: the two books that grew.
  const p = await fx.launch(['--log-completions', '--cache']);
  const c = await fx.session(p.port);
  await sleep(200);
  const rssStart = rssBytes(p.proc.pid!)!;
  let rssPeak = rssStart;
  const sampler = setInterval(() => {
    const r = rssBytes(p.proc.pid!);
    if (r !== null && r > rssPeak) rssPeak = r;
  }, 100);

  await writeAll(c, Buffer.concat([enc.parse('', 'select no_such_column from no_such_table'), enc.bind('', '', [])]));
  const batch = Buffer.concat(Array.from({ length: PER_WRITE }, () => enc.execute('')));
  for (let sent = 0; sent < EXECUTES; sent += PER_WRITE) await writeAll(c, batch);
  // PostgreSQL discards this Query too (ignore_till_sync): it gets no answer of its own.
  await writeAll(c, Buffer.concat([enc.query('select 42'), enc.sync()]));
  const msgs = await c.readUntilReady(60_000);
  clearInterval(sampler);

  t.same(errorsIn(msgs).map((e) => e['C']), ['42P01'], 'one error, for the Parse, and nothing for the discarded messages');
  t.same(
    msgs.map((m) => m.type),
    ['E', 'Z'],
    'the Sync answered by ReadyForQuery alone',
  );
  t.ok(rssPeak - rssStart <= RSS_GROWTH_BOUND, `RSS ${(rssStart / 2 ** 20).toFixed(1)} -> peak ${(rssPeak / 2 ** 20).toFixed(1)} MiB (bound: +${RSS_GROWTH_BOUND / 2 ** 20} MiB)`);

  // The session's books still agree with the server's.
  c.write(enc.query('select 7'));
  t.equal(value(await c.readUntilReady(10_000)), '7', 'the session answers as before');
  c.write(Buffer.concat([enc.parse('', 'select $1::int + 1'), enc.bind('', '', ['41']), enc.execute(''), enc.sync()]));
  t.equal(value(await c.readUntilReady(10_000)), '42', 'and in the extended protocol');
  c.write(enc.terminate());

  const lines = await p.waitLogLines(2 * EXECUTES + 8, 120_000);
  const done = lines.filter((l) => / done seq=\d+ of=[QE] /.test(l));
  const skipped = done.filter((l) => / status=skipped/.test(l));
  t.equal(done.filter((l) => / of=E .*status=error sqlstate=42P01/.test(l)).length, 1, 'the first Execute ends with the Parse error');
  t.equal(skipped.length, EXECUTES - 1 + 1, 'every other Execute and the Query end skipped');
  t.ok(done.some((l) => / of=Q .*status=skipped/.test(l)), 'the discarded Query among them');
});
