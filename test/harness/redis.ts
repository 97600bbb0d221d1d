// Throwaway redis-server for tests and benchmarks.
//
// startRedis() runs redis-server in the foreground on a free 127.0.0.1 port with no persistence
// and returns a handle to stop it, kill it (-9), start it again on the same port, or stop and
// continue it (SIGSTOP/SIGCONT: a Redis that accepts connections and answers nothing). The server
// never outlives the test process: an 'exit' hook SIGKILLs it, and a small detached watchdog shell
// does if the test process dies without running its exit hooks.

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './free-port';
import { findBinary } from './run';
import { sleep, waitFor } from './time';
import { killOnExit } from './watchdog';

function findRedisServer(): string {
  const found = findBinary('redis-server');
  if (found === null) throw new Error('redis-server is not installed (.ci/run installs it: apt-get install redis-server)');
  return found;
}

export interface RedisServer {
  host: string;
  port: number;
  password: string;
  /** The server process (0 while it is killed). */
  readonly pid: number;
  /** Everything the server printed. */
  output(): string;
  /** SIGKILL the server and wait for it to be gone. */
  kill(): Promise<void>;
  /** Start it again on the same port (after kill()). */
  restart(): Promise<void>;
  /** SIGSTOP: connections stay open, nothing is answered. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const p of live) {
      try {
        p.kill('SIGCONT');
        p.kill('SIGKILL');
      } catch {
        // gone
      }
    }
  });
}

/**
 * tls: serve TLS only (no plaintext port), with this certificate and key; clients need no
 * certificate of their own.
 */
export async function startRedis(opts: { password?: string; tls?: { cert: string; key: string } } = {}): Promise<RedisServer> {
  hookExit();
  const bin = findRedisServer();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-redis-'));
  const password = opts.password ?? '';
  let port = 0;
  let proc: ChildProcess | null = null;
  let out = '';

  const launch = async (): Promise<void> => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'no', '--logfile', ''];
    if (password !== '') args.push('--requirepass', password);
    if (opts.tls !== undefined) {
      args[1] = '0';
      args.push('--tls-port', String(port), '--tls-cert-file', opts.tls.cert, '--tls-key-file', opts.tls.key, '--tls-auth-clients', 'no');
    }
    const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(p);
    const dog = killOnExit(p.pid!);
    p.on('exit', () => {
      live.delete(p);
      dog.cancel();
    });
    p.stdout!.setEncoding('utf8');
    p.stderr!.setEncoding('utf8');
    p.stdout!.on('data', (d: string) => (out += d));
    p.stderr!.on('data', (d: string) => (out += d));
    proc = p;
    await waitFor(
      () => {
        if (/Ready to accept connections/.test(out)) return true;
        if (p.exitCode !== null) throw new Error(`redis-server exited (${p.exitCode}): ${out}`);
        return undefined;
      },
      { timeoutMs: 10000, timeout: () => `redis-server did not start: ${out}` },
    );
  };

  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    out = '';
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt >= 3 || !/Address already in use/.test(out)) throw err;
    }
  }

  const gone = (p: ChildProcess): Promise<void> =>
    p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((r) => p.once('exit', () => r()));

  const server: RedisServer = {
    host: '127.0.0.1',
    get port() {
      return port;
    },
    password,
    get pid() {
      return proc?.pid ?? 0;
    },
    output: () => out,
    async kill() {
      const p = proc;
      if (p === null) return;
      proc = null;
      p.kill('SIGCONT');
      p.kill('SIGKILL');
      await gone(p);
    },
    async restart() {
      if (proc !== null) throw new Error('redis-server is still running');
      for (let attempt = 1; ; attempt++) {
        try {
          await launch();
          return;
        } catch (err) {
          // The old socket may linger a moment.
          if (attempt >= 20 || !/Address already in use/.test(out)) throw err;
          await sleep(100);
        }
      }
    },
    pause() {
      proc?.kill('SIGSTOP');
    },
    resume() {
      proc?.kill('SIGCONT');
    },
    async stop() {
      await server.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}
