/**
 * log-sample: which sessions' lines are written. Rules match the session's user, database and
 * startup application_name, and optionally the statement's SQL; the first rule that matches a
 * line decides, with its rate. Each session draws one number when its first line is judged, so a
 * session is either written whole or not at all (for a rule with `sql`: every line of that
 * statement pattern, or none), never a scatter of lines; a line no rule matches is written.
 */
import type { LogSampleRule } from '../config';
import type { SessionInfo } from './format';

/** Pattern verdicts are kept for this many distinct SQL texts per rule, then forgotten. */
const MEMO_MAX = 2048;

interface Rule {
  readonly spec: LogSampleRule;
  readonly sql: RegExp | null;
  readonly memo: Map<string, boolean>;
}

export class Sampler {
  private readonly rules: Rule[];
  private readonly draws = new WeakMap<SessionInfo, number>();

  /** random: [0, 1), for tests. */
  constructor(rules: readonly LogSampleRule[], private readonly random: () => number = Math.random) {
    this.rules = rules.map((spec) => ({ spec, sql: spec.sql === undefined ? null : new RegExp(spec.sql, 'i'), memo: new Map() }));
  }

  /** Whether this line of session `s` (its statement's SQL; null: unknown) is written. */
  keeps(s: SessionInfo, sql: string | null): boolean {
    for (const r of this.rules) {
      const m = r.spec;
      if ((m.user !== undefined && m.user !== s.user) || (m.database !== undefined && m.database !== s.database)) continue;
      if (m.application_name !== undefined && m.application_name !== (s.application ?? '')) continue;
      if (r.sql !== null && (sql === null || !matches(r, sql))) continue;
      return this.draw(s) < m.rate;
    }
    return true;
  }

  private draw(s: SessionInfo): number {
    let d = this.draws.get(s);
    if (d === undefined) {
      d = this.random();
      this.draws.set(s, d);
    }
    return d;
  }
}

function matches(r: Rule, sql: string): boolean {
  let m = r.memo.get(sql);
  if (m === undefined) {
    if (r.memo.size >= MEMO_MAX) r.memo.clear();
    m = r.sql!.test(sql);
    r.memo.set(sql, m);
  }
  return m;
}
