/**
 * `make bench`: pgbench workloads through pgscribe vs directly vs a bare Node relay vs PgBouncer
 * (session mode) vs Pgpool-II with its in-memory query cache (when installed), interleaved in
 * one run on one machine, reported as ratios.
 *
 * It starts its own throwaway PostgreSQL (like the tests), initialises pgbench data, starts every
 * target once, then for each repeat, each workload, each target runs pgbench for DURATION
 * seconds. For each cell: tps, mean and p99 latency (p99 from pgbench's per-transaction log of a 10%
 * sample of the transactions),
 * and the proxy's CPU time per transaction (utime+stime of the proxy's whole process tree, from
 * /proc before and after: see bench/lib/proc-tree.ts). Repeats report the median. Output: a
 * markdown table on stdout and JSON under logs/.
 *
 * Workloads:
 *   select-simple     pgbench -S -M simple
 *   select-prepared   pgbench -S -M prepared
 *   tpcb              pgbench default TPC-B-like script, -M simple
 *   hotset            SELECT abalance FROM pgbench_accounts WHERE aid = :aid, aid in 1..1000, -M simple
 *   hotset-extended   the same script with -M extended (Parse/Bind/Execute, unnamed statement)
 * Targets:
 *   direct            PostgreSQL itself
 *   pgscribe-log      pgscribe (dist/main.js) with the file log on (rotated between runs)
 *   pgscribe-nolog    pgscribe with --log none
 *   pgscribe-tls      pgscribe-log with TLS on the client side (--tls-cert/--tls-key, a throwaway
 *                     certificate) and pgbench with sslmode=require; select-simple only: set
 *                     against pgscribe-log it is the cost of TLS (encryption, the TLS layer's reads
 *                     and writes), reported under the table
 *   node-relay        bench/relay.ts: net sockets piped both ways, the floor for a Node proxy
 *   pgbouncer         PgBouncer in session mode (skipped when not installed)
 *   pgscribe-cache    pgscribe-log plus --cache --singleflight (the result cache)
 *   pgscribe-cache-nolog  pgscribe-cache with --log none
 *   pgscribe-cache-w2 pgscribe-cache plus --workers 2
 *   pgpool-cache      Pgpool-II (raw mode, one backend) with its shmem in-memory query cache on
 *                     (skipped when not installed or it does not start); its settings and why
 *                     are in startPgpool()
 *   pgscribe-insight  pgscribe-log plus --log-completions and --admin (a done line per query, query
 *                     digests and table heat): compare with pgscribe-log for their cost
 *   node-ceiling      bench/constant-server.ts: a Node server answering every query with one row
 *                     from memory, no parsing, no log: the most any Node cache can reach on this
 *                     machine (hotset workloads only; its answers are not the real rows)
 *   pgscribe-l2       pgscribe-cache plus --redis: the shared cache in a redis-server the bench
 *                     starts (skipped when redis-server is not installed); its CPU is charged too
 *   pgscribe-cache-x2 two pgscribe-cache instances, each with its own cache; pgbench runs as two
 *                     processes with half the clients each, one per instance, and their tps add up
 *                     (hotset workloads only)
 *   pgscribe-l2-x2    the same two instances sharing one Redis (--redis): an answer computed
 *                     through one serves the other (hotset workloads only)
 * A pgscribe-cache* target that does not start (e.g. a pgscribe without those flags exits with
 * "invalid setting") is reported on stderr and skipped, like an uninstalled PgBouncer; the
 * other targets still run. Skipped targets have no rows and leave their ratio columns empty.
 *
 * Knobs (environment): DURATION (s, default 10), CLIENTS (32), THREADS (pgbench -j, 2),
 * REPEATS (3), SCALE (pgbench scale, 10), WORKLOADS (comma list of the workloads above, default
 * all), TARGETS (comma list of the targets above, default all).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PG_BIN, freePort, run, startCluster, type PgCluster } from '../test/helpers/pg-cluster';
import { startRedis, type RedisServer } from '../test/helpers/redis';
import { makeCerts } from '../test/helpers/tls';
import { treeCpuTicks } from './lib/proc-tree';
import { median, repoRoot } from './lib/common';

const ROOT = repoRoot();
const env = process.env;
const DURATION = Number(env['DURATION'] ?? 10);
const CLIENTS = Number(env['CLIENTS'] ?? 32);
const THREADS = Number(env['THREADS'] ?? 2);
const REPEATS = Number(env['REPEATS'] ?? 3);
const SCALE = Number(env['SCALE'] ?? 10);
/** Fraction of transactions pgbench logs for the latency percentiles. */
const LATENCY_SAMPLE = 0.1;
const ALL_WORKLOADS = ['select-simple', 'select-prepared', 'tpcb', 'hotset', 'hotset-extended'] as const;
const ALL_TARGETS = [
  'direct',
  'pgscribe-log',
  'pgscribe-nolog',
  'pgscribe-tls',
  'node-relay',
  'pgbouncer',
  'pgscribe-cache',
  'pgscribe-cache-nolog',
  'pgscribe-cache-w2',
  'pgpool-cache',
  'node-ceiling',
  'pgscribe-insight',
  'pgscribe-l2',
  'pgscribe-cache-x2',
  'pgscribe-l2-x2',
] as const;
type Workload = (typeof ALL_WORKLOADS)[number];
type TargetName = (typeof ALL_TARGETS)[number];
const WORKLOADS = pickList(env['WORKLOADS'], ALL_WORKLOADS);
const TARGETS = pickList(env['TARGETS'], ALL_TARGETS);


function pickList<T extends string>(raw: string | undefined, all: readonly T[]): T[] {
  if (raw === undefined || raw === '') return [...all];
  const out = raw.split(',').map((s) => s.trim());
  for (const x of out) if (!(all as readonly string[]).includes(x)) throw new Error(`unknown ${x}; known: ${all.join(', ')}`);
  return out as T[];
}

interface Target {
  name: TargetName;
  port: number;
  /** Root of the process tree whose CPU time is charged to this target (none for direct). */
  pid: number | null;
  /** More instances of the target: pgbench's clients are split evenly over `port` and these. */
  extraPorts?: number[];
  /** More process trees charged to this target (its other instances, its Redis). */
  extraPids?: number[];
  proc: ChildProcess | null;
  /** Called between runs (pgscribe-log: rotate the log away so the disk does not fill). */
  betweenRuns?: () => Promise<void>;
  /** Graceful stop at cleanup (default: SIGKILL the process). */
  stop?: () => Promise<void>;
  /** Cumulative query-cache counters, read before and after each run (pgpool-cache). */
  cacheCounters?: () => Promise<CacheCounters | null>;
  /** libpq settings for pgbench against this target (pgscribe-tls: sslmode=require). */
  env?: Record<string, string>;
  /** The only workloads this target runs (default: all of WORKLOADS). */
  workloads?: readonly Workload[];
}

interface CacheCounters {
  /** SELECTs answered from the cache. */
  hits: number;
  /** SELECTs that went to PostgreSQL (cache misses). */
  misses: number;
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
  /** pgpool-cache only: the cache's hits / (hits + misses) during this run. */
  cacheHitRatio: number | null;
}

const CLK_TCK = Number(runSync('getconf', ['CLK_TCK']) || 100);

function runSync(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
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
    // 'close', not 'exit': by then the stream has ended, so buf holds everything the process said.
    proc.once('close', (code) => reject(new Error(`exited with ${code} before ${re}: ${buf.trim()}`)));
  });
}

type PgscribeTarget =
  | 'pgscribe-log'
  | 'pgscribe-nolog'
  | 'pgscribe-tls'
  | 'pgscribe-cache'
  | 'pgscribe-cache-nolog'
  | 'pgscribe-cache-w2'
  | 'pgscribe-insight'
  | 'pgscribe-l2'
  | 'pgscribe-cache-x2'
  | 'pgscribe-l2-x2';

/** Extra pgscribe flags of each pgscribe target; the *-nolog ones run with --log none, the others log to a file. */
const PGSCRIBE_FLAGS: Record<PgscribeTarget, string[]> = {
  'pgscribe-log': [],
  'pgscribe-nolog': [],
  'pgscribe-tls': [],
  'pgscribe-cache': ['--cache', '--singleflight'],
  'pgscribe-cache-nolog': ['--cache', '--singleflight'],
  'pgscribe-cache-w2': ['--cache', '--singleflight', '--workers', '2'],
  'pgscribe-insight': ['--log-completions', '--admin', '127.0.0.1:0'],
  'pgscribe-l2': ['--cache', '--singleflight'],
  'pgscribe-cache-x2': ['--cache', '--singleflight'],
  'pgscribe-l2-x2': ['--cache', '--singleflight'],
};

/** The targets that share a Redis (--redis), and their key prefixes (one each: no entry crosses targets). */
const REDIS_TARGETS: Partial<Record<PgscribeTarget, string>> = { 'pgscribe-l2': 'bench-l2:', 'pgscribe-l2-x2': 'bench-l2x2:' };
/** Targets made of two instances. */
const INSTANCES: Partial<Record<PgscribeTarget, number>> = { 'pgscribe-cache-x2': 2, 'pgscribe-l2-x2': 2 };

/** The last stats line a pgscribe printed (SIGUSR2), as numbers. */
async function pgscribeStats(proc: ChildProcess, stderr: () => string): Promise<Record<string, number>> {
  const before = (stderr().match(/ INFO stats /g) ?? []).length;
  proc.kill('SIGUSR2');
  for (let i = 0; i < 250; i++) {
    const lines = stderr().split('\n').filter((l) => l.includes(' INFO stats '));
    if (lines.length > before) {
      const out: Record<string, number> = {};
      for (const m of lines[lines.length - 1]!.matchAll(/ (\w+)=(\d+)/g)) out[m[1]!] = Number(m[2]);
      return out;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {};
}

async function startPgscribe(name: PgscribeTarget, pgPort: number, dir: string, redisPort: number | null): Promise<Target> {
  const logOn = !name.endsWith('-nolog');
  const prefix = REDIS_TARGETS[name];
  if (prefix !== undefined && redisPort === null) throw new Error('redis-server is not installed');
  const n = INSTANCES[name] ?? 1;
  const procs: ChildProcess[] = [];
  const ports: number[] = [];
  const logs: string[] = [];
  const stderrs: (() => string)[] = [];
  for (let i = 0; i < n; i++) {
    // One log file per instance: several pgscribe targets with the log on run side by side.
    const logPath = path.join(dir, n === 1 ? `queries-${name}.log` : `queries-${name}-${i}.log`);
    const args = [
      path.join(ROOT, 'dist/main.js'),
      '--listen',
      '127.0.0.1:0',
      '--upstream',
      `127.0.0.1:${pgPort}`,
      '--max-connections',
      '1000',
      '--log',
      logOn ? logPath : 'none',
      ...PGSCRIBE_FLAGS[name],
      ...(name === 'pgscribe-tls' ? tlsFlags() : []),
      ...(prefix === undefined ? [] : ['--redis', `127.0.0.1:${redisPort}`, '--redis-prefix', prefix]),
    ];
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    // The tail of what it says, for its stats lines.
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-65536);
    });
    procs.push(proc);
    try {
      const m = await waitForLine(proc, 'stderr', /listening listen=\S+:(\d+)/);
      ports.push(Number(m[1]));
      for (let waited = 0; prefix !== undefined && !/redis: shared cache available/.test(err); waited += 20) {
        if (waited > 15000 || proc.exitCode !== null) throw new Error(`${name}: Redis never became available: ${err}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    } catch (err) {
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      throw err;
    }
    logs.push(logPath);
    stderrs.push(() => err);
  }
  const proc = procs[0]!;
  const t: Target = { name, port: ports[0]!, pid: proc.pid!, proc };
  if (n > 1) {
    t.extraPorts = ports.slice(1);
    t.extraPids = procs.slice(1).map((p) => p.pid!);
    t.stop = async () => {
      for (const p of procs) p.kill('SIGKILL');
    };
  }
  if (name === 'pgscribe-tls') {
    t.env = { PGSSLMODE: 'require' };
    t.workloads = ['select-simple'];
  }
  if (n > 1) t.workloads = ['hotset', 'hotset-extended'];
  if (PGSCRIBE_FLAGS[name].includes('--cache')) {
    // Lookups answered by either cache level, summed over the instances.
    t.cacheCounters = async () => {
      let hits = 0;
      let misses = 0;
      for (const [i, p] of procs.entries()) {
        const st = await pgscribeStats(p, stderrs[i]!);
        const l2 = st['cache_l2_hits'] ?? 0;
        hits += (st['cache_hits'] ?? 0) + l2;
        misses += (st['cache_misses'] ?? 0) - l2;
      }
      return { hits, misses };
    };
  }
  if (logOn) {
    t.betweenRuns = async () => {
      // Rotate: the next run starts on a fresh file, the old one is deleted.
      for (const [i, p] of procs.entries()) {
        fs.rmSync(logs[i]!, { force: true });
        p.kill('SIGHUP');
      }
      await new Promise((r) => setTimeout(r, 200));
    };
  }
  return t;
}

async function startCeiling(): Promise<Target> {
  const proc = spawn(process.execPath, [path.join(__dirname, 'constant-server.js'), '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const m = await waitForLine(proc, 'stdout', /listening (\d+)/);
  return { name: 'node-ceiling', port: Number(m[1]), pid: proc.pid!, proc };
}

/** node-ceiling answers every query with a constant row, and the two-instance targets are about the hot set: hot set only. */
const HOTSET_ONLY: readonly TargetName[] = ['node-ceiling', 'pgscribe-cache-x2', 'pgscribe-l2-x2'];
const runsOn = (t: TargetName, w: Workload): boolean => !HOTSET_ONLY.includes(t) || w === 'hotset' || w === 'hotset-extended';

/** --tls-cert/--tls-key of a throwaway certificate (openssl, as in the tests). */
function tlsFlags(): string[] {
  const certs = makeCerts();
  return ['--tls-cert', certs.server.cert, '--tls-key', certs.server.key];
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

function findPgpool(): string | null {
  for (const p of ['/usr/sbin/pgpool', '/usr/bin/pgpool', '/usr/local/bin/pgpool']) if (fs.existsSync(p)) return p;
  return runSync('sh', ['-c', 'command -v pgpool']) || null;
}

/** "pgpool-II version 4.3.5 (tamahomeboshi)"; pgpool prints it on stderr. */
function pgpoolVersion(): string {
  const bin = findPgpool();
  if (bin === null) return 'not installed';
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] || 'pgpool-II ?';
}

/** Single-quoted pgpool.conf value. */
const pq = (v: string) => `'${v.replace(/'/g, "''")}'`;

/**
 * Pgpool-II 4.3 in front of the bench's PostgreSQL, with its in-memory query cache: the
 * established "result cache in a proxy" to compare pgscribe's cache with. Everything it writes
 * (config, pid file, sockets, log, pool_passwd, the cache's oid map) stays in <dir>/pgpool.
 *
 * Settings, and why:
 * - backend_clustering_mode 'raw', one backend, load_balance_mode off: a plain proxy in front of
 *   one server, like the other targets; no replication-mode bookkeeping.
 * - num_init_children CLIENTS + 8, max_pool 1: pgpool serves one client per child process, so it
 *   needs a child per pgbench client, plus spare ones for the readiness probe and the
 *   SHOW pool_cache reads between runs (reserved_connections 0: no refusals); max_pool 1 because
 *   every client uses the same user and database, so one cached backend connection per child is
 *   all that is ever reused.
 * - child_life_time 0, child_max_connections 0, connection_life_time 0, client_idle_limit 0: no
 *   child or backend connection is recycled during the bench, so no process exits between the
 *   CPU samples (see bench/lib/proc-tree.ts) and no run pays for reconnecting.
 * - health_check_period 0, sr_check_period 0, use_watchdog off, failover_on_backend_error off,
 *   backend_flag0 DISALLOW_TO_FAILOVER: no background work and no failover on a bench machine
 *   with one server.
 * - memory_cache_enabled on, memqcache_method 'shmem': the cache in pgpool's shared memory (no
 *   memcached). memqcache_total_size 256MB with the default 1MB blocks, 400kB max result and
 *   1,000,000 hash entries: an entry for one pgbench_accounts row takes about 130 bytes, so even
 *   every row of the default SCALE=10 (1,000,000 rows, the key space of select-*) fits, and
 *   nothing is evicted for lack of room. (The hot sets are 1,000 rows; select-* and tpcb,
 *   uniform over all rows or writing, measure the cache's miss and invalidation paths.)
 * - memqcache_expire 0 (entries never expire; pgpool's default) with
 *   memqcache_auto_cache_invalidation on (also the default): entries are dropped when a write
 *   through pgpool touches their table (tpcb's UPDATEs of pgbench_accounts), which is the
 *   invalidation a correct result cache must do anyway; a TTL would add misses that measure the
 *   TTL, not the cache. Caveat: writes that bypass pgpool (the tpcb runs of the other targets)
 *   do not invalidate, so pgpool may answer hotset with stale balances; the bench checks
 *   throughput, not answers, so that does not change the numbers.
 * - trust everywhere (pool_hba.conf: local and 127.0.0.1), an empty pool_passwd: the cluster is
 *   trust too, as for the other targets.
 * - log_min_messages warning, no statement/connection logging: pgpool's log is not what is
 *   measured (pgscribe's query log is, in pgscribe-cache).
 * What to expect (pgpool 4.3.5, observed while writing this): with the simple protocol a hit
 * answers the Query from shared memory without touching PostgreSQL. With the extended protocol
 * (hotset-extended, select-prepared) pgpool still forwards Parse/Bind/Describe to PostgreSQL and
 * waits for them, and answers only the Execute from the cache (PostgreSQL logs no execute, but
 * pg_stat_statements counts one 0-row call per transaction: the portal made at Bind), so a hit
 * there saves little, and pgpool counts two hits per such transaction in SHOW pool_cache.
 * The per-run hit ratio the bench prints for pgpool-cache is pgpool's own figure
 * (num_cache_hits / (num_cache_hits + num_selects)), with that caveat.
 *
 * It runs in the foreground (-n), as the postgres OS user when we are root, in its own process
 * group; stop() asks for a fast shutdown (SIGINT, which also removes its SysV shared memory and
 * semaphores) and SIGKILLs the whole group if it is not gone in 10 s.
 */
async function startPgpool(pgPort: number, dir: string): Promise<Target | null> {
  const bin = findPgpool();
  if (bin === null) return null;
  const port = await freePort();
  const pdir = path.join(dir, 'pgpool');
  fs.mkdirSync(pdir);
  fs.mkdirSync(path.join(pdir, 'oiddir'));
  const conf = path.join(pdir, 'pgpool.conf');
  const hba = path.join(pdir, 'pool_hba.conf');
  const pcp = path.join(pdir, 'pcp.conf');
  const logFile = path.join(pdir, 'pgpool.log');
  fs.writeFileSync(path.join(pdir, 'pool_passwd'), '');
  fs.writeFileSync(pcp, '# no pcp users: pcp is not used by the bench\n');
  fs.writeFileSync(hba, ['local all all trust', 'host all all 127.0.0.1/32 trust', ''].join('\n'));
  const settings: Record<string, string | number> = {
    backend_clustering_mode: pq('raw'),
    listen_addresses: pq('127.0.0.1'),
    port,
    socket_dir: pq(pdir),
    reserved_connections: 0,
    pcp_listen_addresses: pq(''),
    pcp_port: await freePort(),
    pcp_socket_dir: pq(pdir),
    backend_hostname0: pq('127.0.0.1'),
    backend_port0: pgPort,
    backend_weight0: 1,
    backend_flag0: pq('DISALLOW_TO_FAILOVER'),
    enable_pool_hba: 'on',
    pool_passwd: pq(path.join(pdir, 'pool_passwd')),
    ssl: 'off',
    num_init_children: CLIENTS + 8,
    max_pool: 1,
    child_life_time: 0,
    child_max_connections: 0,
    connection_life_time: 0,
    client_idle_limit: 0,
    connection_cache: 'on',
    log_destination: pq('stderr'),
    logging_collector: 'off',
    log_min_messages: 'warning',
    log_connections: 'off',
    log_statement: 'off',
    log_per_node_statement: 'off',
    pid_file_name: pq(path.join(pdir, 'pgpool.pid')),
    logdir: pq(pdir),
    load_balance_mode: 'off',
    health_check_period: 0,
    sr_check_period: 0,
    failover_on_backend_error: 'off',
    use_watchdog: 'off',
    memory_cache_enabled: 'on',
    memqcache_method: pq('shmem'),
    memqcache_total_size: pq('256MB'),
    memqcache_max_num_cache: 1000000,
    memqcache_expire: 0,
    memqcache_auto_cache_invalidation: 'on',
    memqcache_maxcache: pq('400kB'),
    memqcache_cache_block_size: pq('1MB'),
    memqcache_oiddir: pq(path.join(pdir, 'oiddir')),
  };
  fs.writeFileSync(conf, Object.entries(settings).map(([k, v]) => `${k} = ${v}\n`).join(''));
  let ids: { uid?: number; gid?: number } = {};
  if (process.getuid?.() === 0) {
    // Like PgBouncer: run it as the postgres user, not as root.
    ids = { uid: Number(runSync('id', ['-u', 'postgres'])), gid: Number(runSync('id', ['-g', 'postgres'])) };
    fs.chmodSync(dir, 0o755);
    runSync('chown', ['-R', 'postgres:postgres', pdir]);
  }
  const logFd = fs.openSync(logFile, 'a');
  const proc = spawn(bin, ['-n', '-f', conf, '-a', hba, '-F', pcp], {
    stdio: ['ignore', logFd, logFd],
    detached: true, // its own process group: stop() can kill pgpool and every child it forked
    ...ids,
  });
  fs.closeSync(logFd);
  proc.on('error', () => {}); // reported below as "did not start"
  const pid = proc.pid;
  const gone = new Promise<void>((r) => proc.once('exit', () => r()));
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const killGroup = () => {
    if (pid === undefined) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  // Last resorts, should the bench die without running its cleanup: an exit hook, and a detached
  // shell that stops pgpool once this process is gone (SIGTERM, SIGKILL).
  const exitHook = () => {
    if (alive()) killGroup();
  };
  process.on('exit', exitHook);
  const watchdog =
    pid === undefined
      ? undefined
      : spawn(
          '/bin/sh',
          [
            '-c',
            'while kill -0 "$BENCH" 2>/dev/null; do sleep 0.5; done; kill -INT "$PGPOOL" 2>/dev/null; ' +
              'i=0; while kill -0 "$PGPOOL" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.5; i=$((i+1)); done; kill -KILL -"$PGPOOL" 2>/dev/null',
          ],
          { detached: true, stdio: 'ignore', env: { PATH: env['PATH'] ?? '/usr/bin:/bin', BENCH: String(process.pid), PGPOOL: String(pid) } },
        );
  watchdog?.on('error', () => {});
  watchdog?.unref();
  const stop = async () => {
    if (watchdog?.pid !== undefined) {
      try {
        process.kill(-watchdog.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (alive() && pid !== undefined) {
      try {
        process.kill(pid, 'SIGINT'); // fast shutdown
      } catch {
        // already gone
      }
      await Promise.race([gone, new Promise((r) => setTimeout(r, 10_000))]);
    }
    // Children that outlived the parent (or a parent that ignored SIGINT): kill the whole group.
    killGroup();
    process.off('exit', exitHook);
  };
  const psql = (sql: string, extra: string[] = []) =>
    run('psql', ['-X', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', ...extra, '-c', sql], { timeoutMs: 5000 });
  for (let i = 0; i < 150 && pid !== undefined; i++) {
    const r = await psql('select 1', ['-At']);
    if (r.code === 0) {
      return {
        name: 'pgpool-cache',
        port,
        pid,
        proc,
        stop,
        cacheCounters: async () => {
          // SHOW pool_cache: num_cache_hits (answered from the cache) and num_selects (cacheable
          // SELECTs that went to PostgreSQL), both counted since pgpool started. Its own
          // cache_hit_ratio column is hits / (hits + selects), rounded to 2 digits.
          const s = await psql('SHOW pool_cache', ['-A', '-F', '\t']);
          if (s.code !== 0) return null;
          const [head, row] = s.stdout.split('\n');
          if (head === undefined || row === undefined) return null;
          const cols = head.split('\t');
          const vals = row.split('\t');
          const get = (k: string) => Number(vals[cols.indexOf(k)]);
          const hits = get('num_cache_hits');
          const misses = get('num_selects');
          return Number.isFinite(hits) && Number.isFinite(misses) ? { hits, misses } : null;
        },
      };
    }
    if (!alive()) break;
    await new Promise((r2) => setTimeout(r2, 100));
  }
  let log = '';
  try {
    log = fs.readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join('\n');
  } catch {
    // no log
  }
  process.stderr.write(`pgpool did not start; skipping pgpool-cache (${logFile}; last lines:\n${log})\n`);
  await stop();
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
    case 'hotset':
    case 'hotset-extended': {
      const f = path.join(dir, 'hotset.sql');
      if (!fs.existsSync(f)) {
        fs.writeFileSync(f, '\\set aid random(1, 1000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n');
        fs.chmodSync(f, 0o644);
      }
      return ['-f', f, '-M', w === 'hotset' ? 'simple' : 'extended'];
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

/** CPU ticks of every process tree charged to t. */
function targetTicks(t: Target): number {
  let n = 0;
  for (const pid of [...(t.pid === null ? [] : [t.pid]), ...(t.extraPids ?? [])]) n += treeCpuTicks(pid);
  return n;
}

async function runCell(w: Workload, t: Target, repeat: number, dir: string): Promise<Cell> {
  const ports = [t.port, ...(t.extraPorts ?? [])];
  // Several instances: one pgbench per instance, the clients and threads split evenly.
  const clients = Math.max(1, Math.floor(CLIENTS / ports.length));
  const threads = Math.max(1, Math.floor(THREADS / ports.length));
  const prefix = path.join(dir, `pgb-${w}-${t.name}-${repeat}`);
  const argsFor = (port: number, i: number) => [
    '-n',
    '-c',
    String(clients),
    '-j',
    String(threads),
    '-T',
    String(DURATION),
    ...workloadArgs(w, dir),
    '-l',
    // A 10% sample of the transactions gives p99 from 10^4-10^5 latencies per cell while pgbench
    // spends a tenth of the CPU on its log; the same for every target.
    `--sampling-rate=${LATENCY_SAMPLE}`,
    `--log-prefix=${ports.length === 1 ? prefix : `${prefix}-${i}`}`,
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-U',
    'postgres',
    'postgres',
  ];
  // Cache counters are read outside the CPU window: the SHOW query is not the workload's.
  const cache0 = (await t.cacheCounters?.()) ?? null;
  const before = targetTicks(t);
  const env = t.env === undefined ? process.env : { ...process.env, ...t.env };
  const results = await Promise.all(ports.map((port, i) => run('pgbench', argsFor(port, i), { timeoutMs: (DURATION + 60) * 1000, cwd: dir, env })));
  const after = targetTicks(t);
  const cache1 = (await t.cacheCounters?.()) ?? null;
  let tps = 0;
  let transactions = 0;
  let failed = 0;
  let latencySum = 0;
  const lats: number[] = [];
  for (const [i, r] of results.entries()) {
    if (r.code !== 0) throw new Error(`pgbench ${argsFor(ports[i]!, i).join(' ')} failed (${r.code}): ${r.stderr}\n${r.stdout}`);
    const num = (re: RegExp) => {
      const m = re.exec(r.stdout);
      return m ? Number(m[1]) : NaN;
    };
    const n = num(/number of transactions actually processed: (\d+)/);
    // The pgbench processes ran side by side for the same time: their rates add up.
    tps += num(/tps = ([\d.]+) \(without initial connection time\)/);
    transactions += n;
    failed += num(/number of failed transactions: (\d+)/) || 0;
    latencySum += num(/latency average = ([\d.]+) ms/) * n;
    for (const x of readLatencies(ports.length === 1 ? prefix : `${prefix}-${i}`)) lats.push(x);
  }
  const lat = Float64Array.from(lats);
  lat.sort();
  return {
    workload: w,
    target: t.name,
    repeat,
    tps,
    transactions,
    failed,
    latencyMeanMs: latencySum / transactions,
    latencyP99Ms: percentile(lat, 99) / 1000,
    cpuUsPerTxn: t.pid === null ? null : (((after - before) / CLK_TCK) * 1e6) / transactions,
    cacheHitRatio: cache0 !== null && cache1 !== null ? hitRatio(cache0, cache1) : null,
  };
}

function hitRatio(a: CacheCounters, b: CacheCounters): number | null {
  const hits = b.hits - a.hits;
  const lookups = hits + (b.misses - a.misses);
  return lookups > 0 ? hits / lookups : null;
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
  tpsVsPgpoolCache: number | null;
  /** tps as a fraction of pgscribe-log's (the cost of a feature on top of logging). */
  tpsVsLog: number | null;
  /** hotset workloads: tps as a fraction of node-ceiling's (what a Node server answering from memory reaches). */
  tpsVsCeiling: number | null;
  cpuVsRelay: number | null;
  cpuVsPgbouncer: number | null;
  /** pgpool-cache only: median over repeats of the query cache's hit ratio in the run. */
  cacheHitRatio: number | null;
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
        tpsVsPgpoolCache: t === 'pgpool-cache' ? null : ratio(tps, med(w, 'pgpool-cache', (c) => c.tps)),
        tpsVsLog: t === 'pgscribe-log' || t === 'direct' ? null : ratio(tps, med(w, 'pgscribe-log', (c) => c.tps)),
        tpsVsCeiling: t === 'node-ceiling' ? null : ratio(tps, med(w, 'node-ceiling', (c) => c.tps)),
        cpuVsRelay: t === 'node-relay' ? null : ratio(cpu, med(w, 'node-relay', (c) => c.cpuUsPerTxn)),
        cpuVsPgbouncer: t === 'pgbouncer' ? null : ratio(cpu, med(w, 'pgbouncer', (c) => c.cpuUsPerTxn)),
        cacheHitRatio: med(w, t, (c) => c.cacheHitRatio),
      });
    }
  }
  return out;
}

const f1 = (x: number | null, d = 1) => (x === null || !Number.isFinite(x) ? '' : x.toFixed(d));

/** The TLS line under the table: pgscribe-tls against pgscribe-log on the same workload. */
function tlsCost(rows: Summary[]): string {
  const out: string[] = [];
  for (const r of rows) {
    if (r.target !== 'pgscribe-tls') continue;
    const plain = rows.find((x) => x.workload === r.workload && x.target === 'pgscribe-log');
    if (plain === undefined) continue;
    const cpu = r.cpuUsPerTxn !== null && plain.cpuUsPerTxn !== null ? `, proxy CPU ${f1(r.cpuUsPerTxn)} vs ${f1(plain.cpuUsPerTxn)} µs/txn (+${f1(r.cpuUsPerTxn - plain.cpuUsPerTxn)})` : '';
    out.push(
      `TLS cost (${r.workload}, TLS between pgbench and pgscribe): ${f1(r.tps, 0)} vs ${f1(plain.tps, 0)} tps (${f1(r.tps / plain.tps, 2)}x pgscribe-log)${cpu}, mean latency ${f1(r.latencyMeanMs, 3)} vs ${f1(plain.latencyMeanMs, 3)} ms`,
    );
  }
  return out.length === 0 ? '' : '\n' + out.join('\n') + '\n';
}

/**
 * The shared-cache lines under the table: per hot-set workload, two instances sharing Redis
 * against one instance, two without Redis, and direct; with the share of cacheable lookups that
 * either cache level answered (summed over instances, median of the runs).
 */
function sharedCacheLines(rows: Summary[]): string {
  const out: string[] = [];
  const pct = (r: Summary | undefined) => (r?.cacheHitRatio === null || r?.cacheHitRatio === undefined ? '?' : `${(r.cacheHitRatio * 100).toFixed(1)}%`);
  for (const w of WORKLOADS) {
    const get = (t: TargetName) => rows.find((x) => x.workload === w && x.target === t);
    const x2 = get('pgscribe-l2-x2');
    if (x2 === undefined) continue;
    const vs = (t: TargetName) => {
      const o = get(t);
      return o === undefined ? '' : `, ${f1(x2.tps / o.tps, 2)}x ${t} (${f1(o.tps, 0)} tps${o.cacheHitRatio === null ? '' : `, hits ${pct(o)}`})`;
    };
    out.push(
      `Two instances sharing Redis (${w}): ${f1(x2.tps, 0)} tps, hits ${pct(x2)}, proxy+Redis CPU ${f1(x2.cpuUsPerTxn)} µs/txn` +
        vs('direct') + vs('pgscribe-cache') + vs('pgscribe-l2') + vs('pgscribe-cache-x2'),
    );
  }
  return out.length === 0 ? '' : '\n' + out.join('\n') + '\n';
}

function markdown(rows: Summary[]): string {
  const lines = [
    '| workload | target | tps | mean ms | p99 ms | proxy CPU µs/txn | tps vs direct | tps vs relay | tps vs pgbouncer | tps vs pgpool-cache | tps vs pgscribe-log | tps vs ceiling | CPU vs relay | CPU vs pgbouncer |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.workload} | ${r.target} | ${f1(r.tps, 0)} | ${f1(r.latencyMeanMs, 3)} | ${f1(r.latencyP99Ms, 3)} | ${f1(r.cpuUsPerTxn)} | ${f1(r.tpsVsDirect, 2)} | ${f1(r.tpsVsRelay, 2)} | ${f1(r.tpsVsPgbouncer, 2)} | ${f1(r.tpsVsPgpoolCache, 2)} | ${f1(r.tpsVsLog, 2)} | ${f1(r.tpsVsCeiling, 2)} | ${f1(r.cpuVsRelay, 2)} | ${f1(r.cpuVsPgbouncer, 2)} |`,
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
  let redis: RedisServer | null = null;
  let cleaning: Promise<void> | null = null;
  // Idempotent: SIGINT and the finally below may both call it.
  const cleanup = () =>
    (cleaning ??= (async () => {
      await Promise.all(targets.map(async (t) => (t.stop ? t.stop() : void t.proc?.kill('SIGKILL'))));
      await redis?.stop();
      await pg?.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    })());
  process.on('SIGINT', () => {
    void cleanup().then(() => process.exit(130));
  });
  process.on('SIGTERM', () => {
    void cleanup().then(() => process.exit(143));
  });
  try {
    pg = await startCluster({ conf: { max_connections: '300', shared_buffers: '256MB' } });
    const init = await run('pgbench', ['-i', '-q', '-s', String(SCALE), '-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', 'postgres'], {
      timeoutMs: 600_000,
    });
    if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);
    for (const name of TARGETS) {
      if (name === 'direct') targets.push({ name, port: pg.port, pid: null, proc: null });
      else if (name === 'pgscribe-log' || name === 'pgscribe-nolog' || name === 'pgscribe-tls') targets.push(await startPgscribe(name, pg.port, dir, null));
      else if (
        name === 'pgscribe-cache' ||
        name === 'pgscribe-cache-nolog' ||
        name === 'pgscribe-cache-w2' ||
        name === 'pgscribe-insight' ||
        name === 'pgscribe-l2' ||
        name === 'pgscribe-cache-x2' ||
        name === 'pgscribe-l2-x2'
      ) {
        if (!WORKLOADS.some((w) => runsOn(name, w))) continue;
        // These need flags (and for some a redis-server) that may be missing: a start-up failure skips the target.
        try {
          if (REDIS_TARGETS[name] !== undefined && redis === null) {
            redis = await startRedis();
            process.stderr.write(`redis-server for the shared-cache targets on port ${redis.port}\n`);
          }
          const t = await startPgscribe(name, pg.port, dir, REDIS_TARGETS[name] === undefined ? null : redis!.port);
          if (REDIS_TARGETS[name] !== undefined) t.extraPids = [...(t.extraPids ?? []), redis!.pid];
          targets.push(t);
        } catch (err) {
          process.stderr.write(`${name} failed to start; skipping it (its rows stay absent): ${(err as Error).message}\n`);
        }
      }
      else if (name === 'node-relay') targets.push(await startRelay(pg.port));
      else if (name === 'node-ceiling') {
        if (WORKLOADS.some((w) => runsOn(name, w))) targets.push(await startCeiling());
      }
      else if (name === 'pgbouncer') {
        const b = await startPgbouncer(pg.port, dir);
        if (b) targets.push(b);
        else process.stderr.write('pgbouncer not installed: its column stays empty\n');
      } else if (name === 'pgpool-cache') {
        const p = await startPgpool(pg.port, dir);
        if (p) targets.push(p);
        else if (findPgpool() === null) process.stderr.write('pgpool not installed: pgpool-cache rows and its column stay empty\n');
      }
    }
    const started = new Date();
    const cells: Cell[] = [];
    const runs = (w: Workload) => targets.filter((t) => runsOn(t.name, w) && (t.workloads === undefined || t.workloads.includes(w)));
    const total = REPEATS * WORKLOADS.reduce((n, w) => n + runs(w).length, 0);
    for (let rep = 1; rep <= REPEATS; rep++) {
      for (const w of WORKLOADS) {
        for (const t of runs(w)) {
          const c = await runCell(w, t, rep, dir);
          cells.push(c);
          process.stderr.write(
            `[${cells.length}/${total}] repeat ${rep} ${w} ${t.name}: ${c.tps.toFixed(0)} tps, p99 ${c.latencyP99Ms.toFixed(2)} ms` +
              (c.cpuUsPerTxn === null ? '' : `, ${c.cpuUsPerTxn.toFixed(1)} µs CPU/txn`) +
              (c.cacheHitRatio === null ? '' : `, cache hit ratio ${(c.cacheHitRatio * 100).toFixed(1)}%`) +
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
      pgpool: pgpoolVersion() + (targets.some((t) => t.name === 'pgpool-cache') || findPgpool() === null ? '' : ' (not run)'),
    };
    const settings = { DURATION, CLIENTS, THREADS, REPEATS, SCALE, WORKLOADS, TARGETS: targets.map((t) => t.name) };
    const md = markdown(rows);
    process.stdout.write(
      `\n## pgscribe bench ${machine.date}\n\n` +
        `Machine: ${machine.cores} × ${machine.cpu}, ${machine.memGiB} GiB; Node ${machine.node}; ${machine.postgres}; ${machine.pgbouncer}; ${machine.pgpool}\n` +
        `Command: make bench (DURATION=${DURATION} CLIENTS=${CLIENTS} THREADS=${THREADS} REPEATS=${REPEATS} SCALE=${SCALE}); medians of ${REPEATS} interleaved repeats.\n\n` +
        md +
        '\n' +
        tlsCost(rows) +
        sharedCacheLines(rows),
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
