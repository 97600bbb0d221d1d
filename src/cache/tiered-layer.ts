/**
 * The cache layer with a shared second level (--redis): this instance's layer (L1, in the event
 * loop thread or in worker threads) in front of RedisL2, behind the same CacheLayer interface.
 *
 * A lookup goes to L1 first. Only the leader of a new local flight goes on to Redis, so local
 * singleflight also covers the Redis round trip: identical requests arriving meanwhile wait on
 * the local flight. Then:
 *
 *   L2 hit   the answer completes the local flight (its waiters get it, L1 stores it for what is
 *            left of the entry's TTL) and the leader is answered from it (`cache=l2`);
 *   L2 miss  the leader goes upstream; its answer is stored in L2 under the generations read by
 *            that lookup (so a write that commits meanwhile makes it unreadable);
 *   Redis unavailable (breaker open, timeout): the leader goes upstream, nothing is stored in L2.
 *
 * With --redis-singleflight a miss first takes a short Redis lock (SET NX PX) for the request:
 * the instance that gets it leads; the others wait for its "flight done" event, then read L2
 * (`cache=l2 flight=remote`), or run the query themselves when the event does not come within
 * the lock's lifetime or L2 has nothing for them.
 *
 * Commits invalidate L1 at once and are published to the other instances through L2; writes and
 * flushes they publish come back as L2Events.
 */
import type { OpsLog } from '../log/ops';
import { identityDigest } from './l2-value';
import type { L2Events, L2Ident, L2Lookup, RedisL2 } from './l2';
import type { CacheLayer, CacheRequest, FlightClient, SharedAnswer, Verdict } from './layer';

export interface TieredOptions {
  /** Cross-instance singleflight (--redis-singleflight). */
  remoteFlights: boolean;
  /** How long a waiter waits for another instance's flight (the lock's lifetime). */
  lockMs: number;
}

const LEAD: Verdict = Object.freeze({ kind: 'lead' });

/** A local flight led by this instance whose answer may go to L2. */
interface SharedFlight {
  ident: L2Ident;
  /** Generations read before the query went upstream. */
  gens: string[];
  /** The cross-instance lock this flight holds ('' for none). */
  token: string;
}

/**
 * One lookup on its way through the layers: the FlightClient the L1 layer sees, so that a 'lead'
 * verdict can go on to Redis before the real client hears of it.
 */
class Step implements FlightClient {
  readonly id: number;
  flightId = 0;
  ident: L2Ident | null = null;
  gens: string[] | null = null;
  /** Waiting for another instance: 'lock' while SET NX is out, 'remote' after it said held. */
  phase: 'l2' | 'lock' | 'remote' = 'l2';
  /** The flight-done event for this hash came while the lock request was out. */
  notified = false;
  timer: NodeJS.Timeout | null = null;
  abandoned = false;

  constructor(
    readonly layer: TieredCacheLayer,
    readonly req: CacheRequest,
    readonly client: FlightClient,
  ) {
    this.id = client.id;
  }

  onVerdict(v: Verdict, flightId: number): void {
    this.layer.l1Verdict(this, v, flightId);
  }

  onFlightDone(answer: SharedAnswer | null): void {
    this.client.onFlightDone(answer);
  }
}

export class TieredCacheLayer implements CacheLayer, L2Events {
  private readonly inner: CacheLayer;
  private readonly l2: RedisL2;
  private readonly opts: TieredOptions;
  private readonly ops: OpsLog;
  private readonly onClose: () => void;
  /** Local flights whose leader went upstream with generations to store under, by flight id. */
  private readonly flights = new Map<number, SharedFlight>();
  /** Lookups past L1 and not decided yet, by client id. */
  private readonly steps = new Map<number, Step>();
  /** Lookups waiting for another instance's flight, by hash. */
  private readonly remote = new Map<string, Set<Step>>();
  private remoteWaits = 0;
  private remoteTimeouts = 0;
  private remoteLeads = 0;

  /** `onClose`: closes the Redis connections. */
  constructor(inner: CacheLayer, l2: RedisL2, opts: TieredOptions, ops: OpsLog, onClose: () => void) {
    this.inner = inner;
    this.l2 = l2;
    this.opts = opts;
    this.ops = ops;
    this.onClose = onClose;
    l2.listen(this);
  }

  lookup(req: CacheRequest, client: FlightClient): void {
    if (req.scope === undefined || !this.l2.available) this.inner.lookup(req, client);
    else this.inner.lookup(req, new Step(this, req, client));
  }

  /** What L1 decided for a lookup that may go on to L2. */
  l1Verdict(step: Step, v: Verdict, flightId: number): void {
    if (v.kind !== 'lead') {
      step.client.onVerdict(v, flightId);
      return;
    }
    const req = step.req;
    const ident =
      this.l2.available && req.kind !== undefined
        ? this.l2.ident(identityDigest(req.scope!, keyBody(req.key)), req.db, req.tables, req.kind, req.hasDescribe === true)
        : null;
    if (ident === null) {
      step.client.onVerdict(v, flightId);
      return;
    }
    step.flightId = flightId;
    step.ident = ident;
    this.steps.set(step.id, step);
    this.l2.lookup(ident, (r) => this.l2Answered(step, r));
  }

  private l2Answered(step: Step, r: L2Lookup): void {
    if (step.abandoned) return;
    switch (r.kind) {
      case 'hit':
        this.serve(step, r, 'hit');
        return;
      case 'miss':
        step.gens = r.gens;
        if (this.opts.remoteFlights) this.lock(step);
        else this.lead(step);
        return;
      case 'unavailable':
        this.lead(step);
        return;
    }
  }

  /** Answer the local flight, and its leader, from an L2 entry. */
  private serve(step: Step, r: Extract<L2Lookup, { kind: 'hit' }>, how: 'hit' | 'remote'): void {
    const req = step.req;
    const { bytes, hasParse } = r.entry;
    this.steps.delete(step.id);
    const ttl = req.ttlMs ?? 0;
    // What is left of the entry's life (PTTL; -1: none set, then the request's own TTL).
    const l1Ttl = r.ttlMs < 0 ? ttl : Math.min(ttl, r.ttlMs);
    const answer: SharedAnswer = { bytes, hasParse };
    this.inner.complete(step.flightId, answer, l1Ttl, 0);
    step.client.onVerdict({ kind: 'hit', bytes, hasParse, l2: how }, step.flightId);
  }

  /** The leader goes upstream; its answer will be stored in L2 if generations were read. */
  private lead(step: Step, token = ''): void {
    this.steps.delete(step.id);
    this.unwait(step);
    if (step.gens !== null && step.ident !== null) this.flights.set(step.flightId, { ident: step.ident, gens: step.gens, token });
    step.client.onVerdict(LEAD, step.flightId);
  }

  // ---- cross-instance singleflight -------------------------------------------------------------

  private lock(step: Step): void {
    const ident = step.ident!;
    step.phase = 'lock';
    let set = this.remote.get(ident.hash);
    if (set === undefined) this.remote.set(ident.hash, (set = new Set()));
    set.add(step);
    const token = this.l2.newToken();
    this.l2.lock(ident, token, (res) => {
      if (step.abandoned) {
        if (res === 'acquired') this.l2.release(ident, token);
        return;
      }
      switch (res) {
        case 'acquired':
          this.remoteLeads++;
          this.lead(step, token);
          return;
        case 'unavailable':
          this.lead(step);
          return;
        case 'held':
          this.remoteWaits++;
          if (step.notified) {
            this.relookup(step);
            return;
          }
          step.phase = 'remote';
          step.timer = setTimeout(() => {
            step.timer = null;
            this.remoteTimeouts++;
            this.lead(step);
          }, this.opts.lockMs);
          return;
      }
    });
  }

  /** The other instance's flight is over: its answer should be in L2 now. */
  private relookup(step: Step): void {
    this.unwait(step);
    step.phase = 'l2';
    this.l2.lookup(step.ident!, (r) => {
      if (step.abandoned) return;
      if (r.kind === 'hit') {
        this.serve(step, r, 'remote');
        return;
      }
      if (r.kind === 'miss') step.gens = r.gens;
      this.lead(step);
    });
  }

  private unwait(step: Step): void {
    if (step.timer !== null) clearTimeout(step.timer);
    step.timer = null;
    if (step.ident === null) return;
    const set = this.remote.get(step.ident.hash);
    if (set === undefined) return;
    set.delete(step);
    if (set.size === 0) this.remote.delete(step.ident.hash);
  }

  // ---- L2Events: what other instances publish ------------------------------------------------------

  flightDone(hash: string): void {
    const set = this.remote.get(hash);
    if (set === undefined) return;
    for (const step of [...set]) {
      if (step.phase === 'lock') step.notified = true;
      else if (step.phase === 'remote') this.relookup(step);
    }
  }

  /** A write committed through another instance: L1 only (it was published already). */
  remoteInvalidate(db: string, tables: readonly string[] | null): void {
    this.inner.invalidate(db, tables);
  }

  flushLocal(reason: string): void {
    this.ops.info('cache: dropping this instance\'s cached answers', { reason });
    this.inner.flush();
  }

  // ---- the rest of CacheLayer --------------------------------------------------------------------

  complete(flightId: number, answer: SharedAnswer | null, storeTtlMs: number, bypassMs: number): void {
    this.inner.complete(flightId, answer, storeTtlMs, bypassMs);
    const f = this.flights.get(flightId);
    if (f === undefined) return;
    this.flights.delete(flightId);
    if (answer !== null && storeTtlMs > 0) this.l2.store(f.ident, f.gens, { bytes: answer.bytes, hasParse: answer.hasParse }, storeTtlMs);
    // After the store, on the same connection: an instance woken by the event finds the entry.
    if (f.token !== '') this.l2.release(f.ident, f.token);
  }

  invalidate(db: string, tables: readonly string[] | null, shared?: () => void): boolean {
    this.inner.invalidate(db, tables);
    return this.l2.invalidate(db, tables, shared);
  }

  leave(flightId: number, client: FlightClient): void {
    this.inner.leave(flightId, client);
  }

  abandon(client: FlightClient): boolean {
    const step = this.steps.get(client.id);
    if (step === undefined || step.client !== client) return this.inner.abandon(client);
    step.abandoned = true;
    this.steps.delete(step.id);
    this.unwait(step);
    // The local flight it led ends without an answer: its waiters ask again.
    this.inner.complete(step.flightId, null, 0, 0);
    return true;
  }

  flush(): void {
    this.inner.flush();
    this.l2.flushAll();
  }

  counters(): Record<string, number> {
    return {
      ...this.inner.counters(),
      ...this.l2.counters,
      l2_remote_leads: this.remoteLeads,
      l2_remote_waits: this.remoteWaits,
      l2_remote_timeouts: this.remoteTimeouts,
      l2_pending_invalidations: this.l2.pendingInvalidations,
      l2_available: this.l2.available ? 1 : 0,
    };
  }

  async close(): Promise<Record<string, number>> {
    for (const step of this.steps.values()) this.unwait(step);
    this.l2.close();
    this.onClose();
    const inner = await this.inner.close();
    return { ...this.counters(), ...inner };
  }
}

/** The key without its per-process session id (`<id>:`): what every instance computes alike. */
function keyBody(key: string): string {
  return key.slice(key.indexOf(':') + 1);
}
