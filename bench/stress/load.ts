/**
 * `make stress`, the phases that drive traffic: prepare (sysbench prepare and pgbench -i through
 * the proxy), the load (sysbench and pgbench at once, sampled), and collecting what PostgreSQL and
 * the proxy say afterwards. Between them the proxy is brought to rest: no session left and every
 * line it accepted on disk.
 */
import type { Exit, Stats } from '../../test/harness/proxy';
import type { RunResult } from '../../test/harness/run';
import { sleep } from '../../test/harness/time';
import { fileSize, psqlJson, serverErrors, type ServerErrors } from './parse';
import { Sampler } from './sampler';
import { DURATION, PGBENCH_CLIENTS, PGB_DB, SB_DB, SCALE, SYSBENCH_ARGS, TABLES, TABLE_SIZE, THREADS, fmt, say } from './settings';
import type { Setup } from './setup';
import { startTool } from './tools';

export interface Prepared {
  /** The stats line once prepare was over and the proxy at rest. */
  idleBefore: Stats;
  /** Query log lines written by prepare. */
  prepareLines: number;
  /** What sysbench prepare and pgbench -i printed (checked for pgscribe: errors). */
  prepareOutput: string;
  /** Where the server log stood when the load began: its ERRORs after this are the load's. */
  serverLogStart: number;
}

export interface Loaded {
  /** When the load started (ms since the epoch). */
  t0: number;
  loadSeconds: number;
  sampler: Sampler;
  sysbench: RunResult;
  pgbench: RunResult;
}

export interface Collected {
  /** The stats line once the load was over and the proxy at rest (null: it had exited). */
  idleAfter: Stats | null;
  /** Why the proxy did not come to rest, if it did not. */
  quiesceError: string | null;
  aliveAtEnd: boolean;
  pgss: Array<{ db: string; calls: number; entries: number }> | null;
  topStatements: Array<{ db: string; calls: number; query: string }> | null;
  /** pg_stat_statements_info.dealloc: entries it evicted (its call counts are then incomplete). */
  dealloc: number;
  srvErr: ServerErrors;
  /** Its exit on SIGTERM (null: none within 20 s). */
  stopResult: Exit | null;
}

/** No session left, every accepted line on disk; null when the proxy is gone. */
async function quiesce(s: Setup, what: string): Promise<Stats | null> {
  const deadline = Date.now() + 60_000;
  let st: Stats | null = null;
  while (Date.now() < deadline) {
    st = await s.proxy.requestStats();
    if (st === null) return null;
    s.scanner.scan();
    if (st['clients'] === 0 && s.scanner.lines === st['log_lines']) return st;
    await sleep(250);
  }
  throw new Error(`${what}: the proxy did not become idle with its log on disk within 60 s (stats ${JSON.stringify(st)}, lines on disk ${s.scanner.lines})`);
}

/** sysbench prepare and pgbench -i through the proxy (COPY, DDL, multi-row INSERTs), then rest and reset pg_stat_statements. */
export async function prepare(s: Setup): Promise<Prepared> {
  say(`prepare through the proxy: sysbench ${TABLES} x ${TABLE_SIZE} rows, pgbench -i -s ${SCALE}`);
  const sbPrep = startTool('sysbench prepare', 'sysbench', [...s.sbCommon, `--threads=${Math.min(TABLES, 4)}`, 'prepare'], { timeoutMs: 600_000 });
  const pgbInit = startTool('pgbench -i', 'pgbench', ['-i', '-q', '-s', String(SCALE), ...s.pgbConn, PGB_DB], { timeoutMs: 600_000 });
  const [sbPrepR, pgbInitR] = await Promise.all([sbPrep.done, pgbInit.done]);
  const prepProblems: string[] = [];
  if (sbPrepR.code !== 0) prepProblems.push(`sysbench prepare exited ${sbPrepR.code}: ${(sbPrepR.stderr + sbPrepR.stdout).slice(-800)}`);
  if (pgbInitR.code !== 0) prepProblems.push(`pgbench -i exited ${pgbInitR.code}: ${(pgbInitR.stderr + pgbInitR.stdout).slice(-800)}`);
  if (prepProblems.length) throw new Error(prepProblems.join('\n'));
  const prepareOutput = sbPrepR.stdout + sbPrepR.stderr + pgbInitR.stdout + pgbInitR.stderr;

  const idleBefore = await quiesce(s, 'after prepare');
  if (idleBefore === null) throw new Error('the proxy exited during prepare');
  const prepareLines = s.scanner.lines;

  await s.pg.psql('SELECT pg_stat_statements_reset()');
  const serverLogStart = fileSize(s.pg.logFile);
  s.scanner.phase = 'load';
  return { idleBefore, prepareLines, prepareOutput, serverLogStart };
}

/** sysbench oltp_read_write and pgbench -M prepared through the proxy for DURATION seconds, a sample per stats line. */
export async function runLoad(s: Setup): Promise<Loaded> {
  say(`load: sysbench oltp_read_write ${THREADS} threads + pgbench -c ${PGBENCH_CLIENTS} -M prepared for ${DURATION} s`);
  const t0 = Date.now();
  const sampler = new Sampler(s.proxy.pid, t0);
  let lastProgress = 0;
  let lastSbLine = '';
  let lastPgbLine = '';
  s.proxy.onStats = (stats, at) => {
    const smp = sampler.take(stats, at);
    if (smp.phase === 'load' && smp.t - lastProgress >= 30) {
      lastProgress = smp.t;
      const sb = /tps: ([\d.]+)/.exec(lastSbLine)?.[1] ?? '-';
      const pb = /([\d.]+) tps/.exec(lastPgbLine)?.[1] ?? '-';
      say(
        `${smp.t.toFixed(0)}/${DURATION} s: rss ${fmt(smp.rssMb)} MB, heap ${fmt(smp.heapUsedMb)} MB, cpu ${fmt(smp.cpuPct, 0)}%, ` +
          `clients ${fmt(smp.clients, 0)}, sysbench ${sb} tps, pgbench ${pb} tps`,
      );
    }
  };
  void s.proxy.requestStats(); // a sample at t=0
  const toolTimeout = (DURATION + 180) * 1000;
  const sb = startTool('sysbench', 'sysbench', [...s.sbCommon, `--threads=${THREADS}`, `--time=${DURATION}`, '--report-interval=5', '--db-ps-mode=auto', ...SYSBENCH_ARGS, 'run'], {
    timeoutMs: toolTimeout,
    onLine: (l) => {
      if (l.startsWith('[ ')) lastSbLine = l;
    },
  });
  const pgb = startTool(
    'pgbench',
    'pgbench',
    ['-n', '-c', String(PGBENCH_CLIENTS), '-j', '2', '-T', String(DURATION), '-M', 'prepared', '-P', '5', ...s.pgbConn, PGB_DB],
    {
      timeoutMs: toolTimeout,
      onLine: (l) => {
        if (l.startsWith('progress:')) lastPgbLine = l;
      },
    },
  );
  const [sysbench, pgbench] = await Promise.all([sb.done, pgb.done]);
  const loadSeconds = (Date.now() - t0) / 1000;
  sampler.phase = 'end';
  say(`load finished after ${loadSeconds.toFixed(1)} s; waiting for the proxy to be idle`);
  return { t0, loadSeconds, sampler, sysbench, pgbench };
}

/** Rest again, read pg_stat_statements and the server log's ERRORs, then stop the proxy (SIGTERM). */
export async function collect(s: Setup, p: Prepared): Promise<Collected> {
  let idleAfter: Stats | null = null;
  let quiesceError: string | null = null;
  try {
    idleAfter = await quiesce(s, 'after the load');
  } catch (e) {
    quiesceError = (e as Error).message;
  }
  s.proxy.onStats = null;
  const aliveAtEnd = s.proxy.alive;
  s.scanner.scan();

  const pgss = await psqlJson<Array<{ db: string; calls: number; entries: number }> | null>(
    s.pg,
    `SELECT json_agg(x) FROM (SELECT d.datname AS db, sum(s.calls)::bigint AS calls, count(*) AS entries
       FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
      WHERE d.datname IN ('${SB_DB}', '${PGB_DB}') AND s.query NOT LIKE '/* pgscribe */%' GROUP BY d.datname) x`,
  );
  const topStatements = await psqlJson<Array<{ db: string; calls: number; query: string }> | null>(
    s.pg,
    `SELECT json_agg(x) FROM (SELECT d.datname AS db, s.calls, left(regexp_replace(s.query, '\\s+', ' ', 'g'), 100) AS query
       FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
      WHERE d.datname IN ('${SB_DB}', '${PGB_DB}') AND s.query NOT LIKE '/* pgscribe */%' ORDER BY s.calls DESC LIMIT 30) x`,
  );
  const dealloc = Number(await s.pg.psql('SELECT dealloc FROM pg_stat_statements_info'));
  const srvErr = serverErrors(s.pg.logFile, p.serverLogStart);

  say('stopping the proxy (SIGTERM)');
  const stopResult = await s.proxy.stop();
  s.scanner.scan();
  return { idleAfter, quiesceError, aliveAtEnd, pgss, topStatements, dealloc, srvErr, stopResult };
}
