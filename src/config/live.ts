/**
 * Which settings a reload (SIGHUP with --config) changes in a running pgscribe, and which wait
 * for a restart. Live ones take effect for new sessions and new queries; sessions already
 * running keep their node, their log prefix and their admission. The others are reported and
 * keep their running value: a listener cannot move without dropping its clients, the processes,
 * workers and Redis connections are made once, and so on.
 */
import { NAMES, SETTINGS, valueAt, type SettingName } from './settings';
import type { Config } from './types';

/**
 * The settings a reload applies while running (src/reload.ts says how each one takes effect).
 * Not log-completions nor log-replay: they decide what each session's framers deliver whole and
 * what it tracks from its start, and a replayable log must hold sessions from start to end.
 */
export const LIVE_SETTINGS: ReadonlySet<SettingName> = new Set<SettingName>([
  'upstream',
  'health-interval-ms',
  'health-timeout-ms',
  'health-failures',
  'primary-wait-ms',
  'max-replica-lag-ms',
  'replica-fallback',
  'max-connections',
  'max-user-connections',
  'max-db-connections',
  'rate-limits',
  'rate-limit-max-delay-ms',
  'max-message-bytes',
  'connect-timeout',
  'startup-timeout',
  'shutdown-grace',
  'log-params',
  'log-param-max-bytes',
  'log-redact',
  'log-sql',
  'log-repeated-sql-max-chars',
  'cache-ttl',
  'cache-rules',
]);

export interface ReloadPlan {
  /** Live settings whose value changed: applied. */
  live: SettingName[];
  /** Settings whose value changed but that only a restart changes: kept as they run. */
  kept: SettingName[];
}

/** Same value: compared as JSON (HOST:PORT objects, rule lists). */
function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * What a reload from `running` to `next` changes. The upstream list changes live only between
 * lists of several nodes, or from one node to another: going from one node to several (or back)
 * starts or stops the health checks, which a restart does. max-user-connections and
 * max-db-connections change live only while at least one of them stays set (or both stay 0).
 */
export function planReload(running: Config, next: Config): ReloadPlan {
  const plan: ReloadPlan = { live: [], kept: [] };
  for (const name of NAMES) {
    const path = SETTINGS[name].path;
    if (same(valueAt(running, path), valueAt(next, path))) continue;
    let live = LIVE_SETTINGS.has(name);
    if (name === 'upstream' && (running.upstreams.length > 1) !== (next.upstreams.length > 1)) live = false;
    // Sessions admitted while both were off were never counted: the limits change live only
    // while they stay on (or off).
    const perSessionOn = (c: Config) => c.limits.maxUserConnections > 0 || c.limits.maxDbConnections > 0;
    if ((name === 'max-user-connections' || name === 'max-db-connections') && perSessionOn(running) !== perSessionOn(next)) live = false;
    (live ? plan.live : plan.kept).push(name);
  }
  return plan;
}
