// --log-replay through the real proxy in front of a real PostgreSQL (issue 20, the capture side of
// docs/replay.md "The replayable log"): one raw-wire session whose every message is asserted as a
// line, in order, with its fields; the same session with the cache on; pgbench -C sessions each
// whole from start to end; the system identifier with catalog-user.
import { createHash } from 'node:crypto';
import t from 'tap';
import { USERS } from '../harness/pg-cluster';
import { run } from '../harness/run';
import { clusterAndProxies } from '../helpers/fixture';
import { type Proxy } from '../harness/proxy';
import { enc, i32, type BackendMessage, type RawClient } from '../harness/wire';
import { sleep } from '../harness/time';
import { CATALOG_ARGS, cacheArgs } from '../helpers/cache';

const USER = USERS.trust.user;
const REPLAY = ['--log-format', 'json', '--log-replay'];

const { pg, fx } = clusterAndProxies(t);
const { launch, stopProxy, connect } = fx;

type Line = Record<string, unknown> & { type: string; conn: number };

/** The log's lines once their count stops changing. */
async function settled(p: Proxy, atLeast: number): Promise<Line[]> {
  await p.waitLogLines(atLeast, 15000);
  let n = -1;
  for (;;) {
    await sleep(200);
    const lines = p.logLines();
    if (lines.length === n) return lines.map((l) => JSON.parse(l) as Line);
    n = lines.length;
  }
}

/** Read until a message of this type, inclusive. */
async function readThrough(c: RawClient, type: string): Promise<BackendMessage[]> {
  const out: BackendMessage[] = [];
  for (;;) {
    const m = await c.read(10000);
    out.push(m);
    if (m.type === type) return out;
  }
}

/** What replay's rowsDigest must be for these answers: SHA-1 over their DataRow bodies, 16 hex digits. */
function digestOf(msgs: BackendMessage[]): string {
  const h = createHash('sha1');
  for (const m of msgs) if (m.type === 'D') h.update(m.body);
  return h.digest('hex').slice(0, 16);
}

/**
 * The scripted session: named and unnamed statements, binary parameters, Describe of a statement
 * and of a portal, a row-limited Execute, Flush, Close, a pipeline failed in its middle, a simple
 * query, Terminate. Returns the rows digests of the answers the client saw, by what they answered.
 */
async function script(port: number): Promise<Record<string, string>> {
  const c = await connect(port);
  const up = await c.startup(USER, 'postgres', { application_name: 'replay-test', options: '-c geqo=off' });
  if (up[up.length - 1]!.type !== 'Z') throw new Error('startup failed');
  c.write(
    Buffer.concat([
      enc.parse('s1', 'select $1::int + $2::int as n', [23, 0]),
      enc.describe('S', 's1'),
      enc.bind('', 's1', [i32(40), '2'], [1, 0], [1]),
      enc.execute('', 0),
      enc.sync(),
    ]),
  );
  const a1 = await c.readZ(1);
  c.write(Buffer.concat([enc.parse('', 'select generate_series(1, 5) as g'), enc.bind('p1', '', []), enc.describe('P', 'p1'), enc.execute('p1', 2), enc.flush()]));
  const a2 = await readThrough(c, 's');
  c.write(Buffer.concat([enc.execute('p1', 0), enc.close('P', 'p1'), enc.close('S', 's1'), enc.sync()]));
  const a3 = await c.readZ(1);
  c.write(Buffer.concat([enc.parse('', 'select 1/$1::int'), enc.bind('', '', ['0']), enc.execute(), enc.bind('', '', ['1']), enc.execute(), enc.sync()]));
  await c.readZ(1);
  const a5 = await c.query('select 42');
  c.write(enc.terminate());
  await c.waitClosed(5000);
  return { e4: digestOf(a1), e9: digestOf(a2), e11: digestOf(a3), q21: digestOf(a5) };
}

/** The line types the script must produce, in order. */
const EXPECTED_TYPES = [
  'start',
  'P', 'D', 'B', 'E', 'S', 'done',
  'P', 'B', 'D', 'E', 'H', 'done',
  'E', 'C', 'C', 'S', 'done',
  'P', 'B', 'E', 'B', 'E', 'S', 'done', 'done',
  'Q', 'done',
  'end',
];

/** The fields a replay reads, without the ones that vary from run to run (ts, conn, client, ms) or with the cache (cache, flight). */
function replayView(l: Line): Record<string, unknown> {
  const { ts: _ts, conn: _conn, client: _client, ms: _ms, cache: _cache, flight: _flight, ...rest } = l;
  return rest;
}

/** The session's lines, asserted field by field. */
function checkScript(tt: Pick<typeof t, 'same' | 'equal' | 'ok' | 'notOk' | 'match'>, lines: Line[], digests: Record<string, string>, pgPort: number): void {
  tt.same(
    lines.map((l) => l.type),
    EXPECTED_TYPES,
    'the line types, in message order',
  );
  tt.equal(new Set(lines.map((l) => l.conn)).size, 1, 'one session');
  const [start, ...rest] = lines;
  tt.same(start!['startup'], { application_name: 'replay-test', options: '-c geqo=off' }, 'start: every startup parameter but user and database');
  tt.equal(start!['user'], USER);
  tt.equal(start!['db'], 'postgres');
  tt.equal(start!['protocol'], '3.0');
  tt.equal(start!['upstream'], `127.0.0.1:${pgPort}`, 'start: the node reached');
  tt.notOk('seq' in start!, 'start has no seq');
  const recs = rest.filter((l) => l.type !== 'done' && l.type !== 'end');
  tt.same(
    recs.map((l) => l['seq']),
    Array.from({ length: 21 }, (_, i) => i + 1),
    'seq 1..21 over every recorded message, contiguous',
  );
  const bySeq = new Map(recs.map((l) => [l['seq'] as number, l]));
  const done = new Map(rest.filter((l) => l.type === 'done').map((l) => [l['seq'] as number, l]));
  const view = (seq: number) => replayView(bySeq.get(seq)!);
  tt.same(view(1), { user: USER, db: 'postgres', type: 'P', seq: 1, paramTypes: [23, 0], stmt: 's1', sql: 'select $1::int + $2::int as n' }, 'P: paramTypes as sent');
  tt.same(view(2), { user: USER, db: 'postgres', type: 'D', seq: 2, kind: 'S', name: 's1' }, 'D of a statement');
  tt.same(
    view(3),
    { user: USER, db: 'postgres', type: 'B', seq: 3, paramFormats: [1, 0], resultFormats: [1], stmt: 's1', portal: '', params: [{ hex: '00000028' }, '2'], sql: 'select $1::int + $2::int as n' },
    'B: formats as sent, the binary parameter as hex',
  );
  tt.same(view(4), { user: USER, db: 'postgres', type: 'E', seq: 4, maxRows: 0, stmt: 's1', portal: '', sql: 'select $1::int + $2::int as n' }, 'E: maxRows 0');
  tt.same(view(5), { user: USER, db: 'postgres', type: 'S', seq: 5 }, 'S');
  tt.same(view(8), { user: USER, db: 'postgres', type: 'D', seq: 8, kind: 'P', name: 'p1' }, 'D of a portal');
  tt.equal(bySeq.get(9)!['maxRows'], 2, 'E: the row limit');
  tt.equal(bySeq.get(9)!['portal'], 'p1');
  tt.same(view(10), { user: USER, db: 'postgres', type: 'H', seq: 10 }, 'H');
  tt.same(view(12), { user: USER, db: 'postgres', type: 'C', seq: 12, kind: 'P', name: 'p1' }, 'C of a portal');
  tt.same(view(13), { user: USER, db: 'postgres', type: 'C', seq: 13, kind: 'S', name: 's1' }, 'C of a statement');
  tt.same(view(21), { user: USER, db: 'postgres', type: 'Q', seq: 21, sql: 'select 42' }, 'Q');
  tt.same([...done.keys()], [4, 9, 11, 17, 19, 21], 'a done line for each E and Q');
  const d = (seq: number) => {
    const l = done.get(seq)!;
    return { of: l['of'], rows: l['rows'], status: l['status'], sqlstate: l['sqlstate'], rowsDigest: l['rowsDigest'] };
  };
  tt.same(d(4), { of: 'E', rows: 1, status: 'ok', sqlstate: null, rowsDigest: digests['e4'] }, 'done 4: ok, its one row digested');
  tt.same(d(9), { of: 'E', rows: 0, status: 'suspended', sqlstate: null, rowsDigest: digests['e9'] }, 'done 9: suspended after 2 rows, digested');
  tt.same(d(11), { of: 'E', rows: 3, status: 'ok', sqlstate: null, rowsDigest: digests['e11'] }, 'done 11: the other 3 rows');
  tt.same(d(17), { of: 'E', rows: 0, status: 'error', sqlstate: '22012', rowsDigest: undefined }, 'done 17: division by zero, no rows');
  tt.same(d(19), { of: 'E', rows: 0, status: 'skipped', sqlstate: null, rowsDigest: undefined }, 'done 19: skipped');
  tt.same(d(21), { of: 'Q', rows: 1, status: 'ok', sqlstate: null, rowsDigest: digests['q21'] }, 'done 21: the Q');
  tt.ok(digests['e9'] !== digests['e11'], 'the digests differ with the rows');
  tt.same(replayView(lines[lines.length - 1]!), { user: USER, db: 'postgres', type: 'end', reason: 'terminate' }, 'end: terminate');
}

t.test('a raw-wire session: every message a line, in order, with what a replay needs', async (tt) => {
  const p = await launch(REPLAY);
  await sleep(1500); // the proxy is older than the session: a done line's ms must not be its age
  const t0 = performance.now();
  const digests = await script(p.port);
  const elapsed = performance.now() - t0;
  const lines = await settled(p, EXPECTED_TYPES.length);
  checkScript(tt, lines, digests, pg().port);
  const slow = lines.filter((l) => l.type === 'done' && !((l['ms'] as number) >= 0 && (l['ms'] as number) <= elapsed));
  tt.same(slow, [], `every done line's ms within the session's ${Math.round(elapsed)} ms (it was the process's age when forward() passed -1 for now)`);
  tt.notOk('system' in lines[0]!, 'no system identifier without catalog-user');
  await stopProxy(p);
});

t.test('the same session with the cache on logs the same lines', async (tt) => {
  const plain = await launch(REPLAY);
  const d1 = await script(plain.port);
  const l1 = await settled(plain, EXPECTED_TYPES.length);
  await stopProxy(plain);
  const cached = await launch([...REPLAY, '--cache', '--singleflight', '--cache-ttl', '3600000', ...cacheArgs(0)]);
  const d2 = await script(cached.port);
  const l2 = await settled(cached, EXPECTED_TYPES.length);
  checkScript(tt, l2, d2, pg().port);
  // The start lines differ in "system" (the cache's catalog-user reads it); the rest is the same.
  const strip = (ls: Line[]) => ls.map((l) => (l.type === 'start' ? { ...replayView(l), system: undefined } : replayView(l)));
  tt.same(strip(l2), strip(l1), 'the same lines, field by field, but cache, flight and timing');
  tt.same(d2, d1, 'the same answers');
  // Again on the same proxy: the Q is answered from the cache now, its done line digests the stored answer.
  const d3 = await script(cached.port);
  const all = await settled(cached, 2 * EXPECTED_TYPES.length);
  const second = all.filter((l) => l.conn !== l2[0]!.conn);
  checkScript(tt, second, d3, pg().port);
  tt.equal(second.find((l) => l.type === 'Q')!['cache'], 'hit', 'the second Q came from the cache');
  tt.equal(second.find((l) => l.type === 'done' && l['seq'] === 21)!['rowsDigest'], d1['q21'], 'a cache hit has the rows digest of the rows it answered');
  tt.same(strip(second), strip(l1), 'and the same lines');
  await stopProxy(cached);
});

t.test('pgbench -M prepared -C: every session whole, start first, seq contiguous, end last', async (t0) => {
  const init = await run('pgbench', ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(pg().port), '-U', USER, 'postgres']);
  t0.equal(init.code, 0, init.stderr);
  // One process, and --processes 2 (each serving process formats its lines, the primary writes them).
  for (const extra of [[], ['--processes', '2']]) await t0.test(extra.length === 0 ? 'one process' : extra.join(' '), (tt) => pgbenchSessions(tt, extra));
});

async function pgbenchSessions(tt: Pick<typeof t, 'equal' | 'ok' | 'same'>, extra: string[]): Promise<void> {
  const p = await launch([...REPLAY, ...extra]);
  const r = await run('pgbench', ['-n', '-C', '-c', '4', '-t', '25', '-M', 'prepared', '-S', '-h', '127.0.0.1', '-p', String(p.port), '-U', USER, 'postgres']);
  tt.equal(r.code, 0, r.stderr);
  await stopProxy(p); // every session's end line is out
  const lines = p.logLines().map((l) => JSON.parse(l) as Line);
  const sessions = new Map<number, Line[]>();
  for (const l of lines) {
    let s = sessions.get(l.conn);
    if (s === undefined) sessions.set(l.conn, (s = []));
    s.push(l);
  }
  // pgbench -C: one session per transaction (100), plus its own first connection(s).
  tt.ok(sessions.size >= 100, `${sessions.size} sessions`);
  const bad: string[] = [];
  for (const [conn, ls] of sessions) {
    const types = ls.map((l) => l.type);
    if (types[0] !== 'start' || types.lastIndexOf('start') !== 0) bad.push(`${conn}: start is not first and once`);
    if (types[types.length - 1] !== 'end' || types.indexOf('end') !== types.length - 1) bad.push(`${conn}: end is not last and once`);
    const seqs = ls.filter((l) => l.type !== 'start' && l.type !== 'end' && l.type !== 'done').map((l) => l['seq']);
    if (seqs.some((s, i) => s !== i + 1)) bad.push(`${conn}: seq ${seqs.join(',')}`);
    const end = ls[ls.length - 1]!;
    if (end['reason'] !== 'terminate') bad.push(`${conn}: end reason ${String(end['reason'])}`);
    if (ls[0]!['startup'] === undefined || (ls[0]!['startup'] as Record<string, string>)['application_name'] !== 'pgbench') bad.push(`${conn}: startup ${JSON.stringify(ls[0]!['startup'])}`);
  }
  tt.same(bad, [], 'every session: start first, seq 1..n, end last with terminate');
  const types = new Set(lines.map((l) => l.type));
  for (const ty of ['P', 'B', 'E', 'S', 'done']) tt.ok(types.has(ty), `pgbench's sessions have ${ty} lines`);
}

t.test('end reasons: client (hung up), server (pg_terminate_backend), proxy (shutdown)', async (tt) => {
  const p = await launch(REPLAY);
  const hangUp = await fx.sessionWithKey(p.port);
  await hangUp.c.query('select 1');
  hangUp.c.sock.destroy();
  const killed = await fx.sessionWithKey(p.port);
  await killed.c.query('select 2');
  const admin = await connect(pg().port);
  await admin.startup(USER);
  await admin.query(`select pg_terminate_backend(${killed.pid})`);
  await killed.c.waitClosed(5000);
  const idle = await fx.sessionWithKey(p.port);
  await idle.c.query('select 3');
  await settled(p, 3 * 4 - 1); // two sessions whole, the third without its end
  await stopProxy(p);
  const lines = p.logLines().map((l) => JSON.parse(l) as Line);
  const endOf = (sql: string) => {
    const conn = lines.find((l) => l.type === 'Q' && l['sql'] === sql)!.conn;
    return lines.filter((l) => l.conn === conn).map((l) => l.type === 'end' ? `end ${String(l['reason'])}` : l.type);
  };
  tt.same(endOf('select 1'), ['start', 'Q', 'done', 'end client'], 'the client hung up without Terminate');
  tt.same(endOf('select 2'), ['start', 'Q', 'done', 'end server'], 'the server terminated it (FATAL 57P01)');
  tt.same(endOf('select 3'), ['start', 'Q', 'done', 'end proxy'], 'pgscribe shut down');
});

t.test('with catalog-user: the start line carries the cluster system identifier', async (tt) => {
  const c0 = await connect(pg().port);
  await c0.startup(USER);
  const want = await c0.query('SELECT system_identifier FROM pg_control_system()');
  const sysid = want.find((m) => m.type === 'D')!;
  // One column: count (2), length (4), text.
  const expected = sysid.body.subarray(6).toString('utf8');
  c0.write(enc.terminate());
  tt.match(expected, /^\d+$/);
  const p = await launch([...REPLAY, ...CATALOG_ARGS]);
  // It is read in the background: sessions before it is known go without it.
  let start: Line | undefined;
  for (let i = 0; i < 50 && start?.['system'] === undefined; i++) {
    const c = await connect(p.port);
    await c.startup(USER);
    c.write(enc.terminate());
    await c.waitClosed(5000);
    const lines = await settled(p, 1);
    start = lines.filter((l) => l.type === 'start').pop();
    if (start?.['system'] === undefined) await sleep(100);
  }
  tt.equal(start?.['system'], expected, 'system equals pg_control_system() of the cluster');
  await stopProxy(p);
});

t.test('--check: log-replay needs log-format json and refuses log-sample rules with sql', async (tt) => {
  const r1 = await run('node', ['dist/main.js', '--check', '--log-replay', '--log', 'none']);
  tt.equal(r1.code, 1);
  tt.match(r1.stderr, /log-replay/);
  tt.match(r1.stderr, /log-format json/);
  const r2 = await run('node', ['dist/main.js', '--check', '--log-replay', '--log', 'none', '--log-format', 'json', '--log-sample', 'sql=^select,rate=0.5']);
  tt.equal(r2.code, 1);
  tt.match(r2.stderr, /log-sample/);
  const r3 = await run('node', ['dist/main.js', '--check', '--log-replay', '--log', 'none', '--log-format', 'json', '--log-sample', 'application_name=x,rate=0.5']);
  tt.equal(r3.code, 0, r3.stderr);
  const eff = JSON.parse(r3.stdout) as Record<string, unknown>;
  tt.equal(eff['log-replay'], true);
  tt.equal(eff['log-completions'], true, 'log-completions turned on');
});
