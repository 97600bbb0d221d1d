// A strict reader of the Prometheus text format, for the tests of /metrics.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A strict reader of the Prometheus text format 0.0.4: every sample belongs to a metric whose
 * HELP and TYPE came first, names and labels are well formed, values are numbers, no metric is
 * declared twice, histogram buckets are cumulative and end in +Inf = _count.
 */
export function parseProm(text: string): Map<string, Sample[]> {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const out = new Map<string, Sample[]>();
  const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  for (const line of text.slice(0, -1).split('\n')) {
    let m: RegExpExecArray | null;
    if ((m = /^# HELP (\S+) (.+)$/.exec(line))) {
      if (helps.has(m[1]!)) throw new Error(`HELP twice for ${m[1]}`);
      helps.add(m[1]!);
      continue;
    }
    if ((m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      if (types.has(m[1]!)) throw new Error(`TYPE twice for ${m[1]}`);
      if (!NAME.test(m[1]!)) throw new Error(`bad metric name ${m[1]}`);
      types.set(m[1]!, m[2]!);
      continue;
    }
    if (line.startsWith('#')) throw new Error(`unexpected comment: ${line}`);
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const name = m[1]!;
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    if (!types.has(family)) throw new Error(`sample ${name} before its TYPE`);
    if (!helps.has(family)) throw new Error(`sample ${name} without HELP`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      for (const part of m[2].slice(1, -1).split(',')) {
        const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"$/.exec(part);
        if (!lm) throw new Error(`bad label ${part} in ${line}`);
        labels[lm[1]!] = lm[2]!;
      }
    }
    const v = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    if (m[3] !== 'NaN' && Number.isNaN(v)) throw new Error(`bad value in ${line}`);
    if (types.get(family) === 'counter' && !(v >= 0)) throw new Error(`negative counter ${line}`);
    const list = out.get(name) ?? [];
    list.push({ name, labels, value: v });
    out.set(name, list);
  }
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const buckets = out.get(`${family}_bucket`) ?? [];
    for (let i = 1; i < buckets.length; i++) if (buckets[i]!.value < buckets[i - 1]!.value) throw new Error(`${family} buckets not cumulative`);
    const inf = buckets.find((b) => b.labels['le'] === '+Inf');
    if (!inf || inf.value !== out.get(`${family}_count`)?.[0]?.value) throw new Error(`${family}: +Inf bucket must equal _count`);
  }
  return out;
}

/** The value of the sample of `name` with these labels (throws when there is none). */
export function value(m: Map<string, Sample[]>, name: string, labels: Record<string, string> = {}): number {
  const s = (m.get(name) ?? []).find((x) => Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  if (!s) throw new Error(`no sample ${name} ${JSON.stringify(labels)}`);
  return s.value;
}
