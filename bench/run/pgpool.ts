/** Pgpool-II with its in-memory query cache as a `make bench` target (pgpool-cache), when it is installed. */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePort } from '../../test/harness/free-port';
import { findBinary, run } from '../../test/harness/run';
import { sleep } from '../../test/harness/time';
import { watchdog } from '../../test/harness/watchdog';
import { CLIENTS } from './settings';
import { postgresUser } from './postgres-user';
import type { Target } from './target';

/** The pgpool binary, or null when it is not installed. */
export function findPgpool(): string | null {
  return findBinary('pgpool');
}

/** "pgpool-II version 4.3.5 (tamahomeboshi)"; pgpool prints it on stderr. */
export function pgpoolVersion(): string {
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
 *   CPU samples (see test/harness/proc.ts) and no run pays for reconnecting.
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
export async function startPgpool(pgPort: number, dir: string): Promise<Target | null> {
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
  // Like PgBouncer: run it as the postgres user, not as root.
  const ids = postgresUser(dir, pdir);
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
  const dog =
    pid === undefined
      ? undefined
      : watchdog('kill -INT "$PGPOOL" 2>/dev/null; i=0; while kill -0 "$PGPOOL" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.5; i=$((i+1)); done; kill -KILL -"$PGPOOL" 2>/dev/null', {
          PGPOOL: String(pid),
        });
  const stop = async () => {
    dog?.cancel();
    if (alive() && pid !== undefined) {
      try {
        process.kill(pid, 'SIGINT'); // fast shutdown
      } catch {
        // already gone
      }
      await Promise.race([gone, sleep(10_000)]);
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
        kind: 'pgpool-cache',
        base: false,
        port,
        pid,
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
    await sleep(100);
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
