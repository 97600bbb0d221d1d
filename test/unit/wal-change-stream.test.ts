// The change stream (src/wal/change-stream.ts) against a scripted walsender on a local socket
// (test/helpers/fake-walsender.ts): the commands it sends and their quoting, which position it
// acknowledges when (never past a transaction still arriving), waitFor()'s pings (one outstanding
// at a time), and every way a stream breaks (malformed input, an undescribed relation, a throwing
// callback, silence, the server ending the stream, a slot-name clash) ending in onDown and a new
// slot, never in an exception.
import t from 'tap';
import type { OpsFields, OpsLog } from '../../src/log/ops';
import { ChangeStream, type ChangeStreamOptions, type CommitInfo } from '../../src/wal/change-stream';
import { be } from '../helpers/pg-backend';
import { CONSISTENT_POINT, startFakeWalsender, type FakeConnection, type FakeWalsender } from '../helpers/fake-walsender';
import { pgTime, po, repl } from '../helpers/pgoutput-wire';
import { waitFor } from '../harness/time';
import { enc } from '../harness/wire';

interface Seen {
  commits: CommitInfo[];
  readies: string[];
  downs: string[];
  ops: { level: string; msg: string; fields: OpsFields }[];
}

let fake: FakeWalsender;
const streams: ChangeStream[] = [];

t.beforeEach(async () => {
  fake = await startFakeWalsender();
});
t.afterEach(async () => {
  for (const s of streams.splice(0)) s.close();
  await fake.close();
});

function open(o: Partial<ChangeStreamOptions> = {}): { stream: ChangeStream; seen: Seen } {
  const seen: Seen = { commits: [], readies: [], downs: [], ops: [] };
  const log = (level: string) => (msg: string, fields: OpsFields = {}) => void seen.ops.push({ level, msg, fields });
  const ops: OpsLog = { info: log('INFO'), warn: log('WARN'), error: log('ERROR') };
  const stream = new ChangeStream({
    host: '127.0.0.1',
    port: fake.port,
    user: 'u',
    password: '',
    database: 'db',
    tls: null,
    backoffMinMs: 10,
    backoffMaxMs: 50,
    ops,
    onCommit: (c) => seen.commits.push(c),
    onReady: (r) => seen.readies.push(r.slot),
    onDown: (reason) => seen.downs.push(reason),
    ...o,
  });
  streams.push(stream);
  stream.start();
  return { stream, seen };
}

const until = <T>(probe: () => T | undefined, what: string): Promise<T> => waitFor(probe, { timeoutMs: 10_000, timeout: () => `timed out waiting for ${what}` });
/** The n-th connection (0-based), once it streams. */
const streamingConn = (n: number): Promise<FakeConnection> => until(() => (fake.connections[n]?.streaming === true ? fake.connections[n] : undefined), `connection ${n} streaming`);

const T0 = 1_700_000_000_000;
const xlog = (payload: Buffer) => repl.xlog(0n, 0n, pgTime(T0), payload);
const keepalive = (walEnd: bigint, reply: boolean) => repl.keepalive(walEnd, pgTime(T0), reply);
const P = CONSISTENT_POINT;

t.test('the commands, and the publication name quoted as an identifier inside a literal', async (tt) => {
  const a = open();
  const c0 = await streamingConn(0);
  await until(() => (a.seen.readies.length > 0 ? true : undefined), 'onReady');
  const slot = a.seen.readies[0]!;
  tt.match(slot, new RegExp(`^pgscribe_${process.pid}_\\d+$`));
  tt.equal(c0.queries[0], 'SHOW synchronous_standby_names', 'first: whether pgscribe would be a synchronous standby');
  tt.equal(c0.queries[2], `CREATE_REPLICATION_SLOT ${slot} TEMPORARY LOGICAL pgoutput (SNAPSHOT 'nothing')`);
  tt.equal(c0.queries[3], `START_REPLICATION SLOT ${slot} LOGICAL 0/0 (proto_version '1', publication_names '"pgscribe_all"')`);
  tt.equal(a.stream.position, P, 'the position starts at the slot\'s consistent point');
  a.stream.close();

  fake.answer = (sql) =>
    /pg_publication/.test(sql) ? Buffer.concat([be.rowDesc(['puballtables', 'pubinsert', 'pubupdate', 'pubdelete', 'pubtruncate']), be.dataRow(['t', 't', 't', 't', 't']), be.complete('SELECT 1'), be.ready()]) : undefined;
  const b = open({ publication: `it's "x", y` });
  const c1 = await streamingConn(1);
  tt.equal(c1.queries[1], `SELECT * FROM pg_catalog.pg_publication WHERE pubname = 'it''s "x", y'`);
  tt.match(c1.queries[3], /\(proto_version '1', publication_names '"it''s ""x"", y"'\)$/, 'a comma or quote inside the name stays inside the one identifier');
  b.stream.close();
});

t.test('acknowledgements: on request, never past a transaction still arriving', async (tt) => {
  const { stream, seen } = open({ statusIntervalMs: 60_000 });
  const c = await streamingConn(0);
  await until(() => (seen.readies.length > 0 ? true : undefined), 'onReady');
  c.copyData(keepalive(P + 0x100n, true));
  const first = await until(() => c.statuses[0], 'the reply');
  tt.strictSame(first, { write: P + 0x100n, flush: P + 0x100n, apply: P + 0x100n, clock: first.clock, replyRequested: false }, 'write, flush and apply: the keepalive walEnd between transactions');
  tt.ok(Math.abs(Number(first.clock / 1000n) + 946_684_800_000 - Date.now()) < 60_000, "the client's clock");

  c.copyData(xlog(po.begin(P + 0x200n, pgTime(T0), 5)));
  c.copyData(xlog(po.relation(16384, 'public', 't')));
  c.copyData(xlog(po.insert(16384, [{ t: 'x' }])));
  c.copyData(keepalive(P + 0x250n, true)); // inside the transaction: walEnd may pass changes not handed over
  const inside = await until(() => c.statuses[1], 'the reply inside the transaction');
  tt.equal(inside.flush, P + 0x100n, 'inside a transaction: the last position fully processed, not walEnd');
  tt.equal(stream.position, P + 0x100n);
  c.copyData(xlog(po.commit(P + 0x200n, P + 0x228n, pgTime(T0))));
  const commit = await until(() => seen.commits[0], 'the commit');
  tt.strictSame(commit.relations, [{ oid: 16384, schema: 'public', name: 't' }]);
  tt.equal(commit.endLsn, P + 0x228n);
  tt.equal(commit.commitTimeMs, T0);
  tt.equal(commit.lagMs, commit.receivedAtMs - T0, 'lag: received minus committed');
  tt.equal(stream.position, P + 0x228n, 'the commit end is the position');
  c.copyData(keepalive(P + 0x300n, false));
  await until(() => (stream.position === P + 0x300n ? true : undefined), 'an unrequested keepalive moving the position');
  c.copyData(keepalive(P + 0x200n, true));
  const behind = await until(() => c.statuses[2], 'the third reply');
  tt.equal(behind.flush, P + 0x300n, 'a keepalive behind the position does not move it back');
  tt.equal(stream.position, P + 0x300n);
});

t.test('messages in the same read as CopyBothResponse are not lost', async (tt) => {
  fake.answer = (sql, conn) => {
    if (!/^START_REPLICATION/.test(sql)) return undefined;
    conn.streaming = true;
    const body = [po.begin(P + 0x10n, pgTime(T0), 3), po.relation(7, 'public', 'early'), po.insert(7, []), po.commit(P + 0x10n, P + 0x38n, pgTime(T0))];
    return Buffer.concat([enc.raw('W', Buffer.from([0, 0, 0])), ...body.map((m) => enc.copyData(xlog(m))), enc.copyData(keepalive(P + 0x40n, true))]);
  };
  const { stream, seen } = open({ statusIntervalMs: 60_000 });
  const c = await streamingConn(0);
  const reply = await until(() => c.statuses[0], 'the reply to the keepalive');
  tt.equal(reply.flush, P + 0x40n);
  tt.strictSame(seen.commits.map((x) => x.relations), [[{ oid: 7, schema: 'public', name: 'early' }]], 'the first commit is reported');
  tt.equal(seen.readies.length, 1, 'onReady came first');
  tt.equal(stream.position, P + 0x40n);
});

t.test('acknowledgements: every statusIntervalMs without being asked', async (tt) => {
  const { seen } = open({ statusIntervalMs: 100 });
  const c = await streamingConn(0);
  await until(() => (seen.readies.length > 0 ? true : undefined), 'onReady');
  await until(() => (c.statuses.length >= 3 ? true : undefined), 'periodic status updates');
  tt.strictSame(
    c.statuses.slice(0, 3).map((s) => [s.flush, s.replyRequested]),
    [
      [P, false],
      [P, false],
      [P, false],
    ],
    'the consistent point, acknowledged with nothing received',
  );
});

t.test('waitFor(): pings, one outstanding at a time, until the position is reached', async (tt) => {
  const { stream, seen } = open();
  const c = await streamingConn(0);
  await until(() => (seen.readies.length > 0 ? true : undefined), 'onReady');
  let walEnd = P;
  let outstanding = 0;
  let overlapping = 0;
  fake.onStatus = (s, conn) => {
    if (!s.replyRequested) return;
    if (++outstanding > 1) overlapping++;
    // Decoding catches up by 0x100 per ping, answered after a while.
    setTimeout(() => {
      outstanding--;
      walEnd += 0x100n;
      conn.copyData(keepalive(walEnd, false));
    }, 15);
  };
  const target = P + 0x500n;
  // Three callers at once: still one ping at a time.
  tt.strictSame(await Promise.all([stream.waitFor(target - 0x200n, 10_000), stream.waitFor(target, 10_000), stream.waitFor(target - 0x100n, 10_000)]), [true, true, true]);
  tt.ok(stream.position >= target);
  const pings = c.statuses.filter((s) => s.replyRequested).length;
  tt.ok(pings >= 5, `it pinged until the position was reached (${pings} pings)`);
  tt.equal(overlapping, 0, 'never a second ping while one was unanswered');
  fake.onStatus = () => {};
  tt.equal(await stream.waitFor(P + 0x10000n, 100), false, 'false when the position is not reached in time');
  const many = await Promise.all([stream.waitFor(walEnd, 1000), stream.waitFor(walEnd - 1n, 1000), stream.waitFor(walEnd + 1n, 50)]);
  tt.strictSame(many, [true, true, false]);
  const capped = open({ maxWaiters: 1 });
  await until(() => (capped.seen.readies.length > 0 ? true : undefined), 'the second stream');
  const held = capped.stream.waitFor(P + 0x10000n, 10_000);
  tt.equal(await capped.stream.waitFor(P + 0x10000n, 10_000), false, 'past maxWaiters: false at once');
  capped.stream.close();
  tt.equal(await held, false, 'close() gives the waiter false');
});

t.test('a broken stream: onDown, a new slot, onReady; nothing thrown', async (tt) => {
  const cases: [string, Buffer[], RegExp][] = [
    ['a malformed pgoutput message', [xlog(Buffer.from('Qxx'))], /pgoutput: unknown message type 'Q'/],
    ['an unknown CopyData type', [Buffer.from('zzz')], /malformed message: replication message: unknown type 'z'/],
    ['a truncated keepalive', [keepalive(P, false).subarray(0, 10)], /message too short/],
    ['a change to an undescribed relation', [xlog(po.begin(P + 1n, 0n, 1)), xlog(po.insert(99, []))], /relation 99, which no Relation message described/],
    ['a Begin inside a transaction', [xlog(po.begin(P + 1n, 0n, 1)), xlog(po.begin(P + 2n, 0n, 2))], /Begin of xid 2 inside/],
    ['the server ending the stream', [], /the server ended the stream/],
  ];
  for (const [name, bodies, re] of cases) {
    const { stream, seen } = open();
    const n = fake.connections.length;
    const c = await streamingConn(n);
    await until(() => (seen.readies.length > 0 ? true : undefined), `${name}: onReady`);
    if (bodies.length === 0) c.send(Buffer.concat([be.copyDone(), be.complete('START_REPLICATION'), be.ready()]));
    for (const b of bodies) c.copyData(b);
    await until(() => (seen.downs.length > 0 ? true : undefined), `${name}: onDown`);
    tt.match(seen.downs[0], re, `${name}: the reason`);
    tt.ok(seen.ops.some((l) => l.level === 'WARN' && l.fields.reason === seen.downs[0]), `${name}: a warning`);
    await streamingConn(n + 1);
    await until(() => (seen.readies.length > 1 ? true : undefined), `${name}: onReady again`);
    tt.not(seen.readies[1], seen.readies[0], `${name}: on a new slot`);
    tt.ok(stream.healthy, `${name}: healthy again`);
    stream.close();
  }
});

t.test('a throwing onCommit is logged and starts over on a new slot (the commit may be lost to the caller)', async (tt) => {
  let throws = true;
  const seen: string[] = [];
  const { stream, seen: s } = open({
    onCommit: () => {
      if (throws) {
        throws = false;
        throw new Error('caller bug');
      }
    },
    onReady: (r) => seen.push(r.slot),
  });
  const c = await streamingConn(0);
  await until(() => (seen.length > 0 ? true : undefined), 'onReady');
  for (const m of [po.begin(P + 1n, 0n, 1), po.relation(1, 's', 't'), po.insert(1, []), po.commit(P + 1n, P + 2n, 0n)]) c.copyData(xlog(m));
  await until(() => (seen.length > 1 ? true : undefined), 'onReady on a new slot');
  tt.ok(s.ops.some((l) => l.level === 'ERROR' && /onCommit callback threw/.test(l.msg) && l.fields.error === 'caller bug'));
  tt.match(s.downs[0], /onCommit callback threw/);
  tt.ok(stream.healthy);
});

t.test('close() from inside onDown: no reconnect, nothing left running', async (tt) => {
  let stream: ChangeStream | null = null;
  const { stream: s, seen } = open({ onDown: () => stream?.close() });
  stream = s;
  const c = await streamingConn(0);
  await until(() => (seen.readies.length > 0 ? true : undefined), 'onReady');
  const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  c.copyData(Buffer.from('zz'));
  await until(() => (s.state === 'closed' ? true : undefined), 'closed from onDown');
  tt.equal(fake.connections.length, 1, 'no reconnect after close() in onDown');
  await until(() => (timers() === 0 ? true : undefined), 'no timer left (the connection lingers at most 2 s)');
});

t.test('silence: pings after a third of the stall timeout, then down and a new connection', async (tt) => {
  const { stream, seen } = open({ stallTimeoutMs: 600, statusIntervalMs: 10_000 });
  const c = await streamingConn(0);
  await until(() => (seen.readies.length > 0 ? true : undefined), 'onReady');
  // First the fake answers pings: an idle stream that answers stays up.
  fake.onStatus = (s, conn) => {
    if (s.replyRequested) conn.copyData(keepalive(P, false));
  };
  await until(() => (c.statuses.filter((x) => x.replyRequested).length >= 4 ? true : undefined), 'liveness pings');
  tt.equal(seen.downs.length, 0, 'an idle stream that answers its pings is not down');
  fake.onStatus = () => {};
  await until(() => (seen.downs.length > 0 ? true : undefined), 'the stall');
  tt.match(seen.downs[0], /nothing arrived for \d+ ms, pings unanswered \(stall timeout 600 ms\)/);
  await streamingConn(1);
  await until(() => (seen.readies.length > 1 ? true : undefined), 'onReady on a new connection');
  tt.ok(stream.healthy);
});

t.test('setup failures: a slot-name clash is retried under another name; close() during setup cancels', async (tt) => {
  let clashes = 1;
  fake.answer = (sql) => (/^CREATE_REPLICATION_SLOT/.test(sql) && clashes-- > 0 ? Buffer.concat([be.sqlError('42710', 'replication slot "x" already exists'), be.ready()]) : undefined);
  const { seen } = open();
  await until(() => (seen.readies.length > 0 ? true : undefined), 'onReady after the clash');
  tt.match(seen.downs[0], /already exists/);
  tt.match(seen.ops.find((l) => l.level === 'WARN')?.msg, /next attempt takes another name/);
  const names = fake.connections.map((c) => /^CREATE_REPLICATION_SLOT (\S+)/.exec(c.queries[2] ?? '')?.[1]);
  tt.equal(names.length, 2);
  tt.not(names[0], names[1], 'the retry uses another name');

  // A CREATE_REPLICATION_SLOT that never answers (the server waits for running transactions).
  fake.answer = (sql) => (/^CREATE_REPLICATION_SLOT/.test(sql) ? Buffer.alloc(0) : undefined);
  const hung = open({ setupTimeoutMs: 60_000 });
  await until(() => (fake.connections.length === 3 && fake.connections[2]!.queries.length === 3 ? true : undefined), 'the slot being created');
  hung.stream.close();
  await until(() => (fake.cancels > 0 ? true : undefined), 'a CancelRequest for the command in flight');
  tt.equal(hung.seen.downs.length, 0, 'close() is not an outage');
});

t.test("synchronous_standby_names = '*': no slot, down with what to change, tried again", async (tt) => {
  let setting = 'ANY 1 (s1, *)';
  fake.answer = (sql) =>
    sql === 'SHOW synchronous_standby_names' ? Buffer.concat([be.rowDesc(['synchronous_standby_names']), be.dataRow([setting]), be.complete('SHOW'), be.ready()]) : undefined;
  const first = fake.connections.length;
  const { seen } = open({ backoffMinMs: 20, backoffMaxMs: 50 });
  await until(() => (seen.downs.length > 0 ? true : undefined), 'the refusal');
  tt.match(seen.downs[0], /would make pgscribe's change stream \(application_name 'pgscribe changes'\) a synchronous standby/);
  tt.match(seen.ops.find((l) => l.level === 'WARN')?.msg, /name the real standbys in synchronous_standby_names instead of '\*'/);
  await until(() => (fake.connections.length >= first + 2 ? true : undefined), 'tried again');
  tt.ok(fake.connections.slice(first).every((c) => !c.queries.some((q) => /^CREATE_REPLICATION_SLOT/.test(q))), 'no slot made meanwhile');
  setting = 's1, s2';
  await until(() => (seen.readies.length > 0 ? true : undefined), 'streaming once the setting names only real standbys');
  tt.equal(seen.downs.length, 1, 'one warning for the outage');
});
