/**
 * `make bench`: pgbench workloads through pgscribe vs directly vs a bare Node relay vs PgBouncer
 * (session mode, when installed), interleaved in one run on one machine, reported as ratios.
 *
 * It starts its own throwaway PostgreSQL (like the tests), initialises pgbench data, starts every
 * target once, then for each repeat, each workload, each target runs pgbench for DURATION
 * seconds. For each cell: tps, mean and p99 latency (p99 from pgbench's per-transaction log),
 * and the proxy's CPU time per transaction (utime+stime from /proc/PID/stat before and after).
 * Repeats report the median. Output: a markdown table on stdout and JSON under logs/.
 *
 * Knobs (environment): DURATION (s, default 10), CLIENTS (32), THREADS (pgbench -j, 2),
 * REPEATS (3), SCALE (pgbench scale, 10), WORKLOADS (comma list of select-simple,
 * select-prepared, tpcb, hotset), TARGETS (comma list of direct, pgscribe-log, pgscribe-nolog,
 * node-relay, pgbouncer).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PG_BIN, freePort, run, startCluster, type PgCluster } from '../test/helpers/pg-cluster';

const ROOT = findRoot();
const env = process.env;
const DURATION = Number(env['DURATION'] ?? 10);
const CLIENTS = Number(env['CLIENTS'] ?? 32);
const THREADS = Number(env['THREADS'] ?? 2);
const REPEATS = Number(env['REPEATS'] ?? 3);
const SCALE = Number(env['SCALE'] ?? 10);
const ALL_WORKLOADS = ['select-simple', 'select-prepared', 'tpcb', 'hotset'] as const;
const ALL_TARGETS = ['direct', 'pgscribe-log', 'pgscribe-nolog', 'node-relay', 'pgbouncer'] as const;
type Workload = (typeof ALL_WORKLOADS)[number];
type TargetName = (typeof ALL_TARGETS)[number];
const WORKLOADS = pickList(env['WORKLOADS'], ALL_WORKLOADS);
const TARGETS = pickList(env['TARGETS'], ALL_TARGETS);

function findRoot(): string {
  for (let d = __dirname; ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'package.json')) && fs.existsSync(path.join(d, 'src'))) return d;
    if (path.dirname(d) === d) {
      if (fs.existsSync(path.join(process.cwd(), 'package.json'))) return process.cwd();
      throw new Error('repository root not found');
    }
  }
}

function pickList<T extends string>(raw: string | undefined, all: readonly T[]): T[] {
  if (raw === undefined || raw === '') return [...all];
  const out = raw.split(',').map((s) => s.trim());
  for (const x of out) if (!(all as readonly string[]).includes(x)) throw new Error(`unknown ${x}; known: ${all.join(', ')}`);
  return out as T[];
}

interface Target {
  name: TargetName;
  port: number;
  /** Process whose CPU time is charged to this target (none for direct). */
  pid: number | null;
  proc: ChildProcess | null;
  /** Called between runs (pgscribe-log: rotate the log away so the disk does not fill). */
  betweenRuns?: () => Promise<void>;
}

interface Cell {
  workload: Workload;
  target: TargetName;
  repeat: number;
  tps: number;
  transactions: number;
  failed: number;
  latencyMeanMs: number;
  latencyP99Ms: number;
  cpuUsPerTxn: number | null;
}

const CLK_TCK = Number(runSync('getconf', ['CLK_TCK']) || 100);

function runSync(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

/** utime + stime of a process, in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  return Number(fields[11]) + Number(fields[12]);
}

function waitForLine(proc: ChildProcess, stream: 'stdout' | 'stderr', re: RegExp, timeoutMs = 15000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const s = proc[stream]!;
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}: ${buf}`)), timeoutMs);
    const onData = (d: Buffer) => {
      buf += d.toString();
      const m = re.exec(buf);
      if (m) {
        clearTimeout(timer);
        s.off('data', onData);
        s.resume();
        resolve(m);
      }
    };
    s.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`exited with ${code} before ${re}: ${buf}`)));
  });
}

async function startPgscribe(name: TargetName, pgPort: number, dir: string): Promise<Target> {
  const logPath = path.join(dir, 'queries.log');
  const args = [
    path.join(ROOT, 'dist/main.js'),
    '--listen',
    '127.0.0.1:0',
    '--upstream',
    `127.0.0.1:${pgPort}`,
    '--max-connections',
    '1000',
    '--log',
    name === 'pgscribe-log' ? logPath : 'none',
  ];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const m = await waitForLine(proc, 'stderr', /listening listen=\S+:(\d+)/);
  const t: Target = { name, port: Number(m[1]), pid: proc.pid!, proc };
  if (name === 'pgscribe-log') {
    t.betweenRuns = async () => {
      // Rotate: the next run starts on a fresh file, the old one is deleted.
      fs.rmSync(logPath, { force: true });
      proc.kill('SIGHUP');
      await new Promise((r) => setTimeout(r, 200));
    };
  }
  return t;
}

async function startRelay(pgPort: number): Promise<Target> {
  const proc = spawn(process.execPath, [path.join(__dirname, 'relay.js'), '0', `127.0.0.1:${pgPort}`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const m = await waitForLine(proc, 'stdout', /listening (\d+)/);
  return { name: 'node-relay', port: Number(m[1]), pid: proc.pid!, proc };
}

function findPgbouncer(): string | null {
  for (const p of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer']) if (fs.existsSync(p)) return p;
  return runSync('sh', ['-c', 'command -v pgbouncer']) || null;
}

async function startPgbouncer(pgPort: number, dir: string): Promise<Target | null> {
  const bin = findPgbouncer();
  if (bin === null) return null;
  const port = await freePort();
  const bdir = path.join(dir, 'pgbouncer');
  fs.mkdirSync(bdir);
  fs.writeFileSync(path.join(bdir, 'userlist.txt'), '"postgres" ""\n');
  fs.writeFileSync(
    path.join(bdir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=127.0.0.1 port=${pgPort}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${path.join(bdir, 'userlist.txt')}`,
      'pool_mode = session',
      'max_client_conn = 1000',
      'default_pool_size = 200',
      `logfile = ${path.join(bdir, 'pgbouncer.log')}`,
      'log_connections = 0',
      'log_disconnections = 0',
      'ignore_startup_parameters = extra_float_digits',
      '',
    ].join('\n'),
  );
  // PgBouncer refuses to run as root: run it as the postgres user, like the cluster.
  let ids: { uid?: number; gid?: number } = {};
  if (process.getuid?.() === 0) {
    ids = { uid: Number(runSync('id', ['-u', 'postgres'])), gid: Number(runSync('id', ['-g', 'postgres'])) };
    fs.chmodSync(dir, 0o755);
    runSync('chown', ['-R', 'postgres:postgres', bdir]);
  }
  const proc = spawn(bin, [path.join(bdir, 'pgbouncer.ini')], { stdio: ['ignore', 'ignore', 'pipe'], ...ids });
  // Wait until it accepts connections.
  for (let i = 0; i < 100; i++) {
    const r = await run('psql', ['-X', '-At', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-c', 'select 1'], {
      timeoutMs: 2000,
    });
    if (r.code === 0) return { name: 'pgbouncer', port, pid: proc.pid!, proc };
    if (proc.exitCode !== null) break;
    await new Promise((r2) => setTimeout(r2, 100));
  }
  process.stderr.write(`pgbouncer did not start; skipping it (see ${path.join(bdir, 'pgbouncer.log')})\n`);
  proc.kill('SIGKILL');
  return null;
}


function workloadArgs(w: Workload, dir: string): string[] {
  switch (w) {
    case 'select-simple':
      return ['-S', '-M', 'simple'];
    case 'select-prepared':
      return ['-S', '-M', 'prepared'];
    case 'tpcb':
      return ['-M', 'simple'];
    case 'hotset': {
      const f = path.join(dir, 'hotset.sql');
      if (!fs.existsSync(f)) {
        fs.writeFileSync(f, '\\set aid random(1, 1000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n');
        fs.chmodSync(f, 0o644);
      }
      return ['-f', f, '-M', 'simple'];
    }
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Latencies (µs) from pgbench -l files: "client_id transaction_no time script_no time_epoch time_us". */
function readLatencies(prefix: string): Float64Array {
  const dir = path.dirname(prefix);
  const base = path.basename(prefix);
  const values: number[] = [];
  for (const f of fs.readdirSync(dir)) {
    if (!f.startsWith(base + '.')) continue;
    const text = fs.readFileSync(path.join(dir, f), 'utf8');
    let start = 0;
    while (start < text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      const a = text.indexOf(' ', start);
      const b = text.indexOf(' ', a + 1);
      const c = text.indexOf(' ', b + 1);
      if (a > 0 && c > b) values.push(Number(text.slice(b + 1, c)));
      start = end + 1;
    }
    fs.rmSync(path.join(dir, f));
  }
  const arr = Float64Array.from(values);
  arr.sort();
  return arr;
}

async function runCell(w: Workload, t: Target, repeat: number, dir: string): Promise<Cell> {
  const prefix = path.join(dir, `pgb-${w}-${t.name}-${repeat}`);
  const args = [
    '-n',
    '-c',
    String(CLIENTS),
    '-j',
    String(THREADS),
    '-T',
    String(DURATION),
    ...workloadArgs(w, dir),
    '-l',
    `--log-prefix=${prefix}`,
    '-h',
    '127.0.0.1',
    '-p',
    String(t.port),
    '-U',
    'postgres',
    'postgres',
  ];
  const before = t.pid === null ? 0 : cpuTicks(t.pid);
  const r = await run('pgbench', args, { timeoutMs: (DURATION + 60) * 1000, cwd: dir });
  const after = t.pid === null ? 0 : cpuTicks(t.pid);
  if (r.code !== 0) throw new Error(`pgbench ${args.join(' ')} failed (${r.code}): ${r.stderr}\n${r.stdout}`);
  const num = (re: RegExp) => {
    const m = re.exec(r.stdout);
    return m ? Number(m[1]) : NaN;
  };
  const transactions = num(/number of transactions actually processed: (\d+)/);
  const lat = readLatencies(prefix);
  return {
    workload: w,
    target: t.name,
    repeat,
    tps: num(/tps = ([\d.]+) \(without initial connection time\)/),
    transactions,
    failed: num(/number of failed transactions: (\d+)/) || 0,
    latencyMeanMs: num(/latency average = ([\d.]+) ms/),
    latencyP99Ms: percentile(lat, 99) / 1000,
    cpuUsPerTxn: t.pid === null ? null : (((after - before) / CLK_TCK) * 1e6) / transactions,
  };
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Summary {
  workload: Workload;
  target: TargetName;
  tps: number;
  latencyMeanMs: number;
  latencyP99Ms: number;
  cpuUsPerTxn: number | null;
  failed: number;
  tpsVsDirect: number | null;
  tpsVsRelay: number | null;
  tpsVsPgbouncer: number | null;
  cpuVsRelay: number | null;
  cpuVsPgbouncer: number | null;
}

function summarise(cells: Cell[]): Summary[] {
  const out: Summary[] = [];
  const med = (w: Workload, t: TargetName, f: (c: Cell) => number | null) => {
    const xs = cells.filter((c) => c.workload === w && c.target === t).map(f).filter((x): x is number => x !== null);
    return xs.length ? median(xs) : null;
  };
  const ratio = (a: number | null, b: number | null) => (a === null || b === null || !Number.isFinite(a) || !b ? null : a / b);
  for (const w of WORKLOADS) {
    for (const t of TARGETS) {
      const tps = med(w, t, (c) => c.tps);
      if (tps === null) continue;
      const cpu = med(w, t, (c) => c.cpuUsPerTxn);
      out.push({
        workload: w,
        target: t,
        tps,
        latencyMeanMs: med(w, t, (c) => c.latencyMeanMs)!,
        latencyP99Ms: med(w, t, (c) => c.latencyP99Ms)!,
        cpuUsPerTxn: cpu,
        failed: cells.filter((c) => c.workload === w && c.target === t).reduce((a, c) => a + c.failed, 0),
        tpsVsDirect: t === 'direct' ? null : ratio(tps, med(w, 'direct', (c) => c.tps)),
        tpsVsRelay: t === 'node-relay' ? null : ratio(tps, med(w, 'node-relay', (c) => c.tps)),
        tpsVsPgbouncer: t === 'pgbouncer' ? null : ratio(tps, med(w, 'pgbouncer', (c) => c.tps)),
        cpuVsRelay: t === 'node-relay' ? null : ratio(cpu, med(w, 'node-relay', (c) => c.cpuUsPerTxn)),
        cpuVsPgbouncer: t === 'pgbouncer' ? null : ratio(cpu, med(w, 'pgbouncer', (c) => c.cpuUsPerTxn)),
      });
    }
  }
  return out;
}

const f1 = (x: number | null, d = 1) => (x === null || !Number.isFinite(x) ? '' : x.toFixed(d));

function markdown(rows: Summary[]): string {
  const lines = [
    '| workload | target | tps | mean ms | p99 ms | proxy CPU µs/txn | tps vs direct | tps vs relay | tps vs pgbouncer | CPU vs relay | CPU vs pgbouncer |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.workload} | ${r.target} | ${f1(r.tps, 0)} | ${f1(r.latencyMeanMs, 3)} | ${f1(r.latencyP99Ms, 3)} | ${f1(r.cpuUsPerTxn)} | ${f1(r.tpsVsDirect, 2)} | ${f1(r.tpsVsRelay, 2)} | ${f1(r.tpsVsPgbouncer, 2)} | ${f1(r.cpuVsRelay, 2)} | ${f1(r.cpuVsPgbouncer, 2)} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  if (!fs.existsSync(path.join(ROOT, 'dist/main.js'))) throw new Error('dist/main.js missing: run make build');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-bench-'));
  fs.chmodSync(dir, 0o755);
  const targets: Target[] = [];
  let pg: PgCluster | null = null;
  const cleanup = async () => {
    for (const t of targets) t.proc?.kill('SIGKILL');
    await pg?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => {
    void cleanup().then(() => process.exit(130));
  });
  try {
    pg = await startCluster({ conf: { max_connections: '300', shared_buffers: '256MB' } });
    const init = await run('pgbench', ['-i', '-q', '-s', String(SCALE), '-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', 'postgres'], {
      timeoutMs: 600_000,
    });
    if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);
    for (const name of TARGETS) {
      if (name === 'direct') targets.push({ name, port: pg.port, pid: null, proc: null });
      else if (name === 'pgscribe-log' || name === 'pgscribe-nolog') targets.push(await startPgscribe(name, pg.port, dir));
      else if (name === 'node-relay') targets.push(await startRelay(pg.port));
      else if (name === 'pgbouncer') {
        const b = await startPgbouncer(pg.port, dir);
        if (b) targets.push(b);
        else process.stderr.write('pgbouncer not installed: its column stays empty\n');
      }
    }
    const started = new Date();
    const cells: Cell[] = [];
    const total = REPEATS * WORKLOADS.length * targets.length;
    for (let rep = 1; rep <= REPEATS; rep++) {
      for (const w of WORKLOADS) {
        for (const t of targets) {
          const c = await runCell(w, t, rep, dir);
          cells.push(c);
          process.stderr.write(
            `[${cells.length}/${total}] repeat ${rep} ${w} ${t.name}: ${c.tps.toFixed(0)} tps, p99 ${c.latencyP99Ms.toFixed(2)} ms` +
              (c.cpuUsPerTxn === null ? '' : `, ${c.cpuUsPerTxn.toFixed(1)} µs CPU/txn`) +
              (c.failed ? `, ${c.failed} FAILED` : '') +
              '\n',
          );
          await t.betweenRuns?.();
        }
      }
    }
    const rows = summarise(cells);
    const machine = {
      date: started.toISOString(),
      host: os.hostname(),
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      memGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.version,
      postgres: pgVersion(),
      pgbouncer: targets.some((t) => t.name === 'pgbouncer') ? runSync(findPgbouncer()!, ['--version']).split('\n')[0] : 'not installed',
    };
    const settings = { DURATION, CLIENTS, THREADS, REPEATS, SCALE, WORKLOADS, TARGETS: targets.map((t) => t.name) };
    const md = markdown(rows);
    process.stdout.write(
      `\n## pgscribe bench ${machine.date}\n\n` +
        `Machine: ${machine.cores} × ${machine.cpu}, ${machine.memGiB} GiB; Node ${machine.node}; ${machine.postgres}; ${machine.pgbouncer}\n` +
        `Command: make bench (DURATION=${DURATION} CLIENTS=${CLIENTS} THREADS=${THREADS} REPEATS=${REPEATS} SCALE=${SCALE}); medians of ${REPEATS} interleaved repeats.\n\n` +
        md +
        '\n',
    );
    const out = path.join(ROOT, 'logs', `bench-${machine.date.replace(/[:.]/g, '-')}.json`);
    fs.writeFileSync(out, JSON.stringify({ machine, settings, summary: rows, cells }, null, 2) + '\n');
    process.stdout.write(`\nJSON: ${path.relative(ROOT, out)}\n`);
  } finally {
    await cleanup();
  }
}

function pgVersion(): string {
  return runSync(path.join(PG_BIN, 'postgres'), ['--version']) || 'postgres ?';
}

main().catch((err: Error) => {
  process.stderr.write(`bench failed: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
