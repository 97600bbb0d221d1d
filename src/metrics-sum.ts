/**
 * The figures of several processes (--processes N) as one: how each value combines (sums,
 * maxima, minima), the latency histograms merged, the digests' and nodes' views joined. The
 * primary renders what this gives with the same code as one process's figures (metrics.ts).
 */
import { LatencyHistogram } from './insight/histogram';
import type { LimitCounters } from './limits/counters';
import { MESSAGE_TYPES, type InsightReadings, type Readings } from './metrics';
import type { NodeView } from './upstreams/upstream-set';

/**
 * How two processes' values of one figure combine into the total: counters and most gauges add;
 * a maximum or a percentile cannot be summed, and a percentile of the whole cannot be recovered
 * from the parts' percentiles, so the total shows the largest; an "available" flag holds only
 * while it holds in every process. `key` is a stats-line name or a collector's key.
 */
export function combine(key: string, a: number, b: number): number {
  if (/(^|_)(available|min)(_|$)/.test(key)) return Math.min(a, b);
  if (/(^|_)(p\d+|max|uptime|ratio)(_|$)/.test(key)) return Math.max(a, b);
  return a + b;
}

/** Flat figures (stats lines, a collector's set) combined key by key. */
export function totalOf(parts: readonly Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of parts) {
    for (const [k, v] of Object.entries(part)) out[k] = k in out ? combine(k, out[k]!, v) : v;
  }
  return out;
}

/**
 * The processes' figures as one: sums, by combine()'s rules; the latency histograms merge, so its
 * percentiles are those of every query. Digests held are summed too (a statement seen by two
 * processes is held twice). `processes` is the primary's to set.
 */
export function sumReadings(parts: readonly Readings[]): Readings {
  const sum = (f: (r: Readings) => number) => parts.reduce((a, r) => a + f(r), 0);
  const sets = (f: (r: Readings) => Record<string, number> | null) => {
    const present = parts.map(f).filter((x): x is Record<string, number> => x !== null);
    return present.length === 0 ? null : totalOf(present);
  };
  const insights = parts.map((r) => r.insight).filter((x): x is InsightReadings => x !== null);
  let insight: InsightReadings | null = null;
  if (insights.length > 0) {
    const latency = new LatencyHistogram();
    for (const x of insights) latency.merge(x.latency);
    insight = {
      completed: insights.reduce((a, x) => a + x.completed, 0),
      errors: insights.reduce((a, x) => a + x.errors, 0),
      digests: insights.reduce((a, x) => a + x.digests, 0),
      digestEvictions: insights.reduce((a, x) => a + x.digestEvictions, 0),
      latency: latency.state(),
    };
  }
  return {
    listening: parts.length > 0 && parts.every((r) => r.listening),
    clients: sum((r) => r.clients),
    sessions: sum((r) => r.sessions),
    connectionsTotal: sum((r) => r.connectionsTotal),
    startedAt: parts.length === 0 ? Date.now() : Math.min(...parts.map((r) => r.startedAt)),
    bytesFromClients: sum((r) => r.bytesFromClients),
    bytesFromServers: sum((r) => r.bytesFromServers),
    messages: MESSAGE_TYPES.map((_, k) => sum((r) => r.messages[k] ?? 0)),
    upstreamErrors: sum((r) => r.upstreamErrors),
    readOnlyToStandby: sum((r) => r.readOnlyToStandby),
    readOnlyToPrimary: sum((r) => r.readOnlyToPrimary),
    readOnlyRefused: sum((r) => r.readOnlyRefused),
    logLines: sum((r) => r.logLines),
    logSampledOut: sum((r) => r.logSampledOut),
    logDropped: sum((r) => r.logDropped),
    logQueuedBytes: sum((r) => r.logQueuedBytes),
    rss: sum((r) => r.rss),
    heapUsed: sum((r) => r.heapUsed),
    external: sum((r) => r.external),
    cache: sets((r) => r.cache),
    wal: sets((r) => r.wal),
    insight,
    processes: null,
    upstreams: combinedNodeViews(parts.map((r) => r.upstreams)),
    limits: sumLimits(parts),
  };
}

/**
 * The processes' views of the upstream nodes as one: every process checks the same nodes, so the
 * first view's states stand for all; the sessions on each node are every process's.
 */
export function combinedNodeViews(views: readonly (NodeView[] | null)[]): NodeView[] | null {
  const present = views.filter((v): v is NodeView[] => v !== null);
  if (present.length === 0) return null;
  return present[0]!.map((v) => ({ ...v, sessions: present.reduce((a, p) => a + (p.find((x) => x.node === v.node)?.sessions ?? 0), 0) }));
}

/** The limits' counters added over the processes (null when none has them). */
function sumLimits(parts: readonly Readings[]): LimitCounters | null {
  const present = parts.map((r) => r.limits).filter((x): x is LimitCounters => x !== null && x !== undefined);
  if (present.length === 0) return null;
  const out = { ...present[0]! };
  for (const x of present.slice(1)) for (const k of Object.keys(out) as (keyof LimitCounters)[]) out[k] += x[k];
  return out;
}
