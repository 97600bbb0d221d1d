/** `make bench`'s knobs (environment), workloads and targets: see the header of bench/run.ts. */
import * as fs from 'node:fs';
import * as path from 'node:path';

const env = process.env;
export const DURATION = Number(env['DURATION'] ?? 10);
export const CLIENTS = Number(env['CLIENTS'] ?? 32);
export const THREADS = Number(env['THREADS'] ?? 2);
export const REPEATS = Number(env['REPEATS'] ?? 3);
export const SCALE = Number(env['SCALE'] ?? 10);
/**
 * synchronous_commit of write-mix's sessions (PGOPTIONS, every target alike). The bench cluster
 * runs with synchronous_commit = off (the test harness's setting), under which a commit reaches
 * the change stream only when the WAL writer flushes it (wal_writer_delay, 200 ms): wal mode's
 * read-your-writes hold then waits that long on every write (the smoke run of 2026-12-05 05:17 UTC:
 * write transactions 318 ms mean through pgscribe-cache-wal vs 15 ms through pgscribe-cache).
 * 'on' is PostgreSQL's default; WRITE_MIX_SYNC_COMMIT=off measures the other case.
 */
export const WRITE_MIX_SYNC_COMMIT = env['WRITE_MIX_SYNC_COMMIT'] ?? 'on';
/** Fraction of transactions pgbench logs for the latency percentiles. */
export const LATENCY_SAMPLE = 0.1;

export const ALL_WORKLOADS = ['select-simple', 'select-prepared', 'tpcb', 'hotset', 'hotset-extended', 'write-mix'] as const;
export const ALL_TARGETS = [
  'direct',
  'pgscribe-log',
  'pgscribe-nolog',
  'pgscribe-tls',
  'node-relay',
  // The same relay reading in place (net.Socket's onread): what Node itself allows (issue 21).
  'node-relay-onread',
  // The onread relay plus one line per Q/P/B/E with pgscribe's writer: what logging alone costs (issue 21).
  'node-relay-minlog',
  'pgbouncer',
  'pgscribe-cache',
  // Right after pgscribe-cache: the two invalidation modes run back to back in each repeat.
  'pgscribe-cache-wal',
  // pgscribe-cache again (same build, same flags): the A/A control of the wal-vs-ttl comparison.
  'pgscribe-cache-twin',
  'pgscribe-cache-nolog',
  'pgscribe-cache-w2',
  'pgpool-cache',
  'node-ceiling',
  'pgscribe-insight',
  // What the log's privacy and volume settings cost or save against pgscribe-log (issue 19).
  'pgscribe-log-redact',
  'pgscribe-log-normalized',
  'pgscribe-log-sample10',
  // The replayable log (issue 20) against the JSON log it extends.
  'pgscribe-log-json',
  'pgscribe-log-replay',
  'pgscribe-l2',
  'pgscribe-cache-x2',
  'pgscribe-l2-x2',
  // --processes N (issue 17): the log alone on every read workload, the cache on the hot set.
  'pgscribe-log-p2',
  'pgscribe-cache-p2',
  'pgscribe-cache-p4',
] as const;
export type Workload = (typeof ALL_WORKLOADS)[number];
export type TargetKind = (typeof ALL_TARGETS)[number];
export type PgscribeKind = Extract<TargetKind, `pgscribe-${string}`>;

export const isPgscribe = (k: TargetKind): k is PgscribeKind => k.startsWith('pgscribe-');

export const WORKLOADS = pickList(env['WORKLOADS'], ALL_WORKLOADS);
export const TARGETS = pickList(env['TARGETS'], ALL_TARGETS);

/**
 * Another build of pgscribe (its dist/main.js) to compare with this one in the same run: every
 * pgscribe-* target then also runs as `<target>@base` with it.
 */
export const BASELINE_MAIN: string | null = baselineMain(env['BASELINE_MAIN']);

/** The suffix of the targets that run the BASELINE_MAIN build. */
export const BASE_SUFFIX = '@base';

function pickList<T extends string>(raw: string | undefined, all: readonly T[]): T[] {
  if (raw === undefined || raw === '') return [...all];
  const out = raw.split(',').map((s) => s.trim());
  for (const x of out) if (!(all as readonly string[]).includes(x)) throw new Error(`unknown ${x}; known: ${all.join(', ')}`);
  return out as T[];
}

function baselineMain(raw: string | undefined): string | null {
  if (raw === undefined || raw === '') return null;
  const p = path.resolve(raw);
  if (!fs.existsSync(p)) throw new Error(`BASELINE_MAIN=${raw}: no such file (point it at another build's dist/main.js)`);
  return p;
}
