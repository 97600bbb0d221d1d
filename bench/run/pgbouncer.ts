/** PgBouncer (session mode) as a `make bench` target, when it is installed. */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePort } from '../../test/harness/free-port';
import { findBinary, run } from '../../test/harness/run';
import { sleep } from '../../test/harness/time';
import { postgresUser } from './postgres-user';
import type { Target } from './target';

/** The pgbouncer binary, or null when it is not installed. */
export function findPgbouncer(): string | null {
  return findBinary('pgbouncer');
}

/** PgBouncer in session mode in front of the bench's PostgreSQL; null when it is not installed or does not start. */
export async function startPgbouncer(pgPort: number, dir: string): Promise<Target | null> {
  const bin = findPgbouncer();
  if (bin === null) return null;
  const port = await freePort();
  const bdir = path.join(dir, 'pgbouncer');
  fs.mkdirSync(bdir);
  fs.writeFileSync(path.join(bdir, 'userlist.txt'), '"postgres" ""\n');
  fs.writeFileSync(
    path.join(bdir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=127.0.0.1 port=${pgPort}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${path.join(bdir, 'userlist.txt')}`,
      'pool_mode = session',
      'max_client_conn = 1000',
      'default_pool_size = 200',
      `logfile = ${path.join(bdir, 'pgbouncer.log')}`,
      'log_connections = 0',
      'log_disconnections = 0',
      'ignore_startup_parameters = extra_float_digits',
      '',
    ].join('\n'),
  );
  // PgBouncer refuses to run as root: run it as the postgres user, like the cluster.
  const ids = postgresUser(dir, bdir);
  const proc = spawn(bin, [path.join(bdir, 'pgbouncer.ini')], { stdio: ['ignore', 'ignore', 'pipe'], ...ids });
  // Wait until it accepts connections.
  for (let i = 0; i < 100; i++) {
    const r = await run('psql', ['-X', '-At', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-c', 'select 1'], {
      timeoutMs: 2000,
    });
    if (r.code === 0) return { name: 'pgbouncer', kind: 'pgbouncer', base: false, port, pid: proc.pid!, stop: async () => void proc.kill('SIGKILL') };
    if (proc.exitCode !== null) break;
    await sleep(100);
  }
  process.stderr.write(`pgbouncer did not start; skipping it (see ${path.join(bdir, 'pgbouncer.log')})\n`);
  proc.kill('SIGKILL');
  return null;
}
