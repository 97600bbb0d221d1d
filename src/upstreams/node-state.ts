/**
 * One upstream node as the node set (upstream-set.ts) keeps it: what its checks and the sessions
 * said, and how /upstreams and the metrics show it; with the set's settings and events.
 */
import { formatHostPort as nodeName, type HostPort } from '../config';
import type { NodeReport } from './health-check';

export type NodeRole = 'unknown' | 'primary' | 'standby';
/** Who said a node's role: a health check (a login, or a probe that trust let in), or a session. */
export type RoleSource = 'check' | 'session';

/** A node as /upstreams and the metrics show it. */
export interface NodeView {
  node: string;
  /** 'down', or the role of an up node ('unknown' before its first check). */
  state: 'down' | NodeRole;
  /** The node new sessions of the primary listener go to. */
  primary: boolean;
  /** Failed checks in a row. */
  failures: number;
  lastError: string | null;
  /** ISO-8601 time of the last check's end; null before the first. */
  checkedAt: string | null;
  replayLsn: string | null;
  /** How far behind the primary a standby is (replay-lag.ts); null on a primary, or unknown. */
  replayLagMs: number | null;
  /** A standby that new read-only sessions may go to now (up, last check passed, within the lag bound). */
  readOnlyCandidate: boolean;
  /** Client sessions connected (or connecting) to it. */
  sessions: number;
  /** Who said its role (null while unknown). */
  roleFrom: RoleSource | null;
  /** Without credentials, while no node is known to be primary: the node new sessions try. */
  tried: boolean;
}

export interface HealthOptions {
  intervalMs: number;
  timeoutMs: number;
  failures: number;
  /** The lag bound of read-only sessions (max-replica-lag-ms); null: no read-only listener. */
  maxReplicaLagMs?: number | null;
  /** The checks cannot tell roles (no credentials): sessions' in_hot_standby does (file comment). */
  rolesFromSessions?: boolean;
}

export interface UpstreamEvents {
  /**
   * A primary was chosen that differs from the last one chosen (`from`; null at the first
   * choice): a failover or switchover happened. Gaps without a primary in between do not count.
   */
  primaryChanged(from: HostPort | null, to: HostPort): void;
  /** A node that was primary is in recovery now; `primary` is the new one, if known. */
  demoted(node: HostPort, primary: HostPort | null): void;
}

export type NodeCheck = (node: HostPort, timeoutMs: number) => Promise<NodeReport>;

export class NodeState {
  readonly name: string;
  /** Up once a check passed, down after `failures` failed ones in a row (and before the first check). */
  up = false;
  role: NodeRole = 'unknown';
  roleFrom: RoleSource | null = null;
  /** When its role was last said. */
  roleAt = 0;
  failures = 0;
  lastError: string | null = null;
  checkedAt = 0;
  replayLsn: string | null = null;
  replayLagMs: number | null = null;
  /** Within max-replica-lag-ms at the last check (read-only listener; said when it changes). */
  withinLag = false;
  /** A primary's current timeline, a standby's WAL receiver's (null: unknown). */
  timeline: number | null = null;
  /** A primary's pg_current_wal_lsn() at its last check, and when that check began. */
  lastWal: { lsn: string; began: number } | null = null;
  /** Its lag was last measured against the primary's WAL position (replay-lag.ts), not guessed without it. */
  lagMeasured = false;
  checking = false;
  /** Bumped by what a session saw (sawInRecovery): a check begun before it is out of date. */
  epoch = 0;

  constructor(readonly address: HostPort) {
    this.name = nodeName(address);
  }

  get state(): 'down' | NodeRole {
    return this.up ? this.role : 'down';
  }
}
