/**
 * The shape of the effective settings, nested by area. The public names (`--log-format`,
 * `"cache-ttl"`) are not these: settings.ts maps each public name to its place here.
 */

export interface HostPort {
  host: string;
  port: number;
}

/** Client side, PgBouncer's client_tls_sslmode: disable answers SSLRequest 'N'; allow offers TLS; require refuses plaintext. */
export type ClientTlsMode = 'disable' | 'allow' | 'require';
/** Upstream side, libpq's sslmode (without allow). */
/** TLS to Redis: none, encrypted without checking the certificate, or checked against redis-tls-ca. */
export type RedisTlsMode = 'disable' | 'require' | 'verify-full';
export type UpstreamTlsMode = 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

/** A `cache-rules` entry as written (kept for --check); cache-rules.ts compiles it. */
export interface CacheRuleSpec {
  pattern: string;
  flags: string;
  ttl: number | 'never';
}

/**
 * A `rate-limits` entry as written (kept for --check): the sessions it matches (each field
 * absent: any) and their rate. src/limits/rate-limiter.ts gives each matched (rule, user,
 * database, application_name) its own token bucket.
 */
export interface RateLimitRule {
  user?: string;
  database?: string;
  application_name?: string;
  /** Queries (Q or E) per second, the bucket's refill rate. */
  qps: number;
  /** Queries that may run at once beyond the rate: the bucket's size. */
  burst: number;
}

/** Bounds on clients and how long each phase may take. */
export interface LimitsConfig {
  maxConnections: number;
  /** Sessions at once per user (0: no limit), PgBouncer's max_user_connections; more get 53300. */
  maxUserConnections: number;
  /** Sessions at once per database (0: no limit), PgBouncer's max_db_connections; more get 53300. */
  maxDbConnections: number;
  /** Query rate limits, first matching rule wins (empty: none). */
  rateLimits: RateLimitRule[];
  /** Longest a query over its rate is delayed; one that would wait longer gets 53400. */
  rateLimitMaxDelayMs: number;
  maxMessageBytes: number;
  connectTimeoutMs: number;
  startupTimeoutMs: number;
  shutdownGraceMs: number;
}

/** The query log. */
export interface LogConfig {
  /** File path, '-' for stdout, 'none' for no query log. */
  path: string;
  format: 'text' | 'json';
  params: boolean;
  paramMaxBytes: number;
  /**
   * Bind and Execute lines repeat at most this many characters of their statement's SQL (0: all):
   * a client repeating a large statement's Execute must not multiply its size in the log.
   */
  repeatedSqlMaxChars: number;
  bufferBytes: number;
  /** Rotate the file before it would exceed this many bytes (0: never); keep this many rotated files. */
  rotateBytes: number;
  rotateKeep: number;
  /** A `done` line after each Q/E's answer. */
  completions: boolean;
  /**
   * The JSON log can be replayed (docs/replay.md): start/end lines, D/C/S/H lines, the wire
   * details of P/B/E. Turns completions on (checks.ts).
   */
  replay: boolean;
  /**
   * Statements whose lines hold no data values (src/log/redaction.ts): their parameters become a
   * count and their SQL the digest normal form (literals as $n). Regular expressions, any match.
   */
  redact: string[];
  /** `normalized`: every line's SQL in the digest normal form and no parameter values. */
  sqlForm: 'text' | 'normalized';
  /** Which sessions' lines are written (src/log/sampling.ts); first match wins; none: every line. */
  sample: LogSampleRule[];
  /** When the writer is behind: `wait` pauses the clients (never drops), `drop` drops and counts. */
  overflow: 'wait' | 'drop';
}

/** A log-sample rule: sessions (and, with `sql`, statements) it matches are written at `rate`. */
export interface LogSampleRule {
  user?: string;
  database?: string;
  application_name?: string;
  /** A regular expression (case-insensitive) on the statement's SQL. */
  sql?: string;
  /** The fraction of matching sessions whose matching lines are written, 0 to 1. */
  rate: number;
}

/** The result cache and singleflight in this process. */
export interface CacheConfig {
  /** L1 result cache on. */
  enabled: boolean;
  /** Concurrent identical reads run once. */
  singleflight: boolean;
  maxBytes: number;
  maxEntries: number;
  ttlMs: number;
  maxEntryBytes: number;
  rules: CacheRuleSpec[];
  /** worker_threads holding the cache/singleflight shards; 0: the event loop thread. */
  workers: number;
  /**
   * What drops a cached answer whose rows changed without pgscribe seeing the write: ttl (only
   * the TTL bounds it), wal (PostgreSQL's change stream), auto (wal when the server allows it).
   */
  invalidation: CacheInvalidation;
  /** The operator's publication for wal mode ('' : pgscribe's own, pgscribe_all, which it creates and fills). */
  walPublication: string;
  /**
   * wal mode: how long the ReadyForQuery answering a commit that wrote through pgscribe waits for
   * the change stream to have applied that commit (read-your-writes); 0: it does not wait.
   */
  walWaitMs: number;
}

export type CacheInvalidation = 'auto' | 'wal' | 'ttl';

/** The shared (L2) cache in Redis. */
export interface RedisConfig {
  /** null: off. */
  address: HostPort | null;
  password: string;
  user: string;
  db: number;
  prefix: string;
  timeoutMs: number;
  /** The secret that signs shared entries (l2-value.ts); required with an address. */
  key: string;
  tls: RedisTlsMode;
  /** PEM CA certificates for verify-full ('' for none). */
  tlsCa: string;
  /** Identical reads through several instances run once (a Redis lock elects the leader). */
  singleflight: boolean;
  lockMs: number;
}

/** TLS from clients. Paths are PEM files; '' for none. */
export interface ClientTlsConfig {
  /** Certificate (chain) shown to clients. */
  cert: string;
  /** Private key of cert. */
  key: string;
  /** CA certificates clients' certificates must chain to; '' for no client certificates. */
  ca: string;
  /** null until resolved: allow with cert and key, else disable (see clientTlsMode). */
  mode: ClientTlsMode | null;
}

/** TLS to the upstream. Paths are PEM files; '' for none. */
export interface UpstreamTlsConfig {
  /** libpq's sslmode meanings. */
  mode: UpstreamTlsMode;
  /** CA certificates the upstream's certificate must chain to. */
  ca: string;
  /** Client certificate and key pgscribe presents to the upstream. */
  cert: string;
  key: string;
}

export interface TlsConfig {
  client: ClientTlsConfig;
  upstream: UpstreamTlsConfig;
}

/**
 * pgscribe's own connection to PostgreSQL, with its own credentials: what statements touch comes
 * from the catalog through it (one connection per database the sessions use). user '' = off.
 */
export interface CatalogConfig {
  user: string;
  password: string;
  /** The database of the connection that is not about one session's database. */
  database: string;
  /** ms between checks for catalog changes made by anyone (DDL not through pgscribe). */
  pollMs: number;
}

/** The admin HTTP server. */
export interface AdminConfig {
  /** null: off. */
  address: HostPort | null;
  /** Bearer token the admin server requires ('' = none; then it only binds to loopback). */
  token: string;
  /** Query digests kept (top by total time). */
  digestMaxEntries: number;
}

/** Health checks of the upstream nodes, when there are several (src/upstreams/). */
export interface HealthConfig {
  intervalMs: number;
  timeoutMs: number;
  /** Failed checks in a row before a node counts as down. */
  failures: number;
  /** How long a new session waits for a primary before 08001. */
  primaryWaitMs: number;
  /** Without catalog-user: the user a check's StartupMessage names (src/upstreams/startup-probe.ts). */
  user: string;
}

/** What a standby must be for the read-only listener (--listen-replicas). */
export type ReplicaFallback = 'primary' | 'refuse';

/** The read-only listener: sessions spread over healthy standbys (src/upstreams/). */
export interface ReplicasConfig {
  /** null: no read-only listener. */
  listen: HostPort | null;
  /** A standby further behind its primary than this gets no new read-only session. */
  maxLagMs: number;
  /** No standby qualifies: send the session to the primary, or refuse it with 08001. */
  fallback: ReplicaFallback;
}

export interface Config {
  listen: HostPort;
  replicas: ReplicasConfig;
  /** The PostgreSQL nodes (one, or several with health checks and failover). */
  upstreams: HostPort[];
  health: HealthConfig;
  limits: LimitsConfig;
  /** Processes serving `listen` (src/processes/); 1: this process alone, as before there were several. */
  processes: number;
  /** ms between stats lines on stderr; 0: only on SIGUSR2. */
  statsIntervalMs: number;
  log: LogConfig;
  cache: CacheConfig;
  redis: RedisConfig;
  catalog: CatalogConfig;
  tls: TlsConfig;
  admin: AdminConfig;
}

/** The effective client-side TLS mode: the setting, or when unset allow with a certificate and key, else disable. */
export function clientTlsMode(c: ClientTlsConfig): ClientTlsMode {
  if (c.mode !== null) return c.mode;
  return c.cert !== '' && c.key !== '' ? 'allow' : 'disable';
}
