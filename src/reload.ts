/**
 * Reading the settings (at start, for --check, and at each SIGHUP) and applying a reload to a
 * running pgscribe. A reload reads exactly what the start read: the --config file, the
 * environment's secrets, the flags (which still win over the file), then the same checks as
 * --check. A file that fails them changes nothing: the reason is logged and every setting keeps
 * its running value. Otherwise the live settings (config/live.ts) are written into the running
 * Config in place, which everything that reads it at use time sees at once; the components that
 * copied a value at start are told here. Sessions already running are not dropped.
 */
import { CachePolicy } from './cache/policy';
import type { CacheContext } from './cache/session';
import { ConfigError, checkEnvironment, compileRules, parseCommandLine, SETTINGS, setAt, valueAt, type Command, type Config } from './config';
import { planReload } from './config/live';
import type { ClientLogger } from './log/client-logger';
import { lineFormatterOf } from './log/format';
import { lineWriterOf } from './log/line-bytes';
import type { OpsLog } from './log/ops';
import { loadTls, type TlsSetup } from './tls';
import { healthOptionsOf } from './upstreams/create';
import type { UpstreamSet } from './upstreams/upstream-set';

/**
 * The command line read and checked as pgscribe starts and reloads: throws a ConfigError naming
 * the setting at fault. The certificate files are read too, so that a bad one fails here.
 */
export function readSettings(argv: string[], env: NodeJS.ProcessEnv = process.env): { cmd: Command; tls: TlsSetup } {
  const cmd = parseCommandLine(argv, env);
  if (cmd.kind !== 'run' && cmd.kind !== 'check') return { cmd, tls: { client: null, upstream: null } };
  checkEnvironment(cmd.config);
  return { cmd, tls: loadTls(cmd.config.tls) };
}

/** The cache's verdicts on statements from the settings (rulesOnly: no catalog to ask). */
export function cachePolicyOf(cfg: Config, rulesOnly: boolean): CachePolicy {
  return new CachePolicy({ rules: compileRules(cfg.cache.rules), ttlMs: cfg.cache.enabled ? cfg.cache.ttlMs : 0, rulesOnly });
}

/** What a reload can change in this process (null: not here, e.g. the primary of --processes N has no sessions). */
export interface Reloadable {
  /** The running settings: changed in place. */
  readonly cfg: Config;
  readonly ops: OpsLog;
  readonly server: { refreshSettings(): void } | null;
  readonly upstreams: UpstreamSet | null;
  readonly logger: ClientLogger | null;
  readonly cache: CacheContext | null;
}

/**
 * SIGHUP: read the settings again and apply what may change live. Returns the settings applied
 * (empty when the file was refused or nothing changed).
 */
export function reloadSettings(argv: string[], r: Reloadable): string[] {
  let next: Config;
  try {
    const { cmd } = readSettings(argv);
    if (cmd.kind !== 'run') return [];
    next = cmd.config;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    r.ops.error('SIGHUP: the settings were not reloaded: every setting keeps its running value. Fix the file (pgscribe --config FILE --check says the same) and send SIGHUP again', {
      error: `invalid setting ${err.message}`,
    });
    return [];
  }
  const plan = planReload(r.cfg, next);
  if (plan.kept.length > 0) {
    r.ops.warn('SIGHUP: these settings change only at a restart; they keep their running values', { settings: plan.kept.join(',') });
  }
  if (plan.live.length === 0) {
    r.ops.info('SIGHUP: settings read again; nothing that changes live differs');
    return [];
  }
  for (const name of plan.live) {
    const path = SETTINGS[name].path;
    setAt(r.cfg, path, structuredClone(valueAt(next, path)));
  }
  const changed = new Set<string>(plan.live);
  const any = (...names: string[]) => names.some((n) => changed.has(n));
  r.server?.refreshSettings();
  if (r.upstreams !== null && any('upstream', 'health-interval-ms', 'health-timeout-ms', 'health-failures', 'max-replica-lag-ms')) {
    r.upstreams.reconfigure(r.cfg.upstreams, healthOptionsOf(r.cfg));
  }
  if (r.logger !== null && any('log-params', 'log-param-max-bytes', 'log-repeated-sql-max-chars', 'log-redact', 'log-sql')) r.logger.reformat?.(lineFormatterOf(r.cfg.log), lineWriterOf(r.cfg.log));
  const cache = r.cache;
  if (cache !== null && any('cache-rules', 'cache-ttl')) {
    cache.policy = cachePolicyOf(r.cfg, cache.catalogs === null);
    cache.bypassMs = Math.max(r.cfg.cache.ttlMs, 1000);
    // Answers stored under the old rules would keep their old lifetimes: they go.
    if (cache.cache) cache.layer.flush();
  }
  r.ops.info('SIGHUP: settings reloaded; new sessions and queries use them', { changed: plan.live.join(',') });
  return plan.live;
}
