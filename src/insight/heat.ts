/**
 * Table heat, after the seed's cache heatmap (shared/seeds/004): per table, reads, writes, cache
 * hits and misses, time saved by the cache, a temperature, and plain-language recommendations.
 *
 * ## Temperature (computed when asked, never in record())
 *
 * - frozen: no access for frozenAfterMs (default 5 minutes).
 * - The others are ranked by accesses (reads + writes since the start or the last reset). With
 *   N of them and `above` = how many have strictly more accesses than a table:
 *   hot when above < 10% of N, warm when above < 50% of N, else cold. So the busiest table is
 *   always hot (a single table is hot), equal tables share the better class, and with 10 tables
 *   of distinct counts 1 is hot, 4 are warm and 5 are cold.
 *
 * ## Recommendations (only for tables with at least minAccesses accesses, default 100)
 *
 * read-mostly = writes < 5% of accesses; write-heavy = writes >= 30%; "cacheable" reads are those
 * the classifier lets the cache answer (so not catalog reads, FOR UPDATE, volatile functions).
 *
 * With the cache on:
 * - high: hot, read-mostly, mostly cacheable reads, cache lookups, hit ratio < 50%: raise its
 *   TTL with a cache rule (the suggested TTL is max(5 s, 5 x cache-ttl)).
 * - medium: hot or warm, read-mostly, mostly cacheable reads, and more of them bypass the cache
 *   than are looked up: they run in transaction blocks or in sessions that changed settings.
 * - write-heavy with cache lookups: stop caching it with a `never` rule; high when the hit ratio
 *   is under 20%, else medium.
 * - low (any number of accesses): frozen but its answers were stored (cache misses): a long TTL
 *   rule for it only holds memory (the seed's "cold data in cache").
 * With the cache off:
 * - high: hot, read-mostly, mostly cacheable reads: enable --cache (optionally for this table
 *   only: cache-ttl 0 plus a rule). Nothing else: the other advice is about the cache.
 * Sorted by priority, then by the table's accesses (busiest first), then by name.
 */
import { kthSmallest } from './select';
import type { Recommendation, TableView, Temperature } from './types';
import { usRound } from './units';

/** Per-table counters, updated by Insight.record() through the digests that name the table. */
export class TableStats {
  reads = 0;
  writes = 0;
  cacheHits = 0;
  cacheMisses = 0;
  cacheBypasses = 0;
  /** Reads by statements the cache may answer. */
  cacheableReads = 0;
  savedMs = 0;
  totalMs = 0;
  lastAccess = 0;
  /** Dropped by eviction: digests holding it must look the name up again. */
  evicted = false;

  constructor(readonly name: string) {}

  get accesses(): number {
    return this.reads + this.writes;
  }
}

/** A table's counters as plain data, for the primary of --processes N to merge. */
export interface TableRecord {
  name: string;
  reads: number;
  writes: number;
  cacheHits: number;
  cacheMisses: number;
  cacheBypasses: number;
  cacheableReads: number;
  savedMs: number;
  totalMs: number;
  lastAccess: number;
}

export interface HeatOptions {
  maxTables: number;
  cacheEnabled: boolean;
  frozenAfterMs: number;
  cacheTtlMs: number;
  minAccesses: number;
}

export class TableHeat {
  private readonly byName = new Map<string, TableStats>();
  /** Tables dropped by eviction since the start (or reset). */
  evictions = 0;

  constructor(private readonly opts: HeatOptions) {}

  get size(): number {
    return this.byName.size;
  }

  /** The stats of a table, created if new; when full, the tenth with the fewest accesses go first. */
  get(name: string): TableStats {
    let t = this.byName.get(name);
    if (t === undefined) {
      if (this.byName.size >= this.opts.maxTables) this.evict();
      t = new TableStats(name);
      this.byName.set(name, t);
    }
    return t;
  }

  /** Like the digests' eviction (a quickselect, no sort); among equals, the first seen go first. */
  private evict(): void {
    const n = this.byName.size;
    const k = Math.min(n, Math.max(1, Math.ceil(this.opts.maxTables / 10)));
    const acc = new Float64Array(n);
    let i = 0;
    for (const t of this.byName.values()) acc[i++] = t.accesses;
    const threshold = kthSmallest(acc, k - 1);
    let below = 0;
    for (const t of this.byName.values()) if (t.accesses < threshold) below++;
    let ties = k - below;
    for (const [name, t] of this.byName) {
      if (t.accesses < threshold || (t.accesses === threshold && ties-- > 0)) {
        t.evicted = true;
        this.byName.delete(name);
        this.evictions++;
      }
    }
  }

  /** Every table with its temperature (busiest first), and the recommendations. */
  report(now: number): { tables: TableView[]; recommendations: Recommendation[] } {
    const all = [...this.byName.values()].sort((a, b) => b.accesses - a.accesses || cmp(a.name, b.name));
    const temps = new Map<TableStats, Temperature>();
    const live = all.filter((t) => now - t.lastAccess <= this.opts.frozenAfterMs);
    const n = live.length;
    let above = 0;
    for (let i = 0; i < n; i++) {
      if (i > 0 && live[i]!.accesses < live[i - 1]!.accesses) above = i;
      temps.set(live[i]!, above < 0.1 * n ? 'hot' : above < 0.5 * n ? 'warm' : 'cold');
    }
    const tables: TableView[] = [];
    const recs: Array<Recommendation & { order: number }> = [];
    all.forEach((t, order) => {
      const temperature = temps.get(t) ?? 'frozen';
      const lookups = t.cacheHits + t.cacheMisses;
      tables.push({
        table: t.name,
        reads: t.reads,
        writes: t.writes,
        cacheHits: t.cacheHits,
        cacheMisses: t.cacheMisses,
        hitRatio: lookups === 0 ? null : t.cacheHits / lookups,
        savedMs: usRound(t.savedMs),
        totalMs: usRound(t.totalMs),
        temperature,
        lastAccess: new Date(t.lastAccess).toISOString(),
      });
      for (const r of this.advise(t, temperature, now)) recs.push({ ...r, order });
    });
    recs.sort((a, b) => PRIORITY[a.priority] - PRIORITY[b.priority] || a.order - b.order);
    return { tables, recommendations: recs.map(({ order: _, ...r }) => r) };
  }

  private advise(t: TableStats, temp: Temperature, now: number): Recommendation[] {
    const out: Recommendation[] = [];
    const acc = t.accesses;
    const lookups = t.cacheHits + t.cacheMisses;
    const writeShare = acc === 0 ? 0 : t.writes / acc;
    const readMostly = writeShare < 0.05;
    const cacheableMostly = t.cacheableReads > 0 && t.cacheableReads >= 0.5 * t.reads;
    const ttl = suggestedTtl(this.opts.cacheTtlMs);
    const enough = acc >= this.opts.minAccesses;
    const shares = `${pct(writeShare)} of ${acc} accesses are writes`;
    if (!this.opts.cacheEnabled) {
      if (enough && temp === 'hot' && readMostly && cacheableMostly) {
        out.push({
          table: t.name,
          priority: 'high',
          issue: `hot read-mostly table (${shares}) and the cache is off`,
          advice: `Enable the cache (--cache): repeated reads of ${t.name} would be answered from memory for ` +
            `cache-ttl ms, and writes through pgscribe invalidate them at once. To cache only this table, set ` +
            `cache-ttl to 0 and add the rule ${rule(t.name, ttl)} to cache-rules.`,
        });
      }
      return out;
    }
    const hitRatio = lookups === 0 ? null : t.cacheHits / lookups;
    if (enough && temp === 'hot' && readMostly && cacheableMostly && hitRatio !== null && hitRatio < 0.5) {
      out.push({
        table: t.name,
        priority: 'high',
        issue: `hot read-mostly table with a low cache hit ratio (${pct(hitRatio)} of ${lookups} lookups; ${shares})`,
        advice: `Raise its TTL with a cache rule, e.g. add ${rule(t.name, ttl)} to cache-rules (the first ` +
          `matching rule wins). Writes through pgscribe still invalidate its answers at once; the TTL only ` +
          `bounds how stale an answer can get after a write that bypasses the proxy.`,
      });
    }
    if (enough && (temp === 'hot' || temp === 'warm') && readMostly && cacheableMostly && t.cacheBypasses > lookups) {
      out.push({
        table: t.name,
        priority: 'medium',
        issue: `${pct(t.cacheBypasses / (t.cacheBypasses + lookups))} of its cacheable reads bypass the cache`,
        advice: `pgscribe never answers from the cache inside a transaction block or in a session that ran SET, ` +
          `SET ROLE, LISTEN or CREATE TEMP. Run reads of ${t.name} in autocommit mode, outside BEGIN ... COMMIT, ` +
          `and keep session settings in the connection string (options=-c ...) instead of SET.`,
      });
    }
    if (enough && writeShare >= 0.3 && lookups > 0) {
      out.push({
        table: t.name,
        priority: hitRatio !== null && hitRatio < 0.2 ? 'high' : 'medium',
        issue: `write-heavy table (${shares}) with a cache hit ratio of ${pct(hitRatio ?? 0)}`,
        advice: `Stop caching it: each write invalidates its cached answers, so storing them costs memory and ` +
          `time for few hits. Add ${rule(t.name, 'never')} first in cache-rules.`,
      });
    }
    if (temp === 'frozen' && t.cacheMisses > 0) {
      const idle = Math.round((now - t.lastAccess) / 60_000);
      out.push({
        table: t.name,
        priority: 'low',
        issue: `no access for ${idle} min, but its answers were cached`,
        advice: `If a cache rule gives ${t.name} a TTL much longer than cache-ttl, shorten it: answers for an ` +
          `idle table only hold cache memory until they expire or the LRU drops them.`,
      });
    }
    return out;
  }

  /** Every table's counters as plain data. */
  records(): TableRecord[] {
    const out: TableRecord[] = [];
    for (const t of this.byName.values()) {
      out.push({
        name: t.name, reads: t.reads, writes: t.writes, cacheHits: t.cacheHits, cacheMisses: t.cacheMisses,
        cacheBypasses: t.cacheBypasses, cacheableReads: t.cacheableReads, savedMs: t.savedMs, totalMs: t.totalMs, lastAccess: t.lastAccess,
      });
    }
    return out;
  }

  /** Adds another heat's tables (its records()); no eviction (a merged heat serves one answer). */
  absorb(records: readonly TableRecord[], evictions: number): void {
    this.evictions += evictions;
    for (const r of records) {
      let t = this.byName.get(r.name);
      if (t === undefined) {
        t = new TableStats(r.name);
        this.byName.set(r.name, t);
      }
      t.reads += r.reads;
      t.writes += r.writes;
      t.cacheHits += r.cacheHits;
      t.cacheMisses += r.cacheMisses;
      t.cacheBypasses += r.cacheBypasses;
      t.cacheableReads += r.cacheableReads;
      t.savedMs += r.savedMs;
      t.totalMs += r.totalMs;
      t.lastAccess = Math.max(t.lastAccess, r.lastAccess);
    }
  }

  reset(): void {
    for (const t of this.byName.values()) t.evicted = true;
    this.byName.clear();
    this.evictions = 0;
  }
}

const PRIORITY = { high: 0, medium: 1, low: 2 } as const;

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}

/** A TTL worth suggesting: five times the current one, at least 5 s, at most a day. */
export function suggestedTtl(cacheTtlMs: number): number {
  return Math.min(86_400_000, Math.max(5000, 5 * cacheTtlMs));
}

/**
 * A cache-rules entry (src/config.ts: {"pattern": REGEX, "flags": "i", "ttl": MS | "never"}, flags
 * "i" by default) that matches statements naming the table. The pattern is matched against the
 * SQL text as sent, so an unquoted name is matched as a word in any case, a quoted one exactly
 * (flags ""), quotes included.
 */
export function rule(table: string, ttl: number | 'never'): string {
  const plain = /^[a-z_][a-z0-9_$]*$/.test(table);
  const esc = table.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // \b after a trailing $ would need a word character next: a lookahead says "no name character".
  const pattern = plain ? `\\b${esc}${table.endsWith('$') ? '(?![\\w$])' : '\\b'}` : esc;
  return `{"pattern": ${JSON.stringify(pattern)}${plain ? '' : ', "flags": ""'}, "ttl": ${JSON.stringify(ttl)}}`;
}
