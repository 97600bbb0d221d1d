// The metrics registry (src/metrics.ts) in process, on a fake Server: the stats line, /stats and
// /metrics carry the names, order and shape that the stress harness, the dashboard and scrapers
// read. The end-to-end tests (stats, admin, cache-l2) check the same outputs through the proxy.
import t from 'tap';
import { Insight } from '../../src/insight';
import { prometheus, prometheusOf, readingsOf, statsJson, statsJsonOf, statsLine, statsLineOf, cacheFields, latencySummary, type MetricsHost } from '../../src/metrics';
import { sumReadings } from '../../src/metrics-sum';
import { parseProm, value } from '../helpers/prom';

const CACHE = { hits: 9, misses: 1, stores: 1, evictions: 0, expirations: 2, invalidations: 3, stale_skips: 0, bypasses: 0, leaders: 5, waiters: 6, reruns: 1, entries: 4, bytes: 999 };
const L2 = {
  l2_hits: 1, l2_misses: 2, l2_stale: 3, l2_refused: 0, l2_stores: 4, l2_errors: 0, l2_skips: 1, l2_invalidations_sent: 2, l2_invalidations_received: 5,
  l2_remote_leads: 1, l2_remote_waits: 2, l2_remote_timeouts: 0, l2_pending_invalidations: 0, l2_available: 1,
};

function host(opts: { cache: Record<string, number> | null; insight: boolean }): MetricsHost {
  const insight = opts.insight ? new Insight({ maxDigests: 10, cacheEnabled: true, cacheTtlMs: 1000 }) : null;
  for (let i = 0; i < 12; i++) insight?.record({ sql: `select ${i % 3}`, ms: 0.3 * (i + 1), rows: 1, error: i === 5, cache: undefined, flight: undefined, now: 1000 });
  const messagesIn = new Float64Array(256);
  messagesIn[0x51] = 11; // Q
  messagesIn[0x50] = 1; // P
  messagesIn[0x42] = 2; // B
  messagesIn[0x45] = 3; // E
  const counters = opts.cache;
  return {
    clients: { size: 3 },
    sessionCount: 2,
    connectionsTotal: 7,
    listening: true,
    startedAt: 1_700_000_000_400,
    logger: { lines: 14, queuedBytes: 123 },
    cache: counters === null ? null : { layer: { counters: () => ({ ...counters }) } },
    insight,
    counters: { bytesFromClients: 1000, bytesFromServers: 2000, messagesIn, upstreamErrors: 4, readOnlyToStandby: 0, readOnlyToPrimary: 0, readOnlyRefused: 0 },
  };
}

const CORE_LINE = [
  'clients', 'sessions', 'connections_total', 'bytes_from_clients', 'bytes_from_servers', 'log_lines', 'log_sampled_out', 'log_dropped', 'rss', 'heap_used', 'external',
  'log_queued_bytes', 'messages_q', 'messages_p', 'messages_b', 'messages_e', 'upstream_errors',
];

t.test('stats line: names and order', async (tt) => {
  const bare = statsLine(host({ cache: null, insight: false }));
  tt.strictSame(Object.keys(bare), CORE_LINE, 'without cache and admin: the core fields, in order');
  tt.match(bare, { clients: 3, sessions: 2, connections_total: 7, bytes_from_clients: 1000, bytes_from_servers: 2000, log_lines: 14, log_queued_bytes: 123 });
  tt.match(bare, { messages_q: 11, messages_p: 1, messages_b: 2, messages_e: 3, upstream_errors: 4 });
  tt.ok(bare['rss']! > 0 && bare['heap_used']! > 0 && bare['external']! > 0, 'memory figures');

  const full = statsLine(host({ cache: { ...CACHE, ...L2 }, insight: true }));
  const cacheNames = Object.keys({ ...CACHE, ...L2 }).map((k) => `cache_${k}`);
  tt.strictSame(Object.keys(full), [...CORE_LINE, 'queries_completed', 'query_errors', ...cacheNames], 'then insight, then every cache counter');
  tt.equal(full['queries_completed'], 12);
  tt.equal(full['query_errors'], 1);
  tt.equal(full['cache_reruns'], 1, 'cache counters without a Prometheus form are on the line too');
  tt.strictSame(cacheFields({ hits: 1, l2_stale: 2 }), { cache_hits: 1, cache_l2_stale: 2 }, 'the shutdown line names them alike');
  tt.strictSame(cacheFields(null), {});
});

t.test('/stats: nested JSON', async (tt) => {
  tt.strictSame(statsJson(host({ cache: { ...CACHE }, insight: true })), {
    connections: { clients: 3, sessions: 2, total: 7 },
    bytes: { from_clients: 1000, from_servers: 2000 },
    log: { lines: 14, sampled_out: 0, dropped: 0, queued_bytes: 123 },
    queries: { Q: 11, P: 1, B: 2, E: 3 },
    upstream_errors: 4,
    completed: 12,
    errors: 1,
    cache: CACHE,
    digests: { entries: 1, evictions: 0 }, // select 0, 1, 2: one digest
  });
  tt.equal(statsJson(host({ cache: null, insight: true }))['cache'], null, 'cache: null when off');
});

/** name -> TYPE of every family in a /metrics text. */
function families(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out[m[1]!] = m[2]!;
  return out;
}

const CORE_FAMILIES = {
  pgscribe_up: 'gauge',
  pgscribe_client_connections: 'gauge',
  pgscribe_sessions: 'gauge',
  pgscribe_connections_total: 'counter',
  pgscribe_bytes_received_total: 'counter',
  pgscribe_log_lines_total: 'counter',
  pgscribe_log_sampled_out_total: 'counter',
  pgscribe_log_dropped_total: 'counter',
  process_resident_memory_bytes: 'gauge',
  pgscribe_log_queued_bytes: 'gauge',
  pgscribe_messages_total: 'counter',
  pgscribe_upstream_errors_total: 'counter',
  pgscribe_queries_completed_total: 'counter',
  pgscribe_query_errors_total: 'counter',
  pgscribe_query_duration_seconds: 'histogram',
  pgscribe_digests: 'gauge',
  pgscribe_digest_evictions_total: 'counter',
  process_start_time_seconds: 'gauge',
};
const CACHE_FAMILIES = {
  pgscribe_cache_hits_total: 'counter',
  pgscribe_cache_misses_total: 'counter',
  pgscribe_cache_stores_total: 'counter',
  pgscribe_cache_evictions_total: 'counter',
  pgscribe_cache_expirations_total: 'counter',
  pgscribe_cache_invalidations_total: 'counter',
  pgscribe_cache_stale_skips_total: 'counter',
  pgscribe_cache_bypasses_total: 'counter',
  pgscribe_flight_leaders_total: 'counter',
  pgscribe_flight_waiters_total: 'counter',
};
const L2_FAMILIES = {
  pgscribe_cache_l2_up: 'gauge',
  pgscribe_cache_l2_hits_total: 'counter',
  pgscribe_cache_l2_misses_total: 'counter',
  pgscribe_cache_l2_stale_total: 'counter',
  pgscribe_cache_l2_refused_total: 'counter',
  pgscribe_cache_l2_stores_total: 'counter',
  pgscribe_cache_l2_errors_total: 'counter',
  pgscribe_cache_l2_skips_total: 'counter',
  pgscribe_cache_l2_invalidations_sent_total: 'counter',
  pgscribe_cache_l2_invalidations_received_total: 'counter',
  pgscribe_cache_l2_pending_invalidations: 'gauge',
  pgscribe_flight_remote_leads_total: 'counter',
  pgscribe_flight_remote_waits_total: 'counter',
  pgscribe_flight_remote_timeouts_total: 'counter',
};

t.test('/metrics: the families, their types and values', async (tt) => {
  const noCache = prometheus(host({ cache: null, insight: true }));
  tt.strictSame(families(noCache), CORE_FAMILIES, 'without the cache');
  const l1 = prometheus(host({ cache: { ...CACHE }, insight: true }));
  tt.strictSame(families(l1), { ...CORE_FAMILIES, ...CACHE_FAMILIES }, 'with the cache: its counters, not the L2 ones');
  const text = prometheus(host({ cache: { ...CACHE, ...L2 }, insight: true }));
  tt.strictSame(families(text), { ...CORE_FAMILIES, ...CACHE_FAMILIES, ...L2_FAMILIES }, 'with Redis: the L2 ones too');
  const m = parseProm(text);
  tt.equal(value(m, 'pgscribe_up'), 1);
  tt.equal(value(m, 'pgscribe_client_connections'), 3);
  tt.equal(value(m, 'pgscribe_messages_total', { type: 'B' }), 2);
  tt.equal(value(m, 'pgscribe_bytes_received_total', { from: 'server' }), 2000);
  tt.equal(value(m, 'pgscribe_flight_leaders_total'), 5);
  tt.equal(value(m, 'pgscribe_cache_l2_invalidations_received_total'), 5);
  tt.equal(value(m, 'pgscribe_cache_l2_up'), 1);
  tt.equal(value(m, 'pgscribe_query_duration_seconds_count'), 12);
  tt.equal(value(m, 'process_start_time_seconds'), 1_700_000_000);
  tt.match(text, /^# HELP pgscribe_messages_total Query messages received from clients, by type \(Q simple query; P\/B\/E parse\/bind\/execute\)\.\n# TYPE pgscribe_messages_total counter\npgscribe_messages_total\{type="Q"\} 11\n/m, 'HELP, TYPE, then the samples');
  tt.equal(value(parseProm(prometheus(host({ cache: { hits: 1 }, insight: true }))), 'pgscribe_cache_misses_total'), 0, 'a declared member the layer does not report is 0');
});

t.test('wal mode: the change streams on the stats line, in /stats and in /metrics (absent otherwise)', async (tt) => {
  const WAL = { streams: 2, streams_up: 1, commits: 50, invalidations: 40, gaps: 3, tables_added: 7, lag_p50_ms: 1.5, lag_p99_ms: 9, lag_max_ms: 12 };
  const base = host({ cache: { hits: 1 }, insight: false });
  const wal: MetricsHost = { ...base, cache: { layer: base.cache!.layer, changes: { counters: () => ({ ...WAL }) } } };
  const line = statsLine(wal);
  for (const [k, v] of Object.entries(WAL)) tt.equal(line[`wal_${k}`], v, `wal_${k} on the stats line`);
  tt.strictSame((statsJson(wal) as { wal: unknown }).wal, WAL, '/stats: under wal');
  const prom = prometheus(wal);
  tt.match(prom, /^# TYPE pgscribe_wal_lag_p99_ms gauge\npgscribe_wal_lag_p99_ms 9$/m);
  tt.match(prom, /^# TYPE pgscribe_wal_invalidations_total counter\npgscribe_wal_invalidations_total 40$/m);
  tt.match(prom, /^pgscribe_wal_streams_up 1$/m);
  tt.notOk(Object.keys(statsLine(base)).some((k) => k.startsWith('wal_')), 'ttl mode: no wal_ fields');
  tt.notOk('wal' in statsJson(base), 'nor a wal key in /stats');
  tt.notMatch(prometheus(base), /pgscribe_wal_/, 'nor wal families in /metrics');
});

t.test('--processes N: the sum of two processes, through JSON as over IPC', async (tt) => {
  const a = host({ cache: { ...CACHE, ...L2 }, insight: true });
  const b = host({ cache: { ...CACHE, ...L2, l2_available: 0 }, insight: true });
  (b.insight as Insight).record({ sql: 'select 9', ms: 40, rows: 1, error: false, cache: undefined, flight: undefined, now: 1000 });
  const wal = { streams: 1, commits: 5, lag_p99_ms: 3, lag_max_ms: 9 };
  const wal2 = { streams: 1, commits: 7, lag_p99_ms: 8, lag_max_ms: 4 };
  const ra = { ...readingsOf(a), wal };
  const rb = { ...readingsOf(b), wal: wal2 };
  const sum = sumReadings([JSON.parse(JSON.stringify(ra)), JSON.parse(JSON.stringify(rb))]);
  const line = statsLineOf(sum);
  tt.match(line, { clients: 6, sessions: 4, connections_total: 14, bytes_from_clients: 2000, log_lines: 28, messages_q: 22, upstream_errors: 8, queries_completed: 25, query_errors: 2 }, 'counters and gauges add');
  tt.equal(line['rss'], ra.rss + rb.rss, 'memory adds');
  tt.equal(line['cache_hits'], 18, 'cache counters add');
  tt.equal(line['cache_l2_available'], 0, 'L2 counts as up only while it is up in every process');
  tt.match(line, { wal_streams: 2, wal_commits: 12, wal_lag_p99_ms: 8, wal_lag_max_ms: 9 }, 'wal: streams and commits add, lag percentiles and maxima take the largest');
  tt.equal(sum.insight!.latency.n, 25, 'the latency histograms merged');
  tt.ok(sum.insight!.latency.max === 40, 'with the slow query of one process');
  tt.equal(latencySummary(sum)!.p99, 40, "the p99 of all queries comes from the merged histogram, not from either process's p99");
  sum.processes = { configured: 3, up: 2 };
  const m = parseProm(prometheusOf(sum));
  tt.equal(value(m, 'pgscribe_processes'), 3);
  tt.equal(value(m, 'pgscribe_processes_up'), 2);
  tt.equal(value(m, 'pgscribe_query_duration_seconds_count'), 25);
  tt.equal(value(m, 'pgscribe_cache_l2_up'), 0);
  tt.match(statsJsonOf(sum), { processes: { configured: 3, up: 2 }, connections: { clients: 6 } }, '/stats says how many processes serve');
  tt.notOk('processes' in statsJson(a), 'one process: no processes key');
  tt.notOk(/pgscribe_processes/.test(prometheus(a)), 'nor a processes family');
  tt.strictSame(Object.keys(statsLine(a)), Object.keys(statsLineOf(readingsOf(a))), 'one process renders its own readings');
});
