/**
 * The Server owns the listening socket and the set of Clients, routes CancelRequests to the
 * session they belong to, enforces the connection limit and runs the graceful shutdown.
 */
import * as net from 'node:net';
import { Client } from './client';
import type { Config } from './config';
import type { ClientLogger } from './log/client-logger';
import type { OpsLog } from './log/ops';
import type { CacheContext } from './cache/session';
import { encodeCancelRequest } from './protocol/messages';
import type { Insight } from './insight';
import { negotiateUpstream, type TlsSetup } from './tls';

/** Sockets still in their startup phase beyond the session limit get this much headroom. */
const STARTUP_HEADROOM = 64;

export class Server {
  readonly config: Config;
  readonly logger: ClientLogger;
  readonly ops: OpsLog;
  /** The cache/singleflight layer, null when both are off. */
  readonly cache: CacheContext | null;
  /** TLS for clients and to the upstream (each null when off). */
  readonly tls: TlsSetup;
  readonly clients = new Set<Client>();
  /** Query digests and table heat (--admin), null when off. */
  readonly insight: Insight | null;
  /** Clients track how each Q/E ends (--log-completions, or digests). */
  readonly tracksCompletions: boolean;
  // messagesIn, upstreamErrors and bytesFrom*: the Client's counters. metrics.ts reads them, and
  // its readings() is the one place that says where they live.
  /** Client messages received after startup, by type byte. */
  readonly messagesIn = new Float64Array(256);
  /** Upstream connect failures, unexpected closes and invalid messages. */
  upstreamErrors = 0;
  readonly startedAt = Date.now();
  bytesFromClients = 0;
  bytesFromServers = 0;
  private sessions = 0;
  private nextId = 1;
  private readonly byKey = new Map<string, Client>();
  private listener: net.Server | null = null;
  private shuttingDown = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    config: Config,
    logger: ClientLogger,
    ops: OpsLog,
    cache: CacheContext | null = null,
    tls: TlsSetup = { client: null, upstream: null },
    insight: Insight | null = null,
  ) {
    this.config = config;
    this.logger = logger;
    this.ops = ops;
    this.cache = cache;
    this.tls = tls;
    this.insight = insight;
    this.tracksCompletions = insight !== null || (config.log.completions && logger.enabled);
  }

  get sessionCount(): number {
    return this.sessions;
  }

  get connectionsTotal(): number {
    return this.nextId - 1;
  }

  /** The listening socket is open (false before listen() and once shutdown began). */
  get listening(): boolean {
    return this.listener !== null && this.listener.listening && !this.shuttingDown;
  }

  /** Start listening; resolves with the bound address (port 0 picks a free one). */
  listen(): Promise<net.AddressInfo> {
    const { host, port } = this.config.listen;
    const srv = net.createServer({ noDelay: true }, (sock) => this.accept(sock));
    this.listener = srv;
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host, port }, () => {
        srv.off('error', reject);
        srv.on('error', (err) => this.ops.error('listener error', { error: err.message }));
        resolve(srv.address() as net.AddressInfo);
      });
    });
  }

  private accept(sock: net.Socket): void {
    if (this.shuttingDown || this.clients.size >= this.config.limits.maxConnections + STARTUP_HEADROOM) {
      // Far over the limit (or stopping): refuse before reading anything.
      sock.on('error', () => {});
      sock.destroy();
      return;
    }
    const client = new Client(this, sock, this.nextId++);
    this.clients.add(client);
  }

  /** Called when a client's StartupMessage arrives: false when the session limit is reached. */
  admitSession(client: Client): boolean {
    if (this.sessions >= this.config.limits.maxConnections) {
      this.ops.warn('connection limit reached; refusing client with 53300', {
        conn: client.id,
        client: client.address,
        max_connections: this.config.limits.maxConnections,
      });
      return false;
    }
    this.sessions++;
    return true;
  }

  /** A client admitted by admitSession() is gone. */
  releaseSession(): void {
    this.sessions--;
  }

  removeClient(client: Client): void {
    this.clients.delete(client);
    if (this.clients.size === 0 && this.idleWaiters.length > 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }

  registerKey(client: Client): void {
    const k = client.backendKey;
    if (k) this.byKey.set(`${k.pid}.${k.secret}`, client);
  }

  unregisterKey(client: Client): void {
    const k = client.backendKey;
    if (k && this.byKey.get(`${k.pid}.${k.secret}`) === client) this.byKey.delete(`${k.pid}.${k.secret}`);
  }

  /**
   * Forward a CancelRequest to the upstream of the session it names, on a fresh connection, with
   * the same --upstream-tls as sessions (the cancel key is a secret worth encrypting).
   * Keys that belong to no session of this proxy are ignored, as PostgreSQL ignores unknown keys.
   */
  cancel(pid: number, secret: number, from: string): void {
    const target = this.byKey.get(`${pid}.${secret}`);
    if (target === undefined) {
      this.ops.warn('cancel request for an unknown session ignored', { client: from, pid });
      return;
    }
    if (target.cancelWait()) {
      this.ops.info('cancel request answered by pgscribe: the session was waiting for another client\'s identical query', { conn: target.id, client: from, pid });
      return;
    }
    const { host, port } = this.config.upstream;
    const sock = net.connect({ host, port });
    let current: net.Socket = sock;
    const timer = setTimeout(() => current.destroy(), this.config.limits.connectTimeoutMs).unref();
    let failed = false;
    const failure = (error: string) => {
      if (failed) return;
      failed = true;
      this.ops.warn('could not forward cancel request', { conn: target.id, client: from, error });
    };
    sock.on('close', () => clearTimeout(timer));
    const send = (s: net.Socket, tls: boolean) => {
      current = s;
      if (s !== sock) {
        s.on('error', (err) => failure(err.message));
        s.on('close', () => clearTimeout(timer));
      }
      s.resume();
      s.end(encodeCancelRequest(pid, secret));
      this.ops.info('cancel request forwarded', { conn: target.id, client: from, pid, tls: this.tls.upstream === null ? undefined : tls });
    };
    sock.on('error', (err) => failure(err.message));
    const utls = this.tls.upstream;
    if (utls === null) {
      sock.on('connect', () => send(sock, false));
      return;
    }
    negotiateUpstream(sock, host, utls, (n) => {
      switch (n.kind) {
        case 'tls':
          send(n.socket, true);
          return;
        case 'plain':
          send(sock, false);
          return;
        case 'error':
          failure('the server sent an error during SSL negotiation');
          break;
        case 'failed':
          failure(n.reason);
          break;
      }
      clearTimeout(timer);
      sock.destroy();
    });
  }

  /**
   * Stop accepting; close sessions as they become idle outside a transaction; after graceMs
   * close the rest with 57P01. Resolves when every client is gone.
   */
  async shutdown(graceMs: number): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    // close() stops accepting at once; its callback would wait for every client, so don't.
    this.listener?.close();
    for (const c of this.clients) c.requestShutdown();
    if (this.clients.size === 0) return;
    const gone = new Promise<void>((r) => this.idleWaiters.push(r));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(true), graceMs);
    });
    const late = await Promise.race([gone.then(() => false), timedOut]);
    clearTimeout(timer);
    if (!late) return;
    this.ops.info('grace period over; closing remaining sessions with 57P01', { sessions: this.clients.size });
    for (const c of this.clients) c.closeForShutdown();
    const hard = setTimeout(() => {
      for (const c of this.clients) c.destroy();
    }, 2000);
    await gone;
    clearTimeout(hard);
  }
}
