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
 * /proc before and after: see test/harness/proc.ts). Repeats report the median. Output: a
 * markdown table on stdout and JSON under logs/.
 *
 * Workloads:
 *   select-simple     pgbench -S -M simple
 *   select-prepared   pgbench -S -M prepared
 *   tpcb              pgbench default TPC-B-like script, -M simple
 *   hotset            SELECT abalance FROM pgbench_accounts WHERE aid = :aid, aid in 1..1000, -M simple
 *   hotset-extended   the same script with -M extended (Parse/Bind/Execute, unnamed statement)
 *   write-mix         the hot set with 10% writes, half of them firing a trigger that writes a table
 *                     the reads touch (run/write-mix.ts); on direct, pgscribe-log, pgscribe-cache and
 *                     pgscribe-cache-wal only
 * Targets:
 *   direct            PostgreSQL itself
 *   pgscribe-log      pgscribe (dist/main.js) with the file log on (rotated between runs)
 *   pgscribe-nolog    pgscribe with --log none
 *   pgscribe-tls      pgscribe-log with TLS on the client side (--tls-cert/--tls-key, a throwaway
 *                     certificate) and pgbench with sslmode=require; select-simple only: set
 *                     against pgscribe-log it is the cost of TLS (encryption, the TLS layer's reads
 *                     and writes), reported under the table
 *   node-relay        bench/relay.ts: net sockets piped both ways, the floor for a Node proxy
 *   node-relay-onread bench/relay-onread.ts: the same relay reading into one reused buffer per
 *                     socket (onread), no Readable stream: what Node itself allows
 *   node-relay-minlog bench/relay-minlog.ts: node-relay-onread plus pgscribe's framer and writer
 *                     logging one line per Q/P/B/E (no decoding, no protocol tracking): the
 *                     floor for a Node relay that logs every query
 *   pgbouncer         PgBouncer in session mode (skipped when not installed)
 *   pgscribe-cache    pgscribe-log plus --cache --singleflight (the result cache)
 *   pgscribe-cache-wal pgscribe-cache plus --cache-invalidation wal (issue 16: PostgreSQL's change
 *                     stream drops what any commit changed); hotset workloads and write-mix only.
 *                     Its cells also report its stream's commits, commit waits and lag p99, and its
 *                     walsender's CPU; during the other targets' cells its idle consumer's CPU
 *                     (run/wal-sample.ts)
 *   pgscribe-cache-twin pgscribe-cache again, same build and flags (hotset workloads only): the
 *                     A/A control. How far its tps lands from pgscribe-cache's is the spread of the
 *                     run itself, the resolution of the wal-vs-ttl ratio above
 *   pgscribe-log-p2   pgscribe-log with --processes 2 (issue 17: two serving processes behind one
 *                     listen address, one log written by the primary)
 *   pgscribe-cache-p2, pgscribe-cache-p4  pgscribe-cache with --processes 2 and 4 (hotset
 *                     workloads only); the proxy CPU counts the primary and every process
 *   pgscribe-cache-nolog  pgscribe-cache with --log none
 *   pgscribe-cache-w2 pgscribe-cache plus --workers 2
 *   pgpool-cache      Pgpool-II (raw mode, one backend) with its shmem in-memory query cache on
 *                     (skipped when not installed or it does not start); its settings and why
 *                     are in startPgpool()
 *   pgscribe-insight  pgscribe-log plus --log-completions and --admin (a done line per query, query
 *                     digests and table heat): compare with pgscribe-log for their cost
 *   pgscribe-log-redact      pgscribe-log with --log-redact . (every statement redacted: parameters
 *                     as a count, SQL in the digest normal form)
 *   pgscribe-log-normalized  pgscribe-log with --log-sql normalized (the same on every line)
 *   pgscribe-log-sample10    pgscribe-log with --log-sample rate=0.1 (a tenth of the sessions
 *                     written; pgbench's few long sessions make this a coarse sample)
 *   pgscribe-log-json        pgscribe-log with --log-format json
 *   pgscribe-log-replay      pgscribe-log-json plus --log-replay (issue 20: the replayable log, which
 *                     turns --log-completions on): set against pgscribe-log-json, the cost of replay
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
 * all), TARGETS (comma list of the targets above, default all), BASELINE_MAIN (below).
 *
 * Old build vs new build in one run: BASELINE_MAIN=/path/to/other/checkout/dist/main.js makes
 * every selected pgscribe-* target also run as `<target>@base` with that build, same flags. Each
 * repeat runs a target and its @base twin back to back; every other repeat runs the targets in
 * reverse order (so the twin first), so that no target always runs on a warmer (or more tired)
 * machine, or always right after the same neighbour. The table gains "tps vs @base"
 * and "CPU vs @base" columns on this build's rows (this build / the other), and a list of those
 * ratios follows it. The other build needs its package.json above its dist/ (pgscribe reads its
 * version there), e.g. a second checkout, or a copy: `mkdir -p /tmp/base && cp -r dist
 * package.json /tmp/base/` before a change, then BASELINE_MAIN=/tmp/base/dist/main.js after it.
 * A @base target that does not start (an older build without a flag) is skipped.
 *
 * The code: run/settings.ts (knobs, workloads, targets), run/targets.ts (how each target
 * starts, with run/pgbouncer.ts and run/pgpool.ts), run/cell.ts (one measured pgbench run) and
 * run/report.ts (medians, ratios, table, JSON), with run/write-mix.ts (the write-mix workload),
 * run/wal-sample.ts and run/wal-report.ts (the wal target's figures).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCluster, type PgCluster } from '../test/harness/pg-cluster';
import { MAIN } from '../test/harness/proxy';
import { run } from '../test/harness/run';
import { repoRoot } from './lib/common';
import { runCell, type Cell } from './run/cell';
import { writeReport } from './run/report';
import { REPEATS, SCALE, WORKLOADS, type Workload } from './run/settings';
import type { Target } from './run/target';
import { TargetSet, runsOn } from './run/targets';
import { setupWriteMix } from './run/write-mix';

const ROOT = repoRoot();

async function main(): Promise<void> {
  if (!fs.existsSync(MAIN)) throw new Error('dist/main.js missing: run make build');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-bench-'));
  fs.chmodSync(dir, 0o755);
  let pg: PgCluster | null = null;
  let targets: TargetSet | null = null;
  let cleaning: Promise<void> | null = null;
  // Idempotent: SIGINT and the finally below may both call it.
  const cleanup = () =>
    (cleaning ??= (async () => {
      await targets?.stopAll();
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
    if (WORKLOADS.includes('write-mix')) await setupWriteMix(pg.port);
    targets = new TargetSet(pg.port, dir);
    await targets.startAll();
    const started = new Date();
    const cells = await runRepeats(targets.started, dir);
    const out = writeReport(ROOT, started, cells, targets.started);
    process.stdout.write(`\nJSON: ${path.relative(ROOT, out)}\n`);
  } finally {
    await cleanup();
  }
}

/**
 * Every repeat runs every workload on every target that takes it, one after another, in TARGETS
 * order and in reverse every other repeat: a fixed order put pgscribe-cache-wal right after
 * pgscribe-cache in every repeat, and the two read-only hot-set rows differed by up to 11% in one
 * run and the other way in the next (docs/performance.md, the runs of 2026-12-05). A @base target
 * and its twin stay back to back.
 */
async function runRepeats(targets: readonly Target[], dir: string): Promise<Cell[]> {
  const cells: Cell[] = [];
  const runs = (w: Workload) => targets.filter((t) => runsOn(t.kind, w) && (t.workloads === undefined || t.workloads.includes(w)));
  const total = REPEATS * WORKLOADS.reduce((n, w) => n + runs(w).length, 0);
  for (let rep = 1; rep <= REPEATS; rep++) {
    for (const w of WORKLOADS) {
      for (const t of rep % 2 === 0 ? [...runs(w)].reverse() : runs(w)) {
        const c = await runCell(w, t, rep, dir, targets);
        cells.push(c);
        process.stderr.write(
          `[${cells.length}/${total}] repeat ${rep} ${w} ${t.name}: ${c.tps.toFixed(0)} tps, p99 ${c.latencyP99Ms.toFixed(2)} ms` +
            (c.cpuUsPerTxn === null ? '' : `, ${c.cpuUsPerTxn.toFixed(1)} µs CPU/txn`) +
            (c.cacheHitRatio === null ? '' : `, cache hit ratio ${(c.cacheHitRatio * 100).toFixed(1)}%`) +
            (c.wal === null ? '' : `, wal: ${c.wal.commits} commits, lag p99 ${c.wal.lagP99Ms} ms, walsender ${c.wal.walsenderCpuMs?.toFixed(0) ?? '?'} ms CPU`) +
            (c.failed ? `, ${c.failed} FAILED` : '') +
            '\n',
        );
        await t.betweenRuns?.();
      }
    }
  }
  return cells;
}

main().catch((err: Error) => {
  process.stderr.write(`bench failed: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
