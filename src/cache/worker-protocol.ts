/**
 * The messages between WorkerCacheLayer (event loop thread) and a cache worker (one CacheShard per
 * worker thread).
 *
 * Each postMessage carries a batch: one flat array of requests (or of replies), each a numeric tag
 * followed by a fixed number of fields. Batches, because a message costs the event loop thread
 * far more than the lookup in it: `make bench-cache`, hit path, 1 worker, 64 clients: ~3.2 µs of
 * event loop time per lookup with a message each way, ~1.5 µs batched. Flat, because structured
 * clone pays per object (in a bare postMessage test: 64 lookups as one flat array ~0.7 µs each,
 * as 64 nested arrays ~1 µs, as 64 messages ~2.6 µs). The layer collects a shard's requests until
 * setImmediate (the end of the current poll phase: all the socket reads of one loop iteration);
 * the worker answers a whole batch with one batch.
 *
 * Ordering is the whole protocol. Batches keep the calls' order and a MessagePort delivers in
 * posting order, so a shard handles requests in the order the layer was called (an invalidate
 * before a lookup is decided before it), and it answers the requests that expect a reply (lookup,
 * complete, flush, counters) in that same order: the layer matches replies to its FIFO of pending
 * requests instead of sending ids. Only `State` comes unasked, and it matches nothing.
 */

/** Event loop thread -> worker, with the fields that follow each tag. */
export const Op = {
  /** key, db, tables, flightId, waiterId -> one verdict reply. flightId is used if it leads. */
  Lookup: 0,
  /**
   * flightId, bytes | null, hasParse, ttlMs, bypassMs -> Done. bytes only when to be stored: a
   * Uint8Array over a SharedArrayBuffer of its own, which the shard keeps.
   */
  Complete: 1,
  /** flightId, waiterId: no reply. */
  Leave: 2,
  /** db, tables | null: no reply. */
  Invalidate: 3,
  /** -> Flushed. */
  Flush: 4,
  /** -> Counters: a barrier, and the final figures at close. */
  Counters: 5,
} as const;

/** Worker -> event loop thread, with the fields that follow each tag. */
export const Reply = {
  /** bytes (a view of the entry's SharedArrayBuffer: its own memory, not a copy), hasParse */
  Hit: 0,
  /** (none): the candidate flightId of the lookup names the flight. */
  Lead: 1,
  /** flightId */
  Wait: 2,
  /** (none) */
  Bypass: 3,
  /** waiterIds: the flight's waiters, in arrival order. */
  Done: 4,
  /** removed: how many entries the shard dropped. */
  Flushed: 5,
  /** ShardState */
  Counters: 6,
  /** ShardState: unasked, at the end of a batch that changed the shard-side figures. */
  State: 7,
} as const;

/**
 * The figures only the shard knows, in this order. The layer counts the others (hits, misses,
 * leaders, waiters, bypasses, invalidations, reruns) itself from the verdicts and calls.
 */
export const SHARD_STATE_KEYS = ['stores', 'stale_skips', 'evictions', 'expirations', 'invalidated_entries', 'entries', 'bytes'] as const;
export type ShardState = number[];

/** What a worker needs to build its shard (workerData). */
export interface WorkerSetup {
  cache: boolean;
  singleflight: boolean;
  maxBytes: number;
  maxEntries: number;
}
