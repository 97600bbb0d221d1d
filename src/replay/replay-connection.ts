/**
 * One replayed session's connection to the target: TCP, the StartupMessage with the session's
 * own startup parameters (mapped user and database), authentication (trust, password, md5,
 * SCRAM: src/pg/auth.ts), then raw protocol: replay sends whole frontend messages and gets every
 * backend message whole. Nothing the server sends throws: a malformed message, a FATAL or a
 * close ends the connection with a reason.
 */
import type * as net from 'node:net';
import { Backend } from '../protocol/codes';
import { Framer } from '../protocol/framer';
import { ProtocolError, TERMINATE } from '../protocol/messages';
import { Authenticator } from '../pg/auth';
import { decodeAuthentication, decodeError, encodeStartup } from '../pg/messages';
import { openSocket } from '../pg/socket';

export interface ReplayConnectOptions {
  host: string;
  port: number;
  user: string;
  database: string;
  password: string;
  /** Startup parameters besides user and database (application_name, options, ...). */
  startup: Record<string, string>;
  connectTimeoutMs: number;
}

export interface ReplayConnectionHandler {
  /** Authenticated, and the first ReadyForQuery arrived. */
  ready(): void;
  /** A backend message after startup (view valid during the call). */
  message(type: number, buf: Buffer, start: number, end: number): void;
  /** The connection ended; error is null when close() ended it. */
  closed(error: string | null): void;
}

/** Every backend message is looked inside; a row is bounded by this. */
const MAX_MESSAGE = 256 << 20;

export class ReplayConnection {
  private socket: net.Socket | null = null;
  private readonly framer: Framer;
  private readonly auth: Authenticator;
  private startingUp = true;
  private ended = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    opts: ReplayConnectOptions,
    private readonly handler: ReplayConnectionHandler,
  ) {
    const all: number[] = [];
    for (let t = 0; t < 256; t++) all.push(t);
    this.framer = new Framer(
      {
        onMessage: (type, buf, start, end) => this.onMessage(type, buf, start, end),
        onPassthrough: () => {},
        onFramingError: (reason) => this.end(`the target sent a malformed message: ${reason}`),
      },
      { maxLength: MAX_MESSAGE, inspect: all },
    );
    this.auth = new Authenticator(opts.user, opts.password, {
      send: (data) => {
        this.send(data);
        this.flush();
      },
      failed: (err) => this.end(err.message),
      authenticating: () => this.startingUp && !this.ended,
    });
    this.timer = setTimeout(() => this.end(`no ReadyForQuery within ${opts.connectTimeoutMs} ms`), opts.connectTimeoutMs);
    const params = new Map<string, string>(Object.entries(opts.startup));
    params.set('user', opts.user);
    params.set('database', opts.database);
    let startup: Buffer;
    try {
      startup = encodeStartup(params);
    } catch (err) {
      queueMicrotask(() => this.end(`cannot build the startup packet: ${(err as Error).message}`));
      return;
    }
    const raw = openSocket(opts.host, opts.port, null, (r) => {
      if ('error' in r) return this.end(r.error.message);
      if (this.ended) return void r.socket.destroy();
      const s = r.socket;
      this.socket = s;
      s.on('data', (chunk: Buffer) => {
        try {
          this.framer.push(chunk);
        } catch (err) {
          this.end(`the target sent a malformed message: ${(err as Error).message}`);
        }
      });
      s.on('error', (err) => this.end(err.message));
      s.on('close', () => this.end('the target closed the connection'));
      s.resume();
      s.write(startup);
    });
    raw.on('error', () => {});
  }

  /** Messages queued by send(), written by flush(). */
  private out: Buffer[] = [];

  /** Queue whole frontend messages (dropped once ended); flush() writes them. */
  send(data: Buffer): void {
    if (!this.ended && this.socket !== null) this.out.push(data);
  }

  /** Write what send() queued in one write: one system call per burst, not per message. */
  flush(): void {
    const out = this.out;
    if (out.length === 0) return;
    this.out = [];
    if (this.ended || this.socket === null) return;
    this.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
  }

  /** Terminate, then close. */
  close(): void {
    if (this.ended) return;
    this.send(TERMINATE);
    this.flush();
    // Closed once the Terminate is written, not when the server closes its side: a server busy
    // with a query the replay left (the original client hung up in it) reads the Terminate only
    // after that query, and the half-open socket kept the replay running until then.
    const s = this.socket;
    s?.end(() => s.destroy());
    this.finish(null);
  }

  private onMessage(type: number, buf: Buffer, start: number, end: number): void {
    if (this.ended) return;
    if (!this.startingUp) {
      if (type === Backend.ErrorResponse && isFatal(buf, start, end)) {
        this.handler.message(type, buf, start, end);
        this.end(decodeError(buf, start, end).message);
        return;
      }
      this.handler.message(type, buf, start, end);
      return;
    }
    try {
      switch (type) {
        case Backend.Authentication:
          this.auth.onRequest(decodeAuthentication(buf, start, end));
          return;
        case Backend.ErrorResponse: {
          const e = decodeError(buf, start, end);
          this.end(`${e.code ?? ''} ${e.message}`.trim());
          return;
        }
        case Backend.ReadyForQuery:
          this.startingUp = false;
          clearTimeout(this.timer);
          this.handler.ready();
          return;
        default:
          // ParameterStatus, BackendKeyData, NoticeResponse, NegotiateProtocolVersion: nothing to do.
          return;
      }
    } catch (err) {
      this.end(err instanceof ProtocolError ? `the target broke the protocol: ${err.message}` : (err as Error).message);
    }
  }

  private end(reason: string): void {
    if (this.ended) return;
    this.socket?.destroy();
    this.finish(reason);
  }

  private finish(reason: string | null): void {
    this.ended = true;
    clearTimeout(this.timer);
    this.handler.closed(reason);
  }
}

/** An ErrorResponse whose severity is FATAL or PANIC: the server ends the session after it. */
function isFatal(buf: Buffer, start: number, end: number): boolean {
  return decodeError(buf, start, end).fatal;
}
