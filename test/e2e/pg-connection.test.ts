// pgscribe's own PostgreSQL client (src/pg/connection.ts) against a real cluster: each
// authentication method, results (fields, NULLs, UTF-8, many rows), errors that keep the
// connection, FATALs that end it, a stopped server, order under concurrency, timeouts, TLS.
import t from 'tap';
import * as net from 'node:net';
import { startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { makeCerts } from '../harness/certs';
import { waitFor } from '../harness/time';
import { PgClientError, PgConnection, PgError, type PgConnectOptions, type QueryResult } from '../../src/pg/connection';
import { UpstreamTls } from '../../src/tls';

const PW_USER = 'cleartext_user';
const PW_PASS = 'clear pass é';
// SASLprep maps the soft hyphen to nothing, the no-break space to a space, and NFKC makes U+2168 "IX".
const UTF8_USER = 'scram_utf8_user';
const UTF8_PASS = 'Pä\u00adss\u00a0\u2168';

let pg: PgCluster;
const open = new Set<PgConnection>();

t.before(async () => {
  pg = await startCluster({ hba: [`host all ${PW_USER} 127.0.0.1/32 password`, `host all ${UTF8_USER} 127.0.0.1/32 scram-sha-256`] });
  await pg.psql(`CREATE ROLE ${PW_USER} LOGIN PASSWORD '${PW_PASS}'; CREATE ROLE ${UTF8_USER} LOGIN PASSWORD '${UTF8_PASS}'`);
});

t.teardown(async () => {
  for (const c of open) c.close();
  await pg?.stop();
});

function options(o: Partial<PgConnectOptions> = {}, cluster: PgCluster = pg): PgConnectOptions {
  return { host: cluster.host, port: cluster.port, user: 'postgres', password: '', database: 'postgres', applicationName: 'pgscribe test', connectTimeoutMs: 20_000, tls: null, ...o };
}

async function connect(o: Partial<PgConnectOptions> = {}, cluster?: PgCluster): Promise<PgConnection> {
  const c = await PgConnection.connect(options(o, cluster));
  open.add(c);
  return c;
}

/** What connect() rejects with (fails the test if it resolves). */
async function connectError(o: Partial<PgConnectOptions>, cluster?: PgCluster): Promise<PgError | PgClientError> {
  try {
    const c = await PgConnection.connect(options(o, cluster));
    c.close();
  } catch (err) {
    if (err instanceof PgError || err instanceof PgClientError) return err;
    throw err;
  }
  throw new Error('connect() resolved');
}

const value = async (c: PgConnection, sql: string): Promise<string | null> => (await c.query(sql)).rows[0]?.[0] ?? null;

t.test('each authentication method', async (tt) => {
  const cases: [string, string, string][] = [
    ['trust', USERS.trust.user, ''],
    ['scram-sha-256', USERS.scram.user, USERS.scram.password],
    ['md5', USERS.md5.user, USERS.md5.password],
    ['password (cleartext)', PW_USER, PW_PASS],
  ];
  for (const [method, user, password] of cases) {
    const c = await connect({ user, password, applicationName: `pgscribe ${method}` });
    tt.equal(await value(c, 'SELECT current_user'), user, `${method}: logged in as ${user}`);
    tt.equal(c.parameters.get('application_name'), `pgscribe ${method}`, `${method}: application_name reported`);
    tt.equal(c.parameters.get('client_encoding'), 'UTF8');
    tt.match(c.parameters.get('server_version') ?? '', /^\d+/);
    tt.equal(String(c.backendPid), await value(c, 'SELECT pg_backend_pid()'), `${method}: backendPid`);
    c.close();
  }
});

t.test('SCRAM with a non-ASCII password: SASLprep as the server does it', async (tt) => {
  for (const password of [UTF8_PASS, 'Päss IX']) {
    const c = await connect({ user: UTF8_USER, password });
    tt.equal(await value(c, 'SELECT current_user'), UTF8_USER, `${JSON.stringify(password)} logs in`);
    c.close();
  }
  tt.equal((await connectError({ user: UTF8_USER, password: 'Päss\u00a0IX!' })).code, '28P01', 'and a different password does not');
});

t.test('refused logins', async (tt) => {
  for (const [user, method] of [[USERS.scram.user, 'scram'], [USERS.md5.user, 'md5'], [PW_USER, 'password']] as const) {
    const e = await connectError({ user, password: 'wrong' });
    tt.ok(e instanceof PgError, `${method}: a PgError`);
    tt.equal(e.code, '28P01', `${method}: wrong password gives 28P01`);
    tt.match(e.message, /password authentication failed/);
  }
  const nopw = await connectError({ user: USERS.scram.user, password: '' });
  tt.ok(nopw instanceof PgClientError && nopw.code === 'PGSCRIBE_PG_AUTH', 'no password for a scram user: PGSCRIBE_PG_AUTH');
  tt.match(nopw.message, /scram-sha-256 authentication and no password is set/);
  const db = await connectError({ database: 'no_such_db' });
  tt.equal(db.code, '3D000', 'an unknown database');
  const param = await connectError({ startupParams: { no_such_setting: 'x' } });
  tt.equal(param.code, '42704', 'an unknown startup parameter is the server FATAL');
});

t.test('results: fields, NULLs, UTF-8, many rows, big values, several statements', async (tt) => {
  const c = await connect({ user: USERS.trust.user });
  const r = await c.query("SELECT 1 AS one, NULL::text AS nothing, '' AS empty, 'é日本😀' AS \"ünï\"");
  tt.strictSame(r, { command: 'SELECT 1', fields: ['one', 'nothing', 'empty', 'ünï'], rows: [['1', null, '', 'é日本😀']] });
  const many = await c.query("SELECT i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'é' || i END FROM generate_series(1, 50000) i");
  tt.equal(many.command, 'SELECT 50000');
  tt.equal(many.rows.length, 50000);
  tt.strictSame([many.rows[0], many.rows[2], many.rows[49999]], [['1', 'é1'], ['3', null], ['50000', 'é50000']]);
  tt.equal((await value(c, "SELECT repeat('ab', 1000000)"))?.length, 2_000_000, 'a 2 MB value');
  tt.strictSame(await c.query('CREATE TEMP TABLE t(a int); INSERT INTO t VALUES (2), (1); SELECT a FROM t ORDER BY a'), { command: 'SELECT 2', fields: ['a'], rows: [['1'], ['2']] }, 'several statements: the last result');
  tt.strictSame(await c.query('INSERT INTO t VALUES (3)'), { command: 'INSERT 0 1', fields: [], rows: [] });
  tt.strictSame(await c.query('  '), { command: '', fields: [], rows: [] }, 'an empty query');
  c.close();
});

t.test('an error rejects its query and the connection stays usable', async (tt) => {
  const c = await connect();
  await tt.rejects(c.query('SELECT * FROM no_such_table'), { code: '42P01', severity: 'ERROR', message: 'relation "no_such_table" does not exist' });
  tt.equal(await value(c, 'SELECT 42'), '42', 'the next query works');
  await c.query('BEGIN');
  tt.equal(c.transactionStatus, 'T');
  await tt.rejects(c.query('SELECT 1/0'), { code: '22012' });
  tt.equal(c.transactionStatus, 'E', 'in a failed transaction');
  await tt.rejects(c.query('SELECT 1'), { code: '25P02' });
  await c.query('ROLLBACK');
  tt.equal(c.transactionStatus, 'I');
  await tt.rejects(c.query('COPY (SELECT 1) TO STDOUT'), { code: 'PGSCRIBE_PG_UNSUPPORTED' });
  await c.query('CREATE TEMP TABLE ct(a int)');
  await tt.rejects(c.query('COPY ct FROM STDIN'), { code: '57014' }, 'COPY FROM STDIN is failed by CopyFail');
  tt.equal(await value(c, 'SELECT count(*) FROM ct'), '0', 'still usable after COPY');
  c.close();
});

t.test('startup parameters: a setting, and a replication connection', async (tt) => {
  const c = await connect({ startupParams: { search_path: 'pg_catalog', application_name: 'overridden?' } });
  tt.equal(await value(c, 'SHOW search_path'), 'pg_catalog');
  tt.equal(c.parameters.get('application_name'), 'pgscribe test', 'application_name comes from its own option');
  c.close();
  const repl = await connect({ startupParams: { replication: 'database' } });
  const id = await repl.query('IDENTIFY_SYSTEM');
  tt.strictSame(id.fields, ['systemid', 'timeline', 'xlogpos', 'dbname']);
  tt.equal(id.rows[0]?.[3], 'postgres');
  repl.close();
});

t.test('pg_terminate_backend: onClose, and a query in flight gets the FATAL', async (tt) => {
  const admin = await connect();
  const idle = await connect();
  const closed = new Promise<string>((resolve) => idle.onClose(resolve));
  await admin.query(`SELECT pg_terminate_backend(${idle.backendPid})`);
  tt.match(await closed, /^FATAL 57P01: terminating connection due to administrator command/, 'onClose gets the reason');
  tt.ok(idle.closed);
  await tt.rejects(idle.query('SELECT 1'), { code: 'PGSCRIBE_PG_CLOSED' });
  tt.match(await new Promise<string>((resolve) => idle.onClose(resolve)), /57P01/, 'onClose after the fact is called at once');

  const busy = await connect();
  let reason = '';
  busy.onClose((r) => (reason = r));
  const sleeping = busy.query('SELECT pg_sleep(60)');
  const queued = busy.query('SELECT 1');
  await waitFor(async () => ((await value(admin, `SELECT state FROM pg_stat_activity WHERE pid = ${busy.backendPid}`)) === 'active' ? true : undefined), {
    timeoutMs: 20_000,
    timeout: () => 'the sleeping query never became active',
  });
  // Both are awaited before the terminate: the FATAL may reach `busy` before admin's own answer,
  // and a rejection nobody waits for yet is an unhandled one.
  const sleepingRejected = tt.rejects(sleeping, { code: '57P01', severity: 'FATAL' });
  const queuedRejected = tt.rejects(queued, { code: 'PGSCRIBE_PG_CLOSED' });
  await admin.query(`SELECT pg_terminate_backend(${busy.backendPid})`);
  await sleepingRejected;
  await queuedRejected;
  tt.match(reason, /57P01/);
  admin.close();
});

t.test('concurrent queries are answered in order', async (tt) => {
  const c = await connect();
  const order: number[] = [];
  const all = Array.from({ length: 60 }, (_, i) =>
    c.query(i % 7 === 0 ? `SELECT ${i}, pg_sleep(0.01)` : i % 11 === 0 ? `SELECT ${i} / 0` : `SELECT ${i}`).then(
      (r: QueryResult) => {
        order.push(i);
        return r.rows[0]?.[0];
      },
      (e: PgError) => {
        order.push(i);
        return e.code;
      },
    ),
  );
  const got = await Promise.all(all);
  tt.strictSame(got, Array.from({ length: 60 }, (_, i) => (i % 7 !== 0 && i % 11 === 0 ? '22012' : String(i))));
  tt.strictSame(order, Array.from({ length: 60 }, (_, i) => i), 'settled in the order sent');
  c.close();
});

t.test('a query timeout cancels the query; the connection stays usable', async (tt) => {
  const c = await connect({ queryTimeoutMs: 300 });
  await tt.rejects(c.query('SELECT pg_sleep(60)'), { code: 'PGSCRIBE_PG_QUERY_TIMEOUT' });
  tt.equal(await value(c, 'SELECT 7'), '7', 'the next query runs');
  tt.equal(await value(c, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(60)%'"), '0', 'the slow query was cancelled on the server');
  tt.equal((await c.query('SELECT pg_sleep(0.5)', { timeoutMs: 0 })).command, 'SELECT 1', 'a per-query timeout overrides the default');
  c.close();
});

t.test('close(): pending queries reject, onClose is not called, the server session ends', async (tt) => {
  const admin = await connect();
  const c = await connect();
  let called = false;
  c.onClose(() => (called = true));
  const pid = c.backendPid;
  const q = c.query('SELECT pg_sleep(0.2)');
  c.close();
  await tt.rejects(q, { code: 'PGSCRIBE_PG_CLOSED', message: /closed by pgscribe/ });
  await waitFor(async () => ((await value(admin, `SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`)) === '0' ? true : undefined), {
    timeoutMs: 20_000,
    timeout: () => 'the backend did not end after close()',
  });
  tt.equal(called, false);
  admin.close();
});

t.test('connect errors: nothing listening, a server that never answers', async (tt) => {
  // Reads (so that it sees the client go and server.close() can finish) and never answers.
  const silent = net.createServer((s) => s.on('error', () => {}).resume());
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  tt.teardown(() => new Promise<void>((r) => silent.close(() => r())));
  const port = (silent.address() as net.AddressInfo).port;
  const e = await connectError({ port, connectTimeoutMs: 300 });
  tt.equal(e.code, 'PGSCRIBE_PG_CONNECT');
  tt.match(e.message, /timeout after 300 ms/);
  // A socket the server shuts at once, while startup is under way.
  const slammer = net.createServer((s) => s.on('error', () => {}).destroy());
  await new Promise<void>((r) => slammer.listen(0, '127.0.0.1', r));
  tt.teardown(() => new Promise<void>((r) => slammer.close(() => r())));
  const slammed = await connectError({ port: (slammer.address() as net.AddressInfo).port });
  tt.equal(slammed.code, 'PGSCRIBE_PG_CONNECT');
  tt.match(slammed.message, /during startup/);
});

t.test('TLS, then the same cluster stopped', async (tt) => {
  const certs = makeCerts();
  const sslPg = await startCluster({ ssl: { cert: certs.server.cert, key: certs.server.key, hostsslOnly: true } });
  tt.teardown(() => sslPg.stop());
  const tls = new UpstreamTls('verify-full', { cert: '', key: '', ca: certs.ca });
  const c = await connect({ tls, user: USERS.scram.user, password: USERS.scram.password }, sslPg);
  tt.equal(await value(c, 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'), 't', 'the session is encrypted (and SCRAM works over it)');
  c.close();
  const plain = await connectError({}, sslPg);
  tt.equal(plain.code, '28000', 'without TLS the hostssl-only server refuses (proves the TLS above was needed)');
  const wrongCa = await connectError({ tls: new UpstreamTls('verify-full', { cert: '', key: '', ca: certs.otherCa }) }, sslPg);
  tt.equal(wrongCa.code, 'PGSCRIBE_PG_CONNECT');
  tt.match(wrongCa.message, /TLS handshake failed/);
  const noSsl = await connectError({ tls: new UpstreamTls('require', { cert: '', key: '', ca: '' }) });
  tt.match(noSsl.message, /does not support SSL/, 'require against a server without SSL');

  await sslPg.stop();
  const stopped = await connectError({ tls }, sslPg);
  tt.equal(stopped.code, 'PGSCRIBE_PG_CONNECT', 'a stopped cluster');
  tt.match(stopped.message, new RegExp(`cannot connect to 127\\.0\\.0\\.1:${sslPg.port}: .*ECONNREFUSED`));
  const stoppedPlain = await connectError({}, sslPg);
  tt.match(stoppedPlain.message, /ECONNREFUSED/, 'and without TLS');
});
