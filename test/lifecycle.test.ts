// Graceful shutdown of the real proxy (dist/main.js) in front of a real PostgreSQL 15:
// SIGTERM closes idle sessions with 57P01, lets transactions finish within --shutdown-grace,
// stops accepting, flushes the query log and exits 0.
import t from 'tap';
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { startCluster, USERS, type PgCluster } from './helpers/pg-cluster';
import { proxyFixture } from './helpers/fixture';
import { type Proxy } from './helpers/proxy';
import { describeMessages as describe, enc, errorsIn as errs, type BackendMessage, type RawClient } from './helpers/wire';

const USER = USERS.trust.user;

let pg: PgCluster;
const { launch, session, cleanup } = proxyFixture({ upstreamPort: () => pg.port, user: USER });

t.before(async () => {
  pg = await startCluster();
  await pg.psql(`create table lc_t (id int primary key); grant all on lc_t to ${USER}`);
});

t.teardown(async () => {
  await cleanup('SIGKILL');
  await pg?.stop();
});

// ---- helpers --------------------------------------------------------------------------------

type Tap = Pick<typeof t, 'equal' | 'ok' | 'match' | 'same'>;
type Exit = { code: number | null; signal: NodeJS.Signals | null };

const txStatus = (msgs: BackendMessage[]) => {
  const z = msgs[msgs.length - 1];
  return z?.type === 'Z' ? String.fromCharCode(z.body[0]!) : '?';
};

/** Everything until the peer closes; null when it did not close within timeoutMs. */
async function readUntilClosed(c: RawClient, timeoutMs: number): Promise<BackendMessage[] | null> {
  const r = await c.readUntilClosed(timeoutMs);
  return r.closed ? r.msgs : null;
}

/** Expect the proxy's 57P01 as the last message and then the close. */
async function expectShutdownError(tt: Tap, c: RawClient, what: string, timeoutMs = 4000): Promise<void> {
  const msgs = await readUntilClosed(c, timeoutMs);
  tt.ok(msgs !== null, `${what}: connection closed within ${timeoutMs} ms`);
  if (msgs === null) return;
  const e = errs(msgs);
  tt.equal(e.length, 1, `${what}: one ErrorResponse (got ${describe(msgs)})`);
  tt.equal(e[0]?.['S'], 'FATAL', `${what}: FATAL`);
  tt.equal(e[0]?.['C'], '57P01', `${what}: 57P01`);
  tt.equal(msgs[msgs.length - 1]?.type, 'E', `${what}: the error is the last message`);
}

/** Send SIGTERM; the returned promise resolves with the exit, or null after timeoutMs (then SIGKILL). */
function sigterm(p: Proxy): (timeoutMs: number) => Promise<Exit | null> {
  const exited = p.stop('SIGTERM');
  return async (timeoutMs) => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((r) => (timer = setTimeout(() => r(null), timeoutMs)));
    const r = await Promise.race([exited, late]);
    clearTimeout(timer);
    if (r === null) {
      p.proc.kill('SIGKILL');
      await exited;
    }
    return r;
  };
}

async function refused(port: number): Promise<'refused' | 'accepted' | string> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve('accepted');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED' ? 'refused' : (e.code ?? e.message)));
  });
}

// ---- tests ------------------------------------------------------------------------------------

t.test('SIGTERM with an idle session: 57P01, exit 0, log flushed', async (t) => {
  const p = await launch();
  const c = await session(p.port);
  const N = 2000;
  const qs: Buffer[] = [];
  for (let i = 0; i < N; i++) qs.push(enc.query(`select ${i} as ${'x'.repeat(200)}`));
  c.write(Buffer.concat(qs));
  const msgs = await c.readZ(N, 30000);
  t.equal(errs(msgs).length, 0, 'all queries answered');
  t.equal(txStatus(msgs), 'I', 'idle outside a transaction');

  const exit = sigterm(p);
  await expectShutdownError(t, c, 'idle session');
  const r = await exit(4000);
  t.same(r, { code: 0, signal: null }, 'proxy exits 0 soon');

  const lines = p.logLines();
  t.equal(lines.length, N, 'every query is in the log');
  t.match(lines[N - 1] ?? '', new RegExp(`Q sql=select ${N - 1} as x+$`), 'the last query is the last line');
  t.match(p.stderr(), new RegExp(`shutdown complete query_log_lines=${N}\\b`), 'ops log reports the count');
});

t.test('SIGTERM during a transaction: the grace period', async (t) => {
  await pg.psql('truncate lc_t');

  await t.test('a transaction still open after the grace is closed with 57P01', async (t) => {
    const p = await launch(['--shutdown-grace', '1000']);
    const inTx = await session(p.port);
    const idle = await session(p.port);
    let m = await inTx.query('begin');
    t.equal(txStatus(m), 'T');
    m = await inTx.query('insert into lc_t values (1)');
    t.same(errs(m), []);

    const exit = sigterm(p);
    await p.waitStderr(/SIGTERM: shutting down/);
    await expectShutdownError(t, idle, 'idle session next to the transaction');

    m = await inTx.query("select 'inside'");
    t.same(errs(m), [], 'a query inside the transaction still works after the signal');
    t.equal(txStatus(m), 'T', 'still in the transaction');
    const d = m.find((x) => x.type === 'D');
    t.equal(d?.body.toString('utf8', 6), 'inside');

    await expectShutdownError(t, inTx, 'transaction past the grace', 5000);
    t.same(await exit(4000), { code: 0, signal: null }, 'exit 0');
    t.equal(await pg.psql('select count(*) from lc_t where id = 1'), '0', 'the unfinished transaction did not commit');
  });

  await t.test('a transaction that commits during the grace is closed right after ReadyForQuery I', async (t) => {
    // A long grace: the close must come from the COMMIT, not from the timer.
    const p = await launch(['--shutdown-grace', '60000']);
    const c = await session(p.port);
    let m = await c.query('begin');
    m = await c.query('insert into lc_t values (2)');
    t.same(errs(m), []);
    t.equal(txStatus(m), 'T');

    const exit = sigterm(p);
    await p.waitStderr(/SIGTERM: shutting down/);
    await sleep(100);
    t.notOk(c.closed, 'the session in a transaction is left alone');
    m = await c.query('insert into lc_t values (3)');
    t.same(errs(m), [], 'still works');

    c.write(enc.query('commit'));
    const rest = await readUntilClosed(c, 4000);
    t.ok(rest !== null, 'closed within a few seconds of the COMMIT (grace is 60 s)');
    if (rest !== null) {
      t.same(
        rest.map((x) => x.type),
        ['C', 'Z', 'E'],
        'CommandComplete, ReadyForQuery, then the shutdown error',
      );
      t.equal(rest[1]?.type === 'Z' ? String.fromCharCode(rest[1].body[0]!) : '', 'I', 'ReadyForQuery I');
      t.equal(errs(rest)[0]?.['C'], '57P01');
      t.equal(errs(rest)[0]?.['S'], 'FATAL');
    }
    t.same(await exit(4000), { code: 0, signal: null }, 'exit 0 without waiting for the grace');
    t.equal(await pg.psql('select string_agg(id::text, \',\' order by id) from lc_t'), '2,3', 'the commit went through');
  });

  await t.test('a query running outside a transaction gets its answer, then 57P01', async (t) => {
    const p = await launch(['--shutdown-grace', '60000']);
    const c = await session(p.port);
    c.write(enc.query("select pg_sleep(0.5), 'done'"));
    await sleep(100);
    const exit = sigterm(p);
    await p.waitStderr(/SIGTERM: shutting down/);
    const rest = await readUntilClosed(c, 4000);
    t.ok(rest !== null, 'closed within a few seconds');
    if (rest !== null) {
      t.same(rest.map((x) => x.type), ['T', 'D', 'C', 'Z', 'E'], 'the whole answer, then the shutdown error');
      t.equal(errs(rest)[0]?.['C'], '57P01');
    }
    t.same(await exit(4000), { code: 0, signal: null });
  });

  await t.test('extended protocol: COMMIT via Parse/Bind/Execute/Sync', async (t) => {
    const p = await launch(['--shutdown-grace', '60000']);
    const c = await session(p.port);
    await c.query('begin');
    const exit = sigterm(p);
    await p.waitStderr(/SIGTERM: shutting down/);
    c.write(Buffer.concat([enc.parse('', 'commit'), enc.bind('', '', []), enc.execute(''), enc.sync()]));
    const rest = await readUntilClosed(c, 4000);
    t.ok(rest !== null, 'closed within a few seconds');
    if (rest !== null) t.same(rest.map((x) => x.type), ['1', '2', 'C', 'Z', 'E'], 'answer, ReadyForQuery, then 57P01');
    t.same(await exit(4000), { code: 0, signal: null });
  });
});

t.test('after SIGTERM the listener is closed', async (t) => {
  const p = await launch(['--shutdown-grace', '60000']);
  const c = await session(p.port);
  await c.query('begin');
  t.equal(await refused(p.port), 'accepted', 'accepting before the signal');
  const exit = sigterm(p);
  await p.waitStderr(/SIGTERM: shutting down/);
  let r = '';
  const deadline = Date.now() + 3000;
  while ((r = await refused(p.port)) !== 'refused' && Date.now() < deadline) await sleep(20);
  t.equal(r, 'refused', 'new connections are refused');
  t.equal((await c.query('select 1')).filter((m) => m.type === 'D').length, 1, 'the open session still works');
  c.write(enc.terminate());
  c.end();
  await c.waitClosed();
  t.same(await exit(4000), { code: 0, signal: null }, 'exits once the last session left');
});

t.test('SIGTERM with no session exits 0 at once', async (t) => {
  const p = await launch();
  const exit = sigterm(p);
  t.same(await exit(4000), { code: 0, signal: null });
});

// Regression: a Sync whose bytes straddle two socket reads used to stream through uninspected,
// so it was not counted: its ReadyForQuery then looked like the answer to the *next* request and
// a shutdown closed the session while that request was still running.
t.test('a Sync split across two reads still counts: shutdown waits for the request after it', async (t) => {
  const p = await launch(['--shutdown-grace', '60000']);
  const c = await session(p.port);
  const batch = Buffer.concat([enc.parse('', 'select 1'), enc.bind('', '', []), enc.execute(''), enc.sync()]);
  c.write(batch.subarray(0, batch.length - 3)); // P/B/E and the first 2 bytes of the Sync
  await sleep(100);
  const exit = sigterm(p); // the session is busy: the proxy must wait for it
  await sleep(200);
  c.write(Buffer.concat([batch.subarray(batch.length - 3), enc.query('select pg_sleep(0.5), 2 as two')]));
  const msgs = await readUntilClosed(c, 10000);
  t.ok(msgs !== null, 'closed after the work is done');
  const seq = (msgs ?? []).map((m) => m.type).join('');
  t.equal(seq, '12DCZTDCZE', `both requests answered, then 57P01 (got ${describe(msgs ?? [])})`);
  t.equal(errs(msgs ?? [])[0]?.['C'], '57P01', 'closed with 57P01');
  t.same(await exit(4000), { code: 0, signal: null }, 'exits 0 long before the 60 s grace');
});
