/**
 * The admin HTTP server (--admin): health, Prometheus metrics, JSON stats, query digests, table
 * heat, a cache flush, and the dashboard page. node:http only. It binds to loopback unless an
 * --admin-token is set (config.ts refuses otherwise); with a token, every request must carry it
 * (`Authorization: Bearer TOKEN`, or `?token=TOKEN` for a browser opening the dashboard).
 *
 *   GET  /                 the dashboard (dashboard.html)
 *   GET  /health           200 {"status":"ok"} when listening and the upstream accepts a connection; 503 with the reason
 *   GET  /metrics          Prometheus text format 0.0.4
 *   GET  /stats            the same figures as JSON
 *   GET  /queries?sort=total|calls|mean&limit=N   query digests
 *   GET  /tables           table heat and recommendations
 *   POST /cache/flush      drop every cached answer (409 when the cache is off)
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { HostPort } from '../config';
import type { Insight } from '../insight';
import type { OpsLog } from '../log/ops';
import type { Server } from '../server';
import { dashboardHtml } from './dashboard';

/** Upper bounds (seconds) of the query duration histogram in /metrics. */
export const DURATION_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** How long a /health verdict about the upstream is reused: probes never storm the database. */
const HEALTH_CACHE_MS = 1000;
const MAX_LIMIT = 1000;

export interface AdminOptions {
  address: HostPort;
  /** '' = no token. */
  token: string;
  version: string;
}

interface Health {
  at: number;
  ok: boolean;
  reason: string;
  upstreamMs: number | null;
}

export class AdminServer {
  private readonly http: http.Server;
  private health: Health | null = null;
  private probing: Promise<Health> | null = null;
  private readonly tokenDigest: Buffer | null;

  constructor(
    private readonly server: Server,
    private readonly insight: Insight,
    private readonly ops: OpsLog,
    private readonly opts: AdminOptions,
  ) {
    // Compared as digests: equal lengths for timingSafeEqual, and no early exit on a prefix.
    this.tokenDigest = opts.token === '' ? null : sha256(opts.token);
    this.http = http.createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => {
        this.ops.error('admin request failed', { path: req.url, error: err.message });
        if (!res.headersSent) send(res, 500, { error: `internal error: ${err.message}` });
        else res.destroy();
      });
    });
    this.http.requestTimeout = 10_000;
    this.http.headersTimeout = 5_000;
    this.http.keepAliveTimeout = 5_000;
    this.http.maxConnections = 64;
    this.http.on('clientError', (_err, sock) => {
      if (sock.writable) sock.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else sock.destroy();
    });
  }

  listen(): Promise<net.AddressInfo> {
    const { host, port } = this.opts.address;
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen({ host, port }, () => {
        this.http.off('error', reject);
        this.http.on('error', (err) => this.ops.error('admin server error', { error: err.message }));
        resolve(this.http.address() as net.AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    if (!this.authorized(req, url)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="pgscribe"');
      send(res, 401, { error: 'pgscribe admin: a valid token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)' });
      return;
    }
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case 'GET /':
      case 'HEAD /':
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
        res.end(req.method === 'HEAD' ? undefined : dashboardHtml());
        return;
      case 'GET /health': {
        const h = await this.checkHealth();
        send(res, h.ok ? 200 : 503, {
          status: h.ok ? 'ok' : 'unavailable',
          listening: this.server.listening,
          upstream: `${this.server.config.upstream.host}:${this.server.config.upstream.port}`,
          upstream_connect_ms: h.upstreamMs,
          ...(h.ok ? {} : { reason: h.reason }),
        });
        return;
      }
      case 'GET /metrics':
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Cache-Control': 'no-store' });
        res.end(this.metrics());
        return;
      case 'GET /stats':
        send(res, 200, this.stats());
        return;
      case 'GET /queries': {
        const sort = url.searchParams.get('sort') ?? 'total';
        if (sort !== 'total' && sort !== 'calls' && sort !== 'mean') {
          send(res, 400, { error: `sort must be total, calls or mean, got ${JSON.stringify(sort)}` });
          return;
        }
        const rawLimit = url.searchParams.get('limit') ?? '50';
        const limit = /^\d+$/.test(rawLimit) ? Number(rawLimit) : NaN;
        if (!(limit >= 1 && limit <= MAX_LIMIT)) {
          send(res, 400, { error: `limit must be an integer 1-${MAX_LIMIT}, got ${JSON.stringify(rawLimit)}` });
          return;
        }
        send(res, 200, { sort, queries: this.insight.queries(sort, limit) });
        return;
      }
      case 'GET /tables':
        send(res, 200, this.insight.tables());
        return;
      case 'POST /cache/flush': {
        const cache = this.server.cache;
        if (cache === null || !cache.cache) {
          send(res, 409, { error: 'the result cache is off (start pgscribe with --cache)' });
          return;
        }
        cache.layer.flush();
        this.ops.info('admin: cache flushed', { from: `${req.socket.remoteAddress}:${req.socket.remotePort}` });
        send(res, 200, { flushed: true });
        return;
      }
    }
    const known = ['/', '/health', '/metrics', '/stats', '/queries', '/tables', '/cache/flush'];
    if (known.includes(url.pathname)) {
      res.setHeader('Allow', url.pathname === '/cache/flush' ? 'POST' : url.pathname === '/' ? 'GET, HEAD' : 'GET');
      send(res, 405, { error: `${req.method} is not allowed on ${url.pathname}` });
      return;
    }
    send(res, 404, { error: `no such endpoint ${url.pathname}; see ${known.join(', ')}` });
  }

  private authorized(req: http.IncomingMessage, url: URL): boolean {
    if (this.tokenDigest === null) return true;
    const header = req.headers.authorization;
    let given: string | null = null;
    if (typeof header === 'string' && header.startsWith('Bearer ')) given = header.slice(7).trim();
    else given = url.searchParams.get('token');
    return given !== null && timingSafeEqual(sha256(given), this.tokenDigest);
  }

  /** Listening, and the upstream accepts a TCP connection (verdict reused for a second). */
  private async checkHealth(): Promise<Health> {
    if (!this.server.listening) return { at: Date.now(), ok: false, reason: 'pgscribe is not listening (starting or shutting down)', upstreamMs: null };
    const now = Date.now();
    if (this.health !== null && now - this.health.at < HEALTH_CACHE_MS) return this.health;
    this.probing ??= probeUpstream(this.server.config.upstream, Math.min(this.server.config.limits.connectTimeoutMs, 2000)).then((h) => {
      this.health = h;
      this.probing = null;
      return h;
    });
    return this.probing;
  }

  /** The figures of /stats (and of the dashboard). */
  stats(): Record<string, unknown> {
    const s = this.server;
    const lat = this.insight.latency;
    const cache = s.cache === null ? null : s.cache.layer.counters();
    return {
      now: new Date().toISOString(),
      uptime_s: Math.round((Date.now() - s.startedAt) / 100) / 10,
      version: this.opts.version,
      connections: { clients: s.clients.size, sessions: s.sessionCount, total: s.connectionsTotal },
      queries: s.queryMessages(),
      completed: this.insight.completed,
      errors: this.insight.errors,
      bytes: { from_clients: s.bytesFromClients, from_servers: s.bytesFromServers },
      log: { lines: s.logger.lines, queued_bytes: s.logger.queuedBytes },
      upstream_errors: s.upstreamErrors,
      latency_ms: lat.count === 0 ? null : { p50: round3(lat.quantile(0.5)), p95: round3(lat.quantile(0.95)), p99: round3(lat.quantile(0.99)) },
      cache,
      digests: { entries: this.insight.digestCount, evictions: this.insight.digestEvictions },
    };
  }

  /** Prometheus text exposition format 0.0.4. */
  metrics(): string {
    const s = this.server;
    const out: string[] = [];
    const metric = (name: string, type: 'counter' | 'gauge', help: string, samples: [string, number][]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) out.push(`${name}${labels} ${promNumber(v)}`);
    };
    const one = (name: string, type: 'counter' | 'gauge', help: string, v: number) => metric(name, type, help, [['', v]]);
    const m = s.queryMessages();
    one('pgscribe_up', 'gauge', '1 while pgscribe is listening for clients.', s.listening ? 1 : 0);
    one('pgscribe_client_connections', 'gauge', 'Client connections open (including those still starting up).', s.clients.size);
    one('pgscribe_sessions', 'gauge', 'Client sessions admitted (counted against --max-connections).', s.sessionCount);
    one('pgscribe_connections_total', 'counter', 'Client connections accepted.', s.connectionsTotal);
    metric('pgscribe_messages_total', 'counter', 'Query messages received from clients, by type (Q simple query; P/B/E parse/bind/execute).', [
      ['{type="Q"}', m.Q],
      ['{type="P"}', m.P],
      ['{type="B"}', m.B],
      ['{type="E"}', m.E],
    ]);
    one('pgscribe_queries_completed_total', 'counter', 'Queries (Q or E) whose answer completed, including failed ones.', this.insight.completed);
    one('pgscribe_query_errors_total', 'counter', 'Queries that completed with an ErrorResponse.', this.insight.errors);
    metric('pgscribe_bytes_received_total', 'counter', 'Bytes received, by side.', [
      ['{from="client"}', s.bytesFromClients],
      ['{from="server"}', s.bytesFromServers],
    ]);
    one('pgscribe_upstream_errors_total', 'counter', 'Upstream failures: connect errors, unexpected closes, invalid messages.', s.upstreamErrors);
    one('pgscribe_log_lines_total', 'counter', 'Query log lines accepted (written or queued).', s.logger.lines);
    one('pgscribe_log_queued_bytes', 'gauge', 'Query log bytes queued and not yet written.', s.logger.queuedBytes);
    if (s.cache !== null) {
      const c = s.cache.layer.counters();
      const counter = (key: string, name: string, help: string) => one(name, 'counter', help, c[key] ?? 0);
      counter('hits', 'pgscribe_cache_hits_total', 'Requests answered from the result cache.');
      counter('misses', 'pgscribe_cache_misses_total', 'Cacheable requests not in the cache.');
      counter('stores', 'pgscribe_cache_stores_total', 'Answers stored.');
      counter('evictions', 'pgscribe_cache_evictions_total', 'Answers evicted to stay within the size bounds.');
      counter('expirations', 'pgscribe_cache_expirations_total', 'Answers dropped because their TTL passed.');
      counter('invalidations', 'pgscribe_cache_invalidations_total', 'Committed writes that invalidated cached answers.');
      counter('stale_skips', 'pgscribe_cache_stale_skips_total', 'Answers not stored because a write committed while they ran.');
      counter('bypasses', 'pgscribe_cache_bypasses_total', 'Requests sent straight upstream (answer too large to cache).');
      counter('leaders', 'pgscribe_flight_leaders_total', 'Requests that ran upstream on behalf of identical concurrent ones.');
      counter('waiters', 'pgscribe_flight_waiters_total', "Requests answered with another client's identical in-flight query.");
      if (c['l2_available'] !== undefined) {
        one('pgscribe_cache_l2_up', 'gauge', '1 while the shared cache in Redis is in use (its circuit breaker is closed).', c['l2_available']);
        counter('l2_hits', 'pgscribe_cache_l2_hits_total', 'Requests answered from the shared cache in Redis.');
        counter('l2_misses', 'pgscribe_cache_l2_misses_total', 'Shared-cache lookups that found no usable entry (refused ones included).');
        counter('l2_stale', 'pgscribe_cache_l2_stale_total', 'Shared-cache entries older than a write that committed since (not served).');
        counter('l2_refused', 'pgscribe_cache_l2_refused_total', 'Shared-cache entries that are not answers: bad checksum, foreign format, not a clean answer of the request (tampering or a bug).');
        counter('l2_stores', 'pgscribe_cache_l2_stores_total', 'Answers stored in the shared cache.');
        counter('l2_errors', 'pgscribe_cache_l2_errors_total', 'Redis commands that failed (timeout, error reply, lost connection, full queue).');
        counter('l2_skips', 'pgscribe_cache_l2_skips_total', 'Shared-cache operations not sent because Redis was unavailable.');
        counter('l2_invalidations_sent', 'pgscribe_cache_l2_invalidations_sent_total', 'Committed writes published to the other instances.');
        counter('l2_invalidations_received', 'pgscribe_cache_l2_invalidations_received_total', 'Committed writes of other instances applied to this cache.');
        one('pgscribe_cache_l2_pending_invalidations', 'gauge', 'Invalidations waiting for Redis to come back.', c['l2_pending_invalidations'] ?? 0);
        counter('l2_remote_leads', 'pgscribe_flight_remote_leads_total', 'Cross-instance flights led by this instance (--redis-singleflight).');
        counter('l2_remote_waits', 'pgscribe_flight_remote_waits_total', "Requests that waited for another instance's identical query.");
        counter('l2_remote_timeouts', 'pgscribe_flight_remote_timeouts_total', 'Requests that gave up waiting for another instance and ran the query themselves.');
      }
    }
    const lat = this.insight.latency;
    const cum = lat.cumulative(DURATION_BUCKETS_S.map((b) => b * 1000));
    out.push(
      '# HELP pgscribe_query_duration_seconds Time from a query reaching pgscribe to the end of its answer.',
      '# TYPE pgscribe_query_duration_seconds histogram',
    );
    DURATION_BUCKETS_S.forEach((b, i) => out.push(`pgscribe_query_duration_seconds_bucket{le="${b}"} ${cum[i]}`));
    out.push(`pgscribe_query_duration_seconds_bucket{le="+Inf"} ${lat.count}`);
    out.push(`pgscribe_query_duration_seconds_sum ${promNumber(lat.sumMs / 1000)}`);
    out.push(`pgscribe_query_duration_seconds_count ${lat.count}`);
    one('pgscribe_digests', 'gauge', 'Query digests held.', this.insight.digestCount);
    one('pgscribe_digest_evictions_total', 'counter', 'Query digests evicted (least total time first) to stay within --digest-max-entries.', this.insight.digestEvictions);
    one('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.', process.memoryUsage().rss);
    one('process_start_time_seconds', 'gauge', 'Start time of the process since unix epoch in seconds.', Math.round(s.startedAt / 1000));
    return out.join('\n') + '\n';
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function promNumber(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : '-Inf';
  return String(v);
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** One TCP connect to the upstream, closed at once. */
function probeUpstream(addr: HostPort, timeoutMs: number): Promise<Health> {
  const t0 = performance.now();
  const where = `${addr.host}:${addr.port}`;
  return new Promise((resolve) => {
    const sock = net.connect({ host: addr.host, port: addr.port });
    const done = (ok: boolean, reason: string) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ at: Date.now(), ok, reason, upstreamMs: ok ? round3(performance.now() - t0) : null });
    };
    const timer = setTimeout(() => done(false, `upstream ${where} did not accept a connection within ${timeoutMs} ms`), timeoutMs);
    sock.once('connect', () => done(true, ''));
    sock.once('error', (err: NodeJS.ErrnoException) => done(false, `upstream ${where} refused the connection: ${err.code ?? err.message}`));
  });
}
