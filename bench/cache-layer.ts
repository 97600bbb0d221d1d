/**
 * Micro-benchmark of the cache layer alone (no sockets, no PostgreSQL): completed round trips per
 * second for LocalCacheLayer (in the event loop thread) vs WorkerCacheLayer with 1, 2 and 4
 * worker threads, with many lookups in flight at once, as many clients would have.
 *
 * Paths:
 *  - `hit`: KEYS keys are stored first; each round trip is lookup() -> 'hit' verdict delivered to
 *    the client with the answer's bytes (checked: kind and length).
 *  - `lead+complete`: every lookup has a key of its own, so it leads; the client at once calls
 *    complete() with the answer to share and store (TTL 60 s). The round trip ends when the shard
 *    has handled the completion (stored the copy): the clock stops after a barrier (sync()) that
 *    waits for every posted completion. The cache fills and evicts as in a steady state.
 * Answer sizes: SMALL bytes (a one-row answer, default 100) and LARGE (64 KiB).
 *
 * CONCURRENCY clients each run lookup -> verdict -> next lookup until OPS round trips are done.
 * The in-thread layer answers synchronously, so its clients effectively run one after another; the
 * worker layer keeps CONCURRENCY requests in flight spread over its shards.
 *
 * Figures per cell (median of REPEATS, rounds interleave the layers after a warm-up in each):
 *  - round trips/s, and the ratio to the in-thread layer for the same path and size;
 *  - main thread µs per round trip: the event loop's busy time (performance.eventLoopUtilization)
 *    divided by the round trips: what the layer costs the thread that also relays every byte;
 *  - CPU µs per round trip, all threads (process.cpuUsage: user + system).
 * Worker threads beyond the machine's CPUs compete with the main thread: see the CPU count line.
 *
 * What differs by design: the in-thread layer stores the leader's Buffer as it is; the worker
 * layer copies a stored answer once, in the event loop thread, into a SharedArrayBuffer (which its
 * hits then share without copying). That copy into fresh memory is most of the 64 KiB
 * lead+complete cost.
 *
 * Run: `make bench-cache` (compiles into build/ then runs `node build/bench/cache-layer.js`).
 * Knobs (environment): OPS (default 200000; the LARGE cases run OPS/4), CONCURRENCY (64),
 * REPEATS (3), KEYS (500: their 64 KiB answers must fit the 64 MiB cache split over 4 shards),
 * SMALL (100), WORKERS (comma list, default 1,2,4).
 *   OPS=50000 REPEATS=5 make bench-cache
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

import { LocalCacheLayer, type CacheLayer, type FlightClient, type LayerOptions, type SharedAnswer, type Verdict } from '../src/cache/layer';
import { WorkerCacheLayer } from '../src/cache/worker-layer';
import { envInt, machineInfo, median, repoRoot } from './lib/common';

const OPS = envInt('OPS', 200_000);
const CONCURRENCY = envInt('CONCURRENCY', 64);
const REPEATS = envInt('REPEATS', 3);
const KEYS = envInt('KEYS', 500);
const WORKERS = (process.env.WORKERS ?? '1,2,4').split(',').map(Number);
const SMALL = envInt('SMALL', 100);
const LARGE = 64 * 1024;
/** The proxy's defaults (--cache-max-bytes, --cache-max-entries). */
const LAYER: Omit<LayerOptions, 'workers'> = { cache: true, singleflight: true, maxBytes: 64 << 20, maxEntries: 1_000_000 };


type PathName = 'hit' | 'lead+complete';

interface Case {
  path: PathName;
  size: number;
  workers: number;
}

interface RunResult {
  ms: number;
  ops: number;
  mainBusyMs: number;
  cpuMs: number;
  /** Null when every round trip did what it should. */
  problem: string | null;
}

function makeLayer(workers: number): CacheLayer {
  return workers === 0 ? new LocalCacheLayer(LAYER) : new WorkerCacheLayer({ ...LAYER, workers });
}

async function settle(layer: CacheLayer): Promise<void> {
  if (layer instanceof WorkerCacheLayer) await layer.sync();
}

/** Keys shaped like the proxy's: statement text plus parameters. */
const keyOf = (prefix: string, i: number): string => `${prefix}\0SELECT abalance FROM pgbench_accounts WHERE aid = $1\0${i}`;

/**
 * Run `ops` round trips with CONCURRENCY clients. A client's next lookup starts from its verdict
 * callback; with the in-thread layer that callback runs inside lookup(), so a trampoline keeps the
 * stack flat.
 */
function drive(layer: CacheLayer, ops: number, keyFor: (i: number) => string, onVerdict: (v: Verdict, flightId: number) => string | null): Promise<string | null> {
  return new Promise((resolve) => {
    let issued = 0;
    let done = 0;
    let problem: string | null = null;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      resolve(problem);
    };
    class Client implements FlightClient {
      private inLookup = false;
      private again = false;
      constructor(readonly id: number) {}
      next(): void {
        do {
          this.again = false;
          if (issued >= ops) return;
          const i = issued++;
          this.inLookup = true;
          layer.lookup({ key: keyFor(i), db: 'bench', tables: ['pgbench_accounts'] }, this);
          this.inLookup = false;
        } while (this.again);
      }
      onVerdict(v: Verdict, flightId: number): void {
        const p = onVerdict(v, flightId);
        if (p !== null && problem === null) problem = p;
        if (++done === ops) finish();
        else if (this.inLookup) this.again = true;
        else this.next();
      }
      onFlightDone(): void {
        if (problem === null) problem = 'unexpected onFlightDone';
      }
    }
    const clients = Array.from({ length: CONCURRENCY }, (_, i) => new Client(i + 1));
    for (const c of clients) c.next();
  });
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

let runNo = 0;

/** One measured run of a case (including its own warm-up), on a fresh layer. */
async function runCase(c: Case, ops: number): Promise<RunResult> {
  const layer = makeLayer(c.workers);
  const answer: SharedAnswer = { bytes: Buffer.alloc(c.size, 0x61), hasParse: false };
  const run = ++runNo;
  try {
    let keyFor: (i: number) => string;
    let check: (v: Verdict, flightId: number) => string | null;
    if (c.path === 'hit') {
      const keys = Array.from({ length: KEYS }, (_, i) => keyOf('hit', i));
      const fill = await drive(layer, KEYS, (i) => keys[i]!, (v, id) => {
        if (v.kind !== 'lead') return `fill: ${v.kind}`;
        layer.complete(id, answer, 60_000, 0);
        return null;
      });
      if (fill !== null) return { ms: 0, ops: 0, mainBusyMs: 0, cpuMs: 0, problem: fill };
      await settle(layer);
      keyFor = (i) => keys[i % KEYS]!;
      check = (v) => (v.kind !== 'hit' ? `${v.kind} instead of hit` : v.bytes.length !== c.size ? `hit of ${v.bytes.length} bytes` : null);
    } else {
      let offset = 0;
      keyFor = (i) => keyOf(`miss-${run}`, offset + i);
      check = (v, id) => {
        if (v.kind !== 'lead') return `${v.kind} instead of lead`;
        layer.complete(id, answer, 60_000, 0);
        return null;
      };
      // Warm-up keys must not collide with the measured ones.
      const warm = await drive(layer, Math.min(ops, 5000), keyFor, check);
      await settle(layer);
      if (warm !== null) return { ms: 0, ops: 0, mainBusyMs: 0, cpuMs: 0, problem: warm };
      offset = 1e9;
    }
    if (c.path === 'hit') {
      const warm = await drive(layer, Math.min(ops, 5000), keyFor, check);
      if (warm !== null) return { ms: 0, ops: 0, mainBusyMs: 0, cpuMs: 0, problem: warm };
    }
    const before = layer.counters();

    // Event loop utilization is booked per loop iteration: start and end on a fresh one, or the
    // in-thread layer's synchronous run would not show.
    await tick();
    const elu0 = performance.eventLoopUtilization();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let problem = await drive(layer, ops, keyFor, check);
    await settle(layer); // every completion handled: the round trips are over
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    await tick();
    const elu = performance.eventLoopUtilization(elu0);

    const after = layer.counters();
    const delta = (k: string) => after[k]! - before[k]!;
    if (problem === null) {
      if (c.path === 'hit' && delta('hits') !== ops) problem = `counters: ${delta('hits')} hits for ${ops} lookups`;
      if (c.path === 'lead+complete' && (delta('leaders') !== ops || delta('stores') !== ops)) {
        problem = `counters: ${delta('leaders')} leaders, ${delta('stores')} stores for ${ops} lookups`;
      }
    }
    return { ms, ops, mainBusyMs: elu.active, cpuMs: (cpu.user + cpu.system) / 1000, problem };
  } finally {
    await layer.close();
  }
}


const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const layerName = (w: number): string => (w === 0 ? 'local' : `workers ${w}`);
const sizeName = (n: number): string => (n >= 1024 ? `${n / 1024} KiB` : `${n} B`);


async function main(): Promise<void> {
  const cases: Case[] = [];
  for (const p of ['hit', 'lead+complete'] as const) {
    for (const size of [SMALL, LARGE]) for (const workers of [0, ...WORKERS]) cases.push({ path: p, size, workers });
  }
  const opsOf = (c: Case) => (c.size >= LARGE ? Math.max(1, Math.floor(OPS / 4)) : OPS);
  const loadAtStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  console.log(`# cache layer benchmark: ${fmtInt(OPS)} round trips (64 KiB: ${fmtInt(OPS / 4)}), ${CONCURRENCY} clients, ${REPEATS} repeats`);
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown cpu'} x${os.cpus().length}, load average ${loadAtStart.join(' ')}\n`);

  const key = (c: Case) => `${c.path}|${c.size}|${c.workers}`;
  const runs = new Map<string, RunResult[]>(cases.map((c) => [key(c), []]));
  for (let r = 1; r <= REPEATS; r++) {
    for (const c of cases) {
      const res = await runCase(c, opsOf(c));
      runs.get(key(c))!.push(res);
      const rate = res.ops / (res.ms / 1000);
      console.log(
        `run ${r}/${REPEATS} ${c.path.padEnd(13)} ${sizeName(c.size).padStart(6)} ${layerName(c.workers).padEnd(9)} ` +
          `${fmtInt(rate).padStart(10)} round trips/s${res.problem ? '  INVALID: ' + res.problem : ''}`,
      );
    }
  }

  interface Row {
    path: PathName;
    answerBytes: number;
    layer: string;
    roundTripsPerSec: number;
    ratioVsLocal: number;
    mainThreadUsPerOp: number;
    cpuUsPerOp: number;
    runsPerSec: number[];
    verified: boolean;
    problems: string[];
  }
  const rows: Row[] = [];
  for (const c of cases) {
    const rs = runs.get(key(c))!;
    const local = runs.get(key({ ...c, workers: 0 }))!;
    const rate = median(rs.map((x) => x.ops / (x.ms / 1000)));
    const localRate = median(local.map((x) => x.ops / (x.ms / 1000)));
    rows.push({
      path: c.path,
      answerBytes: c.size,
      layer: layerName(c.workers),
      roundTripsPerSec: rate,
      ratioVsLocal: rate / localRate,
      mainThreadUsPerOp: median(rs.map((x) => (x.mainBusyMs * 1000) / x.ops)),
      cpuUsPerOp: median(rs.map((x) => (x.cpuMs * 1000) / x.ops)),
      runsPerSec: rs.map((x) => Math.round(x.ops / (x.ms / 1000))),
      verified: rs.every((x) => x.problem === null),
      problems: rs.flatMap((x) => (x.problem === null ? [] : [x.problem])),
    });
  }

  console.log('\n| path | answer | layer | round trips/s | vs local | main thread µs/op | CPU µs/op (all threads) |');
  console.log('|---|---:|---|---:|---:|---:|---:|');
  for (const r of rows) {
    const name = r.verified ? r.layer : `${r.layer} (INVALID)`;
    console.log(
      `| ${r.path} | ${sizeName(r.answerBytes)} | ${name} | ${fmtInt(r.roundTripsPerSec)} | ${r.ratioVsLocal.toFixed(2)}x | ` +
        `${r.mainThreadUsPerOp.toFixed(2)} | ${r.cpuUsPerOp.toFixed(2)} |`,
    );
  }
  console.log(`\nMedian of ${REPEATS}; ${CONCURRENCY} clients; a round trip = lookup to verdict (hit), or lookup to verdict plus the completion handled (lead+complete).`);

  const root = repoRoot();
  const date = new Date();
  const report = {
    benchmark: 'cache-layer',
    date: date.toISOString(),
    machine: machineInfo(loadAtStart),
    config: { ops: OPS, opsLarge: Math.floor(OPS / 4), concurrency: CONCURRENCY, repeats: REPEATS, keys: KEYS, small: SMALL, large: LARGE, layer: LAYER },
    results: rows,
  };
  const stamp = date.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
  const out = path.join(root, 'logs', `bench-cache-layer-${stamp}.json`);
  fs.writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
  console.log(`results: ${path.relative(process.cwd(), out) || out}`);
  if (rows.some((r) => !r.verified)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
