// Singleflight against a real PostgreSQL: identical concurrent reads run once, every client gets
// the leader's answer in its own protocol shape, and the leader's fate (killed, cancelled) is not
// the waiters'.
//
// The reads are held back deterministically: a direct session holds an ACCESS EXCLUSIVE lock on
// the table, so the leader's query blocks inside PostgreSQL (visible in pg_stat_activity) while
// the other clients arrive and join its flight (visible as `flight=waiter` log lines). Releasing
// the lock lets the leader finish.
import t from 'tap';
import { USERS } from '../harness/pg-cluster';
import { clusterAndProxies } from '../helpers/fixture';
import type { Proxy } from '../harness/proxy';
import {
  WORKER_MODES, calls, extUnit, holdTableLock, linesWith, lockWaitersSql, waitLines, waitUntilCount, wireBytes, cacheArgs,
} from '../helpers/cache';
import { RawClient, column, describeMessages, enc, errorsIn, firstRow, value, type BackendMessage } from '../harness/wire';
import { sleep } from '../harness/time';


const { pg, fx } = clusterAndProxies(t);
const CLIENTS = 50;
const ROWS = 1000;
const READ = 'SELECT count(*), sum(v) FROM sf_t';
const EXPECTED_SUM = String((ROWS * (ROWS + 1)) / 2);

t.before(async () => {
  await pg().psql(`CREATE TABLE sf_t (id int PRIMARY KEY, v int); INSERT INTO sf_t SELECT g, g FROM generate_series(1, ${ROWS}) g; GRANT SELECT ON sf_t TO ${USERS.trust.user};`);
});

/**
 * Lock sf_t, send `bytes` from the leader and wait until its query (whose text starts with `sql`)
 * blocks inside PostgreSQL. Returns the lock, to release once the waiters are in.
 */
async function blockedLeader(leader: RawClient, bytes: Buffer, sql = READ): Promise<{ release(): Promise<void> }> {
  const lock = await holdTableLock(pg(), 'sf_t');
  leader.write(bytes);
  await waitUntilCount(pg(), lockWaitersSql(sql), 1);
  return lock;
}

/** `n` sessions through the proxy, opened before the test starts so connecting takes no part in it. */
async function sessions(p: Proxy, n: number): Promise<RawClient[]> {
  return Promise.all(Array.from({ length: n }, () => fx.session(p.port)));
}

async function resetStatements(): Promise<void> {
  await pg().psql('SELECT pg_stat_statements_reset()');
}

for (const workers of WORKER_MODES) {
  const mode = `workers=${workers}`;

  t.test(`${mode}: ${CLIENTS} simple-query clients, one execution, identical answers`, async (t) => {
    const p = await fx.launch(['--singleflight', ...cacheArgs(workers)]);
    const cs = await sessions(p, CLIENTS);
    await resetStatements();
    const lock = await blockedLeader(cs[0]!, enc.query(READ));
    for (const c of cs.slice(1)) c.write(enc.query(READ));
    await waitLines(p, 'flight=waiter', CLIENTS - 1);
    await waitUntilCount(pg(), lockWaitersSql(READ), 1); // still only the leader reached PostgreSQL
    await lock.release();
    const answers = await Promise.all(cs.map((c) => c.readZ(1)));
    const first = wireBytes(answers[0]!);
    t.strictSame(firstRow(answers[0]!), [String(ROWS), EXPECTED_SUM], 'the leader counts and sums every row');
    t.match(describeMessages(answers[0]!), /^T D C Z$/, 'T D C Z');
    for (const [i, a] of answers.entries()) t.ok(wireBytes(a).equals(first), `client ${i} got the same bytes`);
    t.equal(await calls(pg(), READ), 1, 'pg_stat_statements: PostgreSQL executed it once');
    t.equal(linesWith(p, 'flight=leader').length, 1, 'one flight=leader line');
    t.equal(linesWith(p, 'flight=waiter').length, CLIENTS - 1, `${CLIENTS - 1} flight=waiter lines`);
    const s = await p.stats();
    t.equal(s['cache_waiters'], CLIENTS - 1, 'waiters counter');
    t.equal(s['cache_leaders'], 1, 'leaders counter');
    t.equal(s['cache_hits'], 0, 'nothing served from a cache (singleflight only)');
    // The sessions carry on normally afterwards.
    for (const c of cs.slice(0, 3)) t.equal(value(await c.query('SELECT 41 + 1')), '42', 'session usable after the flight');
  });

  t.test(`${mode}: ${CLIENTS} extended-protocol clients, each answered in its own shape`, async (t) => {
    const p = await fx.launch(['--singleflight', ...cacheArgs(workers)]);
    const cs = await sessions(p, CLIENTS);
    // Odd clients use a named prepared statement (Bind without Parse, like pgbench -M prepared),
    // even ones Parse the unnamed statement each time (like -M extended).
    for (const [i, c] of cs.entries()) {
      if (i % 2 === 0) continue;
      c.write(Buffer.concat([enc.parse('s1', `${READ} WHERE id <= $1`), enc.sync()]));
      const r = await c.readZ(1);
      t.equal(describeMessages(r), '1 Z', `client ${i}: statement prepared`);
    }
    await resetStatements();
    const unit = (i: number) =>
      i % 2 === 0 ? extUnit({ sql: `${READ} WHERE id <= $1`, params: ['500'] }) : extUnit({ sql: null, statement: 's1', params: ['500'] });
    const lock = await blockedLeader(cs[0]!, unit(0));
    for (const [i, c] of cs.entries()) if (i > 0) c.write(unit(i));
    await waitLines(p, 'flight=waiter', 3 * (CLIENTS - 1) - Math.floor(CLIENTS / 2)); // P+B+E lines or B+E lines
    await lock.release();
    const answers = await Promise.all(cs.map((c) => c.readZ(1)));
    for (const [i, a] of answers.entries()) {
      t.equal(describeMessages(a), i % 2 === 0 ? '1 2 T D C Z' : '2 T D C Z', `client ${i}: its own shape`);
      t.strictSame(column(a), ['500'], `client ${i}: the right count`);
    }
    const tail = (a: BackendMessage[]) => wireBytes(a.filter((m) => m.type !== '1'));
    for (const [i, a] of answers.entries()) t.ok(tail(a).equals(tail(answers[0]!)), `client ${i}: same bytes after ParseComplete`);
    t.equal(await calls(pg(), `${READ} WHERE id <= $1`), 1, 'pg_stat_statements: executed once');
  });

  t.test(`${mode}: killing the leader's client mid-flight, every waiter still gets a correct answer`, async (t) => {
    const p = await fx.launch(['--singleflight', ...cacheArgs(workers)]);
    const cs = await sessions(p, 20);
    const lock = await blockedLeader(cs[0]!, enc.query(READ));
    for (const c of cs.slice(1)) c.write(enc.query(READ));
    await waitLines(p, 'flight=waiter', cs.length - 1);
    cs[0]!.sock.destroy();
    // The first waiter becomes the new leader: its query reaches PostgreSQL too.
    await waitUntilCount(pg(), lockWaitersSql(READ), 2);
    await lock.release();
    const answers = await Promise.all(cs.slice(1).map((c) => c.readZ(1)));
    for (const [i, a] of answers.entries()) {
      t.strictSame(errorsIn(a), [], `waiter ${i + 1}: no error`);
      t.strictSame(column(a), [String(ROWS)], `waiter ${i + 1}: correct count`);
    }
    t.equal((await p.stats())['clients'], cs.length - 1, 'the proxy dropped only the killed client');
  });

  t.test(`${mode}: a waiter whose client goes away is dropped; the others get the answer`, async (t) => {
    const p = await fx.launch(['--singleflight', ...cacheArgs(workers)]);
    const cs = await sessions(p, 4);
    const lock = await blockedLeader(cs[0]!, enc.query(READ));
    for (const c of cs.slice(1)) c.write(enc.query(READ));
    await waitLines(p, 'flight=waiter', 3);
    cs[2]!.sock.destroy();
    const deadline = Date.now() + 5000;
    while ((await p.stats())['clients'] !== 3 && Date.now() < deadline) await sleep(20);
    t.equal((await p.stats())['clients'], 3, 'the proxy let the gone waiter go');
    await lock.release();
    for (const i of [0, 1, 3]) t.strictSame(firstRow(await cs[i]!.readZ(1)), [String(ROWS), EXPECTED_SUM], `client ${i}: its answer`);
    t.equal((await p.stats())['cache_reruns'], 0, 'nobody had to run it again');
    t.notMatch(p.stderr(), /ERROR|internal error/, 'nothing went wrong in the proxy');
  });

  t.test(`${mode}: a cancelled waiter gets 57014 and its session carries on; the flight goes on`, async (t) => {
    const p = await fx.launch(['--singleflight', ...cacheArgs(workers)]);
    const leader = await fx.session(p.port);
    const waiter = await fx.sessionWithKey(p.port);
    const lock = await blockedLeader(leader, enc.query(READ));
    waiter.c.write(enc.query(READ));
    await waitLines(p, 'flight=waiter', 1);
    const cancel = await RawClient.connect(p.port);
    cancel.write(enc.cancel(waiter.pid, waiter.secret));
    const r = await waiter.c.readZ(1);
    t.strictSame(r.map((m) => m.type), ['E', 'Z'], 'an ErrorResponse, then ReadyForQuery');
    t.equal(errorsIn(r)[0]?.['C'], '57014', 'query_canceled');
    t.equal(errorsIn(r)[0]?.['S'], 'ERROR', 'severity ERROR, the session lives');
    t.equal(r[r.length - 1]!.body.toString(), 'I', 'then ReadyForQuery idle');
    t.equal(value(await waiter.c.query('SELECT 7')), '7', 'the cancelled session works');
    await lock.release();
    t.strictSame(column(await leader.readZ(1)), [String(ROWS)], 'the leader still gets its answer');
  });

  t.test(`${mode}: a division by zero is shared with the waiters; errors of the leader's session are not`, async (t) => {
    const p = await fx.launch(['--singleflight', ...cacheArgs(workers)]);
    const cs = await sessions(p, 5);
    const bad = 'SELECT count(*) / 0 FROM sf_t';
    await resetStatements();
    const lock = await blockedLeader(cs[0]!, enc.query(bad), bad);
    for (const c of cs.slice(1)) c.write(enc.query(bad));
    await waitLines(p, 'flight=waiter', cs.length - 1);
    await lock.release();
    for (const c of cs) t.equal(errorsIn(await c.readZ(1))[0]?.['C'], '22012', 'division_by_zero');
    t.equal(linesWith(p, 'flight=leader').length, 1, 'one leader: the error was shared, not re-run');
  });

  t.test(`${mode}: a waiter's pipelined requests wait behind it and are answered in order`, async (t) => {
    const p = await fx.launch(['--singleflight', ...cacheArgs(workers)]);
    const [leader, waiter] = await sessions(p, 2);
    const lock = await blockedLeader(leader!, enc.query(READ));
    waiter!.write(Buffer.concat([enc.query(READ), enc.query('SELECT 42'), extUnit({ sql: 'SELECT $1::int + 1', params: ['1'] }), enc.query(READ)]));
    await waitLines(p, 'flight=waiter', 1);
    await lock.release();
    const r = await waiter!.readZ(4);
    t.equal(describeMessages(r), 'T D C Z T D C Z 1 2 T D C Z T D C Z', 'four answers in order');
    t.strictSame(column(r), [String(ROWS), '42', '2', String(ROWS)], 'each its own');
    await leader!.readZ(1);
  });

  t.test(`${mode}: SIGTERM while a client waits: it gets its answer, then 57P01`, async (t) => {
    const p = await fx.launch(['--singleflight', '--shutdown-grace', '20000', ...cacheArgs(workers)]);
    const [leader, waiter] = await sessions(p, 2);
    const lock = await blockedLeader(leader!, enc.query(READ));
    waiter!.write(enc.query(READ));
    await waitLines(p, 'flight=waiter', 1);
    p.proc.kill('SIGTERM');
    await p.waitStderr(/SIGTERM: shutting down/);
    await lock.release();
    for (const c of [leader!, waiter!]) {
      const r = await c.readUntilClosed(10000);
      t.ok(r.closed, 'closed afterwards');
      t.strictSame(column(r.msgs), [String(ROWS)], 'the answer first');
      t.equal(errorsIn(r.msgs)[0]?.['C'], '57P01', 'then 57P01');
    }
    t.equal((await p.stop()).code, 0, 'the proxy exits 0');
  });

  t.test(`${mode}: a leader cancelled by the server (57014) does not pass its error on`, async (t) => {
    const p = await fx.launch(['--singleflight', ...cacheArgs(workers)]);
    const [leader, waiter] = await sessions(p, 2);
    const lock = await blockedLeader(leader!, enc.query(READ));
    waiter!.write(enc.query(READ));
    await waitLines(p, 'flight=waiter', 1);
    const pid = await pg().psql(`SELECT pid FROM pg_stat_activity WHERE query = '${READ}' AND wait_event_type = 'Lock'`);
    await pg().psql(`SELECT pg_cancel_backend(${pid})`);
    t.equal(errorsIn(await leader!.readZ(1))[0]?.['C'], '57014', 'the leader was cancelled');
    await waitUntilCount(pg(), lockWaitersSql(READ), 1); // the waiter now runs it itself
    await lock.release();
    const r = await waiter!.readZ(1);
    t.strictSame(errorsIn(r), [], 'the waiter did not inherit the cancel');
    t.strictSame(firstRow(r), [String(ROWS), EXPECTED_SUM], 'the waiter got the rows');
  });
}
