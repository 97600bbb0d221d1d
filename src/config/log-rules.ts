/**
 * The query log's rules: `log-redact` (statements whose lines hold no data values) and
 * `log-sample` (which sessions' lines are written). Checked here and kept as written, for --check;
 * src/log/redaction.ts and src/log/sampling.ts apply them.
 */
import { ConfigError } from './config-error';
import { ruleList, ruleNumber } from './rule-list';
import type { LogSampleRule } from './types';

/** A regular expression as pgscribe compiles it (case-insensitive), or the reason it is not one. */
function regex(source: string, what: string, key: string): void {
  try {
    new RegExp(source, 'i');
  } catch (err) {
    throw new ConfigError(key, `${what}: not a regular expression: ${(err as Error).message}`);
  }
}

/**
 * `log-redact`: one regular expression, or (in a --config file) an array of them; '' or []: none.
 * A statement whose SQL any of them matches is logged without data values.
 */
export function logRedact(raw: unknown, key: string): string[] {
  const list = typeof raw === 'string' ? (raw === '' ? [] : [raw]) : raw;
  if (!Array.isArray(list)) throw new ConfigError(key, `expected a regular expression, or an array of them, got ${JSON.stringify(raw)}`);
  return list.map((p: unknown, i) => {
    if (typeof p !== 'string' || p === '') throw new ConfigError(key, `pattern ${i}: expected a non-empty regular expression, got ${JSON.stringify(p)}`);
    regex(p, `pattern ${i}`, key);
    return p;
  });
}

const SAMPLE_FIELDS = ['user', 'database', 'application_name', 'sql', 'rate'] as const;

/** `log-sample`: [{"user", "database", "application_name", "sql", "rate"}] or user=U,rate=0.1;... */
export function logSample(raw: unknown, key: string): LogSampleRule[] {
  return ruleList(raw, key, '{"user", "database", "application_name", "sql", "rate"}', 'application_name=batch,rate=0.1').map((r, i) => sampleRule(r, `rule ${i}`, key));
}

function sampleRule(r: unknown, where: string, key: string): LogSampleRule {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new ConfigError(key, `${where}: expected an object, got ${JSON.stringify(r)}`);
  const o = r as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(SAMPLE_FIELDS as readonly string[]).includes(k)) throw new ConfigError(key, `${where}: unknown field ${JSON.stringify(k)} (known: ${SAMPLE_FIELDS.join(', ')})`);
  }
  const rate = ruleNumber(o['rate'], `${where}: "rate"`, key);
  if (rate === undefined) throw new ConfigError(key, `${where}: "rate" is required (the fraction of sessions written, e.g. rate=0.1)`);
  if (!(rate >= 0 && rate <= 1)) throw new ConfigError(key, `${where}: "rate" must be from 0 to 1, got ${rate}`);
  const out: LogSampleRule = { rate };
  for (const k of ['user', 'database', 'application_name', 'sql'] as const) {
    const m = o[k];
    if (m === undefined) continue;
    if (typeof m !== 'string' || m === '') throw new ConfigError(key, `${where}: "${k}" must be a non-empty string (leave it out to match any), got ${JSON.stringify(m)}`);
    if (k === 'sql') regex(m, `${where}: "sql"`, key);
    out[k] = m;
  }
  return out;
}
