/**
 * `make stress`, the report: the samples as CSV, a chart of them (SVG), everything as JSON, and a
 * one-screen summary on stdout.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { renderStackedChart, type Series } from '../lib/svg-chart';
import type { Judgement } from './checks';
import type { Collected, Loaded, Prepared } from './load';
import type { Sample } from './sampler';
import { DURATION, PGBENCH_CLIENTS, PGB_DB, ROOT, SB_DB, SCALE, TABLES, TABLE_SIZE, THREADS, fmt, fmtInt, mean } from './settings';
import type { Setup } from './setup';

export function report(s: Setup, p: Prepared, l: Loaded, c: Collected, j: Judgement): void {
  const { started, files, scanner, proxy } = s;
  const { prepareLines } = p;
  const { sampler, loadSeconds } = l;
  const { srvErr, idleAfter, dealloc, topStatements } = c;
  const { checks, pass, sbRes, pgbRes, perDb, loadCounts, finalStatsLines, calls, errsIn } = j;
  const { base, last: lastW, baseMb: rssBase, lastMb: rssLast, windows: rssWindows } = j.rss;
  const heaps = sampler.samples.map((s) => s.heapUsedMb).filter((x): x is number => x !== null);
  const cpus = sampler.samples.filter((s) => s.phase === 'load').map((s) => s.cpuPct).filter((x): x is number => x !== null);
  const maxClients = Math.max(0, ...sampler.samples.map((s) => s.clients ?? 0));
  fs.writeFileSync(files.csv, csv(sampler.samples));

  const pts = (f: (s: Sample) => number | null): Array<[number, number | null]> => sampler.samples.map((s) => [s.t, f(s)]);
  const xMax = Math.max(DURATION, ...sampler.samples.map((s) => s.t));
  const tput: Series[] = [
    { name: 'sysbench tps', color: '#1f77b4', points: sbRes.intervals.map((i) => [i.t, i.tps] as [number, number]) },
    { name: 'pgbench tps', color: '#ff7f0e', points: pgbRes.intervals.map((i) => [i.t, i.tps] as [number, number]) },
  ];
  const svg = renderStackedChart({
    title: `pgscribe stress: sysbench oltp_read_write ${THREADS} threads + pgbench ${PGBENCH_CLIENTS} clients`,
    subtitle:
      `${started.toISOString().slice(0, 19).replace('T', ' ')} UTC, ${DURATION} s (ran ${loadSeconds.toFixed(0)} s), ` +
      `${TABLES}x${TABLE_SIZE} rows, pgbench -s ${SCALE} -M prepared; verdict ${pass ? 'PASS' : 'FAIL'}`,
    xLabel: 'seconds since the load started',
    xMin: 0,
    xMax,
    panels: [
      {
        title: 'RSS (MB)',
        series: [{ name: 'RSS', color: '#d62728', points: pts((s) => s.rssMb) }],
        bands: [
          { x0: base[0], x1: base[1], label: 'baseline', color: '#2ca02c' },
          { x0: lastW[0], x1: lastW[1], label: 'last', color: '#9467bd' },
        ],
      },
      {
        title: 'V8 heap (MB)',
        series: [
          { name: 'heap used', color: '#2ca02c', points: pts((s) => s.heapUsedMb) },
          { name: 'external', color: '#8c564b', points: pts((s) => s.externalMb) },
        ],
      },
      { title: 'CPU (% of one core)', series: [{ name: 'utime+stime', color: '#9467bd', points: pts((s) => s.cpuPct) }] },
      {
        title: 'Connections',
        series: [
          { name: 'client sessions', color: '#1f77b4', points: pts((s) => s.clients) },
          { name: 'open sockets', color: '#17becf', points: pts((s) => s.sockets), dashed: true },
        ],
      },
      { title: 'Client throughput (transactions/s)', series: tput },
    ],
  });
  fs.writeFileSync(files.svg, svg);

  const summary = {
    started: started.toISOString(),
    durationS: DURATION,
    loadSeconds,
    threads: THREADS,
    pgbenchClients: PGBENCH_CLIENTS,
    tables: TABLES,
    tableSize: TABLE_SIZE,
    pgbenchScale: SCALE,
    verdict: pass ? 'PASS' : 'FAIL',
    checks,
    sysbench: sbRes,
    pgbench: pgbRes,
    queryLog: {
      lines: scanner.lines,
      prepareLines,
      loadLines: scanner.lines - prepareLines,
      byPhase: Object.fromEntries([...scanner.counts].map(([p, m]) => [p, Object.fromEntries(m)])),
      malformed: scanner.malformed,
      statsLogLines: finalStatsLines,
      shutdownLogLines: proxy.shutdownLogLines,
    },
    statementCount: {
      relation:
        'per database: pg_stat_statements sum(calls) == E lines + statements in Q lines - ERRORs logged by PostgreSQL ' +
        '- E lines that re-execute a prepared transaction-control statement (PostgreSQL 15 pg_stat_statements counts only the first execution of a cached utility plan) ' +
        '- E lines of empty statements; widened by repeated prepared utility statements and errors on utility statements when there are any',
      perDb,
      pgStatStatementsDealloc: dealloc,
      topStatements,
    },
    postgresErrors: srvErr,
    proxy: {
      rssBaselineMb: rssBase,
      rssLastMb: rssLast,
      rssWindows,
      baselineWindowS: base,
      lastWindowS: lastW,
      maxHeapUsedMb: heaps.length ? Math.max(...heaps) : null,
      cpuMeanPct: mean(cpus),
      cpuMaxPct: cpus.length ? Math.max(...cpus) : null,
      maxClients,
      maxStatsGapMs: sampler.maxGapMs,
      samples: sampler.samples.length,
      finalStats: idleAfter,
      warnings: proxy.problems,
      exit: proxy.exit,
    },
    files,
  };
  fs.writeFileSync(files.json, JSON.stringify(summary, null, 2) + '\n');

  const lc = (db: string) => loadCounts.get(db);
  const lines = [
    '',
    `pgscribe stress ${started.toISOString().slice(0, 19)}Z  duration ${DURATION} s (load ran ${loadSeconds.toFixed(1)} s)  sysbench threads ${THREADS}  pgbench clients ${PGBENCH_CLIENTS}`,
    `sysbench oltp_read_write: ${fmt(sbRes.tps)} tps, ${fmt(sbRes.qps)} qps, ${fmtInt(sbRes.transactions)} txns, errors ignored ${fmtInt(sbRes.ignoredErrors)} ${JSON.stringify(errsIn(SB_DB))}, p95 ${fmt(sbRes.lat95Ms, 2)} ms, exit ${sbRes.exit}`,
    `pgbench tpcb-like -M prepared: ${fmt(pgbRes.tps)} tps, ${fmtInt(pgbRes.transactions)} txns, failed ${fmtInt(pgbRes.failed)}, avg ${fmt(pgbRes.latAvgMs, 2)} ms, exit ${pgbRes.exit}`,
    `query log: ${fmtInt(scanner.lines)} lines (prepare ${fmtInt(prepareLines)}); load ${SB_DB}: Q ${fmtInt(lc(SB_DB)?.Q)} P ${fmtInt(lc(SB_DB)?.P)} B ${fmtInt(lc(SB_DB)?.B)} E ${fmtInt(lc(SB_DB)?.E)}; ` +
      `${PGB_DB}: Q ${fmtInt(lc(PGB_DB)?.Q)} P ${fmtInt(lc(PGB_DB)?.P)} B ${fmtInt(lc(PGB_DB)?.B)} E ${fmtInt(lc(PGB_DB)?.E)}`,
    `proxy log_lines: stats ${fmtInt(finalStatsLines)}, shutdown ${fmtInt(proxy.shutdownLogLines)}`,
    `pg_stat_statements calls: ${SB_DB} ${fmtInt(calls(SB_DB))}, ${PGB_DB} ${fmtInt(calls(PGB_DB))} (dealloc ${dealloc})`,
    `RSS: baseline ${fmt(rssBase)} MB, last ${fmt(rssLast)} MB (${rssWindows}); max heap used ${fmt(summary.proxy.maxHeapUsedMb)} MB; ` +
      `CPU mean ${fmt(mean(cpus), 0)}% max ${fmt(summary.proxy.cpuMaxPct, 0)}% of one core; clients max ${maxClients}; max stats gap ${(sampler.maxGapMs / 1000).toFixed(1)} s`,
    'checks:',
    ...checks.map((c) => `  ${c.judged === false ? 'SKIP' : c.pass ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`),
    ...(proxy.problems.length ? [`proxy WARN/ERROR lines: ${proxy.problems.length}, first: ${proxy.problems[0]!.slice(0, 200)}`] : []),
    `verdict: ${pass ? 'PASS' : 'FAIL'}`,
    `files: ${path.relative(ROOT, files.csv)}  ${path.relative(ROOT, files.svg)}  ${path.relative(ROOT, files.json)}`,
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

/** The samples, a row each. */
function csv(samples: Sample[]): string {
  const cols: Array<[string, (s: Sample) => string]> = [
    ['t_s', (s) => s.t.toFixed(1)],
    ['time', (s) => s.iso],
    ['phase', (s) => s.phase],
    ['rss_mb', (s) => fmt(s.rssMb, 2)],
    ['heap_used_mb', (s) => fmt(s.heapUsedMb, 2)],
    ['external_mb', (s) => fmt(s.externalMb, 2)],
    ['cpu_pct', (s) => fmt(s.cpuPct, 1)],
    ['clients', (s) => fmt(s.clients, 0)],
    ['sessions', (s) => fmt(s.sessions, 0)],
    ['sockets', (s) => fmt(s.sockets, 0)],
    ['log_lines', (s) => fmt(s.logLines, 0)],
    ['bytes_from_clients', (s) => fmt(s.bytesFromClients, 0)],
    ['bytes_from_servers', (s) => fmt(s.bytesFromServers, 0)],
  ];
  const rows = [cols.map((c) => c[0]).join(',')];
  for (const s of samples) rows.push(cols.map((c) => c[1](s).replace('n/a', '')).join(','));
  return rows.join('\n') + '\n';
}
