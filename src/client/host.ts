/**
 * What a client session needs of the proxy around it: a slice of the settings, the ops log, the
 * counters it feeds, the query log, the cache, TLS, the cancel-key registry and admission. The
 * Server implements it; a test can implement it without one. Sessions never see the Server.
 */
import type { HostPort } from '../config';
import type { OpsLog } from '../log/ops';
import type { ClientLogger } from '../log/client-logger';
import type { CacheContext } from '../cache/session';
import type { TlsSetup } from '../tls';
import type { CompletionSink } from './recorder';
import type { SystemIdSource } from './session-start';
import type { ErrorFields } from '../protocol/messages';
import type { SessionIdentity } from '../limits/connection-limits';
import type { LimitCounters } from '../limits/counters';
import type { RateLimiter } from '../limits/rate-limiter';

/** BackendKeyData of an upstream session: what a CancelRequest for it must carry. */
export interface BackendKey {
  readonly pid: number;
  readonly secret: number;
}

/** A client session as the proxy around it handles it. */
export interface ClientHandle {
  /** Unique in this process: the `conn=` of its log lines. */
  readonly id: number;
  /** The client's address, host:port. */
  readonly address: string;
  /** BackendKeyData of its upstream session, once the server sent it. */
  readonly backendKey: BackendKey | null;
  /**
   * A CancelRequest names this session. True when pgscribe answered it itself (the session was
   * waiting for another client's identical query); false: the cancel goes to the server.
   */
  cancelWait(): boolean;
  /** Server shutdown: close now if idle, else as soon as the session is idle again. */
  requestShutdown(): void;
  /** Close now with 57P01. */
  closeForShutdown(): void;
  /** Its upstream connection: the node it connects or connected to (null before one is chosen). */
  readonly upstream: { readonly node: HostPort | null };
  /** It came through the read-only listener (--listen-replicas): a standby serves it. */
  readonly readOnly: boolean;
  /** Send this FATAL error (at a message boundary) and close: e.g. its node left the primary role. */
  fail(error: ErrorFields): void;
  /** Destroy both sockets now (process exit after the grace period). */
  destroy(): void;
}

/** The settings a session reads. */
export interface ClientSettings {
  readonly upstream: HostPort;
  /** Largest client message; larger gets 08P01. */
  readonly maxMessageBytes: number;
  readonly connectTimeoutMs: number;
  /** With several upstream nodes: how long a new session waits for a primary. */
  readonly primaryWaitMs: number;
  /** The read-only listener, when no standby qualifies: the primary serves the session, or 08001. */
  readonly replicaFallback: 'primary' | 'refuse';
  readonly startupTimeoutMs: number;
  /** A `done` line follows each answered Q/E. */
  readonly logCompletions: boolean;
  /** The query log is replayable (--log-replay): session lines, D/C/S/H lines, wire details. */
  readonly logReplay: boolean;
}

/** Several upstream nodes (src/upstreams/upstream-set.ts): where new sessions go. */
export interface UpstreamRouter {
  /** The node known to be primary now, or null (none is, or two claim to be). */
  readonly primary: HostPort | null;
  /** Where a new primary-listener session goes now: the primary, or without credentials a node to try; null: wait. */
  route(): HostPort | null;
  /** The same, as soon as there is one; null after timeoutMs. */
  whenTarget(timeoutMs: number): Promise<HostPort | null>;
  /** A primary-listener session's startup on this node ended (ReadyForQuery). */
  startupDone(node: HostPort): void;
  /** Resolves once every node has been checked once (or after timeoutMs). */
  whenChecked(timeoutMs: number): Promise<void>;
  /** The standby a new read-only session goes to (fewest of `sessions`, by node name), or null. */
  pickStandby(sessions: ReadonlyMap<string, number>): HostPort | null;
  /** A session could not connect to this node: check it now. */
  suspect(node: HostPort): void;
  /** A session found this node in recovery: send no session there, and check it now. */
  sawInRecovery(node: HostPort): void;
  /** A session found this node out of recovery (in_hot_standby off): without credentials, how a primary is known. */
  sawPrimary(node: HostPort): void;
  /** A session could not connect to this node (refused, timeout): as a failed check. */
  unreachable(node: HostPort, reason: string): void;
  /** Every node and its state, for a message (withErrors: the last check's error of each down node). */
  describe(withErrors?: boolean): string;
}

/** Counters sessions add to (the stats line, /stats and /metrics read them). */
export interface ClientCounters {
  bytesFromClients: number;
  bytesFromServers: number;
  /** Client messages received after startup, by type byte. */
  readonly messagesIn: Float64Array;
  /** Upstream connect failures, unexpected closes and invalid messages. */
  upstreamErrors: number;
  /** Read-only listener: sessions sent to a standby, sent to the primary for want of one, refused (08001). */
  readOnlyToStandby: number;
  readOnlyToPrimary: number;
  readOnlyRefused: number;
  /** The connection and rate limits' refusals and delays. */
  readonly limits: LimitCounters;
}

/** Live sessions by their cancel key. */
export interface KeyRegistry {
  register(c: ClientHandle): void;
  unregister(c: ClientHandle): void;
  /** Route a CancelRequest to the session it names (from: the canceller's address). */
  cancel(pid: number, secret: number, from: string): void;
}

export interface ClientHost {
  readonly settings: ClientSettings;
  readonly ops: OpsLog;
  readonly counters: ClientCounters;
  readonly logger: ClientLogger;
  /** The cache/singleflight layer, null when both are off. */
  readonly cache: CacheContext | null;
  readonly tls: TlsSetup;
  /** Several upstream nodes: the router to the primary; null with one (settings.upstream). */
  readonly upstreams: UpstreamRouter | null;
  /** Query digests fed by completed queries (--admin), null when off. */
  readonly digests: CompletionSink | null;
  /** Sessions track how each Q/E ends (--log-completions, or digests). */
  readonly tracksCompletions: boolean;
  /** The upstream nodes' system identifiers for log-replay's start lines (null: not known, no catalog-user). */
  readonly systemIds: SystemIdSource | null;
  readonly keys: KeyRegistry;
  /**
   * A StartupMessage arrived from this user for this database: null when the session may start,
   * else the error it gets (53300: max-connections, max-user-connections or max-db-connections).
   * With --processes N the primary keeps the counts, and the answer comes as a promise.
   */
  admit(c: ClientHandle, who: SessionIdentity): ErrorFields | null | Promise<ErrorFields | null>;
  /** The rate-limits rules and their buckets (src/limits/rate-limiter.ts); null without rules. */
  readonly rateLimiter: RateLimiter | null;
  /** The client's socket closed (the host knows whether it held one of the sessions admit() counts). */
  closed(c: ClientHandle): void;
  /** Sessions connected (or connecting) to each upstream node, by node name (HOST:PORT). */
  sessionsByNode(): Map<string, number>;
}
