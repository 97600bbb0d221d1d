/**
 * Where the admin server's figures come from. With one process, from its own Server and Insight
 * (LocalSource, below). With --processes N the primary answers, asking every serving process and
 * summing (processes/admin-source.ts): the admin server does not know which.
 */
import type { Config, HostPort } from '../config';
import type { DigestView, Insight, InsightOptions, Recommendation, TableView } from '../insight';
import { readingsOf, type MetricsHost, type Readings } from '../metrics';
import type { NodeView } from '../upstreams/upstream-set';

/** The options of every Insight the admin view uses (each process's, and the primary's merge of them). */
export function insightOptions(cfg: Config): InsightOptions {
  return { maxDigests: cfg.admin.digestMaxEntries, cacheEnabled: cfg.cache.enabled, cacheTtlMs: cfg.cache.ttlMs };
}

export interface TablesReport {
  tables: TableView[];
  recommendations: Recommendation[];
}

export interface AdminSource {
  /** The upstream /health probes (with one node; with several, /ready tells about them). */
  readonly upstream: HostPort;
  readonly connectTimeoutMs: number;
  /** Why pgscribe cannot take sessions now (not listening yet or any more, a serving process down or stuck), or null. */
  unavailable(): Promise<string | null>;
  /** Whether it is listening for clients (/health says so). */
  listening(): boolean;
  /** The figures of /metrics, /stats and the stats line. */
  readings(): Promise<Readings>;
  queries(sort: 'total' | 'calls' | 'mean', limit: number): Promise<DigestView[]>;
  tables(): Promise<TablesReport>;
  /** Drops every cached answer; resolves false when the cache is off. */
  flushCache(): Promise<boolean>;
  /** Several upstream nodes: each one's health; null with one node (no health checks). */
  upstreams(): Promise<NodeView[] | null>;
}

/** What LocalSource needs of the Server (declared here, so that the admin code does not import it). */
export interface LocalHost extends MetricsHost {
  readonly config: { readonly upstreams: readonly HostPort[]; readonly limits: { readonly connectTimeoutMs: number } };
  readonly cache: (MetricsHost['cache'] & { readonly cache: boolean; readonly layer: { flush(): void } }) | null;
  readonly upstreams: { views(sessions?: ReadonlyMap<string, number>): NodeView[] } | null;
  sessionsByNode(): Map<string, number>;
}

/** One process's own figures. */
export class LocalSource implements AdminSource {
  constructor(
    private readonly server: LocalHost,
    private readonly insight: Insight,
  ) {}

  get upstream(): HostPort {
    return this.server.config.upstreams[0]!;
  }

  get connectTimeoutMs(): number {
    return this.server.config.limits.connectTimeoutMs;
  }

  unavailable(): Promise<string | null> {
    return Promise.resolve(this.server.listening ? null : 'pgscribe is not listening (starting or shutting down)');
  }

  listening(): boolean {
    return this.server.listening;
  }

  readings(): Promise<Readings> {
    return Promise.resolve(readingsOf(this.server));
  }

  queries(sort: 'total' | 'calls' | 'mean', limit: number): Promise<DigestView[]> {
    return Promise.resolve(this.insight.queries(sort, limit));
  }

  tables(): Promise<TablesReport> {
    return Promise.resolve(this.insight.tables());
  }

  upstreams(): Promise<NodeView[] | null> {
    return Promise.resolve(this.server.upstreams?.views(this.server.sessionsByNode()) ?? null);
  }

  flushCache(): Promise<boolean> {
    const cache = this.server.cache;
    if (cache === null || !cache.cache) return Promise.resolve(false);
    cache.layer.flush();
    return Promise.resolve(true);
  }
}
