// Settings from flags and a JSON file, and the real CLI's --check/--help/--version.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { ConfigError, SETTINGS, checkEnvironment, clientTlsMode, defaults, describe, fromFile, parseCommandLine, parseHostPort, type Config } from '../../src/config';
import { leaveTapHooksOutOfChildren } from '../harness/child-env';

// These tests start dist/main.js with spawnSync: without tap's coverage hook, as the harness does.
leaveTapHooksOutOfChildren();

const ROOT = path.resolve(__dirname, '../../..');
const MAIN = path.resolve(__dirname, '../../../dist/main.js');
const PKG_VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** The defaults as documented, written out by hand (not read from SETTINGS). */
const DEFAULTS: Config = {
  listen: { host: '127.0.0.1', port: 6000 },
  upstreams: [{ host: '127.0.0.1', port: 5432 }],
  replicas: { listen: null, maxLagMs: 5000, fallback: 'primary' },
  health: { intervalMs: 2000, timeoutMs: 1000, failures: 3, primaryWaitMs: 10000, user: 'postgres' },
  limits: {
    maxConnections: 100,
    maxUserConnections: 0,
    maxDbConnections: 0,
    rateLimits: [],
    rateLimitMaxDelayMs: 1000,
    maxMessageBytes: 64 * 1024 * 1024,
    connectTimeoutMs: 5000,
    startupTimeoutMs: 10000,
    shutdownGraceMs: 10000,
  },
  processes: 1,
  statsIntervalMs: 0,
  log: {
    path: 'logs/queries.log',
    format: 'text',
    params: true,
    paramMaxBytes: 256,
    repeatedSqlMaxChars: 4096,
    bufferBytes: 8 * 1024 * 1024,
    rotateBytes: 0,
    rotateKeep: 5,
    completions: false,
    replay: false,
    redact: [],
    sqlForm: 'text',
    sample: [],
    overflow: 'wait',
  },
  cache: {
    enabled: false,
    singleflight: false,
    maxBytes: 64 * 1024 * 1024,
    maxEntries: 1_000_000,
    ttlMs: 1000,
    maxEntryBytes: 1024 * 1024,
    rules: [],
    workers: 0,
    invalidation: 'ttl',
    walPublication: '',
    walWaitMs: 1000,
  },
  redis: {
    address: null,
    password: '',
    user: '',
    db: 0,
    prefix: 'pgscribe:',
    timeoutMs: 50,
    key: '',
    tls: 'disable',
    tlsCa: '',
    singleflight: false,
    lockMs: 2000,
  },
  catalog: { user: '', password: '', database: 'postgres', pollMs: 1000 },
  tls: {
    client: { cert: '', key: '', ca: '', mode: 'disable' },
    upstream: { mode: 'disable', ca: '', cert: '', key: '' },
  },
  admin: { address: null, token: '', digestMaxEntries: 2000 },
};

const DEFAULTS_DESCRIBED = {
  listen: '127.0.0.1:6000',
  upstream: '127.0.0.1:5432',
  'health-interval-ms': 2000,
  'health-timeout-ms': 1000,
  'health-failures': 3,
  'primary-wait-ms': 10000,
  'health-user': 'postgres',
  'listen-replicas': 'off',
  'max-replica-lag-ms': 5000,
  'replica-fallback': 'primary',
  log: 'logs/queries.log',
  'log-format': 'text',
  'log-params': true,
  'log-param-max-bytes': 256,
  'log-repeated-sql-max-chars': 4096,
  'log-buffer-bytes': 8388608,
  'log-redact': [],
  'log-sql': 'text',
  'log-sample': [],
  'log-overflow': 'wait',
  'log-rotate-bytes': 0,
  'log-rotate-keep': 5,
  'max-connections': 100,
  'max-user-connections': 0,
  'max-db-connections': 0,
  'rate-limits': [],
  'rate-limit-max-delay-ms': 1000,
  'max-message-bytes': 67108864,
  'connect-timeout': 5000,
  'startup-timeout': 10000,
  'shutdown-grace': 10000,
  processes: 1,
  'stats-interval': 0,
  cache: false,
  singleflight: false,
  'cache-max-bytes': 67108864,
  'cache-max-entries': 1000000,
  'cache-ttl': 1000,
  'cache-max-entry-bytes': 1048576,
  'cache-rules': [],
  workers: 0,
  redis: 'off',
  'redis-password': '',
  'redis-user': '',
  'redis-db': 0,
  'redis-prefix': 'pgscribe:',
  'redis-key': '',
  'redis-tls': 'disable',
  'redis-tls-ca': '',
  'redis-timeout-ms': 50,
  'redis-singleflight': false,
  'redis-lock-ms': 2000,
  'cache-invalidation': 'ttl',
  'cache-wal-publication': '',
  'cache-wal-wait-ms': 1000,
  'catalog-user': '',
  'catalog-password': '',
  'catalog-database': 'postgres',
  'catalog-poll-ms': 1000,
  'log-completions': false,
  'log-replay': false,
  admin: 'off',
  'admin-token': '',
  'digest-max-entries': 2000,
  'tls-cert': '',
  'tls-key': '',
  'tls-ca': '',
  'tls-mode': 'disable',
  'upstream-tls': 'disable',
  'upstream-tls-ca': '',
  'upstream-tls-cert': '',
  'upstream-tls-key': '',
};

type Patch<T> = { [K in keyof T]?: T[K] extends object ? (T[K] extends readonly unknown[] ? T[K] : Patch<T[K]>) : T[K] };

/** A copy of cfg with the values in patch (sections merged, values replaced). */
function patched(cfg: Config, patch: Patch<Config>): Config {
  const merge = (base: Record<string, unknown>, p: Record<string, unknown>): Record<string, unknown> => {
    const out = { ...base };
    for (const [k, v] of Object.entries(p)) {
      const b = base[k];
      out[k] = v !== null && typeof v === 'object' && !Array.isArray(v) && b !== null && typeof b === 'object' ? merge(b as Record<string, unknown>, v as Record<string, unknown>) : v;
    }
    return out;
  };
  return merge(structuredClone(cfg) as unknown as Record<string, unknown>, patch as Record<string, unknown>) as unknown as Config;
}

function tmpDir(tt: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-config-'));
  tt.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function configOf(argv: string[]): Config {
  const cmd = parseCommandLine(argv);
  if (cmd.kind !== 'run' && cmd.kind !== 'check') throw new Error(`expected run/check, got ${cmd.kind}`);
  return cmd.config;
}

/** The ConfigError fn throws (fails the test when it throws something else or nothing). */
function configError(tt: { fail(m: string): unknown }, fn: () => unknown, what: string): ConfigError | null {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError && err.code === 'PGSCRIBE_CONFIG') return err;
    tt.fail(`${what}: threw ${String(err)} instead of a ConfigError`);
    return null;
  }
  tt.fail(`${what}: did not throw`);
  return null;
}

/** Asserts a ConfigError naming `key` (its .key and the start of its message). */
function rejects(tt: { fail(m: string): unknown; equal(a: unknown, b: unknown, m: string): unknown; ok(v: unknown, m: string): unknown }, fn: () => unknown, key: string, what: string): void {
  const err = configError(tt, fn, what);
  if (err === null) return;
  tt.equal(err.key, key, `${what}: names ${key}`);
  tt.ok(err.message.startsWith(`${key}: `), `${what}: message "${err.message}" starts with the key`);
}

// ---- defaults and flags ------------------------------------------------------------------------

t.test('defaults', async (tt) => {
  // tls-mode stays unset until the command line is parsed: its default depends on tls-cert/tls-key.
  tt.strictSame(defaults(), patched(DEFAULTS, { tls: { client: { mode: null } } }));
  tt.strictSame(parseCommandLine([]), { kind: 'run', config: DEFAULTS });
  tt.strictSame(parseCommandLine(['--check']), { kind: 'check', config: DEFAULTS });
  tt.strictSame(describe(defaults()), DEFAULTS_DESCRIBED);
});

t.test('defaults() hands out independent objects: changing one Config leaves the defaults alone', async (tt) => {
  const a = defaults();
  const saved = { listen: a.listen.port, upstream: a.upstreams[0]!.host, log: a.log.path };
  a.listen.port = 1;
  a.upstreams[0]!.host = 'changed';
  a.log.path = 'changed.log';
  a.cache.rules.push({ pattern: 'x', flags: '', ttl: 1 });
  try {
    tt.equal(defaults().listen.port, 6000, 'listen default untouched');
    tt.equal(configOf([]).upstreams[0]!.host, '127.0.0.1', 'upstream default untouched');
    tt.equal(defaults().log.path, 'logs/queries.log', 'sections are not shared');
    tt.strictSame(configOf([]).cache.rules, [], 'lists are not shared');
  } finally {
    // Undo through the same reference, so that if they are shared the other tests still see the real defaults.
    a.listen.port = saved.listen;
    a.upstreams[0]!.host = saved.upstream;
    a.log.path = saved.log;
    a.cache.rules.pop();
  }
});

t.test('commands: --help/-h, --version/-V', async (tt) => {
  tt.strictSame(parseCommandLine(['--help']), { kind: 'help' });
  tt.strictSame(parseCommandLine(['-h']), { kind: 'help' });
  tt.strictSame(parseCommandLine(['--version']), { kind: 'version' });
  tt.strictSame(parseCommandLine(['-V']), { kind: 'version' });
});

t.test('every flag parses', async (tt) => {
  const argv = [
    '--listen', '[::1]:6001',
    '--upstream', 'db.internal:5433',
    '--log', '-',
    '--log-format', 'json',
    '--log-params', 'false',
    '--log-param-max-bytes', '0',
    '--log-repeated-sql-max-chars', '0',
    '--log-buffer-bytes', '4096',
    '--log-redact', 'card|ssn',
    '--log-sql', 'normalized',
    '--log-sample', 'application_name=batch,rate=0.1;user=etl,sql=^select,rate=0',
    '--log-overflow', 'drop',
    '--log-rotate-bytes', '65536',
    '--log-rotate-keep', '2',
    '--max-connections', '1',
    '--max-user-connections', '4',
    '--max-db-connections', '6',
    '--rate-limits', 'user=flood,qps=50,burst=10;database=reports,application_name=etl,qps=0.5',
    '--rate-limit-max-delay-ms', '300',
    '--max-message-bytes', '1024',
    '--connect-timeout', '1',
    '--health-interval-ms', '100',
    '--health-timeout-ms', '600000',
    '--health-failures', '100',
    '--primary-wait-ms', '0',
    '--health-user', 'prober',
    '--listen-replicas', '[::1]:6002',
    '--max-replica-lag-ms', '0',
    '--replica-fallback', 'refuse',
    '--startup-timeout', '3600000',
    '--shutdown-grace', '0',
    '--processes', '2',
    '--stats-interval', '250',
    '--cache',
    '--singleflight', 'true',
    '--cache-max-bytes', '4096',
    '--cache-max-entries', '7',
    '--cache-ttl', '0',
    '--cache-max-entry-bytes', '64',
    '--cache-rules', '[{"pattern": "^select now", "ttl": "never"}, {"pattern": "FROM t$", "flags": "", "ttl": 50}]',
    '--workers', '2',
    '--redis', 'redis.internal:6379',
    '--redis-password', 'pw',
    '--redis-user', 'app',
    '--redis-db', '2',
    '--redis-prefix', 'x:',
    '--redis-key', 'x'.repeat(32),
    '--redis-tls', 'require',
    '--redis-tls-ca', '/etc/pgscribe/redis-ca.crt',
    '--redis-timeout-ms', '10',
    '--redis-singleflight',
    '--redis-lock-ms', '100',
    '--cache-invalidation', 'auto',
    '--cache-wal-publication', 'pub',
    '--cache-wal-wait-ms', '250',
    '--catalog-user', 'pgscribe',
    '--catalog-password', 'cpw',
    '--catalog-database', 'meta',
    '--catalog-poll-ms', '100',
    '--log-completions',
    '--log-replay',
    '--admin', '127.0.0.2:9187',
    '--admin-token', 'tok',
    '--digest-max-entries', '10',
    '--tls-cert', '/etc/pgscribe/server.crt',
    '--tls-key', '/etc/pgscribe/server.key',
    '--tls-ca', '/etc/pgscribe/clients-ca.crt',
    '--tls-mode', 'require',
    '--upstream-tls', 'verify-full',
    '--upstream-tls-ca', '/etc/pgscribe/pg-ca.crt',
    '--upstream-tls-cert', '/etc/pgscribe/pgscribe.crt',
    '--upstream-tls-key', '/etc/pgscribe/pgscribe.key',
  ];
  tt.strictSame(configOf(argv), {
    listen: { host: '::1', port: 6001 },
    upstreams: [{ host: 'db.internal', port: 5433 }],
    replicas: { listen: { host: '::1', port: 6002 }, maxLagMs: 0, fallback: 'refuse' },
    health: { intervalMs: 100, timeoutMs: 600000, failures: 100, primaryWaitMs: 0, user: 'prober' },
    limits: {
      maxConnections: 1,
      maxUserConnections: 4,
      maxDbConnections: 6,
      rateLimits: [
        { user: 'flood', qps: 50, burst: 10 },
        { database: 'reports', application_name: 'etl', qps: 0.5, burst: 1 },
      ],
      rateLimitMaxDelayMs: 300,
      maxMessageBytes: 1024,
      connectTimeoutMs: 1,
      startupTimeoutMs: 3600000,
      shutdownGraceMs: 0,
    },
    processes: 2,
    statsIntervalMs: 250,
    log: {
      path: '-',
      format: 'json',
      params: false,
      paramMaxBytes: 0,
      repeatedSqlMaxChars: 0,
      bufferBytes: 4096,
      rotateBytes: 65536,
      rotateKeep: 2,
      completions: true,
      replay: true,
      redact: ['card|ssn'],
      sqlForm: 'normalized',
      sample: [
        { application_name: 'batch', rate: 0.1 },
        { user: 'etl', sql: '^select', rate: 0 },
      ],
      overflow: 'drop',
    },
    cache: {
      enabled: true,
      singleflight: true,
      maxBytes: 4096,
      maxEntries: 7,
      ttlMs: 0,
      maxEntryBytes: 64,
      rules: [
        { pattern: '^select now', flags: 'i', ttl: 'never' },
        { pattern: 'FROM t$', flags: '', ttl: 50 },
      ],
      workers: 2,
      invalidation: 'auto',
      walPublication: 'pub',
      walWaitMs: 250,
    },
    redis: {
      address: { host: 'redis.internal', port: 6379 },
      password: 'pw',
      user: 'app',
      db: 2,
      prefix: 'x:',
      timeoutMs: 10,
      key: 'x'.repeat(32),
      tls: 'require',
      tlsCa: '/etc/pgscribe/redis-ca.crt',
      singleflight: true,
      lockMs: 100,
    },
    catalog: { user: 'pgscribe', password: 'cpw', database: 'meta', pollMs: 100 },
    tls: {
      client: { cert: '/etc/pgscribe/server.crt', key: '/etc/pgscribe/server.key', ca: '/etc/pgscribe/clients-ca.crt', mode: 'require' },
      upstream: { mode: 'verify-full', ca: '/etc/pgscribe/pg-ca.crt', cert: '/etc/pgscribe/pgscribe.crt', key: '/etc/pgscribe/pgscribe.key' },
    },
    admin: { address: { host: '127.0.0.2', port: 9187 }, token: 'tok', digestMaxEntries: 10 },
  });
  tt.equal(argv.filter((a) => a.startsWith('--')).length, Object.keys(SETTINGS).length, 'the test sets every setting');
  tt.strictSame(configOf(['--listen=0.0.0.0:7000']).listen, { host: '0.0.0.0', port: 7000 }, '--name=value form');
  tt.strictSame(configOf(['--log-params', 'true']).log.params, true);
  tt.strictSame(configOf(['--log', 'none']).log.path, 'none');
  tt.strictSame(configOf(['--log-format', 'text']).log.format, 'text');
  tt.strictSame(configOf(['--max-connections', '5', '--max-connections', '7']).limits.maxConnections, 7, 'last flag wins');
});

t.test('host:port forms', async (tt) => {
  const ok: [string, string, number][] = [
    ['127.0.0.1:6000', '127.0.0.1', 6000],
    ['localhost:5432', 'localhost', 5432],
    ['[::1]:6000', '::1', 6000],
    ['[::]:0', '::', 0],
    ['[fe80::1%eth0]:5432', 'fe80::1%eth0', 5432],
    [':6000', '0.0.0.0', 6000],
    ['host:65535', 'host', 65535],
    ['  10.0.0.1:1  ', '10.0.0.1', 1],
  ];
  for (const [raw, host, port] of ok) {
    tt.strictSame(parseHostPort(raw, 'listen'), { host, port }, raw);
    tt.strictSame(configOf(['--upstream', raw]).upstreams, [{ host, port }], `--upstream ${raw}`);
  }
  const bad = ['127.0.0.1', '127.0.0.1:', 'host:65536', 'host:99999999999', 'host:-1', 'host:abc', 'host:12ab', '::1:6000', '[::1]6000', '', ':', 'a b:1', 'host:1.5'];
  for (const raw of bad) rejects(tt, () => configOf(['--listen', raw]), '--listen', `--listen ${JSON.stringify(raw)}`);
  rejects(tt, () => parseHostPort(6000, 'upstream'), 'upstream', 'a number is not HOST:PORT');
});

t.test('--upstream: several nodes, comma-separated, each once; with or without catalog-user', async (tt) => {
  tt.strictSame(configOf(['--upstream', 'pg1:5432,pg2:5433, [::1]:5434']).upstreams, [
    { host: 'pg1', port: 5432 },
    { host: 'pg2', port: 5433 },
    { host: '::1', port: 5434 },
  ]);
  tt.equal(describe(configOf(['--upstream', 'pg1:5432,[::1]:5434'])).upstream, 'pg1:5432,[::1]:5434', '--check prints the list as it reads back');
  rejects(tt, () => configOf(['--upstream', 'pg1:5432,pg1:5432']), '--upstream', 'a node twice');
  rejects(tt, () => configOf(['--upstream', 'pg1:5432,']), '--upstream', 'an empty item');
  rejects(tt, () => configOf(['--upstream', Array.from({ length: 17 }, (_, i) => `h${i}:1`).join(',')]), '--upstream', 'more than 16');
  tt.doesNotThrow(() => checkEnvironment(configOf(['--upstream', 'pg1:5432,pg2:5432', '--log', 'none'])), 'without catalog-user: roles from the sessions');
  tt.doesNotThrow(() => checkEnvironment(configOf(['--upstream', 'pg1:5432,pg2:5432', '--catalog-user', 'pgscribe', '--log', 'none'])), 'with catalog-user');
  tt.strictSame(configOf(['--health-interval-ms', '500', '--health-failures', '2', '--primary-wait-ms', '0', '--health-user', 'probe']).health, { intervalMs: 500, timeoutMs: 1000, failures: 2, primaryWaitMs: 0, user: 'probe' });
});

t.test('--listen-replicas: several upstreams, an address of its own, one process', async (tt) => {
  const two = ['--upstream', 'pg1:5432,pg2:5432', '--catalog-user', 'pgscribe', '--log', 'none'];
  tt.strictSame(configOf([...two, '--listen-replicas', '127.0.0.1:6001']).replicas, { listen: { host: '127.0.0.1', port: 6001 }, maxLagMs: 5000, fallback: 'primary' });
  tt.doesNotThrow(() => checkEnvironment(configOf([...two, '--listen-replicas', '127.0.0.1:6001'])), 'with two nodes');
  rejects(tt, () => checkEnvironment(configOf(['--listen-replicas', '127.0.0.1:6001', '--log', 'none'])), 'listen-replicas', 'one upstream: no standby to send sessions to');
  rejects(tt, () => checkEnvironment(configOf([...two, '--listen-replicas', '127.0.0.1:6000'])), 'listen-replicas', 'the listen address itself');
  rejects(tt, () => checkEnvironment(configOf([...two, '--listen', '0.0.0.0:6000', '--listen-replicas', '127.0.0.1:6000'])), 'listen-replicas', 'the listen port on every address');
  rejects(tt, () => checkEnvironment(configOf([...two, '--listen-replicas', '127.0.0.1:6001', '--processes', '2'])), 'listen-replicas', 'not with several processes (yet)');
  rejects(tt, () => checkEnvironment(configOf(['--upstream', 'pg1:5432,pg2:5432', '--log', 'none', '--listen-replicas', '127.0.0.1:6001'])), 'listen-replicas', 'without catalog-user: no lag to bound');
  rejects(tt, () => configOf(['--replica-fallback', 'standby']), '--replica-fallback', 'primary or refuse');
  tt.equal(configOf(['--listen-replicas', 'off']).replicas.listen, null, 'off');
});

t.test('integers: ranges and syntax', async (tt) => {
  const ranges: [string, (c: Config) => number, number, number][] = [
    ['log-param-max-bytes', (c) => c.log.paramMaxBytes, 0, 1 << 20],
    ['log-repeated-sql-max-chars', (c) => c.log.repeatedSqlMaxChars, 0, 0x3fffffff],
    ['log-buffer-bytes', (c) => c.log.bufferBytes, 4096, 1 << 30],
    ['log-rotate-keep', (c) => c.log.rotateKeep, 1, 1000],
    ['max-connections', (c) => c.limits.maxConnections, 1, 100000],
    ['max-message-bytes', (c) => c.limits.maxMessageBytes, 1024, 0x3fffffff],
    ['connect-timeout', (c) => c.limits.connectTimeoutMs, 1, 3_600_000],
    ['startup-timeout', (c) => c.limits.startupTimeoutMs, 1, 3_600_000],
    ['shutdown-grace', (c) => c.limits.shutdownGraceMs, 0, 3_600_000],
    ['processes', (c) => c.processes, 1, 256],
    ['stats-interval', (c) => c.statsIntervalMs, 0, 86_400_000],
    ['cache-max-bytes', (c) => c.cache.maxBytes, 4096, 2 ** 40],
    ['cache-max-entries', (c) => c.cache.maxEntries, 1, 100_000_000],
    ['cache-ttl', (c) => c.cache.ttlMs, 0, 86_400_000],
    ['cache-max-entry-bytes', (c) => c.cache.maxEntryBytes, 64, 1 << 30],
    ['workers', (c) => c.cache.workers, 0, 64],
  ];
  for (const [flag, field, min, max] of ranges) {
    tt.equal(field(configOf([`--${flag}`, String(min)])), min, `--${flag} ${min}`);
    tt.equal(field(configOf([`--${flag}`, String(max)])), max, `--${flag} ${max}`);
    rejects(tt, () => configOf([`--${flag}`, String(max + 1)]), `--${flag}`, `--${flag} ${max + 1}`);
    if (min > 0) rejects(tt, () => configOf([`--${flag}`, String(min - 1)]), `--${flag}`, `--${flag} ${min - 1}`);
    for (const raw of ['-1', '1.5', '1e3', '0x10', 'ten', '', '12abc']) rejects(tt, () => configOf([`--${flag}`, raw]), `--${flag}`, `--${flag} ${JSON.stringify(raw)}`);
  }
  tt.equal(configOf(['--max-connections', ' 42 ']).limits.maxConnections, 42, 'surrounding spaces tolerated');
  const err = configError(tt, () => configOf(['--max-connections', '0']), 'max-connections 0');
  tt.equal(err?.message, '--max-connections: 0 is out of range 1-100000');
});

t.test('switches: --cache alone, --cache true|false, --cache=false', async (tt) => {
  tt.equal(configOf(['--cache']).cache.enabled, true, '--cache alone');
  tt.equal(configOf(['--cache', '--singleflight']).cache.singleflight, true, 'a switch followed by another flag');
  tt.equal(configOf(['--cache', 'false']).cache.enabled, false, '--cache false');
  tt.equal(configOf(['--cache=false']).cache.enabled, false, '--cache=false');
  tt.equal(configOf(['--singleflight', 'true', '--workers', '1']).cache.workers, 1, 'a consumed value does not eat the next flag');
  rejects(tt, () => configOf(['--cache=yes']), '--cache', '--cache=yes');
  const err = configError(tt, () => configOf(['--cache', 'yes']), '--cache yes');
  tt.ok(err !== null && err.message.includes('yes'), `--cache yes: the stray value is named (${err?.message})`);
});

t.test('cache-rules: shape, flags, ttl and regular expressions are checked', async (tt) => {
  const bad: [string, RegExp][] = [
    ['{"pattern": "x", "ttl": 1}', /array/],
    ['[{"pattern": "x"}]', /"ttl" must be/],
    ['[{"pattern": "", "ttl": 1}]', /"pattern" must be/],
    ['[{"pattern": "(", "ttl": 1}]', /bad regular expression/],
    ['[{"pattern": "x", "ttl": -1}]', /"ttl" must be/],
    ['[{"pattern": "x", "ttl": 1.5}]', /"ttl" must be/],
    ['[{"pattern": "x", "ttl": "forever"}]', /"ttl" must be/],
    ['[{"pattern": "x", "ttl": 1, "flags": "g"}]', /"flags"/],
    ['[{"pattern": "x", "ttl": 1, "tll": 2}]', /unknown field "tll"/],
    ['[42]', /rule 0: expected an object/],
    ['not json', /JSON array/],
  ];
  for (const [raw, re] of bad) {
    const err = configError(tt, () => configOf(['--cache-rules', raw]), raw);
    tt.equal(err?.key, '--cache-rules', `${raw}: names --cache-rules`);
    tt.match(err?.message ?? '', re, `${raw}: ${err?.message}`);
  }
  tt.strictSame(configOf(['--cache-rules', '[]']).cache.rules, [], 'empty list');
});

t.test('booleans and enums', async (tt) => {
  for (const raw of ['yes', 'no', '1', '0', 'TRUE', 'False', '']) rejects(tt, () => configOf(['--log-params', raw]), '--log-params', `--log-params ${JSON.stringify(raw)}`);
  for (const raw of ['JSON', 'csv', '', 'text ']) rejects(tt, () => configOf(['--log-format', raw]), '--log-format', `--log-format ${JSON.stringify(raw)}`);
  rejects(tt, () => configOf(['--log', '']), '--log', 'empty --log');
});

t.test('unknown flags, positionals and missing values are ConfigErrors naming the offender', async (tt) => {
  for (const [argv, key] of [
    [['--bogus', '1'], '--bogus'],
    [['--listen', '127.0.0.1:1', '--max-conections', '5'], '--max-conections'],
    [['--constructor', 'x'], '--constructor'],
    [['--__proto__', 'x'], '--__proto__'],
    [['-x'], '-x'],
    [['stray'], 'stray'],
  ] as [string[], string][]) {
    const err = configError(tt, () => parseCommandLine(argv), argv.join(' '));
    tt.ok(err !== null && err.key.includes(key) && err.message.includes(key), `${argv.join(' ')}: names ${key} (${err?.message})`);
  }
  const missing = configError(tt, () => parseCommandLine(['--listen']), '--listen without a value');
  tt.ok(missing !== null && missing.message.includes('--listen'), `missing value names the flag (${missing?.message})`);
});

// ---- config file -------------------------------------------------------------------------------

t.test('config file: all keys, JSON types, and flags win', async (tt) => {
  const dir = tmpDir(tt);
  const file = path.join(dir, 'pgscribe.json');
  fs.writeFileSync(
    file,
    JSON.stringify({
      listen: '[::1]:7000',
      upstream: 'pg:5433',
      log: '/var/log/q.log',
      'log-format': 'json',
      'log-params': false,
      'log-param-max-bytes': 16,
      'log-repeated-sql-max-chars': 100,
      'log-buffer-bytes': '65536',
      'log-redact': ['insert into cards', 'ssn'],
      'log-sample': [{ database: 'analytics', rate: 0.5 }],
      'log-rotate-bytes': 1048576,
      'log-rotate-keep': 9,
      'max-connections': 3,
      'max-user-connections': 2,
      'max-db-connections': 0,
      'rate-limits': [{ user: 'flood', qps: 20, burst: 5 }, { qps: 1000 }],
      'rate-limit-max-delay-ms': 0,
      'max-message-bytes': 2048,
      'connect-timeout': 100,
      'health-interval-ms': 250,
      'health-timeout-ms': '50',
      'health-failures': 2,
      'primary-wait-ms': 0,
      'health-user': 'prober',
      'listen-replicas': 'off',
      'max-replica-lag-ms': 250,
      'startup-timeout': 200,
      'shutdown-grace': 300,
      processes: 3,
      'stats-interval': 400,
      cache: true,
      singleflight: false,
      'cache-max-bytes': 1048576,
      'cache-max-entries': 10,
      'cache-ttl': 250,
      'cache-max-entry-bytes': 4096,
      'cache-rules': [{ pattern: 'from sessions', ttl: 5000 }],
      workers: 1,
      redis: 'cache.internal:6380',
      'redis-password': 'pw',
      'redis-user': 'pgscribe',
      'redis-db': 3,
      'redis-prefix': 'app1:',
      'redis-key': 'k'.repeat(32),
      'redis-tls': 'verify-full',
      'redis-tls-ca': '/etc/ssl/redis-ca.pem',
      'redis-timeout-ms': 20,
      'redis-singleflight': true,
      'redis-lock-ms': 500,
      'cache-invalidation': 'wal',
      'cache-wal-publication': 'app_pub',
      'cache-wal-wait-ms': 0,
      'catalog-user': 'pgscribe',
      'catalog-password': 'cpw',
      'catalog-database': 'meta',
      'catalog-poll-ms': 250,
      'log-completions': true,
      admin: '0.0.0.0:9187',
      'admin-token': 's3cret',
      'digest-max-entries': 50,
      'tls-cert': 'c.pem',
      'tls-key': 'k.pem',
      'tls-ca': '',
      'tls-mode': 'allow',
      'upstream-tls': 'prefer',
      'upstream-tls-ca': 'ca.pem',
      'upstream-tls-cert': '',
      'upstream-tls-key': '',
    }),
  );
  const fromJson: Config = {
    listen: { host: '::1', port: 7000 },
    upstreams: [{ host: 'pg', port: 5433 }],
    replicas: { listen: null, maxLagMs: 250, fallback: 'primary' },
    health: { intervalMs: 250, timeoutMs: 50, failures: 2, primaryWaitMs: 0, user: 'prober' },
    limits: {
      maxConnections: 3,
      maxUserConnections: 2,
      maxDbConnections: 0,
      rateLimits: [
        { user: 'flood', qps: 20, burst: 5 },
        { qps: 1000, burst: 1 },
      ],
      rateLimitMaxDelayMs: 0,
      maxMessageBytes: 2048,
      connectTimeoutMs: 100,
      startupTimeoutMs: 200,
      shutdownGraceMs: 300,
    },
    processes: 3,
    statsIntervalMs: 400,
    log: {
      path: '/var/log/q.log',
      format: 'json',
      params: false,
      paramMaxBytes: 16,
      repeatedSqlMaxChars: 100,
      bufferBytes: 65536,
      rotateBytes: 1048576,
      rotateKeep: 9,
      completions: true,
      replay: false,
      redact: ['insert into cards', 'ssn'],
      sqlForm: 'text',
      sample: [{ database: 'analytics', rate: 0.5 }],
      overflow: 'wait',
    },
    cache: {
      enabled: true,
      singleflight: false,
      maxBytes: 1048576,
      maxEntries: 10,
      ttlMs: 250,
      maxEntryBytes: 4096,
      rules: [{ pattern: 'from sessions', flags: 'i', ttl: 5000 }],
      workers: 1,
      invalidation: 'wal',
      walPublication: 'app_pub',
      walWaitMs: 0,
    },
    redis: {
      address: { host: 'cache.internal', port: 6380 },
      password: 'pw',
      user: 'pgscribe',
      db: 3,
      prefix: 'app1:',
      timeoutMs: 20,
      key: 'k'.repeat(32),
      tls: 'verify-full',
      tlsCa: '/etc/ssl/redis-ca.pem',
      singleflight: true,
      lockMs: 500,
    },
    catalog: { user: 'pgscribe', password: 'cpw', database: 'meta', pollMs: 250 },
    tls: {
      client: { cert: 'c.pem', key: 'k.pem', ca: '', mode: 'allow' },
      upstream: { mode: 'prefer', ca: 'ca.pem', cert: '', key: '' },
    },
    admin: { address: { host: '0.0.0.0', port: 9187 }, token: 's3cret', digestMaxEntries: 50 },
  };
  tt.strictSame(fromFile(file), fromJson);
  tt.strictSame(configOf(['--config', file]), fromJson);
  tt.strictSame(configOf(['-c', file]), fromJson, '-c short form');
  tt.strictSame(
    configOf(['--max-connections', '9', '--config', file, '--log-params', 'true', '--listen', '127.0.0.1:1']),
    patched(fromJson, { limits: { maxConnections: 9 }, log: { params: true }, listen: { host: '127.0.0.1', port: 1 } }),
    'flags win over the file wherever they appear',
  );

  const partial = path.join(dir, 'partial.json');
  fs.writeFileSync(partial, '{"max-connections": 5}');
  tt.strictSame(configOf(['--config', partial]), patched(DEFAULTS, { limits: { maxConnections: 5 } }), 'unset keys keep their defaults');
  fs.writeFileSync(partial, '{}');
  tt.strictSame(configOf(['--config', partial]), DEFAULTS, 'empty object');
});

t.test('config file: bad keys and values name the key', async (tt) => {
  const dir = tmpDir(tt);
  const file = path.join(dir, 'c.json');
  const cases: [unknown, string][] = [
    [{ 'max-conections': 5 }, 'max-conections'],
    [{ maxConnections: 5 }, 'maxConnections'],
    [{ listen: '127.0.0.1:1', bogus: true }, 'bogus'],
    [{ config: 'other.json' }, 'config'],
    [{ toString: 'x' }, 'toString'],
    [{ 'max-connections': 0 }, 'max-connections'],
    [{ 'max-connections': 1.5 }, 'max-connections'],
    [{ 'max-connections': '1.5' }, 'max-connections'],
    [{ 'max-connections': null }, 'max-connections'],
    [{ 'log-params': 'yes' }, 'log-params'],
    [{ 'log-params': 1 }, 'log-params'],
    [{ listen: 6000 }, 'listen'],
    [{ listen: { host: 'a', port: 1 } }, 'listen'],
    [{ 'log-format': ['json'] }, 'log-format'],
    [{ log: '' }, 'log'],
    [{ cache: 'yes' }, 'cache'],
    [{ 'cache-rules': [{ pattern: '[', ttl: 1 }] }, 'cache-rules'],
    [{ workers: 65 }, 'workers'],
    [{ 'tls-mode': 'prefer' }, 'tls-mode'],
    [{ 'tls-cert': 5 }, 'tls-cert'],
    [{ 'upstream-tls': 'allow' }, 'upstream-tls'],
    [{ 'upstream-tls-ca': null }, 'upstream-tls-ca'],
  ];
  for (const [obj, key] of cases) {
    fs.writeFileSync(file, JSON.stringify(obj));
    rejects(tt, () => fromFile(file), key, `file ${JSON.stringify(obj)}`);
  }
  fs.writeFileSync(file, '{"__proto__": {"max-connections": 1}}');
  rejects(tt, () => fromFile(file), '__proto__', 'a "__proto__" key is unknown, not a prototype');
});

t.test('config file: unreadable, invalid JSON, not an object -> ConfigError(config)', async (tt) => {
  const dir = tmpDir(tt);
  const file = path.join(dir, 'c.json');
  for (const content of ['{"listen": ', 'not json', '', '{"a":1,}']) {
    fs.writeFileSync(file, content);
    const err = configError(tt, () => fromFile(file), `content ${JSON.stringify(content)}`);
    tt.equal(err?.key, 'config', `invalid JSON ${JSON.stringify(content)}`);
    tt.ok(err?.message.includes(file), 'message names the file');
  }
  for (const content of ['[]', 'null', '42', '"x"', 'true']) {
    fs.writeFileSync(file, content);
    tt.equal(configError(tt, () => fromFile(file), content)?.key, 'config', `not an object: ${content}`);
  }
  const missing = path.join(dir, 'missing.json');
  const err = configError(tt, () => parseCommandLine(['--config', missing]), 'missing file');
  tt.equal(err?.key, 'config');
  tt.ok(err?.message.includes(missing));
  tt.equal(configError(tt, () => fromFile(dir), 'a directory')?.key, 'config', 'a directory is unreadable');
});

// ---- describe ----------------------------------------------------------------------------------

t.test('describe: public names, HOST:PORT strings, IPv6 bracketed', async (tt) => {
  const cfg = configOf(['--listen', '[::1]:6001', '--upstream', ':5433', '--log-format', 'json', '--log-params', 'false']);
  tt.strictSame(describe(cfg), { ...DEFAULTS_DESCRIBED, listen: '[::1]:6001', upstream: '0.0.0.0:5433', 'log-format': 'json', 'log-params': false });
  tt.strictSame(Object.keys(describe(cfg)), Object.keys(SETTINGS), 'one entry per setting, in table order');
});

t.test('describe output fed back as a config file gives the same config', async (tt) => {
  const dir = tmpDir(tt);
  const file = path.join(dir, 'round.json');
  for (const argv of [
    [],
    ['--listen', '[fe80::1%eth0]:1', '--upstream', 'db:2', '--log', '-', '--log-format', 'json', '--log-params', 'false', '--shutdown-grace', '0'],
    ['--cache', '--workers', '3', '--cache-rules', '[{"pattern": "a[0-9]+", "ttl": "never"}, {"pattern": "b", "flags": "", "ttl": 9}]'],
    ['--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--upstream-tls', 'verify-ca', '--upstream-tls-ca', 'ca.pem'],
  ]) {
    const cfg = configOf(argv);
    fs.writeFileSync(file, JSON.stringify(describe(cfg)));
    tt.strictSame(fromFile(file), cfg, `round trip of ${argv.join(' ') || 'defaults'}`);
  }
});

// ---- checkEnvironment ----------------------------------------------------------------------------

t.test('processes: N or auto (one per core), 1 to 256', async (tt) => {
  tt.equal(configOf(['--processes', '4']).processes, 4);
  tt.equal(configOf(['--processes', 'auto']).processes, Math.min(256, os.availableParallelism()), 'auto: one per core');
  for (const bad of ['0', '257', 'two', '-1']) rejects(tt, () => configOf(['--processes', bad]), '--processes', bad);
  tt.doesNotThrow(() => checkEnvironment(configOf(['--processes', '2', '--admin', '9187', '--log', 'none'])), 'the admin server sums several processes');
  tt.doesNotThrow(() => checkEnvironment(configOf(['--processes', '1', '--admin', '9187', '--log', 'none'])), 'the admin server with one process');
});

t.test('checkEnvironment: workers need the cache or singleflight', async (tt) => {
  rejects(tt, () => checkEnvironment(configOf(['--workers', '2', '--log', 'none'])), 'workers', 'workers without cache');
  tt.doesNotThrow(() => checkEnvironment(configOf(['--workers', '2', '--singleflight', '--log', 'none'])), 'with singleflight');
  tt.doesNotThrow(() => checkEnvironment(configOf(['--workers', '2', '--cache', '--log', 'none'])), 'with cache');
});

t.test('tls-mode: allow with tls-cert and tls-key unless set; the TLS settings that only make sense together', async (tt) => {
  tt.equal(configOf([]).tls.client.mode, 'disable', 'no certificate: disable');
  tt.equal(configOf(['--tls-cert', 'c', '--tls-key', 'k']).tls.client.mode, 'allow', 'certificate and key: allow');
  tt.equal(configOf(['--tls-cert', 'c', '--tls-key', 'k', '--tls-mode', 'disable']).tls.client.mode, 'disable', 'an explicit disable wins');
  tt.equal(clientTlsMode({ ...defaults().tls.client, cert: 'c', key: 'k' }), 'allow', 'clientTlsMode derives the same from an unresolved config');
  const ok = (argv: string[]) => tt.doesNotThrow(() => checkEnvironment(configOf([...argv, '--log', 'none'])), argv.join(' '));
  ok(['--tls-cert', 'c', '--tls-key', 'k', '--tls-ca', 'ca', '--tls-mode', 'require']);
  ok(['--upstream-tls', 'prefer']);
  ok(['--upstream-tls', 'require', '--upstream-tls-cert', 'c', '--upstream-tls-key', 'k']);
  ok(['--upstream-tls', 'verify-full', '--upstream-tls-ca', 'ca']);
  const bad: [string[], string][] = [
    [['--tls-cert', 'c'], 'tls-key'],
    [['--tls-key', 'k'], 'tls-cert'],
    [['--tls-mode', 'allow'], 'tls-mode'],
    [['--tls-mode', 'require'], 'tls-mode'],
    [['--tls-ca', 'ca'], 'tls-ca'],
    [['--upstream-tls', 'require', '--upstream-tls-cert', 'c'], 'upstream-tls-key'],
    [['--upstream-tls', 'require', '--upstream-tls-key', 'k'], 'upstream-tls-cert'],
    [['--upstream-tls-ca', 'ca'], 'upstream-tls-ca'],
    [['--upstream-tls-cert', 'c', '--upstream-tls-key', 'k'], 'upstream-tls-cert'],
    [['--upstream-tls', 'verify-ca'], 'upstream-tls'],
    [['--upstream-tls', 'verify-full'], 'upstream-tls'],
  ];
  for (const [argv, key] of bad) rejects(tt, () => checkEnvironment(configOf([...argv, '--log', 'none'])), key, argv.join(' '));
});

t.test('checkEnvironment: the query log directory must exist and be writable', async (tt) => {
  const dir = tmpDir(tt);
  const cfg = (log: string): Config => patched(defaults(), { log: { path: log } });
  tt.doesNotThrow(() => checkEnvironment(cfg('-')), "'-' is stdout");
  tt.doesNotThrow(() => checkEnvironment(cfg('none')), "'none' is no log");
  tt.doesNotThrow(() => checkEnvironment(cfg(path.join(dir, 'q.log'))), 'new file in an existing directory');
  fs.writeFileSync(path.join(dir, 'old.log'), 'x\n');
  tt.doesNotThrow(() => checkEnvironment(cfg(path.join(dir, 'old.log'))), 'existing writable file');
  const missing = path.join(dir, 'nope', 'q.log');
  const err = configError(tt, () => checkEnvironment(cfg(missing)), 'missing directory');
  tt.equal(err?.key, 'log');
  tt.ok(err?.message.includes(path.join(dir, 'nope')), `names the directory (${err?.message})`);
});

t.test('checkEnvironment: a log whose parent is a regular file fails naming log', async (tt) => {
  const dir = tmpDir(tt);
  const file = path.join(dir, 'plain');
  fs.writeFileSync(file, '');
  tt.equal(configError(tt, () => checkEnvironment(patched(defaults(), { log: { path: path.join(file, 'q.log') } })), 'ENOTDIR')?.key, 'log');
});

t.test('CLI --check: read-only log file or directory fails naming log', async (tt) => {
  // root passes every access(W_OK) check, so as root the check runs as user nobody.
  if (!fs.existsSync(MAIN)) execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'inherit' });
  const asRoot = process.getuid?.() === 0;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-ro-'));
  tt.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.chmodSync(dir, 0o755);
  const file = path.join(dir, 'ro.log');
  fs.writeFileSync(file, '');
  fs.chmodSync(file, 0o444);
  const roDir = path.join(dir, 'ro');
  fs.mkdirSync(roDir);
  fs.chmodSync(roDir, 0o555);
  const check = (log: string) =>
    spawnSync(process.execPath, [MAIN, '--check', '--log', log], {
      encoding: 'utf8',
      timeout: 30_000,
      cwd: dir,
      ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
    });
  for (const log of [file, path.join(roDir, 'q.log')]) {
    const r = check(log);
    tt.equal(r.status, 1, `${log}: exit 1 (${r.stderr.trim()})`);
    tt.match(r.stderr, /invalid setting log: /, `${log}: names the log setting`);
  }
  const ok = check(path.join(dir, 'new.log'));
  tt.equal(ok.status, 1, 'a new file in a directory nobody cannot write to fails too');
});

// ---- the real CLI ------------------------------------------------------------------------------

/** Runs the CLI in `cwd` (a temp dir with a logs/ directory, so the default query log path is writable). */
function cli(args: string[], cwd: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 30_000, cwd });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('CLI', async (tt) => {
  if (!fs.existsSync(MAIN)) execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: ROOT, stdio: 'inherit' });
  tt.ok(fs.existsSync(MAIN), `${MAIN} exists`);
  const cwd = tmpDir(tt);
  fs.mkdirSync(path.join(cwd, 'logs'));

  tt.test('--check prints the effective settings as JSON', async (t2) => {
    const r = cli(['--check'], cwd);
    t2.equal(r.status, 0);
    t2.strictSame(JSON.parse(r.stdout), DEFAULTS_DESCRIBED);
    t2.equal(r.stderr, '');
  });

  tt.test('--check with a config file and flags', async (t2) => {
    const dir = tmpDir(t2);
    const file = path.join(dir, 'c.json');
    fs.writeFileSync(file, JSON.stringify({ upstream: 'pg.example:5433', 'max-connections': 3, 'log-format': 'json' }));
    const r = cli(['--config', file, '--check', '--max-connections', '7', '--listen', '[::1]:7000'], cwd);
    t2.equal(r.status, 0, r.stderr);
    t2.strictSame(JSON.parse(r.stdout), { ...DEFAULTS_DESCRIBED, upstream: 'pg.example:5433', 'max-connections': 7, 'log-format': 'json', listen: '[::1]:7000' });
  });

  tt.test('--check --max-connections 0 fails naming the setting', async (t2) => {
    const r = cli(['--check', '--max-connections', '0'], cwd);
    t2.equal(r.status, 1);
    t2.equal(r.stdout, '');
    t2.match(r.stderr, /max-connections/);
    t2.match(r.stderr, /out of range 1-100000/);
  });

  tt.test('--check: a query log in a missing directory fails naming log; - and none need no directory', async (t2) => {
    const missing = path.join(cwd, 'no-such-dir', 'q.log');
    const r = cli(['--check', '--log', missing], cwd);
    t2.equal(r.status, 1);
    t2.equal(r.stdout, '');
    t2.match(r.stderr, /invalid setting log: /);
    t2.ok(r.stderr.includes(path.dirname(missing)), 'names the directory');
    for (const log of ['-', 'none']) {
      const ok = cli(['--check', '--log', log], path.join(cwd, 'logs'));
      t2.equal(ok.status, 0, `--log ${log} in a directory without logs/: ${ok.stderr}`);
      t2.equal((JSON.parse(ok.stdout) as { log: string }).log, log);
    }
  });

  tt.test('invalid config file fails naming config', async (t2) => {
    const dir = tmpDir(t2);
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, '{oops');
    const r = cli(['--config', file, '--check'], cwd);
    t2.equal(r.status, 1);
    t2.equal(r.stdout, '');
    t2.match(r.stderr, /config: /);
  });

  tt.test('unknown flag exits 1', async (t2) => {
    const r = cli(['--bogus-flag', 'x'], cwd);
    t2.equal(r.status, 1);
    t2.equal(r.stdout, '');
    t2.match(r.stderr, /--bogus-flag/);
  });

  tt.test('--help lists every setting', async (t2) => {
    const r = cli(['--help'], cwd);
    t2.equal(r.status, 0);
    for (const name of Object.keys(SETTINGS)) t2.match(r.stdout, new RegExp(`^  --${name} `, 'm'), `--${name} listed`);
    t2.match(r.stdout, /--config FILE/);
    t2.match(r.stdout, /--check/);
    t2.match(r.stdout, /\(default 127\.0\.0\.1:6000\)/, 'defaults shown');
    t2.strictSame(cli(['-h'], cwd).stdout, r.stdout, '-h is the same');
  });

  tt.test('--version prints the package.json version', async (t2) => {
    const r = cli(['--version'], cwd);
    t2.equal(r.status, 0);
    t2.equal(r.stdout, `pgscribe ${PKG_VERSION}\n`);
    t2.equal(cli(['-V'], cwd).stdout, r.stdout);
  });
});

t.test('admin: PORT means loopback; beyond loopback it needs a token; --check hides the token', async (tt) => {
  tt.strictSame(configOf(['--admin', '9187']).admin.address, { host: '127.0.0.1', port: 9187 });
  tt.strictSame(configOf(['--admin', ':9187']).admin.address, { host: '127.0.0.1', port: 9187 });
  tt.strictSame(configOf(['--admin', '[::1]:9187']).admin.address, { host: '::1', port: 9187 });
  tt.strictSame(configOf(['--admin', 'off']).admin.address, null);
  tt.throws(() => configOf(['--admin', 'nope']), /--admin: expected HOST:PORT/);
  tt.throws(() => configOf(['--admin', '70000']), /--admin: 70000 is out of range/);
  for (const ok of [['--admin', '127.0.0.1:1'], ['--admin', 'localhost:1'], ['--admin', '[::1]:1'], ['--admin', '0.0.0.0:1', '--admin-token', 't']]) {
    tt.doesNotThrow(() => checkEnvironment(patched(configOf(ok), { log: { path: 'none' } })), ok.join(' '));
  }
  for (const bad of [['--admin', '0.0.0.0:1'], ['--admin', '10.1.2.3:1'], ['--admin', '[::]:1']]) {
    tt.throws(() => checkEnvironment(patched(configOf(bad), { log: { path: 'none' } })), /admin: binding the admin server to .* set --admin-token, or bind to 127\.0\.0\.1/, bad.join(' '));
  }
  const r = spawnSync(process.execPath, [MAIN, '--check', '--log', 'none', '--admin', '0.0.0.0:9', '--admin-token', 'hunter2'], { encoding: 'utf8' });
  tt.equal(r.status, 0, r.stderr);
  tt.notMatch(r.stdout, /hunter2/, 'the token is not printed');
  tt.match(r.stdout, /"admin-token": "\(set\)"/);
  const refused = spawnSync(process.execPath, [MAIN, '--check', '--log', 'none', '--admin', '0.0.0.0:9'], { encoding: 'utf8' });
  tt.equal(refused.status, 1, 'a non-loopback admin address without a token fails --check');
  tt.match(refused.stderr, /invalid setting admin: binding the admin server to 0\.0\.0\.0/);
});

t.test('catalog: --check hides the password and says which cache mode runs and why', async (tt) => {
  const c = configOf(['--catalog-user', 'pgscribe', '--catalog-password', 'pw', '--catalog-database', 'meta', '--catalog-poll-ms', '250']);
  tt.strictSame(c.catalog, { user: 'pgscribe', password: 'pw', database: 'meta', pollMs: 250 });
  for (const bad of [['--catalog-poll-ms', '10'], ['--catalog-database', '']]) {
    const err = configError(tt, () => parseCommandLine(bad), bad.join(' '));
    tt.ok(err !== null && err.key.includes(bad[0]!.slice(2)), `${bad.join(' ')}: names ${bad[0]} (${err?.message})`);
  }
  const r = spawnSync(process.execPath, [MAIN, '--check', '--log', 'none', '--cache', '--catalog-user', 'pgscribe', '--catalog-password', 'hunter2'], { encoding: 'utf8' });
  tt.equal(r.status, 0, r.stderr);
  tt.notMatch(r.stdout, /hunter2/, 'the password is not printed');
  tt.match(r.stdout, /"catalog-password": "\(set\)"/);
  tt.match(r.stderr, /^pgscribe: cache mode: catalog: what statements touch comes from PostgreSQL's catalog \(catalog-user pgscribe\)$/m, 'the mode, on stderr');
  const rulesOnly = spawnSync(process.execPath, [MAIN, '--check', '--log', 'none', '--singleflight'], { encoding: 'utf8' });
  tt.match(rulesOnly.stderr, /^pgscribe: cache mode: rules-only: no catalog-user, so only statements a cache-rules entry allows are cached or shared$/m);
  const off = spawnSync(process.execPath, [MAIN, '--check', '--log', 'none'], { encoding: 'utf8' });
  tt.equal(off.stderr, '', 'nothing said without the cache');
});

t.test('redis: needs --cache; redis-singleflight needs --redis; --check hides the password', async (tt) => {
  tt.same(configOf(['--redis', '10.0.0.7:6379']).redis.address, { host: '10.0.0.7', port: 6379 });
  tt.same(configOf(['--redis', '[::1]:6380']).redis.address, { host: '::1', port: 6380 });
  tt.equal(configOf(['--redis', 'off']).redis.address, null);
  for (const bad of [['--redis', 'nowhere'], ['--redis', 'h:0'], ['--redis-timeout-ms', '0'], ['--redis-db', '-1'], ['--redis-prefix', ''], ['--redis-lock-ms', '5']]) {
    const err = configError(tt, () => parseCommandLine(bad), bad.join(' '));
    tt.ok(err !== null && err.key.includes(bad[0]!.slice(2)), `${bad.join(' ')}: names ${bad[0]} (${err?.message})`);
  }
  tt.throws(() => checkEnvironment(patched(configOf(['--redis', '127.0.0.1:6379']), { log: { path: 'none' } })), /redis: .* needs --cache/, '--redis without --cache');
  tt.throws(() => checkEnvironment(patched(configOf(['--cache', '--redis-singleflight']), { log: { path: 'none' } })), /redis-singleflight: .* needs --redis/, '--redis-singleflight without --redis');
  const KEY = ['--redis-key', 'k'.repeat(32)];
  tt.doesNotThrow(() => checkEnvironment(patched(configOf(['--cache', '--redis', '127.0.0.1:6379', '--redis-singleflight', ...KEY]), { log: { path: 'none' } })));
  // Issue 15, finding 4: entries are signed with a shared secret; without one, --redis is refused.
  tt.throws(() => checkEnvironment(patched(configOf(['--cache', '--redis', '127.0.0.1:6379']), { log: { path: 'none' } })), /redis-key: is not set: every shared cache entry is signed .*PGSCRIBE_REDIS_KEY/, '--redis without a key');
  tt.throws(() => checkEnvironment(patched(configOf(['--cache', '--redis', '127.0.0.1:6379', '--redis-key', 'short']), { log: { path: 'none' } })), /redis-key: has 5 characters/, 'a key under 32 characters');
  tt.throws(() => checkEnvironment(patched(configOf(['--cache', '--redis', '127.0.0.1:6379', ...KEY, '--redis-tls', 'verify-full']), { log: { path: 'none' } })), /redis-tls: verify-full needs redis-tls-ca/, 'verify-full without a CA');
  tt.throws(() => parseCommandLine(['--redis-tls', 'prefer']), /redis-tls/, 'an unknown TLS mode');
  tt.equal(parseCommandLine(['--cache'], { PGSCRIBE_REDIS_KEY: 'e'.repeat(40) }).kind === 'run' && (parseCommandLine(['--cache'], { PGSCRIBE_REDIS_KEY: 'e'.repeat(40) }) as { config: Config }).config.redis.key, 'e'.repeat(40), 'the key from PGSCRIBE_REDIS_KEY');
  const r = spawnSync(process.execPath, [MAIN, '--check', '--log', 'none', '--cache', '--redis', '127.0.0.1:6379', '--redis-password', 'hunter2'], {
    encoding: 'utf8',
    env: { ...process.env, PGSCRIBE_REDIS_KEY: 'secret-signing-key-0123456789abcdef' },
  });
  tt.equal(r.status, 0, r.stderr);
  tt.notMatch(r.stdout, /hunter2/, 'the password is not printed');
  tt.notMatch(r.stdout, /secret-signing-key/, 'nor the signing key');
  tt.match(r.stdout, /"redis-key": "\(set\)"/);
  tt.match(r.stdout, /"redis-password": "\(set\)"/);
  tt.match(r.stdout, /"redis": "127\.0\.0\.1:6379"/);
  const refused = spawnSync(process.execPath, [MAIN, '--check', '--log', 'none', '--redis', '127.0.0.1:6379'], { encoding: 'utf8' });
  tt.equal(refused.status, 1, '--redis without --cache fails --check');
  tt.match(refused.stderr, /invalid setting redis: .*needs --cache/);
});

// Issue 15, security finding 18: the admin token and the Redis password could only be given on
// the command line (visible to every local user in `ps`) or in the config file. The environment
// works too now: defaults < file < environment < flags.
t.test('secrets from the environment: PGSCRIBE_ADMIN_TOKEN, PGSCRIBE_REDIS_PASSWORD, PGSCRIBE_CATALOG_PASSWORD', async (tt) => {
  const env = { PGSCRIBE_ADMIN_TOKEN: 'tok-env', PGSCRIBE_REDIS_PASSWORD: 'redis-env', PGSCRIBE_CATALOG_PASSWORD: 'cat-env', PGSCRIBE_OTHER: 'x' };
  const cmd = parseCommandLine([], env);
  if (cmd.kind !== 'run') throw new Error('not run');
  tt.equal(cmd.config.admin.token, 'tok-env');
  tt.equal(cmd.config.redis.password, 'redis-env');
  tt.equal(cmd.config.catalog.password, 'cat-env');
  const flagged = parseCommandLine(['--admin-token', 'tok-flag'], env);
  tt.equal(flagged.kind === 'run' && flagged.config.admin.token, 'tok-flag', 'a flag wins');
  const empty = parseCommandLine([], { PGSCRIBE_ADMIN_TOKEN: '' });
  tt.equal(empty.kind === 'run' && empty.config.admin.token, '', 'an empty variable is no setting');
  const none = parseCommandLine([], {});
  tt.equal(none.kind === 'run' && none.config.redis.password, '', 'none: the default');
});

t.test('cache-invalidation: ttl by default; wal needs --cache and catalog-user; --check says what would run', async (tt) => {
  tt.equal(configOf([]).cache.invalidation, 'ttl', 'ttl keeps the behaviour of builds before it');
  tt.equal(configOf([]).cache.walPublication, '');
  tt.equal(configOf(['--cache-invalidation', 'wal']).cache.invalidation, 'wal');
  tt.equal(configOf(['--cache-invalidation', 'auto']).cache.invalidation, 'auto');
  tt.equal(configOf(['--cache-wal-publication', 'app_pub']).cache.walPublication, 'app_pub');
  const bad = configError(tt, () => parseCommandLine(['--cache-invalidation', 'never']), 'never');
  tt.match(bad?.message, /expected one of ttl, wal, auto/);
  const none = { log: { path: 'none' } } as const;
  tt.throws(() => checkEnvironment(patched(configOf(['--cache-invalidation', 'wal', '--catalog-user', 'p']), none)), /cache-invalidation: wal .* needs --cache and catalog-user \(--cache is off\)/);
  tt.throws(() => checkEnvironment(patched(configOf(['--cache', '--cache-invalidation', 'wal']), none)), /cache-invalidation: .*\(catalog-user is not set\)/);
  tt.doesNotThrow(() => checkEnvironment(patched(configOf(['--cache', '--cache-invalidation', 'wal', '--catalog-user', 'p']), none)));
  tt.doesNotThrow(() => checkEnvironment(patched(configOf(['--cache', '--cache-invalidation', 'auto']), none)), 'auto without catalog-user is ttl, not an error');
  tt.throws(() => checkEnvironment(patched(configOf(['--cache', '--cache-wal-publication', 'x']), none)), /cache-wal-publication: has no effect while cache-invalidation is ttl/);

  const check = (args: string[]) => spawnSync(process.execPath, [MAIN, '--check', '--log', 'none', '--cache', ...args], { encoding: 'utf8' });
  const ttl = check([]);
  tt.equal(ttl.status, 0, ttl.stderr);
  tt.match(ttl.stderr, /^pgscribe: cache invalidation: ttl: writes through pgscribe drop what they change; other changes only when the TTL passes$/m);
  tt.match(ttl.stdout, /"cache-invalidation": "ttl"/);
  const wal = check(['--catalog-user', 'pgscribe', '--cache-invalidation', 'wal']);
  tt.equal(wal.status, 0, wal.stderr);
  tt.match(wal.stderr, /^pgscribe: cache invalidation: wal: PostgreSQL's change stream .*publication pgscribe_all \(created and filled by pgscribe\).*not served from the cache while its stream is down$/m);
  const op = check(['--catalog-user', 'pgscribe', '--cache-invalidation', 'wal', '--cache-wal-publication', 'app_pub']);
  tt.match(op.stderr, /publication app_pub \(the operator's\)/);
  const auto = check(['--catalog-user', 'pgscribe', '--cache-invalidation', 'auto']);
  tt.match(auto.stderr, /^pgscribe: cache invalidation: auto: wal .* if, at start, wal_level is logical, catalog-user pgscribe has REPLICATION .*; else ttl, said in one line$/m);
  const autoNoCatalog = check(['--cache-invalidation', 'auto']);
  tt.match(autoNoCatalog.stderr, /cache invalidation: ttl: .*\(auto: no catalog-user, so no change stream\)$/m);
  const refused = check(['--cache-invalidation', 'wal']);
  tt.equal(refused.status, 1, 'wal without catalog-user fails --check');
  tt.match(refused.stderr, /invalid setting cache-invalidation: wal reads PostgreSQL's change stream/);
});

t.test('log-redact, log-sample: rules checked, kept as written', async (tt) => {
  tt.strictSame(configOf(['--log-redact', '']).log.redact, [], "'' is none");
  tt.strictSame(configOf(['--log-redact', '^insert into cards']).log.redact, ['^insert into cards']);
  rejects(tt, () => configOf(['--log-redact', 'card(']), '--log-redact', 'not a regular expression');
  rejects(tt, () => configOf(['--log-sample', '{"rate": 0.25, "sql": "^select"}']), '--log-sample', 'one JSON object is not a list');
  tt.strictSame(configOf(['--log-sample', '[{"rate": 0.25, "sql": "^select, 1"}]']).log.sample, [{ sql: '^select, 1', rate: 0.25 }], 'JSON: a pattern with a comma');
  rejects(tt, () => configOf(['--log-sample', 'user=a']), '--log-sample', 'no rate');
  rejects(tt, () => configOf(['--log-sample', 'rate=1.5']), '--log-sample', 'rate over 1');
  rejects(tt, () => configOf(['--log-sample', 'rate=0.5,host=x']), '--log-sample', 'an unknown field');
  rejects(tt, () => configOf(['--log-sample', 'sql=(,rate=0.5']), '--log-sample', 'a bad pattern');
  rejects(tt, () => configOf(['--log-overflow', 'never']), '--log-overflow', 'wait or drop');
  rejects(tt, () => configOf(['--log-sql', 'hidden']), '--log-sql', 'text or normalized');
});
