/**
 * The admin view of --processes N: the admin server runs in the primary, and every answer is the
 * sum of the ready serving processes' own (each asked over IPC, primary.ts ask()).
 * - /metrics and /stats: counters and gauges add, maxima and percentiles take the largest
 *   (metrics.ts combine()), the query latency histograms merge; the primary adds its own memory
 *   and the query log bytes it still holds.
 * - /queries and /tables: the processes' digests and table counters merge by normal form and
 *   name, and are then sorted, ranked and advised on as one (their percentiles come from the
 *   merged histograms).
 * - /health fails while a serving process is not ready (its sessions were lost, and the figures
 *   lack its share), or does not answer within 2 s (stopped, or its event loop saturated).
 * - A question goes to draining processes too (they still hold sessions and a cache); none able
 *   to answer, or one that does not answer within 2 s, fails the request (500) rather than give a
 *   partial sum. Concurrent requests of one kind share one question.
 * A restarted process starts its counters from zero, so a sum drops once: Prometheus' rate() and
 * increase() read that as a counter reset.
 */
import type { Config, HostPort } from '../config';
import { Insight, type DigestRecord, type DigestView, type InsightPart, type TableRecord } from '../insight';
import type { Readings } from '../metrics';
import { combinedNodeViews, sumReadings } from '../metrics-sum';
import { insightOptions, type AdminSource, type TablesReport } from '../admin/source';
import type { AdminQuery } from './ipc';
import type { NodeView } from '../upstreams/upstream-set';
import type { Primary } from './primary';

export class ProcessesSource implements AdminSource {
  private readonly inflight = new Map<AdminQuery, Promise<unknown[]>>();

  constructor(
    private readonly primary: Primary,
    private readonly cfg: Config,
    /** Query log bytes the primary holds, not yet written to the file. */
    private readonly queuedBytes: () => number,
  ) {}

  get upstream(): HostPort {
    return this.cfg.upstreams[0]!;
  }

  get connectTimeoutMs(): number {
    return this.cfg.limits.connectTimeoutMs;
  }

  async unavailable(): Promise<string | null> {
    if (!this.primary.listening) return 'pgscribe is not listening (starting or shutting down)';
    const down = this.primary.notReady();
    if (down.length > 0) {
      return `serving process ${down.join(', ')} of ${this.cfg.processes} is not ready (starting, restarting after a crash, or draining); new sessions go to the others`;
    }
    // Up is not enough: a stopped or saturated process takes connections it cannot serve.
    try {
      await this.ask('readings');
      return null;
    } catch (err) {
      return (err as Error).message;
    }
  }

  /**
   * One question to every process at a time per kind: requests that come while one is out share
   * its answers (the dashboard polls every second, and each answer costs every process a
   * serialisation of its figures between its clients' messages).
   */
  private ask(q: AdminQuery): Promise<unknown[]> {
    let pending = this.inflight.get(q);
    if (pending === undefined) {
      pending = this.primary.ask(q).finally(() => this.inflight.delete(q));
      this.inflight.set(q, pending);
    }
    return pending;
  }

  listening(): boolean {
    return this.primary.listening;
  }

  async readings(): Promise<Readings> {
    const parts = (await this.ask('readings')) as Readings[];
    const r = sumReadings(parts);
    const mem = process.memoryUsage();
    r.listening = this.primary.listening;
    r.startedAt = this.primary.startedAt;
    r.rss += mem.rss;
    r.heapUsed += mem.heapUsed;
    r.external += mem.external;
    r.logQueuedBytes += this.queuedBytes();
    r.processes = { configured: this.cfg.processes, up: this.cfg.processes - this.primary.notReady().length };
    return r;
  }

  async queries(sort: 'total' | 'calls' | 'mean', limit: number): Promise<DigestView[]> {
    const merged = new Insight(insightOptions(this.cfg));
    for (const part of (await this.ask('digests')) as InsightPart<DigestRecord>[]) merged.absorbDigests(part);
    return merged.queries(sort, limit);
  }

  async tables(): Promise<TablesReport> {
    const merged = new Insight(insightOptions(this.cfg));
    for (const part of (await this.ask('tables')) as InsightPart<TableRecord>[]) merged.absorbTables(part);
    return merged.tables();
  }

  /** Every process checks the nodes itself: the first answer's states, every process's sessions. */
  async upstreams(): Promise<NodeView[] | null> {
    if (this.cfg.upstreams.length < 2) return null;
    return combinedNodeViews((await this.ask('upstreams')) as (NodeView[] | null)[]);
  }

  async flushCache(): Promise<boolean> {
    if (!this.cfg.cache.enabled) return false;
    await this.primary.ask('flush');
    return true;
  }
}
