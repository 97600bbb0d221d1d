/** A started `make bench` target, as a cell and the report see it (targets.ts starts them). */
import type { TargetKind, Workload } from './settings';

export interface CacheCounters {
  /** Lookups answered from the cache. */
  hits: number;
  /** Lookups that went to PostgreSQL (cache misses). */
  misses: number;
}

/** What the bench reads of a pgscribe in wal mode around each run. */
export interface WalProbe {
  /** Its stats line (SIGUSR2): wal_commits, wal_lag_p99_ms, cache_hits... */
  stats: () => Promise<Record<string, number>>;
  /** The walsender backends streaming to it now (pg_replication_slots.active_pid). */
  senderPids: () => Promise<number[]>;
}

/** A started target: where pgbench connects, and whose CPU time a run is charged. */
export interface Target {
  /** Its name in the report: the kind, plus @base when it runs the BASELINE_MAIN build. */
  name: string;
  kind: TargetKind;
  /** Runs the BASELINE_MAIN build. */
  base: boolean;
  port: number;
  /** Root of the process tree whose CPU time is charged to this target (none for direct). */
  pid: number | null;
  /** More instances of the target: pgbench's clients are split evenly over `port` and these. */
  extraPorts?: number[];
  /** More process trees charged to this target (its other instances, its Redis). */
  extraPids?: number[];
  /** Called between runs (pgscribe with its log on: rotate the log away so the disk does not fill). */
  betweenRuns?: () => Promise<void>;
  /** At cleanup. */
  stop: () => Promise<void>;
  /** Cumulative query-cache counters, read before and after each run (the cache targets). */
  cacheCounters?: () => Promise<CacheCounters | null>;
  /**
   * wal mode (pgscribe-cache-wal): its stats line (the wal_* fields), and the pids of the
   * walsenders serving its change streams (the slots named pgscribe_<its pid>_*).
   */
  wal?: WalProbe;
  /** libpq settings for pgbench against this target (pgscribe-tls: sslmode=require). */
  env?: Record<string, string>;
  /** The only workloads this target runs (default: all of WORKLOADS). */
  workloads?: readonly Workload[];
}
