/**
 * The protocol side of pgscribe's own PostgreSQL connection, without the socket: startup and
 * authentication (trust, cleartext, MD5, SCRAM-SHA-256), then simple queries one at a time, one
 * of which may enter CopyBoth mode (START_REPLICATION on a replication connection). Bytes
 * come in through push() and go out through the host, so the whole exchange can be driven by a
 * test without a server.
 *
 * One state field, changed only in to(). Anything the server sends that does not fit the state
 * (a malformed message, a type out of place, an oversized length) ends the session with a
 * reason; an ERROR ends only the query it answers; a FATAL ends the session.
 *
 * @see https://www.postgresql.org/docs/15/protocol-flow.html
 */
import { Fifo } from '../fifo';
import { Backend, Frontend, TxStatus } from '../protocol/codes';
import { Framer, describeType } from '../protocol/framer';
import { ProtocolError, decodeParameterStatus, encodeMessage } from '../protocol/messages';
import { PgClientCode, PgClientError, PgError } from './errors';
import * as msg from './messages';
import { Authenticator } from './auth';
import { PendingQuery, type CopyBothHandler, type QueryResult } from './query';

export type { CopyBothHandler, QueryResult } from './query';

export const SessionState = {
  /** StartupMessage sent; the server's Authentication requests are answered. */
  Authenticating: 'authenticating',
  /** AuthenticationOk seen; ParameterStatus and BackendKeyData until ReadyForQuery. */
  Starting: 'starting',
  /** Ready for a query, none in flight. */
  Idle: 'idle',
  /** One Query sent; its answer ends with ReadyForQuery. */
  Busy: 'busy',
  /**
   * A copyBoth() command got CopyBothResponse: CopyData flows both ways until the server ends
   * the copy (CopyDone, an ERROR, or the CommandComplete a walsender sends when the server shuts
   * down); then Busy again up to its ReadyForQuery.
   */
  Copying: 'copying',
  /** Over: FATAL, malformed input, the socket gone, or closed by pgscribe. */
  Closed: 'closed',
} as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];

const NEXT: Record<SessionState, readonly SessionState[]> = {
  authenticating: ['starting', 'closed'],
  starting: ['idle', 'closed'],
  idle: ['busy', 'closed'],
  busy: ['idle', 'copying', 'closed'],
  copying: ['busy', 'closed'],
  closed: [],
};

/** What the session needs from its connection. */
export interface SessionHost {
  send(data: Buffer): void;
  /** Startup is complete (the first ReadyForQuery). */
  ready(): void;
  /** The session ended from the server's side or by a protocol fault; the host drops the socket. */
  lost(reason: string, error: Error): void;
  /** Send a CancelRequest for this backend; resolves once it was delivered or could not be. */
  cancel(): Promise<void>;
}

export interface SessionOptions {
  user: string;
  password: string;
  /** Everything the StartupMessage carries (user and database included). */
  startupParams: ReadonlyMap<string, string>;
  /** Largest server message accepted (it is assembled in memory). */
  maxMessageBytes: number;
}

const ALL_TYPES = Array.from({ length: 256 }, (_, i) => i);

export class PgSession {
  state: SessionState = SessionState.Authenticating;
  readonly parameters = new Map<string, string>();
  backendPid = 0;
  backendSecret = 0;
  txStatus: TxStatus = TxStatus.Idle;
  private readonly opts: SessionOptions;
  private readonly host: SessionHost;
  private readonly framer: Framer;
  private readonly queue = new Fifo<PendingQuery>();
  private current: PendingQuery | null = null;
  private readonly auth: Authenticator;
  /** A timed-out query's CancelRequest is on its way: the next query waits for it. */
  private cancelling = false;
  private closedError: PgClientError | null = null;

  constructor(opts: SessionOptions, host: SessionHost) {
    this.opts = opts;
    this.host = host;
    this.auth = new Authenticator(opts.user, opts.password, {
      send: (data) => this.host.send(data),
      failed: (error) => this.end(error.message, error),
      authenticating: () => this.state === SessionState.Authenticating,
    });
    this.framer = new Framer(
      {
        onMessage: (type, buf, start, end) => this.onMessage(type, buf, start, end),
        onPassthrough: () => {}, // every type is inspected: never called
        onFramingError: (reason) => this.end(`the server sent a malformed message: ${reason}`, new PgClientError(PgClientCode.Protocol, reason)),
      },
      { maxLength: opts.maxMessageBytes, inspect: ALL_TYPES },
    );
  }

  /** Send the StartupMessage. */
  start(): void {
    this.host.send(msg.encodeStartup(this.opts.startupParams));
  }

  push(chunk: Buffer): void {
    this.framer.push(chunk);
  }

  /** Queue a simple query; timeoutMs 0: none. */
  query(sql: string, timeoutMs: number): Promise<QueryResult> {
    return this.enqueue(sql, timeoutMs, null);
  }

  /**
   * Queue a command that may enter CopyBoth mode (START_REPLICATION). handler.started() is called
   * at CopyBothResponse, handler.data() for each CopyData from then on. The promise settles when
   * the command is over: the server ended the copy and sent ReadyForQuery, an ERROR, or the
   * connection ended. timeoutMs (0: none) covers only the wait for CopyBothResponse.
   */
  copyBoth(sql: string, handler: CopyBothHandler, timeoutMs: number): Promise<QueryResult> {
    return this.enqueue(sql, timeoutMs, handler);
  }

  private enqueue(sql: string, timeoutMs: number, copyBoth: CopyBothHandler | null): Promise<QueryResult> {
    if (this.closedError !== null) return Promise.reject(this.closedError);
    if (sql.includes('\0')) return Promise.reject(new PgClientError(PgClientCode.Unsupported, 'a query string cannot contain a NUL character'));
    return new Promise((resolve, reject) => {
      this.queue.push(new PendingQuery(sql, timeoutMs, resolve, reject, copyBoth));
      this.pump();
    });
  }

  /** Send a CopyData with this body; false (nothing sent) unless in CopyBoth mode. */
  sendCopyData(body: Buffer): boolean {
    if (this.state !== SessionState.Copying) return false;
    this.host.send(encodeMessage(Frontend.CopyData, body));
    return true;
  }

  /** End the session from pgscribe's side (socket gone, timeout, close()): everything pending is rejected. */
  shutdown(reason: string, error: Error): void {
    if (this.state === SessionState.Closed) return;
    this.to(SessionState.Closed);
    this.framer.stop();
    this.closedError = new PgClientError(PgClientCode.Closed, `the connection is closed: ${reason}`);
    this.current?.reject(error);
    this.current = null;
    for (const q of this.queue.drain()) q.reject(this.closedError);
  }

  /** End the session as lost (the server's doing, or a fault): shutdown, then tell the host. */
  end(reason: string, error: Error): void {
    if (this.state === SessionState.Closed) return;
    this.shutdown(reason, error);
    this.host.lost(reason, error);
  }

  private to(next: SessionState): void {
    if (!NEXT[this.state].includes(next)) throw new Error(`PgSession: no transition ${this.state} -> ${next}`);
    this.state = next;
  }

  private pump(): void {
    if (this.state !== SessionState.Idle || this.cancelling) return;
    const p = this.queue.shift();
    if (p === undefined) return;
    this.current = p;
    this.to(SessionState.Busy);
    this.host.send(msg.encodeQuery(p.sql));
    if (p.timeoutMs > 0) p.timer = setTimeout(() => this.timedOut(p), p.timeoutMs);
  }

  /**
   * The query is rejected now and cancelled. The next query is sent only once the CancelRequest
   * was delivered (a cancel that arrived while the next one ran would cancel that one), and if the
   * server does not end this one within the same time again, the connection is given up.
   */
  private timedOut(p: PendingQuery): void {
    p.timer = null;
    if (this.current !== p) return;
    p.reject(new PgClientError(PgClientCode.QueryTimeout, `the query ran past its timeout of ${p.timeoutMs} ms and was cancelled`));
    this.cancelling = true;
    void this.host.cancel().then(() => {
      this.cancelling = false;
      this.pump();
    });
    p.timer = setTimeout(() => {
      p.timer = null;
      const reason = `a query was still running ${p.timeoutMs} ms after it was cancelled`;
      if (this.current === p) this.end(reason, new PgClientError(PgClientCode.QueryTimeout, reason));
    }, p.timeoutMs);
  }

  private onMessage(type: number, buf: Buffer, start: number, end: number): void {
    try {
      this.dispatch(type, buf, start, end);
    } catch (err) {
      // Nothing the server sends may escape as an exception: it ends the session with the reason.
      const what = err instanceof ProtocolError ? 'the server sent a malformed message' : 'internal error';
      const reason = `${what}: ${err instanceof Error ? err.message : String(err)}`;
      this.end(reason, new PgClientError(PgClientCode.Protocol, reason));
    }
  }

  private violation(type: number): void {
    const reason = `the server sent ${describeType(type)}, which does not belong in state ${this.state}`;
    this.end(reason, new PgClientError(PgClientCode.Protocol, reason));
  }

  private dispatch(type: number, buf: Buffer, start: number, end: number): void {
    // Asynchronous messages may come at any time.
    switch (type) {
      case Backend.ParameterStatus: {
        const { name, value } = decodeParameterStatus(buf, start, end);
        this.parameters.set(name, value);
        return;
      }
      case Backend.NoticeResponse:
        msg.decodeError(buf, start, end); // checked, not shown: the owner logs what it needs itself
        return;
      case Backend.NotificationResponse:
        return; // this client sends no LISTEN
      case Backend.ErrorResponse:
        this.onError(msg.decodeError(buf, start, end));
        return;
    }
    switch (this.state) {
      case SessionState.Authenticating:
        this.onAuthentication(type, buf, start, end);
        return;
      case SessionState.Starting:
        if (type === Backend.BackendKeyData) {
          const k = msg.decodeBackendKeyData(buf, start, end);
          this.backendPid = k.pid;
          this.backendSecret = k.secret;
        } else if (type === Backend.ReadyForQuery) {
          this.txStatus = msg.decodeReadyForQuery(buf, start, end);
          this.to(SessionState.Idle);
          this.host.ready();
          this.pump();
        } else {
          this.violation(type);
        }
        return;
      case SessionState.Busy:
        this.onResult(this.current!, type, buf, start, end);
        return;
      case SessionState.Copying:
        this.onCopy(this.current!, type, buf, start, end);
        return;
      default:
        this.violation(type);
    }
  }

  private onError(e: PgError): void {
    if (e.fatal || this.state === SessionState.Authenticating || this.state === SessionState.Starting) {
      // The server closes the connection after it; a query in flight fails with the server's reason.
      this.end(`${e.severity} ${e.code}: ${e.message}`, e);
      return;
    }
    const p = this.current;
    // An ERROR ends CopyBoth mode; the rest of the command's answer is its ReadyForQuery.
    if (this.state === SessionState.Copying) this.to(SessionState.Busy);
    if (this.state !== SessionState.Busy || p === null) {
      const reason = `the server sent an error outside any query: ${e.code} ${e.message}`;
      this.end(reason, new PgClientError(PgClientCode.Protocol, reason));
      return;
    }
    p.onError(e);
  }

  private onResult(p: PendingQuery, type: number, buf: Buffer, start: number, end: number): void {
    if (type === Backend.CopyBothResponse && p.copyBoth !== null && !p.settled) {
      msg.decodeCopyResponse(buf, start, end, 'CopyBothResponse');
      p.copyStarted();
      this.to(SessionState.Copying);
      p.copyBoth.started();
      return;
    }
    if (type !== Backend.ReadyForQuery) {
      if (!p.onMessage(type, buf, start, end, (data) => this.host.send(data))) this.violation(type);
      return;
    }
    this.txStatus = msg.decodeReadyForQuery(buf, start, end);
    this.current = null;
    this.to(SessionState.Idle);
    p.finish();
    this.pump();
  }

  /** In CopyBoth mode: the stream, and the three ways the server ends it. */
  private onCopy(p: PendingQuery, type: number, buf: Buffer, start: number, end: number): void {
    switch (type) {
      case Backend.CopyData:
        p.copyBoth!.data(buf, start, end);
        return;
      case Backend.CopyDone:
        // The server is done sending: answer with ours, which ends the copy on both sides.
        this.host.send(encodeMessage(Frontend.CopyDone, Buffer.alloc(0)));
        this.to(SessionState.Busy);
        return;
      case Backend.CommandComplete:
        // A walsender that stops at server shutdown ends the copy with CommandComplete alone.
        this.to(SessionState.Busy);
        this.onResult(p, type, buf, start, end);
        return;
      default:
        this.violation(type);
    }
  }

  private onAuthentication(type: number, buf: Buffer, start: number, end: number): void {
    if (type === Backend.NegotiateProtocolVersion) {
      msg.decodeNegotiateProtocolVersion(buf, start, end); // 3.0 without options is all we ask for
      return;
    }
    if (type !== Backend.Authentication) return this.violation(type);
    if (this.auth.onRequest(msg.decodeAuthentication(buf, start, end))) this.to(SessionState.Starting);
  }
}
