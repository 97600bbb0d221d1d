/**
 * How each `make bench` target starts and stops: PostgreSQL itself (direct), pgscribe with each
 * target's flags (this build, and with BASELINE_MAIN another one as `<target>@base`), the Node
 * relay and ceiling servers; PgBouncer and Pgpool-II are in pgbouncer.ts and pgpool.ts.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeCerts } from '../../test/harness/certs';
import { MAIN, startProxy, type Proxy } from '../../test/harness/proxy';
import { startRedis, type RedisServer } from '../../test/harness/redis';
import { sleep } from '../../test/harness/time';
import { startPgbouncer } from './pgbouncer';
import { findPgpool, startPgpool } from './pgpool';
import { BASELINE_MAIN, BASE_SUFFIX, TARGETS, WORKLOADS, isPgscribe, type PgscribeKind, type TargetKind, type Workload } from './settings';
import { psql } from './psql';
import type { Target, WalProbe } from './target';

/**
 * node-ceiling answers every query with a constant row, the two-instance targets are about the
 * hot set, and pgscribe-cache-wal is measured against pgscribe-cache on it (issue 16): hot set only
 * (and write-mix for the last, below).
 */
const HOTSET_ONLY: readonly TargetKind[] = ['node-ceiling', 'pgscribe-cache-x2', 'pgscribe-l2-x2', 'pgscribe-cache-wal', 'pgscribe-cache-twin', 'pgscribe-cache-p2', 'pgscribe-cache-p4'];

/**
 * write-mix compares the cache's two invalidation modes with PostgreSQL directly and with
 * pgscribe without its cache; the other targets would add minutes to `make bench` for no question
 * asked of them.
 */
const WRITE_MIX_TARGETS: readonly TargetKind[] = ['direct', 'pgscribe-log', 'pgscribe-cache', 'pgscribe-cache-wal'];

/** Whether a target of this kind runs workload w at all. */
export const runsOn = (k: TargetKind, w: Workload): boolean =>
  w === 'write-mix' ? WRITE_MIX_TARGETS.includes(k) : !HOTSET_ONLY.includes(k) || w === 'hotset' || w === 'hotset-extended';

/** Extra pgscribe flags of each pgscribe target; the *-nolog ones run with --log none, the others log to a file. */
const PGSCRIBE_FLAGS: Record<PgscribeKind, string[]> = {
  'pgscribe-log': [],
  'pgscribe-nolog': [],
  'pgscribe-tls': [],
  'pgscribe-cache': ['--cache', '--singleflight'],
  // The same cache (and TTL) as pgscribe-cache: only the invalidation differs.
  'pgscribe-cache-wal': ['--cache', '--singleflight', '--cache-invalidation', 'wal'],
  // Identical to pgscribe-cache: how far apart two runs of the same thing land (wal-report.ts).
  'pgscribe-cache-twin': ['--cache', '--singleflight'],
  'pgscribe-cache-nolog': ['--cache', '--singleflight'],
  'pgscribe-cache-w2': ['--cache', '--singleflight', '--workers', '2'],
  'pgscribe-insight': ['--log-completions', '--admin', '127.0.0.1:0'],
  // Every statement redacted: its parameters a count, its SQL in the normal form (the worst case).
  'pgscribe-log-redact': ['--log-redact', '.'],
  'pgscribe-log-normalized': ['--log-sql', 'normalized'],
  // One session in ten written (pgbench's sessions all match the rule).
  'pgscribe-log-sample10': ['--log-sample', 'rate=0.1'],
  // JSON lines: the baseline of pgscribe-log-replay, which adds the D/C/S/H lines, the wire
  // details, the session lines, the done lines (it turns log-completions on) and rows digests.
  'pgscribe-log-json': ['--log-format', 'json'],
  'pgscribe-log-replay': ['--log-format', 'json', '--log-replay'],
  'pgscribe-l2': ['--cache', '--singleflight'],
  'pgscribe-cache-x2': ['--cache', '--singleflight'],
  'pgscribe-l2-x2': ['--cache', '--singleflight'],
  'pgscribe-log-p2': ['--processes', '2'],
  'pgscribe-cache-p2': ['--cache', '--singleflight', '--processes', '2'],
  'pgscribe-cache-p4': ['--cache', '--singleflight', '--processes', '4'],
};

/**
 * The cache targets read the catalog as the bench cluster's superuser (without it --cache caches
 * only what cache-rules allow). A build from before catalog-user existed runs without it.
 */
const CATALOG_FLAGS = ['--catalog-user', 'postgres'];

/** The build knows --catalog-user (asked once per build). */
const knowsCatalog = new Map<string, boolean>();
function buildKnowsCatalog(main: string): boolean {
  let k = knowsCatalog.get(main);
  if (k === undefined) {
    k = spawnSync(process.execPath, [main, '--help'], { encoding: 'utf8' }).stdout.includes('--catalog-user');
    knowsCatalog.set(main, k);
  }
  return k;
}

/** The targets that share a Redis (--redis), and their key prefixes (one each: no entry crosses targets). */
const REDIS_PREFIXES: Partial<Record<PgscribeKind, string>> = { 'pgscribe-l2': 'bench-l2:', 'pgscribe-l2-x2': 'bench-l2x2:' };
/** Targets made of two instances. */
const INSTANCES: Partial<Record<PgscribeKind, number>> = { 'pgscribe-cache-x2': 2, 'pgscribe-l2-x2': 2 };

/** The targets of one bench run: started in TARGETS order, stopped together. */
export class TargetSet {
  readonly started: Target[] = [];
  private redis: RedisServer | null = null;

  constructor(
    private readonly pgPort: number,
    private readonly dir: string,
  ) {}

  /**
   * Start every selected target that runs at least one selected workload. Targets that need
   * something missing (PgBouncer, Pgpool-II, redis-server, flags an older pgscribe lacks) are
   * reported on stderr and skipped. With BASELINE_MAIN, each pgscribe target's @base twin starts
   * right after it.
   */
  async startAll(): Promise<void> {
    for (const kind of TARGETS) {
      if (!WORKLOADS.some((w) => runsOn(kind, w))) continue;
      if (kind === 'direct') this.started.push({ name: kind, kind, base: false, port: this.pgPort, pid: null, stop: async () => {} });
      else if (isPgscribe(kind)) {
        // The plain ones abort the bench when they fail; the others need flags (and some a
        // redis-server) that may be missing: a start-up failure skips the target.
        const optional = kind !== 'pgscribe-log' && kind !== 'pgscribe-nolog' && kind !== 'pgscribe-tls';
        if (optional) await this.skipOnFailure(kind, () => this.startPgscribe(kind, MAIN, false));
        else this.started.push(await this.startPgscribe(kind, MAIN, false));
        // The other build's failure never aborts the run: it may predate a flag.
        if (BASELINE_MAIN !== null) await this.skipOnFailure(kind + BASE_SUFFIX, () => this.startPgscribe(kind, BASELINE_MAIN!, true));
      } else if (kind === 'node-relay') this.started.push(await startNodeServer(kind, 'relay.js', ['0', `127.0.0.1:${this.pgPort}`]));
      else if (kind === 'node-relay-onread') this.started.push(await startNodeServer(kind, 'relay-onread.js', ['0', `127.0.0.1:${this.pgPort}`]));
      else if (kind === 'node-relay-minlog') this.started.push(await startNodeServer(kind, 'relay-minlog.js', ['0', `127.0.0.1:${this.pgPort}`, path.join(this.dir, 'queries-node-relay-minlog.log')]));
      else if (kind === 'node-ceiling') this.started.push(await startNodeServer(kind, 'constant-server.js', ['0']));
      else if (kind === 'pgbouncer') {
        const b = await startPgbouncer(this.pgPort, this.dir);
        if (b) this.started.push(b);
        else process.stderr.write('pgbouncer not installed: its column stays empty\n');
      } else if (kind === 'pgpool-cache') {
        const p = await startPgpool(this.pgPort, this.dir);
        if (p) this.started.push(p);
        else if (findPgpool() === null) process.stderr.write('pgpool not installed: pgpool-cache rows and its column stay empty\n');
      }
    }
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.started.map((t) => t.stop()));
    await this.redis?.stop();
  }

  private async skipOnFailure(name: string, start: () => Promise<Target>): Promise<void> {
    try {
      this.started.push(await start());
    } catch (err) {
      process.stderr.write(`${name} failed to start; skipping it (its rows stay absent): ${(err as Error).message}\n`);
    }
  }

  private async sharedRedis(): Promise<RedisServer> {
    if (this.redis === null) {
      this.redis = await startRedis();
      process.stderr.write(`redis-server for the shared-cache targets on port ${this.redis.port}\n`);
    }
    return this.redis;
  }

  /** One or two pgscribe instances of `main` with the target's flags. */
  private async startPgscribe(kind: PgscribeKind, main: string, base: boolean): Promise<Target> {
    const name = kind + (base ? BASE_SUFFIX : '');
    const logOn = !kind.endsWith('-nolog');
    // Each build its own keys: an older entry format must not meet a newer reader.
    const prefix = REDIS_PREFIXES[kind] === undefined ? undefined : REDIS_PREFIXES[kind] + (base ? 'base:' : '');
    const redis = prefix === undefined ? null : await this.sharedRedis();
    const n = INSTANCES[kind] ?? 1;
    const procs: Proxy[] = [];
    const logs: string[] = [];
    try {
      for (let i = 0; i < n; i++) {
        // One log file per instance: several pgscribe targets with the log on run side by side.
        const logPath = path.join(this.dir, n === 1 ? `queries-${name}.log` : `queries-${name}-${i}.log`);
        const p = await startProxy({
          upstreamPort: this.pgPort,
          main,
          detached: true,
          // The tail of what it says, for its stats lines.
          stderrLimit: 65536,
          startTimeoutMs: 15000,
          args: [
            '--max-connections',
            '1000',
            '--log',
            logOn ? logPath : 'none',
            ...PGSCRIBE_FLAGS[kind],
            ...(PGSCRIBE_FLAGS[kind].includes('--cache') && buildKnowsCatalog(main) ? CATALOG_FLAGS : []),
            ...(kind === 'pgscribe-tls' ? tlsFlags() : []),
            ...(redis === null ? [] : ['--redis', `127.0.0.1:${redis.port}`, '--redis-prefix', prefix!]),
          ],
        });
        procs.push(p);
        logs.push(logPath);
        if (redis !== null) await p.waitStderr(/redis: shared cache available/, 15000);
      }
    } catch (err) {
      await Promise.all(procs.map((p) => p.stop('SIGKILL')));
      throw err;
    }
    const t: Target = {
      name,
      kind,
      base,
      port: procs[0]!.port,
      pid: procs[0]!.proc.pid!,
      stop: async () => void (await Promise.all(procs.map((p) => p.stop('SIGKILL')))),
    };
    if (n > 1) {
      t.extraPorts = procs.slice(1).map((p) => p.port);
      t.extraPids = procs.slice(1).map((p) => p.proc.pid!);
      t.workloads = ['hotset', 'hotset-extended'];
    }
    // Its Redis's CPU is charged too.
    if (redis !== null) t.extraPids = [...(t.extraPids ?? []), redis.pid];
    if (kind === 'pgscribe-tls') {
      t.env = { PGSSLMODE: 'require' };
      t.workloads = ['select-simple'];
    }
    if (PGSCRIBE_FLAGS[kind].includes('--cache')) {
      // Lookups answered by either cache level, summed over the instances.
      t.cacheCounters = async () => {
        let hits = 0;
        let misses = 0;
        for (const p of procs) {
          const st = await p.stats().catch((): Record<string, number> => ({}));
          const l2 = st['cache_l2_hits'] ?? 0;
          hits += (st['cache_hits'] ?? 0) + l2;
          misses += (st['cache_misses'] ?? 0) - l2;
        }
        return { hits, misses };
      };
    }
    if (PGSCRIBE_FLAGS[kind].includes('wal')) t.wal = await walProbe(procs[0]!, this.pgPort);
    if (logOn) {
      t.betweenRuns = async () => {
        // Rotate: the next run starts on a fresh file, the old one is deleted.
        for (const [i, p] of procs.entries()) {
          fs.rmSync(logs[i]!, { force: true });
          p.proc.kill('SIGHUP');
        }
        await sleep(200);
      };
    }
    return t;
  }
}

/**
 * A pgscribe in wal mode, its change stream up: a first session opens the stream of database
 * postgres, which must be streaming before a run (until then reads are relayed, not cached).
 * Throws (the target is skipped) when it is not up within 30 s.
 */
async function walProbe(p: Proxy, pgPort: number): Promise<WalProbe> {
  await psql(p.port, 'SELECT 1');
  const until = Date.now() + 30_000;
  while ((await p.stats())['wal_streams_up'] !== 1) {
    if (Date.now() > until) throw new Error(`its change stream is not up after 30 s: ${p.stderr().slice(-2000)}`);
    await sleep(200);
  }
  const pid = p.proc.pid!;
  return {
    stats: () => p.stats(),
    // Its slots are named pgscribe_<pid>_<n> (src/wal/setup.ts); _ escaped, LIKE's one-character wildcard.
    senderPids: async () =>
      (await psql(pgPort, `SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE active_pid IS NOT NULL AND slot_name LIKE 'pgscribe\\_${pid}\\_%'`))
        .split('\n')
        .filter((x) => x !== '')
        .map(Number),
  };
}

/** --tls-cert/--tls-key of a throwaway certificate (openssl, as in the tests). */
function tlsFlags(): string[] {
  const certs = makeCerts();
  return ['--tls-cert', certs.server.cert, '--tls-key', certs.server.key];
}

/** bench/relay*.ts or bench/constant-server.ts, which print `listening PORT` on stdout. */
async function startNodeServer(kind: 'node-relay' | 'node-relay-onread' | 'node-relay-minlog' | 'node-ceiling', script: string, args: string[]): Promise<Target> {
  const proc = spawn(process.execPath, [path.join(__dirname, '..', script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const m = await waitForLine(proc, /listening (\d+)/);
  return {
    name: kind,
    kind,
    base: false,
    port: Number(m[1]),
    pid: proc.pid!,
    stop: async () => void proc.kill('SIGKILL'),
  };
}

function waitForLine(proc: ChildProcess, re: RegExp, timeoutMs = 15000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const s = proc.stdout!;
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
