/**
 * Lines that must hold no data values (log-redact, log-sql normalized). A statement whose SQL a
 * log-redact pattern matches, or every statement with log-sql normalized, is logged with its
 * Bind parameters as a count (`params=2:redacted`) and its SQL in the digest normal form, where
 * literals are `$n` (src/insight/fingerprint.ts, the form /queries shows). A Bind or Execute
 * whose statement pgscribe never saw (sql unknown) cannot be matched, so its values are hidden
 * whenever any pattern is set: when unsure, hide.
 */
import { normalizeSql } from '../insight/fingerprint';

/** What of a query record (format.ts) redaction reads and sets. */
interface Redactable {
  readonly sql: string | null;
  readonly redacted?: true | undefined;
}

/** Normal forms and pattern verdicts are kept for this many distinct SQL texts, then forgotten. */
const MEMO_MAX = 2048;

export interface RedactionSettings {
  redact: readonly string[];
  sqlForm: 'text' | 'normalized';
}

/** The record as it may be logged; null when nothing is to be hidden (no patterns, text form). */
export function redactionOf(log: RedactionSettings): (<R extends Redactable>(r: R) => R) | null {
  const all = log.sqlForm === 'normalized';
  if (!all && log.redact.length === 0) return null;
  const pattern = log.redact.length === 0 ? null : new RegExp(log.redact.map((p) => `(?:${p})`).join('|'), 'i');
  const normal = new Map<string, string>();
  const matched = new Map<string, boolean>();
  const normalForm = (sql: string): string => {
    let n = normal.get(sql);
    if (n === undefined) {
      if (normal.size >= MEMO_MAX) normal.clear();
      n = normalizeSql(sql);
      normal.set(sql, n);
    }
    return n;
  };
  const hides = (sql: string | null): boolean => {
    if (all || sql === null) return true;
    let m = matched.get(sql);
    if (m === undefined) {
      if (matched.size >= MEMO_MAX) matched.clear();
      m = pattern!.test(sql);
      matched.set(sql, m);
    }
    return m;
  };
  return <R extends Redactable>(r: R): R => {
    if (!hides(r.sql)) return r;
    return { ...r, sql: r.sql === null ? null : normalForm(r.sql), redacted: true };
  };
}
