/**
 * `make stress`, the checks: the proxy stayed up and exited cleanly, clients saw only PostgreSQL's
 * own errors, RSS stayed flat, pg_stat_statements agrees with the query log, and the log's line
 * count agrees with the proxy's own (see the header of bench/stress.ts for each rule).
 */
import type { TypeCounts } from '../lib/stress-log-scan';
import type { Collected, Loaded, Prepared } from './load';
import { parsePgbench, parseSysbench, type PgbenchResult, type SysbenchResult } from './parse';
import { DURATION, PGBENCH_FAILURES, PGB_DB, PGSCRIBE_ARGS, RSS_TOLERANCE, SB_DB, SYSBENCH_IGNORED, fmt, fmtInt, mean } from './settings';
import type { Setup } from './setup';

export interface Check {
  name: string;
  pass: boolean;
  detail: string;
  /** false: the run cannot judge this check (too short); it neither passes nor fails the run. */
  judged?: boolean;
}

/** The statement count of one database, and what it was checked against. */
export interface DbCount {
  E: number;
  qStatements: number;
  errors: number;
  repeatedPreparedTxn: number;
  repeatedPreparedUtility: number;
  emptyExecutes: number;
  errorsOnUtility: number;
  expectedMin: number;
  expectedMax: number;
  calls: number;
  counts: TypeCounts | null;
}

export interface Judgement {
  checks: Check[];
  /** Every judged check passed. */
  pass: boolean;
  sbRes: SysbenchResult;
  pgbRes: PgbenchResult;
  /** The RSS windows compared ([from, to) seconds since the load started) and their means (MB). */
  rss: { base: [number, number]; last: [number, number]; baseMb: number; lastMb: number; windows: string };
  perDb: Record<string, DbCount>;
  /** Query log line counts of the load phase, by database. */
  loadCounts: Map<string, TypeCounts>;
  /** log_lines of the last stats line. */
  finalStatsLines: number | null;
  /** pg_stat_statements' sum(calls) in a database. */
  calls(db: string): number;
  /** PostgreSQL's ERRORs in a database, by SQLSTATE. */
  errsIn(db: string): Record<string, number>;
}

export function judge(s: Setup, p: Prepared, l: Loaded, c: Collected): Judgement {
  const { scanner, proxy } = s;
  const { prepareOutput, prepareLines, idleBefore } = p;
  const { t0, sampler, sysbench: sbR, pgbench: pgbR } = l;
  const { aliveAtEnd, stopResult, srvErr, pgss, idleAfter, dealloc, quiesceError } = c;
  const sbRes = parseSysbench(sbR);
  const pgbRes = parsePgbench(pgbR);
  const checks: Check[] = [];

  checks.push({
    name: 'proxy alive',
    pass: aliveAtEnd && stopResult !== null && stopResult.code === 0,
    detail: aliveAtEnd
      ? `ran through the load; SIGTERM -> ${stopResult === null ? 'no exit within 20 s' : `exit ${stopResult.code ?? stopResult.signal}`}`
      : `EXITED during the run: code ${proxy.exit?.code} signal ${proxy.exit?.signal} at t=${(((proxy.exitAt ?? t0) - t0) / 1000).toFixed(1)} s`,
  });

  const errsIn = (db: string) => srvErr.byDb[db] ?? {};
  const sum = (o: Record<string, number>, keys?: string[]) => Object.entries(o).reduce((a, [k, v]) => a + (keys && !keys.includes(k) ? 0 : v), 0);
  const allClientOutput = prepareOutput + sbR.stdout + sbR.stderr + pgbR.stdout + pgbR.stderr;
  const pgscribeErrors = allClientOutput.split('\n').filter((l) => l.includes('pgscribe:'));
  const sbPgIgnorable = sum(errsIn(SB_DB), SYSBENCH_IGNORED);
  const sbPgOther = sum(errsIn(SB_DB)) - sbPgIgnorable;
  const sbProblems: string[] = [];
  if (sbRes.exit !== 0) sbProblems.push(`exit ${sbRes.exit ?? sbRes.signal}`);
  if (sbRes.fatal.length) sbProblems.push(`FATAL: ${sbRes.fatal[0]}`);
  if (sbRes.ignoredErrors !== sbPgIgnorable) sbProblems.push(`ignored errors ${sbRes.ignoredErrors} != PostgreSQL's ${sbPgIgnorable}`);
  if (sbPgOther !== 0) sbProblems.push(`${sbPgOther} other PostgreSQL errors in ${SB_DB}`);
  if (sbRes.reconnects > 0) sbProblems.push(`${sbRes.reconnects} reconnects`);
  checks.push({
    name: 'sysbench errors only from PostgreSQL',
    pass: sbProblems.length === 0,
    detail:
      `${fmtInt(sbRes.ignoredErrors)} ignored = PostgreSQL ERRORs in ${SB_DB} ${JSON.stringify(errsIn(SB_DB))}` +
      (sbProblems.length ? `; PROBLEMS: ${sbProblems.join('; ')}` : ''),
  });
  const pgbPgFail = sum(errsIn(PGB_DB), PGBENCH_FAILURES);
  const pgbProblems: string[] = [];
  if (pgbRes.exit !== 0) pgbProblems.push(`exit ${pgbRes.exit ?? pgbRes.signal}`);
  if (pgbRes.aborted.length) pgbProblems.push(pgbRes.aborted[0]!);
  if (pgbRes.failed !== pgbPgFail) pgbProblems.push(`failed ${pgbRes.failed} != PostgreSQL's 40001/40P01 ${pgbPgFail}`);
  if (sum(errsIn(PGB_DB)) !== pgbPgFail) pgbProblems.push(`other PostgreSQL errors in ${PGB_DB}: ${JSON.stringify(errsIn(PGB_DB))}`);
  checks.push({
    name: 'pgbench failures only from PostgreSQL',
    pass: pgbProblems.length === 0,
    detail: `${fmtInt(pgbRes.failed)} failed transactions, PostgreSQL 40001/40P01 ERRORs in ${PGB_DB}: ${pgbPgFail}` + (pgbProblems.length ? `; PROBLEMS: ${pgbProblems.join('; ')}` : ''),
  });
  checks.push({
    name: 'no pgscribe: errors at clients',
    pass: pgscribeErrors.length === 0,
    detail: pgscribeErrors.length ? `${pgscribeErrors.length} lines, first: ${pgscribeErrors[0]!.slice(0, 200)}` : 'none in sysbench/pgbench output (prepare and run)',
  });

  // RSS
  const load = sampler.samples.filter((s) => s.phase === 'load' && s.rssMb !== null);
  const tEnd = load.length ? load[load.length - 1]!.t : 0;
  // "RSS after the first minute" vs "RSS in the last minute" needs at least two minutes; a
  // shorter run is mostly V8 and connection warm-up, so it reports RSS without judging it.
  const long = DURATION >= 120;
  const base: [number, number] = long ? [60, 120] : [0, DURATION / 3];
  const lastW: [number, number] = long ? [Math.max(base[1], tEnd - 60), tEnd + 1e-9] : [tEnd - DURATION / 3, tEnd + 1e-9];
  const inW = (w: [number, number]) => load.filter((s) => s.t >= w[0] && s.t < w[1]).map((s) => s.rssMb!);
  const rssBase = mean(inW(base));
  const rssLast = mean(inW(lastW));
  const rssRatio = rssLast / rssBase;
  const rssWindows = long
    ? `mean of the second minute [60,120) s vs the last minute`
    : `first third vs last third; not judged: needs DURATION >= 120 s`;
  checks.push({
    name: 'RSS stable (±20%)',
    pass: Number.isFinite(rssRatio) && Math.abs(rssRatio - 1) <= RSS_TOLERANCE,
    judged: long,
    detail: `${fmt(rssBase)} MB -> ${fmt(rssLast)} MB (${rssRatio >= 1 ? '+' : ''}${fmt((rssRatio - 1) * 100)}%), ${rssWindows}`,
  });

  // With --processes N: each serving process's RSS, the same windows (a process restarted mid-run
  // has a series from its restart on; the windows it misses make it fail, which is right).
  for (const [k, series] of [...proxy.processRss].sort((a, b) => a[0] - b[0])) {
    const at = (w: [number, number]) => series.filter((x) => (x.at - t0) / 1000 >= w[0] && (x.at - t0) / 1000 < w[1]).map((x) => x.mb);
    const b = mean(at(base));
    const e = mean(at(lastW));
    const r = e / b;
    checks.push({
      name: `RSS stable (±20%), process ${k}`,
      pass: Number.isFinite(r) && Math.abs(r - 1) <= RSS_TOLERANCE,
      judged: long,
      detail: `${fmt(b)} MB -> ${fmt(e)} MB (${r >= 1 ? '+' : ''}${fmt((r - 1) * 100)}%), ${rssWindows}`,
    });
  }

  // Statement count
  const loadCounts = scanner.countsFor('load');
  const calls = (db: string) => Number(pgss?.find((r) => r.db === db)?.calls ?? 0);
  const perDb: Record<string, DbCount> = {};
  // Waiters whose leader failed ran the query themselves (counted per process, not per database).
  const reruns = (idleAfter?.['cache_reruns'] ?? 0) - (idleBefore['cache_reruns'] ?? 0);
  let countOk = dealloc === 0;
  const countDetail: string[] = [];
  for (const db of [SB_DB, PGB_DB]) {
    const c = loadCounts.get(db) ?? null;
    const E = c?.E ?? 0;
    const qs = c?.qStatements ?? 0;
    const errors = sum(errsIn(db));
    const txnRep = c?.txnRepeats ?? 0;
    const utilRep = c?.utilityRepeats ?? 0;
    const empty = c?.emptyE ?? 0;
    const local = c?.answeredByProxy ?? 0;
    const errUtil = srvErr.onUtility[db] ?? 0;
    const exact = E + qs - errors - txnRep - empty - local;
    // A failed repeated BEGIN/COMMIT would be subtracted twice; another utility statement's cached
    // plan may be rebuilt (then its repeat is counted): both only widen the range.
    const expectedMax = exact + errUtil + reruns;
    const expectedMin = exact - utilRep;
    const got = calls(db);
    perDb[db] = {
      E,
      qStatements: qs,
      errors,
      repeatedPreparedTxn: txnRep,
      repeatedPreparedUtility: utilRep,
      emptyExecutes: empty,
      errorsOnUtility: errUtil,
      expectedMin,
      expectedMax,
      calls: got,
      counts: c,
    };
    const ok = got >= expectedMin && got <= expectedMax;
    if (!ok) countOk = false;
    const rel = expectedMin === expectedMax ? (ok ? '==' : `!= ${fmtInt(expectedMin)} =`) : ok ? `in [${fmtInt(expectedMin)}, ${fmtInt(expectedMax)}] from` : `NOT in [${fmtInt(expectedMin)}, ${fmtInt(expectedMax)}] from`;
    countDetail.push(
      `${db}: calls ${fmtInt(got)} ${rel} E ${fmtInt(E)} + Q stmts ${fmtInt(qs)} - errors ${fmtInt(errors)} - repeated prepared BEGIN/COMMIT ${fmtInt(txnRep)}` +
        (empty ? ` - empty ${empty}` : '') +
        (local ? ` - answered by the proxy (cache hits, flight waiters) ${fmtInt(local)}` : '') +
        (reruns ? ` (+ up to ${reruns} flight reruns)` : '') +
        (utilRep ? ` (- up to ${utilRep} repeated prepared utility)` : '') +
        (errUtil ? ` (+ up to ${errUtil} failed utility)` : ''),
    );
  }
  const otherDbs = [...loadCounts.keys()].filter((d) => d !== SB_DB && d !== PGB_DB);
  if (otherDbs.length) {
    countOk = false;
    countDetail.push(`unexpected databases in the log: ${otherDbs.join(', ')}`);
  }
  const multiQ = [...loadCounts.values()].reduce((a, c) => a + c.qMulti, 0);
  if (multiQ) countDetail.push(`${multiQ} multi-statement Q lines`);
  if (dealloc !== 0) countDetail.push(`pg_stat_statements evicted entries (dealloc ${dealloc}): calls are incomplete`);
  checks.push({ name: 'statement count (pg_stat_statements)', pass: countOk, detail: countDetail.join('; ') });

  // Log lines
  const finalStatsLines = idleAfter?.['log_lines'] ?? null;
  const logProblems: string[] = [];
  if (quiesceError) logProblems.push(quiesceError);
  if (finalStatsLines === null) logProblems.push('no final stats line');
  else if (finalStatsLines !== scanner.lines) logProblems.push(`stats log_lines ${finalStatsLines} != ${scanner.lines} lines in the file`);
  if (proxy.shutdownLogLines === null) logProblems.push('no "shutdown complete" line');
  else if (proxy.shutdownLogLines !== scanner.lines) logProblems.push(`shutdown query_log_lines ${proxy.shutdownLogLines} != ${scanner.lines}`);
  if (scanner.malformed) logProblems.push(`${scanner.malformed} malformed lines, e.g. ${scanner.malformedExamples[0]}`);
  // --log-completions: every Q and E line has its done line once every session is gone.
  let queryLines = 0;
  let doneLines = 0;
  for (const byDb of scanner.counts.values()) {
    for (const c of byDb.values()) {
      queryLines += c.Q + c.E;
      doneLines += c.done;
    }
  }
  const completions = PGSCRIBE_ARGS.includes('--log-completions');
  if (completions && doneLines !== queryLines) logProblems.push(`${fmtInt(doneLines)} done lines for ${fmtInt(queryLines)} Q and E lines`);
  if (!completions && doneLines > 0) logProblems.push(`${fmtInt(doneLines)} done lines without --log-completions`);
  checks.push({
    name: 'log lines == proxy log_lines',
    pass: logProblems.length === 0,
    detail: `${fmtInt(scanner.lines)} lines in the file (prepare ${fmtInt(prepareLines)}, load ${fmtInt(scanner.lines - prepareLines)}), stats ${fmtInt(finalStatsLines)}, shutdown ${fmtInt(proxy.shutdownLogLines)}` +
      (completions ? `; ${fmtInt(doneLines)} done lines for ${fmtInt(queryLines)} Q/E lines` : '') +
      (logProblems.length ? `; PROBLEMS: ${logProblems.join('; ')}` : ''),
  });

  const pass = checks.every((c) => c.pass || c.judged === false);

  return {
    checks,
    pass,
    sbRes,
    pgbRes,
    rss: { base, last: lastW, baseMb: rssBase, lastMb: rssLast, windows: rssWindows },
    perDb,
    loadCounts,
    finalStatsLines,
    calls,
    errsIn,
  };
}
