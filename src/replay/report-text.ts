/**
 * The replay report for a terminal (what `pgscribe replay` prints on stdout): plain text, no
 * colour codes, so that it reads the same in a pipe, a CI log or a ticket. Everything taken from
 * the log (SQL, messages, file names) goes through oneLine(): a statement a user wrote cannot move
 * the cursor or break the layout.
 */

import {
  changedCount,
  changedDigests,
  changesInOrder,
  cut,
  fmtCount,
  fmtDuration,
  fmtMs,
  fmtRate,
  fmtRatio,
  fmtSpeed,
  latencyMs,
  notReplayableInOrder,
  oneLine,
  regressions,
  topByCount,
} from './report-format';
import type { DigestReport, LatencySummary, ReplayReport } from './report-types';

/** How many digests the count table lists: enough to see the workload's shape on one screen. */
export const TEXT_TOP_DIGESTS = 10;
/** "SQL cut to one line of about 100 characters". */
const SQL_WIDTH = 100;
/** The SQL column at the end of a table row: the row should fit 160 columns. */
const SQL_TAIL_WIDTH = 60;
const MESSAGE_WIDTH = 200;

export function renderTextReport(r: ReplayReport): string {
  const out: string[] = [];
  header(r, out);
  out.push('');
  changes(r, out);
  out.push('');
  latency(r, out);
  out.push('');
  top(r, out);
  return out.join('\n') + '\n';
}

function header(r: ReplayReport, out: string[]): void {
  const s = r.sessions;
  const st = r.statements;
  const rows: [string, string][] = [
    ['logs', r.logs.length === 0 ? 'none' : r.logs.map(oneLine).join(', ')],
    ['target', oneLine(r.target)],
    ['speed', fmtSpeed(oneLine(r.speed))],
    ['duration', `${fmtDuration(r.durationMs)} (${oneLine(r.startedAt)} to ${oneLine(r.finishedAt)})`],
    ['sessions', `${fmtCount(s.total)} in the log: ${fmtCount(s.replayed)} replayed, ${fmtCount(s.failed)} failed, ${fmtCount(s.cut)} cut`],
  ];
  if (s.failed > 0 && s.firstFailure !== undefined) rows.push(['first failure', cut(s.firstFailure, MESSAGE_WIDTH)]);
  rows.push(
    ['statements', `${fmtCount(st.replayed)} replayed, ${fmtCount(st.errors)} errors, ${fmtCount(st.changed)} changed`],
    ['rate', `${fmtRate(st.rate)} statements/s`],
  );
  const reasons = notReplayableInOrder(st.notReplayable);
  if (reasons.length === 0) rows.push(['not replayable', 'none']);
  else reasons.forEach(([why, n], i) => rows.push([i === 0 ? 'not replayable' : '', `${fmtCount(n)} ${oneLine(why)}`]));
  rows.push(['skipped writes', `${fmtCount(st.skippedWrites)}${st.skippedWrites > 0 ? ' (--read-only)' : ''}`]);

  out.push('pgscribe replay report');
  const w = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) out.push(`  ${k.padEnd(w)}  ${v}`);
}

function changes(r: ReplayReport, out: string[]): void {
  const ds = changedDigests(r.digests);
  if (ds.length === 0) {
    out.push('Changed outcomes: none');
    return;
  }
  const total = ds.reduce((n, d) => n + changedCount(d), 0);
  out.push(`Changed outcomes: ${fmtCount(total)} statements in ${fmtCount(ds.length)} ${ds.length === 1 ? 'digest' : 'digests'}`);
  for (const d of ds) {
    out.push(`  ${oneLine(d.id)}  ×${fmtCount(changedCount(d))}  ${cut(d.sql, SQL_WIDTH)}`);
    for (const c of changesInOrder(d)) {
      out.push(`    ${oneLine(c.before)} -> ${oneLine(c.after)} ×${fmtCount(c.count)} (example conn=${oneLine(String(c.example.conn))} seq=${oneLine(String(c.example.seq))})`);
      if (c.message !== undefined && c.message !== '') out.push(`      ${cut(c.message, MESSAGE_WIDTH)}`);
    }
  }
}

/** "0.420 → 12.5 ms": both sides, one unit. */
function beforeAfter(b: LatencySummary | null, a: LatencySummary | null, which: 'p50' | 'p99'): string {
  const side = (s: LatencySummary | null): string => (s === null || s.count === 0 ? '–' : fmtMs(s[which]));
  return `${side(b)} → ${side(a)} ms`;
}

function latency(r: ReplayReport, out: string[]): void {
  const ds = regressions(r.digests);
  const rule = `p50 at least ${oneLine(String(r.slowerThreshold))}× and 1 ms slower`;
  if (ds.length === 0) {
    out.push(`Latency regressions (${rule}): none`);
    return;
  }
  out.push(`Latency regressions (${rule}): ${fmtCount(ds.length)}`);
  table(
    out,
    ['digest', 'p50 before → after', 'p99 before → after', 'ratio', 'sql'],
    ds.map((d) => [oneLine(d.id), beforeAfter(d.before, d.after, 'p50'), beforeAfter(d.before, d.after, 'p99'), fmtRatio(d.ratioP50), cut(d.sql, SQL_TAIL_WIDTH)]),
    [false, true, true, true, false],
  );
}

function top(r: ReplayReport, out: string[]): void {
  if (r.digests.length === 0) {
    out.push('Digests by count: none');
    return;
  }
  const ds = topByCount(r.digests, TEXT_TOP_DIGESTS);
  out.push(`Digests by count: top ${ds.length} of ${fmtCount(r.digests.length)}`);
  table(
    out,
    ['digest', 'original', 'replayed', 'p50 before', 'p50 after', 'sql'],
    ds.map((d: DigestReport) => [
      oneLine(d.id) + (d.regression ? ' !' : ''),
      fmtCount(d.original),
      fmtCount(d.replayed),
      latencyMs(d.before, 'p50'),
      latencyMs(d.after, 'p50'),
      cut(d.sql, SQL_TAIL_WIDTH),
    ]),
    [false, true, true, true, true, false],
  );
  if (ds.some((d) => d.regression)) out.push('  (! a latency regression)');
}

/** Columns padded to their widest cell; numbers right-aligned; the last column is not padded. */
function table(out: string[], head: string[], rows: string[][], right: boolean[]): void {
  const all = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...all.map((row) => width(row[i] ?? ''))));
  for (const row of all) {
    const cells = row.map((c, i) => {
      if (i === row.length - 1) return c;
      const pad = ' '.repeat(Math.max(0, widths[i]! - width(c)));
      return right[i] ? pad + c : c + pad;
    });
    out.push(('  ' + cells.join('  ')).trimEnd());
  }
}

/** Characters as a terminal counts them, near enough (code points, not UTF-16 units). */
function width(s: string): number {
  return Array.from(s).length;
}
