/**
 * `make stress`: sysbench oltp_read_write and pgbench (tpcb-like, -M prepared) through pgscribe at
 * the same time for DURATION seconds, sampling the proxy every 5 s, then checking that it held up.
 *
 * Steps: start a throwaway PostgreSQL 15 (test/harness/pg-cluster.ts), create databases `sbtest`
 * and `pgbench`, start dist/main.js in front of it, run `sysbench prepare` and `pgbench -i`
 * through the proxy (COPY, DDL, multi-row INSERTs), wait until the proxy is idle and its log is
 * on disk, reset pg_stat_statements (directly, in database `postgres`), run the load, wait for the
 * proxy to be idle again, compare, shut the proxy down with SIGTERM, write the results.
 *
 * Samples (each of the proxy's `stats` lines, every 5 s): RSS (/proc/PID/status VmRSS), heap
 * used and external (stats line), CPU (utime+stime delta from /proc/PID/stat of the proxy and
 * its children, % of one core); with --processes N the stats line is the primary's total and each
 * serving process's RSS is judged too, from its own line,
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
 * TABLES (4), TABLE_SIZE (10000), SCALE (pgbench, 5), PGSCRIBE_ARGS (extra pgscribe flags),
 * SYSBENCH_ARGS (extra sysbench run options).
 *
 * The code, by phase: stress/setup.ts (cluster, databases, proxy), stress/load.ts (prepare, the
 * load, collecting), stress/checks.ts (the checks above), stress/report.ts (CSV, SVG, JSON,
 * summary); with stress/proxy.ts, stress/tools.ts, stress/sampler.ts and stress/parse.ts.
 */
import * as fs from 'node:fs';
import { judge } from './stress/checks';
import { collect, prepare, runLoad } from './stress/load';
import { report } from './stress/report';
import { setUp, type Resources } from './stress/setup';
import { killTools } from './stress/tools';

const res: Resources = { tmpDir: null, cluster: null, proxy: null };
let cleaning: Promise<void> | null = null;
let interrupted = false;

function cleanup(): Promise<void> {
  if (!cleaning) {
    cleaning = (async () => {
      killTools();
      await res.proxy?.kill();
      try {
        await res.cluster?.stop();
      } catch (e) {
        process.stderr.write(`stress: stopping the cluster: ${(e as Error).message}\n`);
      }
      if (res.tmpDir) fs.rmSync(res.tmpDir, { recursive: true, force: true });
    })();
  }
  return cleaning;
}

process.on('exit', () => {
  killTools();
  if (res.tmpDir) fs.rmSync(res.tmpDir, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    interrupted = true;
    process.stderr.write(`\nstress: ${sig}: stopping the load, the proxy and the cluster\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

/** The run, phase by phase; resolves with the exit status (1: a check failed). */
async function main(): Promise<number> {
  const setup = await setUp(res);
  const prepared = await prepare(setup);
  const loaded = await runLoad(setup);
  const collected = await collect(setup, prepared);
  const judgement = judge(setup, prepared, loaded, collected);
  report(setup, prepared, loaded, collected, judgement);
  return judgement.pass ? 0 : 1;
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
