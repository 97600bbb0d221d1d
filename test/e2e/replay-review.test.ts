// Adversarial review of `pgscribe replay`: sessions captured through pgscribe with
// --log-format json --log-replay (or hand-written logs for what a proxy restart leaves), replayed
// against a second cluster with the same data. Each test names the defect it guards.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { MAIN } from '../harness/proxy';
import { run, type RunResult } from '../harness/run';
import { enc } from '../harness/wire';
import { proxyFixture } from '../helpers/fixture';
import { accountsSharedBySessions } from '../helpers/pgbench-accounts';
import type { ReplayReport } from '../../src/replay/report-types';

const USER = USERS.trust.user;
let src: PgCluster;
let dst: PgCluster;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-replay-review-'));
const fx = proxyFixture({ upstreamPort: () => src.port, user: USER });

t.before(async () => {
  [src, dst] = await Promise.all([startCluster(), startCluster()]);
  const setup =
    'create table cp(id int, v text); ' +
    'create table w(id int primary key, v text); insert into w select g, \'v\' || g from generate_series(1, 20) g; ' +
    'create table par(id int primary key); create table chi(id int, pid int references par(id) deferrable initially deferred)';
  for (const pg of [src, dst]) {
    const r = await run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(pg.port), '-U', USER, '-d', 'postgres', '-c', setup]);
    if (r.code !== 0) throw new Error(r.stderr);
  }
});
t.teardown(async () => {
  await fx.cleanup();
  await Promise.all([src?.stop(), dst?.stop()]);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function replay(logs: string[], args: string[] = [], timeoutMs = 30_000): Promise<{ r: RunResult; report: ReplayReport | null }> {
  const json = path.join(dir, `report-${Math.random().toString(36).slice(2)}.json`);
  const r = await run(process.execPath, [MAIN, 'replay', ...logs, '--target', `127.0.0.1:${dst.port}`, '--speed', 'max', '--quiet', '--json', json, ...args], { timeoutMs });
  const report = fs.existsSync(json) ? (JSON.parse(fs.readFileSync(json, 'utf8')) as ReplayReport) : null;
  return { r, report };
}

t.test('COPY FROM STDIN in the extended protocol: replay answers with CopyFail and does not hang', async (t) => {
  // The client sends P/B/E/Flush, waits for CopyInResponse, sends its data, CopyDone and Sync.
  // In the log: P B E H S done. Replay sends P B E H S in one write; PostgreSQL ignores a Sync
  // received in copy-in mode, so after the CopyFail it discards until a Sync that never comes.
  const p = await fx.launch(['--log-format', 'json', '--log-replay']);
  const c = await fx.session(p.port);
  c.write(Buffer.concat([enc.parse('', 'copy cp from stdin'), enc.bind('', '', []), enc.execute(), enc.flush()]));
  let m = await c.read();
  while (m.type !== 'G') m = await c.read();
  c.write(Buffer.concat([enc.copyData('1\ta\n'), enc.copyDone(), enc.sync()]));
  await c.readZ(1);
  c.write(enc.query('select 1')); // not cp's count: the COPY data is not replayed
  await c.readZ(1);
  c.write(enc.terminate());
  await c.waitClosed();
  await fx.stopProxy(p);
  const { r, report } = await replay([p.logPath]);
  t.equal(r.code, 0, `replay ends (code ${r.code}, signal ${String(r.signal)}): ${r.stderr}`);
  t.equal(report?.statements.changed, 0, 'nothing changed');
  t.equal(report?.statements.notReplayable['COPY FROM STDIN (its data is not logged)'], 1, 'the COPY counted as not replayable');
});

function line(o: Record<string, unknown>): string {
  return JSON.stringify({ ts: o['ts'] ?? new Date().toISOString(), conn: o['conn'], user: USER, db: 'postgres', client: '127.0.0.1:1', ...o }) + '\n';
}

t.test('conn ids reused after a proxy restart (the first proxy died without end lines): replay ends', async (t) => {
  const up = `127.0.0.1:${src.port}`;
  const log = path.join(dir, 'restart.log');
  fs.writeFileSync(
    log,
    // The first proxy: session 1 ran a query, then the proxy was killed (no end line).
    line({ conn: 1, type: 'start', startup: {}, protocol: '3.0', upstream: up }) +
      line({ conn: 1, type: 'Q', seq: 1, sql: 'select 1' }) +
      line({ conn: 1, type: 'done', seq: 1, of: 'Q', ms: 0.1, rows: 1, status: 'ok', sqlstate: null }) +
      // The restarted proxy counts from 1 again.
      line({ conn: 1, type: 'start', startup: {}, protocol: '3.0', upstream: up }) +
      line({ conn: 1, type: 'Q', seq: 1, sql: 'select 2' }) +
      line({ conn: 1, type: 'done', seq: 1, of: 'Q', ms: 0.1, rows: 1, status: 'ok', sqlstate: null }) +
      line({ conn: 1, type: 'end', reason: 'terminate' }),
  );
  const { r, report } = await replay([log], [], 15_000);
  t.equal(r.code, 0, `replay ends (code ${r.code}, signal ${String(r.signal)}): ${r.stderr}`);
  t.equal(report?.sessions.total, 2);
  t.equal(report?.sessions.replayed, 2, 'both sessions replayed');
  t.equal(report?.statements.replayed, 2, 'both statements replayed');
});

t.test('lines of two proxies interleaved with the same conn ids: replay ends', async (t) => {
  const up = `127.0.0.1:${src.port}`;
  const log = path.join(dir, 'interleaved.log');
  fs.writeFileSync(
    log,
    line({ conn: 1, type: 'start', startup: {}, protocol: '3.0', upstream: up }) +
      line({ conn: 1, type: 'Q', seq: 1, sql: 'select 1' }) +
      line({ conn: 1, type: 'start', startup: {}, protocol: '3.0', upstream: up }) +
      line({ conn: 1, type: 'Q', seq: 1, sql: 'select 2' }) +
      line({ conn: 1, type: 'done', seq: 1, of: 'Q', ms: 0.1, rows: 1, status: 'ok', sqlstate: null }) +
      line({ conn: 1, type: 'done', seq: 1, of: 'Q', ms: 0.1, rows: 1, status: 'ok', sqlstate: null }) +
      line({ conn: 1, type: 'end', reason: 'terminate' }) +
      line({ conn: 1, type: 'end', reason: 'terminate' }),
  );
  const { r, report } = await replay([log], [], 15_000);
  t.equal(r.code, 0, `replay ends (code ${r.code}, signal ${String(r.signal)}): ${r.stderr}`);
  t.equal(report?.sessions.total, 2);
});

t.test('odd but valid shapes replay with no change', async (t) => {
  const p = await fx.launch(['--log-format', 'json', '--log-replay']);
  const c = await fx.connect(p.port);
  await c.startup(USER, 'postgres', { application_name: 'review', options: '-c search_path=pg_catalog,public' });
  // Several Syncs in one write.
  c.write(Buffer.concat([
    enc.parse('a', 'select id from w where id <= $1 order by id', [23]), enc.bind('', 'a', ['3']), enc.execute(), enc.sync(),
    enc.bind('', 'a', ['5']), enc.execute(), enc.sync(),
    enc.bind('', 'a', ['2']), enc.execute(), enc.sync(),
  ]));
  await c.readZ(3);
  // Flush-only: the client waits for ParseComplete, then runs without a Sync, then syncs.
  c.write(Buffer.concat([enc.parse('f', 'select v from w where id = $1', [23]), enc.flush()]));
  await c.read();
  c.write(Buffer.concat([enc.bind('', 'f', ['4']), enc.execute(), enc.flush()]));
  for (let m = await c.read(); m.type !== 'C'; m = await c.read());
  c.write(enc.sync());
  await c.readZ(1);
  // A deferred constraint failing at the implicit commit of Sync.
  c.write(Buffer.concat([enc.parse('', 'insert into chi values (1, 999)'), enc.bind('', '', []), enc.execute(), enc.sync()]));
  await c.readZ(1);
  // An error inside an explicit transaction, then ROLLBACK.
  c.write(enc.query('begin'));
  await c.readZ(1);
  c.write(Buffer.concat([enc.parse('', 'select 1/0'), enc.bind('', '', []), enc.execute(), enc.sync()]));
  await c.readZ(1);
  c.write(Buffer.concat([enc.parse('', 'select 1'), enc.bind('', '', []), enc.execute(), enc.sync()]));
  await c.readZ(1);
  c.write(enc.query('rollback'));
  await c.readZ(1);
  // A named portal run with maxRows, a Sync inside the transaction, then run again.
  c.write(enc.query('begin'));
  await c.readZ(1);
  c.write(Buffer.concat([enc.parse('g', 'select generate_series(1, 5) as g'), enc.bind('pg', 'g', []), enc.execute('pg', 2), enc.sync()]));
  await c.readZ(1);
  c.write(Buffer.concat([enc.execute('pg', 2), enc.sync()]));
  await c.readZ(1);
  c.write(Buffer.concat([enc.execute('pg', 0), enc.sync()]));
  await c.readZ(1);
  c.write(enc.query('commit'));
  await c.readZ(1);
  // Simple query: an error in the middle, an empty query, COPY TO STDOUT, the search path.
  c.write(enc.query('select 1; select 1/0; select 2'));
  await c.readZ(1);
  c.write(enc.query(''));
  await c.readZ(1);
  c.write(enc.query('copy (select id, v from w order by id) to stdout'));
  await c.readZ(1);
  c.write(enc.query('select current_setting(\'search_path\')'));
  await c.readZ(1);
  c.write(enc.query('copy cp from stdin'));
  for (let m = await c.read(); m.type !== 'G'; m = await c.read());
  c.write(Buffer.concat([enc.copyData('9\tz\n'), enc.copyDone()]));
  await c.readZ(1);
  // No Terminate: the client hangs up.
  c.sock.destroy();
  await new Promise((r) => setTimeout(r, 300));
  await fx.stopProxy(p);
  const { r, report } = await replay([p.logPath]);
  t.equal(r.code, 0, `replay ends: ${r.stderr}`);
  const changes = (report?.digests ?? []).filter((d) => d.changes.length > 0).map((d) => `${d.sql}: ${JSON.stringify(d.changes)}`);
  t.same(changes, [], 'no outcome changed');
  t.equal(report?.statements.changed, 0);
  t.equal(report?.sessions.replayed, 1);
});

t.test('--read-only: a write left out, its Bind/Execute, then the name parsed again as a read', async (t) => {
  const p = await fx.launch(['--log-format', 'json', '--log-replay']);
  const c = await fx.session(p.port);
  c.write(Buffer.concat([enc.parse('', 'insert into cp values (1, \'x\')'), enc.bind('', '', []), enc.execute(), enc.sync()]));
  await c.readZ(1);
  c.write(Buffer.concat([enc.parse('', 'select count(*) from w'), enc.bind('', '', []), enc.execute(), enc.sync()]));
  await c.readZ(1);
  c.write(Buffer.concat([enc.parse('s', 'delete from cp where id = $1', [23]), enc.bind('ps', 's', ['7']), enc.describe('P', 'ps'), enc.execute('ps'), enc.sync()]));
  await c.readZ(1);
  c.write(Buffer.concat([enc.close('S', 's'), enc.sync()]));
  await c.readZ(1);
  c.write(Buffer.concat([enc.parse('s', 'select v from w where id = $1', [23]), enc.bind('ps', 's', ['7']), enc.describe('P', 'ps'), enc.execute('ps'), enc.sync()]));
  await c.readZ(1);
  c.write(enc.terminate());
  await c.waitClosed();
  await fx.stopProxy(p);
  const { r, report } = await replay([p.logPath], ['--read-only']);
  t.equal(r.code, 0, `replay ends: ${r.stderr}`);
  t.equal(report?.statements.errors, 0, 'no errors');
  t.equal(report?.statements.changed, 0, 'no change');
  t.equal(report?.statements.skippedWrites, 2, 'the two writes left out');
  t.equal(report?.statements.replayed, 2, 'the two reads replayed');
});

t.test('a client that hung up in the middle of a query: replay does not wait it out nor call it a change', async (t) => {
  const p = await fx.launch(['--log-format', 'json', '--log-replay']);
  const c = await fx.session(p.port);
  c.write(enc.query('select pg_sleep(20)'));
  await new Promise((r) => setTimeout(r, 300));
  c.sock.destroy();
  await new Promise((r) => setTimeout(r, 500));
  await fx.stopProxy(p);
  const log = fs.readFileSync(p.logPath, 'utf8');
  t.match(log, /"status":"aborted"/, 'the log has the aborted done line');
  const t0 = Date.now();
  const { r, report } = await replay([p.logPath], [], 60_000);
  t.equal(r.code, 0, `replay ends: ${r.stderr}`);
  t.ok(Date.now() - t0 < 15_000, `replay did not wait out the 20 s query the client left (${Date.now() - t0} ms)`);
  t.equal(report?.statements.changed, 0, 'aborted by the client is not a change of the server\'s behaviour');
});

for (const mode of ['extended', 'simple']) {
  t.test(`pgbench -M ${mode} replays without errors`, async (t) => {
    const db = `bench_${mode}`;
    for (const pg of [src, dst]) {
      let r = await run('psql', ['-X', '-q', '-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', '-d', 'postgres', '-c', `create database ${db} owner ${USER}`]);
      if (r.code !== 0) throw new Error(r.stderr);
      r = await run('pgbench', ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(pg.port), '-U', USER, db]);
      if (r.code !== 0) throw new Error(r.stderr);
    }
    const p = await fx.launch(['--log-format', 'json', '--log-replay']);
    // A fixed seed whose clients update no account in common: replay runs the sessions
    // concurrently, so a select of a shared account could read another balance (a true change).
    const b = await run('pgbench', ['-M', mode, '--random-seed=7', '-c', '3', '-t', '30', '-n', '-h', '127.0.0.1', '-p', String(p.port), '-U', USER, db], { timeoutMs: 120_000 });
    t.equal(b.code, 0, b.stderr);
    await fx.stopProxy(p);
    const { r, report } = await replay([p.logPath], [], 120_000);
    t.equal(r.code, 0, `replay ends: ${r.stderr}`);
    t.equal(report?.statements.errors, 0, 'no errors');
    t.equal(report?.sessions.failed, 0);
    const done = fs.readFileSync(p.logPath, 'utf8').split('\n').filter((l) => l.includes('"type":"done"')).length;
    t.ok(done >= 3 * 30 * 7, `the log has every transaction's statements (${done})`);
    t.same(accountsSharedBySessions([p.logPath]), [], 'with --random-seed=7, no account is updated by two clients');
    t.equal(report?.statements.replayed, done, 'every statement replayed');
    t.equal(report?.statements.changed, 0, 'no change (pgbench_history aside, the data is the same)');
  });
}

t.test('a session with client_encoding LATIN1: replay never sends bytes the client did not send', async (t) => {
  const p = await fx.launch(['--log-format', 'json', '--log-replay']);
  const c = await fx.connect(p.port);
  await c.startup(USER, 'postgres', { client_encoding: 'LATIN1' });
  // 'é' in LATIN1 is the single byte 0xE9 (not valid UTF-8).
  c.write(enc.raw('Q', Buffer.concat([Buffer.from("select '"), Buffer.from([0xe9]), Buffer.from("'::text as v", 'latin1'), Buffer.from([0])])));
  await c.readZ(1);
  c.write(enc.terminate());
  await c.waitClosed();
  await fx.stopProxy(p);
  const { r, report } = await replay([p.logPath]);
  t.equal(r.code, 0, `replay ends: ${r.stderr}`);
  const changes = (report?.digests ?? []).filter((d) => d.changes.length > 0).map((d) => `${d.sql}: ${JSON.stringify(d.changes)}`);
  t.same(changes, [], 'no outcome changed');
  // The log holds U+FFFD where the client sent 0xE9: the statement is left out and counted.
  t.same(report?.statements.notReplayable, { 'text that was not UTF-8 at capture (client_encoding other than UTF8): its bytes are not in the log': 1 }, 'counted as not replayable, with why');
  t.equal(report?.statements.replayed, 0, 'nothing sent in its place');
});
