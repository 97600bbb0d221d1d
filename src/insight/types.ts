/** The shapes the insight modules take and give (re-exported by src/insight/index.ts). */

import type { CacheOutcome, FlightRole } from '../log/format';

/** How the cache answered a query (the query log's `cache=`). */
export type { CacheOutcome };

/** One completed query, as the proxy reports it to Insight.record(). */
export interface CompletionSample {
  /** The query text as the client sent it (a Q text or a Parse'd statement with $n). */
  sql: string;
  /** Duration in milliseconds (float). */
  ms: number;
  /** Rows from CommandComplete (0 when none). */
  rows: number;
  /** Completed with an ErrorResponse. */
  error: boolean;
  /** How the cache answered (undefined: not a cacheable read, or cache off). */
  cache: CacheOutcome | undefined;
  /**
   * Singleflight role. A waiter was answered without running upstream: it counts as a cache hit
   * for heat and time saved, whatever `cache` says.
   */
  flight: FlightRole | undefined;
  /** Date.now() at completion. */
  now: number;
  /** With several upstreams: the node (HOST:PORT) serving the session. */
  node?: string | undefined;
}

export type DigestKind = 'read' | 'write' | 'other';

export interface DigestView {
  /** fingerprintId(query): 16 hex chars. */
  id: string;
  /** The normalised text (cut with ' ...' past InsightOptions.maxQueryChars). */
  query: string;
  kind: DigestKind;
  /** Relation names (relationName()) it reads (kind 'read') or writes (kind 'write'). */
  tables: string[];
  calls: number;
  errors: number;
  rows: number;
  totalMs: number;
  minMs: number;
  maxMs: number;
  meanMs: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  /** ISO-8601. */
  firstSeen: string;
  lastSeen: string;
  /** Answered from the cache or by a singleflight leader (waiters). */
  cacheHits: number;
  cacheMisses: number;
  /** Added: estimated time the cache saved for this digest (see TableView.savedMs). */
  savedMs: number;
  /** With several upstreams: the executions that ran upstream (not cache hits), by the node that ran them. */
  nodes?: Record<string, number>;
}

export type Temperature = 'hot' | 'warm' | 'cold' | 'frozen';

export interface TableView {
  table: string;
  reads: number;
  writes: number;
  cacheHits: number;
  cacheMisses: number;
  /** hits / (hits + misses); null when no cache lookups. */
  hitRatio: number | null;
  /**
   * Estimated time saved by the cache: for each hit (or singleflight waiter), the mean duration
   * of the fingerprint's executions that ran upstream without error, minus the hit's own
   * duration (>= 0; 0 while the fingerprint has no such execution yet).
   */
  savedMs: number;
  /** Time of the queries that touched it (a query over several tables counts for each). */
  totalMs: number;
  temperature: Temperature;
  /** ISO-8601. */
  lastAccess: string;
}

export interface Recommendation {
  table: string;
  priority: 'high' | 'medium' | 'low';
  issue: string;
  advice: string;
}

export interface InsightOptions {
  /** Digests kept at most (default 2000). */
  maxDigests?: number;
  /** Tables kept at most (default 10000). */
  maxTables?: number;
  /** Whether the proxy runs with --cache (changes the recommendations). */
  cacheEnabled: boolean;
  /** A table without access for this long is 'frozen' (default 300000 ms). */
  frozenAfterMs?: number;
  /** Added: the proxy's cache-ttl, for the TTL a recommendation suggests (default 1000 ms). */
  cacheTtlMs?: number;
  /** Added: accesses a table needs before it gets a recommendation (default 100). */
  minAccesses?: number;
  /** Added: SQL texts remembered for the text -> digest shortcut (default 10000). */
  memoSize?: number;
  /** Added: longer normalised texts are shown cut and keyed by their id (default 8192 chars). */
  maxQueryChars?: number;
}
