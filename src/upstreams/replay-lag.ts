/**
 * How far behind its primary a standby is, for the read-only listener's lag bound
 * (max-replica-lag-ms), from what the health checks read: the primary's pg_current_wal_lsn() at
 * each of its checks, and the standby's pg_last_wal_replay_lsn().
 *
 * The primary's position P, read by a check that began at time T, covers everything written
 * before T. A standby that has replayed up to P or further has everything written before T: it
 * misses at most what came after, so its lag is at most now - T. Against the newest such reading
 * the standby is as caught up as pgscribe can know, and its lag is 0.
 *
 * Why not PostgreSQL's usual now() - pg_last_xact_replay_timestamp(): it grows while the primary
 * commits nothing, so on a quiet system every standby would look far behind. It is used only for
 * a standby behind every reading kept here (then the larger of the two), or before the primary's
 * first reading.
 */

/** An LSN as PostgreSQL prints it ('16/B374D848') as a number (exact up to 2^53 bytes of WAL). */
export function lsnValue(lsn: string): number {
  const slash = lsn.indexOf('/');
  if (slash < 0) return NaN;
  return parseInt(lsn.slice(0, slash), 16) * 0x1_0000_0000 + parseInt(lsn.slice(slash + 1), 16);
}

/** Readings kept: at the default 2 s interval, the last two minutes or so. */
const KEPT = 64;

export class PrimaryWalHistory {
  /** The primary's WAL position at its recent checks, oldest first, with when each check began. */
  private readings: { lsn: number; at: number }[] = [];

  /** The primary answered a check begun at `at` (Date.now()) with WAL position `lsn`. */
  record(lsn: string, at: number): void {
    const value = lsnValue(lsn);
    if (!Number.isFinite(value)) return;
    this.readings.push({ lsn: value, at });
    if (this.readings.length > KEPT) this.readings.shift();
  }

  /** A new primary: its positions are not comparable with the old one's history. */
  reset(): void {
    this.readings = [];
  }

  get empty(): boolean {
    return this.readings.length === 0;
  }

  /**
   * A standby's lag in ms at `now`: replayLsn is its pg_last_wal_replay_lsn(), timestampLagMs its
   * now() - pg_last_xact_replay_timestamp() (null before it replayed a transaction). Null: unknown.
   */
  lagOf(replayLsn: string | null, timestampLagMs: number | null, now: number): number | null {
    const r = this.readings;
    if (r.length === 0) return timestampLagMs;
    const replayed = replayLsn === null ? NaN : lsnValue(replayLsn);
    if (Number.isNaN(replayed)) return null;
    for (let i = r.length - 1; i >= 0; i--) {
      if (r[i]!.lsn > replayed) continue;
      return i === r.length - 1 ? 0 : Math.max(0, now - r[i]!.at);
    }
    // Behind every reading kept: at least as far as the oldest one says.
    return timestampLagMs === null ? null : Math.max(timestampLagMs, now - r[0]!.at);
  }
}
