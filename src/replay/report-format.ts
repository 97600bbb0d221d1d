/**
 * What the text and HTML reports (report-text.ts, report-html.ts) share: numbers written for
 * people, a statement cut to one line, and the orders the sections list digests in, so that both
 * renderings say the same thing in the same order.
 */

import { TEXT_UNSAFE_ALL } from '../log/escape';
import type { DigestReport, LatencySummary, OutcomeChange } from './report-types';

/** Digits grouped by thousands (1,234,567), rounded to an integer; '–' when not a number. */
export function fmtCount(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const s = String(Math.round(Math.abs(n))).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return n < 0 && Math.round(n) !== 0 ? '-' + s : s;
}

/**
 * Milliseconds, without the unit, to about three significant digits (0.125, 1.20, 12.3, 843,
 * 1,204): a replay compares sub-millisecond reads with second-long reports, and a fixed number of
 * decimals would show the first as 0.00 or the second with noise digits.
 */
export function fmtMs(v: number): string {
  if (!Number.isFinite(v) || v < 0) return '–';
  if (v === 0) return '0';
  if (v < 0.001) return '<0.001';
  // Below 999.5 toPrecision(3) rounds to at most 999 (at 999.5 it would write 1.00e+3), and a
  // value that rounds up to the next decade gets one decimal fewer (9.999 is 10.0, not 10.00).
  if (v < 999.5) return v.toPrecision(3);
  return fmtCount(v);
}

/** A wall-clock length: 850 ms, 12.3 s, 5 min 3 s, 2 h 5 min. */
export function fmtDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '–';
  if (ms < 1000) return `${fmtMs(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** A rate per second: 1,234 above 100, else one decimal (12.5), so a slow replay is not shown as 0. */
export function fmtRate(v: number): string {
  if (!Number.isFinite(v) || v < 0) return '–';
  return v >= 100 ? fmtCount(v) : v.toFixed(1);
}

/** after / before as a factor: 2.35×, 12.4×, 150×; '–' when there is none. */
export function fmtRatio(r: number | null): string {
  if (r === null || !Number.isFinite(r)) return '–';
  if (r < 10) return `${r.toFixed(2)}×`;
  if (r < 100) return `${r.toFixed(1)}×`;
  return `${fmtCount(r)}×`;
}

/** "--speed max" or "2×" (the factor the original timing was divided by). */
export function fmtSpeed(speed: string): string {
  return /^\d+(\.\d+)?$/.test(speed) ? `${speed}×` : speed;
}

/** A latency summary's p50 or p99, with its unit, '–' when the side has none. */
export function latencyMs(s: LatencySummary | null, which: 'p50' | 'p99'): string {
  if (s === null || s.count === 0) return '–';
  const f = fmtMs(s[which]);
  return f === '–' ? f : `${f} ms`;
}

function controlEscape(c: string): string {
  const code = c.charCodeAt(0);
  return code < 0x100 ? '\\x' + code.toString(16).padStart(2, '0') : '\\u' + code.toString(16).padStart(4, '0');
}

/**
 * Text from a log (SQL, an error message, a file name) on one line and safe for a terminal:
 * whitespace runs (newlines included) become one space, and what escape.ts lists as unsafe
 * (escape sequences that move the cursor or recolour it, C1, bidi controls) is shown as \xHH or
 * \uHHHH. Backslashes stay as they are: this is for reading, not for parsing back.
 */
export function oneLine(s: string): string {
  return visible(s.replace(/[\t\n\v\f\r \u0085\u00a0\u2028\u2029]+/g, ' ').trim());
}

/**
 * The same escapes as oneLine() with tabs and newlines kept, for the HTML report, where a
 * statement may keep its lines: a bidi control in the SQL would otherwise reorder what the page
 * shows ("Trojan Source"), and the page should show what the log holds.
 */
export function visible(s: string): string {
  return s.replace(TEXT_UNSAFE_ALL, (c) => (c === '\\' || c === '\n' || c === '\t' ? c : controlEscape(c)));
}

/** `oneLine(s)` cut to at most `max` characters, ending in … when cut. */
export function cut(s: string, max: number): string {
  const l = oneLine(s);
  // Array.from: never split a surrogate pair (an emoji in a comment) in two.
  const chars = Array.from(l);
  return chars.length <= max ? l : chars.slice(0, Math.max(1, max - 1)).join('') + '…';
}

/** How many statements of a digest changed outcome. */
export function changedCount(d: DigestReport): number {
  let n = 0;
  for (const c of d.changes) n += c.count;
  return n;
}

/** Digests with a changed outcome, most changed statements first (then by id, for a stable order). */
export function changedDigests(digests: readonly DigestReport[]): DigestReport[] {
  return digests
    .filter((d) => d.changes.length > 0)
    .sort((a, b) => changedCount(b) - changedCount(a) || cmp(a.id, b.id));
}

/** A digest's changes, the most frequent first. */
export function changesInOrder(d: DigestReport): OutcomeChange[] {
  return [...d.changes].sort((a, b) => b.count - a.count || cmp(a.before, b.before) || cmp(a.after, b.after));
}

function p50Growth(d: DigestReport): number {
  return d.before && d.after ? d.after.p50 - d.before.p50 : 0;
}

/**
 * The regressions, the largest p50 ratio first: the ratio is what the --slower threshold judged,
 * so it is what an operator compares. Ties: the larger growth in ms, then the id.
 */
export function regressions(digests: readonly DigestReport[]): DigestReport[] {
  return digests
    .filter((d) => d.regression)
    .sort((a, b) => (b.ratioP50 ?? -Infinity) - (a.ratioP50 ?? -Infinity) || p50Growth(b) - p50Growth(a) || cmp(a.id, b.id));
}

/** The `limit` digests seen most often in the log (then most replayed, then by id). */
export function topByCount(digests: readonly DigestReport[], limit: number): DigestReport[] {
  return [...digests].sort((a, b) => b.original - a.original || b.replayed - a.replayed || cmp(a.id, b.id)).slice(0, limit);
}

/** The not-replayable reasons, the most frequent first. */
export function notReplayableInOrder(reasons: Record<string, number>): [string, number][] {
  return Object.entries(reasons)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1] || cmp(a[0], b[0]));
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
