/**
 * `make stress`, setup: the output files, the tools, a throwaway PostgreSQL with the logging the
 * checks read, the two databases, and pgscribe in front of it with its query log scanner.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCluster, type PgCluster } from '../../test/harness/pg-cluster';
import { MAIN } from '../../test/harness/proxy';
import { run } from '../../test/harness/run';
import { QueryLogScanner } from '../lib/stress-log-scan';
import { StressProxy } from './proxy';
import { DURATION, PGBENCH_CLIENTS, PGB_DB, ROOT, SB_DB, TABLES, TABLE_SIZE, THREADS, say } from './settings';

/** What the run holds that cleanup must release, filled in as setup goes. */
export interface Resources {
  tmpDir: string | null;
  cluster: PgCluster | null;
  proxy: StressProxy | null;
}

export interface Setup {
  started: Date;
  files: { csv: string; svg: string; json: string };
  pg: PgCluster;
  proxy: StressProxy;
  scanner: QueryLogScanner;
  /** sysbench's options for the proxy and the sbtest tables. */
  sbCommon: string[];
  /** pgbench's connection options for the proxy. */
  pgbConn: string[];
}

export async function setUp(res: Resources): Promise<Setup> {
  const started = new Date();
  const stamp = started.toISOString().slice(0, 19).replace(/:/g, '-') + 'Z';
  const logsDir = path.join(ROOT, 'logs');
  fs.mkdirSync(logsDir, { recursive: true });
  const files = {
    csv: path.join(logsDir, `stress-${stamp}.csv`),
    svg: path.join(logsDir, `stress-${stamp}.svg`),
    json: path.join(logsDir, `stress-${stamp}.json`),
  };
  if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} missing: run make build`);
  for (const tool of ['sysbench', 'pgbench']) {
    const r = await run(tool, ['--version']).catch(() => null);
    if (!r || r.code !== 0) throw new Error(`${tool} not found on PATH`);
  }

  const tmpDir = (res.tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-stress-')));
  const queryLog = path.join(tmpDir, 'queries.log');

  say(`starting PostgreSQL (DURATION=${DURATION}s THREADS=${THREADS} PGBENCH_CLIENTS=${PGBENCH_CLIENTS})`);
  const pg = (res.cluster = await startCluster({
    conf: {
      'pg_stat_statements.track': 'top',
      'pg_stat_statements.track_utility': 'on',
      'pg_stat_statements.max': '10000',
      log_line_prefix: '%m [%p] db=%d sqlstate=%e ',
      log_min_messages: 'warning',
      log_min_error_statement: 'error',
      shared_buffers: '256MB',
      max_connections: '300',
    },
  }));
  await pg.psql(`CREATE DATABASE ${SB_DB}`);
  await pg.psql(`CREATE DATABASE ${PGB_DB}`);

  say('starting pgscribe');
  const proxy = (res.proxy = await StressProxy.start(pg.port, queryLog, tmpDir));
  const scanner = new QueryLogScanner(queryLog);
  scanner.phase = 'prepare';

  const sbCommon = [
    'oltp_read_write',
    '--db-driver=pgsql',
    '--pgsql-host=127.0.0.1',
    `--pgsql-port=${proxy.port}`,
    '--pgsql-user=postgres',
    `--pgsql-db=${SB_DB}`,
    `--tables=${TABLES}`,
    `--table-size=${TABLE_SIZE}`,
  ];
  const pgbConn = ['-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'postgres'];
  return { started, files, pg, proxy, scanner, sbCommon, pgbConn };
}
