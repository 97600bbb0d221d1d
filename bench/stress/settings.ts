/** `make stress`'s knobs (environment) and constants: see the header of bench/stress.ts. */
import { envInt, repoRoot } from '../lib/common';

export const ROOT = repoRoot();
export const DURATION = envInt('DURATION', 300);
/** Extra pgscribe flags, e.g. PGSCRIBE_ARGS='--cache --singleflight'. */
export const PGSCRIBE_ARGS = (process.env['PGSCRIBE_ARGS'] ?? '').split(/\s+/).filter((a) => a !== '');
/** Extra sysbench run options, e.g. SYSBENCH_ARGS='--skip_trx=on' (autocommit: cacheable reads). */
export const SYSBENCH_ARGS = (process.env['SYSBENCH_ARGS'] ?? '').split(/\s+/).filter((a) => a !== '');
export const THREADS = envInt('THREADS', 64);
export const PGBENCH_CLIENTS = envInt('PGBENCH_CLIENTS', 8);
export const TABLES = envInt('TABLES', 4);
export const TABLE_SIZE = envInt('TABLE_SIZE', 10000);
export const SCALE = envInt('SCALE', 5);
export const STATS_INTERVAL_MS = 5000;
export const SB_DB = 'sbtest';
export const PGB_DB = 'pgbench';
/** SQLSTATEs sysbench 1.0.20's pgsql driver treats as ignorable (drv_pgsql.c, pgsql_check_status). */
export const SYSBENCH_IGNORED = ['40P01', '40001', '23505'];
/** SQLSTATEs pgbench (PostgreSQL 15) counts as failed transactions instead of aborting the client. */
export const PGBENCH_FAILURES = ['40001', '40P01'];
export const RSS_TOLERANCE = 0.2;

/** A progress line on stderr. */
export const say = (msg: string): void => void process.stderr.write(`[stress ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

export const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
export const fmtInt = (n: number | null | undefined): string => (n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : Math.round(n).toLocaleString('en-US'));
export const fmt = (n: number | null | undefined, d = 1): string => (n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(d));
