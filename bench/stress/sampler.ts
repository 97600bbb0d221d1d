/** The samples of `make stress`: the proxy's RSS, CPU, heap, sessions and sockets every 5 s. */
import { CLK_TCK, rssBytes, socketCount, treeCpuTicks } from '../../test/harness/proc';
import type { Stats } from '../../test/harness/proxy';

export interface Sample {
  /** Seconds since the load started. */
  t: number;
  iso: string;
  /** start: the sample taken as the load starts, before its clients connect; end: after the load. */
  phase: 'start' | 'load' | 'end';
  rssMb: number | null;
  heapUsedMb: number | null;
  externalMb: number | null;
  cpuPct: number | null;
  clients: number | null;
  sessions: number | null;
  sockets: number | null;
  logLines: number | null;
  bytesFromClients: number | null;
  bytesFromServers: number | null;
}

const MB = 1024 * 1024;

/** One sample per stats line of the proxy: its /proc figures and the stats line's. */
export class Sampler {
  readonly samples: Sample[] = [];
  phase: 'start' | 'load' | 'end' = 'start';
  private prevTicks: number | null;
  private prevAt: number;
  /** Longest time between two stats lines while sampling (ms): the proxy's event loop kept up if ~5000. */
  maxGapMs = 0;
  private lastAt: number;

  constructor(
    private readonly pid: number,
    private readonly t0: number,
  ) {
    this.prevTicks = ticksOf(pid);
    this.prevAt = t0;
    this.lastAt = t0;
  }

  take(stats: Stats | null, at: number): Sample {
    const ticks = ticksOf(this.pid);
    const dt = (at - this.prevAt) / 1000;
    const cpuPct = ticks !== null && this.prevTicks !== null && dt >= 0.5 ? ((ticks - this.prevTicks) / CLK_TCK / dt) * 100 : null;
    if (ticks !== null && dt >= 0.5) {
      this.prevTicks = ticks;
      this.prevAt = at;
    }
    if (this.samples.length > 0) this.maxGapMs = Math.max(this.maxGapMs, at - this.lastAt);
    this.lastAt = at;
    // With --processes N the stats line is the total of the serving processes (their rss summed);
    // the primary's own is added. One process: its /proc figure.
    const multi = stats !== null && stats['processes'] !== undefined;
    const rss = multi ? (stats['rss'] ?? 0) + (rssBytes(this.pid) ?? 0) : rssBytes(this.pid);
    const g = (k: string) => (stats && Number.isFinite(stats[k]) ? stats[k]! : null);
    const mb = (v: number | null) => (v === null ? null : v / MB);
    const s: Sample = {
      t: (at - this.t0) / 1000,
      iso: new Date(at).toISOString(),
      phase: this.phase,
      rssMb: mb(rss ?? g('rss')),
      heapUsedMb: mb(g('heap_used')),
      externalMb: mb(g('external')),
      cpuPct,
      clients: g('clients'),
      sessions: g('sessions'),
      sockets: socketCount(this.pid),
      logLines: g('log_lines'),
      bytesFromClients: g('bytes_from_clients'),
      bytesFromServers: g('bytes_from_servers'),
    };
    this.samples.push(s);
    if (this.phase === 'start') this.phase = 'load';
    return s;
  }
}

/** CPU ticks of the proxy and its children (the serving processes of --processes N); null once it is gone. */
function ticksOf(pid: number): number | null {
  try {
    return treeCpuTicks(pid);
  } catch {
    return null;
  }
}
