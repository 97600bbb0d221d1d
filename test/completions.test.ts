// Completion records (--log-completions): the tracker on its own, then the real proxy in front of
// a real PostgreSQL, where every Q and E line must get exactly one `done` line with its seq.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { CompletionTracker, errorCode, summarizeAnswer, tagRows, type Completed } from '../src/client/completions';
import { SessionLedger } from '../src/client/ledger';
import { USERS, run } from './helpers/pg-cluster';
import { clusterAndProxies } from './helpers/fixture';
import { type Proxy } from './helpers/proxy';
import { enc, type RawClient } from './helpers/wire';

const USER = USERS.trust.user;

// ---- the tracker ----------------------------------------------------------------------------

function m(type: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeUInt32BE(body.length + 4, 1);
  body.copy(b, 5);
  return b;
}
const C = (tag: string) => m('C', Buffer.from(tag + '\0'));
const E = (code: string) => m('E', Buffer.from(`SERROR\0C${code}\0Mboom\0\0`));
const Z = m('Z', Buffer.from('I'));
const I = m('I', Buffer.alloc(0));
const s = m('s', Buffer.alloc(0));

/**
 * A tracker over its session ledger, driven as the session drives it: a Q or E goes into the
 * ledger's open group, Query/Sync/FunctionCall seal it, ReadyForQuery ends the oldest group.
 */
function tracker() {
  const done: Completed[] = [];
  const ledger = new SessionLedger();
  const tr = new CompletionTracker(ledger, (c) => done.push(c));
  const feed = (...msgs: Buffer[]) => {
    for (const b of msgs) {
      if (b[0] === 0x5a) tr.ended(ledger.readyForQuery(b[5]! as 0x49));
      else tr.server(b[0]!, b, 0, b.length);
    }
  };
  const query = (seq: number, sql: string) => {
    tr.sent('Q', seq, sql, 0, undefined, undefined);
    ledger.query();
  };
  const execute = (seq: number, sql: string) => tr.sent('E', seq, sql, 0, undefined, undefined);
  const sync = () => ledger.seal();
  return { tr, ledger, done, feed, query, execute, sync };
}
const brief = (d: Completed[]) => d.map((c) => `${c.of}${c.seq}:${c.status}:${c.rows}${c.sqlstate ? ':' + c.sqlstate : ''}`);

t.test('tagRows reads the count at the end of a CommandComplete tag', async (tt) => {
  for (const [tag, n] of [
    ['SELECT 5', 5],
    ['INSERT 0 12', 12],
    ['UPDATE 0', 0],
    ['COPY 100000', 100000],
    ['BEGIN', 0],
    ['CREATE TABLE', 0],
    ['FETCH 3', 3],
  ] as const) {
    const b = C(tag);
    tt.equal(tagRows(b, 0, b.length), n, tag);
  }
  const b = E('22012');
  tt.equal(errorCode(b, 0, b.length), '22012', 'SQLSTATE of an ErrorResponse');
  const noCode = m('E', Buffer.from('SERROR\0Mno code\0\0'));
  tt.equal(errorCode(noCode, 0, noCode.length), null, 'an ErrorResponse without C field');
  tt.same(summarizeAnswer(Buffer.concat([m('T', Buffer.alloc(2)), m('D', Buffer.alloc(2)), C('SELECT 2'), Z])), { rows: 2, sqlstate: null });
  tt.same(summarizeAnswer(Buffer.concat([E('42P01'), Z])), { rows: 0, sqlstate: '42P01' });
});

t.test('extended pipeline: executes end in order; after an error the rest of the segment is skipped', async (tt) => {
  const { ledger, done, feed, execute, sync } = tracker();
  execute(3, 'a');
  execute(6, 'b');
  execute(9, 'c');
  sync();
  execute(12, 'd');
  sync();
  feed(C('SELECT 1'));
  tt.same(brief(done), ['E3:ok:1'], 'the first Execute ends at its CommandComplete, before Sync');
  feed(E('22012'));
  tt.same(brief(done), ['E3:ok:1', 'E6:error:0:22012']);
  feed(Z);
  tt.same(brief(done), ['E3:ok:1', 'E6:error:0:22012', 'E9:skipped:0'], 'the Execute after the error was skipped');
  feed(I, Z);
  tt.same(brief(done).slice(3), ['E12:ok:0'], 'EmptyQueryResponse ends an Execute');
  tt.equal(ledger.pendingGroups, 0, 'every group answered');
  tt.equal(ledger.head, null, 'nothing left to answer');
});

t.test('simple Q: rows summed over its statements, ends at ReadyForQuery, keeps the first error', async (tt) => {
  const { done, feed, query } = tracker();
  query(1, 'insert ...; select ...');
  feed(C('INSERT 0 3'), C('SELECT 4'));
  tt.same(done, [], 'not done before ReadyForQuery');
  feed(Z);
  tt.same(brief(done), ['Q1:ok:7']);
  query(2, 'select 1; select 1/0');
  feed(C('SELECT 1'), E('22012'), Z);
  tt.same(brief(done).slice(1), ['Q2:error:1:22012']);
});

t.test('PortalSuspended, FunctionCall segments, local answers, abort', async (tt) => {
  const { tr, ledger, done, feed, query, execute, sync } = tracker();
  execute(3, 'x');
  execute(4, 'x');
  sync();
  feed(s, C('SELECT 2'), Z);
  tt.same(brief(done), ['E3:suspended:0', 'E4:ok:2']);
  sync(); // a FunctionCall: its ReadyForQuery closes a segment without queries
  query(5, 'select 1');
  feed(Z);
  tt.same(brief(done).slice(2), [], 'the FunctionCall ReadyForQuery does not end the next Q');
  feed(C('SELECT 1'), Z);
  tt.same(brief(done).slice(2), ['Q5:ok:1']);
  tr.local('E', 8, 'y', performance.now(), Buffer.concat([m('T', Buffer.alloc(2)), C('SELECT 3'), Z]), 'hit', undefined);
  tt.same(brief(done).slice(3), ['E8:ok:3']);
  tt.equal(done[3]!.cache, 'hit');
  query(9, 'select pg_sleep(10)');
  execute(11, 'z');
  sync();
  tr.abort(ledger.drain());
  tt.same(brief(done).slice(4), ['Q9:aborted:0', 'E11:aborted:0'], 'what the connection never answered ends as aborted');
});

// ---- through the proxy ----------------------------------------------------------------------

const { pg, fx } = clusterAndProxies(t);
const { launch, stopProxy, session } = fx;

interface Line {
  conn: number;
  type: string;
  seq: number;
  rest: string;
}
function parse(lines: string[]): Line[] {
  return lines.map((l) => {
    const mm = /^\S+ conn=(\d+) \S+ \S+ (\S+) seq=(\d+) (.*)$/.exec(l);
    if (!mm) throw new Error(`line without seq: ${l}`);
    return { conn: Number(mm[1]), type: mm[2]!, seq: Number(mm[3]), rest: mm[4]! };
  });
}

/** Lines settle: the count stops changing. */
async function settled(p: Proxy, atLeast: number): Promise<string[]> {
  await p.waitLogLines(atLeast, 15000);
  let n = -1;
  for (;;) {
    await sleep(200);
    const lines = p.logLines();
    if (lines.length === n) return lines;
    n = lines.length;
  }
}

/** Every Q/E line has exactly one done line of the same conn and seq, after it; no done line is orphaned. */
function checkPairs(tt: Pick<typeof t, 'same'>, lines: Line[]): Map<string, Line> {
  const queries = new Map<string, Line>();
  const dones = new Map<string, Line>();
  const twice: string[] = [];
  const orphans: string[] = [];
  for (const l of lines) {
    const k = `${l.conn}.${l.seq}`;
    if (l.type === 'Q' || l.type === 'E') queries.set(k, l);
    else if (l.type === 'done') {
      if (dones.has(k)) twice.push(k);
      if (!queries.has(k)) orphans.push(k);
      dones.set(k, l);
    }
  }
  tt.same(twice, [], 'no query has two done lines');
  tt.same(orphans, [], 'every done line follows its query line');
  tt.same([...queries.keys()].filter((k) => !dones.has(k)), [], 'every Q and E line has its done line');
  return dones;
}

t.test('psql and raw pipelines through the proxy: one done line per Q/E, with rows, SQLSTATE, skipped', async (tt) => {
  const p = await launch(['--log-completions']);
  await run('psql', ['-X', '-h', '127.0.0.1', '-p', String(p.port), '-U', USER, '-d', 'postgres', '-c', 'select generate_series(1, 7)', '-c', 'select 1/0', '-c', 'create temp table t(x int); insert into t select generate_series(1, 5)']);
  const c: RawClient = await session(p.port);
  c.write(
    Buffer.concat([
      enc.parse('', 'select generate_series(1, $1::int)'),
      enc.bind('', '', ['3']),
      enc.execute(),
      enc.bind('', '', ['x']), // 22P02: invalid input for integer
      enc.execute(),
      enc.bind('', '', ['2']),
      enc.execute(), // skipped: the server ignores everything until Sync
      enc.sync(),
      enc.query(''), // EmptyQueryResponse
    ]),
  );
  await c.readZ(2);
  c.write(Buffer.concat([enc.terminate()]));
  const lines = parse(await settled(p, 18));
  const dones = checkPairs(tt, lines);
  const doneRest = [...dones.values()].map((d) => d.rest.replace(/ms=[\d.]+ /, ''));
  tt.same(doneRest, [
    'of=Q rows=7',
    'of=Q rows=0 status=error sqlstate=22012',
    'of=Q rows=5',
    'of=E rows=3',
    'of=E rows=0 status=error sqlstate=22P02',
    'of=E rows=0 status=skipped',
    'of=Q rows=0',
  ]);
  for (const d of dones.values()) tt.match(d.rest, /ms=\d+(\.\d+)? /, 'a duration in ms');
  await stopProxy(p);
});

t.test('json lines; cache hits and aborted queries get done lines too', async (tt) => {
  const p = await launch(['--log-completions', '--log-format', 'json', '--cache']);
  const c = await session(p.port);
  for (let i = 0; i < 3; i++) {
    c.write(enc.query('select 42 as answer'));
    await c.readZ(1);
  }
  c.write(enc.query('select pg_sleep(30)'));
  await sleep(300);
  c.sock.destroy(); // gone mid-query: aborted
  const lines = (await settled(p, 8)).map((l) => JSON.parse(l) as Record<string, unknown>);
  const done = lines.filter((l) => l['type'] === 'done');
  tt.same(
    done.map((d) => [d['seq'], d['of'], d['rows'], d['status'], d['cache'] ?? null]),
    [
      [1, 'Q', 1, 'ok', 'miss'],
      [2, 'Q', 1, 'ok', 'hit'],
      [3, 'Q', 1, 'ok', 'hit'],
      [4, 'Q', 0, 'aborted', null],
    ],
  );
  const q = lines.filter((l) => l['type'] === 'Q');
  tt.same(
    q.map((l) => l['seq']),
    [1, 2, 3, 4],
    'query lines carry their seq',
  );
  for (const d of done) tt.type(d['ms'], 'number');
  await stopProxy(p);
});

t.test('pgbench -M extended through the proxy: done lines pair up with every Execute', async (tt) => {
  const p = await launch(['--log-completions']);
  const init = await run('pgbench', ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(pg().port), '-U', USER, 'postgres']);
  tt.equal(init.code, 0, init.stderr);
  const r = await run('pgbench', ['-n', '-c', '4', '-t', '50', '-M', 'extended', '-h', '127.0.0.1', '-p', String(p.port), '-U', USER, 'postgres']);
  tt.equal(r.code, 0, r.stderr);
  await stopProxy(p);
  const lines = parse(p.logLines());
  const dones = checkPairs(tt, lines);
  const executes = [...dones.values()].filter((d) => d.rest.startsWith('of=E '));
  tt.equal(executes.length, 4 * 50 * 7, '7 statements per TPC-B transaction, all completed');
  tt.same(executes.filter((d) => / status=/.test(d.rest)).map((d) => d.rest), [], 'none failed');
  // BEGIN and END report no rows; the three UPDATEs, the SELECT and the INSERT one row each.
  tt.equal(executes.filter((d) => / rows=1( |$)/.test(d.rest)).length, 4 * 50 * 5, 'rows from CommandComplete');
});
