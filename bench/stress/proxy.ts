/**
 * pgscribe under `make stress` (the harness's launcher): its WARN/ERROR lines, the final line
 * count of its shutdown summary, each stats line as it comes (the sampler's clock), and an exit
 * that nobody asked for.
 */
import { parseStatsLine, startProxy, type Exit, type Proxy, type Stats } from '../../test/harness/proxy';
import { PGSCRIBE_ARGS, STATS_INTERVAL_MS } from './settings';

export class StressProxy {
  /** WARN/ERROR lines from its stderr (first 50). */
  readonly problems: string[] = [];
  /** query_log_lines of its `shutdown complete` line. */
  shutdownLogLines: number | null = null;
  /** Called with every stats line (periodic and asked for) and when it arrived. */
  onStats: ((s: Stats, at: number) => void) | null = null;
  /** With --processes N: each serving process's RSS (MB) from its own stats lines, and when (ms since the epoch). */
  readonly processRss = new Map<number, { at: number; mb: number }[]>();
  /** When it exited (ms since the epoch). */
  exitAt: number | null = null;
  private stopping = false;
  private proxy!: Proxy;

  private constructor() {}

  /** Start it in front of pgPort, logging to logPath, with a stats line every 5 s and PGSCRIBE_ARGS. */
  static async start(pgPort: number, logPath: string, cwd: string): Promise<StressProxy> {
    const sp = new StressProxy();
    sp.proxy = await startProxy({
      upstreamPort: pgPort,
      cwd,
      detached: true,
      // It says a stats line every 5 s for as long as the run lasts: keep the tail only.
      stderrLimit: 1 << 20,
      startTimeoutMs: 15000,
      args: ['--log', logPath, '--stats-interval', String(STATS_INTERVAL_MS), '--max-connections', '200', ...PGSCRIBE_ARGS],
      onStderrLine: (line) => sp.onLine(line),
    });
    sp.proxy.proc.once('exit', (code, signal) => {
      sp.exitAt = Date.now();
      if (!sp.stopping) process.stderr.write(`stress: the proxy exited (code ${code}, signal ${signal})\n`);
    });
    return sp;
  }

  get port(): number {
    return this.proxy.port;
  }

  get pid(): number {
    return this.proxy.proc.pid!;
  }

  get alive(): boolean {
    return this.proxy.alive;
  }

  get exit(): Exit | null {
    return this.proxy.exit;
  }

  private onLine(line: string): void {
    const own = / INFO stats process=(\d+) .*\brss=(\d+)/.exec(line);
    if (own !== null) {
      const k = Number(own[1]);
      if (!this.processRss.has(k)) this.processRss.set(k, []);
      this.processRss.get(k)!.push({ at: Date.now(), mb: Number(own[2]) / (1024 * 1024) });
      return;
    }
    const stats = parseStatsLine(line);
    if (stats !== null) {
      this.onStats?.(stats, Date.now());
      return;
    }
    const sd = / INFO shutdown complete .*query_log_lines=(\d+)/.exec(line);
    if (sd) this.shutdownLogLines = Number(sd[1]);
    if (/ (WARN|ERROR) /.test(line) && this.problems.length < 50) this.problems.push(line);
  }

  /** SIGUSR2 and the next stats line (or null when the proxy is gone or silent for 5 s). */
  requestStats(): Promise<Stats | null> {
    if (!this.alive) return Promise.resolve(null);
    return this.proxy.stats(5000).catch(() => null);
  }

  /** SIGTERM, and the exit status (null when it had to be killed after 20 s). */
  async stop(): Promise<Exit | null> {
    if (this.exit !== null) return this.exit;
    this.stopping = true;
    const exit = await this.proxy.stop('SIGTERM', { killAfterMs: 20000 });
    return exit.signal === 'SIGKILL' ? null : exit;
  }

  /** Cleanup: SIGKILL, whatever it is doing. */
  async kill(): Promise<void> {
    this.stopping = true;
    await this.proxy.stop('SIGKILL');
  }
}
