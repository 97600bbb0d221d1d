/**
 * What the limits count, in one process (plain numbers: with --processes N the primary sums the
 * processes'); the metrics registry (src/metrics.ts) shows them on the stats line, /stats and
 * /metrics.
 */
export interface LimitCounters {
  /** Sessions refused with 53300 under max-user-connections. */
  refusedUserLimit: number;
  /** Sessions refused with 53300 under max-db-connections. */
  refusedDbLimit: number;
}

export function newLimitCounters(): LimitCounters {
  return { refusedUserLimit: 0, refusedDbLimit: 0 };
}
