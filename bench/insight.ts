/**
 * Micro-benchmark of Insight.record() (no sockets, no PostgreSQL): nanoseconds per completed
 * query, the cost the proxy adds per query when digests are on.
 *
 * Workloads (each cycles through pgbench's TPC-B statements, the select one answered by the
 * cache half of the time):
 *  - prepared: the texts pgbench -M prepared / extended sends (the same $n text every time): the
 *    memo finds the digest without normalising.
 *  - simple: the texts pgbench -M simple sends, with fresh literals (POOL distinct texts made
 *    before the clock starts, so their making is not counted): one normalising pass per call.
 *  - normalize only: normalizeSql() over the simple texts, to split the simple figure.
 *  - churn: every text a new shape (`select cN from tK where a = $1`), with maxDigests 2000:
 *    creation, classification and batch eviction every 200 new digests, amortised.
 * The sample object is reused (mutated) between calls: what the caller allocates is not counted.
 * Also shown: the heap held by an Insight with 2000 digests (churn), after a forced GC when node
 * runs with --expose-gc.
 *
 * Run: `make compile && node build/bench/insight.js` (or with --expose-gc for the heap figure).
 * Knobs (environment): OPS (default 2000000 per run), REPEATS (5), POOL (100000).
 */
import * as os from 'node:os';
import { Insight, normalizeSql, type CompletionSample } from '../src/insight';
import { envInt, median } from './lib/common';

const OPS = envInt('OPS', 2_000_000);
const REPEATS = envInt('REPEATS', 5);
const POOL = envInt('POOL', 100_000);


/** Deterministic pseudo-random integers in [lo, hi]. */
let seed = 42;
function rand(lo: number, hi: number): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return lo + (seed % (hi - lo + 1));
}

const PREPARED = [
  'BEGIN;',
  'UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;',
  'SELECT abalance FROM pgbench_accounts WHERE aid = $1;',
  'UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;',
  'UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;',
  'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);',
  'END;',
];

/** pgbench -M simple texts: one transaction's 7 statements per 7 entries. */
function simpleTexts(n: number): string[] {
  const out: string[] = [];
  while (out.length < n) {
    const aid = rand(1, 100_000);
    const bid = 1;
    const tid = rand(1, 10);
    const delta = rand(0, 10_000) - 5000;
    out.push(
      'BEGIN;',
      `UPDATE pgbench_accounts SET abalance = abalance + ${delta} WHERE aid = ${aid};`,
      `SELECT abalance FROM pgbench_accounts WHERE aid = ${aid};`,
      `UPDATE pgbench_tellers SET tbalance = tbalance + ${delta} WHERE tid = ${tid};`,
      `UPDATE pgbench_branches SET bbalance = bbalance + ${delta} WHERE bid = ${bid};`,
      `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (${tid}, ${bid}, ${aid}, ${delta}, CURRENT_TIMESTAMP);`,
      'END;',
    );
  }
  // Flat strings, as a socket read decodes them (template results may be ropes).
  return out.map((s) => Buffer.from(s, 'latin1').toString('latin1'));
}

/** Runs `ops` record() calls over `texts`; ns per call. */
function runRecord(ins: Insight, texts: readonly string[], ops: number): number {
  const s: CompletionSample = { sql: '', ms: 0, rows: 1, error: false, cache: undefined, flight: undefined, now: Date.now() };
  const n = texts.length;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) {
    const sql = texts[i % n]!;
    s.sql = sql;
    s.ms = 0.05 + (i & 63) * 0.01;
    // The SELECT (every 7th, third of a transaction) is a cacheable read: hit or miss.
    s.cache = i % 7 === 2 ? ((i & 8) === 0 ? 'hit' : 'miss') : undefined;
    s.now++;
    ins.record(s);
  }
  return Number(process.hrtime.bigint() - t0) / ops;
}

function runNormalize(texts: readonly string[], ops: number): number {
  let x = 0;
  const n = texts.length;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) x += normalizeSql(texts[i % n]!).length;
  const ns = Number(process.hrtime.bigint() - t0) / ops;
  if (x === 0) throw new Error('nothing normalised');
  return ns;
}

function main(): void {
  const simple = simpleTexts(POOL);
  const churn = Array.from({ length: POOL }, (_, i) => `SELECT c${i} FROM t${i % 50} WHERE a = $1`);
  const cases: Array<[string, () => number]> = [
    ['prepared (same $n texts)', () => runRecord(new Insight({ cacheEnabled: true }), PREPARED, OPS)],
    ['simple (distinct literals)', () => runRecord(new Insight({ cacheEnabled: true }), simple, OPS)],
    ['normalizeSql only (simple texts)', () => runNormalize(simple, OPS)],
    ['churn (a new shape each call, 2000 kept)', () => runRecord(new Insight({ cacheEnabled: true }), churn, Math.min(OPS, POOL))],
  ];
  // Warm-up: every path optimised before any clock starts.
  for (const [, f] of cases) f();
  const results = new Map<string, number[]>();
  for (let r = 0; r < REPEATS; r++) {
    for (const [name, f] of cases) {
      const list = results.get(name) ?? [];
      list.push(f());
      results.set(name, list);
    }
  }
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown cpu'} x${os.cpus().length}, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log(`OPS=${OPS} REPEATS=${REPEATS} POOL=${POOL}\n`);
  console.log('| workload | ns per call (median) | min | max |');
  console.log('|---|---:|---:|---:|');
  for (const [name, xs] of results) {
    console.log(`| ${name} | ${median(xs).toFixed(0)} | ${Math.min(...xs).toFixed(0)} | ${Math.max(...xs).toFixed(0)} |`);
  }

  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc !== undefined) {
    gc();
    const before = process.memoryUsage().heapUsed;
    const ins = new Insight({ cacheEnabled: true });
    runRecord(ins, churn, POOL);
    runRecord(ins, simple, 100_000);
    gc();
    const held = process.memoryUsage().heapUsed - before;
    console.log(`\nheap held by one Insight with ${ins.digestCount} digests and ${ins.tableCount} tables: ` +
      `${(held / 2 ** 20).toFixed(1)} MiB (${Math.round(held / ins.digestCount)} bytes per digest)`);
  } else {
    console.log('\n(run node with --expose-gc for the heap held by 2000 digests)');
  }
}

main();
