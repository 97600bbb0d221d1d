// A throwaway PgBouncer for the tests that put pgscribe in front of one (issue 19): its own ini
// and auth file in a temp dir, a free port, run as the postgres OS user when we are root
// (PgBouncer refuses to run as root), and stopped even if the test process dies (an 'exit'
// handler and a watchdog).

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePort } from '../harness/free-port';
import { makeBaseDir, pgTool } from '../harness/pg-cluster';
import { findBinary, run, runSync } from '../harness/run';
import { sleep } from '../harness/time';
import { killOnExit, type Watchdog } from '../harness/watchdog';

/** The pgbouncer binary, or null when it is not installed. */
export function findPgbouncer(): string | null {
  return findBinary('pgbouncer');
}

/** `pgbouncer --version` as [major, minor, patch] ("PgBouncer 1.18.0"), or null. */
export function pgbouncerVersion(bin: string): [number, number, number] | null {
  const m = /PgBouncer (\d+)\.(\d+)\.(\d+)/.exec(runSync(bin, ['--version']));
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

/** max_prepared_statements (protocol-level named statements in transaction mode) came in 1.21. */
export function hasMaxPreparedStatements(v: [number, number, number] | null): boolean {
  return v !== null && (v[0] > 1 || (v[0] === 1 && v[1] >= 21));
}

export interface PgbouncerOptions {
  /** The PostgreSQL it pools. */
  upstreamPort: number;
  poolMode: 'session' | 'transaction' | 'statement';
  defaultPoolSize: number;
  /** Written only when set (PgBouncer before 1.21 refuses the unknown key). */
  maxPreparedStatements?: number;
  /** Users the auth file lists (auth_type trust still looks the user up there). */
  users: string[];
  /** Extra `[databases]` lines; the default line sends every database name to the upstream. */
  databases?: string[];
}

export interface Pgbouncer {
  port: number;
  version: [number, number, number] | null;
  /** Its own log (connections, errors), for failure messages. */
  log(): string;
  /** SIGKILL, wait for the exit, remove the temp dir. Idempotent. */
  stop(): Promise<void>;
}

const live = new Set<() => void>();
process.on('exit', () => {
  for (const kill of [...live]) kill();
});

/** Start PgBouncer on a free port; resolves once it answers `SELECT 1` for users[0]. */
export async function startPgbouncer(o: PgbouncerOptions): Promise<Pgbouncer> {
  const bin = findPgbouncer();
  if (bin === null) throw new Error('pgbouncer is not installed (apt-get install pgbouncer)');
  const version = pgbouncerVersion(bin);
  // makeBaseDir: a temp dir the postgres OS user owns when we are root.
  const dir = makeBaseDir();
  const ini = path.join(dir, 'pgbouncer.ini');
  const logFile = path.join(dir, 'pgbouncer.log');
  fs.writeFileSync(path.join(dir, 'userlist.txt'), o.users.map((u) => `"${u}" ""`).join('\n') + '\n');
  const ids = process.getuid?.() === 0 ? { uid: Number(runSync('id', ['-u', 'postgres'])), gid: Number(runSync('id', ['-g', 'postgres'])) } : {};
  if (ids.uid !== undefined) {
    for (const f of fs.readdirSync(dir)) fs.chownSync(path.join(dir, f), ids.uid, ids.gid!);
  }

  let proc: ChildProcess | undefined;
  let dog: Watchdog | undefined;
  let exited: Promise<void> = Promise.resolve();
  const kill = (): void => {
    try {
      proc?.kill('SIGKILL');
    } catch {
      // gone
    }
  };
  const readLog = (): string => {
    try {
      return fs.readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      kill();
      await exited;
      dog?.cancel();
      live.delete(kill);
      fs.rmSync(dir, { recursive: true, force: true });
    })());

  try {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      fs.writeFileSync(
        ini,
        [
          '[databases]',
          ...(o.databases ?? []),
          `* = host=127.0.0.1 port=${o.upstreamPort}`,
          '[pgbouncer]',
          'listen_addr = 127.0.0.1',
          `listen_port = ${port}`,
          'unix_socket_dir =',
          'auth_type = trust',
          `auth_file = ${path.join(dir, 'userlist.txt')}`,
          `pool_mode = ${o.poolMode}`,
          `default_pool_size = ${o.defaultPoolSize}`,
          'min_pool_size = 0',
          'reserve_pool_size = 0',
          'max_client_conn = 200',
          ...(o.maxPreparedStatements === undefined ? [] : [`max_prepared_statements = ${o.maxPreparedStatements}`]),
          // JDBC and some other drivers send it (psql, pgbench and pgscribe's own connections do not); PgBouncer refuses unknown startup parameters.
          'ignore_startup_parameters = extra_float_digits',
          `logfile = ${logFile}`,
          '',
        ].join('\n'),
      );
      if (ids.uid !== undefined) fs.chownSync(ini, ids.uid, ids.gid!);
      const p = spawn(bin, [ini], { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir, ...ids });
      proc = p;
      let stderr = '';
      p.stderr!.setEncoding('utf8');
      p.stderr!.on('data', (d: string) => (stderr += d));
      exited = new Promise((resolve) => (p.exitCode !== null ? resolve() : p.once('exit', () => resolve())));
      live.add(kill);
      dog = killOnExit(p.pid!);
      for (let i = 0; i < 100 && p.exitCode === null; i++) {
        const r = await run(pgTool('psql'), ['-X', '-At', '-w', '-h', '127.0.0.1', '-p', String(port), '-U', o.users[0]!, '-d', 'postgres', '-c', 'select 1'], {
          timeoutMs: 5000,
        });
        if (r.code === 0) {
          return { port, version, log: readLog, stop };
        }
        await sleep(100);
      }
      kill();
      await exited;
      dog.cancel();
      const why = `${stderr}${readLog()}`;
      if (attempt < 3 && /Address already in use/i.test(why)) continue;
      throw new Error(`pgbouncer did not start on port ${port}:\n${why}`);
    }
  } catch (e) {
    await stop();
    throw e;
  }
}
