/**
 * `make bench`'s report: medians over the repeats, the ratios between targets (and between this
 * build and BASELINE_MAIN's), a markdown table with the lines under it on stdout, and everything
 * as JSON under logs/.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PG_BIN } from '../../test/harness/pg-cluster';
import { runSync } from '../../test/harness/run';
import { median } from '../lib/common';
import type { Cell } from './cell';
import { findPgbouncer } from './pgbouncer';
import { findPgpool, pgpoolVersion } from './pgpool';
import { BASELINE_MAIN, BASE_SUFFIX, CLIENTS, DURATION, REPEATS, SCALE, THREADS, WORKLOADS, WRITE_MIX_SYNC_COMMIT, isPgscribe, type Workload } from './settings';
import type { Target } from './target';
import { consumerCosts, scriptLatencies, walColumns, walLines, type WalColumns } from './wal-report';

export interface Summary extends WalColumns {
  workload: Workload;
  target: string;
  tps: number;
  latencyMeanMs: number;
  latencyP99Ms: number;
  cpuUsPerTxn: number | null;
  failed: number;
  tpsVsDirect: number | null;
  tpsVsRelay: number | null;
  tpsVsPgbouncer: number | null;
  tpsVsPgpoolCache: number | null;
  /** tps as a fraction of pgscribe-log's of the same build (the cost of a feature on top of logging). */
  tpsVsLog: number | null;
  /** hotset workloads: tps as a fraction of node-ceiling's (what a Node server answering from memory reaches). */
  tpsVsCeiling: number | null;
  cpuVsRelay: number | null;
  cpuVsPgbouncer: number | null;
  /** With BASELINE_MAIN, on this build's pgscribe rows: tps as a fraction of the same target's @base. */
  tpsVsBase: number | null;
  /** With BASELINE_MAIN, on this build's pgscribe rows: CPU per transaction as a fraction of @base's. */
  cpuVsBase: number | null;
  /** The cache targets: median over repeats of the cache's hit ratio in the run. */
  cacheHitRatio: number | null;
  /** Workloads of several scripts (write-mix): each script's mean latency, ms, median over repeats. */
  scriptLatencyMs: Record<string, number> | null;
}

/** One row per workload and started target (in start order, each @base after its twin). */
export function summarise(cells: Cell[], targets: readonly Target[]): Summary[] {
  const out: Summary[] = [];
  const med = (w: Workload, t: string, f: (c: Cell) => number | null) => {
    const xs = cells.filter((c) => c.workload === w && c.target === t).map(f).filter((x): x is number => x !== null);
    return xs.length ? median(xs) : null;
  };
  const ratio = (a: number | null, b: number | null) => (a === null || b === null || !Number.isFinite(a) || !b ? null : a / b);
  for (const w of WORKLOADS) {
    for (const t of targets) {
      const tps = med(w, t.name, (c) => c.tps);
      if (tps === null) continue;
      const cpu = med(w, t.name, (c) => c.cpuUsPerTxn);
      // The feature-cost reference is pgscribe-log of the same build.
      const log = 'pgscribe-log' + (t.base ? BASE_SUFFIX : '');
      const twin = !t.base && isPgscribe(t.kind) && BASELINE_MAIN !== null ? t.name + BASE_SUFFIX : null;
      out.push({
        workload: w,
        target: t.name,
        tps,
        latencyMeanMs: med(w, t.name, (c) => c.latencyMeanMs)!,
        latencyP99Ms: med(w, t.name, (c) => c.latencyP99Ms)!,
        cpuUsPerTxn: cpu,
        failed: cells.filter((c) => c.workload === w && c.target === t.name).reduce((a, c) => a + c.failed, 0),
        tpsVsDirect: t.kind === 'direct' ? null : ratio(tps, med(w, 'direct', (c) => c.tps)),
        tpsVsRelay: t.kind === 'node-relay' ? null : ratio(tps, med(w, 'node-relay', (c) => c.tps)),
        tpsVsPgbouncer: t.kind === 'pgbouncer' ? null : ratio(tps, med(w, 'pgbouncer', (c) => c.tps)),
        tpsVsPgpoolCache: t.kind === 'pgpool-cache' ? null : ratio(tps, med(w, 'pgpool-cache', (c) => c.tps)),
        tpsVsLog: t.kind === 'pgscribe-log' || t.kind === 'direct' ? null : ratio(tps, med(w, log, (c) => c.tps)),
        tpsVsCeiling: t.kind === 'node-ceiling' ? null : ratio(tps, med(w, 'node-ceiling', (c) => c.tps)),
        cpuVsRelay: t.kind === 'node-relay' ? null : ratio(cpu, med(w, 'node-relay', (c) => c.cpuUsPerTxn)),
        cpuVsPgbouncer: t.kind === 'pgbouncer' ? null : ratio(cpu, med(w, 'pgbouncer', (c) => c.cpuUsPerTxn)),
        tpsVsBase: twin === null ? null : ratio(tps, med(w, twin, (c) => c.tps)),
        cpuVsBase: twin === null ? null : ratio(cpu, med(w, twin, (c) => c.cpuUsPerTxn)),
        cacheHitRatio: med(w, t.name, (c) => c.cacheHitRatio),
        scriptLatencyMs: scriptLatencies(cells.filter((c) => c.workload === w && c.target === t.name)),
        ...walColumns(cells, w, t, tps, cpu),
      });
    }
  }
  return out;
}

const f1 = (x: number | null, d = 1) => (x === null || !Number.isFinite(x) ? '' : x.toFixed(d));

/** The TLS lines under the table: pgscribe-tls against pgscribe-log (of the same build) on the same workload. */
function tlsCost(rows: Summary[]): string {
  const out: string[] = [];
  for (const r of rows) {
    if (!r.target.startsWith('pgscribe-tls')) continue;
    const suffix = r.target.slice('pgscribe-tls'.length);
    const log = 'pgscribe-log' + suffix;
    const plain = rows.find((x) => x.workload === r.workload && x.target === log);
    if (plain === undefined) continue;
    const cpu = r.cpuUsPerTxn !== null && plain.cpuUsPerTxn !== null ? `, proxy CPU ${f1(r.cpuUsPerTxn)} vs ${f1(plain.cpuUsPerTxn)} µs/txn (+${f1(r.cpuUsPerTxn - plain.cpuUsPerTxn)})` : '';
    out.push(
      `TLS cost (${r.workload}, TLS between pgbench and pgscribe${suffix}): ${f1(r.tps, 0)} vs ${f1(plain.tps, 0)} tps (${f1(r.tps / plain.tps, 2)}x ${log})${cpu}, mean latency ${f1(r.latencyMeanMs, 3)} vs ${f1(plain.latencyMeanMs, 3)} ms`,
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
    for (const suffix of ['', BASE_SUFFIX]) {
      const get = (t: string) => rows.find((x) => x.workload === w && x.target === t);
      const x2 = get('pgscribe-l2-x2' + suffix);
      if (x2 === undefined) continue;
      const vs = (t: string) => {
        const o = get(t);
        return o === undefined ? '' : `, ${f1(x2.tps / o.tps, 2)}x ${t} (${f1(o.tps, 0)} tps${o.cacheHitRatio === null ? '' : `, hits ${pct(o)}`})`;
      };
      out.push(
        `Two instances sharing Redis${suffix} (${w}): ${f1(x2.tps, 0)} tps, hits ${pct(x2)}, proxy+Redis CPU ${f1(x2.cpuUsPerTxn)} µs/txn` +
          vs('direct') + vs('pgscribe-cache' + suffix) + vs('pgscribe-l2' + suffix) + vs('pgscribe-cache-x2' + suffix),
      );
    }
  }
  return out.length === 0 ? '' : '\n' + out.join('\n') + '\n';
}

/**
 * Issue 21's bar, per workload: pgscribe-log's CPU per transaction against the Node relays
 * (at most 1.0x node-relay's; node-relay-minlog's is the floor for logging in Node) and its tps
 * against PgBouncer's (at least 0.9x).
 */
function relayLines(rows: Summary[]): string {
  const out: string[] = [];
  for (const w of WORKLOADS) {
    for (const suffix of ['', BASE_SUFFIX]) {
      const get = (t: string) => rows.find((x) => x.workload === w && x.target === t);
      const log = get('pgscribe-log' + suffix);
      const relay = get('node-relay');
      if (log === undefined || relay === undefined || log.cpuUsPerTxn === null || relay.cpuUsPerTxn === null) continue;
      const onread = get('node-relay-onread');
      const minlog = get('node-relay-minlog');
      const bouncer = get('pgbouncer');
      out.push(
        `Log on vs the relays${suffix} (${w}): ${f1(log.cpuUsPerTxn)} µs/txn, ${f1(log.cpuUsPerTxn / relay.cpuUsPerTxn, 2)}x node-relay (${f1(relay.cpuUsPerTxn)})` +
          (onread?.cpuUsPerTxn == null ? '' : `, ${f1(log.cpuUsPerTxn / onread.cpuUsPerTxn, 2)}x node-relay-onread (${f1(onread.cpuUsPerTxn)})`) +
          (minlog?.cpuUsPerTxn == null ? '' : `, ${f1(log.cpuUsPerTxn / minlog.cpuUsPerTxn, 2)}x node-relay-minlog (${f1(minlog.cpuUsPerTxn)}, itself ${f1(minlog.cpuUsPerTxn / relay.cpuUsPerTxn, 2)}x node-relay)`) +
          (bouncer === undefined ? '' : `; ${f1(log.tps, 0)} tps, ${f1(log.tps / bouncer.tps, 2)}x pgbouncer (${f1(bouncer.tps, 0)})`),
      );
    }
  }
  return out.length === 0 ? '' : '\n' + out.join('\n') + '\n';
}

/** With BASELINE_MAIN: this build against the other one, target by target. */
function baseLines(rows: Summary[]): string {
  if (BASELINE_MAIN === null) return '';
  const out = rows
    .filter((r) => r.tpsVsBase !== null)
    .map((r) => `  ${r.workload} ${r.target}: tps ${f1(r.tpsVsBase, 3)}x, CPU/txn ${f1(r.cpuVsBase, 3)}x (${f1(r.tps, 0)} vs ${f1(r.tps / r.tpsVsBase!, 0)} tps)`);
  return `\nThis build vs @base (${BASELINE_MAIN}), same run, medians (tps above 1 and CPU below 1 are better):\n${out.join('\n')}\n`;
}

function markdown(rows: Summary[]): string {
  const base = BASELINE_MAIN !== null;
  const lines = [
    '| workload | target | tps | mean ms | p99 ms | proxy CPU µs/txn | tps vs direct | tps vs relay | tps vs pgbouncer | tps vs pgpool-cache | tps vs pgscribe-log | tps vs ceiling | CPU vs relay | CPU vs pgbouncer | cache hits % | walsender CPU µs/txn | wal lag p99 ms |' +
      (base ? ' tps vs @base | CPU vs @base |' : ''),
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |' + (base ? ' ---: | ---: |' : ''),
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.workload} | ${r.target} | ${f1(r.tps, 0)} | ${f1(r.latencyMeanMs, 3)} | ${f1(r.latencyP99Ms, 3)} | ${f1(r.cpuUsPerTxn)} | ${f1(r.tpsVsDirect, 2)} | ${f1(r.tpsVsRelay, 2)} | ${f1(r.tpsVsPgbouncer, 2)} | ${f1(r.tpsVsPgpoolCache, 2)} | ${f1(r.tpsVsLog, 2)} | ${f1(r.tpsVsCeiling, 2)} | ${f1(r.cpuVsRelay, 2)} | ${f1(r.cpuVsPgbouncer, 2)} | ${f1(r.cacheHitRatio === null ? null : r.cacheHitRatio * 100)} | ${f1(r.walsenderCpuUsPerTxn)} | ${f1(r.walLagP99Ms, 2)} |` +
        (base ? ` ${f1(r.tpsVsBase, 3)} | ${f1(r.cpuVsBase, 3)} |` : ''),
    );
  }
  return lines.join('\n');
}

/** The table and the lines under it on stdout, everything as JSON in <root>/logs/; returns the JSON's path. */
export function writeReport(root: string, started: Date, cells: Cell[], targets: readonly Target[]): string {
  const rows = summarise(cells, targets);
  const walConsumer = consumerCosts(cells);
  const machine = {
    date: started.toISOString(),
    host: os.hostname(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    postgres: runSync(path.join(PG_BIN, 'postgres'), ['--version']) || 'postgres ?',
    pgbouncer: targets.some((t) => t.kind === 'pgbouncer') ? runSync(findPgbouncer()!, ['--version']).split('\n')[0] : 'not installed',
    pgpool: pgpoolVersion() + (targets.some((t) => t.kind === 'pgpool-cache') || findPgpool() === null ? '' : ' (not run)'),
  };
  const settings = { DURATION, CLIENTS, THREADS, REPEATS, SCALE, WORKLOADS, TARGETS: targets.map((t) => t.name), BASELINE_MAIN, WRITE_MIX_SYNC_COMMIT };
  const knobs =
    `DURATION=${DURATION} CLIENTS=${CLIENTS} THREADS=${THREADS} REPEATS=${REPEATS} SCALE=${SCALE}` +
    (BASELINE_MAIN === null ? '' : ` BASELINE_MAIN=${BASELINE_MAIN}`) +
    (WORKLOADS.includes('write-mix') ? ` WRITE_MIX_SYNC_COMMIT=${WRITE_MIX_SYNC_COMMIT}` : '');
  process.stdout.write(
    `\n## pgscribe bench ${machine.date}\n\n` +
      `Machine: ${machine.cores} × ${machine.cpu}, ${machine.memGiB} GiB; Node ${machine.node}; ${machine.postgres}; ${machine.pgbouncer}; ${machine.pgpool}\n` +
      `Command: make bench (${knobs}); medians of ${REPEATS} interleaved repeats.\n\n` +
      markdown(rows) +
      '\n' +
      tlsCost(rows) +
      sharedCacheLines(rows) +
      walLines(rows, walConsumer) +
      relayLines(rows) +
      baseLines(rows),
  );
  const out = path.join(root, 'logs', `bench-${machine.date.replace(/[:.]/g, '-')}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ machine, settings, summary: rows, walConsumer, cells }, null, 2) + '\n');
  return out;
}
