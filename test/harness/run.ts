// Running a command to completion: the tests' and the benchmarks' one way to call psql, pgbench,
// sysbench, openssl and the like.

import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { leaveTapHooksOutOfChildren } from './child-env';

export interface RunResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/**
 * Run a command to completion. Never rejects on nonzero exit (only if the command cannot be spawned).
 * On timeout the child's whole process group is SIGKILLed and the result has signal 'SIGKILL'.
 */
export function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string | Buffer | undefined; timeoutMs?: number; cwd?: string } = {},
): Promise<RunResult> {
  leaveTapHooksOutOfChildren();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: true, // own process group, so a timeout kills grandchildren too
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      }, opts.timeoutMs);
    }
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(new Error(`failed to spawn ${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => {}); // child may exit before reading all input
      child.stdin!.end(opts.input);
    }
  });
}

/** A short command's trimmed stdout, or '' when it cannot run or fails (versions, ids, getconf). */
export function runSync(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

/** An installed program: Debian's usual places first, then $PATH; null when it is not installed. */
export function findBinary(name: string): string | null {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/bin']) if (fs.existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  return runSync('sh', ['-c', `command -v ${name}`]) || null;
}
