/** What `make stress` reads back: the server log's ERRORs, sysbench's and pgbench's reports. */
import * as fs from 'node:fs';
import type { PgCluster } from '../../test/harness/pg-cluster';
import type { RunResult } from '../../test/harness/run';
import { classifySql } from '../lib/stress-log-scan';

/** A query whose one value is JSON, directly on the cluster. */
export async function psqlJson<T>(pg: PgCluster, sql: string, db = 'postgres'): Promise<T> {
  const out = await pg.psql(sql, { db });
  return JSON.parse(out || 'null') as T;
}

export interface ServerErrors {
  /** database -> SQLSTATE -> ERROR lines */
  byDb: Record<string, Record<string, number>>;
  /** database -> ERRORs whose STATEMENT is a utility (incl. transaction-control) statement */
  onUtility: Record<string, number>;
  examples: string[];
}

/** ERROR lines the server logged after byte `from`, by database and SQLSTATE. */
export function serverErrors(logFile: string, from: number): ServerErrors {
  const res: ServerErrors = { byDb: {}, onUtility: {}, examples: [] };
  const fd = fs.openSync(logFile, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.max(0, size - from));
    fs.readSync(fd, buf, 0, buf.length, from);
    const pending = new Map<string, string>(); // pid -> database of its last ERROR
    for (const line of buf.toString('utf8').split('\n')) {
      const m = / \[(\d+)\] db=(\S*) sqlstate=(\w{5}) (ERROR|STATEMENT): {2}(.*)$/.exec(line);
      if (!m) continue;
      const [, pid, dbRaw, state, level, text] = m as unknown as [string, string, string, string, string, string];
      const db = dbRaw || '(none)';
      if (level === 'ERROR') {
        const per = (res.byDb[db] ??= {});
        per[state] = (per[state] ?? 0) + 1;
        pending.set(pid, db);
        if (res.examples.length < 10) res.examples.push(line.slice(0, 240));
      } else if (pending.has(pid)) {
        pending.delete(pid);
        const kind = classifySql(text);
        if (kind === 'txn' || kind === 'utility') res.onUtility[db] = (res.onUtility[db] ?? 0) + 1;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return res;
}

/** A file's size, 0 when it is missing. */
export const fileSize = (f: string): number => {
  try {
    return fs.statSync(f).size;
  } catch {
    return 0;
  }
};

export interface SysbenchResult {
  exit: number | null;
  signal: string | null;
  tps: number;
  qps: number;
  transactions: number;
  queries: number;
  ignoredErrors: number;
  reconnects: number;
  latAvgMs: number;
  lat95Ms: number;
  fatal: string[];
  intervals: Array<{ t: number; tps: number; qps: number; errPerSec: number }>;
}

/** sysbench's final report and its interval lines. */
export function parseSysbench(r: RunResult): SysbenchResult {
  const out = r.stdout + '\n' + r.stderr;
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : NaN;
  };
  const intervals: SysbenchResult['intervals'] = [];
  for (const m of out.matchAll(/^\[ (\d+)s \] thds: \d+ tps: ([\d.]+) qps: ([\d.]+) .*? err\/s: ([\d.]+)/gm)) {
    intervals.push({ t: Number(m[1]), tps: Number(m[2]), qps: Number(m[3]), errPerSec: Number(m[4]) });
  }
  return {
    exit: r.code,
    signal: r.signal,
    transactions: num(/^\s+transactions:\s+(\d+)/m),
    tps: num(/^\s+transactions:\s+\d+\s+\(([\d.]+) per sec/m),
    queries: num(/^\s+queries:\s+(\d+)/m),
    qps: num(/^\s+queries:\s+\d+\s+\(([\d.]+) per sec/m),
    ignoredErrors: num(/^\s+ignored errors:\s+(\d+)/m),
    reconnects: num(/^\s+reconnects:\s+(\d+)/m),
    latAvgMs: num(/^\s+avg:\s+([\d.]+)/m),
    lat95Ms: num(/^\s+95th percentile:\s+([\d.]+)/m),
    fatal: out.split('\n').filter((l) => /FATAL|ALERT/.test(l)).slice(0, 10),
    intervals,
  };
}

export interface PgbenchResult {
  exit: number | null;
  signal: string | null;
  tps: number;
  transactions: number;
  failed: number;
  latAvgMs: number;
  aborted: string[];
  intervals: Array<{ t: number; tps: number; failed: number }>;
}

/** pgbench's final report and its progress lines. */
export function parsePgbench(r: RunResult): PgbenchResult {
  const out = r.stdout + '\n' + r.stderr;
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : NaN;
  };
  const intervals: PgbenchResult['intervals'] = [];
  for (const m of out.matchAll(/^progress: ([\d.]+) s, ([\d.]+) tps.*?(?:, (\d+) failed)?$/gm)) {
    intervals.push({ t: Number(m[1]), tps: Number(m[2]), failed: Number(m[3] ?? 0) });
  }
  const failed = num(/number of failed transactions: (\d+)/);
  return {
    exit: r.code,
    signal: r.signal,
    tps: num(/tps = ([\d.]+) \(without initial connection time\)/),
    transactions: num(/number of transactions actually processed: (\d+)/),
    failed: Number.isNaN(failed) ? 0 : failed,
    latAvgMs: num(/latency average = ([\d.]+) ms/),
    aborted: out.split('\n').filter((l) => /aborted|error/i.test(l) && !/^progress:/.test(l)).slice(0, 10),
    intervals,
  };
}
