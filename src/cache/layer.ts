/**
 * The cache/singleflight layer as the clients see it: one interface, two implementations that
 * pass the same tests. LocalCacheLayer runs one CacheShard in the event loop thread and answers
 * synchronously; the worker-thread layer (worker-layer.ts) splits keys over shards in
 * worker_threads and answers with messages. Clients never assume which: every answer comes
 * through a callback, maybe before lookup() returns.
 */
import { CacheShard, zeroCounters, type Counters, type ShardOptions, type Verdict } from './shard';

/** A cacheable request, keyed by everything that can change the bytes of its answer. */
export interface CacheRequest {
  key: string;
  /** Database of the session: invalidations are per database. */
  db: string;
  /** Relation names the answer depends on. */
  tables: readonly string[];
  /**
   * For the shared (L2) cache: the session's identity as every pgscribe instance computes it
   * (database, user, startup and reported parameters), where `key` starts with a per-process id.
   * Absent: the request is not shared between instances.
   */
  scope?: string;
  /** The request's shape, to check an answer read from the shared cache (judgeResponse). */
  kind?: 'Q' | 'X';
  hasDescribe?: boolean;
  /** How long a stored answer may be served. */
  ttlMs?: number;
}

/** An answer as a leader's client received it, to replay to another client. */
export interface SharedAnswer {
  bytes: Buffer;
  /** The bytes start with ParseComplete (the leader's request had a Parse). */
  hasParse: boolean;
}

/** The side of a Client the layer talks to. */
export interface FlightClient {
  /** Unique among clients: the waiter id. */
  readonly id: number;
  /** What lookup() decided. For 'lead', complete(flightId) must follow, whatever happens. */
  onVerdict(v: Verdict, flightId: number): void;
  /** The flight this client waited for is over: its answer, or null to run the query itself. */
  onFlightDone(answer: SharedAnswer | null): void;
}

export interface CacheLayer {
  lookup(req: CacheRequest, client: FlightClient): void;
  /**
   * The leader of flightId is done. `answer` goes to the waiters (null: they run the query
   * themselves); it is also stored when storeTtlMs > 0. bypassMs > 0: the answer was too large
   * to share, send this key straight upstream for that long.
   */
  complete(flightId: number, answer: SharedAnswer | null, storeTtlMs: number, bypassMs: number): void;
  /** A waiting client gives up (it went away, or was cancelled). */
  leave(flightId: number, client: FlightClient): void;
  /**
   * A client whose verdict is still pending gives up (cancelled, or gone). True: the layer
   * forgets the lookup and will not call back for it. False: the verdict will still come.
   */
  abandon(client: FlightClient): boolean;
  /**
   * A write committed in db: tables (relation names) changed, null: anything may have. Returns
   * true when the invalidation is being shared with other pgscribe instances: `shared` runs once
   * they can no longer read what the write changed (the caller may hold the commit's answer until
   * then). False: it took effect at once (or cannot be shared now); `shared` is not called.
   */
  invalidate(db: string, tables: readonly string[] | null, shared?: () => void): boolean;
  /** Drop every stored answer. */
  flush(): void;
  /** Counters so far (worker-side ones as of their last message). */
  counters(): Record<string, number>;
  /** Stop (worker threads exit); resolves with the final counters. */
  close(): Promise<Record<string, number>>;
}

export interface LayerOptions extends ShardOptions {
  /** 0: LocalCacheLayer; N: N worker threads. */
  workers: number;
}

/** The layer in the event loop thread: a shard and the clients waiting on its flights. */
export class LocalCacheLayer implements CacheLayer {
  private readonly shard: CacheShard;
  private readonly waiting = new Map<number, FlightClient>();
  private nextFlight = 1;
  /** Waiters sent to run the query themselves because their leader failed. */
  private reruns = 0;

  constructor(opts: ShardOptions) {
    this.shard = new CacheShard(opts);
  }

  lookup(req: CacheRequest, client: FlightClient): void {
    const id = this.nextFlight;
    const v = this.shard.lookup(req.key, req.db, req.tables, id, client.id, Date.now());
    if (v.kind === 'lead') this.nextFlight++;
    else if (v.kind === 'wait') this.waiting.set(client.id, client);
    client.onVerdict(v, v.kind === 'wait' ? v.flightId : id);
  }

  complete(flightId: number, answer: SharedAnswer | null, storeTtlMs: number, bypassMs: number): void {
    const store = answer !== null && storeTtlMs > 0 ? { bytes: answer.bytes, hasParse: answer.hasParse, ttlMs: storeTtlMs } : null;
    const ids = this.shard.complete(flightId, store, bypassMs, Date.now());
    for (const id of ids) {
      const c = this.waiting.get(id);
      if (c === undefined) continue;
      this.waiting.delete(id);
      if (answer === null) this.reruns++;
      c.onFlightDone(answer);
    }
  }

  leave(flightId: number, client: FlightClient): void {
    this.shard.leave(flightId, client.id);
    this.waiting.delete(client.id);
  }

  invalidate(db: string, tables: readonly string[] | null): boolean {
    this.shard.invalidate(db, tables);
    return false;
  }

  /** Verdicts are given inside lookup(): none is ever pending. */
  abandon(): boolean {
    return false;
  }

  flush(): void {
    this.shard.clear();
  }

  counters(): Record<string, number> {
    return { ...this.shard.counters, reruns: this.reruns, entries: this.shard.size, bytes: this.shard.byteSize };
  }

  close(): Promise<Record<string, number>> {
    return Promise.resolve(this.counters());
  }
}

export { zeroCounters, type Counters, type Verdict };
