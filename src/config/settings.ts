/**
 * Every setting: its public name (`--name` on the command line, `"name"` in a --config file),
 * where its value lives in the nested Config, its parser, default and help. The one table of
 * truth: defaults, the command line, the file, --help and --check all come from it.
 */
import { cacheRules } from './cache-rules';
import { rateLimits } from './rate-limits';
import { logRedact, logSample } from './log-rules';
import { ConfigError } from './config-error';
import { adminAddress, bool, optionalListen, filePath, int, zeroOrInt, nonEmpty, oneOf, parseHostPort, parseHostPortList, processCount, redisAddress, str, tlsMode, type Parser } from './parsers';
import type { CacheInvalidation, Config, HostPort, RedisTlsMode, ReplicaFallback, UpstreamTlsMode } from './types';

/** What sits at the end of a path: a HostPort or a list is one value, not a section. */
type Leaf = string | number | boolean | null | readonly unknown[] | HostPort;

/** Every path to a value in T, as a tuple of keys: ['listen'], ['cache', 'ttlMs'], ['tls', 'client', 'cert']. */
export type PathOf<T> = { [K in keyof T & string]: T[K] extends Leaf ? readonly [K] : readonly [K, ...PathOf<T[K]>] }[keyof T & string];

/** The type of the value at path P of T. */
export type ValueAt<T, P> = P extends readonly [infer K extends keyof T, ...infer R] ? (R extends readonly [] ? T[K] : ValueAt<T[K], R>) : never;

export type ConfigPath = PathOf<Config>;

interface Setting<P extends ConfigPath> {
  /** Where the value lives in Config. */
  path: P;
  parse: Parser<ValueAt<Config, P>>;
  default: ValueAt<Config, P>;
  help: string;
  /** A switch: `--name` alone means true (`--name false` and `--name=false` also work). */
  switch?: boolean;
}

/** A setting with its value type forgotten, for the code that handles them all alike. */
export interface AnySetting {
  path: ConfigPath;
  parse: Parser<unknown>;
  default: unknown;
  help: string;
  switch?: boolean;
}

/** A wrong path, or a parser or default of the wrong type for it, does not compile. */
function setting<const P extends ConfigPath>(path: P, parse: Parser<ValueAt<Config, P>>, def: ValueAt<Config, P>, help: string, isSwitch = false): Setting<P> {
  return isSwitch ? { path, parse, default: def, help, switch: true } : { path, parse, default: def, help };
}

/** Every setting, in --help and --check order: public name -> path, parser, default, help. */
export const SETTINGS = {
  listen: setting(['listen'], parseHostPort, { host: '127.0.0.1', port: 6000 }, 'address clients connect to'),
  upstream: setting(['upstreams'], parseHostPortList, [{ host: '127.0.0.1', port: 5432 }], "PostgreSQL server to relay to; several HOST:PORT separated by commas: sessions go to the one not in recovery (its role comes from catalog-user's health checks, or without it from the sessions)"),
  log: setting(['log', 'path'], nonEmpty, 'logs/queries.log', "query log file; '-' for stdout, 'none' for no query log"),
  'log-format': setting(['log', 'format'], oneOf('text', 'json'), 'text', 'query log format: text or json'),
  'log-params': setting(['log', 'params'], bool, true, 'log Bind parameter values (false: only their count)'),
  'log-param-max-bytes': setting(['log', 'paramMaxBytes'], int(0, 1 << 20), 256, 'parameter values longer than this are cut in the log'),
  'log-repeated-sql-max-chars': setting(['log', 'repeatedSqlMaxChars'], int(0, 0x3fffffff), 4096, "Bind and Execute lines show this much of their statement's SQL (the Parse line has it whole); 0: all"),
  'log-redact': setting(['log', 'redact'], logRedact, [], 'statements whose lines hold no data values (parameters as a count, SQL in the digest normal form): a regular expression on the SQL, or an array of them'),
  'log-sql': setting(['log', 'sqlForm'], oneOf('text', 'normalized'), 'text', 'text: SQL as sent; normalized: every line in the digest normal form (literals as $n) and no parameter values'),
  'log-sample': setting(['log', 'sample'], logSample, [], 'write only a fraction of some sessions\' lines, first match wins: JSON [{"user", "database", "application_name", "sql", "rate"}] or user=U,application_name=A,rate=0.1;...'),
  'log-overflow': setting(['log', 'overflow'], oneOf('wait', 'drop'), 'wait', 'when the query log falls behind by log-buffer-bytes: wait (pause clients, never drop) or drop (drop lines, count them, say so every second)'),
  'log-buffer-bytes': setting(['log', 'bufferBytes'], int(4096, 1 << 30), 8 << 20, 'log bytes queued before client reads pause'),
  'log-rotate-bytes': setting(['log', 'rotateBytes'], zeroOrInt(4096, 2 ** 40), 0, 'rotate the query log file before it would exceed this many bytes (4096 to 1 TiB; 0: never): FILE.1 is the newest rotated file'),
  'log-rotate-keep': setting(['log', 'rotateKeep'], int(1, 1000), 5, 'log-rotate-bytes: rotated files kept (FILE.1 to FILE.N); older ones are deleted'),
  'max-connections': setting(['limits', 'maxConnections'], int(1, 100000), 100, 'client sessions at once; more get 53300'),
  'max-user-connections': setting(['limits', 'maxUserConnections'], int(0, 100000), 0, 'client sessions at once per user (0: no limit); more get 53300'),
  'max-db-connections': setting(['limits', 'maxDbConnections'], int(0, 100000), 0, 'client sessions at once per database (0: no limit); more get 53300'),
  'rate-limits': setting(['limits', 'rateLimits'], rateLimits, [], 'query rate limits, first match wins: JSON [{"user", "database", "application_name", "qps", "burst"}] or user=U,database=D,application_name=A,qps=N,burst=N;...'),
  'rate-limit-max-delay-ms': setting(['limits', 'rateLimitMaxDelayMs'], int(0, 600_000), 1000, 'ms a query over its rate may be delayed; one that would wait longer gets 53400'),
  'max-message-bytes': setting(['limits', 'maxMessageBytes'], int(1024, 0x3fffffff), 64 << 20, 'largest client message; larger gets 08P01'),
  'connect-timeout': setting(['limits', 'connectTimeoutMs'], int(1, 3_600_000), 5000, 'upstream connect timeout, ms; then 08001'),
  'health-interval-ms': setting(['health', 'intervalMs'], int(100, 3_600_000), 2000, 'with several upstreams: ms between health checks of each node'),
  'health-timeout-ms': setting(['health', 'timeoutMs'], int(1, 600_000), 1000, 'with several upstreams: ms a health check may take; longer counts as a failure'),
  'health-failures': setting(['health', 'failures'], int(1, 100), 3, 'with several upstreams: failed health checks in a row before a node counts as down'),
  'health-user': setting(['health', 'user'], str, 'postgres', "with several upstreams and no catalog-user: the user a health check's startup names (it hangs up at the password request; with trust it reads in_hot_standby)"),
  'primary-wait-ms': setting(['health', 'primaryWaitMs'], int(0, 3_600_000), 10000, 'with several upstreams: ms a new session waits for a primary (during a failover) before 08001'),
  'listen-replicas': setting(['replicas', 'listen'], optionalListen, null, "with several upstreams: a second address whose sessions go to the healthy standby with the fewest sessions (read-only; never cached), or 'off' (default off)"),
  'max-replica-lag-ms': setting(['replicas', 'maxLagMs'], int(0, 86_400_000), 5000, 'listen-replicas: a standby further behind the primary than this gets no new session'),
  'replica-fallback': setting(['replicas', 'fallback'], oneOf<ReplicaFallback>('primary', 'refuse'), 'primary', 'listen-replicas: when no standby qualifies, send the session to the primary, or refuse it with 08001'),
  'startup-timeout': setting(['limits', 'startupTimeoutMs'], int(1, 3_600_000), 10000, 'ms a client may take to send its startup packet'),
  'shutdown-grace': setting(['limits', 'shutdownGraceMs'], int(0, 3_600_000), 10000, 'ms sessions get to finish on SIGTERM/SIGINT before 57P01'),
  processes: setting(['processes'], processCount, 1, "processes serving the listen address, each with its own event loop, sessions and cache, writing one query log: N, or 'auto' for one per core"),
  'stats-interval': setting(['statsIntervalMs'], int(0, 86_400_000), 0, 'ms between stats lines on stderr; 0: only on SIGUSR2'),
  cache: setting(['cache', 'enabled'], bool, false, 'answer repeated reads from an in-memory cache (switch)', true),
  singleflight: setting(['cache', 'singleflight'], bool, false, 'identical concurrent reads run once upstream (switch)', true),
  'cache-max-bytes': setting(['cache', 'maxBytes'], int(4096, 2 ** 40), 64 << 20, 'cache size bound in bytes'),
  'cache-max-entries': setting(['cache', 'maxEntries'], int(1, 100_000_000), 1_000_000, 'cache size bound in entries'),
  'cache-ttl': setting(['cache', 'ttlMs'], int(0, 86_400_000), 1000, 'ms a cached answer may be served (0: singleflight only)'),
  'cache-max-entry-bytes': setting(['cache', 'maxEntryBytes'], int(64, 1 << 30), 1 << 20, 'larger answers are neither cached nor shared'),
  'cache-rules': setting(['cache', 'rules'], cacheRules, [], 'JSON array of {"pattern": REGEX, "ttl": MS|"never"}; first match wins'),
  workers: setting(['cache', 'workers'], int(0, 64), 0, 'worker threads holding the cache shards (0: in the event loop thread)'),
  redis: setting(['redis', 'address'], redisAddress, null, "Redis HOST:PORT for a cache shared by several pgscribe instances (needs --cache), or 'off' (default off)"),
  'redis-password': setting(['redis', 'password'], str, '', 'password for Redis AUTH'),
  'redis-user': setting(['redis', 'user'], str, '', 'Redis ACL user for AUTH (default: the default user)'),
  'redis-db': setting(['redis', 'db'], int(0, 65535), 0, 'Redis database number (SELECT)'),
  'redis-key': setting(['redis', 'key'], str, '', 'secret (32+ characters, the same in every instance) that signs shared cache entries; required with --redis; better from PGSCRIBE_REDIS_KEY'),
  'redis-tls': setting(['redis', 'tls'], oneOf<RedisTlsMode>('disable', 'require', 'verify-full'), 'disable', 'TLS to Redis: disable, require (encrypted, unverified) or verify-full (certificate and host name checked against redis-tls-ca)'),
  'redis-tls-ca': setting(['redis', 'tlsCa'], filePath, '', 'PEM CA certificates the Redis certificate must chain to (verify-full)'),
  'redis-prefix': setting(['redis', 'prefix'], nonEmpty, 'pgscribe:', 'prefix of every Redis key and of the events channel'),
  'redis-timeout-ms': setting(['redis', 'timeoutMs'], int(1, 60_000), 50, 'ms a Redis command may take; then the lookup goes upstream'),
  'redis-singleflight': setting(['redis', 'singleflight'], bool, false, 'identical reads through several instances run once: a Redis lock elects the leader (switch)', true),
  'redis-lock-ms': setting(['redis', 'lockMs'], int(10, 600_000), 2000, 'how long another instance waits for the lock holder\'s answer before running the query itself'),
  'catalog-user': setting(['catalog', 'user'], str, '', "pgscribe's own PostgreSQL user: the cache learns from the catalog what statements touch (without it, --cache answers only what cache-rules allow)"),
  'catalog-password': setting(['catalog', 'password'], str, '', 'password of catalog-user'),
  'catalog-database': setting(['catalog', 'database'], nonEmpty, 'postgres', "database of pgscribe's own connection when no session's database applies"),
  'cache-invalidation': setting(['cache', 'invalidation'], oneOf<CacheInvalidation>('ttl', 'wal', 'auto'), 'ttl', "what drops answers whose rows changed outside pgscribe's sight (other clients, triggers, cascades): ttl (only the TTL), wal (PostgreSQL's change stream; needs catalog-user with REPLICATION and wal_level = logical), auto (wal when the server allows it, else ttl)"),
  'cache-wal-publication': setting(['cache', 'walPublication'], str, '', "wal mode: the operator's publication to read, used as it is (tables it does not stream are not cached); unset: pgscribe's own pgscribe_all, which it creates and fills with every table that has a replica identity"),
  'cache-wal-wait-ms': setting(['cache', 'walWaitMs'], int(0, 60_000), 1000, "wal mode: ms the answer to a commit that wrote through pgscribe waits for the change stream to apply it (so its triggers' and cascades' rows are never read stale); past it the database's answers are dropped and it is not served until the stream catches up; 0: no wait"),
  'catalog-poll-ms': setting(['catalog', 'pollMs'], int(100, 3_600_000), 1000, 'ms between checks for catalog changes made outside pgscribe (then cached answers of that database are dropped)'),
  'log-completions': setting(['log', 'completions'], bool, false, "a 'done' line (ms, rows, SQLSTATE) after each query's answer (switch)", true),
  'log-replay': setting(['log', 'replay'], bool, false, "make the JSON query log replayable (pgscribe replay): session start/end lines, every Describe/Close/Sync/Flush, parameter types and formats, row limits, rows digests; needs log-format json, turns on log-completions (switch)", true),
  admin: setting(['admin', 'address'], adminAddress, null, "admin HTTP server: PORT or HOST:PORT (loopback unless told), or 'off' (default off)"),
  'admin-token': setting(['admin', 'token'], str, '', 'bearer token the admin server requires (needed to bind beyond loopback)'),
  'digest-max-entries': setting(['admin', 'digestMaxEntries'], int(10, 1_000_000), 2000, 'query digests kept by the admin server (top by total time)'),
  'tls-cert': setting(['tls', 'client', 'cert'], filePath, '', 'PEM certificate (chain) for clients; with tls-key, clients may use TLS'),
  'tls-key': setting(['tls', 'client', 'key'], filePath, '', 'PEM private key of tls-cert (unencrypted)'),
  'tls-ca': setting(['tls', 'client', 'ca'], filePath, '', 'PEM CA certificates: TLS clients must present a certificate signed by one'),
  'tls-mode': setting(['tls', 'client', 'mode'], tlsMode, null, 'disable, allow or require TLS from clients (default allow with tls-cert and tls-key, else disable)'),
  'upstream-tls': setting(['tls', 'upstream', 'mode'], oneOf<UpstreamTlsMode>('disable', 'prefer', 'require', 'verify-ca', 'verify-full'), 'disable', "TLS to the upstream: disable, prefer, require, verify-ca, verify-full (libpq's sslmode)"),
  'upstream-tls-ca': setting(['tls', 'upstream', 'ca'], filePath, '', 'PEM CA certificates the upstream certificate must chain to'),
  'upstream-tls-cert': setting(['tls', 'upstream', 'cert'], filePath, '', 'PEM client certificate pgscribe presents to the upstream'),
  'upstream-tls-key': setting(['tls', 'upstream', 'key'], filePath, '', 'PEM private key of upstream-tls-cert (unencrypted)'),
} as const;

export type SettingName = keyof typeof SETTINGS;
/** The public names, in table order. */
export const NAMES = Object.keys(SETTINGS) as SettingName[];

/**
 * Compile-time check that every value in Config has a setting (so defaults() fills it): a Config
 * field without one makes this fail, naming its path.
 */
type EveryValueHasASetting<Missing extends never> = Missing;
export type SettingsCoverConfig = EveryValueHasASetting<Exclude<ConfigPath, (typeof SETTINGS)[SettingName]['path']>>;

/** The setting of a public name, or null when there is none (`__proto__` and `toString` are none). */
export function settingNamed(name: string): AnySetting | null {
  return Object.prototype.hasOwnProperty.call(SETTINGS, name) ? SETTINGS[name as SettingName] : null;
}

/** The value at a path. */
export function valueAt<P extends ConfigPath>(cfg: Config, path: P): ValueAt<Config, P> {
  let v: unknown = cfg;
  for (const k of path) v = (v as Record<string, unknown>)[k];
  return v as ValueAt<Config, P>;
}

/** Sets the value at a path, creating the sections on the way (defaults() starts from nothing; a reload writes into the running Config). */
export function setAt(root: object, path: ConfigPath, value: unknown): void {
  let o = root as Record<string, unknown>;
  for (let i = 0; i < path.length - 1; i++) o = (o[path[i]!] ??= {}) as Record<string, unknown>;
  o[path[path.length - 1]!] = value;
}

/** A fresh Config of the defaults (nothing shared with the table or other calls). */
export function defaults(): Config {
  const c = {};
  for (const n of NAMES) setAt(c, SETTINGS[n].path, structuredClone(SETTINGS[n].default));
  return c as Config;
}

/** Parses `raw` for the setting `name` into cfg; `where` says where it came from ('flag' or 'key in FILE'). */
export function apply(cfg: Config, name: string, raw: unknown, where: string): void {
  const s = settingNamed(name);
  if (s === null) throw new ConfigError(name, `unknown ${where}; known: ${NAMES.join(', ')}`);
  setAt(cfg, s.path, s.parse(raw, where === 'flag' ? `--${name}` : name));
}
