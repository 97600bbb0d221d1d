/**
 * One cell of `make bench`: one pgbench run of one workload against one target, with the target's
 * CPU time per transaction (its process trees, from /proc), its cache hit ratio, and the wal-mode
 * figures (wal-sample.ts) of the wal targets, the measured one and the others beside it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CLK_TCK, treeCpuTicks } from '../../test/harness/proc';
import { run } from '../../test/harness/run';
import { CLIENTS, DURATION, LATENCY_SAMPLE, THREADS, type Workload } from './settings';
import type { CacheCounters, Target } from './target';
import { walFigures, walStatsBefore, walTicks, type Bystander, type WalCell } from './wal-sample';
import { HOTSET_SQL, mergeScripts, parseScripts, scriptFile, writeMixArgs, writeMixEnv, type ScriptStats } from './write-mix';

export interface Cell {
  workload: Workload;
  /** The target's name (with @base for the BASELINE_MAIN build). */
  target: string;
  repeat: number;
  tps: number;
  transactions: number;
  failed: number;
  latencyMeanMs: number;
  latencyP99Ms: number;
  cpuUsPerTxn: number | null;
  /** The cache targets: the cache's hits / (hits + misses) during this run. */
  cacheHitRatio: number | null;
  /** Workloads of several scripts (write-mix): each script's transactions and mean latency. */
  scripts: ScriptStats[] | null;
  /** A wal-mode target: its stream's figures over the run. */
  wal: WalCell | null;
  /** The wal-mode targets beside this run (not the one measured): what their stream cost meanwhile. */
  bystanders: Bystander[];
}

/** pgbench's options for workload w (the hot-set script is written into dir once). */
function workloadArgs(w: Workload, dir: string): string[] {
  switch (w) {
    case 'select-simple':
      return ['-S', '-M', 'simple'];
    case 'select-prepared':
      return ['-S', '-M', 'prepared'];
    case 'tpcb':
      return ['-M', 'simple'];
    case 'hotset':
    case 'hotset-extended':
      return ['-f', scriptFile(dir, 'hotset.sql', HOTSET_SQL), '-M', w === 'hotset' ? 'simple' : 'extended'];
    case 'write-mix':
      return writeMixArgs(dir);
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Latencies (µs) from pgbench -l files: "client_id transaction_no time script_no time_epoch time_us". */
function readLatencies(prefix: string): Float64Array {
  const dir = path.dirname(prefix);
  const base = path.basename(prefix);
  const values: number[] = [];
  for (const f of fs.readdirSync(dir)) {
    if (!f.startsWith(base + '.')) continue;
    const text = fs.readFileSync(path.join(dir, f), 'utf8');
    let start = 0;
    while (start < text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      const a = text.indexOf(' ', start);
      const b = text.indexOf(' ', a + 1);
      const c = text.indexOf(' ', b + 1);
      if (a > 0 && c > b) values.push(Number(text.slice(b + 1, c)));
      start = end + 1;
    }
    fs.rmSync(path.join(dir, f));
  }
  const arr = Float64Array.from(values);
  arr.sort();
  return arr;
}

/** CPU ticks of every process tree charged to t. */
function targetTicks(t: Target): number {
  let n = 0;
  for (const pid of [...(t.pid === null ? [] : [t.pid]), ...(t.extraPids ?? [])]) n += treeCpuTicks(pid);
  return n;
}

/**
 * One measured run: pgbench (one process per instance of the target, the clients split evenly)
 * for DURATION seconds, with the target's CPU time read from /proc before and after.
 */
export async function runCell(w: Workload, t: Target, repeat: number, dir: string, all: readonly Target[]): Promise<Cell> {
  const ports = [t.port, ...(t.extraPorts ?? [])];
  // Several instances: one pgbench per instance, the clients and threads split evenly.
  const clients = Math.max(1, Math.floor(CLIENTS / ports.length));
  const threads = Math.max(1, Math.floor(THREADS / ports.length));
  const prefix = path.join(dir, `pgb-${w}-${t.name}-${repeat}`);
  const argsFor = (port: number, i: number) => [
    '-n',
    '-c',
    String(clients),
    '-j',
    String(threads),
    '-T',
    String(DURATION),
    ...workloadArgs(w, dir),
    '-l',
    // A 10% sample of the transactions gives p99 from 10^4-10^5 latencies per cell while pgbench
    // spends a tenth of the CPU on its log; the same for every target.
    `--sampling-rate=${LATENCY_SAMPLE}`,
    `--log-prefix=${ports.length === 1 ? prefix : `${prefix}-${i}`}`,
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-U',
    'postgres',
    'postgres',
  ];
  // Cache counters are read outside the CPU window: the SHOW query is not the workload's.
  const cache0 = (await t.cacheCounters?.()) ?? null;
  const wal0 = await walStatsBefore(all);
  const walBefore = walTicks(wal0);
  const before = targetTicks(t);
  const env = { ...process.env, ...t.env, ...(w === 'write-mix' ? writeMixEnv() : {}) };
  const results = await Promise.all(ports.map((port, i) => run('pgbench', argsFor(port, i), { timeoutMs: (DURATION + 60) * 1000, cwd: dir, env })));
  const after = targetTicks(t);
  const walAfter = walTicks(wal0);
  const cache1 = (await t.cacheCounters?.()) ?? null;
  const { wal, bystanders } = await walFigures(t, walBefore, walAfter, CLK_TCK);
  let tps = 0;
  let transactions = 0;
  let failed = 0;
  let latencySum = 0;
  const lats: number[] = [];
  const scripts: ScriptStats[][] = [];
  for (const [i, r] of results.entries()) {
    if (r.code !== 0) throw new Error(`pgbench ${argsFor(ports[i]!, i).join(' ')} failed (${r.code}): ${r.stderr}\n${r.stdout}`);
    const num = (re: RegExp) => {
      const m = re.exec(r.stdout);
      return m ? Number(m[1]) : NaN;
    };
    const n = num(/number of transactions actually processed: (\d+)/);
    // The pgbench processes ran side by side for the same time: their rates add up.
    tps += num(/tps = ([\d.]+) \(without initial connection time\)/);
    transactions += n;
    failed += num(/number of failed transactions: (\d+)/) || 0;
    latencySum += num(/latency average = ([\d.]+) ms/) * n;
    scripts.push(parseScripts(r.stdout));
    for (const x of readLatencies(ports.length === 1 ? prefix : `${prefix}-${i}`)) lats.push(x);
  }
  const lat = Float64Array.from(lats);
  lat.sort();
  return {
    workload: w,
    target: t.name,
    repeat,
    tps,
    transactions,
    failed,
    latencyMeanMs: latencySum / transactions,
    latencyP99Ms: percentile(lat, 99) / 1000,
    cpuUsPerTxn: t.pid === null ? null : (((after - before) / CLK_TCK) * 1e6) / transactions,
    cacheHitRatio: cache0 !== null && cache1 !== null ? hitRatio(cache0, cache1) : null,
    scripts: mergeScripts(scripts),
    wal,
    bystanders,
  };
}

function hitRatio(a: CacheCounters, b: CacheCounters): number | null {
  const hits = b.hits - a.hits;
  const lookups = hits + (b.misses - a.misses);
  return lookups > 0 ? hits / lookups : null;
}
