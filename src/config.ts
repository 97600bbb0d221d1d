/**
 * Command line and JSON config file. Every setting has one name, used both as `--name` on the
 * command line and as `"name"` in the file given with --config; flags win over the file.
 * Unknown flags and keys are errors naming the offender.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

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
}

function setting<K extends keyof Config>(field: K, parse: Parser<Config[K]>, def: Config[K], help: string): Setting<K> {
  return { field, parse, default: def, help };
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
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: false });
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
  return { kind: v['check'] ? 'check' : 'run', config: cfg };
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
    const d = s.default;
    const shown = typeof d === 'object' ? `${d.host}:${d.port}` : String(d);
    lines.push(`  --${n.padEnd(20)} ${s.help} (default ${shown})`);
  }
  lines.push(
    '',
    'Commands:',
    '  --config FILE, -c     read settings from a JSON file',
    '  --check               validate the settings, print them, exit 0 (or 1 naming the bad key)',
    '  --help, -h            this text',
    '  --version, -V         print the version',
    '',
    'Signals: SIGHUP reopens the query log; SIGTERM/SIGINT shut down gracefully.',
  );
  return lines.join('\n') + '\n';
}

/** The effective settings under their public names, for --check. */
export function describe(cfg: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const n of NAMES) {
    const v = cfg[SETTINGS[n].field];
    out[n] = typeof v === 'object' ? `${v.host.includes(':') ? `[${v.host}]` : v.host}:${v.port}` : v;
  }
  return out;
}

/**
 * Checks that need the file system, for --check and start-up: the query log must be writable
 * (its directory must exist). Throws ConfigError naming the key.
 */
export function checkEnvironment(cfg: Config): void {
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
