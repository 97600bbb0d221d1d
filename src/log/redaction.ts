/**
 * Lines that must hold no data values (log-redact, log-sql normalized). A statement whose SQL a
 * log-redact pattern matches, or every statement with log-sql normalized, is logged with its
 * Bind parameters as a count (`params=2:redacted`) and its SQL in the digest normal form, where
 * literals are `$n` (src/insight/fingerprint.ts, the form /queries shows). A Bind or Execute
 * whose statement pgscribe never saw (sql unknown) cannot be matched, so its values are hidden
 * whenever any pattern is set: when unsure, hide.
 */
import { normalizeSqlCounting } from '../insight/fingerprint';

/** Normal forms of this many distinct texts without literals are kept, then forgotten. */
const MEMO_MAX = 2048;

export interface RedactionSettings {
  redact: readonly string[];
  sqlForm: 'text' | 'normalized';
}

/**
 * What a line of this SQL may show: `undefined` when it is not hidden, else the SQL to print (its
 * normal form; null for an unknown statement). Null when nothing is ever hidden (no patterns,
 * text form). format.ts builds the hidden record.
 */
export function redactionOf(log: RedactionSettings): ((sql: string | null) => string | null | undefined) | null {
  const all = log.sqlForm === 'normalized';
  if (!all && log.redact.length === 0) return null;
  const pattern = log.redact.length === 0 ? null : new RegExp(log.redact.map((p) => `(?:${p})`).join('|'), 'i');
  // Normal forms of texts without literals (prepared statements: their Bind and Execute lines
  // repeat the text); a text with literals is data and rarely repeats, so it is not kept.
  const shapes = new Map<string, string>();
  const normalForm = (sql: string): string => {
    const known = shapes.get(sql);
    if (known !== undefined) return known;
    const n = normalizeSqlCounting(sql);
    if (n.literals === 0) {
      if (shapes.size >= MEMO_MAX) shapes.clear();
      shapes.set(sql, n.text);
    }
    return n.text;
  };
  const hides = (sql: string | null): boolean => all || sql === null || shapes.has(sql) || pattern!.test(sql);
  return (sql) => (hides(sql) ? (sql === null ? null : normalForm(sql)) : undefined);
}
