// `pgscribe replay` end to end (issue 20): real clients' traffic captured through pgscribe with
// --log-format json --log-replay, then replayed against another PostgreSQL with its own copy of
// the data:
// - pgbench -M prepared (TPC-B, writes) with the log rotated into several files: 0 errors, every
//   digest's statement count equal to the log's, pgbench_history's rows and the balances equal to
//   the captured server's;
// - sysbench oltp_read_write: 0 errors, counts equal;
// - targets that changed: an index dropped (the slowed digests are named), a column renamed (the
//   failing digests and their SQLSTATE are named);
// - safety: the captured server itself is refused, by system identifier and by address, unless
//   --force; --read-only leaves every write out;
// - session filters.
// The wire-level comparison of one extended-protocol session is replay-wire.test.ts.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { MAIN } from '../harness/proxy';
import { run, type RunResult } from '../harness/run';
import { proxyFixture } from '../helpers/fixture';
import { CATALOG_ARGS } from '../helpers/cache';
import { accountsSharedBySessions } from '../helpers/pgbench-accounts';
import type { ReplayReport } from '../../src/replay/report-types';

const USER = USERS.trust.user;
let src: PgCluster;
let dst: PgCluster;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-replay-'));
const fx = proxyFixture({ upstreamPort: () => src.port, user: USER });

t.before(async () => {
  [src, dst] = await Promise.all([startCluster(), startCluster()]);
});
t.teardown(async () => {
  await fx.cleanup();
  await Promise.all([src?.stop(), dst?.stop()]);
  fs.rmSync(dir, { recursive: true, force: true });
});

function psql(pg: PgCluster, db: string, sql: string, user: string = USER): Promise<RunResult> {
  return run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(pg.port), '-U', user, '-d', db, '-Atc', sql]);
}
/** A database the test user owns (it may create tables in it). */
function createDatabase(pg: PgCluster, db: string): Promise<RunResult> {
  return psql(pg, 'postgres', `create database ${db} owner ${USER}`, 'postgres');
}
/** Sessions in the log files (their start lines). */
function sessionsIn(files: string[]): number {
  return files.map((f) => fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.includes('"type":"start"')).length).reduce((a, b) => a + b, 0);
}
async function value(pg: PgCluster, db: string, sql: string): Promise<string> {
  const r = await psql(pg, db, sql);
  if (r.code !== 0) throw new Error(`${sql}: ${r.stderr}`);
  return r.stdout.trim();
}

interface Replayed {
  r: RunResult;
  report: ReplayReport | null;
  html: string;
}
async function replay(logs: string[], args: string[]): Promise<Replayed> {
  const json = path.join(dir, `report-${Math.random().toString(36).slice(2)}.json`);
  const html = json.replace(/\.json$/, '.html');
  const r = await run(process.execPath, [MAIN, 'replay', ...logs, '--json', json, '--report', html, ...args], { timeoutMs: 180_000 });
  const report = fs.existsSync(json) ? (JSON.parse(fs.readFileSync(json, 'utf8')) as ReplayReport) : null;
  return { r, report, html: fs.existsSync(html) ? fs.readFileSync(html, 'utf8') : '' };
}

/** Q and E lines per normalized digest id, counted from the log files by the report's own digests. */
function statementLines(files: string[]): number {
  let n = 0;
  for (const f of files) {
    for (const l of fs.readFileSync(f, 'utf8').split('\n')) {
      if (l === '') continue;
      const o = JSON.parse(l) as { type: string };
      if (o.type === 'done') n++;
    }
  }
  return n;
}

function logFiles(base: string): string[] {
  const d = path.dirname(base);
  const b = path.basename(base);
  const rotated = fs.readdirSync(d).filter((n) => n.startsWith(b + '.') && /^\d+$/.test(n.slice(b.length + 1)));
  return [...rotated.sort((x, y) => Number(y.slice(b.length + 1)) - Number(x.slice(b.length + 1))).map((n) => path.join(d, n)), base];
}

function digestNamed(report: ReplayReport, re: RegExp) {
  return report.digests.find((d) => re.test(d.sql));
}

const TX = 60;
const CLIENTS = 4;
/** pgbench's seed: with it, its clients draw the same accounts on every run, and no two draw the
 * same one, so the order replay runs the sessions in cannot change what a select reads. */
const PGBENCH_SEED = '7';
let pgbenchLog = '';

t.test('pgbench -M prepared, captured and replayed: 0 errors, the same statements and the same data', async (t): Promise<void> => {
  for (const pg of [src, dst]) {
    const init = await run('pgbench', ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(pg.port), '-U', USER, 'postgres']);
    t.equal(init.code, 0, `pgbench -i: ${init.stderr.slice(-300)}`);
  }
  const p = await fx.launch(['--log-format', 'json', '--log-replay', '--log-rotate-bytes', '100000', '--log-rotate-keep', '50', ...CATALOG_ARGS]);
  const bench = await run('pgbench', ['-M', 'prepared', `--random-seed=${PGBENCH_SEED}`, '-c', String(CLIENTS), '-j', '2', '-t', String(TX), '-h', '127.0.0.1', '-p', String(p.port), '-U', USER, 'postgres'], { timeoutMs: 120_000 });
  t.equal(bench.code, 0, `pgbench through pgscribe: ${bench.stderr.slice(-300)}`);
  await fx.stopProxy(p);
  pgbenchLog = p.logPath;
  const files = logFiles(p.logPath);
  t.ok(files.length >= 3, `the log was rotated into ${files.length} files`);
  const logged = statementLines(files);
  t.ok(logged >= CLIENTS * TX * 7, `${logged} statements with done lines`);
  // --sessions-in-order runs the clients one after the other: a select of an account that two
  // clients updated could read a different balance, a true change (see pgbench-accounts.ts).
  t.same(accountsSharedBySessions(files), [], `with --random-seed=${PGBENCH_SEED}, no account is updated by two clients`);

  const { r, report, html } = await replay([p.logPath], ['--target', `127.0.0.1:${dst.port}`, '--speed', 'max', '--sessions-in-order']);
  t.equal(r.code, 0, `replay exits 0: ${r.stderr.slice(-500)}`);
  t.ok(report !== null, 'a JSON report');
  if (report === null) return;
  t.same(report.logs, files, 'every rotated file, oldest first');
  t.equal(report.statements.errors, 0, 'no statement failed on the target');
  t.equal(report.statements.changed, 0, 'no outcome changed');
  t.equal(report.sessions.replayed, sessionsIn(files), `every session (pgbench's ${CLIENTS} clients and its vacuum)`);
  t.equal(report.sessions.failed, 0);
  t.equal(report.statements.replayed, logged, 'every statement of the log replayed');
  t.same(report.digests.filter((d) => d.original !== d.replayed).map((d) => d.sql), [], 'per digest, replayed = original');
  t.same(Object.keys(report.statements.notReplayable), [], 'nothing left out');
  t.equal(await value(dst, 'postgres', 'select count(*) from pgbench_history'), String(CLIENTS * TX), 'pgbench_history has the captured run\'s rows');
  const sums = 'select (select sum(abalance) from pgbench_accounts) || \'/\' || (select sum(bbalance) from pgbench_branches) || \'/\' || (select sum(tbalance) from pgbench_tellers)';
  t.equal(await value(dst, 'postgres', sums), await value(src, 'postgres', sums), 'the balances add up as on the captured server');
  t.match(r.stdout, /pgbench_accounts/, 'the text report on stdout names the digests');
  t.match(r.stderr, /^replay \d+s: sessions/m, 'a progress line on stderr');
  t.match(html, /<svg/, 'the HTML report has its charts');
});

t.test('the captured server is refused unless forced; --read-only runs reads only', async (t): Promise<void> => {
  if (pgbenchLog === '') {
    t.fail('needs the pgbench capture');
    return;
  }
  const files = logFiles(pgbenchLog);
  const system = await value(src, 'postgres', 'select system_identifier from pg_control_system()');
  const first = fs.readFileSync(files[0]!, 'utf8');
  t.match(first, new RegExp(`"system":"${system}"`), 'start lines carry the captured server\'s system identifier');
  const before = await value(src, 'postgres', 'select count(*) from pgbench_history');

  const refused = await replay([pgbenchLog], ['--target', `127.0.0.1:${src.port}`, '--speed', 'max']);
  t.equal(refused.r.code, 1, 'refused');
  t.match(refused.r.stderr, new RegExp(`refused: the target's system identifier ${system}`), 'by its system identifier');
  t.equal(await value(src, 'postgres', 'select count(*) from pgbench_history'), before, 'nothing ran there');

  // The same log without system identifiers (a capture without a login): the address tells.
  const stripped = path.join(dir, 'stripped.log');
  fs.writeFileSync(stripped, files.map((f) => fs.readFileSync(f, 'utf8')).join('').replace(/,"system":"\d+"/g, ''));
  const byAddress = await replay([stripped], ['--target', `localhost:${src.port}`, '--speed', 'max']);
  t.equal(byAddress.r.code, 1, 'refused');
  t.match(byAddress.r.stderr, new RegExp(`refused: the target is 127\\.0\\.0\\.1:${src.port}, the server the log was captured from`), 'by its address, localhost or not');

  const forced = await replay([pgbenchLog], ['--target', `127.0.0.1:${src.port}`, '--speed', 'max', '--force', '--read-only']);
  t.equal(forced.r.code, 0, `--force runs: ${forced.r.stderr.slice(-300)}`);
  t.equal(forced.report?.statements.errors, 0);
  t.ok((forced.report?.statements.skippedWrites ?? 0) >= CLIENTS * TX * 3, `--read-only left the writes out (${forced.report?.statements.skippedWrites})`);
  t.ok((forced.report?.statements.replayed ?? 0) >= CLIENTS * TX, 'and ran the reads');
  t.equal(await value(src, 'postgres', 'select count(*) from pgbench_history'), before, 'no write reached the server');
});

t.test('a target that changed: a dropped index slows its digests, a renamed column fails its own', async (t): Promise<void> => {
  if (pgbenchLog === '') {
    t.fail('needs the pgbench capture');
    return;
  }
  for (const db of ['noindex', 'renamed']) {
    t.equal((await createDatabase(dst, db)).code, 0);
    t.equal((await run('pgbench', ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(dst.port), '-U', USER, db])).code, 0);
  }
  await value(dst, 'noindex', 'alter table pgbench_accounts drop constraint pgbench_accounts_pkey; select 1');
  await value(dst, 'renamed', 'alter table pgbench_accounts rename column abalance to balance; select 1');

  const slow = await replay([pgbenchLog], ['--target', `127.0.0.1:${dst.port}`, '--speed', 'max', '--map-database', 'postgres=noindex']);
  t.equal(slow.r.code, 0, slow.r.stderr.slice(-300));
  const select = digestNamed(slow.report!, /^select abalance from pgbench_accounts where aid = \$1/i);
  const update = digestNamed(slow.report!, /^update pgbench_accounts set abalance/i);
  t.equal(select?.regression, true, `the account lookup is a regression (p50 ${select?.before?.p50} -> ${select?.after?.p50} ms)`);
  t.equal(update?.regression, true, `the account update too (p50 ${update?.before?.p50} -> ${update?.after?.p50} ms)`);
  t.notOk(digestNamed(slow.report!, /^insert into pgbench_history/i)?.changes.length, 'the history insert did not change');
  t.match(slow.r.stdout, new RegExp(`${select?.id}.*select abalance`, 'i'), 'the text report names it');
  t.equal(slow.report!.statements.errors, 0, 'slower, not failing');

  const broken = await replay([pgbenchLog], ['--target', `127.0.0.1:${dst.port}`, '--speed', 'max', '--map-database', 'postgres=renamed']);
  t.equal(broken.r.code, 0, broken.r.stderr.slice(-300));
  // pgbench -M prepared parses its whole script in one pipeline: the first Parse naming the
  // column fails with 42703 and PostgreSQL skips the Parses after it up to the Sync, so those
  // statements then fail to execute with 26000, as the real pgbench would see them.
  const parseFailed = broken.report!.digests.filter((d) => d.changes.some((c) => c.before === 'parsed' && c.after === 'parse error 42703'));
  t.same(parseFailed.map((d) => d.sql.slice(0, 30).toLowerCase()), ['update pgbench_accounts set ab'], 'the Parse naming the column fails with 42703');
  t.equal(parseFailed[0]?.changes.find((c) => c.after === 'parse error 42703')?.message, 'column "abalance" does not exist', 'with the server\'s message');
  const failing = broken.report!.digests.filter((d) => d.changes.some((c) => c.before === 'ok' && c.after === 'error 26000'));
  t.same(failing.map((d) => d.sql.slice(0, 30).toLowerCase()).sort(), [
    'insert into pgbench_history (t',
    'select abalance from pgbench_a',
    'update pgbench_accounts set ab',
    'update pgbench_branches set bb',
    'update pgbench_tellers set tba',
  ], 'the statements parsed after it never exist: 26000 at each Execute');
  t.ok(broken.report!.statements.errors > 0);
  t.match(broken.r.stdout, /42703/, 'the text report gives the SQLSTATE');
  t.match(broken.html, /42703/, 'so does the page');
});

t.test('sysbench oltp_read_write, captured and replayed: 0 errors, the same statements', async (t): Promise<void> => {
  const sysbench = await run('sh', ['-c', 'command -v sysbench']);
  if (sysbench.code !== 0) {
    t.fail('sysbench is not installed (.ci/run installs it)');
    return;
  }
  t.equal((await createDatabase(src, 'sbtest')).code, 0);
  t.equal((await createDatabase(dst, 'sbtest')).code, 0);
  const common = ['oltp_read_write', '--db-driver=pgsql', '--pgsql-host=127.0.0.1', `--pgsql-user=${USER}`, '--pgsql-db=sbtest', '--tables=2', '--table-size=1000'];
  const prep = await run('sysbench', [...common, `--pgsql-port=${src.port}`, 'prepare'], { timeoutMs: 120_000 });
  t.equal(prep.code, 0, `sysbench prepare: ${prep.stderr.slice(-300)}`);
  // The target gets a copy of the data as it was before the run.
  const copy = await run('sh', ['-c', `pg_dump -h 127.0.0.1 -p ${src.port} -U ${USER} sbtest | psql -X -q -h 127.0.0.1 -p ${dst.port} -U ${USER} -d sbtest`]);
  t.equal(copy.code, 0, `copy: ${copy.stderr.slice(-300)}`);
  const p = await fx.launch(['--log-format', 'json', '--log-replay']);
  const r = await run('sysbench', [...common, `--pgsql-port=${p.port}`, '--threads=2', '--events=150', '--time=0', 'run'], { timeoutMs: 120_000 });
  t.equal(r.code, 0, `sysbench through pgscribe: ${r.stderr.slice(-300)}`);
  await fx.stopProxy(p);
  const logged = statementLines([p.logPath]);

  const { r: rr, report } = await replay([p.logPath], ['--target', `127.0.0.1:${dst.port}`, '--speed', 'max', '--sessions-in-order']);
  t.equal(rr.code, 0, rr.stderr.slice(-500));
  t.equal(report?.statements.errors, 0, 'no statement failed on the target');
  t.equal(report?.statements.replayed, logged, `every statement (${logged})`);
  t.same(report?.digests.filter((d) => d.original !== d.replayed).map((d) => d.sql), [], 'per digest, replayed = original');
  // The data need not end equal: two sysbench threads touched the same rows concurrently at
  // capture (an UPDATE k = k + 1 racing a DELETE and re-INSERT of the row), and one after the
  // other at replay. pgbench above, whose writes commute, checks the data.
  t.equal(await value(dst, 'sbtest', 'select count(*) from sbtest1'), await value(src, 'sbtest', 'select count(*) from sbtest1'), 'sbtest1 has as many rows as on the captured server');
});

t.test('--sessions and the time window choose sessions', async (t): Promise<void> => {
  if (pgbenchLog === '') {
    t.fail('needs the pgbench capture');
    return;
  }
  const none = await replay([pgbenchLog], ['--target', `127.0.0.1:${dst.port}`, '--speed', 'max', '--read-only', '--sessions', 'application=^nothing$']);
  t.equal(none.report?.sessions.total, 0, 'no session matches');
  const some = await replay([pgbenchLog], ['--target', `127.0.0.1:${dst.port}`, '--speed', 'max', '--read-only', '--sessions', `application=^pgbench$,user=^${USER}$`]);
  t.equal(some.report?.sessions.total, sessionsIn(logFiles(pgbenchLog)), 'pgbench\'s sessions');
  const later = await replay([pgbenchLog], ['--target', `127.0.0.1:${dst.port}`, '--speed', 'max', '--read-only', '--from', new Date(Date.now() + 3600_000).toISOString()]);
  t.equal(later.report?.sessions.total, 0, 'none started in a window in the future');
  const bad = await replay([pgbenchLog], ['--target', 'nowhere', '--speed', 'max']);
  t.equal(bad.r.code, 2, 'a target without a port is a usage error');
});

t.test('--speed keeps the original pauses, scaled', async (t) => {
  const p = await fx.launch(['--log-format', 'json', '--log-replay']);
  const c = await fx.session(p.port);
  await c.query('select 1');
  await new Promise((r) => setTimeout(r, 1500));
  await c.query('select 2');
  c.write(Buffer.from([0x58, 0, 0, 0, 4]));
  await c.waitClosed();
  await fx.stopProxy(p);
  const asLogged = await replay([p.logPath], ['--target', `127.0.0.1:${dst.port}`, '--speed', '1']);
  t.equal(asLogged.report?.statements.replayed, 2);
  t.ok((asLogged.report?.durationMs ?? 0) >= 1400, `--speed 1 waits the 1.5 s pause (${asLogged.report?.durationMs} ms)`);
  const faster = await replay([p.logPath], ['--target', `127.0.0.1:${dst.port}`, '--speed', '3']);
  t.ok((faster.report?.durationMs ?? 0) >= 450, `--speed 3 waits a third of it (${faster.report?.durationMs} ms)`);
  t.equal(faster.report?.statements.changed, 0);
});
