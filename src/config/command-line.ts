/**
 * The command line and the JSON config file. Every setting has one name, used both as `--name`
 * on the command line and as `"name"` in the file given with --config; flags win over the file.
 * The secrets may also come from environment variables (SECRET_ENV).
 * Unknown flags and keys are errors naming the offender.
 */
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError } from './config-error';
import { NAMES, apply, defaults, settingNamed } from './settings';
import { clientTlsMode, type Config } from './types';

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

/** What the command line asks for: run or check with these settings, or print help or the version. */
export type Command = { kind: 'run' | 'check'; config: Config } | { kind: 'help' } | { kind: 'version' };

/**
 * Secrets may come from the environment, so that they need not be on the command line, where
 * any local user sees them in `ps` (or in a config file, which can be made unreadable to others).
 * Precedence: defaults, the config file, these variables, the flags.
 */
export const SECRET_ENV: Readonly<Record<string, string>> = {
  PGSCRIBE_ADMIN_TOKEN: 'admin-token',
  PGSCRIBE_REDIS_PASSWORD: 'redis-password',
  PGSCRIBE_REDIS_KEY: 'redis-key',
  PGSCRIBE_CATALOG_PASSWORD: 'catalog-password',
};

/** Parse argv (without node and script). Throws ConfigError on anything wrong. */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv = process.env): Command {
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
  for (const [variable, name] of Object.entries(SECRET_ENV)) {
    const value = env[variable];
    if (value !== undefined && value !== '') apply(cfg, name, value, `environment variable ${variable}`);
  }
  for (const n of NAMES) {
    const raw = v[n];
    if (raw !== undefined) apply(cfg, n, raw, 'flag');
  }
  cfg.tls.client.mode = clientTlsMode(cfg.tls.client);
  return { kind: v['check'] ? 'check' : 'run', config: cfg };
}

/** `--cache` -> `--cache=true`, `--cache false` -> `--cache=false`, for the settings that are switches. */
function expandSwitches(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (a.startsWith('--') && settingNamed(a.slice(2))?.switch) {
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
