/**
 * The comparison: each Q and E's outcome at capture (its `done` line) against its outcome on the
 * target, summed per query digest (src/insight/fingerprint.ts) into a ReplayReport. Memory is per
 * digest (histograms and a few examples), not per statement.
 */
import { LatencyHistogram } from '../insight/histogram';
import { fingerprintId, normalizeSql } from '../insight/fingerprint';
import type { ParseFailure, StatementResult } from './session-player';
import type { DigestReport, LatencySummary, Outcome, OutcomeChange } from './report-types';

/** Digests of SQL texts seen, memoised (a replayed workload repeats its texts); bounded. */
const MEMO_MAX = 50_000;
/** Changes kept per digest (the rest are counted into the last kind). */
const CHANGE_KINDS_MAX = 20;
/** Normalized SQL shown per digest. */
const SQL_MAX = 500;
/** A regression also needs the p50 to grow by this much. */
const REGRESSION_MIN_MS = 1;

interface DigestState {
  id: string;
  sql: string;
  original: number;
  replayed: number;
  before: LatencyHistogram;
  after: LatencyHistogram;
  changes: Map<string, OutcomeChange>;
}

/** How an outcome is shown in a change: "ok rows 3", "error 42703", "skipped". */
function describe(o: Outcome, showRows: boolean, showDigest: boolean): string {
  let s: string = o.status;
  if (o.sqlstate !== null && o.status === 'error') s += ' ' + o.sqlstate;
  if (showRows) s += ` rows ${o.rows}`;
  if (showDigest) s += ` rows digest ${o.rowsDigest ?? 'none'}`;
  return s;
}

export class Comparison {
  private readonly digests = new Map<string, DigestState>();
  private readonly memo = new Map<string, { id: string; sql: string }>();
  /** Replayed statements, those that failed on the target, those whose outcome changed. */
  replayed = 0;
  errors = 0;
  changed = 0;

  add(r: StatementResult): void {
    const d = this.digestOf(r.sql);
    const o = r.original;
    const p = r.replayed;
    if (o !== null) {
      d.original++;
      d.before.record(o.ms);
    }
    if (p !== null) {
      d.replayed++;
      this.replayed++;
      d.after.record(p.ms);
      if (p.status === 'error') this.errors++;
    }
    if (o === null || p === null) return;
    const statusDiffers = o.status !== p.status || (o.status === 'error' && o.sqlstate !== p.sqlstate);
    const rowsDiffer = !statusDiffers && o.status === 'ok' && o.rows !== p.rows;
    // A rows digest is compared only where capture recorded one.
    const digestDiffers = !statusDiffers && !rowsDiffer && o.rowsDigest !== undefined && o.rowsDigest !== p.rowsDigest;
    if (!statusDiffers && !rowsDiffer && !digestDiffers) return;
    this.changed++;
    this.change(d, describe(o, rowsDiffer, digestDiffers), describe(p, rowsDiffer, digestDiffers), r.conn, r.seq, p.message);
  }

  /** A Parse the target refused that succeeded at capture: a change of its statement's digest. */
  parseFailed(f: ParseFailure): void {
    this.errors++;
    this.changed++;
    this.change(this.digestOf(f.sql), 'parsed', `parse error ${f.sqlstate ?? ''}`.trim(), f.conn, f.seq, f.message);
  }

  private change(d: DigestState, before: string, after: string, conn: number, seq: number, message: string | undefined): void {
    const key = before + '\u0000' + after;
    let c = d.changes.get(key);
    if (c === undefined) {
      if (d.changes.size >= CHANGE_KINDS_MAX) return;
      c = { before, after, count: 0, example: { conn, seq }, message };
      d.changes.set(key, c);
    }
    c.count++;
  }

  private digestOf(sql: string | null): DigestState {
    const text = sql ?? '(SQL not known)';
    let m = this.memo.get(text);
    if (m === undefined) {
      const normal = sql === null ? text : normalizeSql(sql);
      m = { id: fingerprintId(normal), sql: normal.length > SQL_MAX ? normal.slice(0, SQL_MAX) + '...' : normal };
      if (this.memo.size >= MEMO_MAX) this.memo.clear();
      this.memo.set(text, m);
    }
    let d = this.digests.get(m.id);
    if (d === undefined) {
      d = { id: m.id, sql: m.sql, original: 0, replayed: 0, before: new LatencyHistogram(), after: new LatencyHistogram(), changes: new Map() };
      this.digests.set(m.id, d);
    }
    return d;
  }

  /** Every digest: changed and regressed ones first, then by statement count. */
  report(slower: number): DigestReport[] {
    const out: DigestReport[] = [];
    for (const d of this.digests.values()) {
      const before = summary(d.before);
      const after = summary(d.after);
      const ratioP50 = ratio(before?.p50, after?.p50);
      const ratioP99 = ratio(before?.p99, after?.p99);
      const regression = ratioP50 !== null && ratioP50 >= slower && after!.p50 - before!.p50 >= REGRESSION_MIN_MS;
      const changes = [...d.changes.values()].sort((a, b) => b.count - a.count);
      out.push({ id: d.id, sql: d.sql, original: d.original, replayed: d.replayed, changes, before, after, ratioP50, ratioP99, regression });
    }
    const rank = (r: DigestReport): number => (r.changes.length > 0 ? 2 : 0) + (r.regression ? 1 : 0);
    return out.sort((a, b) => rank(b) - rank(a) || Math.max(b.original, b.replayed) - Math.max(a.original, a.replayed) || a.id.localeCompare(b.id));
  }
}

function summary(h: LatencyHistogram): LatencySummary | null {
  if (h.count === 0) return null;
  return { count: h.count, p50: h.quantile(0.5), p99: h.quantile(0.99) };
}

function ratio(before: number | undefined, after: number | undefined): number | null {
  if (before === undefined || after === undefined || !(before > 0)) return null;
  return after / before;
}
