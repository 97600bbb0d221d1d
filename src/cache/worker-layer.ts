/**
 * The cache layer with its state in worker threads (--workers N): keys are split by hash over N
 * CacheShards, one per worker, and every decision comes back as a message. Observable behaviour is
 * LocalCacheLayer's; what differs is only when the callbacks run (later, from a 'message' event).
 *
 * Bookkeeping in the event loop thread, per shard:
 * - `queued`: requests not posted yet; one batch per shard goes at setImmediate.
 * - `pending`: the requests that expect a reply, in call order. A shard answers in the order it
 *   was asked (see worker-protocol.ts), so each reply belongs to the head of the FIFO: lookups
 *   keep their client, completions keep the leader's answer for the waiters.
 * - `waiting`: the clients told to wait, by client id, with the flight they joined.
 * Flight ids are allocated here, one candidate per lookup, `seq * N + shard`: unique across
 * shards, and the owner of a flight is `flightId % N` without a table to keep or leak.
 * A request's fields are read when its batch is posted, not when it is made: the `tables` arrays
 * given to lookup() and invalidate() must not change afterwards (as their readonly types say).
 * Answer bytes to store are copied at once.
 *
 * A worker that dies (an exception, a failed start, a deserialization error) is reported once;
 * its pending lookups get 'bypass', its waiters are released, and its keys are relayed without the
 * cache from then on. The workers are unref'd while they owe no reply: they never keep the process
 * alive on their own.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { zeroCounters, type CacheLayer, type CacheRequest, type FlightClient, type LayerOptions, type SharedAnswer, type Verdict } from './layer';
import { Fifo } from '../fifo';
import { Op, Reply, SHARD_STATE_KEYS, type ShardState, type WorkerSetup } from './worker-protocol';

/** Compiled next to this file, in dist/cache/ as in build/src/cache/. */
const WORKER_FILE = path.join(__dirname, 'cache-worker.js');
/** close() waits this long for the workers' final counters, then terminates them anyway. */
const CLOSE_TIMEOUT_MS = 2000;

const LEAD: Verdict = Object.freeze({ kind: 'lead' });
const BYPASS: Verdict = Object.freeze({ kind: 'bypass' });
const ENTRIES = SHARD_STATE_KEYS.indexOf('entries');
const BYTES = SHARD_STATE_KEYS.indexOf('bytes');

/** A posted request that expects a reply. */
type Pending =
  | { kind: typeof Op.Lookup; client: FlightClient; flightId: number }
  | { kind: typeof Op.Complete; flightId: number; answer: SharedAnswer | null }
  | { kind: typeof Op.Flush }
  | { kind: typeof Op.Counters; done: () => void };

interface Waiter {
  client: FlightClient;
  flightId: number;
}

/** The event loop thread's side of one worker. */
class ShardLink {
  /** Requests for the next batch, flat: tag, fields, tag, fields... */
  queued: unknown[] = [];
  readonly pending = new Fifo<Pending>();
  readonly waiting = new Map<number, Waiter>();
  /** Shard-side figures as of the worker's last message (SHARD_STATE_KEYS order). */
  state: ShardState = SHARD_STATE_KEYS.map(() => 0);
  dead = false;
  worker: Worker | null = null;

  constructor(readonly index: number) {}
}

export class WorkerCacheLayer implements CacheLayer {
  private readonly opts: LayerOptions;
  private readonly onError: (message: string) => void;
  private readonly links: ShardLink[] = [];
  private readonly n: number;
  private nextSeq = 1;
  private postScheduled = false;
  private closing: Promise<Record<string, number>> | null = null;
  // Counted here from verdicts and calls; the rest comes from the shards (ShardLink.state).
  private hits = 0;
  private misses = 0;
  private leaders = 0;
  private waiters = 0;
  private bypasses = 0;
  private invalidations = 0;
  /** Waiters sent to run the query themselves (their leader failed, or their worker died). */
  private reruns = 0;

  /** `onError`: operator-facing problems (a worker died); default: a process warning. */
  constructor(opts: LayerOptions, onError?: (message: string) => void) {
    if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new RangeError(`WorkerCacheLayer needs workers >= 1, got ${opts.workers}`);
    this.opts = opts;
    this.n = opts.workers;
    this.onError = onError ?? ((message) => process.emitWarning(message, { code: 'PGSCRIBE_CACHE_WORKER' }));
    const setup: WorkerSetup = {
      cache: opts.cache,
      singleflight: opts.singleflight,
      maxBytes: Math.max(1, Math.floor(opts.maxBytes / this.n)),
      maxEntries: Math.max(1, Math.floor(opts.maxEntries / this.n)),
    };
    for (let i = 0; i < this.n; i++) this.links.push(this.start(i, setup));
  }

  /** The shard of a key: FNV-1a over the UTF-16 code units. */
  shardOf(key: string): number {
    if (this.n === 1) return 0;
    let h = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    return (h >>> 0) % this.n;
  }

  lookup(req: CacheRequest, client: FlightClient): void {
    const s = this.shardOf(req.key);
    const link = this.links[s]!;
    if (link.dead || this.closing !== null) {
      client.onVerdict(BYPASS, 0);
      return;
    }
    const flightId = this.nextSeq++ * this.n + s;
    this.expect(link, { kind: Op.Lookup, client, flightId });
    this.queue(link).push(Op.Lookup, req.key, req.db, req.tables, flightId, client.id);
  }

  complete(flightId: number, answer: SharedAnswer | null, storeTtlMs: number, bypassMs: number): void {
    const link = this.linkOf(flightId);
    // A dead shard released this flight's waiters already.
    if (link === undefined || link.dead) return;
    let bytes: Uint8Array | null = null;
    if (answer !== null && storeTtlMs > 0 && this.opts.cache) {
      // The one copy the cache keeps, in shared memory: posting it copies nothing, the worker
      // stores it as it is, and every hit hands back a view of it (nobody writes to it again).
      // Not a clone of answer.bytes: that would copy its whole, maybe pooled, ArrayBuffer.
      bytes = new Uint8Array(new SharedArrayBuffer(answer.bytes.length));
      bytes.set(answer.bytes);
    }
    this.expect(link, { kind: Op.Complete, flightId, answer });
    this.queue(link).push(Op.Complete, flightId, bytes, answer !== null && answer.hasParse, bytes === null ? 0 : storeTtlMs, bypassMs);
  }

  leave(flightId: number, client: FlightClient): void {
    const link = this.linkOf(flightId);
    if (link === undefined) return;
    // At once: a Done already on its way must not reach this client.
    const w = link.waiting.get(client.id);
    if (w !== undefined && w.flightId === flightId) link.waiting.delete(client.id);
    if (!link.dead) this.queue(link).push(Op.Leave, flightId, client.id);
  }

  invalidate(db: string, tables: readonly string[] | null): boolean {
    this.invalidations++;
    for (const link of this.links) if (!link.dead) this.queue(link).push(Op.Invalidate, db, tables);
    return false;
  }

  /** A lookup posted to a worker is answered whatever happens (the client gives the verdict back). */
  abandon(): boolean {
    return false;
  }

  flush(): void {
    // One invalidation, as in LocalCacheLayer (the shards' own counts of it are not reported).
    this.invalidations++;
    for (const link of this.links) {
      if (link.dead) continue;
      this.expect(link, { kind: Op.Flush });
      this.queue(link).push(Op.Flush);
    }
  }

  counters(): Record<string, number> {
    // The keys and their order are LocalCacheLayer's.
    const c: Record<string, number> = { ...zeroCounters(), reruns: this.reruns, entries: 0, bytes: 0 };
    c.hits = this.hits;
    c.misses = this.misses;
    c.leaders = this.leaders;
    c.waiters = this.waiters;
    c.bypasses = this.bypasses;
    c.invalidations = this.invalidations;
    for (const link of this.links) SHARD_STATE_KEYS.forEach((k, i) => (c[k]! += link.state[i]!));
    return c;
  }

  /**
   * Resolves once every live shard has handled everything posted before (and all its replies have
   * been delivered): counters() is then exact. For tests and benchmarks.
   */
  sync(): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const link of this.links) {
      if (link.dead) continue;
      waits.push(new Promise<void>((done) => this.expect(link, { kind: Op.Counters, done })));
      this.queue(link).push(Op.Counters);
    }
    return Promise.all(waits).then(() => undefined);
  }

  close(): Promise<Record<string, number>> {
    if (this.closing !== null) return this.closing;
    // From here on lookups bypass; what is in flight is answered before the final counters.
    this.closing = (async () => {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        this.sync().then(() => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), CLOSE_TIMEOUT_MS).unref())),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        const slow = this.links.filter((l) => !l.dead && l.pending.size > 0).map((l) => l.index);
        this.onError(`cache workers ${slow.join(', ')} did not answer within ${CLOSE_TIMEOUT_MS} ms at close; their counters are as of their last message`);
      }
      // What the shards held at the end (down() zeroes it), with the releases down() counts.
      const held = this.counters();
      for (const link of this.links) {
        const w = link.worker;
        this.down(link, null);
        if (w !== null) void w.terminate();
      }
      return { ...this.counters(), entries: held.entries!, bytes: held.bytes! };
    })();
    return this.closing;
  }

  /** Workers running (not dead, not closed). */
  get liveWorkers(): number {
    return this.links.filter((l) => !l.dead).length;
  }

  /**
   * A shard's worker thread. Called from the constructor, once per shard in shard order (so a
   * subclass that overrides it runs before its own field initializers).
   */
  protected createWorker(setup: WorkerSetup): Worker {
    // No execArgv: the shard needs no preloads or loaders (--require/--import of the main
    // process, a test runner's TypeScript hooks): they cost each worker ~0.5 s to start.
    return new Worker(WORKER_FILE, { workerData: setup, execArgv: [] });
  }

  private start(i: number, setup: WorkerSetup): ShardLink {
    const link = new ShardLink(i);
    let w: Worker;
    try {
      w = this.createWorker(setup);
    } catch (err) {
      this.down(link, `cache worker ${i} cannot start (${(err as Error).message}); its keys are relayed without the cache`);
      return link;
    }
    link.worker = w;
    w.on('message', (m: unknown[]) => this.onReplies(link, m));
    w.on('error', (err: Error) => this.down(link, `cache worker ${i} failed (${err.message}); its keys are relayed without the cache`));
    w.on('messageerror', (err: Error) => {
      // A lost reply would shift every later one onto the wrong request: give the shard up.
      this.down(link, `cache worker ${i}: unreadable message (${err.message}); its keys are relayed without the cache`);
      void w.terminate();
    });
    w.on('exit', (code: number) => this.down(link, `cache worker ${i} exited (code ${code}); its keys are relayed without the cache`));
    // After the listeners: adding a 'message' listener refs the port again.
    w.unref();
    return link;
  }

  /** The shard owning a flight id, if the id is one of ours. */
  private linkOf(flightId: number): ShardLink | undefined {
    if (!Number.isSafeInteger(flightId) || flightId < this.n) return undefined;
    return this.links[flightId % this.n];
  }

  /** A request that expects a reply: keeps the worker ref'd until the reply comes. */
  private expect(link: ShardLink, p: Pending): void {
    if (link.pending.size === 0) link.worker!.ref();
    link.pending.push(p);
  }

  /** The batch being built for a live shard; it goes at setImmediate. */
  private queue(link: ShardLink): unknown[] {
    if (!this.postScheduled) {
      this.postScheduled = true;
      setImmediate(this.postQueued);
    }
    return link.queued;
  }

  private readonly postQueued = (): void => {
    this.postScheduled = false;
    for (const link of this.links) {
      if (link.queued.length === 0) continue;
      const batch = link.queued;
      link.queued = [];
      // A dead shard's pending requests were answered already; the batch just goes nowhere.
      if (link.dead) continue;
      link.worker!.postMessage(batch);
    }
  };

  private onReplies(link: ShardLink, m: unknown[]): void {
    for (let i = 0; i < m.length && !link.dead; ) {
      const tag = m[i] as number;
      if (tag === Reply.State) {
        link.state = m[i + 1] as ShardState;
        i += 2;
        continue;
      }
      const p = link.pending.shift();
      if (p === undefined || p.kind !== expectedKind(tag)) {
        this.down(link, `cache worker ${link.index}: reply ${tag} does not match the request (${p?.kind}); its keys are relayed without the cache`);
        void link.worker!.terminate();
        return;
      }
      if (link.pending.size === 0) link.worker!.unref();
      switch (tag) {
        case Reply.Hit: {
          const lk = p as Extract<Pending, { kind: typeof Op.Lookup }>;
          const u = m[i + 1] as Uint8Array;
          const v: Verdict = { kind: 'hit', bytes: Buffer.from(u.buffer, u.byteOffset, u.byteLength), hasParse: m[i + 2] as boolean };
          this.hits++;
          i += 3;
          lk.client.onVerdict(v, lk.flightId);
          break;
        }
        case Reply.Lead: {
          const lk = p as Extract<Pending, { kind: typeof Op.Lookup }>;
          this.leaders++;
          if (this.opts.cache) this.misses++;
          i += 1;
          lk.client.onVerdict(LEAD, lk.flightId);
          break;
        }
        case Reply.Wait: {
          const lk = p as Extract<Pending, { kind: typeof Op.Lookup }>;
          const flightId = m[i + 1] as number;
          this.waiters++;
          i += 2;
          // Before the callback: a client that is going away leaves from inside onVerdict.
          link.waiting.set(lk.client.id, { client: lk.client, flightId });
          lk.client.onVerdict({ kind: 'wait', flightId }, flightId);
          break;
        }
        case Reply.Bypass: {
          const lk = p as Extract<Pending, { kind: typeof Op.Lookup }>;
          this.bypasses++;
          i += 1;
          lk.client.onVerdict(BYPASS, lk.flightId);
          break;
        }
        case Reply.Done: {
          const c = p as Extract<Pending, { kind: typeof Op.Complete }>;
          const ids = m[i + 1] as number[];
          i += 2;
          for (const id of ids) {
            const w = link.waiting.get(id);
            // A client that left this flight may wait on another one by now: on another shard it
            // is in that shard's map, on this one it joined after this Done; the id check holds
            // even so.
            if (w === undefined || w.flightId !== c.flightId) continue;
            link.waiting.delete(id);
            if (c.answer === null) this.reruns++;
            w.client.onFlightDone(c.answer);
          }
          break;
        }
        case Reply.Flushed:
          // The entries it dropped are in the shard-side figures (invalidated_entries).
          i += 2;
          break;
        case Reply.Counters:
          link.state = m[i + 1] as ShardState;
          i += 2;
          (p as Extract<Pending, { kind: typeof Op.Counters }>).done();
          break;
      }
    }
  }

  /**
   * The shard is gone (message: why, for the operator; null: closed on purpose). Everything
   * that waited on it gets the answer it would have got, or is told to go upstream.
   */
  private down(link: ShardLink, message: string | null): void {
    if (link.dead) return;
    link.dead = true;
    link.state = link.state.slice();
    link.state[ENTRIES] = 0;
    link.state[BYTES] = 0;
    link.worker?.unref();
    if (message !== null && this.closing === null) this.onError(message);
    const pending = link.pending.drain();
    const waiting = link.waiting;
    for (const p of pending) {
      switch (p.kind) {
        case Op.Lookup:
          p.client.onVerdict(BYPASS, p.flightId);
          break;
        case Op.Complete:
          // The leader finished: its waiters get what the shard would have sent them.
          for (const [id, w] of [...waiting]) {
            if (w.flightId !== p.flightId || waiting.get(id) !== w) continue;
            waiting.delete(id);
            if (p.answer === null) this.reruns++;
            w.client.onFlightDone(p.answer);
          }
          break;
        case Op.Counters:
          p.done();
          break;
        case Op.Flush:
          break;
      }
    }
    // Their leaders' completions will go nowhere: run the query themselves.
    for (const [id, w] of [...waiting]) {
      // (Unless a callback above made it leave.)
      if (waiting.get(id) !== w) continue;
      waiting.delete(id);
      this.reruns++;
      w.client.onFlightDone(null);
    }
  }
}

/** The kind of request a reply answers (undefined: not a reply tag). */
function expectedKind(reply: number): Pending['kind'] | undefined {
  switch (reply) {
    case Reply.Hit:
    case Reply.Lead:
    case Reply.Wait:
    case Reply.Bypass:
      return Op.Lookup;
    case Reply.Done:
      return Op.Complete;
    case Reply.Flushed:
      return Op.Flush;
    case Reply.Counters:
      return Op.Counters;
    default:
      return undefined;
  }
}
