/**
 * The two kinds of error pgscribe's own PostgreSQL connection reports: what the server said
 * (PgError, with its SQLSTATE), and what went wrong on pgscribe's side of the wire
 * (PgClientError, with a stable `PGSCRIBE_PG_*` code).
 *
 * @see https://www.postgresql.org/docs/15/protocol-error-fields.html
 */

/** An ErrorResponse from PostgreSQL: a failed query (ERROR) or the end of the connection (FATAL). */
export class PgError extends Error {
  /** SQLSTATE, e.g. 28P01 (wrong password), 42P01 (no such table), 57P01 (terminated). */
  readonly code: string;
  /** ERROR, FATAL or PANIC (the non-localized severity when the server sends it). */
  readonly severity: string;
  declare readonly detail?: string;
  declare readonly hint?: string;

  /** From the fields of an ErrorResponse, by field code ('S', 'V', 'C', 'M', 'D', 'H'). */
  constructor(fields: ReadonlyMap<string, string>) {
    super(fields.get('M') ?? 'no message');
    this.name = 'PgError';
    this.code = fields.get('C') ?? 'XX000';
    this.severity = fields.get('V') ?? fields.get('S') ?? 'ERROR';
    const detail = fields.get('D');
    const hint = fields.get('H');
    if (detail !== undefined) this.detail = detail;
    if (hint !== undefined) this.hint = hint;
  }

  /** FATAL or PANIC: the server closes the connection after it. */
  get fatal(): boolean {
    return this.severity === 'FATAL' || this.severity === 'PANIC';
  }
}

export const PgClientCode = {
  /** The connection could not be made: unreachable, refused, TLS, timeout, closed during startup. */
  Connect: 'PGSCRIBE_PG_CONNECT',
  /** Authentication could not be done: a method pgscribe does not speak, no password, SCRAM failed. */
  Auth: 'PGSCRIBE_PG_AUTH',
  /** The server sent something that is not the protocol (malformed, out of place, oversized). */
  Protocol: 'PGSCRIBE_PG_PROTOCOL',
  /** The connection is gone (or was closed by pgscribe) before the query was answered. */
  Closed: 'PGSCRIBE_PG_CLOSED',
  /** The query ran past its timeout; it was cancelled and the connection stays usable. */
  QueryTimeout: 'PGSCRIBE_PG_QUERY_TIMEOUT',
  /** The query asked for something this client does not do (COPY), or is not a valid query string. */
  Unsupported: 'PGSCRIBE_PG_UNSUPPORTED',
} as const;
export type PgClientCode = (typeof PgClientCode)[keyof typeof PgClientCode];

/** A failure on pgscribe's side of the connection; `code` says which kind. */
export class PgClientError extends Error {
  readonly code: PgClientCode;

  constructor(code: PgClientCode, message: string) {
    super(message);
    this.name = 'PgClientError';
    this.code = code;
  }
}
