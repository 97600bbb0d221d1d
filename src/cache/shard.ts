/**
 * One shard of the cache and singleflight state: an LRU of answers bounded by bytes and entries,
 * with a TTL per entry, the flights in progress, and the invalidation bookkeeping that keeps both
 * honest. Pure and synchronous: the in-thread layer calls it directly, the worker layer runs one
 * per worker thread and talks to it with messages. Keys are opaque strings built by the caller.
 *
 * Invalidation and the store race: every invalidation takes the next sequence number and records
 * it per (database, relation) and, for "the whole database", per database. A flight remembers the
 * sequence number current when it began; when it completes, its answer is stored only if none of
 * its relations (nor its database) was invalidated since. An answer computed while a write to one
 * of its tables was committing is therefore never stored, and a newcomer never joins a flight that
 * began before a write it could have seen had committed: it starts a new flight instead.
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
  /** Answer from the cache: `bytes` in the shape of a request with/without Parse (`hasParse`). */
  | { kind: 'hit'; bytes: Buffer; hasParse: boolean }
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
  waiters: number[];
  /** Still in `joinable` (a newer flight may have replaced it for newcomers). */
  joinable: boolean;
}

/** Bookkeeping cost of an entry beyond its bytes (objects, index sets), for the byte bound. */
const ENTRY_OVERHEAD = 160;
/** Distinct (database, relation) sequence numbers kept before they are folded into one floor. */
const MAX_TABLE_SEQS = 100_000;

export class CacheShard {
  readonly counters: Counters = zeroCounters();
  private readonly opts: ShardOptions;
  private readonly entries = new Map<string, Entry>();
  /** LRU order: head is the least recently used. */
  private head: Entry | null = null;
  private tail: Entry | null = null;
  private bytes = 0;
  private readonly byDb = new Map<string, Set<Entry>>();
  private readonly byTable = new Map<string, Set<Entry>>();
  private readonly flights = new Map<number, Flight>();
  private readonly joinable = new Map<string, Flight>();
  /** Keys whose answers were too large to share: bypass until the time stored. */
  private readonly bypass = new Map<string, number>();

  private seq = 0;
  /** Every flight that began at or before this is stale (table sequence numbers were folded). */
  private floorSeq = 0;
  private readonly dbSeq = new Map<string, number>();
  private readonly tableSeq = new Map<string, number>();

  constructor(opts: ShardOptions) {
    this.opts = opts;
  }

  get size(): number {
    return this.entries.size;
  }

  get byteSize(): number {
    return this.bytes;
  }

  /** The databases with stored answers: clear() invalidates each of them. */
  databases(): string[] {
    return [...this.byDb.keys()];
  }

  /**
   * Decide what a cacheable request does. `flightId` names the flight if the caller is to lead;
   * `waiterId` is recorded if it is to wait.
   */
  lookup(key: string, db: string, tables: readonly string[], flightId: number, waiterId: number, now: number): Verdict {
    if (this.opts.cache) {
      const e = this.entries.get(key);
      if (e !== undefined) {
        if (e.expires > now) {
          this.touch(e);
          this.counters.hits++;
          return { kind: 'hit', bytes: e.bytes, hasParse: e.hasParse };
        }
        this.remove(e);
        this.counters.expirations++;
      }
    }
    if (this.bypass.size > 0) {
      const until = this.bypass.get(key);
      if (until !== undefined) {
        if (until > now) {
          this.counters.bypasses++;
          return { kind: 'bypass' };
        }
        this.bypass.delete(key);
      }
    }
    if (this.opts.singleflight) {
      const f = this.joinable.get(key);
      if (f !== undefined) {
        if (!this.invalidatedSince(f.db, f.tables, f.startSeq)) {
          f.waiters.push(waiterId);
          this.counters.waiters++;
          return { kind: 'wait', flightId: f.id };
        }
        // A write committed after this flight began: newcomers must not get its answer.
        f.joinable = false;
        this.joinable.delete(key);
      }
    }
    const f: Flight = { id: flightId, key, db, tables, startSeq: this.seq, waiters: [], joinable: this.opts.singleflight };
    this.flights.set(flightId, f);
    if (f.joinable) this.joinable.set(key, f);
    if (this.opts.cache) this.counters.misses++;
    this.counters.leaders++;
    return { kind: 'lead' };
  }

  /**
   * The leader of a flight is done. `store` is its answer when it may be cached (a copy the
   * shard keeps), `bypassMs` > 0 marks the key as too large to share for that long. Returns the
   * waiters to answer (or to send upstream themselves), in arrival order.
   */
  complete(flightId: number, store: { bytes: Buffer; hasParse: boolean; ttlMs: number } | null, bypassMs: number, now: number): number[] {
    const f = this.flights.get(flightId);
    if (f === undefined) return [];
    this.flights.delete(flightId);
    if (f.joinable) {
      this.joinable.delete(f.key);
      f.joinable = false;
    }
    if (bypassMs > 0) this.bypass.set(f.key, now + bypassMs);
    if (store !== null && this.opts.cache && store.ttlMs > 0) {
      if (this.invalidatedSince(f.db, f.tables, f.startSeq)) this.counters.stale_skips++;
      else this.store(f.key, f.db, f.tables, store.bytes, store.hasParse, now, now + store.ttlMs);
    }
    return f.waiters;
  }

  /** A waiter's client went away (or gave up): it no longer wants the flight's answer. */
  leave(flightId: number, waiterId: number): boolean {
    const f = this.flights.get(flightId);
    if (f === undefined) return false;
    const i = f.waiters.indexOf(waiterId);
    if (i < 0) return false;
    f.waiters.splice(i, 1);
    return true;
  }

  /**
   * A write committed: drop the answers that read any of `tables` (relation names) in `db`, or
   * every answer of `db` when tables is null. Returns how many entries went.
   */
  invalidate(db: string, tables: readonly string[] | null): number {
    const seq = ++this.seq;
    this.counters.invalidations++;
    let removed = 0;
    if (tables === null) {
      this.dbSeq.set(db, seq);
      const set = this.byDb.get(db);
      if (set !== undefined) for (const e of [...set]) removed += this.remove(e);
    } else {
      if (this.tableSeq.size + tables.length > MAX_TABLE_SEQS) {
        // Bounded memory: forget per-table numbers; every flight begun so far counts as stale.
        this.tableSeq.clear();
        this.floorSeq = seq;
      }
      for (const t of tables) {
        const k = db + '\0' + t;
        this.tableSeq.set(k, seq);
        const set = this.byTable.get(k);
        if (set !== undefined) for (const e of [...set]) removed += this.remove(e);
      }
    }
    this.counters.invalidated_entries += removed;
    return removed;
  }

  /** Drop everything stored (flights in progress finish, but store nothing). */
  clear(): number {
    const n = this.entries.size;
    for (const db of [...this.byDb.keys()]) this.invalidate(db, null);
    return n;
  }

  private invalidatedSince(db: string, tables: readonly string[], startSeq: number): boolean {
    if (startSeq < this.floorSeq) return true;
    const d = this.dbSeq.get(db);
    if (d !== undefined && d > startSeq) return true;
    for (const t of tables) {
      const s = this.tableSeq.get(db + '\0' + t);
      if (s !== undefined && s > startSeq) return true;
    }
    return false;
  }

  private store(key: string, db: string, tables: readonly string[], bytes: Buffer, hasParse: boolean, now: number, expires: number): void {
    const size = bytes.length + key.length + ENTRY_OVERHEAD;
    if (size > this.opts.maxBytes) return;
    const old = this.entries.get(key);
    if (old !== undefined) this.remove(old);
    const e: Entry = { key, bytes, hasParse, db, tables, expires, size, prev: this.tail, next: null };
    if (this.tail !== null) this.tail.next = e;
    else this.head = e;
    this.tail = e;
    this.entries.set(key, e);
    this.bytes += size;
    addTo(this.byDb, db, e);
    for (const t of tables) addTo(this.byTable, db + '\0' + t, e);
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

  /** Unlink and unindex an entry; returns 1 (for counting). */
  private remove(e: Entry): number {
    if (this.entries.get(e.key) !== e) return 0;
    this.entries.delete(e.key);
    if (e.prev !== null) e.prev.next = e.next;
    else this.head = e.next;
    if (e.next !== null) e.next.prev = e.prev;
    else this.tail = e.prev;
    e.prev = e.next = null;
    this.bytes -= e.size;
    removeFrom(this.byDb, e.db, e);
    for (const t of e.tables) removeFrom(this.byTable, e.db + '\0' + t, e);
    return 1;
  }
}

function addTo(m: Map<string, Set<Entry>>, k: string, e: Entry): void {
  let s = m.get(k);
  if (s === undefined) {
    s = new Set();
    m.set(k, s);
  }
  s.add(e);
}

function removeFrom(m: Map<string, Set<Entry>>, k: string, e: Entry): void {
  const s = m.get(k);
  if (s === undefined) return;
  s.delete(e);
  if (s.size === 0) m.delete(k);
}
