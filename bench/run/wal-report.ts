/**
 * `make bench`'s figures for the cache in wal mode (issue 16): the wal target's columns of the
 * table, the lines under it comparing it with pgscribe-cache (ttl mode) and direct, and its
 * consumer's cost while other targets ran (its "bystander" figures, wal-sample.ts).
 */
import { median } from '../lib/common';
import type { Cell } from './cell';
import { BASE_SUFFIX, DURATION, type Workload } from './settings';
import type { Target } from './target';

/** The wal target's fields of a summary row (null on the other targets' rows). */
export interface WalColumns {
  /**
   * wal_lag_p99_ms at the end of its last run of this workload: the proxy keeps one histogram for
   * its life, so this covers every commit its stream carried up to then (the other targets' too).
   * Null when its runs of this workload carried no commit (read-only workloads).
   */
  walLagP99Ms: number | null;
  /** The same for wal_lag_max_ms. */
  walLagMaxMs: number | null;
  /** Commits its stream carried per second of its runs (median over repeats). */
  walCommitsPerS: number | null;
  /** Its walsender's CPU per transaction of its runs, µs (median over repeats). */
  walsenderCpuUsPerTxn: number | null;
  /** Commits through it held for the stream, and holds that timed out, summed over repeats. */
  walCommitWaits: number | null;
  walCommitWaitTimeouts: number | null;
  /**
   * Its proxy CPU per transaction minus pgscribe-cache's (same build, same workload), µs: its
   * consumer, plus whatever else wal mode changes (hit ratio, commit holds).
   */
  cpuMinusTtlUs: number | null;
  /** Its tps as a fraction of pgscribe-cache's. */
  tpsVsTtl: number | null;
}

/** Per workload with several scripts (write-mix): each script's mean latency, ms, median over repeats. */
export function scriptLatencies(cells: readonly Cell[]): Record<string, number> | null {
  const by = new Map<string, number[]>();
  for (const c of cells) for (const s of c.scripts ?? []) by.set(s.script, [...(by.get(s.script) ?? []), s.latencyMeanMs]);
  if (by.size === 0) return null;
  return Object.fromEntries([...by].map(([k, xs]) => [k, median(xs)]));
}

const NONE: WalColumns = {
  walLagP99Ms: null,
  walLagMaxMs: null,
  walCommitsPerS: null,
  walsenderCpuUsPerTxn: null,
  walCommitWaits: null,
  walCommitWaitTimeouts: null,
  cpuMinusTtlUs: null,
  tpsVsTtl: null,
};

/** The wal columns of target t on workload w (t's cells of w, and pgscribe-cache's of the same build). */
export function walColumns(cells: readonly Cell[], w: Workload, t: Target, tps: number, cpu: number | null): WalColumns {
  const mine = cells.filter((c) => c.workload === w && c.target === t.name && c.wal !== null);
  if (mine.length === 0) return NONE;
  const ttl = cells.filter((c) => c.workload === w && c.target === 'pgscribe-cache' + (t.base ? BASE_SUFFIX : ''));
  const med = (xs: (number | null)[]) => {
    const ys = xs.filter((x): x is number => x !== null && Number.isFinite(x));
    return ys.length ? median(ys) : null;
  };
  const last = mine.reduce((a, c) => (c.repeat > a.repeat ? c : a));
  const carried = mine.some((c) => c.wal!.commits > 0);
  const ttlCpu = med(ttl.map((c) => c.cpuUsPerTxn));
  const ttlTps = med(ttl.map((c) => c.tps));
  return {
    walLagP99Ms: carried ? last.wal!.lagP99Ms : null,
    walLagMaxMs: carried ? last.wal!.lagMaxMs : null,
    walCommitsPerS: med(mine.map((c) => c.wal!.commits / DURATION)),
    walsenderCpuUsPerTxn: med(mine.map((c) => (c.wal!.walsenderCpuMs === null ? null : (c.wal!.walsenderCpuMs * 1000) / c.transactions))),
    walCommitWaits: mine.reduce((a, c) => a + c.wal!.commitWaits, 0),
    walCommitWaitTimeouts: mine.reduce((a, c) => a + c.wal!.commitWaitTimeouts, 0),
    cpuMinusTtlUs: cpu === null || ttlCpu === null ? null : cpu - ttlCpu,
    tpsVsTtl: ttlTps === null || ttlTps === 0 ? null : tps / ttlTps,
  };
}

/** A wal target's consumer while another target ran a workload: per commit its stream carried. */
export interface ConsumerCost {
  walTarget: string;
  workload: Workload;
  /** The target that ran (the wal target had no clients). */
  during: string;
  commitsPerS: number;
  /** Its proxy's CPU per commit carried, µs, its idle CPU (below) subtracted. */
  proxyUsPerCommit: number | null;
  /** Its walsender's CPU per commit carried, µs. */
  walsenderUsPerCommit: number | null;
  /** Its proxy's CPU per second during the runs that carried no commit (timers, catalog polls), ms. */
  idleProxyMsPerS: number | null;
}

/** From the bystander figures of every cell: each wal target's consumer cost per (workload, target) that wrote. */
export function consumerCosts(cells: readonly Cell[]): ConsumerCost[] {
  const idle = new Map<string, number[]>();
  const busy = new Map<string, { walTarget: string; workload: Workload; during: string; commits: number[]; proxyMs: number[]; senderMs: (number | null)[] }>();
  for (const c of cells) {
    for (const b of c.bystanders) {
      if (b.commits === 0) {
        idle.set(b.target, [...(idle.get(b.target) ?? []), b.proxyCpuMs / DURATION]);
        continue;
      }
      const k = `${b.target}\0${c.workload}\0${c.target}`;
      const e = busy.get(k) ?? { walTarget: b.target, workload: c.workload, during: c.target, commits: [], proxyMs: [], senderMs: [] };
      e.commits.push(b.commits);
      e.proxyMs.push(b.proxyCpuMs);
      e.senderMs.push(b.walsenderCpuMs);
      busy.set(k, e);
    }
  }
  const out: ConsumerCost[] = [];
  for (const e of busy.values()) {
    const idleMsPerS = idle.has(e.walTarget) ? median(idle.get(e.walTarget)!) : null;
    const perCommit = (ms: (number | null)[], minusMsPerS: number) => {
      const xs = ms.flatMap((m, i) => (m === null ? [] : [((m - minusMsPerS * DURATION) * 1000) / e.commits[i]!]));
      return xs.length ? median(xs) : null;
    };
    out.push({
      walTarget: e.walTarget,
      workload: e.workload,
      during: e.during,
      commitsPerS: median(e.commits) / DURATION,
      proxyUsPerCommit: perCommit(e.proxyMs, idleMsPerS ?? 0),
      walsenderUsPerCommit: perCommit(e.senderMs, 0),
      idleProxyMsPerS: idleMsPerS,
    });
  }
  return out;
}

const f = (x: number | null | undefined, d = 1) => (x === null || x === undefined || !Number.isFinite(x) ? '?' : x.toFixed(d));

/** The row fields walLines reads (report.ts's Summary has them). */
interface Row extends WalColumns {
  workload: Workload;
  target: string;
  tps: number;
  cpuUsPerTxn: number | null;
  tpsVsDirect: number | null;
  cacheHitRatio: number | null;
  scriptLatencyMs: Record<string, number> | null;
}

/** The lines under the table: each wal row against pgscribe-cache and direct, then the consumer's cost beside other targets. */
export function walLines(rows: readonly Row[], costs: readonly ConsumerCost[]): string {
  const out: string[] = [];
  const pct = (x: number | null) => (x === null ? '?' : `${(x * 100).toFixed(1)}%`);
  for (const r of rows) {
    if (r.walCommitsPerS === null) continue;
    const ttl = rows.find((x) => x.workload === r.workload && x.target === 'pgscribe-cache' + r.target.slice('pgscribe-cache-wal'.length));
    const writes = r.scriptLatencyMs?.['write-mix-write'];
    const ttlWrites = ttl?.scriptLatencyMs?.['write-mix-write'];
    out.push(
      `wal vs ttl (${r.workload}, ${r.target}): ${f(r.tps, 0)} tps = ${f(r.tpsVsDirect, 2)}x direct, ${f(r.tpsVsTtl, 2)}x ${ttl?.target ?? 'pgscribe-cache'}` +
        (ttl === undefined ? '' : ` (${f(ttl.tps, 0)} tps, ${f(ttl.tpsVsDirect, 2)}x direct)`) +
        `; hits ${pct(r.cacheHitRatio)} vs ${pct(ttl?.cacheHitRatio ?? null)}` +
        `; proxy CPU ${f(r.cpuUsPerTxn)} vs ${f(ttl?.cpuUsPerTxn)} µs/txn (${r.cpuMinusTtlUs !== null && r.cpuMinusTtlUs >= 0 ? '+' : ''}${f(r.cpuMinusTtlUs)}), walsender ${f(r.walsenderCpuUsPerTxn)} µs/txn` +
        `; stream ${f(r.walCommitsPerS, 0)} commits/s, lag p99 ${r.walLagP99Ms === null ? 'n/a (no commits)' : `${f(r.walLagP99Ms, 2)} ms`}` +
        (r.walCommitWaits ? `, ${r.walCommitWaits} commits held (${r.walCommitWaitTimeouts} timed out)` : '') +
        (writes === undefined ? '' : `; write txns ${f(writes, 3)} vs ${f(ttlWrites, 3)} ms mean`),
    );
  }
  // The A/A control: the same build and flags as pgscribe-cache under another name. Its ratio is
  // the spread of this run itself; a wal-vs-ttl ratio that far from 1.00 is not a measured cost.
  for (const r of rows) {
    if (!r.target.startsWith('pgscribe-cache-twin')) continue;
    const ttl = rows.find((x) => x.workload === r.workload && x.target === 'pgscribe-cache' + r.target.slice('pgscribe-cache-twin'.length));
    if (ttl === undefined) continue;
    out.push(
      `A/A control (${r.workload}, ${r.target}, identical to ${ttl.target}): ${f(r.tps / ttl.tps, 2)}x its tps (${f(r.tps, 0)} vs ${f(ttl.tps, 0)}), ` +
        `proxy CPU ${f(r.cpuUsPerTxn)} vs ${f(ttl.cpuUsPerTxn)} µs/txn`,
    );
  }
  for (const c of costs) {
    out.push(
      `${c.walTarget}'s consumer with no clients, during ${c.during} ${c.workload}: ${f(c.commitsPerS, 0)} commits/s carried, ` +
        `proxy ${f(c.proxyUsPerCommit)} µs/commit (its idle ${f(c.idleProxyMsPerS, 2)} ms CPU/s subtracted), walsender ${f(c.walsenderUsPerCommit)} µs/commit`,
    );
  }
  return out.length === 0 ? '' : '\n' + out.join('\n') + '\n';
}
