/**
 * `rate-limits`: the query rate limits, a list of rules; the first rule that matches a session
 * applies to it. In a --config file (or as a JSON string) an array of
 * `{"user": U, "database": D, "application_name": A, "qps": N, "burst": N}`, where user, database
 * and application_name are each optional (absent: any); on the command line also a compact form,
 * rules separated by `;` and fields by `,`: `user=flood,qps=50,burst=10;database=reports,qps=5`.
 * As cache-rules.ts does for its rules, the rules are checked here and kept as written, for --check.
 */
import { ConfigError } from './config-error';
import { ruleList, ruleNumber as num } from './rule-list';
import type { RateLimitRule } from './types';

const FIELDS = ['user', 'database', 'application_name', 'qps', 'burst'] as const;
/** Most queries per second a rule may allow: beyond this a typo (and no bucket needed). */
export const MAX_QPS = 1_000_000;
/** Default burst when a rule names none: one query at a time. */
const DEFAULT_BURST = 1;

/** Parses and checks the rules; keeps them as written (absent matchers left out), for --check. */
export function rateLimits(raw: unknown, key: string): RateLimitRule[] {
  return ruleList(raw, key, '{"user", "database", "application_name", "qps", "burst"}', 'user=flood,qps=50,burst=10').map((r, i) => rule(r, `rule ${i}`, key));
}

function rule(r: unknown, where: string, key: string): RateLimitRule {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new ConfigError(key, `${where}: expected an object, got ${JSON.stringify(r)}`);
  const o = r as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(FIELDS as readonly string[]).includes(k)) throw new ConfigError(key, `${where}: unknown field ${JSON.stringify(k)} (known: ${FIELDS.join(', ')})`);
  }
  const qps = num(o['qps'], `${where}: "qps"`, key);
  if (qps === undefined) throw new ConfigError(key, `${where}: "qps" is required (queries per second, e.g. qps=50)`);
  if (!(qps > 0 && qps <= MAX_QPS)) throw new ConfigError(key, `${where}: "qps" must be more than 0 and at most ${MAX_QPS}, got ${qps}`);
  const burst = num(o['burst'], `${where}: "burst"`, key) ?? DEFAULT_BURST;
  if (!Number.isInteger(burst) || burst < 1 || burst > MAX_QPS) throw new ConfigError(key, `${where}: "burst" must be an integer from 1 to ${MAX_QPS}, got ${burst}`);
  const out: RateLimitRule = { qps, burst };
  for (const k of ['user', 'database', 'application_name'] as const) {
    const m = o[k];
    if (m === undefined) continue;
    if (typeof m !== 'string' || m === '') throw new ConfigError(key, `${where}: "${k}" must be a non-empty string (leave it out to match any), got ${JSON.stringify(m)}`);
    out[k] = m;
  }
  return out;
}

/** How a rule is named in messages: `rate-limits rule 0 (user=flood)`. */
export function describeRule(r: RateLimitRule, index: number): string {
  const m = (['user', 'database', 'application_name'] as const).filter((k) => r[k] !== undefined).map((k) => `${k}=${r[k]!}`);
  return `rate-limits rule ${index}${m.length === 0 ? '' : ` (${m.join(', ')})`}`;
}
