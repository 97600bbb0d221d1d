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
