/**
 * Command line and JSON config file. Every setting has one name, used both as `--name` on the
 * command line and as `"name"` in the file given with --config; flags win over the file.
 * Unknown flags and keys are errors naming the offender.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import type { CacheRule } from './cache/policy';

export interface HostPort {
  host: string;
  port: number;
}

export interface Config {
  listen: HostPort;
  upstream: HostPort;
  /** File path, '-' for stdout, 'none' for no query log. */
  log: string;
  logFormat: 'text' | 'json';
  logParams: boolean;
  logParamMaxBytes: number;
  logBufferBytes: number;
  maxConnections: number;
  maxMessageBytes: number;
  connectTimeoutMs: number;
  startupTimeoutMs: number;
  shutdownGraceMs: number;
  statsIntervalMs: number;
  /** L1 result cache on. */
  cache: boolean;
  /** Concurrent identical reads run once. */
  singleflight: boolean;
  cacheMaxBytes: number;
  cacheMaxEntries: number;
  cacheTtlMs: number;
  cacheMaxEntryBytes: number;
  cacheRules: CacheRuleSpec[];
  /** worker_threads holding the cache/singleflight shards; 0: the event loop thread. */
  workers: number;
  /** Redis holding the shared (L2) cache; null: off. */
  redis: HostPort | null;
  redisPassword: string;
  redisUser: string;
  redisDb: number;
  redisPrefix: string;
  redisTimeoutMs: number;
  /** Identical reads through several instances run once (a Redis lock elects the leader). */
  redisSingleflight: boolean;
  redisLockMs: number;
  /** A `done` line after each Q/E's answer. */
  logCompletions: boolean;
  /** Admin HTTP server address; null: off. */
  admin: HostPort | null;
  /** Bearer token the admin server requires ('' = none; then it only binds to loopback). */
  adminToken: string;
  /** Query digests kept (top by total time). */
  digestMaxEntries: number;
  /** PEM certificate (chain) shown to clients; '' for none. */
  tlsCert: string;
  /** PEM private key of tlsCert; '' for none. */
  tlsKey: string;
  /** PEM CA certificates clients' certificates must chain to; '' for no client certificates. */
  tlsCa: string;
  /** TLS from clients; null until resolved: allow with tlsCert and tlsKey, else disable (see clientTlsMode). */
  tlsMode: ClientTlsMode | null;
  /** TLS to the upstream, with libpq's sslmode meanings. */
  upstreamTls: UpstreamTlsMode;
  /** PEM CA certificates the upstream's certificate must chain to; '' for none. */
  upstreamTlsCa: string;
  /** PEM client certificate and key pgscribe presents to the upstream; '' for none. */
  upstreamTlsCert: string;
  upstreamTlsKey: string;
}

/** Client side, PgBouncer's client_tls_sslmode: disable answers SSLRequest 'N'; allow offers TLS; require refuses plaintext. */
export type ClientTlsMode = 'disable' | 'allow' | 'require';
/** Upstream side, libpq's sslmode (without allow). */
export type UpstreamTlsMode = 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

/** The effective client-side TLS mode: the setting, or when unset allow with a certificate and key, else disable. */
export function clientTlsMode(cfg: Config): ClientTlsMode {
  if (cfg.tlsMode !== null) return cfg.tlsMode;
  return cfg.tlsCert !== '' && cfg.tlsKey !== '' ? 'allow' : 'disable';
}

/** A `cache-rules` entry as written (kept for --check), with its compiled form. */
export interface CacheRuleSpec {
  pattern: string;
  flags: string;
  ttl: number | 'never';
}

/** The compiled rules of a config. */
export function compileRules(specs: readonly CacheRuleSpec[]): CacheRule[] {
  return specs.map((r) => ({ pattern: new RegExp(r.pattern, r.flags), ttlMs: r.ttl === 'never' ? null : r.ttl }));
}

export class ConfigError extends Error {
  readonly code = 'PGSCRIBE_CONFIG';
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`${key}: ${message}`);
  }
}

type Parser<T> = (raw: unknown, key: string) => T;

function str(raw: unknown, key: string): string {
  if (typeof raw !== 'string') throw new ConfigError(key, `expected a string, got ${JSON.stringify(raw)}`);
  return raw;
}

export function parseHostPort(raw: unknown, key: string): HostPort {
  const s = str(raw, key).trim();
  const m = /^(?:\[([^\]]+)\]|([^:\s]*)):(\d+)$/.exec(s);
  if (!m) throw new ConfigError(key, `expected HOST:PORT (e.g. 127.0.0.1:6000 or [::1]:6000), got ${JSON.stringify(raw)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(key, `port ${port} is out of range 0-65535`);
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

function int(min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> {
  return (raw, key) => {
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(n)) throw new ConfigError(key, `expected an integer, got ${JSON.stringify(raw)}`);
    if (n < min || n > max) throw new ConfigError(key, `${n} is out of range ${min}-${max}`);
    return n;
  };
}

function bool(raw: unknown, key: string): boolean {
  if (raw === true || raw === 'true') return true;
  if (raw === false || raw === 'false') return false;
  throw new ConfigError(key, `expected true or false, got ${JSON.stringify(raw)}`);
}

function oneOf<T extends string>(...values: T[]): Parser<T> {
  return (raw, key) => {
    const s = str(raw, key);
    if (!(values as string[]).includes(s)) throw new ConfigError(key, `expected one of ${values.join(', ')}, got ${JSON.stringify(s)}`);
    return s as T;
  };
}

/**
 * `cache-rules`: a JSON array (a string of JSON on the command line) of
 * `{"pattern": REGEX, "flags": "i", "ttl": MS | "never"}`; the first matching rule applies.
 */
function cacheRules(raw: unknown, key: string): CacheRuleSpec[] {
  let v = raw;
  if (typeof v === 'string') {
    try {
      v = JSON.parse(v);
    } catch (err) {
      throw new ConfigError(key, `expected a JSON array of rules: ${(err as Error).message}`);
    }
  }
  if (!Array.isArray(v)) throw new ConfigError(key, `expected an array of {"pattern", "ttl"} rules, got ${JSON.stringify(raw)}`);
  return v.map((r: unknown, i) => {
    const where = `rule ${i}`;
    if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new ConfigError(key, `${where}: expected an object, got ${JSON.stringify(r)}`);
    const o = r as Record<string, unknown>;
    for (const k of Object.keys(o)) if (k !== 'pattern' && k !== 'flags' && k !== 'ttl') throw new ConfigError(key, `${where}: unknown field ${JSON.stringify(k)} (known: pattern, flags, ttl)`);
    if (typeof o['pattern'] !== 'string' || o['pattern'] === '') throw new ConfigError(key, `${where}: "pattern" must be a non-empty string (a regular expression over the SQL text)`);
    const flags = o['flags'] === undefined ? 'i' : o['flags'];
    if (typeof flags !== 'string' || !/^[imsu]*$/.test(flags)) throw new ConfigError(key, `${where}: "flags" must be made of i, m, s, u, got ${JSON.stringify(flags)}`);
    const ttl = o['ttl'];
    if (!(ttl === 'never' || (typeof ttl === 'number' && Number.isInteger(ttl) && ttl >= 0 && ttl <= 86_400_000))) {
      throw new ConfigError(key, `${where}: "ttl" must be milliseconds (0-86400000) or "never", got ${JSON.stringify(ttl)}`);
    }
    try {
      new RegExp(o['pattern'], flags);
    } catch (err) {
      throw new ConfigError(key, `${where}: bad regular expression: ${(err as Error).message}`);
    }
    return { pattern: o['pattern'], flags, ttl };
  });
}

/** `admin`: "off", PORT (on 127.0.0.1), or HOST:PORT. A bare ":PORT" also means loopback. */
function adminAddress(raw: unknown, key: string): HostPort | null {
  if (raw === null || raw === 'off' || raw === '') return null;
  if (typeof raw === 'number' || (typeof raw === 'string' && /^\s*\d+\s*$/.test(raw))) {
    return { host: '127.0.0.1', port: int(0, 65535)(raw, key) };
  }
  const s = str(raw, key).trim();
  return s.startsWith(':') ? { host: '127.0.0.1', port: parseHostPort('x' + s, key).port } : parseHostPort(s, key);
}

/** `redis`: HOST:PORT, or "off" (the default). */
function redisAddress(raw: unknown, key: string): HostPort | null {
  if (raw === null || raw === 'off' || raw === '') return null;
  const a = parseHostPort(raw, key);
  if (a.port === 0) throw new ConfigError(key, 'port 0 is not an address to connect to');
  return a;
}

/** Hosts that only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** A file path; '' means none. */
function filePath(raw: unknown, key: string): string {
  return str(raw, key);
}

/** `tls-mode`; JSON null (as in a file) leaves it to be derived from tls-cert and tls-key. */
function tlsMode(raw: unknown, key: string): ClientTlsMode | null {
  if (raw === null) return null;
  return oneOf<ClientTlsMode>('disable', 'allow', 'require')(raw, key);
}

function nonEmpty(raw: unknown, key: string): string {
  const s = str(raw, key);
  if (s === '') throw new ConfigError(key, 'must not be empty');
  return s;
}

interface Setting<K extends keyof Config> {
  field: K;
  parse: Parser<Config[K]>;
  default: Config[K];
  help: string;
  /** A switch: `--name` alone means true (`--name false` and `--name=false` also work). */
  switch?: boolean;
}

function setting<K extends keyof Config>(field: K, parse: Parser<Config[K]>, def: Config[K], help: string, isSwitch = false): Setting<K> {
  return isSwitch ? { field, parse, default: def, help, switch: true } : { field, parse, default: def, help };
}

/** Every setting: flag/key name -> field, parser, default, help. The one table of truth. */
export const SETTINGS = {
  listen: setting('listen', parseHostPort, { host: '127.0.0.1', port: 6000 }, 'address clients connect to'),
  upstream: setting('upstream', parseHostPort, { host: '127.0.0.1', port: 5432 }, 'PostgreSQL server to relay to'),
  log: setting('log', nonEmpty, 'logs/queries.log', "query log file; '-' for stdout, 'none' for no query log"),
  'log-format': setting('logFormat', oneOf('text', 'json'), 'text', 'query log format: text or json'),
  'log-params': setting('logParams', bool, true, 'log Bind parameter values (false: only their count)'),
  'log-param-max-bytes': setting('logParamMaxBytes', int(0, 1 << 20), 256, 'parameter values longer than this are cut in the log'),
  'log-buffer-bytes': setting('logBufferBytes', int(4096, 1 << 30), 8 << 20, 'log bytes queued before client reads pause'),
  'max-connections': setting('maxConnections', int(1, 100000), 100, 'client sessions at once; more get 53300'),
  'max-message-bytes': setting('maxMessageBytes', int(1024, 0x3fffffff), 64 << 20, 'largest client message; larger gets 08P01'),
  'connect-timeout': setting('connectTimeoutMs', int(1, 3_600_000), 5000, 'upstream connect timeout, ms; then 08001'),
  'startup-timeout': setting('startupTimeoutMs', int(1, 3_600_000), 10000, 'ms a client may take to send its startup packet'),
  'shutdown-grace': setting('shutdownGraceMs', int(0, 3_600_000), 10000, 'ms sessions get to finish on SIGTERM/SIGINT before 57P01'),
  'stats-interval': setting('statsIntervalMs', int(0, 86_400_000), 0, 'ms between stats lines on stderr; 0: only on SIGUSR2'),
  cache: setting('cache', bool, false, 'answer repeated reads from an in-memory cache (switch)', true),
  singleflight: setting('singleflight', bool, false, 'identical concurrent reads run once upstream (switch)', true),
  'cache-max-bytes': setting('cacheMaxBytes', int(4096, 2 ** 40), 64 << 20, 'cache size bound in bytes'),
  'cache-max-entries': setting('cacheMaxEntries', int(1, 100_000_000), 1_000_000, 'cache size bound in entries'),
  'cache-ttl': setting('cacheTtlMs', int(0, 86_400_000), 1000, 'ms a cached answer may be served (0: singleflight only)'),
  'cache-max-entry-bytes': setting('cacheMaxEntryBytes', int(64, 1 << 30), 1 << 20, 'larger answers are neither cached nor shared'),
  'cache-rules': setting('cacheRules', cacheRules, [], 'JSON array of {"pattern": REGEX, "ttl": MS|"never"}; first match wins'),
  workers: setting('workers', int(0, 64), 0, 'worker threads holding the cache shards (0: in the event loop thread)'),
  redis: setting('redis', redisAddress, null, "Redis HOST:PORT for a cache shared by several pgscribe instances (needs --cache), or 'off' (default off)"),
  'redis-password': setting('redisPassword', str, '', 'password for Redis AUTH'),
  'redis-user': setting('redisUser', str, '', 'Redis ACL user for AUTH (default: the default user)'),
  'redis-db': setting('redisDb', int(0, 65535), 0, 'Redis database number (SELECT)'),
  'redis-prefix': setting('redisPrefix', nonEmpty, 'pgscribe:', 'prefix of every Redis key and of the events channel'),
  'redis-timeout-ms': setting('redisTimeoutMs', int(1, 60_000), 50, 'ms a Redis command may take; then the lookup goes upstream'),
  'redis-singleflight': setting('redisSingleflight', bool, false, 'identical reads through several instances run once: a Redis lock elects the leader (switch)', true),
  'redis-lock-ms': setting('redisLockMs', int(10, 600_000), 2000, 'how long another instance waits for the lock holder\'s answer before running the query itself'),
  'log-completions': setting('logCompletions', bool, false, "a 'done' line (ms, rows, SQLSTATE) after each query's answer (switch)", true),
  admin: setting('admin', adminAddress, null, "admin HTTP server: PORT or HOST:PORT (loopback unless told), or 'off' (default off)"),
  'admin-token': setting('adminToken', str, '', 'bearer token the admin server requires (needed to bind beyond loopback)'),
  'digest-max-entries': setting('digestMaxEntries', int(10, 1_000_000), 2000, 'query digests kept by the admin server (top by total time)'),
  'tls-cert': setting('tlsCert', filePath, '', 'PEM certificate (chain) for clients; with tls-key, clients may use TLS'),
  'tls-key': setting('tlsKey', filePath, '', 'PEM private key of tls-cert (unencrypted)'),
  'tls-ca': setting('tlsCa', filePath, '', 'PEM CA certificates: TLS clients must present a certificate signed by one'),
  'tls-mode': setting('tlsMode', tlsMode, null, 'disable, allow or require TLS from clients (default allow with tls-cert and tls-key, else disable)'),
  'upstream-tls': setting('upstreamTls', oneOf<UpstreamTlsMode>('disable', 'prefer', 'require', 'verify-ca', 'verify-full'), 'disable', "TLS to the upstream: disable, prefer, require, verify-ca, verify-full (libpq's sslmode)"),
  'upstream-tls-ca': setting('upstreamTlsCa', filePath, '', 'PEM CA certificates the upstream certificate must chain to'),
  'upstream-tls-cert': setting('upstreamTlsCert', filePath, '', 'PEM client certificate pgscribe presents to the upstream'),
  'upstream-tls-key': setting('upstreamTlsKey', filePath, '', 'PEM private key of upstream-tls-cert (unencrypted)'),
} as const;

type SettingName = keyof typeof SETTINGS;
const NAMES = Object.keys(SETTINGS) as SettingName[];

export function defaults(): Config {
  const c: Partial<Record<keyof Config, unknown>> = {};
  for (const n of NAMES) c[SETTINGS[n].field] = structuredClone(SETTINGS[n].default);
  return c as Config;
}

function apply(cfg: Config, name: string, raw: unknown, where: string): void {
  if (!Object.prototype.hasOwnProperty.call(SETTINGS, name)) {
    throw new ConfigError(name, `unknown ${where}; known: ${NAMES.join(', ')}`);
  }
  const s = SETTINGS[name as SettingName] as Setting<keyof Config>;
  (cfg as unknown as Record<string, unknown>)[s.field] = s.parse(raw, where === 'flag' ? `--${name}` : name);
}

/** Settings from a JSON config file: an object whose keys are setting names. */
export function fromFile(path: string, cfg: Config = defaults()): Config {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('config', `cannot read ${path}: ${(err as Error).message}`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('config', `${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new ConfigError('config', `${path} must hold a JSON object`);
  for (const [k, v] of Object.entries(obj)) apply(cfg, k, v, `key in ${path}`);
  return cfg;
}

export type Command = { kind: 'run' | 'check'; config: Config } | { kind: 'help' } | { kind: 'version' };

/** Parse argv (without node and script). Throws ConfigError on anything wrong. */
export function parseCommandLine(argv: string[]): Command {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    config: { type: 'string', short: 'c' },
    check: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'V' },
  };
  for (const n of NAMES) options[n] = { type: 'string' };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: expandSwitches(argv), options, strict: true, allowPositionals: false });
  } catch (err) {
    const m = /'([^']+)'/.exec((err as Error).message);
    throw new ConfigError(m?.[1] ?? 'command line', (err as Error).message.replace(/\. To specify.*$/s, ''));
  }
  const v = parsed.values as Record<string, string | boolean | undefined>;
  if (v['help']) return { kind: 'help' };
  if (v['version']) return { kind: 'version' };
  const cfg = typeof v['config'] === 'string' ? fromFile(v['config']) : defaults();
  for (const n of NAMES) {
    const raw = v[n];
    if (raw !== undefined) apply(cfg, n, raw, 'flag');
  }
  cfg.tlsMode = clientTlsMode(cfg);
  return { kind: v['check'] ? 'check' : 'run', config: cfg };
}

/** `--cache` -> `--cache=true`, `--cache false` -> `--cache=false`, for the settings that are switches. */
function expandSwitches(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a.startsWith('--') ? a.slice(2) : '';
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (Object.prototype.hasOwnProperty.call(SETTINGS, name) && (SETTINGS[name as SettingName] as Setting<keyof Config>).switch) {
      const next = argv[i + 1];
      if (next === 'true' || next === 'false') {
        out.push(`${a}=${next}`);
        i++;
      } else out.push(`${a}=true`);
      continue;
    }
    out.push(a);
  }
  return out;
}

/** A setting value as shown by --help and --check. */
function shown(v: Config[keyof Config]): unknown {
  if (v === null || Array.isArray(v)) return v;
  if (typeof v === 'object') return `${v.host.includes(':') ? `[${v.host}]` : v.host}:${v.port}`;
  return v;
}

export function helpText(version: string): string {
  const lines = [
    `pgscribe ${version}: a PostgreSQL proxy that logs every query, one per line`,
    '',
    'Usage: pgscribe [--config FILE] [--NAME VALUE ...] [--check]',
    '',
    'Settings (also keys of the JSON object in --config FILE; flags win):',
  ];
  for (const n of NAMES) {
    const s = SETTINGS[n];
    const d = shown(s.default);
    // A null default is derived from other settings; the help text says how.
    const def = d === null ? '' : ` (default ${d === '' ? 'none' : typeof d === 'string' ? d : JSON.stringify(d)})`;
    lines.push(`  --${n.padEnd(22)} ${s.help}${def}`);
  }
  lines.push(
    '',
    'Commands:',
    '  --config FILE, -c     read settings from a JSON file',
    '  --check               validate the settings, print them, exit 0 (or 1 naming the bad key)',
    '  --help, -h            this text',
    '  --version, -V         print the version',
    '',
    'Signals: SIGHUP reopens the query log and reloads the TLS certificates and keys; SIGUSR2 prints',
    'a stats line (with cache counters);',
    'SIGTERM/SIGINT shut down gracefully.',
  );
  return lines.join('\n') + '\n';
}

/** The effective settings under their public names, for --check. */
export function describe(cfg: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const n of NAMES) {
    out[n] = shown(cfg[SETTINGS[n].field]);
  }
  if (cfg.admin === null) out['admin'] = 'off';
  // A secret is not printed, only whether it is set.
  if (cfg.adminToken !== '') out['admin-token'] = '(set)';
  if (cfg.redis === null) out['redis'] = 'off';
  if (cfg.redisPassword !== '') out['redis-password'] = '(set)';
  out['tls-mode'] = clientTlsMode(cfg);
  return out;
}

/**
 * The TLS settings that only make sense together. Whether the files hold what they should is
 * checked when they are loaded (src/tls.ts).
 */
function checkTlsSettings(cfg: Config): void {
  if ((cfg.tlsCert === '') !== (cfg.tlsKey === '')) {
    const [set, missing] = cfg.tlsCert === '' ? ['tls-key', 'tls-cert'] : ['tls-cert', 'tls-key'];
    throw new ConfigError(missing, `${set} is set but ${missing} is not: TLS for clients needs both a certificate and its key`);
  }
  const mode = clientTlsMode(cfg);
  if (mode !== 'disable' && cfg.tlsCert === '') {
    throw new ConfigError('tls-mode', `${mode} needs tls-cert and tls-key (the certificate and key pgscribe shows to clients)`);
  }
  if (cfg.tlsCa !== '' && cfg.tlsCert === '') {
    throw new ConfigError('tls-ca', 'client certificates are checked only on TLS connections: tls-ca needs tls-cert and tls-key');
  }
  if ((cfg.upstreamTlsCert === '') !== (cfg.upstreamTlsKey === '')) {
    const [set, missing] = cfg.upstreamTlsCert === '' ? ['upstream-tls-key', 'upstream-tls-cert'] : ['upstream-tls-cert', 'upstream-tls-key'];
    throw new ConfigError(missing, `${set} is set but ${missing} is not: a client certificate for the upstream needs both`);
  }
  if (cfg.upstreamTls === 'disable') {
    const stray = cfg.upstreamTlsCa !== '' ? 'upstream-tls-ca' : cfg.upstreamTlsCert !== '' ? 'upstream-tls-cert' : null;
    if (stray !== null) throw new ConfigError(stray, 'has no effect while upstream-tls is disable: set --upstream-tls prefer, require, verify-ca or verify-full');
  }
  if ((cfg.upstreamTls === 'verify-ca' || cfg.upstreamTls === 'verify-full') && cfg.upstreamTlsCa === '') {
    throw new ConfigError('upstream-tls', `${cfg.upstreamTls} needs upstream-tls-ca, the CA certificates to verify the upstream's certificate with (as libpq needs sslrootcert)`);
  }
}

/**
 * Checks for --check and start-up that look across settings or at the file system: workers need
 * the cache or singleflight; the query log must be writable (its directory must exist). Throws
 * ConfigError naming the key.
 */
export function checkEnvironment(cfg: Config): void {
  if (cfg.workers > 0 && !cfg.cache && !cfg.singleflight) {
    throw new ConfigError('workers', `${cfg.workers} worker threads would hold nothing: they need --cache or --singleflight`);
  }
  if (cfg.redis !== null && !cfg.cache) {
    throw new ConfigError('redis', 'the shared cache in Redis is a second level under the result cache: it needs --cache');
  }
  if (cfg.redisSingleflight && cfg.redis === null) {
    throw new ConfigError('redis-singleflight', 'elects the leader with a Redis lock: it needs --redis HOST:PORT');
  }
  if (cfg.admin !== null && !isLoopback(cfg.admin.host) && cfg.adminToken === '') {
    throw new ConfigError(
      'admin',
      `binding the admin server to ${cfg.admin.host} would let anyone who can reach it read every query's text and flush the cache: set --admin-token, or bind to 127.0.0.1`,
    );
  }
  checkTlsSettings(cfg);
  if (cfg.log === '-' || cfg.log === 'none') return;
  const dir = path.dirname(path.resolve(cfg.log));
  try {
    if (!fs.statSync(dir).isDirectory()) throw new Error('not a directory');
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (err) {
    throw new ConfigError('log', `directory ${dir} of the query log is not writable: ${(err as Error).message}`);
  }
  if (fs.existsSync(cfg.log)) {
    try {
      fs.accessSync(cfg.log, fs.constants.W_OK);
    } catch (err) {
      throw new ConfigError('log', `${cfg.log} is not writable: ${(err as Error).message}`);
    }
  }
}
