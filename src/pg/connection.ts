/**
 * pgscribe's own connection to PostgreSQL: the catalog connection of issue 14, and later health
 * checks and the replication connection (src/wal/). A minimal client of the simple query protocol,
 * in text format: connect (TLS as --upstream-tls says; trust, password, md5 or scram-sha-256),
 * queries queued and sent one at a time, each answered in order; a command may enter CopyBoth
 * mode (START_REPLICATION), after which CopyData flows both ways.
 *
 * Errors: an ErrorResponse rejects its query with a PgError and the connection stays usable; a
 * FATAL, the server going away or anything malformed ends the connection, rejects what is
 * pending, and calls the onClose listeners with the reason. Nothing the server sends throws.
 *
 * @see https://www.postgresql.org/docs/15/protocol.html
 */
import type * as net from 'node:net';
import { encodeCancelRequest, TERMINATE } from '../protocol/messages';
import type { UpstreamTls } from '../tls';
import { PgClientCode, PgClientError } from './errors';
import { encodeStartup } from './messages';
import { PgSession, SessionState, type CopyBothHandler, type QueryResult } from './session';
import { openSocket } from './socket';

export type { CopyBothHandler, QueryResult } from './session';
export { PgClientCode, PgClientError, PgError } from './errors';

export interface PgConnectOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** application_name, as pg_stat_activity shows it, e.g. 'pgscribe catalog'. */
  applicationName: string;
  /** For everything up to the first ReadyForQuery: TCP, TLS, authentication, backend start. */
  connectTimeoutMs: number;
  /** Upstream TLS (SSLRequest first), or null for plaintext. */
  tls: UpstreamTls | null;
  /** Extra startup parameters, e.g. { replication: 'database' }. user, database, application_name and client_encoding are set from the rest. */
  startupParams?: Record<string, string>;
  /** Default timeout of each query in ms; 0 or absent: none. query() can set its own. */
  queryTimeoutMs?: number;
  /** Largest server message accepted, in bytes (default 64 MiB): a message is assembled in memory. */
  maxMessageBytes?: number;
}

const DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024;
/** How long a closed connection waits for the server to close after Terminate. */
const CLOSE_LINGER_MS = 2000;

interface Startup {
  ready(): void;
  failed(error: Error): void;
}

export class PgConnection {
  private readonly opts: PgConnectOptions;
  private readonly socket: net.Socket;
  private readonly session: PgSession;
  private readonly closeListeners: ((reason: string) => void)[] = [];
  /** Until the first ReadyForQuery: how connect() learns the outcome. */
  private startup: Startup | null;
  private closedByUs = false;
  /** Why the connection went away (not set when close() ended it). */
  private lostReason: string | null = null;
  private socketError: string | null = null;

  /**
   * Connect and authenticate. Rejects with a PgError when the server refuses (28P01 wrong
   * password, 3D000 no such database, 53300 too many connections, ...), or a PgClientError
   * (`PGSCRIBE_PG_CONNECT`: unreachable, TLS, timeout; `PGSCRIBE_PG_AUTH`: a method this client
   * does not speak, no password, a server that failed SCRAM's proof).
   */
  static connect(opts: PgConnectOptions): Promise<PgConnection> {
    const target = `${opts.host}:${opts.port}`;
    const params = new Map(Object.entries(opts.startupParams ?? {}));
    params.set('user', opts.user);
    params.set('database', opts.database);
    params.set('application_name', opts.applicationName);
    // Rows are read as UTF-8 whatever the database's encoding.
    params.set('client_encoding', 'UTF8');
    try {
      encodeStartup(params);
    } catch (err) {
      return Promise.reject(new PgClientError(PgClientCode.Connect, `cannot connect to ${target}: ${(err as Error).message}`));
    }
    return new Promise((resolve, reject) => {
      let conn: PgConnection | null = null;
      let settled = false;
      const settle = (err: Error | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err === null) resolve(conn!);
        else reject(err);
      };
      const timer = setTimeout(() => {
        const err = new PgClientError(PgClientCode.Connect, `cannot connect to ${target}: timeout after ${opts.connectTimeoutMs} ms`);
        if (conn !== null) conn.session.end('connect timeout', err);
        raw.destroy();
        settle(err);
      }, opts.connectTimeoutMs);
      const raw = openSocket(opts.host, opts.port, opts.tls, (r) => {
        if ('error' in r) return settle(r.error);
        if (settled) return void r.socket.destroy();
        conn = new PgConnection(opts, params, r.socket, { ready: () => settle(null), failed: (e) => settle(e) });
      });
    });
  }

  private constructor(opts: PgConnectOptions, params: ReadonlyMap<string, string>, socket: net.Socket, startup: Startup) {
    this.opts = opts;
    this.socket = socket;
    this.startup = startup;
    this.session = new PgSession(
      { user: opts.user, password: opts.password, startupParams: params, maxMessageBytes: opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE },
      {
        send: (data) => {
          if (!this.socket.destroyed) this.socket.write(data);
        },
        ready: () => {
          const s = this.startup;
          this.startup = null;
          s?.ready();
        },
        lost: (reason, error) => this.lost(reason, error),
        cancel: () => this.sendCancel(),
      },
    );
    socket.on('error', (err: Error) => {
      this.socketError = err.message; // 'close' follows and ends the session
    });
    socket.on('close', () => this.onSocketClose());
    socket.on('data', (chunk: Buffer) => this.session.push(chunk));
    socket.resume();
    this.session.start();
  }

  /** ParameterStatus values: server_version, TimeZone, is_superuser, ... (kept current). */
  get parameters(): ReadonlyMap<string, string> {
    return this.session.parameters;
  }

  /** The backend's process id (pg_backend_pid()). */
  get backendPid(): number {
    return this.session.backendPid;
  }

  /** The last ReadyForQuery's transaction status: idle, in a transaction block, or in a failed one. */
  get transactionStatus(): 'I' | 'T' | 'E' {
    return String.fromCharCode(this.session.txStatus) as 'I' | 'T' | 'E';
  }

  /** The connection is gone or closed: every query() rejects. */
  get closed(): boolean {
    return this.session.state === SessionState.Closed;
  }

  /**
   * Run a simple query (one or several statements; the result is the last one's). Queries are
   * queued and sent one at a time. Rejects with the server's PgError (the connection stays
   * usable), or a PgClientError: PGSCRIBE_PG_CLOSED, PGSCRIBE_PG_QUERY_TIMEOUT (the query was
   * cancelled; the connection stays usable), PGSCRIBE_PG_UNSUPPORTED (COPY, a NUL in the text).
   */
  query(sql: string, o: { timeoutMs?: number } = {}): Promise<QueryResult> {
    return this.session.query(sql, o.timeoutMs ?? this.opts.queryTimeoutMs ?? 0);
  }

  /**
   * Run a command that enters CopyBoth mode (START_REPLICATION; see PgSession.copyBoth): the
   * handler gets CopyBothResponse and each CopyData; the promise settles when the command is
   * over. timeoutMs covers only the wait for CopyBothResponse (default: the query timeout).
   */
  copyBoth(sql: string, handler: CopyBothHandler, o: { timeoutMs?: number } = {}): Promise<QueryResult> {
    return this.session.copyBoth(sql, handler, o.timeoutMs ?? this.opts.queryTimeoutMs ?? 0);
  }

  /** In CopyBoth mode, send a CopyData with this body; false (nothing sent) otherwise. */
  sendCopyData(body: Buffer): boolean {
    if (this.socket.destroyed) return false;
    return this.session.sendCopyData(body);
  }

  /**
   * Ask the server to cancel what this connection runs now (a CancelRequest on a connection of
   * its own). For a command that would go on after close(): a walsender waiting inside
   * CREATE_REPLICATION_SLOT does not read its socket, so only a cancel stops it.
   */
  cancel(): Promise<void> {
    return this.sendCancel();
  }

  /**
   * Call cb once when the connection goes away other than by close(): the server closed it, a
   * FATAL error (terminated, shut down), a malformed message. Called at once when already gone.
   */
  onClose(cb: (reason: string) => void): void {
    const reason = this.lostReason;
    if (reason !== null) queueMicrotask(() => cb(reason));
    else if (!this.closedByUs) this.closeListeners.push(cb);
  }

  /** Say Terminate and close. Pending queries reject with PGSCRIBE_PG_CLOSED; onClose is not called. */
  close(): void {
    if (this.closedByUs || this.closed) return;
    this.closedByUs = true;
    this.closeListeners.length = 0;
    const s = this.socket;
    if (s.writable) s.end(TERMINATE);
    this.session.shutdown('closed by pgscribe', new PgClientError(PgClientCode.Closed, 'the connection was closed by pgscribe'));
    setTimeout(() => s.destroy(), CLOSE_LINGER_MS).unref();
  }

  private onSocketClose(): void {
    const reason = this.socketError ?? 'the server closed the connection';
    const error =
      this.startup !== null
        ? new PgClientError(PgClientCode.Connect, `cannot connect to ${this.opts.host}:${this.opts.port}: ${reason} during startup`)
        : new PgClientError(PgClientCode.Closed, reason);
    this.session.end(reason, error);
  }

  /** The session ended without close(): fail connect(), or tell the onClose listeners. */
  private lost(reason: string, error: Error): void {
    this.socket.destroy();
    const s = this.startup;
    if (s !== null) {
      this.startup = null;
      s.failed(error);
      return;
    }
    if (this.closedByUs) return;
    this.lostReason = reason;
    for (const cb of this.closeListeners.splice(0)) cb(reason);
  }

  /** A CancelRequest for this backend on a fresh connection; resolves when delivered or given up. */
  private sendCancel(): Promise<void> {
    const { host, port, tls, connectTimeoutMs } = this.opts;
    const packet = encodeCancelRequest(this.session.backendPid, this.session.backendSecret);
    return new Promise((resolve) => {
      let sock: net.Socket | null = null;
      const timer = setTimeout(() => {
        raw.destroy();
        sock?.destroy();
        resolve();
      }, connectTimeoutMs);
      const raw = openSocket(host, port, tls, (r) => {
        if ('error' in r) {
          clearTimeout(timer);
          resolve();
          return;
        }
        sock = r.socket;
        sock.on('error', () => {}); // 'close' follows
        // The server closes the connection once it has signalled the backend.
        sock.on('close', () => {
          clearTimeout(timer);
          resolve();
        });
        sock.resume();
        sock.end(packet);
      });
    });
  }
}
