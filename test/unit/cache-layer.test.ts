// CacheLayer conformance: the same scenarios against LocalCacheLayer and WorkerCacheLayer (1 and
// 3 worker threads), through a fake FlightClient that records every callback. Then what only the
// worker layer has: flight bookkeeping across shards, a worker that dies, close(), unref.
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import t from 'tap';

import { LocalCacheLayer, type CacheLayer, type CacheRequest, type FlightClient, type LayerOptions, type SharedAnswer, type Verdict } from '../../src/cache/layer';
import { WorkerCacheLayer } from '../../src/cache/worker-layer';
import { FaultyWorkerCacheLayer } from '../helpers/faulty-cache-layer';
import { sleep } from '../harness/time';

const BASE: LayerOptions = { cache: true, singleflight: true, maxBytes: 64 << 20, maxEntries: 100_000, workers: 0 };
/** How long a callback may take to arrive before the test fails instead of hanging. */
const PATIENCE_MS = 5000;

interface Impl {
  name: string;
  workers: number;
  make(o?: Partial<LayerOptions>, onError?: (m: string) => void): CacheLayer;
}

const IMPLS: Impl[] = [
  { name: 'local', workers: 0, make: (o) => new LocalCacheLayer({ ...BASE, ...o }) },
  { name: 'workers 1', workers: 1, make: (o, onError) => new WorkerCacheLayer({ ...BASE, ...o, workers: 1 }, onError) },
  { name: 'workers 3', workers: 3, make: (o, onError) => new WorkerCacheLayer({ ...BASE, ...o, workers: 3 }, onError) },
];
const WORKER_IMPLS = IMPLS.filter((i) => i.workers > 0);

/** Every callback the layer made so far has run (the worker layer's replies are delivered). */
async function settle(layer: CacheLayer): Promise<void> {
  if (layer instanceof WorkerCacheLayer) await layer.sync();
}

function within<T>(p: Promise<T>, what: string, ms = PATIENCE_MS): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

let nextClientId = 1;

interface Decision {
  v: Verdict;
  flightId: number;
}

/** Records verdicts and flight answers; verdict(i) / answer(i) wait for the i-th one. */
class FakeClient implements FlightClient {
  readonly id = nextClientId++;
  readonly verdicts: Decision[] = [];
  readonly answers: (SharedAnswer | null)[] = [];
  private wake: (() => void)[] = [];

  constructor(readonly name = '') {}

  onVerdict(v: Verdict, flightId: number): void {
    this.verdicts.push({ v, flightId });
    this.notify();
  }

  onFlightDone(answer: SharedAnswer | null): void {
    this.answers.push(answer);
    this.notify();
  }

  verdict(i = 0): Promise<Decision> {
    return within(this.until(() => this.verdicts[i]), `verdict #${i} for client ${this.name || this.id}`);
  }

  answer(i = 0): Promise<SharedAnswer | null> {
    return within(
      this.until(() => (this.answers.length > i ? { a: this.answers[i]! } : undefined)).then((x) => x.a),
      `flight answer #${i} for client ${this.name || this.id}`,
    );
  }

  private async until<T>(get: () => T | undefined): Promise<T> {
    for (;;) {
      const x = get();
      if (x !== undefined) return x;
      await new Promise<void>((resolve) => this.wake.push(resolve));
    }
  }

  private notify(): void {
    const w = this.wake;
    this.wake = [];
    for (const f of w) f();
  }
}

const req = (key: string, db = 'app', tables: readonly string[] = ['t1']): CacheRequest => ({ key, db, tables });
const answer = (text: string, hasParse = false): SharedAnswer => ({ bytes: Buffer.from(text), hasParse });

/** Look up `r` as a new client and wait for the verdict. */
async function ask(layer: CacheLayer, r: CacheRequest, name = ''): Promise<{ c: FakeClient } & Decision> {
  const c = new FakeClient(name);
  layer.lookup(r, c);
  const d = await c.verdict();
  return { c, ...d };
}

/** Lead a flight for r and complete it with `a` stored for ttlMs. */
async function store(layer: CacheLayer, r: CacheRequest, a: SharedAnswer, ttlMs = 60_000): Promise<void> {
  const l = await ask(layer, r);
  if (l.v.kind !== 'lead') throw new Error(`expected to lead ${r.key}, got ${l.v.kind}`);
  layer.complete(l.flightId, a, ttlMs, 0);
}

/** Keys that the worker layer puts on shard s (any key for the local layer). */
function keysOn(layer: CacheLayer, s: number, count: number, prefix = 'key'): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const k = `${prefix}-${i}`;
    if (!(layer instanceof WorkerCacheLayer) || layer.shardOf(k) === s) out.push(k);
  }
  return out;
}

function open(tt: { teardown(fn: () => unknown): void }, impl: Impl, o?: Partial<LayerOptions>, onError?: (m: string) => void): CacheLayer {
  const layer = impl.make(o, onError);
  tt.teardown(() => layer.close());
  return layer;
}

for (const impl of IMPLS) {
  t.test(`${impl.name}: miss, lead, complete with store, then a hit with the same bytes`, async (tt) => {
    const layer = open(tt, impl);
    const r = req('SELECT * FROM t1 WHERE id = $1 [42]');
    const first = await ask(layer, r);
    tt.equal(first.v.kind, 'lead');
    tt.ok(first.flightId > 0, 'a flight id');
    layer.complete(first.flightId, answer('row 42', true), 60_000, 0);
    await settle(layer);

    const hit = await ask(layer, r);
    tt.equal(hit.v.kind, 'hit');
    if (hit.v.kind !== 'hit') return;
    tt.ok(Buffer.isBuffer(hit.v.bytes), 'the bytes are a Buffer');
    tt.equal(hit.v.bytes.toString(), 'row 42');
    tt.equal(hit.v.hasParse, true);
    if (impl.workers > 0) {
      // The entry's own shared memory, exactly its bytes: nothing copied on the way back.
      tt.ok(hit.v.bytes.buffer instanceof SharedArrayBuffer, 'a view of shared memory');
      tt.equal(hit.v.bytes.buffer.byteLength, 'row 42'.length);
    }

    // A large answer, byte for byte, and hasParse false.
    const big = Buffer.alloc(64 * 1024 + 3);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
    const rb = req('SELECT big');
    await store(layer, rb, { bytes: big, hasParse: false });
    await settle(layer);
    const bigHit = await ask(layer, rb);
    tt.equal(bigHit.v.kind, 'hit');
    if (bigHit.v.kind === 'hit') {
      tt.ok(bigHit.v.bytes.equals(big), '64 KiB answer intact');
      tt.equal(bigHit.v.hasParse, false);
    }
    await settle(layer);
    const c = layer.counters();
    tt.has(c, { hits: 2, misses: 2, leaders: 2, waiters: 0, stores: 2, entries: 2, bypasses: 0 });
    tt.ok(c.bytes! >= big.length + 6, `bytes counts the stored answers (${c.bytes})`);
  });

  t.test(`${impl.name}: singleflight, 5 waiters get the leader's answer`, async (tt) => {
    const layer = open(tt, impl);
    const r = req('SELECT slow()');
    const leader = await ask(layer, r, 'leader');
    tt.equal(leader.v.kind, 'lead');
    const waiters = await Promise.all([1, 2, 3, 4, 5].map((i) => ask(layer, r, `w${i}`)));
    for (const w of waiters) tt.strictSame(w.v, { kind: 'wait', flightId: leader.flightId }, `${w.c.name} waits on the leader's flight`);
    for (const w of waiters) tt.equal(w.flightId, leader.flightId);
    tt.strictSame(
      waiters.map((w) => w.c.answers.length),
      [0, 0, 0, 0, 0],
      'nobody answered before complete()',
    );

    const a = answer('the answer');
    layer.complete(leader.flightId, a, 60_000, 0);
    const got = await Promise.all(waiters.map((w) => w.c.answer()));
    for (const g of got) tt.equal(g, a, 'the very answer object the leader passed');
    await settle(layer);
    tt.has(layer.counters(), { leaders: 1, waiters: 5, stores: 1, hits: 0 });
    const later = await ask(layer, r);
    tt.equal(later.v.kind, 'hit', 'and it was stored');
    await settle(layer);
    for (const w of waiters) tt.equal(w.c.answers.length, 1, `${w.c.name} answered once`);
  });

  t.test(`${impl.name}: complete(null) sends the waiters upstream; they regroup behind a new leader`, async (tt) => {
    const layer = open(tt, impl);
    const r = req('SELECT fails()');
    const leader = await ask(layer, r);
    const waiters = await Promise.all([1, 2, 3, 4, 5].map((i) => ask(layer, r, `w${i}`)));
    layer.complete(leader.flightId, null, 60_000, 0);
    const got = await Promise.all(waiters.map((w) => w.c.answer()));
    tt.strictSame(got, [null, null, null, null, null], 'each runs the query itself');

    // As Client does: ask again. The first one leads a new flight, the others join it.
    for (const w of waiters) layer.lookup(r, w.c);
    const second = await Promise.all(waiters.map((w) => w.c.verdict(1)));
    tt.strictSame(
      second.map((d) => d.v.kind),
      ['lead', 'wait', 'wait', 'wait', 'wait'],
    );
    const newFlight = second[0]!.flightId;
    tt.not(newFlight, leader.flightId, 'a new flight');
    for (const d of second.slice(1)) tt.equal(d.flightId, newFlight);
    const a = answer('second try');
    layer.complete(newFlight, a, 0, 0);
    const got2 = await Promise.all(waiters.slice(1).map((w) => w.c.answer(1)));
    for (const g of got2) tt.equal(g, a);
    await settle(layer);
    tt.has(layer.counters(), { leaders: 2, waiters: 9, reruns: 5, stores: 0, entries: 0 });
  });

  t.test(`${impl.name}: a waiter that leaves is never called back`, async (tt) => {
    const layer = open(tt, impl);
    const r = req('SELECT leave()');
    const leader = await ask(layer, r);
    const [w1, w2, w3] = await Promise.all(['w1', 'w2', 'w3'].map((n) => ask(layer, r, n)));
    layer.leave(leader.flightId, w2!.c);
    const a = answer('x');
    layer.complete(leader.flightId, a, 60_000, 0);
    tt.equal(await w1!.c.answer(), a);
    tt.equal(await w3!.c.answer(), a);
    await settle(layer);
    await sleep(20);
    tt.equal(w2!.c.answers.length, 0, 'the leaver got nothing');
    tt.equal(w1!.c.answers.length + w3!.c.answers.length, 2, 'the others exactly one each');

    // Leaving right after the leader completed: the answer may have reached it already (local:
    // complete() answers at once), but nothing may arrive after leave() returned.
    const r2 = req('SELECT leave2()');
    const leader2 = await ask(layer, r2);
    const w4 = await ask(layer, r2, 'w4');
    layer.complete(leader2.flightId, answer('y'), 0, 0);
    layer.leave(leader2.flightId, w4.c);
    const atLeave = w4.c.answers.length;
    await settle(layer);
    await sleep(20);
    tt.equal(w4.c.answers.length, atLeave, `no callback after leave() (had ${atLeave} before)`);
  });

  t.test(`${impl.name}: invalidate during a flight: no store, newcomers start a new flight`, async (tt) => {
    const layer = open(tt, impl);
    const r = req('SELECT * FROM t1', 'app', ['t1']);
    const leader = await ask(layer, r, 'leader');
    const early = await ask(layer, r, 'early');
    tt.equal(early.v.kind, 'wait', 'joined before the write');

    // Writes elsewhere do not matter.
    layer.invalidate('app', ['t2']);
    layer.invalidate('other', ['t1']);
    const still = await ask(layer, r, 'still');
    tt.strictSame(still.v, { kind: 'wait', flightId: leader.flightId }, 'unrelated writes: still joins');

    layer.invalidate('app', ['t1']);
    const late = await ask(layer, r, 'late');
    tt.equal(late.v.kind, 'lead', 'after the write: leads a new flight');
    tt.not(late.flightId, leader.flightId);

    const a = answer('read before the write');
    layer.complete(leader.flightId, a, 60_000, 0);
    tt.equal(await early.c.answer(), a, 'who joined before the write gets the answer');
    tt.equal(await still.c.answer(), a);
    await settle(layer);
    tt.has(layer.counters(), { stores: 0, stale_skips: 1, invalidations: 3, entries: 0 });

    // The new flight is the one to join now, and it stores.
    const next = await ask(layer, r, 'next');
    tt.strictSame(next.v, { kind: 'wait', flightId: late.flightId });
    const b = answer('read after the write');
    layer.complete(late.flightId, b, 60_000, 0);
    tt.equal(await next.c.answer(), b);
    await settle(layer);
    const hit = await ask(layer, r);
    tt.equal(hit.v.kind === 'hit' && hit.v.bytes.toString(), 'read after the write');
    await settle(layer);
    tt.has(layer.counters(), { stores: 1, stale_skips: 1, entries: 1 });
  });

  t.test(`${impl.name}: invalidate(db, tables) and invalidate(db, null) drop what they should`, async (tt) => {
    const layer = open(tt, impl);
    const a1 = req('a1', 'a', ['t1']);
    const a2 = req('a2', 'a', ['t2']);
    const a12 = req('a12', 'a', ['t1', 't2']);
    const b1 = req('b1', 'b', ['t1']);
    for (const r of [a1, a2, a12, b1]) await store(layer, r, answer(r.key));
    await settle(layer);
    tt.has(layer.counters(), { entries: 4, stores: 4 });

    layer.invalidate('a', ['t1']);
    const kinds = async () => {
      const out: Record<string, string> = {};
      for (const r of [a1, a2, a12, b1]) {
        const d = await ask(layer, r);
        out[r.key] = d.v.kind;
        if (d.v.kind === 'lead') layer.complete(d.flightId, null, 0, 0);
      }
      return out;
    };
    tt.strictSame(await kinds(), { a1: 'lead', a2: 'hit', a12: 'lead', b1: 'hit' }, 'a.t1 went, a.t2 and b.t1 stayed');
    await settle(layer);
    tt.has(layer.counters(), { invalidated_entries: 2, entries: 2 });

    layer.invalidate('a', null);
    tt.strictSame(await kinds(), { a1: 'lead', a2: 'lead', a12: 'lead', b1: 'hit' }, 'all of a went, b stayed');
    await settle(layer);
    tt.has(layer.counters(), { invalidations: 2, invalidated_entries: 3, entries: 1 });
  });

  t.test(`${impl.name}: entries expire after their TTL`, async (tt) => {
    const layer = open(tt, impl);
    // Two entries, so that no timing can make the test lie: one lives far longer than any stall
    // of a busy machine, the other is certainly over its TTL after the sleep (time only moves on).
    const fresh = req('SELECT now()');
    const stale = req('SELECT clock_timestamp()');
    await store(layer, fresh, answer('t0'), 60_000);
    await store(layer, stale, answer('t1'), 50);
    await settle(layer);
    tt.equal((await ask(layer, fresh)).v.kind, 'hit', 'within its TTL: a hit');
    await sleep(200);
    const after = await ask(layer, stale);
    tt.equal(after.v.kind, 'lead', 'past its TTL: a miss');
    layer.complete(after.flightId, null, 0, 0);
    await settle(layer);
    tt.has(layer.counters(), { hits: 1, misses: 3, expirations: 1, entries: 1 });
  });

  t.test(`${impl.name}: bypassMs sends the key upstream without a flight for that long`, async (tt) => {
    const layer = open(tt, impl);
    const r = req('SELECT huge');
    const leader = await ask(layer, r);
    const w = await ask(layer, r);
    layer.complete(leader.flightId, null, 0, 150);
    tt.equal(await w.c.answer(), null, 'the waiter runs it itself');
    const during = await ask(layer, r);
    tt.equal(during.v.kind, 'bypass');
    const during2 = await ask(layer, r);
    tt.equal(during2.v.kind, 'bypass', 'no flight to join either');
    await sleep(250);
    const after = await ask(layer, r);
    tt.equal(after.v.kind, 'lead', 'over: leads again');
    layer.complete(after.flightId, null, 0, 0);
    await settle(layer);
    tt.has(layer.counters(), { bypasses: 2, leaders: 2, waiters: 1 });
  });

  t.test(`${impl.name}: cache only (no singleflight): concurrent lookups both lead`, async (tt) => {
    const layer = open(tt, impl, { singleflight: false });
    const r = req('SELECT twice');
    const c1 = new FakeClient();
    const c2 = new FakeClient();
    layer.lookup(r, c1);
    layer.lookup(r, c2);
    const [d1, d2] = await Promise.all([c1.verdict(), c2.verdict()]);
    tt.equal(d1.v.kind, 'lead');
    tt.equal(d2.v.kind, 'lead');
    tt.not(d1.flightId, d2.flightId, 'two flights');
    layer.complete(d1.flightId, answer('one'), 60_000, 0);
    layer.complete(d2.flightId, answer('two'), 60_000, 0);
    await settle(layer);
    const hit = await ask(layer, r);
    tt.equal(hit.v.kind === 'hit' && hit.v.bytes.toString(), 'two', 'the last store wins');
    await settle(layer);
    tt.has(layer.counters(), { leaders: 2, misses: 2, waiters: 0, stores: 2, entries: 1, hits: 1 });
  });

  t.test(`${impl.name}: singleflight only (no cache): answers are shared, never stored`, async (tt) => {
    const layer = open(tt, impl, { cache: false });
    const r = req('SELECT shared');
    const leader = await ask(layer, r);
    const w = await ask(layer, r);
    tt.strictSame(w.v, { kind: 'wait', flightId: leader.flightId });
    const a = answer('shared');
    layer.complete(leader.flightId, a, 60_000, 0);
    tt.equal(await w.c.answer(), a);
    await settle(layer);
    const again = await ask(layer, r);
    tt.equal(again.v.kind, 'lead', 'nothing stored: leads again');
    layer.complete(again.flightId, null, 0, 0);
    await settle(layer);
    tt.has(layer.counters(), { leaders: 2, waiters: 1, misses: 0, hits: 0, stores: 0, entries: 0, bytes: 0 });
  });

  t.test(`${impl.name}: flush drops every entry`, async (tt) => {
    const layer = open(tt, impl);
    const rs = [req('f1', 'a'), req('f2', 'a', ['t9']), req('f3', 'b'), req('f4', 'c')];
    for (const r of rs) await store(layer, r, answer(r.key));
    await settle(layer);
    tt.has(layer.counters(), { entries: 4 });
    layer.flush();
    for (const r of rs) {
      const d = await ask(layer, r);
      tt.equal(d.v.kind, 'lead', `${r.key} gone`);
      layer.complete(d.flightId, null, 0, 0);
    }
    await settle(layer);
    // A flush is one invalidation that drops every entry.
    tt.has(layer.counters(), { entries: 0, bytes: 0, invalidated_entries: 4, invalidations: 1 });
  });

  t.test(`${impl.name}: LRU bound per shard (maxEntries / workers)`, async (tt) => {
    const perShard = 2;
    const layer = open(tt, impl, { maxEntries: perShard * Math.max(1, impl.workers) });
    const [k1, k2, k3] = keysOn(layer, 0, 3, 'lru');
    await store(layer, req(k1!), answer('1'));
    await store(layer, req(k2!), answer('2'));
    await settle(layer);
    tt.equal((await ask(layer, req(k1!))).v.kind, 'hit', 'k1 touched: k2 is now the oldest');
    await store(layer, req(k3!), answer('3'));
    await settle(layer);
    const kinds: string[] = [];
    for (const k of [k1!, k2!, k3!]) {
      const d = await ask(layer, req(k));
      kinds.push(d.v.kind);
      if (d.v.kind === 'lead') layer.complete(d.flightId, null, 0, 0);
    }
    tt.strictSame(kinds, ['hit', 'lead', 'hit'], 'the least recently used went');
    await settle(layer);
    tt.has(layer.counters(), { evictions: 1, entries: 2 });
  });

  t.test(`${impl.name}: many keys over the shards, all hit afterwards`, async (tt) => {
    const layer = open(tt, impl);
    const keys = Array.from({ length: 300 }, (_, i) => `SELECT ${i} -- ${'x'.repeat(i % 50)}`);
    // All in flight at once, like many clients.
    const leads = keys.map(() => new FakeClient());
    keys.forEach((k, i) => layer.lookup(req(k), leads[i]!));
    const ds = await Promise.all(leads.map((c) => c.verdict()));
    tt.ok(
      ds.every((d) => d.v.kind === 'lead'),
      'every key leads',
    );
    tt.equal(new Set(ds.map((d) => d.flightId)).size, keys.length, 'flight ids are unique across shards');
    ds.forEach((d, i) => layer.complete(d.flightId, answer(`answer ${i}`, i % 2 === 0), 60_000, 0));
    await settle(layer);
    const hits = keys.map(() => new FakeClient());
    keys.forEach((k, i) => layer.lookup(req(k), hits[i]!));
    const hs = await Promise.all(hits.map((c) => c.verdict()));
    const wrong = hs.flatMap((d, i) => (d.v.kind === 'hit' && d.v.bytes.toString() === `answer ${i}` && d.v.hasParse === (i % 2 === 0) ? [] : [i]));
    tt.strictSame(wrong, [], 'every key hits with its own answer');
    await settle(layer);
    tt.has(layer.counters(), { entries: 300, stores: 300, hits: 300, leaders: 300 });
    if (layer instanceof WorkerCacheLayer) {
      const perShard = new Array<number>(impl.workers).fill(0);
      for (const k of keys) perShard[layer.shardOf(k)]!++;
      tt.ok(
        perShard.every((n) => n >= 300 / impl.workers / 2),
        `keys spread over the shards: ${perShard.join(', ')}`,
      );
    }
  });
}

/** The same mixed script on every implementation: the counters must agree exactly. */
async function script(layer: CacheLayer): Promise<Record<string, number>> {
  const rs = Array.from({ length: 12 }, (_, i) => req(`script ${i}`, i % 3 === 0 ? 'b' : 'a', i % 2 === 0 ? ['t1'] : ['t2', 't3']));
  for (const r of rs.slice(0, 8)) await store(layer, r, answer(`${r.key} answer`, true));
  await settle(layer);
  for (const r of rs.slice(0, 10)) {
    const d = await ask(layer, r);
    if (d.v.kind === 'lead') layer.complete(d.flightId, null, 0, 0);
  }
  // A flight with waiters, one leaving, one write during the flight.
  const leader = await ask(layer, rs[10]!);
  const ws = await Promise.all([0, 1, 2].map(() => ask(layer, rs[10]!)));
  layer.leave(leader.flightId, ws[1]!.c);
  layer.invalidate(rs[10]!.db, rs[10]!.tables);
  layer.complete(leader.flightId, answer('stale'), 60_000, 0);
  await ws[0]!.c.answer();
  // Too large to share: the waiter reruns it, the next lookup bypasses.
  const big = await ask(layer, rs[11]!);
  const bigWaiter = await ask(layer, rs[11]!);
  layer.complete(big.flightId, null, 0, 60_000);
  await bigWaiter.c.answer();
  await ask(layer, rs[11]!);
  layer.invalidate('a', ['t1']);
  layer.invalidate('b', null);
  layer.flush();
  await settle(layer);
  const c = layer.counters();
  await layer.close();
  return c;
}

t.test('counters agree across implementations on the same script', async (tt) => {
  const results: Record<string, Record<string, number>> = {};
  for (const impl of IMPLS) results[impl.name] = await script(impl.make());
  const local = results.local!;
  tt.has(local, { hits: 8, leaders: 12, waiters: 4, reruns: 1, stores: 8, stale_skips: 1, bypasses: 1 }, 'the script did what it meant');
  tt.ok(local.invalidations! > 3 && local.invalidated_entries! > 0, 'and invalidated entries');
  tt.same(Object.keys(results['workers 1']!), Object.keys(local), 'same keys, same order');
  for (const impl of WORKER_IMPLS) tt.strictSame(results[impl.name], local, `${impl.name} counts as local does`);
});

// ---------------------------------------------------------------------------------------------
// Worker layer only
// ---------------------------------------------------------------------------------------------

t.test('workers 3: a Done for a flight the client left never reaches it, even if it waits on another shard by then', async (tt) => {
  const layer = new FaultyWorkerCacheLayer({ ...BASE, workers: 3 });
  tt.teardown(() => layer.close());
  const [kA] = keysOn(layer, 0, 1, 'race-a');
  const [kB] = keysOn(layer, 1, 1, 'race-b');
  const la = await ask(layer, req(kA!), 'leader A');
  const lb = await ask(layer, req(kB!), 'leader B');
  const x = new FakeClient('x');
  layer.lookup(req(kA!), x);
  tt.strictSame((await x.verdict(0)).v, { kind: 'wait', flightId: la.flightId });

  // Shard 0 is slow: its Done for A (which lists x) comes after x joined B on shard 1.
  layer.stallShard(0, 300);
  const ansA = answer('A');
  layer.complete(la.flightId, ansA, 0, 0);
  layer.leave(la.flightId, x);
  layer.lookup(req(kB!), x);
  tt.strictSame((await x.verdict(1)).v, { kind: 'wait', flightId: lb.flightId });
  await settle(layer); // shard 0's Done for A has been handled now
  tt.strictSame(x.answers, [], 'A did not answer x');
  const ansB = answer('B');
  layer.complete(lb.flightId, ansB, 0, 0);
  tt.equal(await x.answer(0), ansB, 'B did');
  await settle(layer);
  tt.equal(x.answers.length, 1);
});

for (const how of ['throw', 'terminate'] as const) {
  t.test(`workers 3: a worker that dies (${how}) releases everyone and its keys bypass`, async (tt) => {
    const errors: string[] = [];
    const layer = new FaultyWorkerCacheLayer({ ...BASE, workers: 3 }, (m) => errors.push(m));
    tt.teardown(() => layer.close());
    const [kStored, kLead, kDone, kLate] = keysOn(layer, 0, 4, 'dead');
    const [kOther] = keysOn(layer, 1, 1, 'alive');
    await store(layer, req(kStored!), answer('on shard 0'));
    await store(layer, req(kOther!), answer('on shard 1'));
    await settle(layer);
    tt.has(layer.counters(), { entries: 2 });

    // A flight whose leader is still running, and one whose leader completes right after the crash.
    const lead = await ask(layer, req(kLead!), 'leader');
    const waiters = await Promise.all([1, 2].map((i) => ask(layer, req(kLead!), `w${i}`)));
    const lead2 = await ask(layer, req(kDone!), 'leader 2');
    const w3 = await ask(layer, req(kDone!), 'w3');
    tt.equal(w3.v.kind, 'wait');

    layer.crashShard(0, how);
    const a2 = answer('finished as the worker died');
    layer.complete(lead2.flightId, a2, 60_000, 0); // posted, never handled
    const pending = new FakeClient('pending');
    layer.lookup(req(kLate!), pending); // posted, never answered by the worker

    tt.strictSame((await pending.verdict()).v, { kind: 'bypass' }, 'a pending lookup is told to bypass');
    for (const w of waiters) tt.equal(await w.c.answer(), null, `${w.c.name}: its leader's completion would go nowhere: run it yourself`);
    tt.equal(await w3.c.answer(), a2, 'w3: the completion was posted, the answer is here: it gets it');

    // Later lookups for shard 0 bypass at once; the leader can still complete (into nothing).
    const late = new FakeClient('late');
    layer.lookup(req(kStored!), late);
    tt.strictSame(late.verdicts.map((d) => d.v.kind), ['bypass'], 'answered synchronously, no cache');
    layer.complete(lead.flightId, answer('too late'), 60_000, 0);
    layer.leave(lead.flightId, waiters[0]!.c);
    layer.invalidate('app', null);
    await sleep(100); // 'error' and 'exit' both arrive
    tt.equal(errors.length, 1, 'reported once');
    tt.match(errors[0], /cache worker 0 /);
    tt.equal(layer.liveWorkers, 2);
    for (const w of waiters) tt.equal(w.c.answers.length, 1, `${w.c.name} released once`);
    tt.has(layer.counters(), { reruns: 2 }, 'the two released waiters rerun');

    // The other shards carry on (the invalidate above reached them).
    const other = await ask(layer, req(kOther!));
    tt.equal(other.v.kind, 'lead');
    layer.complete(other.flightId, answer('again'), 60_000, 0);
    await settle(layer);
    const hit = await ask(layer, req(kOther!));
    tt.equal(hit.v.kind === 'hit' && hit.v.bytes.toString(), 'again');
    await settle(layer);
    tt.has(layer.counters(), { entries: 1 }, "the dead shard's entries are gone from the counters");
    const final = await layer.close();
    tt.equal(final.entries, 1);
    tt.equal(errors.length, 1, 'closing reports nothing more');
  });
}

t.test('workers 1: the only worker dies, everything bypasses', async (tt) => {
  const errors: string[] = [];
  const layer = new FaultyWorkerCacheLayer({ ...BASE, workers: 1 }, (m) => errors.push(m));
  tt.teardown(() => layer.close());
  const r = req('solo');
  const lead = await ask(layer, r);
  const w = await ask(layer, r);
  layer.crashShard(0, 'throw');
  tt.equal(await w.c.answer(), null);
  const after = await ask(layer, r);
  tt.equal(after.v.kind, 'bypass');
  layer.complete(lead.flightId, answer('x'), 60_000, 0);
  await sleep(50);
  tt.equal(errors.length, 1);
  tt.equal(layer.liveWorkers, 0);
  tt.has(await layer.close(), { leaders: 1, waiters: 1 });
});

t.test('workers 2: close() answers what is in flight, releases waiters, then everything bypasses', async (tt) => {
  const errors: string[] = [];
  const layer = new WorkerCacheLayer({ ...BASE, workers: 2 }, (m) => errors.push(m));
  const r = req('closing');
  await store(layer, req('kept'), answer('kept'));
  const lead = await ask(layer, r);
  const w = await ask(layer, r);
  const inFlight = new FakeClient();
  layer.lookup(req('kept'), inFlight);
  const closing = layer.close();
  tt.equal(layer.close(), closing, 'close() twice: the same promise');
  const final = await closing;
  tt.equal(inFlight.verdicts[0]?.v.kind, 'hit', 'a lookup posted before close() is answered');
  tt.equal(await w.c.answer(), null, 'a waiter whose leader never completed is released');
  tt.has(final, { entries: 1, stores: 1, hits: 1, leaders: 2, waiters: 1, reruns: 1 });
  tt.equal(layer.liveWorkers, 0);
  const after = new FakeClient();
  layer.lookup(r, after);
  tt.strictSame(after.verdicts.map((d) => d.v.kind), ['bypass']);
  layer.complete(lead.flightId, answer('late'), 60_000, 0);
  tt.strictSame(errors, []);
});

t.test('workers 2: close() does not wait for a stuck worker for ever', async (tt) => {
  const errors: string[] = [];
  const layer = new FaultyWorkerCacheLayer({ ...BASE, workers: 2 }, (m) => errors.push(m));
  await layer.sync();
  layer.stallShard(1, 10_000);
  const t0 = Date.now();
  const final = await layer.close();
  const ms = Date.now() - t0;
  tt.ok(ms >= 1900 && ms < 5000, `gave up after the 2 s timeout (${ms} ms)`);
  tt.strictSame(errors.length, 1);
  tt.match(errors[0], /cache workers 1 did not answer/);
  tt.equal(layer.liveWorkers, 0);
  tt.equal(final.leaders, 0);
});

t.test('workers 2: unknown flight ids are ignored', async (tt) => {
  const layer = new WorkerCacheLayer({ ...BASE, workers: 2 });
  tt.teardown(() => layer.close());
  layer.complete(0, answer('x'), 60_000, 0);
  layer.complete(-5, answer('x'), 60_000, 0);
  layer.complete(999_999_999, answer('x'), 60_000, 0);
  layer.leave(12345, new FakeClient());
  await settle(layer);
  tt.has(layer.counters(), { stores: 0, entries: 0 });
  tt.equal(layer.liveWorkers, 2);
});

t.test('the workers do not keep the process alive', async (tt) => {
  const modulePath = path.join(__dirname, '../../src/cache/worker-layer.js');
  const code = `
    const { WorkerCacheLayer } = require(${JSON.stringify(modulePath)});
    const layer = new WorkerCacheLayer({ cache: true, singleflight: true, maxBytes: 1 << 20, maxEntries: 100, workers: 2 });
    const client = {
      id: 1,
      onVerdict(v) { console.log('verdict ' + v.kind); },
      onFlightDone() {},
    };
    layer.lookup({ key: 'k', db: 'd', tables: [] }, client);
    layer.invalidate('d', null);
  `;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
  clearTimeout(timer);
  tt.equal(signal, null, 'exited by itself (not killed after 10 s)');
  tt.equal(exitCode, 0);
  tt.equal(out, 'verdict lead\n', 'after the pending verdict arrived (a pending reply keeps it alive)');
});
