/**
 * `cache-rules`: a JSON array (a string of JSON on the command line) of
 * `{"pattern": REGEX, "flags": "i", "ttl": MS | "never"}`; the first matching rule applies.
 */
import type { CacheRule } from '../cache/policy';
import { ConfigError } from './config-error';
import type { CacheRuleSpec } from './types';

/** Parses and checks the rules (each pattern must compile); keeps them as written, for --check. */
export function cacheRules(raw: unknown, key: string): CacheRuleSpec[] {
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

/** The compiled rules of a config. */
export function compileRules(specs: readonly CacheRuleSpec[]): CacheRule[] {
  return specs.map((r) => ({ pattern: new RegExp(r.pattern, r.flags), ttlMs: r.ttl === 'never' ? null : r.ttl }));
}
