// The query log is pluggable: a second ClientLogger (RecordingLogger, which keeps records instead
// of writing lines) plugged into a Server built in the test process sees every Q, P, B and E, with
// its statement and portal names and its SQL, from psql, from a raw pipeline and from pgbench; and
// with the NoopLogger the Server still relays everything.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NoopLogger, type ClientLogger } from '../../src/log/client-logger';
import { Frontend } from '../../src/protocol/codes';
import { startInProcess, type InProcessProxy } from '../harness/in-process';
import { PG_BIN, USERS, startCluster, type PgCluster } from '../harness/pg-cluster';
import type { LoggedQuery, RecordingLogger } from '../harness/recording-logger';
import { run } from '../harness/run';
import { RawClient, column, describeMessages, enc, errorsIn } from '../harness/wire';

const PSQL = fs.existsSync(path.join(PG_BIN, 'psql')) ? path.join(PG_BIN, 'psql') : 'psql';
const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';
const USER = USERS.trust.user;

let pg: PgCluster;
t.before(async () => {
  pg = await startCluster();
  const init = await run(PGBENCH, ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', 'postgres'], { timeoutMs: 120_000 });
  if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`);
});
t.teardown(async () => {
  await pg?.stop();
});

/** The query messages the Server counted, by type (the counters its sessions add to). */
function queryMessages(ip: InProcessProxy<ClientLogger>): { Q: number; P: number; B: number; E: number } {
  const m = ip.server.counters.messagesIn;
  return { Q: m[Frontend.Query]!, P: m[Frontend.Parse]!, B: m[Frontend.Bind]!, E: m[Frontend.Execute]! };
}

/** An in-process Server with a RecordingLogger, stopped when the test ends. */
async function recording(tt: Test): Promise<InProcessProxy<RecordingLogger>> {
  const ip = await startInProcess({ upstreamPort: pg.port });
  tt.teardown(() => ip.stop());
  return ip;
}

/** A raw session through the in-process Server, closed when the test ends. */
async function session(tt: Test, port: number, user = USER): Promise<RawClient> {
  const c = await RawClient.connect(port);
  tt.teardown(() => c.sock.destroy());
  const startup = await c.startup(user);
  if (startup[startup.length - 1]?.type !== 'Z') throw new Error(`startup failed: ${describeMessages(startup)}`);
  return c;
}

/** What a record says about the query, without the session, seq and cache fields; params as text. */
function shape(q: LoggedQuery): { type: string; statement: string | null; portal: string | null; sql: string | null; params: (string | null)[] | null } {
  return { type: q.type, statement: q.statement, portal: q.portal, sql: q.sql, params: q.params === null ? null : q.params.values.map((v) => (v === null ? null : v.toString('utf8'))) };
}

/** Records per message type. */
function countByType(qs: readonly LoggedQuery[]): { Q: number; P: number; B: number; E: number } {
  const n = { Q: 0, P: 0, B: 0, E: 0 };
  for (const q of qs) n[q.type]++;
  return n;
}

t.test('psql -c: one Q record with the SQL and the session', async (tt) => {
  const ip = await recording(tt);
  const sql = 'select 41 + 1 as answer';
  const r = await run(PSQL, ['-X', '-A', '-t', '-w', '-c', sql], { env: { ...pg.env(USER), PGPORT: String(ip.port) }, timeoutMs: 30_000 });
  tt.equal(r.code, 0, `psql exits 0 ${r.stderr}`);
  tt.equal(r.stdout.trim(), '42', 'the answer came through');
  const qs = ip.logger.queries;
  tt.strictSame(qs.map(shape), [{ type: 'Q', statement: null, portal: null, sql, params: null }], 'exactly one record: the Q, as psql sent it');
  tt.equal(qs[0]?.session.user, USER, 'its session: the user');
  tt.equal(qs[0]?.session.database, 'postgres', 'and the database');
  tt.equal(qs[0]?.seq, 1, 'the first query of its connection');
  tt.strictSame(queryMessages(ip), { Q: 1, P: 0, B: 0, E: 0 }, "the Server's own count agrees");
  tt.equal(ip.logger.lines, 1);
});

t.test('a raw P/B/D/E pipeline, named and unnamed: every P, B and E recorded with its names, SQL and parameters', async (tt) => {
  const ip = await recording(tt);
  const c = await session(tt, ip.port);
  const named = 'select $1::int + $2::int as sum';
  const unnamed = 'select $1::text as echo';
  c.write(
    Buffer.concat([
      enc.parse('s1', named),
      enc.bind('p1', 's1', ['40', '2']),
      enc.describe('P', 'p1'),
      enc.execute('p1'),
      enc.parse('', unnamed),
      enc.bind('', '', ['hi']),
      enc.execute(''),
      enc.close('P', 'p1'),
      enc.sync(),
    ]),
  );
  const msgs = await c.readZ(1);
  tt.strictSame(errorsIn(msgs), [], 'no error');
  tt.strictSame(column(msgs), ['42', 'hi'], 'both executes answered');
  tt.strictSame(
    ip.logger.queries.map(shape),
    [
      { type: 'P', statement: 's1', portal: null, sql: named, params: null },
      { type: 'B', statement: 's1', portal: 'p1', sql: named, params: ['40', '2'] },
      { type: 'E', statement: 's1', portal: 'p1', sql: named, params: null },
      { type: 'P', statement: '', portal: null, sql: unnamed, params: null },
      { type: 'B', statement: '', portal: '', sql: unnamed, params: ['hi'] },
      { type: 'E', statement: '', portal: '', sql: unnamed, params: null },
    ],
    'P, B, E twice, in order; Describe, Close and Sync are not query messages',
  );
  tt.strictSame(
    ip.logger.queries.map((q) => q.seq),
    [1, 2, 3, 4, 5, 6],
    'numbered within the connection',
  );
  const client = `127.0.0.1:${c.sock.localPort}`;
  tt.ok(
    ip.logger.queries.every((q) => q.session.client === client && q.session.user === USER),
    `every record carries the session (${client})`,
  );

  // A statement prepared earlier, bound and executed in a later round trip: its SQL is still known.
  c.write(Buffer.concat([enc.bind('', 's1', ['1', '1']), enc.execute(''), enc.sync()]));
  tt.strictSame(column(await c.readZ(1)), ['2']);
  tt.strictSame(
    ip.logger.queries.slice(6).map(shape),
    [
      { type: 'B', statement: 's1', portal: '', sql: named, params: ['1', '1'] },
      { type: 'E', statement: 's1', portal: '', sql: named, params: null },
    ],
    'the statement named at Bind is resolved to its SQL',
  );
  tt.strictSame(countByType(ip.logger.queries), queryMessages(ip), 'one record per query message the Server counted');
});

t.test('pgbench -M extended: a record for every Q, P, B and E the Server received', async (tt) => {
  const ip = await recording(tt);
  const clients = 2;
  const tx = 25;
  const r = await run(PGBENCH, ['-n', '-S', '-M', 'extended', '-c', String(clients), '-t', String(tx), '-h', '127.0.0.1', '-p', String(ip.port), '-U', 'postgres', 'postgres'], {
    timeoutMs: 120_000,
  });
  tt.equal(r.code, 0, `pgbench exits 0 ${r.stderr}`);
  tt.match(r.stdout, new RegExp(`number of transactions actually processed: ${clients * tx}/${clients * tx}`), 'every transaction ran');
  const n = countByType(ip.logger.queries);
  tt.strictSame(n, queryMessages(ip), `records by type = the Server's message counts (${JSON.stringify(n)})`);
  tt.match(n, { P: clients * tx, B: clients * tx, E: clients * tx }, 'one P, B and E per select-only transaction');
  const select = /^SELECT abalance FROM pgbench_accounts WHERE aid = \$1;?$/;
  const ext = ip.logger.queries.filter((q) => q.type !== 'Q');
  tt.ok(
    ext.every((q) => q.statement === '' && select.test(q.sql ?? '')),
    'every P/B/E: the unnamed statement, with the script\'s SELECT',
  );
  tt.ok(
    ext.filter((q) => q.type !== 'P').every((q) => q.portal === ''),
    'every B/E: the unnamed portal',
  );
  tt.ok(
    ext.filter((q) => q.type === 'B').every((q) => q.params !== null && q.params.values.length === 1 && /^\d+$/.test(q.params.values[0]?.toString() ?? '')),
    'every Bind: one aid parameter',
  );
});

t.test('with the NoopLogger the Server still relays simple and extended queries, and records nothing', async (tt) => {
  const ip = await startInProcess({ upstreamPort: pg.port, logger: new NoopLogger() });
  tt.teardown(() => ip.stop());
  const c = await session(tt, ip.port);
  tt.strictSame(column(await c.query('select 7 * 6')), ['42'], 'simple query answered');
  c.write(Buffer.concat([enc.parse('', 'select $1::int * 2'), enc.bind('', '', ['21']), enc.execute(''), enc.sync()]));
  tt.strictSame(column(await c.readZ(1)), ['42'], 'extended query answered');
  tt.strictSame(queryMessages(ip), { Q: 1, P: 1, B: 1, E: 1 }, 'the Server saw all four');
  tt.equal(ip.logger.lines, 0, 'and the logger recorded nothing');
  const r = await run(PGBENCH, ['-n', '-S', '-M', 'extended', '-c', '2', '-t', '10', '-h', '127.0.0.1', '-p', String(ip.port), '-U', 'postgres', 'postgres'], {
    timeoutMs: 120_000,
  });
  tt.equal(r.code, 0, `pgbench through it exits 0 ${r.stderr}`);
  tt.match(r.stdout, /number of transactions actually processed: 20\/20/);
});

t.test('stop() shuts the in-process Server down: the port is closed, sessions end', async (tt) => {
  const ip = await recording(tt);
  const c = await session(tt, ip.port);
  await ip.stop(200);
  await c.waitClosed(5000);
  tt.ok(c.closed, 'the idle session was closed');
  tt.equal(ip.server.listening, false, 'no longer listening');
  await tt.rejects(RawClient.connect(ip.port), 'new connections are refused');
});
