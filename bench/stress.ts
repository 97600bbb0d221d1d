/**
 * `make stress`: sysbench oltp_read_write and pgbench (tpcb-like, -M prepared) through pgscribe at
 * the same time for DURATION seconds, sampling the proxy every 5 s, then checking that it held up.
 *
 * Steps: start a throwaway PostgreSQL 15 (test/helpers/pg-cluster.ts), create databases `sbtest`
 * and `pgbench`, start dist/main.js in front of it, run `sysbench prepare` and `pgbench -i`
 * through the proxy (COPY, DDL, multi-row INSERTs), wait until the proxy is idle and its log is
 * on disk, reset pg_stat_statements (directly, in database `postgres`), run the load, wait for the
 * proxy to be idle again, compare, shut the proxy down with SIGTERM, write the results.
 *
 * Samples (each of the proxy's `stats` lines, every 5 s): RSS (/proc/PID/status VmRSS), heap
 * used and external (stats line), CPU (utime+stime delta from /proc/PID/stat, % of one core),
 * client sessions (stats line) and open sockets (/proc/PID/fd). Output under logs/:
 * stress-<timestamp>.csv (samples), .svg (chart), .json (summary, checks); a one-screen summary
 * on stdout; exit status 1 when a check fails.
 *
 * Checks:
 *  - proxy alive: the proxy never exits during the run, and exits 0 on SIGTERM afterwards.
 *  - clients: no `pgscribe:` error reaches sysbench or pgbench (prepare and run); sysbench exits 0
 *    without FATAL errors and its "ignored errors" equal the ERRORs PostgreSQL logged in database
 *    sbtest (SQLSTATE 40P01, 40001, 23505, the ones sysbench 1.0.20's pgsql driver ignores:
 *    it rolls back and restarts the transaction; there is no option for the list); pgbench exits 0,
 *    no client aborted, and its failed transactions equal PostgreSQL's 40001/40P01 ERRORs in
 *    database pgbench.
 *  - RSS stable: mean RSS over the last minute within 20% of the mean over the second minute
 *    (RSS "after the first minute", once every connection is open and V8 has warmed up).
 *    DURATION < 120: reported (last third vs first third) but not judged, since such a run is
 *    mostly warm-up; shown as SKIP (the sample taken as
 *    the load starts, before any client connects, is left out of both windows).
 *  - statement count, per database (sbtest, pgbench), over the load only (pg_stat_statements is
 *    reset after prepare; the harness's own queries run directly in database postgres):
 *        sum(calls) == E lines + statements in Q lines - ERRORs PostgreSQL logged
 *                      - E lines re-executing a prepared BEGIN/COMMIT/... (see below)
 *    pg_stat_statements (track = top, track_utility = on) counts one call per statement that
 *    completes: one per Execute (sysbench and pgbench use libpq's PQexecPrepared: one Execute per
 *    Sync, no row limit), one per statement of a simple query (sysbench's ROLLBACK after an
 *    ignored error), never a Parse or Bind. A statement that fails is not counted, and each
 *    failure is one ERROR line in the server log (log_line_prefix carries database and SQLSTATE).
 *    PostgreSQL 15 quirk: pgss_ProcessUtility zeroes the queryId of the utility PlannedStmt it
 *    runs, and a prepared statement's cached plan is reused, so BEGIN/COMMIT sent as named
 *    prepared statements (pgbench -M prepared, sysbench) are counted only on their first
 *    execution after each Parse; the log scanner counts the repeats per connection and statement.
 *    Exact while no error hits a multi-statement Q or a pipelined batch (one ERROR would skip
 *    several statements; multi-statement Q lines are counted and reported), no other utility
 *    statement is re-executed from a prepared statement and no utility statement fails (either
 *    only widens the accepted range, reported when it happens), and pg_stat_statements evicts
 *    nothing (pg_stat_statements_info.dealloc must be 0).
 *  - log lines: lines in the query log == the proxy's own final `log_lines` (stats line and the
 *    `shutdown complete query_log_lines=` line), and every line has the documented shape.
 *
 * Knobs (environment): DURATION (s, default 300), THREADS (sysbench, 64), PGBENCH_CLIENTS (8),
 * TABLES (4), TABLE_SIZE (10000), SCALE (pgbench, 5).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run, startCluster, type PgCluster, type RunResult } from '../test/helpers/pg-cluster';
import { QueryLogScanner, classifySql, type TypeCounts } from './lib/stress-log-scan';
import { renderStackedChart, type Series } from './lib/svg-chart';
import { envInt, repoRoot } from './lib/common';

// ---------------------------------------------------------------------------
// Settings



const ROOT = repoRoot();
const DURATION = envInt('DURATION', 300);
/** Extra pgscribe flags, e.g. PGSCRIBE_ARGS='--cache --singleflight'. */
const PGSCRIBE_ARGS = (process.env['PGSCRIBE_ARGS'] ?? '').split(/\s+/).filter((a) => a !== '');
/** Extra sysbench run options, e.g. SYSBENCH_ARGS='--skip_trx=on' (autocommit: cacheable reads). */
const SYSBENCH_ARGS = (process.env['SYSBENCH_ARGS'] ?? '').split(/\s+/).filter((a) => a !== '');
const THREADS = envInt('THREADS', 64);
const PGBENCH_CLIENTS = envInt('PGBENCH_CLIENTS', 8);
const TABLES = envInt('TABLES', 4);
const TABLE_SIZE = envInt('TABLE_SIZE', 10000);
const SCALE = envInt('SCALE', 5);
const STATS_INTERVAL_MS = 5000;
const SB_DB = 'sbtest';
const PGB_DB = 'pgbench';
/** SQLSTATEs sysbench 1.0.20's pgsql driver treats as ignorable (drv_pgsql.c, pgsql_check_status). */
const SYSBENCH_IGNORED = ['40P01', '40001', '23505'];
/** SQLSTATEs pgbench (PostgreSQL 15) counts as failed transactions instead of aborting the client. */
const PGBENCH_FAILURES = ['40001', '40P01'];
const RSS_TOLERANCE = 0.2;

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

// ---------------------------------------------------------------------------
// Child processes: every long-running child gets its own process group, is killed on exit, and
// is watched by a tiny shell that kills it if this process dies without running exit handlers.

const children = new Set<ChildProcess>();

function killGroup(c: ChildProcess, sig: NodeJS.Signals): void {
  if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return;
  try {
    process.kill(-c.pid, sig);
  } catch {
    try {
      c.kill(sig);
    } catch {
      // gone
    }
  }
}

function track(c: ChildProcess): void {
  children.add(c);
  const dog = spawn(
    '/bin/sh',
    ['-c', 'while kill -0 "$P" 2>/dev/null; do sleep 1; done; kill -9 -"$G" 2>/dev/null; kill -9 "$G" 2>/dev/null'],
    { detached: true, stdio: 'ignore', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', P: String(process.pid), G: String(c.pid) } },
  );
  dog.on('error', () => {});
  dog.unref();
  c.once('exit', () => {
    children.delete(c);
    killGroup(dog, 'SIGKILL');
  });
}

interface Tool {
  name: string;
  child: ChildProcess;
  stdout: string;
  stderr: string;
  done: Promise<RunResult>;
}

/** Start a command in its own process group; `done` resolves when it exits (never rejects). */
function startTool(name: string, cmd: string, args: string[], opts: { timeoutMs: number; onLine?: (line: string) => void }): Tool {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  track(child);
  const tool: Tool = { name, child, stdout: '', stderr: '', done: Promise.resolve({ code: null, signal: null, stdout: '', stderr: '' }) };
  let partial = '';
  const lines = (d: string) => {
    if (!opts.onLine) return;
    partial += d;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      opts.onLine(partial.slice(0, nl));
      partial = partial.slice(nl + 1);
    }
  };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    tool.stdout += d;
    lines(d);
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    tool.stderr += d;
    lines(d);
  });
  tool.done = new Promise((resolve) => {
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), opts.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      tool.stderr += `\ncannot run ${cmd}: ${e.message}\n`;
      resolve({ code: null, signal: null, stdout: tool.stdout, stderr: tool.stderr });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: tool.stdout, stderr: tool.stderr });
    });
  });
  return tool;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// The proxy

type Stats = Record<string, number>;

class ProxyProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  port = 0;
  /** WARN/ERROR lines from its stderr (first 50). */
  readonly problems: string[] = [];
  exit: { code: number | null; signal: string | null; at: number } | null = null;
  /** Set before we send SIGTERM ourselves: an exit after that is expected. */
  stopping = false;
  shutdownLogLines: number | null = null;
  lastStats: Stats | null = null;
  onStats: ((s: Stats, at: number) => void) | null = null;
  private statsWaiters: Array<(s: Stats) => void> = [];
  private partial = '';
  private listening: Promise<number>;

  constructor(pgPort: number, logPath: string, cwd: string) {
    const args = [
      path.join(ROOT, 'dist/main.js'),
      '--listen', '127.0.0.1:0',
      '--upstream', `127.0.0.1:${pgPort}`,
      '--log', logPath,
      '--stats-interval', String(STATS_INTERVAL_MS),
      '--max-connections', '200',
      ...PGSCRIBE_ARGS,
    ];
    this.child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true, cwd });
    track(this.child);
    this.pid = this.child.pid!;
    this.listening = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('proxy did not print "listening" within 15 s')), 15000);
      this.child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        this.partial += d;
        let nl: number;
        while ((nl = this.partial.indexOf('\n')) >= 0) {
          const line = this.partial.slice(0, nl);
          this.partial = this.partial.slice(nl + 1);
          const m = / INFO listening listen=\S+:(\d+)/.exec(line);
          if (m) {
            clearTimeout(timer);
            this.port = Number(m[1]);
            resolve(this.port);
          }
          this.onLine(line);
        }
      });
      this.child.on('exit', (code, signal) => {
        clearTimeout(timer);
        this.exit = { code, signal, at: Date.now() };
        if (!this.stopping) process.stderr.write(`stress: the proxy exited (code ${code}, signal ${signal})\n`);
        reject(new Error(`proxy exited (code ${code}, signal ${signal}) before listening`));
      });
    });
  }

  ready(): Promise<number> {
    return this.listening;
  }

  private onLine(line: string): void {
    const at = Date.now();
    const s = / INFO stats (.*)$/.exec(line);
    if (s) {
      const stats: Stats = {};
      for (const kv of s[1]!.split(' ')) {
        const eq = kv.indexOf('=');
        if (eq > 0) stats[kv.slice(0, eq)] = Number(kv.slice(eq + 1));
      }
      this.lastStats = stats;
      this.onStats?.(stats, at);
      const w = this.statsWaiters;
      this.statsWaiters = [];
      for (const f of w) f(stats);
      return;
    }
    const sd = / INFO shutdown complete .*query_log_lines=(\d+)/.exec(line);
    if (sd) this.shutdownLogLines = Number(sd[1]);
    if (/ (WARN|ERROR) /.test(line) && this.problems.length < 50) this.problems.push(line);
  }

  get alive(): boolean {
    return this.exit === null;
  }

  /** SIGUSR2 and the next stats line (or null when the proxy is gone or silent for 5 s). */
  requestStats(): Promise<Stats | null> {
    if (!this.alive) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), 5000);
      this.statsWaiters.push((s) => {
        clearTimeout(timer);
        resolve(s);
      });
      try {
        process.kill(this.pid, 'SIGUSR2');
      } catch {
        // exited meanwhile
      }
    });
  }

  /** SIGTERM, and the exit status (null on timeout, then SIGKILL). */
  async stop(timeoutMs = 20000): Promise<{ code: number | null; signal: string | null } | null> {
    if (this.exit) return this.exit;
    this.stopping = true;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGTERM');
    const ok = await Promise.race([exited.then(() => true), sleep(timeoutMs).then(() => false)]);
    if (!ok) {
      killGroup(this.child, 'SIGKILL');
      return null;
    }
    // 'exit' has fired; let the last stderr chunk arrive.
    await new Promise<void>((r) => (this.child.stderr!.readableEnded ? r() : this.child.stderr!.once('end', () => r())));
    return this.exit;
  }
}

// ---------------------------------------------------------------------------
// /proc sampling

function cpuTicks(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
  } catch {
    return null;
  }
}

function rssBytes(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function socketCount(pid: number): number | null {
  try {
    let n = 0;
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      try {
        if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) n++;
      } catch {
        // closed meanwhile
      }
    }
    return n;
  } catch {
    return null;
  }
}

interface Sample {
  /** Seconds since the load started. */
  t: number;
  iso: string;
  /** start: the sample taken as the load starts, before its clients connect; end: after the load. */
  phase: 'start' | 'load' | 'end';
  rssMb: number | null;
  heapUsedMb: number | null;
  externalMb: number | null;
  cpuPct: number | null;
  clients: number | null;
  sessions: number | null;
  sockets: number | null;
  logLines: number | null;
  bytesFromClients: number | null;
  bytesFromServers: number | null;
}

const MB = 1024 * 1024;

class Sampler {
  readonly samples: Sample[] = [];
  phase: 'start' | 'load' | 'end' = 'start';
  private prevTicks: number | null;
  private prevAt: number;
  /** Longest time between two stats lines while sampling (ms): the proxy's event loop kept up if ~5000. */
  maxGapMs = 0;
  private lastAt: number;

  constructor(
    private readonly pid: number,
    private readonly t0: number,
  ) {
    this.prevTicks = cpuTicks(pid);
    this.prevAt = t0;
    this.lastAt = t0;
  }

  take(stats: Stats | null, at: number): Sample {
    const ticks = cpuTicks(this.pid);
    const dt = (at - this.prevAt) / 1000;
    const cpuPct = ticks !== null && this.prevTicks !== null && dt >= 0.5 ? ((ticks - this.prevTicks) / CLK_TCK / dt) * 100 : null;
    if (ticks !== null && dt >= 0.5) {
      this.prevTicks = ticks;
      this.prevAt = at;
    }
    if (this.samples.length > 0) this.maxGapMs = Math.max(this.maxGapMs, at - this.lastAt);
    this.lastAt = at;
    const rss = rssBytes(this.pid);
    const g = (k: string) => (stats && Number.isFinite(stats[k]) ? stats[k]! : null);
    const mb = (v: number | null) => (v === null ? null : v / MB);
    const s: Sample = {
      t: (at - this.t0) / 1000,
      iso: new Date(at).toISOString(),
      phase: this.phase,
      rssMb: mb(rss ?? g('rss')),
      heapUsedMb: mb(g('heap_used')),
      externalMb: mb(g('external')),
      cpuPct,
      clients: g('clients'),
      sessions: g('sessions'),
      sockets: socketCount(this.pid),
      logLines: g('log_lines'),
      bytesFromClients: g('bytes_from_clients'),
      bytesFromServers: g('bytes_from_servers'),
    };
    this.samples.push(s);
    if (this.phase === 'start') this.phase = 'load';
    return s;
  }
}

// ---------------------------------------------------------------------------
// PostgreSQL helpers

async function psqlJson<T>(pg: PgCluster, sql: string, db = 'postgres'): Promise<T> {
  const out = await pg.psql(sql, { db });
  return JSON.parse(out || 'null') as T;
}

interface ServerErrors {
  /** database -> SQLSTATE -> ERROR lines */
  byDb: Record<string, Record<string, number>>;
  /** database -> ERRORs whose STATEMENT is a utility (incl. transaction-control) statement */
  onUtility: Record<string, number>;
  examples: string[];
}

/** ERROR lines the server logged after byte `from`, by database and SQLSTATE. */
function serverErrors(logFile: string, from: number): ServerErrors {
  const res: ServerErrors = { byDb: {}, onUtility: {}, examples: [] };
  const fd = fs.openSync(logFile, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.max(0, size - from));
    fs.readSync(fd, buf, 0, buf.length, from);
    const pending = new Map<string, string>(); // pid -> database of its last ERROR
    for (const line of buf.toString('utf8').split('\n')) {
      const m = / \[(\d+)\] db=(\S*) sqlstate=(\w{5}) (ERROR|STATEMENT): {2}(.*)$/.exec(line);
      if (!m) continue;
      const [, pid, dbRaw, state, level, text] = m as unknown as [string, string, string, string, string, string];
      const db = dbRaw || '(none)';
      if (level === 'ERROR') {
        const per = (res.byDb[db] ??= {});
        per[state] = (per[state] ?? 0) + 1;
        pending.set(pid, db);
        if (res.examples.length < 10) res.examples.push(line.slice(0, 240));
      } else if (pending.has(pid)) {
        pending.delete(pid);
        const kind = classifySql(text);
        if (kind === 'txn' || kind === 'utility') res.onUtility[db] = (res.onUtility[db] ?? 0) + 1;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return res;
}

const fileSize = (f: string) => {
  try {
    return fs.statSync(f).size;
  } catch {
    return 0;
  }
};

// ---------------------------------------------------------------------------
// Output parsing

interface SysbenchResult {
  exit: number | null;
  signal: string | null;
  tps: number;
  qps: number;
  transactions: number;
  queries: number;
  ignoredErrors: number;
  reconnects: number;
  latAvgMs: number;
  lat95Ms: number;
  fatal: string[];
  intervals: Array<{ t: number; tps: number; qps: number; errPerSec: number }>;
}

function parseSysbench(r: RunResult): SysbenchResult {
  const out = r.stdout + '\n' + r.stderr;
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : NaN;
  };
  const intervals: SysbenchResult['intervals'] = [];
  for (const m of out.matchAll(/^\[ (\d+)s \] thds: \d+ tps: ([\d.]+) qps: ([\d.]+) .*? err\/s: ([\d.]+)/gm)) {
    intervals.push({ t: Number(m[1]), tps: Number(m[2]), qps: Number(m[3]), errPerSec: Number(m[4]) });
  }
  return {
    exit: r.code,
    signal: r.signal,
    transactions: num(/^\s+transactions:\s+(\d+)/m),
    tps: num(/^\s+transactions:\s+\d+\s+\(([\d.]+) per sec/m),
    queries: num(/^\s+queries:\s+(\d+)/m),
    qps: num(/^\s+queries:\s+\d+\s+\(([\d.]+) per sec/m),
    ignoredErrors: num(/^\s+ignored errors:\s+(\d+)/m),
    reconnects: num(/^\s+reconnects:\s+(\d+)/m),
    latAvgMs: num(/^\s+avg:\s+([\d.]+)/m),
    lat95Ms: num(/^\s+95th percentile:\s+([\d.]+)/m),
    fatal: out.split('\n').filter((l) => /FATAL|ALERT/.test(l)).slice(0, 10),
    intervals,
  };
}

interface PgbenchResult {
  exit: number | null;
  signal: string | null;
  tps: number;
  transactions: number;
  failed: number;
  latAvgMs: number;
  aborted: string[];
  intervals: Array<{ t: number; tps: number; failed: number }>;
}

function parsePgbench(r: RunResult): PgbenchResult {
  const out = r.stdout + '\n' + r.stderr;
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : NaN;
  };
  const intervals: PgbenchResult['intervals'] = [];
  for (const m of out.matchAll(/^progress: ([\d.]+) s, ([\d.]+) tps.*?(?:, (\d+) failed)?$/gm)) {
    intervals.push({ t: Number(m[1]), tps: Number(m[2]), failed: Number(m[3] ?? 0) });
  }
  const failed = num(/number of failed transactions: (\d+)/);
  return {
    exit: r.code,
    signal: r.signal,
    tps: num(/tps = ([\d.]+) \(without initial connection time\)/),
    transactions: num(/number of transactions actually processed: (\d+)/),
    failed: Number.isNaN(failed) ? 0 : failed,
    latAvgMs: num(/latency average = ([\d.]+) ms/),
    aborted: out.split('\n').filter((l) => /aborted|error/i.test(l) && !/^progress:/.test(l)).slice(0, 10),
    intervals,
  };
}

// ---------------------------------------------------------------------------
// Checks and report

interface Check {
  name: string;
  pass: boolean;
  detail: string;
  /** false: the run cannot judge this check (too short); it neither passes nor fails the run. */
  judged?: boolean;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const fmtInt = (n: number | null | undefined) => (n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : Math.round(n).toLocaleString('en-US'));
const fmt = (n: number | null | undefined, d = 1) => (n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(d));

function csv(samples: Sample[]): string {
  const cols: Array<[string, (s: Sample) => string]> = [
    ['t_s', (s) => s.t.toFixed(1)],
    ['time', (s) => s.iso],
    ['phase', (s) => s.phase],
    ['rss_mb', (s) => fmt(s.rssMb, 2)],
    ['heap_used_mb', (s) => fmt(s.heapUsedMb, 2)],
    ['external_mb', (s) => fmt(s.externalMb, 2)],
    ['cpu_pct', (s) => fmt(s.cpuPct, 1)],
    ['clients', (s) => fmt(s.clients, 0)],
    ['sessions', (s) => fmt(s.sessions, 0)],
    ['sockets', (s) => fmt(s.sockets, 0)],
    ['log_lines', (s) => fmt(s.logLines, 0)],
    ['bytes_from_clients', (s) => fmt(s.bytesFromClients, 0)],
    ['bytes_from_servers', (s) => fmt(s.bytesFromServers, 0)],
  ];
  const rows = [cols.map((c) => c[0]).join(',')];
  for (const s of samples) rows.push(cols.map((c) => c[1](s).replace('n/a', '')).join(','));
  return rows.join('\n') + '\n';
}

// ---------------------------------------------------------------------------

let tmpDir: string | null = null;
let cluster: PgCluster | null = null;
let cleaning: Promise<void> | null = null;
let interrupted = false;

function cleanup(): Promise<void> {
  if (!cleaning) {
    cleaning = (async () => {
      for (const c of [...children]) killGroup(c, 'SIGKILL');
      try {
        await cluster?.stop();
      } catch (e) {
        process.stderr.write(`stress: stopping the cluster: ${(e as Error).message}\n`);
      }
      if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
    })();
  }
  return cleaning;
}

process.on('exit', () => {
  for (const c of [...children]) killGroup(c, 'SIGKILL');
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    interrupted = true;
    process.stderr.write(`\nstress: ${sig}: stopping the load, the proxy and the cluster\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

const say = (msg: string) => process.stderr.write(`[stress ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

async function main(): Promise<number> {
  const started = new Date();
  const stamp = started.toISOString().slice(0, 19).replace(/:/g, '-') + 'Z';
  const logsDir = path.join(ROOT, 'logs');
  fs.mkdirSync(logsDir, { recursive: true });
  const files = {
    csv: path.join(logsDir, `stress-${stamp}.csv`),
    svg: path.join(logsDir, `stress-${stamp}.svg`),
    json: path.join(logsDir, `stress-${stamp}.json`),
  };
  const mainJs = path.join(ROOT, 'dist/main.js');
  if (!fs.existsSync(mainJs)) throw new Error(`${mainJs} missing: run make build`);
  for (const tool of ['sysbench', 'pgbench']) {
    const r = await run(tool, ['--version']).catch(() => null);
    if (!r || r.code !== 0) throw new Error(`${tool} not found on PATH`);
  }

  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-stress-'));
  const queryLog = path.join(tmpDir, 'queries.log');

  say(`starting PostgreSQL (DURATION=${DURATION}s THREADS=${THREADS} PGBENCH_CLIENTS=${PGBENCH_CLIENTS})`);
  cluster = await startCluster({
    conf: {
      'pg_stat_statements.track': 'top',
      'pg_stat_statements.track_utility': 'on',
      'pg_stat_statements.max': '10000',
      log_line_prefix: '%m [%p] db=%d sqlstate=%e ',
      log_min_messages: 'warning',
      log_min_error_statement: 'error',
      shared_buffers: '256MB',
      max_connections: '300',
    },
  });
  const pg = cluster;
  await pg.psql(`CREATE DATABASE ${SB_DB}`);
  await pg.psql(`CREATE DATABASE ${PGB_DB}`);

  say('starting pgscribe');
  const proxy = new ProxyProcess(pg.port, queryLog, tmpDir);
  const port = await proxy.ready();
  const scanner = new QueryLogScanner(queryLog);
  scanner.phase = 'prepare';

  const sbCommon = [
    'oltp_read_write',
    '--db-driver=pgsql',
    '--pgsql-host=127.0.0.1',
    `--pgsql-port=${port}`,
    '--pgsql-user=postgres',
    `--pgsql-db=${SB_DB}`,
    `--tables=${TABLES}`,
    `--table-size=${TABLE_SIZE}`,
  ];
  const pgbConn = ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres'];

  // --- prepare, through the proxy -------------------------------------------------------------
  say(`prepare through the proxy: sysbench ${TABLES} x ${TABLE_SIZE} rows, pgbench -i -s ${SCALE}`);
  const sbPrep = startTool('sysbench prepare', 'sysbench', [...sbCommon, `--threads=${Math.min(TABLES, 4)}`, 'prepare'], { timeoutMs: 600_000 });
  const pgbInit = startTool('pgbench -i', 'pgbench', ['-i', '-q', '-s', String(SCALE), ...pgbConn, PGB_DB], { timeoutMs: 600_000 });
  const [sbPrepR, pgbInitR] = await Promise.all([sbPrep.done, pgbInit.done]);
  const prepProblems: string[] = [];
  if (sbPrepR.code !== 0) prepProblems.push(`sysbench prepare exited ${sbPrepR.code}: ${(sbPrepR.stderr + sbPrepR.stdout).slice(-800)}`);
  if (pgbInitR.code !== 0) prepProblems.push(`pgbench -i exited ${pgbInitR.code}: ${(pgbInitR.stderr + pgbInitR.stdout).slice(-800)}`);
  if (prepProblems.length) throw new Error(prepProblems.join('\n'));
  const prepareOutput = sbPrepR.stdout + sbPrepR.stderr + pgbInitR.stdout + pgbInitR.stderr;

  // --- quiesce: no session left, every accepted line on disk -----------------------------------
  const quiesce = async (what: string): Promise<Stats | null> => {
    const deadline = Date.now() + 60_000;
    let s: Stats | null = null;
    while (Date.now() < deadline) {
      s = await proxy.requestStats();
      if (s === null) return null;
      scanner.scan();
      if (s['clients'] === 0 && scanner.lines === s['log_lines']) return s;
      await sleep(250);
    }
    throw new Error(`${what}: the proxy did not become idle with its log on disk within 60 s (stats ${JSON.stringify(s)}, lines on disk ${scanner.lines})`);
  };
  const idleBefore = await quiesce('after prepare');
  if (idleBefore === null) throw new Error('the proxy exited during prepare');
  const prepareLines = scanner.lines;

  await pg.psql('SELECT pg_stat_statements_reset()');
  const serverLogStart = fileSize(pg.logFile);
  scanner.phase = 'load';

  // --- load --------------------------------------------------------------------------------------
  say(`load: sysbench oltp_read_write ${THREADS} threads + pgbench -c ${PGBENCH_CLIENTS} -M prepared for ${DURATION} s`);
  const t0 = Date.now();
  const sampler = new Sampler(proxy.pid, t0);
  let lastProgress = 0;
  let lastSbLine = '';
  let lastPgbLine = '';
  proxy.onStats = (stats, at) => {
    const s = sampler.take(stats, at);
    if (s.phase === 'load' && s.t - lastProgress >= 30) {
      lastProgress = s.t;
      const sb = /tps: ([\d.]+)/.exec(lastSbLine)?.[1] ?? '-';
      const pb = /([\d.]+) tps/.exec(lastPgbLine)?.[1] ?? '-';
      say(
        `${s.t.toFixed(0)}/${DURATION} s: rss ${fmt(s.rssMb)} MB, heap ${fmt(s.heapUsedMb)} MB, cpu ${fmt(s.cpuPct, 0)}%, ` +
          `clients ${fmt(s.clients, 0)}, sysbench ${sb} tps, pgbench ${pb} tps`,
      );
    }
  };
  void proxy.requestStats(); // a sample at t=0
  const toolTimeout = (DURATION + 180) * 1000;
  const sb = startTool('sysbench', 'sysbench', [...sbCommon, `--threads=${THREADS}`, `--time=${DURATION}`, '--report-interval=5', '--db-ps-mode=auto', ...SYSBENCH_ARGS, 'run'], {
    timeoutMs: toolTimeout,
    onLine: (l) => {
      if (l.startsWith('[ ')) lastSbLine = l;
    },
  });
  const pgb = startTool(
    'pgbench',
    'pgbench',
    ['-n', '-c', String(PGBENCH_CLIENTS), '-j', '2', '-T', String(DURATION), '-M', 'prepared', '-P', '5', ...pgbConn, PGB_DB],
    {
      timeoutMs: toolTimeout,
      onLine: (l) => {
        if (l.startsWith('progress:')) lastPgbLine = l;
      },
    },
  );
  const [sbR, pgbR] = await Promise.all([sb.done, pgb.done]);
  const loadSeconds = (Date.now() - t0) / 1000;
  sampler.phase = 'end';
  say(`load finished after ${loadSeconds.toFixed(1)} s; waiting for the proxy to be idle`);

  // --- collect -----------------------------------------------------------------------------------
  let idleAfter: Stats | null = null;
  let quiesceError: string | null = null;
  try {
    idleAfter = await quiesce('after the load');
  } catch (e) {
    quiesceError = (e as Error).message;
  }
  proxy.onStats = null;
  const aliveAtEnd = proxy.alive;
  scanner.scan();

  const pgss = await psqlJson<Array<{ db: string; calls: number; entries: number }> | null>(
    pg,
    `SELECT json_agg(x) FROM (SELECT d.datname AS db, sum(s.calls)::bigint AS calls, count(*) AS entries
       FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
      WHERE d.datname IN ('${SB_DB}', '${PGB_DB}') GROUP BY d.datname) x`,
  );
  const topStatements = await psqlJson<Array<{ db: string; calls: number; query: string }> | null>(
    pg,
    `SELECT json_agg(x) FROM (SELECT d.datname AS db, s.calls, left(regexp_replace(s.query, '\\s+', ' ', 'g'), 100) AS query
       FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
      WHERE d.datname IN ('${SB_DB}', '${PGB_DB}') ORDER BY s.calls DESC LIMIT 30) x`,
  );
  const dealloc = Number(await pg.psql('SELECT dealloc FROM pg_stat_statements_info'));
  const srvErr = serverErrors(pg.logFile, serverLogStart);

  say('stopping the proxy (SIGTERM)');
  const stopResult = await proxy.stop();
  scanner.scan();

  // --- checks ------------------------------------------------------------------------------------
  const sbRes = parseSysbench(sbR);
  const pgbRes = parsePgbench(pgbR);
  const checks: Check[] = [];

  checks.push({
    name: 'proxy alive',
    pass: aliveAtEnd && stopResult !== null && stopResult.code === 0,
    detail: aliveAtEnd
      ? `ran through the load; SIGTERM -> ${stopResult === null ? 'no exit within 20 s' : `exit ${stopResult.code ?? stopResult.signal}`}`
      : `EXITED during the run: code ${proxy.exit?.code} signal ${proxy.exit?.signal} at t=${(((proxy.exit?.at ?? t0) - t0) / 1000).toFixed(1)} s`,
  });

  const errsIn = (db: string) => srvErr.byDb[db] ?? {};
  const sum = (o: Record<string, number>, keys?: string[]) => Object.entries(o).reduce((a, [k, v]) => a + (keys && !keys.includes(k) ? 0 : v), 0);
  const allClientOutput = prepareOutput + sbR.stdout + sbR.stderr + pgbR.stdout + pgbR.stderr;
  const pgscribeErrors = allClientOutput.split('\n').filter((l) => l.includes('pgscribe:'));
  const sbPgIgnorable = sum(errsIn(SB_DB), SYSBENCH_IGNORED);
  const sbPgOther = sum(errsIn(SB_DB)) - sbPgIgnorable;
  const sbProblems: string[] = [];
  if (sbRes.exit !== 0) sbProblems.push(`exit ${sbRes.exit ?? sbRes.signal}`);
  if (sbRes.fatal.length) sbProblems.push(`FATAL: ${sbRes.fatal[0]}`);
  if (sbRes.ignoredErrors !== sbPgIgnorable) sbProblems.push(`ignored errors ${sbRes.ignoredErrors} != PostgreSQL's ${sbPgIgnorable}`);
  if (sbPgOther !== 0) sbProblems.push(`${sbPgOther} other PostgreSQL errors in ${SB_DB}`);
  if (sbRes.reconnects > 0) sbProblems.push(`${sbRes.reconnects} reconnects`);
  checks.push({
    name: 'sysbench errors only from PostgreSQL',
    pass: sbProblems.length === 0,
    detail:
      `${fmtInt(sbRes.ignoredErrors)} ignored = PostgreSQL ERRORs in ${SB_DB} ${JSON.stringify(errsIn(SB_DB))}` +
      (sbProblems.length ? `; PROBLEMS: ${sbProblems.join('; ')}` : ''),
  });
  const pgbPgFail = sum(errsIn(PGB_DB), PGBENCH_FAILURES);
  const pgbProblems: string[] = [];
  if (pgbRes.exit !== 0) pgbProblems.push(`exit ${pgbRes.exit ?? pgbRes.signal}`);
  if (pgbRes.aborted.length) pgbProblems.push(pgbRes.aborted[0]!);
  if (pgbRes.failed !== pgbPgFail) pgbProblems.push(`failed ${pgbRes.failed} != PostgreSQL's 40001/40P01 ${pgbPgFail}`);
  if (sum(errsIn(PGB_DB)) !== pgbPgFail) pgbProblems.push(`other PostgreSQL errors in ${PGB_DB}: ${JSON.stringify(errsIn(PGB_DB))}`);
  checks.push({
    name: 'pgbench failures only from PostgreSQL',
    pass: pgbProblems.length === 0,
    detail: `${fmtInt(pgbRes.failed)} failed transactions, PostgreSQL 40001/40P01 ERRORs in ${PGB_DB}: ${pgbPgFail}` + (pgbProblems.length ? `; PROBLEMS: ${pgbProblems.join('; ')}` : ''),
  });
  checks.push({
    name: 'no pgscribe: errors at clients',
    pass: pgscribeErrors.length === 0,
    detail: pgscribeErrors.length ? `${pgscribeErrors.length} lines, first: ${pgscribeErrors[0]!.slice(0, 200)}` : 'none in sysbench/pgbench output (prepare and run)',
  });

  // RSS
  const load = sampler.samples.filter((s) => s.phase === 'load' && s.rssMb !== null);
  const tEnd = load.length ? load[load.length - 1]!.t : 0;
  // "RSS after the first minute" vs "RSS in the last minute" needs at least two minutes; a
  // shorter run is mostly V8 and connection warm-up, so it reports RSS without judging it.
  const long = DURATION >= 120;
  const base: [number, number] = long ? [60, 120] : [0, DURATION / 3];
  const lastW: [number, number] = long ? [Math.max(base[1], tEnd - 60), tEnd + 1e-9] : [tEnd - DURATION / 3, tEnd + 1e-9];
  const inW = (w: [number, number]) => load.filter((s) => s.t >= w[0] && s.t < w[1]).map((s) => s.rssMb!);
  const rssBase = mean(inW(base));
  const rssLast = mean(inW(lastW));
  const rssRatio = rssLast / rssBase;
  const rssWindows = long
    ? `mean of the second minute [60,120) s vs the last minute`
    : `first third vs last third; not judged: needs DURATION >= 120 s`;
  checks.push({
    name: 'RSS stable (±20%)',
    pass: Number.isFinite(rssRatio) && Math.abs(rssRatio - 1) <= RSS_TOLERANCE,
    judged: long,
    detail: `${fmt(rssBase)} MB -> ${fmt(rssLast)} MB (${rssRatio >= 1 ? '+' : ''}${fmt((rssRatio - 1) * 100)}%), ${rssWindows}`,
  });

  // Statement count
  const loadCounts = scanner.countsFor('load');
  const calls = (db: string) => Number(pgss?.find((r) => r.db === db)?.calls ?? 0);
  interface DbCount {
    E: number;
    qStatements: number;
    errors: number;
    repeatedPreparedTxn: number;
    repeatedPreparedUtility: number;
    emptyExecutes: number;
    errorsOnUtility: number;
    expectedMin: number;
    expectedMax: number;
    calls: number;
    counts: TypeCounts | null;
  }
  const perDb: Record<string, DbCount> = {};
  // Waiters whose leader failed ran the query themselves (counted per process, not per database).
  const reruns = (idleAfter?.['cache_reruns'] ?? 0) - (idleBefore['cache_reruns'] ?? 0);
  let countOk = dealloc === 0;
  const countDetail: string[] = [];
  for (const db of [SB_DB, PGB_DB]) {
    const c = loadCounts.get(db) ?? null;
    const E = c?.E ?? 0;
    const qs = c?.qStatements ?? 0;
    const errors = sum(errsIn(db));
    const txnRep = c?.txnRepeats ?? 0;
    const utilRep = c?.utilityRepeats ?? 0;
    const empty = c?.emptyE ?? 0;
    const local = c?.answeredByProxy ?? 0;
    const errUtil = srvErr.onUtility[db] ?? 0;
    const exact = E + qs - errors - txnRep - empty - local;
    // A failed repeated BEGIN/COMMIT would be subtracted twice; another utility statement's cached
    // plan may be rebuilt (then its repeat is counted): both only widen the range.
    const expectedMax = exact + errUtil + reruns;
    const expectedMin = exact - utilRep;
    const got = calls(db);
    perDb[db] = {
      E,
      qStatements: qs,
      errors,
      repeatedPreparedTxn: txnRep,
      repeatedPreparedUtility: utilRep,
      emptyExecutes: empty,
      errorsOnUtility: errUtil,
      expectedMin,
      expectedMax,
      calls: got,
      counts: c,
    };
    const ok = got >= expectedMin && got <= expectedMax;
    if (!ok) countOk = false;
    const rel = expectedMin === expectedMax ? (ok ? '==' : `!= ${fmtInt(expectedMin)} =`) : ok ? `in [${fmtInt(expectedMin)}, ${fmtInt(expectedMax)}] from` : `NOT in [${fmtInt(expectedMin)}, ${fmtInt(expectedMax)}] from`;
    countDetail.push(
      `${db}: calls ${fmtInt(got)} ${rel} E ${fmtInt(E)} + Q stmts ${fmtInt(qs)} - errors ${fmtInt(errors)} - repeated prepared BEGIN/COMMIT ${fmtInt(txnRep)}` +
        (empty ? ` - empty ${empty}` : '') +
        (local ? ` - answered by the proxy (cache hits, flight waiters) ${fmtInt(local)}` : '') +
        (reruns ? ` (+ up to ${reruns} flight reruns)` : '') +
        (utilRep ? ` (- up to ${utilRep} repeated prepared utility)` : '') +
        (errUtil ? ` (+ up to ${errUtil} failed utility)` : ''),
    );
  }
  const otherDbs = [...loadCounts.keys()].filter((d) => d !== SB_DB && d !== PGB_DB);
  if (otherDbs.length) {
    countOk = false;
    countDetail.push(`unexpected databases in the log: ${otherDbs.join(', ')}`);
  }
  const multiQ = [...loadCounts.values()].reduce((a, c) => a + c.qMulti, 0);
  if (multiQ) countDetail.push(`${multiQ} multi-statement Q lines`);
  if (dealloc !== 0) countDetail.push(`pg_stat_statements evicted entries (dealloc ${dealloc}): calls are incomplete`);
  checks.push({ name: 'statement count (pg_stat_statements)', pass: countOk, detail: countDetail.join('; ') });

  // Log lines
  const finalStatsLines = idleAfter?.['log_lines'] ?? null;
  const logProblems: string[] = [];
  if (quiesceError) logProblems.push(quiesceError);
  if (finalStatsLines === null) logProblems.push('no final stats line');
  else if (finalStatsLines !== scanner.lines) logProblems.push(`stats log_lines ${finalStatsLines} != ${scanner.lines} lines in the file`);
  if (proxy.shutdownLogLines === null) logProblems.push('no "shutdown complete" line');
  else if (proxy.shutdownLogLines !== scanner.lines) logProblems.push(`shutdown query_log_lines ${proxy.shutdownLogLines} != ${scanner.lines}`);
  if (scanner.malformed) logProblems.push(`${scanner.malformed} malformed lines, e.g. ${scanner.malformedExamples[0]}`);
  // --log-completions: every Q and E line has its done line once every session is gone.
  let queryLines = 0;
  let doneLines = 0;
  for (const byDb of scanner.counts.values()) {
    for (const c of byDb.values()) {
      queryLines += c.Q + c.E;
      doneLines += c.done;
    }
  }
  const completions = PGSCRIBE_ARGS.includes('--log-completions');
  if (completions && doneLines !== queryLines) logProblems.push(`${fmtInt(doneLines)} done lines for ${fmtInt(queryLines)} Q and E lines`);
  if (!completions && doneLines > 0) logProblems.push(`${fmtInt(doneLines)} done lines without --log-completions`);
  checks.push({
    name: 'log lines == proxy log_lines',
    pass: logProblems.length === 0,
    detail: `${fmtInt(scanner.lines)} lines in the file (prepare ${fmtInt(prepareLines)}, load ${fmtInt(scanner.lines - prepareLines)}), stats ${fmtInt(finalStatsLines)}, shutdown ${fmtInt(proxy.shutdownLogLines)}` +
      (completions ? `; ${fmtInt(doneLines)} done lines for ${fmtInt(queryLines)} Q/E lines` : '') +
      (logProblems.length ? `; PROBLEMS: ${logProblems.join('; ')}` : ''),
  });

  const pass = checks.every((c) => c.pass || c.judged === false);

  // --- outputs -----------------------------------------------------------------------------------
  const heaps = sampler.samples.map((s) => s.heapUsedMb).filter((x): x is number => x !== null);
  const cpus = sampler.samples.filter((s) => s.phase === 'load').map((s) => s.cpuPct).filter((x): x is number => x !== null);
  const maxClients = Math.max(0, ...sampler.samples.map((s) => s.clients ?? 0));
  fs.writeFileSync(files.csv, csv(sampler.samples));

  const pts = (f: (s: Sample) => number | null): Array<[number, number | null]> => sampler.samples.map((s) => [s.t, f(s)]);
  const xMax = Math.max(DURATION, ...sampler.samples.map((s) => s.t));
  const tput: Series[] = [
    { name: 'sysbench tps', color: '#1f77b4', points: sbRes.intervals.map((i) => [i.t, i.tps] as [number, number]) },
    { name: 'pgbench tps', color: '#ff7f0e', points: pgbRes.intervals.map((i) => [i.t, i.tps] as [number, number]) },
  ];
  const svg = renderStackedChart({
    title: `pgscribe stress: sysbench oltp_read_write ${THREADS} threads + pgbench ${PGBENCH_CLIENTS} clients`,
    subtitle:
      `${started.toISOString().slice(0, 19).replace('T', ' ')} UTC, ${DURATION} s (ran ${loadSeconds.toFixed(0)} s), ` +
      `${TABLES}x${TABLE_SIZE} rows, pgbench -s ${SCALE} -M prepared; verdict ${pass ? 'PASS' : 'FAIL'}`,
    xLabel: 'seconds since the load started',
    xMin: 0,
    xMax,
    panels: [
      {
        title: 'RSS (MB)',
        series: [{ name: 'RSS', color: '#d62728', points: pts((s) => s.rssMb) }],
        bands: [
          { x0: base[0], x1: base[1], label: 'baseline', color: '#2ca02c' },
          { x0: lastW[0], x1: lastW[1], label: 'last', color: '#9467bd' },
        ],
      },
      {
        title: 'V8 heap (MB)',
        series: [
          { name: 'heap used', color: '#2ca02c', points: pts((s) => s.heapUsedMb) },
          { name: 'external', color: '#8c564b', points: pts((s) => s.externalMb) },
        ],
      },
      { title: 'CPU (% of one core)', series: [{ name: 'utime+stime', color: '#9467bd', points: pts((s) => s.cpuPct) }] },
      {
        title: 'Connections',
        series: [
          { name: 'client sessions', color: '#1f77b4', points: pts((s) => s.clients) },
          { name: 'open sockets', color: '#17becf', points: pts((s) => s.sockets), dashed: true },
        ],
      },
      { title: 'Client throughput (transactions/s)', series: tput },
    ],
  });
  fs.writeFileSync(files.svg, svg);

  const summary = {
    started: started.toISOString(),
    durationS: DURATION,
    loadSeconds,
    threads: THREADS,
    pgbenchClients: PGBENCH_CLIENTS,
    tables: TABLES,
    tableSize: TABLE_SIZE,
    pgbenchScale: SCALE,
    verdict: pass ? 'PASS' : 'FAIL',
    checks,
    sysbench: sbRes,
    pgbench: pgbRes,
    queryLog: {
      lines: scanner.lines,
      prepareLines,
      loadLines: scanner.lines - prepareLines,
      byPhase: Object.fromEntries([...scanner.counts].map(([p, m]) => [p, Object.fromEntries(m)])),
      malformed: scanner.malformed,
      statsLogLines: finalStatsLines,
      shutdownLogLines: proxy.shutdownLogLines,
    },
    statementCount: {
      relation:
        'per database: pg_stat_statements sum(calls) == E lines + statements in Q lines - ERRORs logged by PostgreSQL ' +
        '- E lines that re-execute a prepared transaction-control statement (PostgreSQL 15 pg_stat_statements counts only the first execution of a cached utility plan) ' +
        '- E lines of empty statements; widened by repeated prepared utility statements and errors on utility statements when there are any',
      perDb,
      pgStatStatementsDealloc: dealloc,
      topStatements,
    },
    postgresErrors: srvErr,
    proxy: {
      rssBaselineMb: rssBase,
      rssLastMb: rssLast,
      rssWindows,
      baselineWindowS: base,
      lastWindowS: lastW,
      maxHeapUsedMb: heaps.length ? Math.max(...heaps) : null,
      cpuMeanPct: mean(cpus),
      cpuMaxPct: cpus.length ? Math.max(...cpus) : null,
      maxClients,
      maxStatsGapMs: sampler.maxGapMs,
      samples: sampler.samples.length,
      finalStats: idleAfter,
      warnings: proxy.problems,
      exit: proxy.exit,
    },
    files,
  };
  fs.writeFileSync(files.json, JSON.stringify(summary, null, 2) + '\n');

  const lc = (db: string) => loadCounts.get(db);
  const lines = [
    '',
    `pgscribe stress ${started.toISOString().slice(0, 19)}Z  duration ${DURATION} s (load ran ${loadSeconds.toFixed(1)} s)  sysbench threads ${THREADS}  pgbench clients ${PGBENCH_CLIENTS}`,
    `sysbench oltp_read_write: ${fmt(sbRes.tps)} tps, ${fmt(sbRes.qps)} qps, ${fmtInt(sbRes.transactions)} txns, errors ignored ${fmtInt(sbRes.ignoredErrors)} ${JSON.stringify(errsIn(SB_DB))}, p95 ${fmt(sbRes.lat95Ms, 2)} ms, exit ${sbRes.exit}`,
    `pgbench tpcb-like -M prepared: ${fmt(pgbRes.tps)} tps, ${fmtInt(pgbRes.transactions)} txns, failed ${fmtInt(pgbRes.failed)}, avg ${fmt(pgbRes.latAvgMs, 2)} ms, exit ${pgbRes.exit}`,
    `query log: ${fmtInt(scanner.lines)} lines (prepare ${fmtInt(prepareLines)}); load ${SB_DB}: Q ${fmtInt(lc(SB_DB)?.Q)} P ${fmtInt(lc(SB_DB)?.P)} B ${fmtInt(lc(SB_DB)?.B)} E ${fmtInt(lc(SB_DB)?.E)}; ` +
      `${PGB_DB}: Q ${fmtInt(lc(PGB_DB)?.Q)} P ${fmtInt(lc(PGB_DB)?.P)} B ${fmtInt(lc(PGB_DB)?.B)} E ${fmtInt(lc(PGB_DB)?.E)}`,
    `proxy log_lines: stats ${fmtInt(finalStatsLines)}, shutdown ${fmtInt(proxy.shutdownLogLines)}`,
    `pg_stat_statements calls: ${SB_DB} ${fmtInt(calls(SB_DB))}, ${PGB_DB} ${fmtInt(calls(PGB_DB))} (dealloc ${dealloc})`,
    `RSS: baseline ${fmt(rssBase)} MB, last ${fmt(rssLast)} MB (${rssWindows}); max heap used ${fmt(summary.proxy.maxHeapUsedMb)} MB; ` +
      `CPU mean ${fmt(mean(cpus), 0)}% max ${fmt(summary.proxy.cpuMaxPct, 0)}% of one core; clients max ${maxClients}; max stats gap ${(sampler.maxGapMs / 1000).toFixed(1)} s`,
    'checks:',
    ...checks.map((c) => `  ${c.judged === false ? 'SKIP' : c.pass ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`),
    ...(proxy.problems.length ? [`proxy WARN/ERROR lines: ${proxy.problems.length}, first: ${proxy.problems[0]!.slice(0, 200)}`] : []),
    `verdict: ${pass ? 'PASS' : 'FAIL'}`,
    `files: ${path.relative(ROOT, files.csv)}  ${path.relative(ROOT, files.svg)}  ${path.relative(ROOT, files.json)}`,
    '',
  ];
  process.stdout.write(lines.join('\n'));
  return pass ? 0 : 1;
}

main()
  .then(async (code) => {
    if (interrupted) return;
    await cleanup();
    process.exit(code);
  })
  .catch(async (e: Error) => {
    if (interrupted) return; // the signal handler cleans up and exits 130
    process.stderr.write(`stress: ${e.stack ?? e.message}\n`);
    await cleanup();
    process.exit(1);
  });
