/**
 * One shard of the cache and singleflight state: an LRU of answers bounded by bytes and entries,
 * with a TTL per entry, the flights in progress, and the invalidation bookkeeping that keeps both
 * honest. Pure and synchronous: the in-thread layer calls it directly, the worker layer runs one
 * per worker thread and talks to it with messages. Keys are opaque strings built by the caller.
 *
 * Invalidation and the store race: every invalidation takes the next sequence number and records
 * it per (database, relation) and, for "the whole database", per database. A flight remembers the
 * sequence number current when it began, and its entry keeps it; an entry is served only while
 * none of its relations (nor its database) was invalidated since, and an answer is stored only if
 * none was while it was computed. An answer computed while a write to one of its tables was
 * committing is therefore never stored, and a newcomer never joins a flight that began before a
 * write it could have seen had committed: it starts a new flight instead. Invalidating costs
 * O(tables), however many entries it makes stale.
 */

export interface ShardOptions {
  /** Answers are stored (the L1 cache is on). */
  cache: boolean;
  /** Concurrent identical reads share one flight. */
  singleflight: boolean;
  maxBytes: number;
  maxEntries: number;
}

/** What a lookup decided. */
export type Verdict =
  /**
   * Answer from the cache: `bytes` in the shape of a request with/without Parse (`hasParse`).
   * `l2`: it came from the shared cache ('hit'), after waiting for another instance's flight
   * ('remote'); absent: from this instance's own (L1).
   */
  | { kind: 'hit'; bytes: Buffer; hasParse: boolean; l2?: 'hit' | 'remote' }
  /** Run it upstream; complete(flightId) afterwards. */
  | { kind: 'lead' }
  /** Another client is running it; the answer comes with complete() of that flight. */
  | { kind: 'wait'; flightId: number }
  /** Run it upstream without a flight (its answers were too large to share). */
  | { kind: 'bypass' };

export interface Counters {
  hits: number;
  misses: number;
  leaders: number;
  waiters: number;
  stores: number;
  /** Answers not stored because a write to one of their tables committed during the flight. */
  stale_skips: number;
  evictions: number;
  expirations: number;
  invalidations: number;
  invalidated_entries: number;
  bypasses: number;
}

export function zeroCounters(): Counters {
  return {
    hits: 0,
    misses: 0,
    leaders: 0,
    waiters: 0,
    stores: 0,
    stale_skips: 0,
    evictions: 0,
    expirations: 0,
    invalidations: 0,
    invalidated_entries: 0,
    bypasses: 0,
  };
}

interface Entry {
  key: string;
  bytes: Buffer;
  hasParse: boolean;
  db: string;
  tables: readonly string[];
  /** The sequence number current when the flight that computed it began. */
  seq: number;
  expires: number;
  size: number;
  prev: Entry | null;
  next: Entry | null;
}

interface Flight {
  id: number;
  key: string;
  db: string;
  tables: readonly string[];
  startSeq: number;
  waiters: number[] | null;
  /** Still in `joinable` (a newer flight may have replaced it for newcomers). */
  joinable: boolean;
}

/**
 * What an entry costs beyond its answer bytes and key characters: the Entry object, the Buffer
 * and ArrayBuffer objects, the backing store and its malloc overhead, the Map slot, the heap's
 * slack. Measured on Node 20 by storing 200,000 entries (answers of 20 to 4000 bytes, keys of
 * ~100): RSS grew by 670-930 bytes per entry more than answer + key (heapUsed + external: ~350).
 * Charged at 800, so that cache-max-bytes bounds what the process really holds.
 */
export const ENTRY_OVERHEAD = 800;
/** Distinct (database, relation) sequence numbers kept before they are folded into one floor. */
const MAX_TABLE_SEQS = 100_000;
const NO_WAITERS: readonly number[] = Object.freeze([]);

export class CacheShard {
  readonly counters: Counters = zeroCounters();
  private readonly opts: ShardOptions;
  private readonly entries = new Map<string, Entry>();
  /** LRU order: head is the least recently used. */
  private head: Entry | null = null;
  private tail: Entry | null = null;
  private bytes = 0;
  private readonly flights = new Map<number, Flight>();
  private readonly joinable = new Map<string, Flight>();
  /** Keys whose answers were too large to share: bypass until the time stored. */
  private readonly bypass = new Map<string, number>();

  /**
   * Invalidation is lazy: a write takes the next sequence number and records it for its
   * (database, relation) pairs, or for the database. An entry or a flight older than one of
   * those is stale; entries are dropped when next looked up, or by the LRU.
   */
  private seq = 0;
  /** Every entry and flight from before this is stale (table sequence numbers were folded, or flush). */
  private floorSeq = 0;
  private readonly dbSeq = new Map<string, number>();
  /** database -> relation -> sequence number of its last invalidation. */
  private readonly tableSeq = new Map<string, Map<string, number>>();
  private tableSeqCount = 0;

  constructor(opts: ShardOptions) {
    this.opts = opts;
  }

  get size(): number {
    return this.entries.size;
  }

  get byteSize(): number {
    return this.bytes;
  }

  /**
   * Decide what a cacheable request does. `flightId` names the flight if the caller is to lead;
   * `waiterId` is recorded if it is to wait.
   */
  lookup(key: string, db: string, tables: readonly string[], flightId: number, waiterId: number, now: number): Verdict {
    if (this.opts.cache) {
      const e = this.entries.get(key);
      if (e !== undefined) {
        if (e.expires <= now) {
          this.remove(e);
          this.counters.expirations++;
        } else if (this.invalidatedSince(e.db, e.tables, e.seq)) {
          this.remove(e);
          this.counters.invalidated_entries++;
        } else {
          this.touch(e);
          this.counters.hits++;
          return { kind: 'hit', bytes: e.bytes, hasParse: e.hasParse };
        }
      }
    }
    if (this.bypass.size > 0) {
      const until = this.bypass.get(key);
      if (until !== undefined) {
        if (until > now) {
          this.counters.bypasses++;
          return BYPASS;
        }
        this.bypass.delete(key);
      }
    }
    if (this.opts.singleflight) {
      const f = this.joinable.get(key);
      if (f !== undefined) {
        if (!this.invalidatedSince(f.db, f.tables, f.startSeq)) {
          if (f.waiters === null) f.waiters = [waiterId];
          else f.waiters.push(waiterId);
          this.counters.waiters++;
          return { kind: 'wait', flightId: f.id };
        }
        // A write committed after this flight began: newcomers must not get its answer.
        f.joinable = false;
        this.joinable.delete(key);
      }
    }
    const f: Flight = { id: flightId, key, db, tables, startSeq: this.seq, waiters: null, joinable: this.opts.singleflight };
    this.flights.set(flightId, f);
    if (f.joinable) this.joinable.set(key, f);
    if (this.opts.cache) this.counters.misses++;
    this.counters.leaders++;
    return LEAD;
  }

  /**
   * The leader of a flight is done. `store` is its answer when it may be cached (a copy the
   * shard keeps), `bypassMs` > 0 marks the key as too large to share for that long. Returns the
   * waiters to answer (or to send upstream themselves), in arrival order.
   */
  complete(flightId: number, store: { bytes: Buffer; hasParse: boolean; ttlMs: number } | null, bypassMs: number, now: number): readonly number[] {
    const f = this.flights.get(flightId);
    if (f === undefined) return NO_WAITERS;
    this.flights.delete(flightId);
    if (f.joinable) {
      this.joinable.delete(f.key);
      f.joinable = false;
    }
    if (bypassMs > 0) this.bypass.set(f.key, now + bypassMs);
    if (store !== null && this.opts.cache && store.ttlMs > 0) {
      if (this.invalidatedSince(f.db, f.tables, f.startSeq)) this.counters.stale_skips++;
      else this.store(f, store.bytes, store.hasParse, now, now + store.ttlMs);
    }
    return f.waiters ?? NO_WAITERS;
  }

  /** A waiter's client went away (or gave up): it no longer wants the flight's answer. */
  leave(flightId: number, waiterId: number): boolean {
    const f = this.flights.get(flightId);
    if (f === undefined || f.waiters === null) return false;
    const i = f.waiters.indexOf(waiterId);
    if (i < 0) return false;
    f.waiters.splice(i, 1);
    return true;
  }

  /**
   * A write committed: the answers that read any of `tables` (relation names) in `db`, or every
   * answer of `db` when tables is null, are stale from now on (counted in invalidated_entries as
   * they are found).
   */
  invalidate(db: string, tables: readonly string[] | null): void {
    const seq = ++this.seq;
    this.counters.invalidations++;
    if (tables === null) {
      this.dbSeq.set(db, seq);
      return;
    }
    if (this.tableSeqCount + tables.length > MAX_TABLE_SEQS) {
      // Bounded memory: forget per-table numbers; everything begun so far counts as stale.
      this.tableSeq.clear();
      this.tableSeqCount = 0;
      this.floorSeq = seq;
    }
    let m = this.tableSeq.get(db);
    if (m === undefined) {
      m = new Map();
      this.tableSeq.set(db, m);
    }
    for (const t of tables) {
      if (!m.has(t)) this.tableSeqCount++;
      m.set(t, seq);
    }
  }

  /** Drop everything stored (flights in progress finish, but store nothing). Returns how many went. */
  clear(): number {
    const n = this.entries.size;
    this.counters.invalidations++;
    this.counters.invalidated_entries += n;
    this.entries.clear();
    this.head = this.tail = null;
    this.bytes = 0;
    this.floorSeq = ++this.seq;
    return n;
  }

  private invalidatedSince(db: string, tables: readonly string[], startSeq: number): boolean {
    if (startSeq < this.floorSeq) return true;
    const d = this.dbSeq.get(db);
    if (d !== undefined && d > startSeq) return true;
    if (tables.length === 0) return false;
    const m = this.tableSeq.get(db);
    if (m === undefined) return false;
    for (const t of tables) {
      const s = m.get(t);
      if (s !== undefined && s > startSeq) return true;
    }
    return false;
  }

  private store(f: Flight, bytes: Buffer, hasParse: boolean, now: number, expires: number): void {
    const size = bytes.length + f.key.length + ENTRY_OVERHEAD;
    if (size > this.opts.maxBytes) return;
    const old = this.entries.get(f.key);
    if (old !== undefined) this.remove(old);
    const e: Entry = { key: f.key, bytes, hasParse, db: f.db, tables: f.tables, seq: f.startSeq, expires, size, prev: this.tail, next: null };
    if (this.tail !== null) this.tail.next = e;
    else this.head = e;
    this.tail = e;
    this.entries.set(f.key, e);
    this.bytes += size;
    this.counters.stores++;
    while (this.head !== null && (this.bytes > this.opts.maxBytes || this.entries.size > this.opts.maxEntries)) {
      const victim = this.head;
      this.remove(victim);
      if (victim.expires > now) this.counters.evictions++;
      else this.counters.expirations++;
    }
  }

  private touch(e: Entry): void {
    if (e === this.tail) return;
    // unlink
    if (e.prev !== null) e.prev.next = e.next;
    else this.head = e.next;
    e.next!.prev = e.prev;
    // append
    e.prev = this.tail;
    e.next = null;
    this.tail!.next = e;
    this.tail = e;
  }

  private remove(e: Entry): void {
    if (this.entries.get(e.key) !== e) return;
    this.entries.delete(e.key);
    if (e.prev !== null) e.prev.next = e.next;
    else this.head = e.next;
    if (e.next !== null) e.next.prev = e.prev;
    else this.tail = e.prev;
    e.prev = e.next = null;
    this.bytes -= e.size;
  }
}

const LEAD: Verdict = Object.freeze({ kind: 'lead' });
const BYPASS: Verdict = Object.freeze({ kind: 'bypass' });
