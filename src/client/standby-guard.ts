/**
 * Several upstreams: a node can turn standby between two health checks. PostgreSQL 14 and later
 * report in_hot_standby in a ParameterStatus at the start of every session; a session of the
 * primary listener that reached a standby is closed here, with 57P01, before any of its writes
 * can fail with 25006, and the node is marked (no new session goes there until a check passes).
 */
import { formatHostPort as name, type HostPort } from '../config';
import type { ErrorFields } from '../protocol/messages';
import { SessionError } from './errors';
import type { ClientHost } from './host';

const HOT_STANDBY_ON = Buffer.from('in_hot_standby\0on\0');

/** What the guard needs of the session. */
export interface GuardedSession {
  readonly id: number;
  readonly address: string;
  /** A read-only session (--listen-replicas) belongs on a standby: the guard leaves it alone. */
  readonly readOnly: boolean;
  fail(error: ErrorFields): void;
}

/**
 * A ParameterStatus (buf[start..end)) of a session starting on `node`: true when it said the node
 * is a standby and the session was closed.
 */
export function closedOnStandby(s: GuardedSession, host: ClientHost, node: HostPort | null, buf: Buffer, start: number, end: number): boolean {
  const router = host.upstreams;
  if (router === null || node === null || s.readOnly || !isHotStandbyOn(buf, start, end)) return false;
  router.sawInRecovery(node);
  const primary = router.primary;
  host.ops.warn('a session reached an upstream node in recovery (its role changed since the last health check); closing it with 57P01', {
    conn: s.id,
    client: s.address,
    node: name(node),
  });
  s.fail(SessionError.upstreamDemoted(name(node), primary === null || (primary.host === node.host && primary.port === node.port) ? null : name(primary)));
  return true;
}

/** A ParameterStatus message saying in_hot_standby = on. */
function isHotStandbyOn(buf: Buffer, start: number, end: number): boolean {
  return end - start === 5 + HOT_STANDBY_ON.length && buf.compare(HOT_STANDBY_ON, 0, HOT_STANDBY_ON.length, start + 5, end) === 0;
}
