/**
 * The one registry of pgscribe's counters and gauges. Each is declared once below (name, help,
 * kind, how to read it) and feeds three outputs:
 * - the stats line on stderr (--stats-interval and SIGUSR2; the stress harness parses it),
 * - /stats, the same figures as nested JSON (the dashboard reads it),
 * - /metrics, the Prometheus text format 0.0.4.
 *
 * A metric's name is its stats-line name; its Prometheus name is derived as `pgscribe_<name>`,
 * plus `_total` for a counter, unless `prom` names it otherwise (a few predate the rule, and the
 * process_* ones follow Prometheus' own conventions). Labelled families (messages by type, bytes
 * by side) list one sample per label value. The cache layer's counters are a dynamic set, read
 * through a collector: every member is on the stats line (`cache_<key>`) and in /stats
 * (`cache.<key>`), and the members declared here are also in /metrics.
 */
import type { Insight } from './insight';
import { LatencyHistogram, type HistogramState } from './insight/histogram';
import type { NodeView } from './upstreams/upstream-set';
import { Frontend } from './protocol/codes';
import type { LimitCounters } from './limits/counters';

export type MetricKind = 'counter' | 'gauge';

/** The Client's traffic counters, as the metrics read them. */
export interface ClientCountersView {
  readonly bytesFromClients: number;
  readonly bytesFromServers: number;
  /** Client messages received after startup, by type byte. */
  readonly messagesIn: Float64Array;
  /** Upstream connect failures, unexpected closes and invalid messages. */
  readonly upstreamErrors: number;
  /** Read-only listener: sessions sent to a standby, to the primary for want of one, refused. */
  readonly readOnlyToStandby: number;
  readonly readOnlyToPrimary: number;
  readonly readOnlyRefused: number;
  /** The connection and rate limits' refusals and delays (src/limits/counters.ts). */
  readonly limits?: LimitCounters;
}

/** What the metrics read of the Server (declared here, so that this module does not import it). */
export interface MetricsHost {
  /** The counters the sessions add to (client/host.ts). */
  readonly counters: ClientCountersView;
  readonly clients: { readonly size: number };
  readonly sessionCount: number;
  readonly connectionsTotal: number;
  readonly listening: boolean;
  readonly startedAt: number;
  readonly logger: { readonly lines: number; readonly sampledOut?: number; readonly dropped?: number; readonly queuedBytes: number };
  readonly cache: { readonly layer: { counters(): Record<string, number> }; readonly changes?: { counters(): Record<string, number> } | null } | null;
  readonly insight: Insight | null;
  /** Several upstream nodes: their health; null with one. */
  readonly upstreams?: { views(sessions?: ReadonlyMap<string, number>): NodeView[] } | null;
  /** Sessions on each upstream node, by name. */
  sessionsByNode?(): Map<string, number>;
  /** max-user-connections, max-db-connections or rate-limits is set: the limits' counters are shown. */
  readonly limitsOn?: boolean;
}

/**
 * What one rendering reads, gathered once (one counters() call to the cache layer, one
 * memoryUsage()). Plain data: with --processes N each serving process sends its own to the
 * primary, which renders their sum (sumReadings).
 */
export interface Readings {
  listening: boolean;
  clients: number;
  sessions: number;
  connectionsTotal: number;
  /** Date.now() at start. */
  startedAt: number;
  bytesFromClients: number;
  bytesFromServers: number;
  /** Client messages received after startup, in MESSAGE_TYPES order (Q, P, B, E). */
  messages: number[];
  upstreamErrors: number;
  /** Read-only listener: sessions sent to a standby, to the primary for want of one, refused (08001). */
  readOnlyToStandby: number;
  readOnlyToPrimary: number;
  readOnlyRefused: number;
  logLines: number;
  /** Query log lines log-sample left out, and lines dropped behind a slow writer (log-overflow drop). */
  logSampledOut: number;
  logDropped: number;
  logQueuedBytes: number;
  rss: number;
  heapUsed: number;
  external: number;
  /** The cache layer's counters; null when the cache and singleflight are off. */
  cache: Record<string, number> | null;
  /** The change streams' counters (wal mode); null otherwise. */
  wal: Record<string, number> | null;
  /** Query insight's figures; null without --admin. */
  insight: InsightReadings | null;
  /** With --processes N, in the primary's sum: the processes configured, and those serving now. */
  processes: { configured: number; up: number } | null;
  /** Several upstream nodes: each node's health (src/upstreams/); null with one. */
  upstreams: NodeView[] | null;
  /** The limits' counters; null when no per-user, per-database or rate limit is set. */
  limits: LimitCounters | null;
}

export interface InsightReadings {
  completed: number;
  errors: number;
  digests: number;
  digestEvictions: number;
  /** Every completion's duration (ms). */
  latency: HistogramState;
}

/** The figures of one process now. */
export function readingsOf(host: MetricsHost): Readings {
  const traffic = host.counters;
  const mem = process.memoryUsage();
  const i = host.insight;
  return {
    listening: host.listening,
    clients: host.clients.size,
    sessions: host.sessionCount,
    connectionsTotal: host.connectionsTotal,
    startedAt: host.startedAt,
    bytesFromClients: traffic.bytesFromClients,
    bytesFromServers: traffic.bytesFromServers,
    messages: MESSAGE_TYPES.map(([, code]) => traffic.messagesIn[code]!),
    upstreamErrors: traffic.upstreamErrors,
    readOnlyToStandby: traffic.readOnlyToStandby,
    readOnlyToPrimary: traffic.readOnlyToPrimary,
    readOnlyRefused: traffic.readOnlyRefused,
    logLines: host.logger.lines,
    logSampledOut: host.logger.sampledOut ?? 0,
    logDropped: host.logger.dropped ?? 0,
    logQueuedBytes: host.logger.queuedBytes,
    rss: mem.rss,
    heapUsed: mem.heapUsed,
    external: mem.external,
    cache: host.cache === null ? null : host.cache.layer.counters(),
    wal: host.cache?.changes?.counters() ?? null,
    insight: i === null ? null : { completed: i.completed, errors: i.errors, digests: i.digestCount, digestEvictions: i.digestEvictions, latency: i.latency.state() },
    processes: null,
    upstreams: host.upstreams?.views(host.sessionsByNode?.()) ?? null,
    limits: host.limitsOn === true && traffic.limits !== undefined ? { ...traffic.limits } : null,
  };
}

/** The latency percentiles /stats shows (ms), or null before the first completion (or without --admin). */
export function latencySummary(r: Readings): { p50: number; p95: number; p99: number } | null {
  const h = latencyOf(r);
  if (h === null || h.count === 0) return null;
  const round3 = (x: number) => Math.round(x * 1000) / 1000;
  return { p50: round3(h.quantile(0.5)), p95: round3(h.quantile(0.95)), p99: round3(h.quantile(0.99)) };
}

function latencyOf(r: Readings): LatencyHistogram | null {
  if (r.insight === null) return null;
  const h = new LatencyHistogram();
  h.merge(r.insight.latency);
  return h;
}

/** One value of a family. */
interface Sample {
  /** Name on the stats line; null: not on it. */
  readonly line: string | null;
  /** Prometheus labels, `{type="Q"}`, or ''. */
  readonly labels: string;
  /** Where it goes in /stats; null: not there. */
  readonly json: readonly string[] | null;
  /** undefined: absent (what it counts is off, e.g. digests without --admin). */
  readonly read: (r: Readings) => number | undefined;
}

/** A counter or gauge, or a family of them that differ by labels. */
interface Family {
  readonly type: 'family';
  /** Prometheus name; null: not in /metrics. */
  readonly prom: string | null;
  readonly kind: MetricKind;
  readonly help: string;
  readonly samples: readonly Sample[];
}

/** A member of a collector's set that /metrics shows. */
interface Member {
  readonly key: string;
  readonly kind: MetricKind;
  readonly help: string;
  readonly prom: string;
  /** Shown only when the set holds this key (the shared-cache members, only with --redis). */
  readonly requires: string | null;
}

/** A dynamic set of named values. */
interface Collector {
  readonly type: 'collector';
  /** Stats-line names are prefix + key. */
  readonly prefix: string;
  /** The /stats key holding the set as an object (null when it is off). */
  readonly json: string;
  readonly read: (r: Readings) => Record<string, number> | null;
  readonly members: readonly Member[];
  /** /stats leaves the key out while the set is off (rather than showing null). */
  readonly absentWhenOff?: boolean;
}

/** A Prometheus histogram (/metrics only). */
interface Histogram {
  readonly type: 'histogram';
  readonly prom: string;
  readonly help: string;
  /** Upper bounds of the buckets, in the unit of the metric. */
  readonly bounds: readonly number[];
  /** Cumulative counts per bound, total count and sum; undefined: absent. */
  readonly read: (r: Readings, bounds: readonly number[]) => { cumulative: number[]; count: number; sum: number } | undefined;
}

/** A gauge per upstream node (several upstreams only), labelled node="HOST:PORT". */
interface NodeGauge {
  readonly type: 'nodes';
  readonly prom: string;
  readonly help: string;
  /** null: no sample for this node. */
  readonly read: (v: NodeView) => number | null;
}

type Entry = Family | Collector | Histogram | NodeGauge;

/** The Prometheus name derived from a stats-line name. */
function promName(name: string, kind: MetricKind): string {
  return `pgscribe_${name}${kind === 'counter' && !name.endsWith('_total') ? '_total' : ''}`;
}

interface Options {
  /** Prometheus name when not derived; null: not in /metrics. */
  prom?: string | null;
  /** false: not on the stats line. */
  line?: boolean;
  /** Place in /stats. */
  json?: readonly string[];
}

function metric(kind: MetricKind, name: string, help: string, read: Sample['read'], o: Options = {}): Family {
  const prom = o.prom === undefined ? promName(name, kind) : o.prom;
  return { type: 'family', prom, kind, help, samples: [{ line: o.line === false ? null : name, labels: '', json: o.json ?? null, read }] };
}

const counter = (name: string, help: string, read: Sample['read'], o?: Options): Family => metric('counter', name, help, read, o);
const gauge = (name: string, help: string, read: Sample['read'], o?: Options): Family => metric('gauge', name, help, read, o);

/** Stats-line names of the cache layer's counters are this plus their key. */
const CACHE_PREFIX = 'cache_';
/** Stats-line names of the change streams' counters (wal mode) are this plus their key. */
const WAL_PREFIX = 'wal_';

function walMember(kind: MetricKind, key: string, help: string): Member {
  return { key, kind, help, prom: promName(WAL_PREFIX + key, kind), requires: null };
}

/**
 * A member of the cache collector: `pgscribe_cache_<key>[_total]` unless named otherwise. The
 * shared-cache members (l2_*) are shown only when the layer has a shared level, which then
 * reports l2_available.
 */
function cacheMember(kind: MetricKind, key: string, help: string, prom?: string): Member {
  return { key, kind, help, prom: prom ?? promName(CACHE_PREFIX + key, kind), requires: key.startsWith('l2_') ? 'l2_available' : null };
}

/** The query messages counted, in the order of Readings.messages. */
export const MESSAGE_TYPES = [
  ['Q', Frontend.Query],
  ['P', Frontend.Parse],
  ['B', Frontend.Bind],
  ['E', Frontend.Execute],
] as const;

/** Upper bounds (seconds) of the query duration histogram in /metrics. */
const DURATION_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Every metric, in stats-line order (the stats test and readers of the line expect it). */
const METRICS: readonly Entry[] = [
  gauge('up', '1 while pgscribe is listening for clients.', (r) => (r.listening ? 1 : 0), { line: false }),
  gauge('processes', 'Serving processes configured (--processes N; absent with one process).', (r) => r.processes?.configured, { line: false, json: ['processes', 'configured'] }),
  gauge('processes_up', 'Serving processes ready for connections: fewer than configured while one restarts (its figures are then missing from the sums).', (r) => r.processes?.up, {
    line: false,
    json: ['processes', 'up'],
  }),
  gauge('clients', 'Client connections open (including those still starting up).', (r) => r.clients, {
    prom: 'pgscribe_client_connections',
    json: ['connections', 'clients'],
  }),
  gauge('sessions', 'Client sessions admitted (counted against --max-connections).', (r) => r.sessions, { json: ['connections', 'sessions'] }),
  counter('connections_total', 'Client connections accepted.', (r) => r.connectionsTotal, { json: ['connections', 'total'] }),
  {
    type: 'family',
    prom: 'pgscribe_bytes_received_total',
    kind: 'counter',
    help: 'Bytes received, by side.',
    samples: [
      { line: 'bytes_from_clients', labels: '{from="client"}', json: ['bytes', 'from_clients'], read: (r) => r.bytesFromClients },
      { line: 'bytes_from_servers', labels: '{from="server"}', json: ['bytes', 'from_servers'], read: (r) => r.bytesFromServers },
    ],
  },
  counter('log_lines', 'Query log lines accepted (written or queued).', (r) => r.logLines, { json: ['log', 'lines'] }),
  counter('log_sampled_out', 'Query log lines log-sample left out.', (r) => r.logSampledOut, { json: ['log', 'sampled_out'] }),
  counter('log_dropped', 'Query log lines dropped because the writer was behind (log-overflow drop).', (r) => r.logDropped, { json: ['log', 'dropped'] }),
  gauge('rss', 'Resident memory size in bytes.', (r) => r.rss, { prom: 'process_resident_memory_bytes' }),
  gauge('heap_used', 'V8 heap in use, bytes.', (r) => r.heapUsed, { prom: null }),
  gauge('external', 'Memory of C++ objects bound to JavaScript objects (Buffers among them), bytes.', (r) => r.external, { prom: null }),
  gauge('log_queued_bytes', 'Query log bytes queued and not yet written.', (r) => r.logQueuedBytes, { json: ['log', 'queued_bytes'] }),
  {
    type: 'family',
    prom: 'pgscribe_messages_total',
    kind: 'counter',
    help: 'Query messages received from clients, by type (Q simple query; P/B/E parse/bind/execute).',
    samples: MESSAGE_TYPES.map(([t], k) => ({ line: `messages_${t.toLowerCase()}`, labels: `{type="${t}"}`, json: ['queries', t], read: (r: Readings) => r.messages[k]! })),
  },
  counter('upstream_errors', 'Upstream failures: connect errors, unexpected closes, invalid messages.', (r) => r.upstreamErrors, { json: ['upstream_errors'] }),
  counter('read_only_to_standby', 'Read-only listener (several upstreams): sessions sent to a standby (counted at their first choice).', (r) => (r.upstreams === null ? undefined : r.readOnlyToStandby), { json: ['read_only', 'to_standby'] }),
  counter('read_only_to_primary', 'Read-only listener: sessions sent to the primary because no standby qualified at their first choice (replica-fallback primary).', (r) => (r.upstreams === null ? undefined : r.readOnlyToPrimary), {
    json: ['read_only', 'to_primary'],
  }),
  counter('read_only_refused', 'Read-only listener: sessions refused with 08001 because no standby qualified (replica-fallback refuse).', (r) => (r.upstreams === null ? undefined : r.readOnlyRefused), {
    json: ['read_only', 'refused'],
  }),
  counter('queries_completed', 'Queries (Q or E) whose answer completed, including failed ones.', (r) => r.insight?.completed, { json: ['completed'] }),
  counter('query_errors', 'Queries that completed with an ErrorResponse.', (r) => r.insight?.errors, { json: ['errors'] }),
  counter('connections_refused_user_limit', 'Sessions refused with 53300 under max-user-connections.', (r) => r.limits?.refusedUserLimit, { json: ['limits', 'connections_refused_user_limit'] }),
  counter('connections_refused_db_limit', 'Sessions refused with 53300 under max-db-connections.', (r) => r.limits?.refusedDbLimit, { json: ['limits', 'connections_refused_db_limit'] }),
  counter('rate_limit_delayed', 'Queries (Q or E) held back by a rate-limits rule before they went upstream.', (r) => r.limits?.rateDelayed, { json: ['limits', 'rate_limit_delayed'] }),
  counter('rate_limit_delay_ms', 'Time those queries were held back, in all (ms).', (r) => (r.limits == null ? undefined : Math.round(r.limits.rateDelayMs)), { json: ['limits', 'rate_limit_delay_ms'] }),
  counter('rate_limit_refused', 'Queries refused with 53400: over their rate-limits rule by more than rate-limit-max-delay-ms.', (r) => r.limits?.rateRefused, { json: ['limits', 'rate_limit_refused'] }),
  {
    type: 'collector',
    prefix: CACHE_PREFIX,
    json: 'cache',
    read: (r) => r.cache,
    members: [
      cacheMember('counter', 'hits', 'Requests answered from the result cache.'),
      cacheMember('counter', 'misses', 'Cacheable requests not in the cache.'),
      cacheMember('counter', 'stores', 'Answers stored.'),
      cacheMember('counter', 'evictions', 'Answers evicted to stay within the size bounds.'),
      cacheMember('counter', 'expirations', 'Answers dropped because their TTL passed.'),
      cacheMember('counter', 'invalidations', 'Committed writes that invalidated cached answers.'),
      cacheMember('counter', 'stale_skips', 'Answers not stored because a write committed while they ran.'),
      cacheMember('counter', 'bypasses', 'Requests sent straight upstream (answer too large to cache).'),
      cacheMember('counter', 'leaders', 'Requests that ran upstream on behalf of identical concurrent ones.', 'pgscribe_flight_leaders_total'),
      cacheMember('counter', 'waiters', "Requests answered with another client's identical in-flight query.", 'pgscribe_flight_waiters_total'),
      cacheMember('gauge', 'l2_available', '1 while the shared cache in Redis is in use (its circuit breaker is closed).', 'pgscribe_cache_l2_up'),
      cacheMember('counter', 'l2_hits', 'Requests answered from the shared cache in Redis.'),
      cacheMember('counter', 'l2_misses', 'Shared-cache lookups that found no usable entry (refused ones included).'),
      cacheMember('counter', 'l2_stale', 'Shared-cache entries older than a write that committed since (not served).'),
      cacheMember('counter', 'l2_refused', 'Shared-cache entries that are not answers: bad checksum, foreign format, not a clean answer of the request (tampering or a bug).'),
      cacheMember('counter', 'l2_stores', 'Answers stored in the shared cache.'),
      cacheMember('counter', 'l2_errors', 'Redis commands that failed (timeout, error reply, lost connection, full queue).'),
      cacheMember('counter', 'l2_skips', 'Shared-cache operations not sent because Redis was unavailable.'),
      cacheMember('counter', 'l2_invalidations_sent', 'Committed writes published to the other instances.'),
      cacheMember('counter', 'l2_invalidations_received', 'Committed writes of other instances applied to this cache.'),
      cacheMember('gauge', 'l2_pending_invalidations', 'Invalidations waiting for Redis to come back.'),
      cacheMember('counter', 'l2_remote_leads', 'Cross-instance flights led by this instance (--redis-singleflight).', 'pgscribe_flight_remote_leads_total'),
      cacheMember('counter', 'l2_remote_waits', "Requests that waited for another instance's identical query.", 'pgscribe_flight_remote_waits_total'),
      cacheMember('counter', 'l2_remote_timeouts', 'Requests that gave up waiting for another instance and ran the query themselves.', 'pgscribe_flight_remote_timeouts_total'),
    ],
  },
  {
    type: 'collector',
    prefix: WAL_PREFIX,
    json: 'wal',
    read: (r) => r.wal,
    absentWhenOff: true,
    members: [
      walMember('gauge', 'streams', 'Databases with a change stream (cache-invalidation wal).'),
      walMember('gauge', 'streams_up', 'Change streams streaming now; the others\' databases are not served from the cache.'),
      walMember('counter', 'commits', 'Committed transactions received from the change streams.'),
      walMember('counter', 'invalidations', 'Committed transactions from the change streams that invalidated cached answers.'),
      walMember('counter', 'settled_invalidations', 'The same, again once the commit was seen visible to other sessions (a commit can stream before it is: synchronous replication).'),
      walMember('gauge', 'commits_unsettled', 'Streamed commits not yet seen visible to other sessions.'),
      walMember('counter', 'gaps', 'New slots (start, reconnect): each dropped its database\'s cached answers.'),
      walMember('counter', 'tables_added', "Tables added to pgscribe's publication."),
      walMember('counter', 'tables_dropped', "Tables dropped from pgscribe's publication: they lost their replica identity, and PostgreSQL would refuse their UPDATEs and DELETEs."),
      walMember('counter', 'commit_waits', 'Commits through pgscribe whose ReadyForQuery waited for the change stream to apply them (read-your-writes).'),
      walMember('counter', 'commit_wait_timeouts', "Such waits past cache-wal-wait-ms (or with the stream down): the database's answers were dropped."),
      walMember('gauge', 'lag_p50_ms', 'Commit-to-invalidation lag of the change streams, median, ms (server commit time to receipt; clock skew included).'),
      walMember('gauge', 'lag_p99_ms', 'Commit-to-invalidation lag of the change streams, 99th percentile, ms.'),
      walMember('gauge', 'lag_max_ms', 'Commit-to-invalidation lag of the change streams, maximum, ms.'),
    ],
  },
  {
    type: 'histogram',
    prom: 'pgscribe_query_duration_seconds',
    help: 'Time from a query reaching pgscribe to the end of its answer.',
    bounds: DURATION_BUCKETS_S,
    read: (r, bounds) => {
      const lat = latencyOf(r);
      return lat === null ? undefined : { cumulative: lat.cumulative(bounds.map((b) => b * 1000)), count: lat.count, sum: lat.sumMs / 1000 };
    },
  },
  gauge('digests', 'Query digests held.', (r) => r.insight?.digests, { line: false, json: ['digests', 'entries'] }),
  counter('digest_evictions', 'Query digests evicted (least total time first) to stay within --digest-max-entries.', (r) => r.insight?.digestEvictions, {
    line: false,
    json: ['digests', 'evictions'],
  }),
  {
    type: 'nodes',
    prom: 'pgscribe_upstream_up',
    help: 'Several upstreams: 1 while the node passes its health checks (down after health-failures failed ones).',
    read: (v) => (v.state === 'down' ? 0 : 1),
  },
  { type: 'nodes', prom: 'pgscribe_upstream_primary', help: 'Several upstreams: 1 for the node new sessions go to.', read: (v) => (v.primary ? 1 : 0) },
  { type: 'nodes', prom: 'pgscribe_upstream_in_recovery', help: 'Several upstreams: 1 while the node is a standby (pg_is_in_recovery()).', read: (v) => (v.state === 'standby' ? 1 : 0) },
  {
    type: 'nodes',
    prom: 'pgscribe_upstream_replay_lag_seconds',
    help: "Several upstreams: a standby's lag at its last check: 0 once it replayed what the primary had written when its last check began; else at most the time since the newest such check whose position it reached (src/upstreams/replay-lag.ts).",
    read: (v) => (v.replayLagMs === null ? null : v.replayLagMs / 1000),
  },
  { type: 'nodes', prom: 'pgscribe_upstream_sessions', help: 'Several upstreams: client sessions connected (or connecting) to the node.', read: (v) => v.sessions },
  {
    type: 'nodes',
    prom: 'pgscribe_upstream_read_only_candidate',
    help: 'Read-only listener: 1 while new read-only sessions may go to the standby (up, last check passed, within max-replica-lag-ms).',
    read: (v) => (v.readOnlyCandidate ? 1 : 0),
  },
  gauge('start_time', 'Start time of the process since unix epoch in seconds.', (r) => Math.round(r.startedAt / 1000), { line: false, prom: 'process_start_time_seconds' }),
];

/** The stats line's fields, in registry order. */
export function statsLine(host: MetricsHost): Record<string, number> {
  return statsLineOf(readingsOf(host));
}

/** The stats line's fields of given readings. */
export function statsLineOf(r: Readings): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of METRICS) {
    if (e.type === 'family') {
      for (const s of e.samples) {
        if (s.line === null) continue;
        const v = s.read(r);
        if (v !== undefined) out[s.line] = v;
      }
    } else if (e.type === 'collector') {
      Object.assign(out, prefixed(e.prefix, e.read(r)));
    }
  }
  return out;
}

/** The cache layer's counters under their stats-line names (also for the shutdown line). */
export function cacheFields(counters: Record<string, number> | null): Record<string, number> {
  return prefixed(CACHE_PREFIX, counters);
}

function prefixed(prefix: string, values: Record<string, number> | null): Record<string, number> {
  const out: Record<string, number> = {};
  if (values !== null) for (const [k, v] of Object.entries(values)) out[prefix + k] = v;
  return out;
}

/** The figures of /stats, nested as declared. */
export function statsJson(host: MetricsHost): Record<string, unknown> {
  return statsJsonOf(readingsOf(host));
}

/** The figures of /stats from given readings. */
export function statsJsonOf(r: Readings): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const e of METRICS) {
    if (e.type === 'family') {
      for (const s of e.samples) {
        const v = s.json === null ? undefined : s.read(r);
        if (s.json === null || v === undefined) continue;
        let o = out;
        for (const k of s.json.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
        o[s.json[s.json.length - 1]!] = v;
      }
    } else if (e.type === 'collector') {
      const v = e.read(r);
      if (v !== null || e.absentWhenOff !== true) out[e.json] = v;
    }
  }
  if (r.upstreams !== null) out['upstreams'] = r.upstreams;
  return out;
}

/** /metrics: the Prometheus text exposition format 0.0.4. */
export function prometheus(host: MetricsHost): string {
  return prometheusOf(readingsOf(host));
}

/** /metrics from given readings. */
export function prometheusOf(r: Readings): string {
  const out: string[] = [];
  const head = (name: string, type: MetricKind | 'histogram', help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  for (const e of METRICS) {
    if (e.type === 'family') {
      if (e.prom === null) continue;
      const values = e.samples.map((s) => [s.labels, s.read(r)] as const).filter((x): x is readonly [string, number] => x[1] !== undefined);
      if (values.length === 0) continue;
      head(e.prom, e.kind, e.help);
      for (const [labels, v] of values) out.push(`${e.prom}${labels} ${promNumber(v)}`);
    } else if (e.type === 'collector') {
      const values = e.read(r);
      if (values === null) continue;
      for (const m of e.members) {
        if (m.requires !== null && values[m.requires] === undefined) continue;
        head(m.prom, m.kind, m.help);
        out.push(`${m.prom} ${promNumber(values[m.key] ?? 0)}`);
      }
    } else if (e.type === 'nodes') {
      if (r.upstreams === null) continue;
      const samples = r.upstreams.map((v) => [v.node, e.read(v)] as const).filter((x): x is readonly [string, number] => x[1] !== null);
      if (samples.length === 0) continue;
      head(e.prom, 'gauge', e.help);
      for (const [node, v] of samples) out.push(`${e.prom}{node="${node.replace(/["\\\n]/g, '_')}"} ${promNumber(v)}`);
    } else {
      const h = e.read(r, e.bounds);
      if (h === undefined) continue;
      head(e.prom, 'histogram', e.help);
      e.bounds.forEach((b, i) => out.push(`${e.prom}_bucket{le="${b}"} ${h.cumulative[i]}`));
      out.push(`${e.prom}_bucket{le="+Inf"} ${h.count}`, `${e.prom}_sum ${promNumber(h.sum)}`, `${e.prom}_count ${h.count}`);
    }
  }
  return out.join('\n') + '\n';
}

function promNumber(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : '-Inf';
  return String(v);
}
