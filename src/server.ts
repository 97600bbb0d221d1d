/**
 * The Server owns the listening socket and the set of Clients, enforces the connection limit,
 * routes CancelRequests (cancel.ts) and runs the graceful shutdown. It is the sessions' host
 * (client/host.ts): they see only that slice of it.
 */
import * as net from 'node:net';
import { Client } from './client/session';
import type { ClientCounters, ClientHandle, ClientHost, ClientSettings } from './client/host';
import type { SystemIdSource } from './client/session-start';
import { formatHostPort, type Config, type HostPort } from './config';
import type { ClientLogger } from './log/client-logger';
import type { OpsLog } from './log/ops';
import type { CacheContext } from './cache/session';
import type { Insight } from './insight';
import type { TlsSetup } from './tls';
import { CancelRouter } from './cancel';
import { ThrottledLine } from './log/ops-throttle';
import type { WorkerLink } from './processes/worker-link';
import { listenOn } from './listen';
import { SessionError } from './client/errors';
import type { ErrorFields } from './protocol/messages';
import type { UpstreamSet } from './upstreams/upstream-set';
import { ConnectionLimits, type LimitRefusal, type SessionIdentity } from './limits/connection-limits';
import { newLimitCounters } from './limits/counters';
import { RateLimiter } from './limits/rate-limiter';

/** Sockets still in their startup phase beyond the session limit get this much headroom. */
const STARTUP_HEADROOM = 64;
/**
 * At the socket limit, a newcomer takes the place of a socket that has sent no StartupMessage for
 * this long (clients send theirs at once; a burst of new connections is younger than this).
 */
const SILENT_EVICT_MS = 1000;

/** The slice of the settings sessions read. */
function settingsOf(config: Config): ClientSettings {
  return {
    upstream: config.upstreams[0]!,
    maxMessageBytes: config.limits.maxMessageBytes,
    connectTimeoutMs: config.limits.connectTimeoutMs,
    primaryWaitMs: config.health.primaryWaitMs,
    replicaFallback: config.replicas.fallback,
    startupTimeoutMs: config.limits.startupTimeoutMs,
    logCompletions: config.log.completions,
    logReplay: config.log.replay,
  };
}

/** The host part of a client address ("10.0.0.7:5432" or "[::1]:5432"): one peer. */
function peerOf(address: string): string {
  const colon = address.lastIndexOf(':');
  return colon < 0 ? address : address.slice(0, colon);
}

export class Server implements ClientHost {
  readonly config: Config;
  /** What sessions read of the settings (replaced in place by refreshSettings() after a reload). */
  readonly settings: ClientSettings;
  readonly logger: ClientLogger;
  readonly ops: OpsLog;
  /** The cache/singleflight layer, null when both are off. */
  readonly cache: CacheContext | null;
  /** TLS for clients and to the upstream (each null when off). */
  readonly tls: TlsSetup;
  readonly clients = new Set<ClientHandle>();
  /** Query digests and table heat (--admin), null when off. */
  readonly insight: Insight | null;
  readonly digests: Insight | null;
  /** Clients track how each Q/E ends (--log-completions, or digests). */
  readonly tracksCompletions: boolean;
  /** The nodes' system identifiers for log-replay's start lines; main.ts sets them with catalog-user. */
  systemIds: SystemIdSource | null = null;
  readonly counters: ClientCounters = {
    bytesFromClients: 0,
    bytesFromServers: 0,
    messagesIn: new Float64Array(256),
    upstreamErrors: 0,
    readOnlyToStandby: 0,
    readOnlyToPrimary: 0,
    readOnlyRefused: 0,
    limits: newLimitCounters(),
  };
  /** The rate-limits rules and their token buckets (null: no rules); a reload that changes the rules makes new ones. */
  rateLimiter: RateLimiter | null;
  readonly keys: CancelRouter;
  readonly startedAt = Date.now();
  /** Clients admitted (each holds one of max-connections), with who they are for the per-user and per-database limits. */
  private readonly admitted = new Map<ClientHandle, SessionIdentity>();
  /** max-user-connections and max-db-connections in this process (with --processes N the primary counts). */
  private readonly limits: ConnectionLimits;
  /** Connections accepted (or handed over by the primary) so far. */
  private accepted = 0;
  private listener: net.Server | null = null;
  /** The read-only listener (--listen-replicas), when there is one. */
  private replicaListener: net.Server | null = null;
  private shuttingDown = false;
  private idleWaiters: (() => void)[] = [];
  /** Clients that have sent no StartupMessage yet, in arrival order, with when they came (performance.now()). */
  private readonly silent = new Map<ClientHandle, number>();
  private readonly evictedLine: ThrottledLine;

  constructor(
    config: Config,
    logger: ClientLogger,
    ops: OpsLog,
    cache: CacheContext | null = null,
    tls: TlsSetup = { client: null, upstream: null },
    insight: Insight | null = null,
    /** One of --processes N (src/processes/): the primary hands over the connections and counts the sessions. */
    private readonly link: WorkerLink | null = null,
    /** Several upstream nodes (src/upstreams/): new sessions go to the primary. Null with one. */
    readonly upstreams: UpstreamSet | null = null,
  ) {
    this.config = config;
    this.settings = settingsOf(config);
    this.logger = logger;
    this.ops = ops;
    this.cache = cache;
    this.tls = tls;
    this.insight = insight;
    this.digests = insight;
    this.tracksCompletions = insight !== null || (config.log.completions && logger.enabled);
    this.limits = new ConnectionLimits(config.limits.maxUserConnections, config.limits.maxDbConnections);
    this.rateLimiter = this.rateLimiterOf(config);
    this.keys = new CancelRouter(config.upstreams[0]!, tls.upstream, config.limits.connectTimeoutMs, ops, link);
    this.evictedLine = new ThrottledLine(
      (msg, fields) => ops.warn(msg, fields),
      'connection slots full: closed the oldest silent socket of the peer holding the most, to let a new client in; many silent sockets from one address look like a slot-exhaustion attempt',
    );
  }

  /** A reload changed the settings (this.config, in place): new sessions and queries read the new ones. */
  refreshSettings(): void {
    Object.assign(this.settings, settingsOf(this.config));
    const l = this.config.limits;
    this.limits.setLimits(l.maxUserConnections, l.maxDbConnections);
    // New rules are new buckets, for the sessions that start from now on; running sessions keep
    // the rate they started with.
    if (JSON.stringify([l.rateLimits, l.rateLimitMaxDelayMs]) !== this.rateLimitsOf) this.rateLimiter = this.rateLimiterOf(this.config);
  }

  /** The rate-limits rules and bound the limiter was made from (JSON), to tell a reload's change. */
  private rateLimitsOf = '';

  private rateLimiterOf(config: Config): RateLimiter | null {
    const l = config.limits;
    this.rateLimitsOf = JSON.stringify([l.rateLimits, l.rateLimitMaxDelayMs]);
    return l.rateLimits.length === 0 ? null : new RateLimiter(l.rateLimits, l.rateLimitMaxDelayMs, config.processes, (m, f) => this.ops.warn(m, f));
  }

  /**
   * A node left the primary role (a switchover: it runs in recovery now). Its sessions would fail
   * at their next write with 25006: they are closed with 57P01 naming the new primary, so that
   * drivers reconnect and are sent there.
   */
  closeSessionsOn(node: HostPort, primary: HostPort | null): number {
    let closed = 0;
    for (const c of this.clients) {
      const at = c.upstream.node;
      // Read-only sessions belong on a standby: a switchover does not harm them.
      if (c.readOnly || at === null || at.host !== node.host || at.port !== node.port) continue;
      c.fail(SessionError.upstreamDemoted(formatHostPort(node), primary === null ? null : formatHostPort(primary)));
      closed++;
    }
    return closed;
  }

  sessionsByNode(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const c of this.clients) {
      const at = c.upstream.node;
      if (at === null) continue;
      const name = formatHostPort(at);
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    return counts;
  }

  /** A per-user, per-database or rate limit is set: their counters are shown (src/metrics.ts). */
  get limitsOn(): boolean {
    return this.limits.active || this.rateLimiter !== null;
  }

  get sessionCount(): number {
    return this.admitted.size;
  }

  get connectionsTotal(): number {
    return this.accepted;
  }

  /** The listening socket is open, or the primary hands over connections (false once shutdown began). */
  get listening(): boolean {
    return !this.shuttingDown && (this.link !== null || (this.listener !== null && this.listener.listening));
  }

  /**
   * Sessions read their sockets into reused buffers (src/net/reused-reads.ts) unless client TLS
   * (its handshake reads the accepted socket itself) or the cache (which keeps answers and held
   * requests) is on: then Node's own reads, a fresh Buffer each.
   */
  private get readsInPlace(): boolean {
    return this.tls.client === null && this.cache === null;
  }

  /** Start listening; resolves with the bound address (port 0 picks a free one). */
  listen(): Promise<net.AddressInfo> {
    const srv = net.createServer({ noDelay: true, pauseOnConnect: this.readsInPlace }, (sock) => this.accept(sock));
    this.listener = srv;
    return listenOn(srv, this.config.listen, (err) => this.ops.error('listener error', { error: err.message }));
  }

  /** Start the read-only listener (--listen-replicas): its sessions go to standbys. */
  listenReplicas(address: HostPort): Promise<net.AddressInfo> {
    const srv = net.createServer({ noDelay: true, pauseOnConnect: this.readsInPlace }, (sock) => this.accept(sock, undefined, true));
    this.replicaListener = srv;
    return listenOn(srv, address, (err) => this.ops.error('read-only listener error', { error: err.message }));
  }

  /** A connection the primary accepted for this process (--processes N), with its conn id. */
  adopt(sock: net.Socket, id: number): void {
    sock.setNoDelay(true);
    this.accept(sock, id);
  }

  private accept(sock: net.Socket, id?: number, readOnly = false): void {
    if (this.shuttingDown || (this.clients.size >= this.config.limits.maxConnections + STARTUP_HEADROOM && !this.evictSilent())) {
      // Far over the limit (or stopping): refuse before reading anything.
      sock.on('error', () => {});
      sock.destroy();
      this.link?.gone(false);
      return;
    }
    this.accepted++;
    const client = new Client(this, sock, id ?? this.accepted, readOnly, this.readsInPlace);
    this.clients.add(client);
    this.silent.set(client, performance.now());
  }

  /**
   * Every socket slot is taken: close the oldest socket that has been silent (no StartupMessage)
   * for SILENT_EVICT_MS, of the peer that holds the most such sockets, as the postmaster closes a
   * silent socket at its startup timeout. Otherwise whoever keeps the headroom filled with silent
   * sockets, reconnecting at each startup timeout, keeps every new client out. Legitimate clients
   * speak at once, so only a peer that holds silent sockets loses one. False: none qualifies.
   */
  private evictSilent(): boolean {
    const now = performance.now();
    const byPeer = new Map<string, { count: number; oldest: ClientHandle }>();
    for (const [c, since] of this.silent) {
      if (now - since < SILENT_EVICT_MS) break; // arrival order: the rest are younger
      const peer = peerOf(c.address);
      const e = byPeer.get(peer);
      if (e === undefined) byPeer.set(peer, { count: 1, oldest: c });
      else e.count++;
    }
    let victim: { count: number; oldest: ClientHandle } | null = null;
    let victimPeer = '';
    for (const [peer, e] of byPeer) {
      if (victim === null || e.count > victim.count) {
        victim = e;
        victimPeer = peer;
      }
    }
    if (victim === null) return false;
    this.silent.delete(victim.oldest);
    this.evictedLine.log({ conn: victim.oldest.id, peer: victimPeer, silent_sockets_of_peer: victim.count, sockets: this.clients.size });
    victim.oldest.destroy();
    return true;
  }

  /**
   * Whether the session may start (null) or which limit refuses it. With --processes N the
   * primary keeps the one count, and the answer comes back as a promise; it is only acted on
   * while the client is still there.
   */
  admit(client: ClientHandle, who: SessionIdentity): ErrorFields | null | Promise<ErrorFields | null> {
    this.silent.delete(client);
    const link = this.link;
    if (link === null) {
      if (this.admitted.size >= this.config.limits.maxConnections) return this.refuse(client, who, 'connections');
      const over = this.limits.take(who);
      if (over !== null) return this.refuse(client, who, over);
      this.admitted.set(client, who);
      return null;
    }
    const limited = this.limits.active;
    return link.admit(limited ? who : undefined).then((ok) => {
      if (ok !== true) return this.refuse(client, who, ok === false ? 'connections' : ok);
      // Gone while the primary answered: the slot goes back (closed() has been and went).
      if (!this.clients.has(client)) link.release(limited ? who : undefined);
      else this.admitted.set(client, who);
      return null;
    });
  }

  /** What the client refused under that limit is told (53300), said to the operator too. */
  private refuse(client: ClientHandle, who: SessionIdentity, over: LimitRefusal): ErrorFields {
    const l = this.config.limits;
    const fields = { conn: client.id, client: client.address };
    if (over === 'user') {
      this.counters.limits.refusedUserLimit++;
      this.ops.warn('per-user connection limit reached; refusing client with 53300', { ...fields, user: who.user, max_user_connections: l.maxUserConnections });
      return SessionError.tooManyForRole(who.user, l.maxUserConnections);
    }
    if (over === 'database') {
      this.counters.limits.refusedDbLimit++;
      this.ops.warn('per-database connection limit reached; refusing client with 53300', { ...fields, database: who.database, max_db_connections: l.maxDbConnections });
      return SessionError.tooManyForDatabase(who.database, l.maxDbConnections);
    }
    this.ops.warn('connection limit reached; refusing client with 53300', { ...fields, max_connections: l.maxConnections });
    return SessionError.tooManyClients();
  }

  closed(client: ClientHandle): void {
    const who = this.admitted.get(client);
    const admitted = who !== undefined && this.admitted.delete(client);
    if (admitted && this.link === null) this.limits.release(who);
    this.link?.gone(admitted, admitted && this.limits.active ? who : undefined);
    this.clients.delete(client);
    this.silent.delete(client);
    if (this.clients.size === 0 && this.idleWaiters.length > 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
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
    this.replicaListener?.close();
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
