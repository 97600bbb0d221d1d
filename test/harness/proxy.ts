// Starts pgscribe (dist/main.js, built by `make build`, or another build) as a child process in
// front of an upstream, reads what it says on stderr (the listening address, its stats lines), and
// stops it. The one launcher of the tests, `make bench` and `make stress`; tests talk to it with
// real clients or raw sockets.

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { leaveTapHooksOutOfChildren } from './child-env';
import { sleep, waitFor } from './time';
import { killOnExit, type Watchdog } from './watchdog';

/**
 * The shared cache's signing key (--redis-key) every proxy started here gets from its environment,
 * so that instances of one test or bench trust each other's entries, as a deployment's would.
 * An older build (BASELINE_MAIN) ignores the variable.
 */
export const TEST_REDIS_KEY = 'pgscribe-test-key-0123456789abcdef-not-a-secret';

/** This checkout's build. */
export const MAIN = path.resolve(__dirname, '../../../dist/main.js');

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The numbers of one stats line (SIGUSR2 or --stats-interval): clients=, log_lines=, cache_hits=... */
export type Stats = Record<string, number>;

export interface Proxy {
  host: string;
  port: number;
  /** Query log path ('' when the log goes elsewhere: args named --log). */
  logPath: string;
  proc: ChildProcess;
  /** Everything the proxy wrote to stderr so far (its tail, with stderrLimit). */
  stderr(): string;
  /** Everything it wrote to stdout so far (--log - tests). */
  readonly stdout: string;
  /** Lines of the query log file as written so far. */
  logLines(): string[];
  /** Not exited yet. */
  readonly alive: boolean;
  /** Its exit, once it has exited. */
  readonly exit: Exit | null;
  /** The last stats line it printed (null before the first). */
  readonly lastStats: Stats | null;
  /**
   * Send a signal and wait for the exit (and the rest of its stderr). With killAfterMs, SIGKILL
   * its process group if it has not exited by then: the exit then shows signal SIGKILL.
   */
  stop(signal?: NodeJS.Signals, opts?: { killAfterMs?: number }): Promise<Exit>;
  /** Wait until stderr matches (ops log lines), or time out. Resolves with the matched text. */
  waitStderr(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Wait until the query log holds at least n lines. */
  waitLogLines(n: number, timeoutMs?: number): Promise<string[]>;
  /** SIGUSR2, and the numbers of the stats line it prints; throws after timeoutMs or when it exits. */
  stats(timeoutMs?: number): Promise<Stats>;
}

export interface ProxyOptions {
  /** The upstream given as --upstream; null: none on the command line (a --config file gives it). */
  upstreamPort: number | null;
  upstreamHost?: string;
  /** Extra flags. A --log flag here overrides the default temp log file. */
  args?: string[];
  /** The pgscribe entry point (default MAIN): another build, for old-vs-new benchmarks. */
  main?: string;
  cwd?: string;
  /** Keep only the last this many characters of stderr (default: all of it). */
  stderrLimit?: number;
  /** Called with each whole stderr line as it arrives (after lastStats is updated). */
  onStderrLine?: (line: string) => void;
  /**
   * Long runs (bench, stress): its own process group, and a watchdog that kills it should this
   * process die without running its exit handlers.
   */
  detached?: boolean;
  /** Environment variables added to (or replacing) this process's, e.g. a PGSCRIBE_REDIS_KEY of its own. */
  env?: Record<string, string | undefined>;
  /** How long to wait for its "listening" line (default 10 s). */
  startTimeoutMs?: number;
}

/**
 * The numbers of a stats line (` INFO stats k=v k=v ...`), or null when the line is not one.
 * With --processes N the proxy's line is the primary's `stats total`; each serving process's own
 * line (` INFO stats process=K ...`) is not the proxy's and gives null.
 */
export function parseStatsLine(line: string): Stats | null {
  const m = / INFO stats (.*)$/.exec(line);
  if (m === null || m[1]!.startsWith('process=')) return null;
  const out: Stats = {};
  for (const kv of m[1]!.matchAll(/(\w+)=(-?\d+(?:\.\d+)?)(?= |$)/g)) out[kv[1]!] = Number(kv[2]);
  return out;
}

/** Proxies still running (and whether each has its own process group), SIGKILLed when this process exits. */
const running = new Map<ChildProcess, boolean>();
/** The temp dirs of their logs, removed at exit too (tests read logs after stop()). */
const tempDirs = new Set<string>();
process.on('exit', () => {
  for (const [p, detached] of running) killProcess(p, detached, 'SIGKILL');
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

function killProcess(p: ChildProcess, group: boolean, signal: NodeJS.Signals): void {
  try {
    if (group) process.kill(-p.pid!, signal);
    else p.kill(signal);
  } catch {
    // gone meanwhile
  }
}

export async function startProxy(opts: ProxyOptions): Promise<Proxy> {
  const args = opts.args ?? [];
  let logPath = '';
  if (!args.includes('--log')) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-proxy-'));
    tempDirs.add(dir);
    logPath = path.join(dir, 'queries.log');
  }
  const full = [
    opts.main ?? MAIN,
    '--listen',
    '127.0.0.1:0',
    ...(opts.upstreamPort === null ? [] : ['--upstream', `${opts.upstreamHost ?? '127.0.0.1'}:${opts.upstreamPort}`]),
    ...(logPath ? ['--log', logPath] : []),
    ...args,
  ];
  const detached = opts.detached ?? false;
  const env = { ...process.env, PGSCRIBE_REDIS_KEY: TEST_REDIS_KEY, ...opts.env };
  leaveTapHooksOutOfChildren();
  const proc = spawn(process.execPath, full, { stdio: ['ignore', 'pipe', 'pipe'], detached, cwd: opts.cwd, env });
  running.set(proc, detached);
  const dog: Watchdog | null = detached ? killOnExit(proc.pid!) : null;

  let err = '';
  let out = '';
  let partial = '';
  let lastStats: Stats | null = null;
  /** Stats lines seen so far: stats() waits for the count to move. */
  let statsSeen = 0;
  let exit: Exit | null = null;
  const limit = opts.stderrLimit ?? Infinity;
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => {
    err += d;
    if (err.length > limit) err = err.slice(-limit);
    partial += d;
    for (let nl = partial.indexOf('\n'); nl >= 0; nl = partial.indexOf('\n')) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      const s = parseStatsLine(line);
      if (s !== null) {
        lastStats = s;
        statsSeen++;
      }
      opts.onStderrLine?.(line);
    }
  });
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => (out += d));
  let stderrClosed = false;
  const stderrEnded = new Promise<void>((resolve) =>
    proc.stderr!.once('close', () => {
      stderrClosed = true;
      resolve();
    }),
  );
  const exited = new Promise<Exit>((resolve) =>
    proc.on('exit', (code, signal) => {
      running.delete(proc);
      dog?.cancel();
      exit = { code, signal };
      resolve(exit);
    }),
  );

  const waitStderr = (re: RegExp, timeoutMs = 10000): Promise<string> =>
    waitFor(
      () => {
        const m = re.exec(err);
        if (m) return m[0];
        // Gone, and all it said has been read: it will never match.
        if (exit !== null && stderrClosed) throw new Error(`proxy exited (${exit.code ?? exit.signal}) before ${re}: ${err}`);
        return undefined;
      },
      { timeoutMs, timeout: () => `timed out waiting for ${re} in proxy stderr: ${err}` },
    );

  let port: number;
  try {
    const m = /listening listen=(\S+):(\d+)/.exec(await waitStderr(/listening listen=\S+:\d+/, opts.startTimeoutMs ?? 10000));
    port = Number(m![2]);
  } catch (e) {
    if (exit === null) killProcess(proc, detached, 'SIGKILL');
    throw e;
  }

  const logLines = (): string[] => {
    if (!logPath || !fs.existsSync(logPath)) return [];
    const text = fs.readFileSync(logPath, 'utf8');
    return text === '' ? [] : text.replace(/\n$/, '').split('\n');
  };

  /** SIGKILL goes to its whole process group (when it has one); other signals to pgscribe alone. */
  const kill = (signal: NodeJS.Signals): void => {
    if (exit === null) killProcess(proc, detached && signal === 'SIGKILL', signal);
  };

  return {
    host: '127.0.0.1',
    port,
    logPath,
    proc,
    stderr: () => err,
    get stdout() {
      return out;
    },
    logLines,
    get alive() {
      return exit === null;
    },
    get exit() {
      return exit;
    },
    get lastStats() {
      return lastStats;
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM', o: { killAfterMs?: number } = {}) {
      kill(signal);
      let timer: NodeJS.Timeout | undefined;
      if (o.killAfterMs !== undefined) timer = setTimeout(() => kill('SIGKILL'), o.killAfterMs);
      const r = await exited;
      clearTimeout(timer);
      // The last lines (the shutdown summary) may still be in the pipe; a grandchild holding it
      // open must not hold us up for long.
      await Promise.race([stderrEnded, sleep(2000)]);
      return r;
    },
    waitStderr,
    waitLogLines: (n: number, timeoutMs = 10000) =>
      waitFor(
        () => {
          const lines = logLines();
          return lines.length >= n ? lines : undefined;
        },
        { timeoutMs, timeout: () => `timed out waiting for ${n} log lines, have ${logLines().length}` },
      ),
    async stats(timeoutMs = 5000) {
      const before = statsSeen;
      kill('SIGUSR2');
      return waitFor(
        () => {
          if (statsSeen > before) return lastStats!;
          if (exit !== null) throw new Error(`proxy exited (${exit.code ?? exit.signal}) before its stats line: ${err.slice(-2000)}`);
          return undefined;
        },
        { timeoutMs, intervalMs: 10, timeout: () => `no stats line within ${timeoutMs} ms of SIGUSR2: ${err.slice(-2000)}` },
      );
    },
  };
}
