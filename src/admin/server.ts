/**
 * The admin HTTP server (--admin): health, Prometheus metrics, JSON stats, query digests, table
 * heat, a cache flush, and the dashboard page. node:http only. It binds to loopback unless an
 * --admin-token is set (config/checks.ts refuses otherwise); with a token, every request must
 * carry it (`Authorization: Bearer TOKEN`, or `?token=TOKEN` for a browser opening the dashboard).
 * Without a token, only loopback Host names are answered; a POST from another Origin never is.
 * The counters and gauges of /metrics and /stats come from the registry in metrics.ts, read from
 * an AdminSource (source.ts): this process's own figures, or with --processes N the primary's sum
 * of every serving process's.
 *
 *   GET  /                 the dashboard (dashboard.html)
 *   GET  /health           200 {"status":"ok"} when listening (every serving process up) and the upstream accepts a connection; 503 with the reason
 *   GET  /ready            200 while a primary is known and healthy (several upstreams: one node up and not in recovery; one: as /health); 503 with the reason
 *   GET  /upstreams        each upstream node's health (several upstreams), or the one node
 *   GET  /metrics          Prometheus text format 0.0.4
 *   GET  /stats            the same figures as JSON
 *   GET  /queries?sort=total|calls|mean&limit=N   query digests
 *   GET  /tables           table heat and recommendations
 *   POST /cache/flush      drop every cached answer (409 when the cache is off)
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { timingSafeEqual, createHash } from 'node:crypto';
import { formatHostPort, type HostPort } from '../config';
import type { OpsLog } from '../log/ops';
import { latencySummary, prometheusOf, statsJsonOf } from '../metrics';
import { listenOn } from '../listen';
import { dashboardHtml } from './dashboard';
import type { AdminSource } from './source';

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

/** How long a refused socket may take to read the 400 before it is destroyed. */
const CLOSE_LINGER_MS = 1000;

export class AdminServer {
  private readonly http: http.Server;
  private health: Health | null = null;
  private probing: Promise<Health> | null = null;
  private readonly tokenDigest: Buffer | null;

  constructor(
    private readonly source: AdminSource,
    private readonly ops: OpsLog,
    private readonly opts: AdminOptions,
  ) {
    // Compared as digests: equal lengths for timingSafeEqual, and no early exit on a prefix.
    this.tokenDigest = opts.token === '' ? null : sha256(opts.token);
    // connectionsCheckingInterval: how often headersTimeout and requestTimeout are enforced
    // (Node's default, 30 s, would let silent sockets hold the 64 slots that long).
    this.http = http.createServer({ connectionsCheckingInterval: 1000 }, (req, res) => {
      this.handle(req, res).catch((err: Error) => {
        // The path only: a query string may hold ?token=.
        this.ops.error('admin request failed', { path: (req.url ?? '').split('?')[0], error: err.message });
        if (!res.headersSent) send(res, 500, { error: `internal error: ${err.message}` });
        else res.destroy();
      });
    });
    this.http.requestTimeout = 10_000;
    this.http.headersTimeout = 5_000;
    this.http.keepAliveTimeout = 5_000;
    this.http.maxConnections = 64;
    this.http.on('clientError', (_err, sock) => {
      // end() alone only half-closes: a peer that never closes its side would keep the slot.
      if (sock.writable) {
        sock.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
        setTimeout(() => sock.destroy(), CLOSE_LINGER_MS).unref();
      } else {
        sock.destroy();
      }
    });
  }

  listen(): Promise<net.AddressInfo> {
    return listenOn(this.http, this.opts.address, (err) => this.ops.error('admin server error', { error: err.message }));
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const refusal = this.crossSiteRefusal(req);
    if (refusal !== null) {
      send(res, 403, { error: refusal });
      return;
    }
    if (!this.authorized(req, url)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="pgscribe"');
      send(res, 401, { error: 'pgscribe admin: a valid token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)' });
      return;
    }
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case 'GET /':
      case 'HEAD /':
        res.writeHead(200, {
          'Content-Type': 'text/html; charset=utf-8',
          'Cache-Control': 'no-store',
          'X-Content-Type-Options': 'nosniff',
          // No other site may frame the page (clickjacking the flush button).
          'Content-Security-Policy': "frame-ancestors 'none'",
          'X-Frame-Options': 'DENY',
        });
        res.end(req.method === 'HEAD' ? undefined : dashboardHtml());
        return;
      case 'GET /health': {
        const h = await this.checkHealth();
        send(res, h.ok ? 200 : 503, {
          status: h.ok ? 'ok' : 'unavailable',
          listening: this.source.listening(),
          upstream: `${this.source.upstream.host}:${this.source.upstream.port}`,
          upstream_connect_ms: h.upstreamMs,
          ...(h.ok ? {} : { reason: h.reason }),
        });
        return;
      }
      case 'GET /ready': {
        const reason = await this.notReady();
        send(res, reason === null ? 200 : 503, reason === null ? { status: 'ready' } : { status: 'not ready', reason });
        return;
      }
      case 'GET /upstreams': {
        const views = await this.source.upstreams();
        const one = this.source.upstream;
        send(res, 200, {
          health_checks: views !== null,
          upstreams: views ?? [{ node: formatHostPort(one), state: 'unknown', primary: true, failures: 0, lastError: null, checkedAt: null, replayLsn: null, replayLagMs: null, readOnlyCandidate: false, sessions: 0 }],
        });
        return;
      }
      case 'GET /metrics': {
        // Gathered before the head is written: a failure (a process that does not answer) is then a 500.
        const text = await this.metrics();
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Cache-Control': 'no-store' });
        res.end(text);
        return;
      }
      case 'GET /stats':
        send(res, 200, await this.stats());
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
        send(res, 200, { sort, queries: await this.source.queries(sort, limit) });
        return;
      }
      case 'GET /tables':
        send(res, 200, await this.source.tables());
        return;
      case 'POST /cache/flush': {
        if (!(await this.source.flushCache())) {
          send(res, 409, { error: 'the result cache is off (start pgscribe with --cache)' });
          return;
        }
        this.ops.info('admin: cache flushed', { from: `${req.socket.remoteAddress}:${req.socket.remotePort}` });
        send(res, 200, { flushed: true });
        return;
      }
    }
    const known = ['/', '/health', '/ready', '/upstreams', '/metrics', '/stats', '/queries', '/tables', '/cache/flush'];
    if (known.includes(url.pathname)) {
      res.setHeader('Allow', url.pathname === '/cache/flush' ? 'POST' : url.pathname === '/' ? 'GET, HEAD' : 'GET');
      send(res, 405, { error: `${req.method} is not allowed on ${url.pathname}` });
      return;
    }
    send(res, 404, { error: `no such endpoint ${url.pathname}; see ${known.join(', ')}` });
  }

  /**
   * Why a request that a browser may have been made to send is refused, or null. Without a token
   * the admin listens on loopback only, and a web page the operator opens could still reach it:
   * by DNS rebinding (its own name, resolved to 127.0.0.1: the Host header gives it away) or by a
   * cross-site form POST (the Origin header gives it away). With a token, a page does not know it.
   */
  private crossSiteRefusal(req: http.IncomingMessage): string | null {
    const host = req.headers.host ?? '';
    if (this.tokenDigest === null && !isLoopbackHost(host)) {
      return `pgscribe admin: Host ${JSON.stringify(host.slice(0, 100))} is not a loopback name; without --admin-token only localhost, 127.0.0.1 or [::1] are answered (a DNS rebinding defence)`;
    }
    const origin = req.headers.origin;
    if (req.method !== 'GET' && req.method !== 'HEAD' && typeof origin === 'string' && origin !== `http://${host}` && origin !== `https://${host}`) {
      return `pgscribe admin: ${req.method} from another origin (${JSON.stringify(origin.slice(0, 100))}) is refused (a cross-site request forgery defence)`;
    }
    return null;
  }

  private authorized(req: http.IncomingMessage, url: URL): boolean {
    if (this.tokenDigest === null) return true;
    const header = req.headers.authorization;
    let given: string | null = null;
    if (typeof header === 'string' && header.startsWith('Bearer ')) given = header.slice(7).trim();
    else given = url.searchParams.get('token');
    return given !== null && timingSafeEqual(sha256(given), this.tokenDigest);
  }

  /**
   * Readiness, for a load balancer: with several upstreams, a primary is known (a node up, not in
   * recovery, its last check passed, and no second node claiming the role) or, without
   * credentials before a session said which node is primary, a node up for new sessions to try
   * (src/upstreams/upstream-set.ts); with one, /health's verdict. Null when ready, else why not.
   */
  private async notReady(): Promise<string | null> {
    const views = await this.source.upstreams();
    if (views === null) {
      const h = await this.checkHealth();
      return h.ok ? null : h.reason;
    }
    const down = await this.source.unavailable();
    if (down !== null) return down;
    if (views.some((v) => v.primary || v.tried)) return null;
    return `no upstream primary: ${views.map((v) => `${v.node} ${v.state}`).join(', ')}`;
  }

  /** Listening (every serving process up), and the upstream accepts a TCP connection (verdict reused for a second). */
  private async checkHealth(): Promise<Health> {
    const reason = await this.source.unavailable();
    if (reason !== null) return { at: Date.now(), ok: false, reason, upstreamMs: null };
    // Several upstreams: /health stays a liveness check; which node serves is /ready's and /upstreams' to say.
    if ((await this.source.upstreams()) !== null) return { at: Date.now(), ok: true, reason: '', upstreamMs: null };
    const now = Date.now();
    if (this.health !== null && now - this.health.at < HEALTH_CACHE_MS) return this.health;
    this.probing ??= probeUpstream(this.source.upstream, Math.min(this.source.connectTimeoutMs, 2000)).then((h) => {
      this.health = h;
      this.probing = null;
      return h;
    });
    return this.probing;
  }

  /** The figures of /stats (and of the dashboard): the registry's, with the time, version and latency percentiles. */
  async stats(): Promise<Record<string, unknown>> {
    const r = await this.source.readings();
    return {
      now: new Date().toISOString(),
      uptime_s: Math.round((Date.now() - r.startedAt) / 100) / 10,
      version: this.opts.version,
      ...statsJsonOf(r),
      latency_ms: latencySummary(r),
    };
  }

  /** Prometheus text exposition format 0.0.4. */
  async metrics(): Promise<string> {
    return prometheusOf(await this.source.readings());
  }
}

/** localhost, 127.0.0.0/8 or [::1], with or without a port. */
function isLoopbackHost(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  return name === 'localhost' || name === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
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
