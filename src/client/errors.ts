/**
 * The FATAL errors a session sends in PostgreSQL's place, all in one place: what the client is
 * told, with PostgreSQL's SQLSTATE for the same fault. The session closes after each.
 *
 * @see https://www.postgresql.org/docs/15/errcodes-appendix.html
 */
import { SqlState } from '../protocol/codes';
import type { ErrorFields } from '../protocol/messages';

function fatal(code: string, message: string, hint?: string): ErrorFields {
  return hint === undefined ? { severity: 'FATAL', code, message } : { severity: 'FATAL', code, message, hint };
}

const UPSTREAM_HINT = 'Check that PostgreSQL is running and reachable at the --upstream address.';

export const SessionError = {
  /** 08P01: a malformed or oversized message. */
  protocolViolation: (reason: string) => fatal(SqlState.ProtocolViolation, `pgscribe: protocol violation: ${reason}`),
  /**
   * 0A000: a second SSLRequest or GSSENCRequest, which the postmaster reads as a StartupMessage of
   * that "version" (1234.5679, 1234.5680). Its words: pgscribe, too, speaks 3.0 only.
   */
  unsupportedProtocol: (code: number) =>
    fatal(SqlState.FeatureNotSupported, `unsupported frontend protocol ${code >>> 16}.${code & 0xffff}: server supports 3.0 to 3.0`),
  /** 08P01: bytes in the clear behind an SSLRequest or GSSENCRequest, before its answer (CVE-2021-23214), in the postmaster's words. */
  unencryptedAfterRequest: (request: 'ssl' | 'gssenc') => ({
    severity: 'FATAL' as const,
    code: SqlState.ProtocolViolation,
    message: request === 'ssl' ? 'received unencrypted data after SSL request' : 'received unencrypted data after GSSAPI encryption request',
    detail: 'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.',
  }),
  /** 28000: a plaintext client while --tls-mode require. */
  tlsRequired: () => fatal(SqlState.InvalidAuthorizationSpecification, 'pgscribe: this proxy accepts only TLS connections', 'Connect with sslmode=require, verify-ca or verify-full.'),
  /** 28000: no client certificate, or one not signed by the --tls-ca certificates. */
  clientCertificateRefused: (reason: string) =>
    fatal(
      SqlState.InvalidAuthorizationSpecification,
      `pgscribe: a client certificate signed by a trusted CA is required (${reason})`,
      'Connect with sslcert and sslkey naming a certificate signed by one of the --tls-ca certificates.',
    ),
  /** 53300: over --max-connections. */
  tooManyClients: () => fatal(SqlState.TooManyConnections, 'pgscribe: sorry, too many clients already'),
  /** 53300: over max-user-connections, in PostgreSQL's words for a role's CONNECTION LIMIT. */
  tooManyForRole: (user: string, max: number) =>
    fatal(SqlState.TooManyConnections, `pgscribe: too many connections for role "${user}" (max-user-connections is ${max})`),
  /** 53300: over max-db-connections, in PostgreSQL's words for a database's CONNECTION LIMIT. */
  tooManyForDatabase: (database: string, max: number) =>
    fatal(SqlState.TooManyConnections, `pgscribe: too many connections for database "${database}" (max-db-connections is ${max})`),
  /** 08001: the upstream cannot be reached (or its TLS negotiated): hint says what to check. */
  upstreamUnreachable: (target: string, reason: string, hint = UPSTREAM_HINT) =>
    fatal(SqlState.SqlclientUnableToEstablishSqlconnection, `pgscribe: could not connect to upstream server ${target}: ${reason}`, hint),
  /** 08006: the upstream sent something that is not the protocol. */
  upstreamInvalid: (reason: string) => fatal(SqlState.ConnectionFailure, `pgscribe: upstream server sent an invalid message: ${reason}`),
  /** 08006: the upstream went away mid-session without saying why. */
  upstreamClosed: () =>
    fatal(SqlState.ConnectionFailure, 'pgscribe: upstream server closed the connection unexpectedly', 'The PostgreSQL server may have restarted or terminated this backend; reconnect.'),
  /** 08001: several upstream nodes and none primary within primary-wait-ms. */
  noPrimary: (waitMs: number, nodes: string) =>
    fatal(
      SqlState.SqlclientUnableToEstablishSqlconnection,
      `pgscribe: no upstream server is primary (waited ${waitMs} ms): ${nodes}`,
      'A failover may be in progress: promote a standby, or check the nodes pgscribe cannot reach; then reconnect.',
    ),
  /** 08001: the read-only listener found no standby to send the session to (replica-fallback refuse). */
  noStandby: (nodes: string) =>
    fatal(
      SqlState.SqlclientUnableToEstablishSqlconnection,
      `pgscribe: no upstream standby is up and within max-replica-lag-ms: ${nodes}`,
      'Connect to the primary listener, or wait for a standby to catch up; replica-fallback primary would send such sessions to the primary.',
    ),
  /** 57P01: the session's node went into recovery (a switchover): its next write would fail with 25006. */
  upstreamDemoted: (node: string, primary: string | null) =>
    fatal(
      SqlState.AdminShutdown,
      `pgscribe: terminating connection because upstream server ${node} is no longer the primary (it is in recovery)`,
      primary === null ? 'No node is primary yet; reconnect when the failover is over.' : `The primary is now ${primary}; reconnect to be sent there.`,
    ),
  /** 57P01: without credentials, a session tried a node whose role was unknown, and it is a standby. */
  upstreamInRecovery: (node: string, primary: string | null) =>
    fatal(
      SqlState.AdminShutdown,
      `pgscribe: terminating connection because upstream server ${node} is in recovery (not the primary)`,
      primary === null
        ? 'pgscribe learns which node is primary from the sessions (no catalog-user is set); reconnect to be sent to another node.'
        : `The primary is ${primary}; reconnect to be sent there.`,
    ),
  /** 57P01: the proxy is shutting down. */
  shuttingDown: () => fatal(SqlState.AdminShutdown, 'pgscribe: terminating connection because the proxy is shutting down'),
};

/** A socket error that is how many peers hang up (a reset, a broken pipe): not worth an ops line. */
export function isGoodbye(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ECONNRESET' || err.code === 'EPIPE';
}
