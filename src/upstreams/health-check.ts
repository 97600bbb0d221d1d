/**
 * One health check of one upstream node: connect as pgscribe's own user (catalog-user), ask
 * whether the node is in recovery and, on a standby, how far its replay is, then disconnect. A
 * fresh connection each time: that the node accepts one is part of what is checked.
 */
import type { HostPort } from '../config';
import { connectOwn, type OwnLogin } from '../pg/own-login';

/** What one check learned of a node. */
export interface NodeReport {
  /**
   * pg_is_in_recovery(): a standby (or a primary still starting up). Null: the check cannot tell
   * (a probe without credentials, startup-probe.ts).
   */
  inRecovery: boolean | null;
  /** pg_last_wal_replay_lsn() on a standby; null on a primary. */
  replayLsn: string | null;
  /**
   * now() - pg_last_xact_replay_timestamp() on a standby, in ms; null on a primary or before
   * the first replayed transaction. It grows while the primary commits nothing, too.
   */
  replayLagMs: number | null;
  /** pg_current_wal_lsn() on a primary (how far a standby must have replayed to be caught up); null on a standby. */
  walLsn: string | null;
  /**
   * The timeline: a primary's current one; a standby's WAL receiver's (pg_stat_wal_receiver
   * received_tli, which a user without pg_read_all_stats does not see: null then).
   */
  timeline?: number | null;
  /** A standby's WAL receiver runs (it streams from a primary); false when it does not; null on a primary. */
  walReceiver?: boolean | null;
}

const QUERY =
  'select pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, ' +
  '(extract(epoch from now() - pg_last_xact_replay_timestamp()) * 1000)::float8, ' +
  'case when pg_is_in_recovery() then null else pg_current_wal_lsn()::text end, ' +
  "case when pg_is_in_recovery() then (select received_tli from pg_stat_wal_receiver)::text else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int::text end, " +
  'case when pg_is_in_recovery() then exists (select 1 from pg_stat_wal_receiver where pid is not null) end';

/** Checks `node` within timeoutMs; rejects with the reason it is not healthy. */
export async function checkNode(login: OwnLogin, database: string, node: HostPort, timeoutMs: number): Promise<NodeReport> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  const conn = connectOwn({ ...login, upstream: node, connectTimeoutMs: timeoutMs }, database, timeoutMs);
  try {
    const c = await Promise.race([conn, deadline]);
    try {
      const r = await Promise.race([c.query(QUERY), deadline]);
      const row = r.rows[0];
      if (row === undefined) throw new Error('the health query returned no row');
      const lag = row[2] === null || row[2] === undefined ? null : Number(row[2]);
      return {
        inRecovery: row[0] === 't',
        replayLsn: row[1] ?? null,
        replayLagMs: lag === null || !Number.isFinite(lag) ? null : Math.max(0, Math.round(lag)),
        walLsn: row[3] ?? null,
        timeline: row[4] === null || row[4] === undefined ? null : Number(row[4]),
        walReceiver: row[5] === null || row[5] === undefined ? null : row[5] === 't',
      };
    } finally {
      c.close();
    }
  } finally {
    clearTimeout(timer);
    // A connection that arrives after the deadline is closed too.
    conn.then((c) => c.close(), () => {});
  }
}
