// Graceful shutdown of the real proxy (dist/main.js) in front of a real PostgreSQL 15:
// SIGTERM closes idle sessions with 57P01, lets transactions finish within --shutdown-grace,
// stops accepting, flushes the query log and exits 0.
import t from 'tap';
import * as net from 'node:net';
import { startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { expectFatalAndClose } from '../helpers/expect';
import { proxyFixture, sigterm } from '../helpers/fixture';
import { enc, errorsIn as errs, type BackendMessage, type RawClient } from '../harness/wire';
import { sleep } from '../harness/time';

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


const txStatus = (msgs: BackendMessage[]) => {
  const z = msgs[msgs.length - 1];
  return z?.type === 'Z' ? String.fromCharCode(z.body[0]!) : '?';
};

/** Everything until the peer closes; null when it did not close within timeoutMs. */
async function readUntilClosed(c: RawClient, timeoutMs: number): Promise<BackendMessage[] | null> {
  const r = await c.readUntilClosed(timeoutMs);
  return r.closed ? r.msgs : null;
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
  await expectFatalAndClose(t, c, '57P01', 'idle session', 4000);
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
    await expectFatalAndClose(t, idle, '57P01', 'idle session next to the transaction', 4000);

    m = await inTx.query("select 'inside'");
    t.same(errs(m), [], 'a query inside the transaction still works after the signal');
    t.equal(txStatus(m), 'T', 'still in the transaction');
    const d = m.find((x) => x.type === 'D');
    t.equal(d?.body.toString('utf8', 6), 'inside');

    await expectFatalAndClose(t, inTx, '57P01', 'transaction past the grace', 5000);
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
