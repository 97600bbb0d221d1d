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
  /** Queries held back by a rate limit before they went upstream. */
  rateDelayed: number;
  /** The time those queries were held, in all (ms). */
  rateDelayMs: number;
  /** Queries refused with 53400: they would have waited past rate-limit-max-delay-ms. */
  rateRefused: number;
}

export function newLimitCounters(): LimitCounters {
  return { refusedUserLimit: 0, refusedDbLimit: 0, rateDelayed: 0, rateDelayMs: 0, rateRefused: 0 };
}
