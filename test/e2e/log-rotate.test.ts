// Rotation by size of the query log (issue 19) with the real proxy and pgbench: with a small
// log-rotate-bytes the log rotates dozens of times under load, and the lines in the current file
// plus every rotated file equal the lines pgscribe counted, exactly; each file holds whole lines
// of the documented shape (the stress run's scanner reads them) and stays within the limit.
// Once with one process (a SIGHUP reopen mixed in), once with --processes 3 (the primary is the
// only writer of the file: processes/log-funnel.ts).
import t, { type Test as Tap } from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PG_BIN, startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { run } from '../harness/run';
import { sleep } from '../harness/time';
import { startProxy, type Proxy } from '../harness/proxy';
import { QueryLogScanner } from '../../bench/lib/stress-log-scan';

const USER = USERS.trust.user;
const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';
const LIMIT = 64 * 1024;
/** Large enough that no rotated file is deleted in these runs. */
const KEEP = 1000;

let pg: PgCluster;

t.before(async () => {
  pg = await startCluster();
  await run(PGBENCH, ['-i', '-s', '1', '-q'], { env: pg.env(), timeoutMs: 60_000 });
  await pg.psql(`grant select, update, insert on all tables in schema public to ${USER}`);
});
t.teardown(async () => {
  await pg?.stop();
});

interface Scanned {
  files: number;
  lines: number;
  malformed: string[];
  /** Files whose last bytes are not a whole line. */
  split: string[];
  /** Files over the limit holding more than one line. */
  over: string[];
}

/** The rotated files oldest first (.N .. .1), then the current one, each read by the stress scanner. */
function scanAll(file: string): Scanned {
  const base = path.basename(file);
  const nums = fs
    .readdirSync(path.dirname(file))
    .filter((f) => f.startsWith(base + '.') && /^\d+$/.test(f.slice(base.length + 1)))
    .map((f) => Number(f.slice(base.length + 1)))
    .sort((a, b) => b - a);
  const out: Scanned = { files: 0, lines: 0, malformed: [], split: [], over: [] };
  for (const f of [...nums.map((n) => `${file}.${n}`), file]) {
    const s = new QueryLogScanner(f);
    s.scan();
    const size = fs.statSync(f).size;
    out.files++;
    out.lines += s.lines;
    out.malformed.push(...s.malformedExamples);
    if (s.offset !== size) out.split.push(`${path.basename(f)}: ${size - s.offset} bytes after its last newline`);
    if (size > LIMIT && s.lines > 1) out.over.push(`${path.basename(f)}: ${size} bytes, ${s.lines} lines`);
  }
  return out;
}

async function pgbench(p: Proxy): Promise<void> {
  const r = await run(PGBENCH, ['-n', '-c', '6', '-j', '2', '-t', '400', '-M', 'prepared'], { env: { ...pg.env(USER), PGHOST: p.host, PGPORT: String(p.port) }, timeoutMs: 120_000 });
  if (r.code !== 0 || !/number of failed transactions: 0 /.test(r.stdout)) throw new Error(`pgbench failed: ${r.stdout}\n${r.stderr}`);
}

function check(t: Tap, s: Scanned, counted: number, what: string): void {
  t.ok(s.files - 1 >= 10, `${s.files - 1} rotations (at least 10)`);
  t.equal(s.lines, counted, `lines in all ${s.files} files = ${what} (${counted})`);
  t.same(s.malformed, [], 'every line has the documented shape');
  t.same(s.split, [], 'every file ends with a whole line');
  t.same(s.over, [], `no file over ${LIMIT} bytes`);
}

t.test('one process: pgbench with log-rotate-bytes 64 KiB, a SIGHUP reopen mixed in', async (t) => {
  const p = await startProxy({ upstreamPort: pg.port, args: ['--log-rotate-bytes', String(LIMIT), '--log-rotate-keep', String(KEEP)] });
  t.teardown(() => (p.alive ? p.stop('SIGKILL').then(() => undefined) : undefined));
  const bench = pgbench(p);
  await sleep(500);
  // SIGHUP without a rename (reopen of the same file): the size counter goes on from fstat.
  p.proc.kill('SIGHUP');
  await p.waitStderr(/INFO SIGHUP: reopening the query log/);
  await bench;
  const stats = await p.stats();
  t.same(await p.stop('SIGTERM'), { code: 0, signal: null }, 'clean shutdown');
  const shutdown = Number(/shutdown complete query_log_lines=(\d+)/.exec(p.stderr())?.[1]);
  t.equal(shutdown, stats.log_lines, 'the stats line and the shutdown line agree');
  check(t, scanAll(p.logPath), shutdown, 'log_lines');
  t.notMatch(p.stderr(), /\bERROR\b|rotation by size failed/, 'no problem reported');
});

t.test('--processes 3: the primary rotates the one file', async (t) => {
  const p = await startProxy({ upstreamPort: pg.port, args: ['--processes', '3', '--log-rotate-bytes', String(LIMIT), '--log-rotate-keep', String(KEEP)] });
  t.teardown(() => (p.alive ? p.stop('SIGKILL').then(() => undefined) : undefined));
  await pgbench(p);
  t.same(await p.stop('SIGTERM'), { code: 0, signal: null }, 'clean shutdown');
  const m = /shutdown complete query_log_lines=(\d+) query_log_lines_written=(\d+)/.exec(p.stderr());
  t.ok(m, 'the primary reports both counts');
  t.equal(Number(m?.[1]), Number(m?.[2]), "the processes' counts, summed, equal what the primary wrote");
  check(t, scanAll(p.logPath), Number(m?.[2]), 'query_log_lines_written');
  t.notMatch(p.stderr(), /\bERROR\b|rotation by size failed/, 'no problem reported');
});

t.test('sampling and drop mode across rotations: lines in all files = counted; counted + sampled out + dropped = every line offered', async (t) => {
  // pgbench -C: a session per transaction, so that sampling (decided per session) has many to
  // decide; a 4 KiB buffer in drop mode, so that a writer busy rotating drops lines rather than
  // pausing anyone.
  const p = await startProxy({
    upstreamPort: pg.port,
    args: ['--log-rotate-bytes', String(LIMIT), '--log-rotate-keep', String(KEEP), '--log-completions', '--log-sample', 'rate=0.5', '--log-overflow', 'drop', '--log-buffer-bytes', '4096'],
  });
  t.teardown(() => (p.alive ? p.stop('SIGKILL').then(() => undefined) : undefined));
  const r = await run(PGBENCH, ['-n', '-C', '-c', '6', '-j', '2', '-t', '150', '-M', 'prepared'], { env: { ...pg.env(USER), PGHOST: p.host, PGPORT: String(p.port) }, timeoutMs: 120_000 });
  t.match(r.stdout, /number of failed transactions: 0 /, 'pgbench -C: no failed transaction');
  const stats = await p.stats();
  t.same(await p.stop('SIGTERM'), { code: 0, signal: null }, 'clean shutdown');
  const n = (k: string) => Number(stats[k] ?? NaN);
  const offered = n('messages_q') + n('messages_p') + n('messages_b') + n('messages_e') + n('messages_q') + n('messages_e');
  t.comment(`offered ${offered}: written ${n('log_lines')}, sampled out ${n('log_sampled_out')}, dropped ${n('log_dropped')}`);
  t.ok(n('log_sampled_out') > 0, 'sampling left lines out');
  t.equal(n('log_lines') + n('log_sampled_out') + n('log_dropped'), offered, 'written + sampled out + dropped = the Q/P/B/E messages and their done lines');
  check(t, scanAll(p.logPath), n('log_lines'), 'log_lines');
});

t.test('a rotation that fails: said once on stderr, in words; every line stays in the current file', async (t) => {
  const dir = fs.mkdtempSync(path.join(fs.realpathSync(os.tmpdir()), 'pgscribe-rotate-e2e-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'queries.log');
  // queries.log.1 is a directory that is not empty: the rename onto it fails (as root too, unlike a read-only directory).
  fs.mkdirSync(`${file}.1`);
  fs.writeFileSync(path.join(`${file}.1`, 'keep'), '');
  const p = await startProxy({ upstreamPort: pg.port, args: ['--log', file, '--log-rotate-bytes', String(LIMIT), '--log-rotate-keep', '1'] });
  t.teardown(() => (p.alive ? p.stop('SIGKILL').then(() => undefined) : undefined));
  await pgbench(p);
  t.same(await p.stop('SIGTERM'), { code: 0, signal: null }, 'clean shutdown');
  const said = p.stderr().match(/ERROR query log: rotation by size failed;[^\n]*/g) ?? [];
  t.equal(said.length, 1, `said once: ${said[0]}`);
  t.match(said[0] ?? '', /No line is lost: lines go on into the current file, which grows past log-rotate-bytes, and rotation is tried again .* context=rotate error=(EISDIR|ENOTEMPTY|EEXIST)/);
  const s = new QueryLogScanner(file);
  s.scan();
  const counted = Number(/shutdown complete query_log_lines=(\d+)/.exec(p.stderr())?.[1]);
  t.equal(s.lines, counted, `all ${counted} lines in queries.log`);
  t.ok(fs.statSync(file).size > LIMIT, 'which grew past the limit');
  t.equal(s.malformed, 0, 'whole lines');
});
