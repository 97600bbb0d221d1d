/**
 * Several upstreams: a node can turn standby between two health checks, and without credentials
 * the checks cannot tell roles at all. PostgreSQL 14 and later report in_hot_standby in a
 * ParameterStatus at the start of every session; a session of the primary listener that reached a
 * standby is closed here, with 57P01, before any of its writes can fail with 25006, and the node
 * is marked (no new session goes there until a check passes, or without credentials for a while).
 * A session that reached a node out of recovery tells the node set so (sawPrimary).
 */
import { formatHostPort as name, type HostPort } from '../config';
import type { ErrorFields } from '../protocol/messages';
import { SessionError } from './errors';
import type { ClientHost } from './host';

const HOT_STANDBY_ON = Buffer.from('in_hot_standby\0on\0');
const HOT_STANDBY_OFF = Buffer.from('in_hot_standby\0off\0');

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
  if (router === null || node === null || s.readOnly) return false;
  if (says(HOT_STANDBY_OFF, buf, start, end)) {
    // Without credentials, this is how pgscribe learns which node is primary (upstream-set.ts).
    router.sawPrimary(node);
    return false;
  }
  if (!says(HOT_STANDBY_ON, buf, start, end)) return false;
  const known = router.primary;
  const wasPrimary = known !== null && known.host === node.host && known.port === node.port;
  router.sawInRecovery(node);
  const primary = router.primary;
  host.ops.warn(
    wasPrimary
      ? 'a session reached an upstream node in recovery (its role changed since the last health check); closing it with 57P01'
      : 'a session tried an upstream node whose role was unknown, and it is in recovery; closing it with 57P01 (the next session tries another node)',
    { conn: s.id, client: s.address, node: name(node) },
  );
  s.fail(
    wasPrimary
      ? SessionError.upstreamDemoted(name(node), primary === null ? null : name(primary))
      : SessionError.upstreamInRecovery(name(node), primary === null ? null : name(primary)),
  );
  return true;
}

/** A ParameterStatus message (buf[start..end)) that is exactly `status` (name and value). */
function says(status: Buffer, buf: Buffer, start: number, end: number): boolean {
  return end - start === 5 + status.length && buf.compare(status, 0, status.length, start + 5, end) === 0;
}
