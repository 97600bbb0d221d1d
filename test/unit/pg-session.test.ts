// The protocol side of pgscribe's own PostgreSQL client (src/pg/session.ts), driven without a
// server: a scripted conversation fed whole, split at every byte offset and byte by byte must
// give the same answers and send the same bytes; malformed or misplaced server messages end the
// session with a reason and never throw.
import t from 'tap';
import { createHash } from 'node:crypto';
import { PgClientError, PgError } from '../../src/pg/errors';
import { PgSession, type QueryResult, type SessionHost } from '../../src/pg/session';
import { be } from '../helpers/pg-backend';
import { cstr, enc } from '../harness/wire';

class FakeHost implements SessionHost {
  sent: Buffer[] = [];
  readies = 0;
  losses: { reason: string; error: Error }[] = [];
  cancels = 0;
  send(data: Buffer): void {
    this.sent.push(Buffer.from(data));
  }
  ready(): void {
    this.readies++;
  }
  lost(reason: string, error: Error): void {
    this.losses.push({ reason, error });
  }
  cancel(): Promise<void> {
    this.cancels++;
    return Promise.resolve();
  }
}

const USER = 'catalog_user';
const PASSWORD = 'sécret';
const PARAMS = new Map([
  ['user', USER],
  ['database', 'postgres'],
]);

function session(o: { password?: string; maxMessageBytes?: number } = {}): { s: PgSession; host: FakeHost } {
  const host = new FakeHost();
  const s = new PgSession({ user: USER, password: o.password ?? PASSWORD, startupParams: PARAMS, maxMessageBytes: o.maxMessageBytes ?? 1 << 20 }, host);
  s.start();
  return { s, host };
}

type Outcome = { ok: QueryResult } | { err: string };
const outcome = (p: Promise<QueryResult>): Promise<Outcome> =>
  p.then(
    (ok) => ({ ok }),
    (e: unknown) => ({ err: e instanceof PgError || e instanceof PgClientError ? e.code : String(e) }),
  );

const SALT = Buffer.from([0x01, 0x00, 0xfe, 0x7f]);
const md5hex = (b: Buffer | string) => createHash('md5').update(b).digest('hex');
const MD5_ANSWER = 'md5' + md5hex(Buffer.concat([Buffer.from(md5hex(Buffer.from(PASSWORD + USER, 'utf8')), 'latin1'), SALT]));

const STARTUP = Buffer.concat([
  be.authMd5(SALT),
  be.authOk(),
  be.param('server_version', '15.4'),
  be.notice([['S', 'NOTICE'], ['C', '00000'], ['M', 'hello']]),
  be.param('client_encoding', 'UTF8'),
  be.keyData(777, 31337),
  be.ready('I'),
]);

const SCRIPT: [string, Buffer, Outcome][] = [
  ['SELECT a, b FROM t', Buffer.concat([be.rowDesc(['a', 'b']), be.dataRow(['1', null]), be.dataRow(['é日本😀', '']), be.complete('SELECT 2'), be.ready()]), { ok: { command: 'SELECT 2', fields: ['a', 'b'], rows: [['1', null], ['é日本😀', '']] } }],
  ['SELECT nope', Buffer.concat([be.sqlError('42703', 'column "nope" does not exist'), be.ready()]), { err: '42703' }],
  ['SELECT 1; CREATE TABLE x()', Buffer.concat([be.rowDesc(['?column?']), be.dataRow(['1']), be.complete('SELECT 1'), be.complete('CREATE TABLE'), be.ready()]), { ok: { command: 'CREATE TABLE', fields: [], rows: [] } }],
  ['SELECT 1 WHERE false', Buffer.concat([be.rowDesc(['x']), be.complete('SELECT 0'), be.ready()]), { ok: { command: 'SELECT 0', fields: ['x'], rows: [] } }],
  ['BEGIN', Buffer.concat([be.complete('BEGIN'), be.param('TimeZone', 'UTC'), be.ready('T')]), { ok: { command: 'BEGIN', fields: [], rows: [] } }],
  ['', Buffer.concat([be.emptyQuery(), be.ready('T')]), { ok: { command: '', fields: [], rows: [] } }],
  ['SELECT 1/x FROM t', Buffer.concat([be.rowDesc(['?column?']), be.dataRow(['1']), be.sqlError('22012', 'division by zero'), be.ready('E')]), { err: '22012' }],
  ['ROLLBACK', Buffer.concat([be.complete('ROLLBACK'), be.ready('I')]), { ok: { command: 'ROLLBACK', fields: [], rows: [] } }],
];
const SERVER = Buffer.concat([STARTUP, ...SCRIPT.map(([, r]) => r)]);
const EXPECTED_SENT = Buffer.concat([enc.startup({ user: USER, database: 'postgres' }), enc.raw('p', cstr(MD5_ANSWER)), ...SCRIPT.map(([sql]) => enc.query(sql))]);

async function runScript(chunks: Buffer[]): Promise<{ outcomes: Outcome[]; host: FakeHost; s: PgSession }> {
  const { s, host } = session();
  const pending = SCRIPT.map(([sql]) => outcome(s.query(sql, 0)));
  for (const c of chunks) s.push(c);
  return { outcomes: await Promise.all(pending), host, s };
}

t.test('a scripted conversation, whole', async (tt) => {
  const { outcomes, host, s } = await runScript([SERVER]);
  tt.strictSame(outcomes, SCRIPT.map(([, , o]) => o));
  tt.strictSame(Buffer.concat(host.sent), EXPECTED_SENT, 'startup, md5 password, then each query once');
  tt.equal(host.readies, 1);
  tt.strictSame(host.losses, []);
  tt.equal(s.backendPid, 777);
  tt.equal(s.backendSecret, 31337);
  tt.strictSame([...s.parameters], [['server_version', '15.4'], ['client_encoding', 'UTF8'], ['TimeZone', 'UTC']]);
  tt.equal(s.txStatus, 0x49);
  tt.equal(s.state, 'idle');
});

t.test('the same conversation split at every byte offset, and byte by byte', async (tt) => {
  const want = SCRIPT.map(([, , o]) => o);
  const bad: string[] = [];
  for (let k = 1; k < SERVER.length; k++) {
    const { outcomes, host } = await runScript([SERVER.subarray(0, k), SERVER.subarray(k)]);
    if (JSON.stringify(outcomes) !== JSON.stringify(want)) bad.push(`split at ${k}: ${JSON.stringify(outcomes)}`);
    else if (!Buffer.concat(host.sent).equals(EXPECTED_SENT) || host.losses.length > 0) bad.push(`split at ${k}: sent or lost differ`);
  }
  tt.strictSame(bad, [], `all ${SERVER.length - 1} splits give the same answers`);
  const bytes = [...SERVER].map((b) => Buffer.from([b]));
  const one = await runScript(bytes);
  tt.strictSame(one.outcomes, want, 'byte by byte');
});

/** A session past startup (trust), with one query in flight. */
function busy(sql = 'SELECT 1'): { s: PgSession; host: FakeHost; q: Promise<Outcome> } {
  const { s, host } = session();
  s.push(Buffer.concat([be.authOk(), be.keyData(1, 2), be.ready()]));
  return { s, host, q: outcome(s.query(sql, 0)) };
}

t.test('malformed or misplaced server messages end the session with a reason', async (tt) => {
  const cases: [string, Buffer, RegExp][] = [
    ['an unknown message type', enc.raw('x', Buffer.alloc(0)), /'x' \(0x78\).*state busy/],
    ['DataRow before RowDescription', be.dataRow(['1']), /'D'/],
    ['DataRow with a column too many', Buffer.concat([be.rowDesc(['a']), be.dataRow(['1', '2'])]), /2 columns, RowDescription 1/],
    ['a truncated DataRow', Buffer.concat([be.rowDesc(['a']), enc.raw('D', Buffer.from([0, 1, 0, 0, 0, 9, 0x41]))]), /DataRow: message too short/],
    ['a length below 4', Buffer.from([0x44, 0, 0, 0, 2]), /invalid message length 2/],
    ['a message over the limit', Buffer.from([0x44, 0x7f, 0, 0, 0]), /exceeds the limit/],
    ['ParseComplete to a simple query', enc.raw('1', Buffer.alloc(0)), /'1'/],
    ['CopyBothResponse', enc.raw('W', Buffer.from([0, 0, 0])), /'W'/],
    ['CopyData outside COPY', be.copyData('x'), /'d'/],
    ['a second RowDescription without CommandComplete', Buffer.concat([be.rowDesc(['a']), be.rowDesc(['b'])]), /'T'/],
    ['an ErrorResponse without SQLSTATE', be.error([['S', 'ERROR'], ['M', 'm']]), /no field 'C'/],
    ['a ReadyForQuery with an unknown status', enc.raw('Z', Buffer.from('Q')), /unknown transaction status/],
    ['AuthenticationOk after startup', be.authOk(), /'R'/],
  ];
  for (const [name, bytes, reason] of cases) {
    const { s, host, q } = busy();
    const next = outcome(s.query('SELECT 2', 0));
    s.push(bytes);
    tt.equal(host.losses.length, 1, `${name}: lost once`);
    tt.match(host.losses[0]?.reason ?? '', reason, `${name}: the reason says what`);
    tt.strictSame(await q, { err: 'PGSCRIBE_PG_PROTOCOL' }, `${name}: the query in flight rejects`);
    tt.strictSame(await next, { err: 'PGSCRIBE_PG_CLOSED' }, `${name}: the queued query rejects`);
    tt.strictSame(await outcome(s.query('SELECT 3', 0)), { err: 'PGSCRIBE_PG_CLOSED' }, `${name}: later queries reject`);
    s.push(Buffer.concat([be.complete('SELECT 1'), be.ready()])); // ignored after the end
    tt.equal(host.losses.length, 1, `${name}: nothing more after the end`);
  }
});

t.test('an ERROR while idle ends the session; a FATAL during a query rejects it with the PgError', async (tt) => {
  const a = busy();
  a.s.push(Buffer.concat([be.complete('SELECT 1'), be.ready(), be.sqlError('42000', 'stray')]));
  tt.strictSame(await a.q, { ok: { command: 'SELECT 1', fields: [], rows: [] } });
  tt.match(a.host.losses[0]?.reason, /outside any query: 42000 stray/);
  const b = busy();
  b.s.push(be.sqlError('57P01', 'terminating connection due to administrator command', 'FATAL'));
  tt.strictSame(await b.q, { err: '57P01' });
  tt.equal(b.host.losses[0]?.reason, 'FATAL 57P01: terminating connection due to administrator command');
  tt.ok(b.host.losses[0]?.error instanceof PgError);
});

t.test('startup: FATAL, unsupported methods, NegotiateProtocolVersion', async (tt) => {
  const cases: [string, Buffer, string, RegExp, string?][] = [
    ['wrong password', be.sqlError('28P01', 'password authentication failed for user "u"', 'FATAL'), '28P01', /FATAL 28P01/],
    ['GSSAPI', be.authCode(7), 'PGSCRIBE_PG_AUTH', /GSSAPI authentication \(request 7\).*supports trust, password, md5 and scram-sha-256/],
    ['Kerberos', be.authCode(2), 'PGSCRIBE_PG_AUTH', /Kerberos V5/],
    ['SSPI', be.authCode(9), 'PGSCRIBE_PG_AUTH', /SSPI/],
    ['an unknown code', be.authCode(42), 'PGSCRIBE_PG_AUTH', /an unknown authentication \(request 42\)/],
    ['SASL without SCRAM-SHA-256', be.authSasl(['SCRAM-SHA-1', 'OAUTHBEARER']), 'PGSCRIBE_PG_AUTH', /offers SASL mechanisms SCRAM-SHA-1, OAUTHBEARER/],
    ['no password for md5', be.authMd5(SALT), 'PGSCRIBE_PG_AUTH', /asks for md5 authentication and no password is set/, ''],
    ['no password for cleartext', be.authCleartext(), 'PGSCRIBE_PG_AUTH', /asks for password authentication/, ''],
    ['SASLContinue before SASL', be.saslContinue('r=x'), 'PGSCRIBE_PG_PROTOCOL', /out of order/],
    ['a query result during startup', be.rowDesc(['a']), 'PGSCRIBE_PG_PROTOCOL', /'T'.*authenticating/],
    ['ReadyForQuery before AuthenticationOk', be.ready(), 'PGSCRIBE_PG_PROTOCOL', /'Z'.*authenticating/],
  ];
  for (const [name, bytes, code, reason, password] of cases) {
    const { s, host } = session(password === undefined ? {} : { password });
    const q = outcome(s.query('SELECT 1', 0));
    s.push(bytes);
    tt.equal(host.readies, 0, `${name}: not ready`);
    tt.match(host.losses[0]?.reason, reason, `${name}: reason`);
    const e = host.losses[0]?.error as PgError | PgClientError | undefined;
    tt.equal(e?.code, code, `${name}: error code`);
    tt.strictSame(await q, { err: 'PGSCRIBE_PG_CLOSED' }, `${name}: a query queued before the end rejects`);
  }
  const { s, host } = session();
  s.push(Buffer.concat([be.negotiate(0, ['_pq_.unknown']), be.authCleartext()]));
  tt.strictSame(host.sent[1], enc.raw('p', cstr(PASSWORD)), 'NegotiateProtocolVersion is accepted, then the cleartext password sent');
  s.push(Buffer.concat([be.authOk(), be.ready()]));
  tt.equal(host.readies, 1);
});

t.test('COPY is refused without ending the session', async (tt) => {
  const { s, host, q } = busy('COPY t FROM STDIN');
  s.push(be.copyIn());
  tt.strictSame(host.sent.at(-1), enc.raw('f', cstr("pgscribe's own connection does not send COPY data")), 'CopyFail answers CopyInResponse');
  s.push(Buffer.concat([be.sqlError('57014', 'COPY from stdin failed'), be.ready()]));
  tt.strictSame(await q, { err: '57014' });
  const out = outcome(s.query('COPY t TO STDOUT', 0));
  s.push(Buffer.concat([be.copyOut(), be.copyData('1\n'), be.copyData('2\n'), be.copyDone(), be.complete('COPY 2'), be.ready()]));
  tt.strictSame(await out, { err: 'PGSCRIBE_PG_UNSUPPORTED' });
  const next = outcome(s.query('SELECT 1', 0));
  s.push(Buffer.concat([be.rowDesc(['x']), be.dataRow(['1']), be.complete('SELECT 1'), be.ready()]));
  tt.strictSame(await next, { ok: { command: 'SELECT 1', fields: ['x'], rows: [['1']] } });
  tt.strictSame(host.losses, []);
  tt.strictSame(await outcome(s.query('SELECT 1\0', 0)), { err: 'PGSCRIBE_PG_UNSUPPORTED' }, 'a NUL in the query text');
});

t.test('a query timeout cancels, and the next query waits for the cancelled one to end', async (tt) => {
  const { s, host } = session();
  s.push(Buffer.concat([be.authOk(), be.keyData(1, 2), be.ready()]));
  // 300 ms: the test's next steps (one setImmediate) must come before the second deadline, 300 ms on.
  const slow = outcome(s.query('SELECT pg_sleep(60)', 300));
  const next = outcome(s.query('SELECT 2', 0));
  tt.strictSame(await slow, { err: 'PGSCRIBE_PG_QUERY_TIMEOUT' });
  tt.equal(host.cancels, 1, 'a CancelRequest was sent');
  await new Promise((r) => setImmediate(r));
  tt.equal(host.sent.length, 2, 'the next query is not sent while the cancelled one runs');
  s.push(Buffer.concat([be.sqlError('57014', 'canceling statement due to user request'), be.ready()]));
  tt.strictSame(host.sent.at(-1), enc.query('SELECT 2'), 'sent once the cancelled query ended');
  s.push(Buffer.concat([be.rowDesc(['x']), be.dataRow(['2']), be.complete('SELECT 1'), be.ready()]));
  tt.strictSame(await next, { ok: { command: 'SELECT 1', fields: ['x'], rows: [['2']] } });
  tt.strictSame(host.losses, []);

  const stuck = busy('SELECT 1');
  const hung = outcome(stuck.s.query('SELECT pg_sleep(60)', 5));
  stuck.s.push(Buffer.concat([be.complete('SELECT 1'), be.ready()]));
  tt.strictSame(await hung, { err: 'PGSCRIBE_PG_QUERY_TIMEOUT' });
  while (stuck.host.losses.length === 0) await new Promise((r) => setTimeout(r, 5));
  tt.match(stuck.host.losses[0]?.reason, /still running 5 ms after it was cancelled/, 'a query that outlives its cancel ends the session');
});
