/**
 * One simple query in flight: its answer assembled from the server's messages, up to the
 * ReadyForQuery that ends it. An ERROR is kept and rejects the query at the end (the server sends
 * ReadyForQuery after it all the same); COPY is refused without ending the session.
 *
 * @see https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-SIMPLE-QUERY
 */
import { Backend } from '../protocol/codes';
import { ProtocolError } from '../protocol/messages';
import { PgClientCode, PgClientError } from './errors';
import { decodeCommandComplete, decodeDataRow, decodeRowDescription, encodeCopyFail } from './messages';

/**
 * What a command that enters CopyBoth mode (START_REPLICATION) does with the server's side of the
 * copy. The command's promise settles when the whole command is over (or failed).
 */
export interface CopyBothHandler {
  /** CopyBothResponse: the server streams from now on, and CopyData may be sent to it. */
  started(): void;
  /** One CopyData, whole: its body is buf[start + 5, end). A view: copy what you keep. */
  data(buf: Buffer, start: number, end: number): void;
}

/** A query's answer in text format. For several statements in one string: the last one's. */
export interface QueryResult {
  /** The command tag, e.g. `SELECT 2`, `CREATE TABLE`; '' for an empty query string. */
  command: string;
  /** Column names ([] for a statement that returns no rows). */
  fields: string[];
  /** Rows, as text; NULL is null. */
  rows: (string | null)[][];
}

export class PendingQuery {
  readonly sql: string;
  readonly timeoutMs: number;
  /** Rejected early (timed out): what still arrives for it is read and dropped. */
  settled = false;
  timer: NodeJS.Timeout | null = null;
  private readonly resolve: (r: QueryResult) => void;
  private readonly rejectFn: (e: Error) => void;
  /** Column names of the statement whose rows are arriving (after RowDescription). */
  private fields: string[] | null = null;
  private rows: (string | null)[][] = [];
  private last: QueryResult | null = null;
  /** The first error of this query. */
  private error: Error | null = null;
  /** Inside a COPY TO STDOUT, whose data is dropped. */
  private copyOut = false;
  /** Set for a command that may enter CopyBoth mode; any other query refuses CopyBothResponse. */
  readonly copyBoth: CopyBothHandler | null;

  constructor(sql: string, timeoutMs: number, resolve: (r: QueryResult) => void, reject: (e: Error) => void, copyBoth: CopyBothHandler | null = null) {
    this.sql = sql;
    this.timeoutMs = timeoutMs;
    this.resolve = resolve;
    this.rejectFn = reject;
    this.copyBoth = copyBoth;
  }

  /** CopyBothResponse arrived: the timeout covered only the wait for it; a stream has no end to time. */
  copyStarted(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /**
   * A message of this query's answer (not ErrorResponse, not ReadyForQuery). False when the type
   * does not belong here; throws ProtocolError when the message is malformed.
   */
  onMessage(type: number, buf: Buffer, start: number, end: number, send: (data: Buffer) => void): boolean {
    switch (type) {
      case Backend.RowDescription: {
        if (this.fields !== null) return false;
        const shape = decodeRowDescription(buf, start, end);
        if (shape.binary) this.failWith(new PgClientError(PgClientCode.Unsupported, 'binary results (FETCH from a BINARY cursor) are not supported'));
        this.fields = shape.names;
        this.rows = [];
        return true;
      }
      case Backend.DataRow: {
        if (this.fields === null) return false;
        const row = decodeDataRow(buf, start, end);
        if (row.length !== this.fields.length) throw new ProtocolError(`DataRow has ${row.length} columns, RowDescription ${this.fields.length}`);
        if (!this.settled && this.error === null) this.rows.push(row);
        return true;
      }
      case Backend.CommandComplete:
        this.last = { command: decodeCommandComplete(buf, start, end), fields: this.fields ?? [], rows: this.rows };
        this.fields = null;
        this.rows = [];
        this.copyOut = false;
        return true;
      case Backend.EmptyQueryResponse:
        this.last = { command: '', fields: [], rows: [] };
        return true;
      case Backend.CopyInResponse:
        // The server waits for data this client does not have: end the COPY; the server answers
        // with an ErrorResponse, which rejects the query.
        send(encodeCopyFail("pgscribe's own connection does not send COPY data"));
        return true;
      case Backend.CopyOutResponse:
        this.failWith(new PgClientError(PgClientCode.Unsupported, "COPY TO STDOUT is not supported on pgscribe's own connection"));
        this.copyOut = true;
        return true;
      case Backend.CopyData:
      case Backend.CopyDone:
        return this.copyOut;
      default:
        return false; // CopyBothResponse among them: the session handles it for a copyBoth command
    }
  }

  /** An ErrorResponse (ERROR): the query fails; the rest of its answer is the server's ReadyForQuery. */
  onError(e: Error): void {
    this.failWith(e);
    this.fields = null;
    this.rows = [];
    this.copyOut = false;
  }

  /** ReadyForQuery: settle with the last result or the first error. */
  finish(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.settled) return;
    this.settled = true;
    if (this.error !== null) this.rejectFn(this.error);
    else this.resolve(this.last ?? { command: '', fields: [], rows: [] });
  }

  /** Reject now (timeout, connection gone); whatever still arrives is dropped. */
  reject(e: Error): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.settled) return;
    this.settled = true;
    this.rejectFn(e);
  }

  private failWith(e: Error): void {
    if (this.error === null) this.error = e;
  }
}
