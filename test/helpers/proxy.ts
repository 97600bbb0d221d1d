// Starts the real pgscribe binary (dist/main.js, built by `make build`) as a child process in
// front of a test cluster, and stops it. Tests talk to it with real clients or raw sockets.

import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export const MAIN = path.resolve(__dirname, '../../../dist/main.js');

export interface Proxy {
  host: string;
  port: number;
  /** Query log path ('' when the log goes elsewhere). */
  logPath: string;
  proc: ChildProcess;
  /** Everything the proxy wrote to stderr so far. */
  stderr(): string;
  /** Lines of the query log file as written so far. */
  logLines(): string[];
  /** Send a signal and wait for exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Wait until stderr matches (ops log lines), or time out. */
  waitStderr(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Wait until the query log holds at least n lines. */
  waitLogLines(n: number, timeoutMs?: number): Promise<string[]>;
}

export interface ProxyOptions {
  upstreamPort: number;
  upstreamHost?: string;
  /** Extra flags. A --log flag here overrides the default temp log file. */
  args?: string[];
}

/** Temp dirs of the proxies this process started: tests read logs after stop(), so they go at exit. */
const tempDirs = new Set<string>();
process.on('exit', () => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

export async function startProxy(opts: ProxyOptions): Promise<Proxy> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-proxy-'));
  tempDirs.add(dir);
  const args = opts.args ?? [];
  const logPath = args.includes('--log') ? '' : path.join(dir, 'queries.log');
  const full = [
    MAIN,
    '--listen',
    '127.0.0.1:0',
    '--upstream',
    `${opts.upstreamHost ?? '127.0.0.1'}:${opts.upstreamPort}`,
    ...(logPath ? ['--log', logPath] : []),
    ...args,
  ];
  const proc = spawn(process.execPath, full, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let out = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => (err += d));
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const killOnExit = () => proc.kill('SIGKILL');
  process.on('exit', killOnExit);

  const waitStderr = async (re: RegExp, timeoutMs = 10000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(err);
      if (m) return m[0];
      if (proc.exitCode !== null) throw new Error(`proxy exited (${proc.exitCode}) before ${re}: ${err}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} in proxy stderr: ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const m = /listening listen=(\S+):(\d+)/.exec(await waitStderr(/listening listen=\S+:\d+/));
  const port = Number(m![2]);

  const logLines = (): string[] => {
    if (!logPath || !fs.existsSync(logPath)) return [];
    const text = fs.readFileSync(logPath, 'utf8');
    return text === '' ? [] : text.replace(/\n$/, '').split('\n');
  };

  return {
    host: '127.0.0.1',
    port,
    logPath,
    proc,
    stderr: () => err,
    logLines,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const r = await exited;
      process.off('exit', killOnExit);
      return r;
    },
    waitStderr,
    async waitLogLines(n: number, timeoutMs = 10000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const lines = logLines();
        if (lines.length >= n) return lines;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} log lines, have ${lines.length}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    // stdout is kept for --log - tests
    get stdout() {
      return out;
    },
  } as Proxy & { readonly stdout: string };
}
