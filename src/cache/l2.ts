/**
 * The shared second-level cache in Redis: lookups and stores of answers, cross-instance
 * invalidation, the cross-instance singleflight lock, and the circuit breaker that keeps Redis
 * trouble away from clients. It speaks to Redis through two RedisLinks (commands, and a
 * subscriber connection for the events channel) and never sees a socket.
 *
 * Keys (P = --redis-prefix, D = the PostgreSQL database, percent-encoded, H = base64url of the
 * request's identity digest):
 *
 *   P db:D:v:H          an entry (l2-value.ts), SET with PX = its TTL
 *   P gen               generation of the whole cache (bumped by a flush)
 *   P db:D:gen          generation of database D (writes whose tables are unknown)
 *   P db:D:gen:T        generation of relation T in D
 *   P db:D:lock:H       cross-instance flight lock (SET NX PX)
 *   channel P events@N  invalidations, flushes and finished flights (N = --redis-db: pub/sub is
 *                       not scoped by database, so the channel name is)
 *
 * Invalidation uses generation counters, not per-table key sets. A write that commits sets the
 * generation of each relation it names to a new value, unique to this process, and publishes
 * them; an entry carries the generations current when its flight began, and is an answer only
 * while all of them are still current. So an invalidation costs one MSET however many entries it
 * makes stale, an entry computed while a write was committing is refused when read (its
 * generations are older), and stale entries need no deleting: they are never read again and
 * their PX removes them. Key sets would cost a SADD per store, a read and DEL of every member per
 * write, and could not stop a store that races the write. A generation that is missing (never
 * written, or evicted by maxmemory) is created with SET NX before it is used, so an eviction never
 * brings an old entry back: the new value matches no stored entry.
 *
 * One round trip per lookup: MGET of the entry and its generations, with PTTL of the entry, in
 * one pipeline (MGET reads them all at one instant).
 */
import { randomBytes } from 'node:crypto';

import type { OpsLog } from '../log/ops';
import { Breaker, type BreakerState } from '../redis/breaker';
import type { RedisArg, RedisFailure, RedisLink } from '../redis/client';
import type { RespValue } from '../redis/resp';
import { judgeResponse } from './response';
import { MAX_GENERATIONS, decodeEntry, encodeEntry, keyPart, type L2Entry } from './l2-value';

/** The shared identity of a request: who may read its entry. */
export interface L2Ident {
  /** identityDigest(scope, key). */
  digest: Buffer;
  /** base64url of digest: the key's last part. */
  hash: string;
  db: string;
  tables: readonly string[];
  /** The request's shape: an entry is an answer only if it is a clean answer of this shape. */
  kind: 'Q' | 'X';
  hasDescribe: boolean;
}

export type L2Lookup =
  | { kind: 'hit'; entry: L2Entry; ttlMs: number }
  /** Not there, stale or refused. `gens`: current generations, to store an answer with. */
  | { kind: 'miss'; gens: string[] }
  /** Redis did not answer (or the breaker is open): go upstream, store nothing. */
  | { kind: 'unavailable' };

export type LockResult = 'acquired' | 'held' | 'unavailable';

export interface L2Events {
  /** Another instance committed a write: drop the L1 entries of these relations (null: the database's). */
  remoteInvalidate(db: string, tables: readonly string[] | null): void;
  /** Another instance flushed the cache, or events may have been missed: drop every L1 entry. */
  flushLocal(reason: string): void;
  /** Another instance finished the flight of this hash. */
  flightDone(hash: string): void;
}

export interface L2Options {
  prefix: string;
  /** --redis-db, for the channel name. */
  redisDb: number;
  /** HOST:PORT, for messages. */
  address: string;
  /** How long a cross-instance flight lock lives. */
  lockMs: number;
  /** --redis-key: the secret every instance tags its entries with (l2-value.ts). */
  key: Buffer;
}

/** Failures in a row that open the breaker; cooldown bounds of its probes. */
const BREAKER_THRESHOLD = 3;
const PROBE_MIN_MS = 500;
const PROBE_MAX_MS = 10_000;
/** Relations whose invalidation waits for Redis, per database, before the whole database is invalidated instead. */
const MAX_PENDING_TABLES = 1000;

const RELEASE_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";

export interface L2Counters {
  l2_hits: number;
  l2_misses: number;
  /** Entries older than a write that committed since (normal under writes). */
  l2_stale: number;
  /** Entries that are not answers at all: bad checksum, foreign format, not a clean answer (tampering or a bug). */
  l2_refused: number;
  l2_stores: number;
  /** Lookups, stores and invalidations not sent because the breaker was open. */
  l2_skips: number;
  /** Commands that failed (timeout, error reply, lost connection, full queue). */
  l2_errors: number;
  l2_invalidations_sent: number;
  l2_invalidations_received: number;
  l2_flushes_received: number;
  /** Probes sent while unavailable (each failed one is a retry that found Redis still down). */
  l2_probes: number;
}

export class RedisL2 {
  readonly counters: L2Counters = {
    l2_hits: 0,
    l2_misses: 0,
    l2_stale: 0,
    l2_refused: 0,
    l2_stores: 0,
    l2_skips: 0,
    l2_errors: 0,
    l2_invalidations_sent: 0,
    l2_invalidations_received: 0,
    l2_flushes_received: 0,
    l2_probes: 0,
  };
  /** This process's id in generations, lock tokens and events. */
  readonly instance = randomBytes(9).toString('base64url');
  private readonly cmd: RedisLink;
  private readonly opts: L2Options;
  private readonly ops: OpsLog;
  private events: L2Events | null = null;
  private readonly breaker: Breaker;
  private probeTimer: NodeJS.Timeout | null = null;
  private probing = false;
  private genCounter = 0;
  private readonly channel: string;
  private readonly globalGen: string;
  /** Invalidations that could not reach Redis, sent before it is used again. */
  private pendingAll = false;
  private readonly pendingDb = new Set<string>();
  private readonly pendingTables = new Map<string, Set<string>>();
  private subscribedOnce = false;
  private closed = false;
  /** What the ops log said last: null before the first word. */
  private announced: boolean | null = null;
  private unavailableSince = 0;

  constructor(cmd: RedisLink, opts: L2Options, ops: OpsLog) {
    this.cmd = cmd;
    this.opts = opts;
    this.ops = ops;
    this.channel = `${opts.prefix}events@${opts.redisDb}`;
    this.globalGen = `${opts.prefix}gen`;
    this.breaker = new Breaker({
      threshold: BREAKER_THRESHOLD,
      minCooldownMs: PROBE_MIN_MS,
      maxCooldownMs: PROBE_MAX_MS,
      onChange: (s, reason) => this.onBreaker(s, reason),
    });
  }

  /** Who hears what other instances publish (set once, before the subscriber connects). */
  listen(events: L2Events): void {
    this.events = events;
  }

  /** Redis is in use (the breaker is closed). */
  get available(): boolean {
    return this.breaker.closed;
  }

  /** Invalidations waiting for Redis to come back (relations, plus databases and flushes). */
  get pendingInvalidations(): number {
    let n = this.pendingDb.size + (this.pendingAll ? 1 : 0);
    for (const s of this.pendingTables.values()) n += s.size;
    return n;
  }

  /** The channel the subscriber must SUBSCRIBE to. */
  get eventsChannel(): string {
    return this.channel;
  }

  /** The shared identity of a request (null: it reads too many relations to be shared). */
  ident(digest: Buffer, db: string, tables: readonly string[], kind: 'Q' | 'X', hasDescribe: boolean): L2Ident | null {
    if (tables.length + 2 > MAX_GENERATIONS) return null;
    return { digest, hash: digest.toString('base64url'), db, tables, kind, hasDescribe };
  }

  // ---- keys --------------------------------------------------------------------------------

  private dbKey(db: string): string {
    return `${this.opts.prefix}db:${keyPart(db)}:`;
  }

  private genKeys(id: L2Ident): string[] {
    const base = this.dbKey(id.db);
    const keys = [this.globalGen, base + 'gen'];
    for (const t of id.tables) keys.push(`${base}gen:${keyPart(t)}`);
    return keys;
  }

  private newGeneration(): string {
    return `${this.instance}.${(++this.genCounter).toString(36)}`;
  }

  // ---- lookups and stores --------------------------------------------------------------------

  /** Look a request up. Calls back later (never inside lookup()); 'unavailable' at once when the breaker is open. */
  lookup(id: L2Ident, cb: (r: L2Lookup) => void): void {
    if (!this.breaker.closed) {
      this.counters.l2_skips++;
      process.nextTick(cb, UNAVAILABLE);
      return;
    }
    const vkey = this.dbKey(id.db) + 'v:' + id.hash;
    const gkeys = this.genKeys(id);
    let values: RespValue = null;
    let pttl: RespValue = null;
    let failed = false;
    let left = 2;
    const done = (): void => {
      if (--left > 0) return;
      if (failed || !Array.isArray(values) || values.length !== gkeys.length + 1) {
        cb(UNAVAILABLE);
        return;
      }
      const value = values[0]!;
      const gens = values.slice(1);
      if (gens.every((g): g is Buffer => Buffer.isBuffer(g))) {
        cb(this.judge(id, value, gens.map((g) => g.toString('latin1')), pttl));
        return;
      }
      // Some generation does not exist yet: create it (SET NX), then read them all again.
      this.initGenerations(gkeys, gens, (current) => cb(current === null ? UNAVAILABLE : this.judge(id, value, current, pttl)));
    };
    this.send(['MGET', vkey, ...gkeys], (f, r) => {
      if (f !== null) failed = true;
      values = r;
      done();
    });
    this.send(['PTTL', vkey], (f, r) => {
      if (f !== null) failed = true;
      pttl = r;
      done();
    });
  }

  private initGenerations(keys: string[], seen: RespValue[], cb: (gens: string[] | null) => void): void {
    for (let i = 0; i < keys.length; i++) {
      if (!Buffer.isBuffer(seen[i])) this.send(['SET', keys[i]!, this.newGeneration(), 'NX'], () => {});
    }
    this.send(['MGET', ...keys], (f, r) => {
      if (f !== null || !Array.isArray(r) || r.length !== keys.length || !r.every((g): g is Buffer => Buffer.isBuffer(g))) {
        cb(null);
        return;
      }
      cb(r.map((g) => g.toString('latin1')));
    });
  }

  /** What a value read from Redis means for this request, given the current generations. */
  private judge(id: L2Ident, value: RespValue, gens: string[], pttl: RespValue): L2Lookup {
    if (value === null || value === undefined) {
      this.counters.l2_misses++;
      return { kind: 'miss', gens };
    }
    if (!Buffer.isBuffer(value)) return this.refuse(gens);
    const now = Date.now();
    const d = decodeEntry(this.opts.key, id.digest, value, now);
    if (!d.ok && d.why === 'expired') {
      // Genuine, but Redis kept it past the TTL it was stored with (clocks apart, or a replay).
      this.counters.l2_stale++;
      this.counters.l2_misses++;
      return { kind: 'miss', gens };
    }
    if (!d.ok) return this.refuse(gens);
    if (d.generations.length !== gens.length || d.generations.some((g, i) => g !== gens[i])) {
      this.counters.l2_stale++;
      this.counters.l2_misses++;
      return { kind: 'miss', gens };
    }
    // The checksum proves who wrote it, not that it is right: it must be a clean, complete answer
    // of this request's shape, as the L1 cache would have stored it.
    if (!judgeResponse(d.entry.bytes, id.kind, d.entry.hasParse, id.hasDescribe).storable) return this.refuse(gens);
    this.counters.l2_hits++;
    // PTTL: ms left; -1: no expiry (not set by pgscribe); -2: gone since the MGET. Never longer
    // than the expiry the entry was stored with: Redis cannot extend an answer's life.
    const left = d.expiresAt - now;
    const ttlMs = typeof pttl === 'number' && pttl >= 0 ? Math.min(pttl, left) : typeof pttl === 'number' && pttl === -1 ? left : 0;
    return { kind: 'hit', entry: d.entry, ttlMs };
  }

  /** Not an answer at all (see l2_refused): a miss. */
  private refuse(gens: string[]): L2Lookup {
    this.counters.l2_refused++;
    this.counters.l2_misses++;
    return { kind: 'miss', gens };
  }

  /** Store an answer under the generations its flight began with. */
  store(id: L2Ident, gens: readonly string[], entry: L2Entry, ttlMs: number): void {
    if (!this.breaker.closed) {
      this.counters.l2_skips++;
      return;
    }
    const value = encodeEntry(this.opts.key, id.digest, entry, gens, Date.now() + ttlMs);
    if (value === null) return;
    this.send(['SET', this.dbKey(id.db) + 'v:' + id.hash, value, 'PX', String(Math.max(1, Math.round(ttlMs)))], (f) => {
      if (f === null) this.counters.l2_stores++;
    });
  }

  // ---- invalidation --------------------------------------------------------------------------

  /**
   * A write committed through this instance. New generations for its relations (null: for the
   * whole database) and an event for the other instances. Returns true when it went to Redis:
   * then `done` runs once Redis has answered (or failed to), so the caller may hold the commit's
   * ReadyForQuery until other instances can no longer read what it changed. False when Redis is
   * unavailable: the invalidation waits, and goes first when Redis is back; done is not called.
   *
   * An invalidation that fails opens the breaker: an entry it should have made stale could be
   * read otherwise. The probe that closes the breaker sends it again first.
   */
  invalidate(db: string, tables: readonly string[] | null, done?: () => void): boolean {
    if (!this.breaker.closed) {
      this.counters.l2_skips++;
      this.addPending(db, tables);
      return false;
    }
    this.counters.l2_invalidations_sent++;
    this.batch(this.invalidationCommands(db, tables), (failure) => {
      if (failure !== null) {
        this.addPending(db, tables);
        this.breaker.open(`an invalidation failed: ${failure}`);
      }
      done?.();
    });
    return true;
  }

  /** Every entry of every instance is stale from now on (POST /cache/flush). */
  flushAll(): void {
    if (!this.breaker.closed) {
      this.pendingAll = true;
      return;
    }
    this.batch(this.flushCommands(), (failure) => {
      if (failure === null) return;
      this.pendingAll = true;
      this.breaker.open(`a flush failed: ${failure}`);
    });
  }

  /** MSET of new generations, then the event (none for an empty list of relations). */
  private invalidationCommands(db: string, tables: readonly string[] | null): RedisArg[][] {
    const base = this.dbKey(db);
    const mset: RedisArg[] = ['MSET'];
    if (tables === null) mset.push(base + 'gen', this.newGeneration());
    else for (const t of tables) mset.push(`${base}gen:${keyPart(t)}`, this.newGeneration());
    if (mset.length === 1) return [];
    const event = tables === null ? ['I', this.instance, db] : ['i', this.instance, db, ...tables];
    return [mset, ['PUBLISH', this.channel, event.join('\0')]];
  }

  private flushCommands(): RedisArg[][] {
    return [
      ['SET', this.globalGen, this.newGeneration()],
      ['PUBLISH', this.channel, ['a', this.instance].join('\0')],
    ];
  }

  /** Commands in one pipeline (through send()); cb(null) when all succeeded, else the first failure's message. */
  private batch(cmds: RedisArg[][], cb: (failure: string | null) => void): void {
    if (cmds.length === 0) {
      process.nextTick(cb, null);
      return;
    }
    let left = cmds.length;
    let failure: string | null = null;
    for (const c of cmds) {
      this.send(c, (f) => {
        if (f !== null && failure === null) failure = f.message;
        if (--left === 0) cb(failure);
      });
    }
  }

  private addPending(db: string, tables: readonly string[] | null): void {
    if (this.pendingDb.has(db)) return;
    if (tables === null) {
      this.pendingDb.add(db);
      this.pendingTables.delete(db);
      return;
    }
    let s = this.pendingTables.get(db);
    if (s === undefined) this.pendingTables.set(db, (s = new Set()));
    for (const t of tables) s.add(t);
    if (s.size > MAX_PENDING_TABLES) {
      this.pendingTables.delete(db);
      this.pendingDb.add(db);
    }
  }

  /** The commands of every invalidation that waited, taking them off the pending lists. */
  private takePending(): { cmds: RedisArg[][]; restore: () => void } {
    const all = this.pendingAll;
    const dbs = [...this.pendingDb];
    const tables = [...this.pendingTables].map(([d, s]) => [d, [...s]] as const);
    this.pendingAll = false;
    this.pendingDb.clear();
    this.pendingTables.clear();
    const cmds: RedisArg[][] = all ? this.flushCommands() : [];
    for (const d of dbs) cmds.push(...this.invalidationCommands(d, null));
    for (const [d, t] of tables) cmds.push(...this.invalidationCommands(d, t));
    const restore = (): void => {
      // Sending a generation bump twice is harmless: put everything back.
      if (all) this.pendingAll = true;
      for (const d of dbs) this.addPending(d, null);
      for (const [d, t] of tables) this.addPending(d, t);
    };
    return { cmds, restore };
  }

  // ---- the cross-instance flight lock ----------------------------------------------------------

  lock(id: L2Ident, token: string, cb: (r: LockResult) => void): void {
    if (!this.breaker.closed) {
      process.nextTick(cb, 'unavailable');
      return;
    }
    this.send(['SET', this.dbKey(id.db) + 'lock:' + id.hash, token, 'NX', 'PX', String(this.opts.lockMs)], (f, r) => {
      cb(f !== null ? 'unavailable' : r === 'OK' ? 'acquired' : 'held');
    });
  }

  /** The flight of id (led under token) is over: free the lock and tell the waiting instances. */
  release(id: L2Ident, token: string): void {
    if (!this.breaker.closed) return; // the lock expires by itself; waiters time out
    this.send(['EVAL', RELEASE_SCRIPT, '1', this.dbKey(id.db) + 'lock:' + id.hash, token], () => {});
    this.send(['PUBLISH', this.channel, ['f', this.instance, id.hash].join('\0')], () => {});
  }

  newToken(): string {
    return this.newGeneration();
  }

  // ---- events from other instances -------------------------------------------------------------

  /** The subscriber connection (re)subscribed to the channel. */
  subscribed(): void {
    if (this.subscribedOnce) {
      // While it was down, other instances' invalidations may have gone unheard.
      this.events?.flushLocal('resubscribed to the Redis events channel; invalidations from other instances may have been missed');
    }
    this.subscribedOnce = true;
  }

  /** A message on the events channel. */
  message(payload: Buffer): void {
    const f = payload.toString('utf8').split('\0');
    if (f.length < 2 || f[1] === this.instance || this.events === null) return;
    switch (f[0]) {
      case 'i':
        if (f.length < 4) return;
        this.counters.l2_invalidations_received++;
        this.events.remoteInvalidate(f[2]!, f.slice(3));
        return;
      case 'I':
        if (f.length !== 3) return;
        this.counters.l2_invalidations_received++;
        this.events.remoteInvalidate(f[2]!, null);
        return;
      case 'a':
        this.counters.l2_flushes_received++;
        this.events.flushLocal('another pgscribe instance flushed the shared cache');
        return;
      case 'f':
        if (f.length === 3) this.events.flightDone(f[2]!);
        return;
    }
  }

  // ---- Redis health ---------------------------------------------------------------------------

  /** The command connection is up (again): probe at once if the cooldown has passed. */
  linkReady(): void {
    this.maybeProbe();
  }

  /** The command connection went down (or could not be opened). */
  linkDown(reason: string): void {
    this.breaker.open(`connection lost: ${reason}`);
    this.announce(false, reason);
  }

  close(): void {
    this.closed = true;
    if (this.probeTimer !== null) clearTimeout(this.probeTimer);
    this.probeTimer = null;
    const n = this.pendingInvalidations;
    if (n > 0) {
      this.ops.warn('redis: invalidations that never reached Redis are lost at shutdown; other instances may serve answers they made stale until their TTL ends', { pending: n });
    }
  }

  private send(args: RedisArg[], cb: (f: RedisFailure | null, r: RespValue) => void): void {
    this.cmd.call(args, (f, r) => {
      if (f === null) this.breaker.success();
      else {
        this.counters.l2_errors++;
        this.breaker.failure(f.message);
      }
      cb(f, r);
    });
  }

  private onBreaker(s: BreakerState, reason: string): void {
    switch (s) {
      case 'open':
        this.announce(false, reason);
        this.scheduleProbe();
        break;
      case 'half-open':
        this.counters.l2_probes++;
        break;
      case 'closed':
        this.announce(true, reason);
        break;
    }
  }

  /**
   * One line each time the shared cache becomes available or unavailable (with why). A probe
   * that fails while it is unavailable changes nothing an operator acts on: it is counted
   * (l2_probes), not logged.
   */
  private announce(available: boolean, reason: string): void {
    if (this.announced === available) return;
    const first = this.announced === null;
    this.announced = available;
    if (available) {
      this.ops.info(first ? 'redis: shared cache available' : 'redis: shared cache available again; using it', {
        redis: this.opts.address,
        unavailable_ms: first ? undefined : Math.round(performance.now() - this.unavailableSince),
      });
      return;
    }
    this.unavailableSince = performance.now();
    this.ops.warn("redis: shared cache unavailable; serving from this instance's cache only, retrying by itself", {
      redis: this.opts.address,
      reason,
      pending_invalidations: this.pendingInvalidations || undefined,
    });
  }

  private scheduleProbe(): void {
    if (this.closed || this.probeTimer !== null) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      this.maybeProbe();
    }, Math.max(1, this.breaker.msUntilProbe));
  }

  /**
   * Open, cooldown over, connected: send the invalidations that waited, then PING. The breaker
   * closes only if all of it is answered, so Redis is never read before the writes it missed are
   * in it. The probe's commands bypass send(): their outcome is judged here, as one.
   */
  private maybeProbe(): void {
    if (this.closed || this.probing || this.breaker.state !== 'open') return;
    if (!this.cmd.ready) return; // linkReady() comes back here
    if (this.breaker.msUntilProbe > 0) {
      this.scheduleProbe();
      return;
    }
    if (!this.breaker.probeDue()) return;
    this.probing = true;
    const { cmds, restore } = this.takePending();
    const sent = cmds.length / 2;
    cmds.push(['PING']);
    let left = cmds.length;
    let failure: string | null = null;
    for (const c of cmds) {
      this.cmd.call(c, (f) => {
        if (f !== null && failure === null) failure = f.message;
        if (--left > 0) return;
        this.probing = false;
        if (failure !== null) restore();
        this.breaker.probeResult(failure === null, failure ?? (sent > 0 ? `answered, with ${sent} invalidations that had waited` : 'answered'));
      });
    }
  }
}

const UNAVAILABLE: L2Lookup = Object.freeze({ kind: 'unavailable' });
