// CopyBoth mode of pgscribe's own PostgreSQL client (src/pg/session.ts), the way the change
// stream uses it (START_REPLICATION on a replication connection), driven without a server: a
// scripted walsender conversation fed whole, split at every byte offset and byte by byte gives the
// same commits, the same query results and the same bytes sent back; the three ways a walsender
// ends the stream; and what does not belong in CopyBoth mode ends the session, never throws.
import t from 'tap';
import { PgClientError, PgError } from '../../src/pg/errors';
import { PgSession, type CopyBothHandler, type QueryResult, type SessionHost } from '../../src/pg/session';
import { decodePgoutput, decodeReplicationMessage, encodeStandbyStatusUpdate } from '../../src/wal/pgoutput';
import { TransactionAssembler, type CommittedTransaction } from '../../src/wal/transactions';
import { be } from '../helpers/pg-backend';
import { pgTime, po, repl } from '../helpers/pgoutput-wire';
import { enc, i16 } from '../harness/wire';

class FakeHost implements SessionHost {
  sent: Buffer[] = [];
  losses: { reason: string; error: Error }[] = [];
  send(data: Buffer): void {
    this.sent.push(Buffer.from(data));
  }
  ready(): void {}
  lost(reason: string, error: Error): void {
    this.losses.push({ reason, error });
  }
  cancel(): Promise<void> {
    return Promise.resolve();
  }
}

type Outcome = { ok: QueryResult } | { err: string };
const outcome = (p: Promise<QueryResult>): Promise<Outcome> =>
  p.then(
    (ok) => ({ ok }),
    (e: unknown) => ({ err: e instanceof PgError || e instanceof PgClientError ? e.code : String(e) }),
  );

const PARAMS = new Map([
  ['user', 'postgres'],
  ['database', 'postgres'],
  ['replication', 'database'],
]);

function session(): { s: PgSession; host: FakeHost } {
  const host = new FakeHost();
  const s = new PgSession({ user: 'postgres', password: '', startupParams: PARAMS, maxMessageBytes: 1 << 20 }, host);
  s.start();
  return { s, host };
}

/** CopyBothResponse: text, no columns (what a walsender sends). */
const copyBoth = (format = 0, columns: number[] = []) => enc.raw('W', Buffer.concat([Buffer.from([format]), i16(columns.length), ...columns.map(i16)]));
const xlog = (payload: Buffer, lsn = 0n) => enc.raw('d', repl.xlog(lsn, lsn, pgTime(1_700_000_000_000), payload));
const keepalive = (walEnd: bigint, reply: boolean) => enc.raw('d', repl.keepalive(walEnd, pgTime(1_700_000_000_000), reply));
const CLOCK = 1_700_000_000_123;
const START = 'START_REPLICATION SLOT s LOGICAL 0/0 (proto_version \'1\', publication_names \'"p"\')';

/** A handler as the change stream's: decodes, assembles, answers a reply request with a fixed clock. */
function collector(s: PgSession): { handler: CopyBothHandler; commits: CommittedTransaction[]; keepalives: bigint[]; started: number } {
  const a = new TransactionAssembler(100);
  const out = { commits: [] as CommittedTransaction[], keepalives: [] as bigint[], started: 0, handler: null as unknown as CopyBothHandler };
  out.handler = {
    started: () => out.started++,
    data: (buf, start, end) => {
      const m = decodeReplicationMessage(buf, start + 5, end);
      if (m.kind === 'keepalive') {
        out.keepalives.push(m.walEnd);
        if (m.replyRequested) s.sendCopyData(encodeStandbyStatusUpdate({ write: m.walEnd, flush: m.walEnd, apply: m.walEnd, clockMs: CLOCK, replyRequested: false }));
        return;
      }
      const c = a.apply(decodePgoutput(buf, m.payloadStart, m.payloadEnd));
      if (c !== null) out.commits.push(c);
    },
  };
  return out;
}

const T = pgTime(1_700_000_000_000);
const SERVER = Buffer.concat([
  be.authOk(),
  be.param('server_version', '15.4'),
  be.keyData(4242, 1),
  be.ready(),
  // IDENTIFY_SYSTEM
  be.rowDesc(['systemid', 'timeline', 'xlogpos', 'dbname']),
  be.dataRow(['7300000000000000001', '1', '0/1A2B3C8', 'postgres']),
  be.complete('IDENTIFY_SYSTEM'),
  be.ready(),
  // START_REPLICATION
  copyBoth(),
  keepalive(0x1000n, false),
  xlog(po.begin(0x1100n, T, 900)),
  xlog(po.relation(16384, 'public', 'orders', [{ name: 'id', type: 23, key: true }])),
  xlog(po.insert(16384, [{ t: '1'.repeat(300) }])),
  keepalive(0x1050n, true), // a keepalive inside the transaction's messages
  be.notice([['S', 'NOTICE'], ['V', 'NOTICE'], ['C', '00000'], ['M', 'asynchronous']]),
  be.param('TimeZone', 'UTC'),
  xlog(po.commit(0x1100n, 0x1128n, T), 0x1128n),
  xlog(po.begin(0x1200n, T, 901)),
  xlog(po.relation(16390, '', 'pg_thing')),
  xlog(po.truncate([16390, 16384], 1)),
  xlog(po.commit(0x1200n, 0x1228n, T), 0x1228n),
  keepalive(0x1300n, true),
  // The server ends the copy: CopyDone, the client answers with its own, then the tags.
  be.copyDone(),
  be.complete('COPY 0'),
  be.complete('START_REPLICATION'),
  be.ready(),
]);

const EXPECTED_SENT = Buffer.concat([
  enc.startup({ user: 'postgres', database: 'postgres', replication: 'database' }),
  enc.query('IDENTIFY_SYSTEM'),
  enc.query(START),
  enc.copyData(repl.status(0x1050n, 0x1050n, 0x1050n, pgTime(CLOCK), false)),
  enc.copyData(repl.status(0x1300n, 0x1300n, 0x1300n, pgTime(CLOCK), false)),
  enc.copyDone(),
]);

const WANT_COMMITS: CommittedTransaction[] = [
  { xid: 900, commitLsn: 0x1100n, endLsn: 0x1128n, commitTimeMs: 1_700_000_000_000, relations: [{ oid: 16384, schema: 'public', name: 'orders' }], truncate: false },
  {
    xid: 901,
    commitLsn: 0x1200n,
    endLsn: 0x1228n,
    commitTimeMs: 1_700_000_000_000,
    relations: [
      { oid: 16390, schema: 'pg_catalog', name: 'pg_thing' },
      { oid: 16384, schema: 'public', name: 'orders' },
    ],
    truncate: true,
  },
];

async function runScript(chunks: Buffer[]) {
  const { s, host } = session();
  const c = collector(s);
  const id = outcome(s.query('IDENTIFY_SYSTEM', 0));
  const stream = outcome(s.copyBoth(START, c.handler, 0));
  for (const chunk of chunks) s.push(chunk);
  return { s, host, c, id: await id, stream: await stream };
}

t.test('a walsender conversation, whole', async (tt) => {
  const r = await runScript([SERVER]);
  tt.strictSame(r.id, { ok: { command: 'IDENTIFY_SYSTEM', fields: ['systemid', 'timeline', 'xlogpos', 'dbname'], rows: [['7300000000000000001', '1', '0/1A2B3C8', 'postgres']] } });
  tt.equal(r.c.started, 1, 'started() once, at CopyBothResponse');
  tt.strictSame(r.c.commits, WANT_COMMITS);
  tt.strictSame(r.c.keepalives, [0x1000n, 0x1050n, 0x1300n]);
  tt.strictSame(r.stream, { ok: { command: 'START_REPLICATION', fields: [], rows: [] } }, 'the command settles at the ReadyForQuery after the copy');
  tt.strictSame(Buffer.concat(r.host.sent), EXPECTED_SENT, 'the queries, two status updates, then CopyDone');
  tt.strictSame(r.host.losses, []);
  tt.equal(r.s.state, 'idle');
  tt.equal(r.s.parameters.get('TimeZone'), 'UTC', 'ParameterStatus during the copy is taken');
});

t.test('the same conversation split at every byte offset, and byte by byte', async (tt) => {
  const bad: string[] = [];
  for (let k = 1; k < SERVER.length; k++) {
    const r = await runScript([SERVER.subarray(0, k), SERVER.subarray(k)]);
    if (JSON.stringify(r.c.commits, (_, v) => (typeof v === 'bigint' ? v.toString() : v)) !== JSON.stringify(WANT_COMMITS, (_, v) => (typeof v === 'bigint' ? v.toString() : v))) bad.push(`split at ${k}: commits differ`);
    else if (!Buffer.concat(r.host.sent).equals(EXPECTED_SENT)) bad.push(`split at ${k}: sent bytes differ`);
    else if (r.host.losses.length > 0 || !('ok' in r.stream)) bad.push(`split at ${k}: ${JSON.stringify(r.host.losses.map((l) => l.reason))}`);
  }
  tt.strictSame(bad, [], `all ${SERVER.length - 1} splits give the same commits and replies`);
  const one = await runScript([...SERVER].map((b) => Buffer.from([b])));
  tt.strictSame(one.c.commits, WANT_COMMITS, 'byte by byte');
  tt.strictSame(Buffer.concat(one.host.sent), EXPECTED_SENT);
});

/** A session past startup with START_REPLICATION sent and, unless `start` is false, streaming. */
function streaming(start = true) {
  const { s, host } = session();
  s.push(Buffer.concat([be.authOk(), be.keyData(1, 2), be.ready()]));
  const c = collector(s);
  const q = outcome(s.copyBoth(START, c.handler, 0));
  if (start) s.push(copyBoth());
  return { s, host, c, q };
}

t.test('an ERROR ends the stream, the command rejects, and the connection stays usable', async (tt) => {
  const { s, host, q } = streaming();
  tt.equal(s.state, 'copying');
  s.push(Buffer.concat([keepalive(5n, false), be.sqlError('42704', 'publication "p" does not exist'), be.ready()]));
  tt.strictSame(await q, { err: '42704' });
  tt.equal(s.state, 'idle');
  tt.equal(s.sendCopyData(Buffer.from('x')), false, 'no CopyData outside CopyBoth mode');
  const next = outcome(s.query('SELECT 1', 0));
  s.push(Buffer.concat([be.rowDesc(['x']), be.dataRow(['1']), be.complete('SELECT 1'), be.ready()]));
  tt.strictSame(await next, { ok: { command: 'SELECT 1', fields: ['x'], rows: [['1']] } });
  tt.strictSame(host.losses, []);
});

t.test('a FATAL ends the session; a walsender stopping at shutdown ends the copy with CommandComplete alone', async (tt) => {
  const a = streaming();
  a.s.push(be.sqlError('57P01', 'terminating connection due to administrator command', 'FATAL'));
  tt.strictSame(await a.q, { err: '57P01' });
  tt.match(a.host.losses[0]?.reason, /FATAL 57P01/);

  const b = streaming();
  b.s.push(be.complete('COPY 0'));
  tt.equal(b.s.state, 'busy', 'CommandComplete ends CopyBoth mode');
  tt.strictSame(b.host.losses, [], 'and is not a protocol violation');
  b.s.end('the server closed the connection', new PgClientError('PGSCRIBE_PG_CLOSED', 'the server closed the connection'));
  tt.strictSame(await b.q, { err: 'PGSCRIBE_PG_CLOSED' });
});

t.test('what does not belong in CopyBoth mode ends the session with a reason', async (tt) => {
  const cases: [string, Buffer, RegExp, boolean?][] = [
    ['a DataRow in the copy', be.dataRow(['1']), /'D'.*state copying/],
    ['a second CopyBothResponse', copyBoth(), /'W'.*state copying/],
    ['ReadyForQuery in the copy', be.ready(), /'Z'.*state copying/],
    ['a CopyBothResponse in binary', copyBoth(2), /CopyBothResponse: unknown format 2/, false],
    ['a CopyBothResponse with a truncated column list', enc.raw('W', Buffer.from([0, 0, 2, 0, 0])), /CopyBothResponse: message too short/, false],
    ['a malformed pgoutput message (the handler throws)', enc.raw('d', repl.xlog(0n, 0n, 0n, Buffer.from('Q'))), /unknown message type 'Q'/],
  ];
  for (const [name, bytes, re, start] of cases) {
    const { s, host, q } = streaming(start ?? true);
    s.push(bytes);
    tt.equal(host.losses.length, 1, `${name}: lost once`);
    tt.match(host.losses[0]?.reason, re, `${name}: the reason says what`);
    tt.strictSame(await q, { err: 'PGSCRIBE_PG_PROTOCOL' }, `${name}: the command rejects`);
  }
  const plain = session();
  plain.s.push(Buffer.concat([be.authOk(), be.ready()]));
  const q = outcome(plain.s.query('SELECT 1', 0));
  plain.s.push(copyBoth());
  tt.strictSame(await q, { err: 'PGSCRIBE_PG_PROTOCOL' }, 'a plain query still refuses CopyBothResponse');
});

t.test('the timeout covers the wait for CopyBothResponse only', async (tt) => {
  const { s, host } = session();
  s.push(Buffer.concat([be.authOk(), be.keyData(1, 2), be.ready()]));
  const c = collector(s);
  const late = outcome(s.copyBoth(START, c.handler, 30));
  tt.strictSame(await late, { err: 'PGSCRIBE_PG_QUERY_TIMEOUT' });
  s.push(copyBoth());
  tt.match(host.losses[0]?.reason, /'W'/, 'a stream that starts after its command timed out ends the session');

  const ok = session();
  ok.s.push(Buffer.concat([be.authOk(), be.keyData(1, 2), be.ready()]));
  const c2 = collector(ok.s);
  const q = outcome(ok.s.copyBoth(START, c2.handler, 30));
  ok.s.push(copyBoth());
  await new Promise((r) => setTimeout(r, 80));
  ok.s.push(keepalive(9n, false));
  tt.strictSame(c2.keepalives, [9n], 'still streaming well past the timeout');
  tt.strictSame(ok.host.losses, []);
  ok.s.push(Buffer.concat([be.copyDone(), be.complete('START_REPLICATION'), be.ready()]));
  tt.strictSame(await q, { ok: { command: 'START_REPLICATION', fields: [], rows: [] } });
});
