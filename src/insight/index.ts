/**
 * Query insight: digests (digests.ts), table heat (heat.ts) and the overall latency histogram,
 * fed by one record() per completed query.
 *
 * record() is on the hot path (tens of thousands of calls per second; the bench budget is 10% of
 * logging-on throughput for completion records plus digests), so it does: a Map lookup of the
 * text (a prepared or extended statement's text repeats), or else one normalising pass and a Map
 * lookup of the normal form; a few counter updates; two histogram records (no allocation); one
 * counter update per table the digest names, through references the digest holds. A new digest
 * costs a classification and, when full, a batch eviction every maxDigests/10 new digests.
 * Sorting, views, temperatures and recommendations happen only in queries() and tables().
 */
import { DigestTable, type DigestEntry, type DigestRecord } from './digests';
import { TableHeat, type TableRecord, type TableStats } from './heat';
import { LatencyHistogram } from './histogram';
import type { CompletionSample, DigestView, InsightOptions, Recommendation, TableView } from './types';

export type {
  CacheOutcome, CompletionSample, DigestKind, DigestView, InsightOptions, Recommendation, TableView, Temperature,
} from './types';
export { LatencyHistogram, type HistogramState } from './histogram';
export type { DigestRecord } from './digests';
export type { TableRecord } from './heat';
export { fingerprintId, normalizeSql } from './fingerprint';
export { rule, suggestedTtl } from './heat';

/** One process's digests or tables as plain data, with its eviction count: what the primary of --processes N merges. */
export interface InsightPart<R> {
  records: R[];
  evictions: number;
}

export class Insight {
  /** Every completion (hits included). */
  readonly latency = new LatencyHistogram();
  private readonly digests: DigestTable;
  private readonly heat: TableHeat;
  private done = 0;
  private failed = 0;

  constructor(opts: InsightOptions) {
    const maxDigests = Math.max(1, Math.floor(opts.maxDigests ?? 2000));
    this.digests = new DigestTable({
      maxDigests,
      memoSize: Math.max(2, Math.floor(opts.memoSize ?? 10_000)),
      maxQueryChars: Math.max(16, Math.floor(opts.maxQueryChars ?? 8192)),
    });
    this.heat = new TableHeat({
      maxTables: Math.max(1, Math.floor(opts.maxTables ?? 10_000)),
      cacheEnabled: opts.cacheEnabled,
      frozenAfterMs: opts.frozenAfterMs ?? 300_000,
      cacheTtlMs: opts.cacheTtlMs ?? 1000,
      minAccesses: opts.minAccesses ?? 100,
    });
  }

  /** One completed query: its digest, the heat of its tables, the overall histogram. */
  record(s: CompletionSample): void {
    const ms = s.ms;
    const now = s.now;
    this.done++;
    if (s.error) this.failed++;
    this.latency.record(ms);

    const e = this.digests.entryFor(s.sql, now);
    e.calls++;
    if (s.error) e.errors++;
    e.rows += s.rows;
    if (ms >= 0) e.totalMs += ms;
    e.hist.record(ms);
    e.lastSeen = now;
    const hit = s.flight === 'waiter' || s.cache === 'hit' || s.cache === 'l2';
    let saved = 0;
    if (hit) {
      e.cacheHits++;
      if (e.upstreamCalls > 0) {
        saved = e.upstreamMs / e.upstreamCalls - ms;
        if (!(saved > 0)) saved = 0;
        e.savedMs += saved;
      }
    } else {
      if (s.cache === 'miss') e.cacheMisses++;
      if (s.node !== undefined) e.ranOn(s.node);
      if (!s.error && ms >= 0) {
        e.upstreamCalls++;
        e.upstreamMs += ms;
      }
    }

    const names = e.tables;
    if (names.length === 0) return;
    const heat = e.heat ?? this.resolve(e);
    const read = e.kind === 'read';
    for (let i = 0; i < heat.length; i++) {
      let t = heat[i]!;
      if (t.evicted) t = heat[i] = this.heat.get(names[i]!);
      if (read) {
        t.reads++;
        if (e.cacheable) t.cacheableReads++;
      } else t.writes++;
      if (hit) t.cacheHits++;
      else if (s.cache === 'miss') t.cacheMisses++;
      else if (s.cache === 'bypass') t.cacheBypasses++;
      if (ms >= 0) t.totalMs += ms;
      t.savedMs += saved;
      t.lastAccess = now;
    }
  }

  private resolve(e: DigestEntry): TableStats[] {
    const heat = e.tables.map((n) => this.heat.get(n));
    e.heat = heat;
    return heat;
  }

  /** The top `limit` digests by total time, calls or mean time (ties: by id). */
  queries(sort: 'total' | 'calls' | 'mean', limit: number): DigestView[] {
    return this.digests.views(sort, limit);
  }

  /**
   * Every table (busiest first; the first `limit` when given) with its temperature as of `now`,
   * and the recommendations (highest priority first).
   */
  tables(now: number = Date.now(), limit?: number): { tables: TableView[]; recommendations: Recommendation[] } {
    const r = this.heat.report(now);
    if (limit !== undefined) r.tables = r.tables.slice(0, Math.max(0, limit));
    return r;
  }

  get digestCount(): number {
    return this.digests.size;
  }

  get digestEvictions(): number {
    return this.digests.evictions;
  }

  /** Added: tables held, and tables dropped by eviction. */
  get tableCount(): number {
    return this.heat.size;
  }

  get tableEvictions(): number {
    return this.heat.evictions;
  }

  get completed(): number {
    return this.done;
  }

  get errors(): number {
    return this.failed;
  }

  /** The digests as plain data (for /queries summed over processes). */
  digestPart(): InsightPart<DigestRecord> {
    return { records: this.digests.records(), evictions: this.digests.evictions };
  }

  /** The tables as plain data (for /tables summed over processes). */
  tablePart(): InsightPart<TableRecord> {
    return { records: this.heat.records(), evictions: this.heat.evictions };
  }

  /** Adds another process's digests: a digest seen by several processes adds up, as if one had seen it all. */
  absorbDigests(part: InsightPart<DigestRecord>): void {
    this.digests.absorb(part.records, part.evictions);
  }

  /** Adds another process's tables (their temperatures and advice are then those of the sum). */
  absorbTables(part: InsightPart<TableRecord>): void {
    this.heat.absorb(part.records, part.evictions);
  }

  /** Forgets everything: digests, tables, the histogram and the counters. */
  reset(): void {
    this.digests.reset();
    this.heat.reset();
    this.latency.reset();
    this.done = 0;
    this.failed = 0;
  }
}
