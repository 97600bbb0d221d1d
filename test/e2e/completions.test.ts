// Completion records (--log-completions) through the real proxy in front of a real PostgreSQL:
// every Q and E line must get exactly one `done` line with its seq. The tracker on its own is
// unit/completion-tracker.test.ts.
import t from 'tap';
import { USERS } from '../harness/pg-cluster';
import { run } from '../harness/run';
import { clusterAndProxies } from '../helpers/fixture';
import { type Proxy } from '../harness/proxy';
import { enc, type RawClient } from '../harness/wire';
import { sleep } from '../harness/time';
import { CATALOG_ARGS } from '../helpers/cache';

const USER = USERS.trust.user;

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
  const p = await launch(['--log-completions', '--log-format', 'json', '--cache', ...CATALOG_ARGS]);
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

t.test('a relayed query\'s ms is its own duration, however long the proxy has run', async (tt) => {
  // Without the cache a relayed Q or E once timed itself from the process's clock zero: every
  // done line (and every digest's latency) said how long pgscribe had been up.
  const p = await launch(['--log-completions', '--log-format', 'json']);
  await sleep(3000);
  const c = await session(p.port);
  c.write(enc.query('select pg_sleep(0.2)'));
  await c.readZ(1);
  c.write(Buffer.concat([enc.parse('', 'select 1'), enc.bind('', '', []), enc.execute(), enc.sync()]));
  await c.readZ(1);
  const done = (await settled(p, 6)).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['type'] === 'done');
  tt.equal(done.length, 2);
  const [q, e] = done.map((d) => d['ms'] as number);
  tt.ok(q! >= 190 && q! < 2500, `pg_sleep(0.2) took ${q} ms, not the proxy's uptime`);
  tt.ok(e! >= 0 && e! < 2500, `select 1 took ${e} ms`);
  await stopProxy(p);
});
