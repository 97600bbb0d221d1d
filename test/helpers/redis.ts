// Throwaway redis-server for tests, and a slow, obvious RESP client (independent of src/redis) to
// inspect and tamper with what pgscribe keeps there.
//
// startRedis() runs redis-server in the foreground on a free 127.0.0.1 port with no persistence
// and returns a handle to stop it, kill it (-9), start it again on the same port, or stop and
// continue it (SIGSTOP/SIGCONT: a Redis that accepts connections and answers nothing). The server
// never outlives the test process: an 'exit' hook SIGKILLs it, and a small detached watchdog shell
// does if the test process dies without running its exit hooks.

import { spawn, spawnSync, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { freePort } from './pg-cluster';

function findRedisServer(): string {
  for (const p of ['/usr/bin/redis-server', '/usr/local/bin/redis-server', '/usr/sbin/redis-server']) if (fs.existsSync(p)) return p;
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const found = r.stdout.trim();
  if (found === '') throw new Error('redis-server is not installed (.ci/run installs it: apt-get install redis-server)');
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
  /** Send a command with the test's own RESP encoder/decoder (in database db). */
  command(args: (string | Buffer)[], db?: number): Promise<Reply>;
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

function watchdog(pid: number): void {
  const child = spawn('/bin/sh', ['-c', 'while kill -0 "$P" 2>/dev/null; do sleep 0.5; done; kill -CONT "$R" 2>/dev/null; kill -9 "$R" 2>/dev/null'], {
    detached: true,
    stdio: 'ignore',
    env: { P: String(process.pid), R: String(pid), PATH: process.env.PATH },
  });
  child.on('error', () => {});
  child.unref();
}

export async function startRedis(opts: { password?: string } = {}): Promise<RedisServer> {
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
    const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(p);
    p.on('exit', () => live.delete(p));
    p.stdout!.setEncoding('utf8');
    p.stderr!.setEncoding('utf8');
    p.stdout!.on('data', (d: string) => (out += d));
    p.stderr!.on('data', (d: string) => (out += d));
    proc = p;
    watchdog(p.pid!);
    const deadline = Date.now() + 10000;
    for (;;) {
      if (/Ready to accept connections/.test(out)) return;
      if (p.exitCode !== null) throw new Error(`redis-server exited (${p.exitCode}): ${out}`);
      if (Date.now() > deadline) throw new Error(`redis-server did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
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
    command: (args, db = 0) => redisCommand(port, args, password, db),
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
          await new Promise((r) => setTimeout(r, 100));
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

// ---- a slow, obvious RESP client --------------------------------------------------------------

export type Reply = string | number | Buffer | null | { error: string } | Reply[];

/** `*N` then `$len` bulk strings. */
export function encodeRequest(args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(a, 'utf8');
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** One whole reply at buf[off..], or null when more bytes are needed. Recursive, re-parses from the start. */
export function parseReply(buf: Buffer, off = 0): { value: Reply; end: number } | null {
  const lineEnd = buf.indexOf('\r\n', off);
  if (lineEnd < 0) return null;
  const type = String.fromCharCode(buf[off]!);
  const text = buf.toString('utf8', off + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: text, end: next };
    case '-':
      return { value: { error: text }, end: next };
    case ':':
      return { value: Number(text), end: next };
    case '$': {
      const n = Number(text);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: Buffer.from(buf.subarray(next, next + n)), end: next + n + 2 };
    }
    case '*': {
      const n = Number(text);
      if (n < 0) return { value: null, end: next };
      const items: Reply[] = [];
      let at = next;
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, at);
        if (r === null) return null;
        items.push(r.value);
        at = r.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`bad reply type ${JSON.stringify(type)}`);
  }
}

/** Connect, AUTH and SELECT if needed, send one command, read its reply, close. */
export function redisCommand(port: number, args: (string | Buffer)[], password = '', db = 0): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    let skip = (password === '' ? 0 : 1) + (db === 0 ? 0 : 1);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no reply to ${args[0]} within 10 s`));
    }, 10000);
    sock.on('connect', () => {
      if (password !== '') sock.write(encodeRequest(['AUTH', password]));
      if (db !== 0) sock.write(encodeRequest(['SELECT', String(db)]));
      sock.write(encodeRequest(args));
    });
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const r = parseReply(buf);
        if (r === null) return;
        buf = buf.subarray(r.end);
        if (skip > 0) {
          skip--;
          continue;
        }
        clearTimeout(timer);
        sock.destroy();
        resolve(r.value);
        return;
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
