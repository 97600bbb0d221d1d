/**
 * Lists of rules in settings (rate-limits, log-sample): in a --config file (or as a JSON string)
 * an array of objects; on the command line also a compact form, rules separated by `;` and
 * fields by `,`: `user=flood,qps=50,burst=10;database=reports,qps=5`. Each setting checks its
 * own fields; this reads the list.
 */
import { ConfigError } from './config-error';

/** The rules as objects (compact-form values stay strings); `shape` and `example` go into messages. */
export function ruleList(raw: unknown, key: string, shape: string, example: string): unknown[] {
  let v = raw;
  if (typeof v === 'string') v = /^\s*[[{]/.test(v) ? fromJson(v, key) : fromCompact(v, key, example);
  if (!Array.isArray(v)) throw new ConfigError(key, `expected an array of ${shape} rules, got ${JSON.stringify(raw)}`);
  return v;
}

function fromJson(text: string, key: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ConfigError(key, `expected a JSON array of rules: ${(err as Error).message}`);
  }
}

/** `user=flood,qps=50,burst=10;database=x,qps=5`: numbers stay strings here, each setting reads them. */
function fromCompact(text: string, key: string, example: string): Record<string, string>[] {
  const rules: Record<string, string>[] = [];
  const parts = text.split(';').map((p) => p.trim());
  if (parts.length === 1 && parts[0] === '') return rules;
  parts.forEach((part, i) => {
    if (part === '') throw new ConfigError(key, `rule ${i}: empty (two ';' in a row, or a trailing one)`);
    const o: Record<string, string> = {};
    for (const field of part.split(',')) {
      const eq = field.indexOf('=');
      if (eq <= 0) throw new ConfigError(key, `rule ${i}: expected NAME=VALUE, got ${JSON.stringify(field.trim())} (e.g. ${example})`);
      const name = field.slice(0, eq).trim();
      if (name in o) throw new ConfigError(key, `rule ${i}: ${name} given twice`);
      o[name] = field.slice(eq + 1).trim();
    }
    rules.push(o);
  });
  return rules;
}

/** A number, or its decimal text (the compact form); undefined when absent. */
export function ruleNumber(v: unknown, what: string, key: string): number | undefined {
  if (v === undefined) return undefined;
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(v) ? Number(v) : NaN;
  if (!Number.isFinite(n)) throw new ConfigError(key, `${what} must be a number, got ${JSON.stringify(v)}`);
  return n;
}
