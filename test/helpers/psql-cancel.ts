// ^C in psql: run `select pg_sleep(30)` through a proxy, wait until PostgreSQL is running it,
// then SIGINT psql, which sends a CancelRequest on a new connection (in the clear, psql 15).

import { spawn } from 'node:child_process';
import type { PgCluster } from '../harness/pg-cluster';
import { sleep, waitFor } from '../harness/time';

export interface CancelledPsql {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** From the SIGINT to psql's exit. */
  tookMs: number;
}

/** SQL that counts the active sessions of an application_name running pg_sleep (run directly on the cluster). */
function activeSql(app: string): string {
  return `select count(*) from pg_stat_activity where application_name = '${app}' and query = 'select pg_sleep(30)' and state = 'active'`;
}

/**
 * Start psql with `env` (which points it at the proxy and sets PGAPPNAME=app), wait until its
 * query is active in `pg`, wait `settleMs` more (and until psql has run `minRunMs` in all), then
 * SIGINT it and wait for it to exit (SIGKILL after 25 s).
 */
export async function cancelPsqlSleep(o: {
  psql: string;
  env: NodeJS.ProcessEnv;
  pg: PgCluster;
  app: string;
  settleMs?: number;
  minRunMs?: number;
}): Promise<CancelledPsql> {
  const start = Date.now();
  const child = spawn(o.psql, ['-X', '-w', '-c', 'select pg_sleep(30)'], { env: { ...o.env, PGAPPNAME: o.app }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  const killer = setTimeout(() => child.kill('SIGKILL'), 25_000);
  try {
    await waitFor(async () => ((await o.pg.psql(activeSql(o.app))) === '1' ? true : undefined), {
      timeoutMs: 10_000,
      intervalMs: 100,
      timeout: () => `psql's pg_sleep(30) never became active (${o.app}): ${stderr}`,
    });
    await sleep(Math.max(o.settleMs ?? 0, (o.minRunMs ?? 0) - (Date.now() - start)));
    const at = Date.now();
    child.kill('SIGINT');
    const r = await exited;
    return { ...r, stdout, stderr, tookMs: Date.now() - at };
  } finally {
    clearTimeout(killer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
