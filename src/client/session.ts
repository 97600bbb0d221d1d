/**
 * One client connection and its upstream connection (1:1, session mode), driven by an explicit
 * state machine (states.ts). A client message goes through the design card's phases:
 *
 *   client-request  onClientMessage(): the framer hands over a whole message, decoded once if
 *                   anything needs to look inside it;
 *   log             log(): its query line (recorder.ts);
 *   forward         forward(): the books (ledger.ts, the cache's writes, completion tracking)
 *                   and its original bytes queued for the upstream;
 *   response        onServerMessage(): the server's answer, relayed as the original ranges,
 *                   until the ReadyForQuery that makes the session Idle again.
 *
 * With the cache on, a request may take the cache driver's detour (cache-driver.ts) between
 * client-request and log. The startup phase (startup.ts) and the upstream connection
 * (upstream.ts) live in their own files; what the session needs of the proxy is its host
 * (host.ts). Only the messages the log and the bookkeeping need are looked into; everything else
 * streams through.
 */
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import { Backend, Frontend, MAX_STARTUP_PACKET_LENGTH, SqlState, TxStatus } from '../protocol/codes';
import { Framer } from '../protocol/framer';
import { ProtocolError, TERMINATE, encodeErrorResponse, isFatalError, decodeParameterStatus, type ErrorFields } from '../protocol/messages';
import { decodeClientMessage, type ClientMessage } from '../protocol/client-messages';
import { Outbox } from '../outbox';
import type { QueryRecord } from '../log/format';
import { CacheDriver, type CacheDriverSession } from './cache-driver';
import type { BackendKey, ClientHandle, ClientHost } from './host';
import { Books } from './books';
import { STARTS_REQUEST, clientInspect, serverInspect } from './inspect';
import { SessionLedger } from './ledger';
import { Recorder, type Annotation } from './recorder';
import { withoutChannelBinding } from './scram-filter';
import { StartupPhase, type StartupSession } from './startup';
import { ALLOWED, ClientState, inStartup } from './states';
import { UpstreamLeg, type UpstreamSession } from './upstream';

export { ClientState } from './states';

const S = ClientState;

/** Server messages are trusted more than client ones, but an inspected one is still bounded. */
const SERVER_MAX_LENGTH = 0x7fffffff;
const SERVER_MAX_INSPECT_ALLOC = 64 << 20;

// Reasons the client socket's reads are paused (bit flags).
const PAUSE_UPSTREAM_FULL = 1;
const PAUSE_LOG_FULL = 2;
const PAUSE_CONNECTING = 4;
const PAUSE_CACHE_WAIT = 8;
const PAUSE_CLIENT_FULL = 16;

/** How long a closing client gets to read its final ErrorResponse before the socket is destroyed. */
const CLOSE_LINGER_MS = 5000;

const noop = (): void => {};

export class Client implements ClientHandle, StartupSession, UpstreamSession, CacheDriverSession {
  readonly id: number;
  readonly address: string;
  state: ClientState = S.Startup;
  /** Transaction status from the last ReadyForQuery ('I', 'T' or 'E'). */
  txStatus: TxStatus = TxStatus.Idle;
  backendKey: BackendKey | null = null;
  /** Prepared statements, portals and the request groups awaiting ReadyForQuery. */
  readonly ledger = new SessionLedger();
  readonly recorder: Recorder;
  /** What each message going upstream and each answer changes in the ledger, the cache and the tracker. */
  private readonly books: Books;
  /** What the proxy writes to the client itself: cache answers, and relayed server bytes. */
  readonly toClient = new Outbox();

  private readonly host: ClientHost;
  private readonly startup: StartupPhase;
  private readonly upstream: UpstreamLeg;
  /** The cache driver, once the session started (null while --cache and --singleflight are off). */
  private cache: CacheDriver | null = null;
  /** Client messages are decoded: the log, the completion records or the cache look inside them. */
  private readonly decodes: boolean;
  /** The client connection: the accepted socket, or the TLS session over it once the handshake is done. */
  private socket: net.Socket;
  /** The accepted socket (its 'close' ends the session, TLS or not). */
  private readonly rawSocket: net.Socket;
  private readonly clientFramer: Framer;
  private serverFramer: Framer | null = null;
  private readonly toUpstream = new Outbox();
  /** Why the client socket's reads are paused (PAUSE_* bits; 0: reading). */
  private clientPaused = 0;
  private upstreamPaused = false;
  /** The client sent Terminate: it expects the close, and the upstream got its goodbye. */
  private clientTerminated = false;
  /** The server sent a FATAL error: it said why it closes. */
  private serverSaidFatal = false;
  private shutdownRequested = false;
  /** The session holds one of the host's admitted sessions. */
  private admitted = false;
  // The client socket's listeners, kept by name to move data and drain to the TLS session.
  private readonly onData = (chunk: Buffer): void => this.onClientData(chunk);
  private readonly onDrain = (): void => {
    if (this.cache === null || !this.cache.holding) this.setUpstreamPaused(false);
    this.setClientPaused(PAUSE_CLIENT_FULL, false);
  };
  private readonly onError = (err: NodeJS.ErrnoException): void => this.onClientError(err);

  constructor(host: ClientHost, socket: net.Socket, id: number) {
    this.host = host;
    this.socket = socket;
    this.rawSocket = socket;
    this.id = id;
    this.address = formatAddress(socket.remoteAddress, socket.remotePort);
    this.recorder = new Recorder(
      {
        logger: host.logger,
        digests: host.digests,
        logCompletions: host.settings.logCompletions,
        pauseForLog: (paused) => this.setClientPaused(PAUSE_LOG_FULL, paused),
      },
      this.ledger,
      host.tracksCompletions,
    );
    this.books = new Books(this.ledger, this.recorder);
    this.decodes = this.recorder.recording || host.cache !== null;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    this.clientFramer = new Framer(
      {
        onMessage: (type, buf, start, end) => this.onClientMessage(type, buf, start, end),
        onPassthrough: (type, buf, start, end) => this.onClientPiece(type, buf, start, end),
        onFramingError: (reason) => this.protocolViolation(reason),
      },
      {
        maxLength: host.settings.maxMessageBytes,
        maxStartupLength: MAX_STARTUP_PACKET_LENGTH,
        inspect: clientInspect(host.cache !== null),
        startup: true,
      },
    );
    this.startup = new StartupPhase(this, host);
    this.upstream = new UpstreamLeg(this, host);
    socket.on('data', this.onData);
    socket.on('drain', this.onDrain);
    socket.on('error', this.onError);
    socket.on('close', () => this.onClientClose());
  }

  // ---- state ---------------------------------------------------------------------------------

  /** The only place `state` changes. */
  transition(next: ClientState): void {
    const from = this.state;
    if (from === next) return;
    if (!ALLOWED[from].includes(next)) {
      this.host.ops.error('internal error: illegal client state transition; closing the client', {
        conn: this.id,
        client: this.address,
        from,
        to: next,
      });
      this.state = S.Closing;
      this.teardown(from);
      return;
    }
    this.state = next;
    if (next === S.Closing) this.teardown(from);
  }

  get isIdle(): boolean {
    return this.state === S.Idle && this.txStatus === TxStatus.Idle && this.ledger.pendingGroups === 0;
  }

  // ---- client-request ------------------------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    this.host.counters.bytesFromClients += chunk.length;
    this.clientFramer.push(chunk);
    if (this.cache !== null) this.cache.afterRead();
    this.flushToUpstream();
    this.flushToClient();
  }

  /** A whole client message arrived. */
  private onClientMessage(type: number, buf: Buffer, start: number, end: number): void {
    if (this.state === S.Startup) {
      this.startup.onPacket(buf, start, end);
      return;
    }
    if (this.state === S.Closing) return;
    this.host.counters.messagesIn[type]++;
    if (this.cache !== null) {
      this.cache.onMessage(type, buf, start, end);
      return;
    }
    const msg = this.decodes ? this.decode(type, buf, start, end) : null;
    if (msg !== undefined) this.logAndForward(type, buf, start, end, msg, null);
  }

  /** Decode a whole client message once; undefined when it is malformed (the client is failed). */
  decode(type: number, buf: Buffer, start: number, end: number): ClientMessage | null | undefined {
    try {
      return decodeClientMessage(type, buf, start, end);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.protocolViolation(err.message);
      return undefined;
    }
  }

  /** A piece of a client message that streams through (its type is not inspected). */
  private onClientPiece(type: number, buf: Buffer, start: number, end: number): void {
    if (this.state === S.Closing) return;
    if (this.cache !== null && this.cache.onPiece(type, buf, start, end)) return;
    this.relayPiece(type, buf, start, end);
  }

  relayPiece(type: number, buf: Buffer, start: number, end: number): void {
    if (this.state === S.Idle && STARTS_REQUEST[type] === 1) this.transition(S.Request);
    this.toUpstream.push(buf, start, end);
  }

  // ---- log, forward --------------------------------------------------------------------------

  /** log, then forward, one client message (ann: how the cache took part; null: it did not). */
  logAndForward(type: number, buf: Buffer, start: number, end: number, msg: ClientMessage | null, ann: Annotation | null): void {
    const r = msg !== null && this.recorder.recording ? this.recorder.record(msg, ann) : null;
    this.forward(type, buf, start, end, msg, r, -1);
  }

  /**
   * Keep the books for one client message going upstream and queue its bytes. record: its query
   * record (a Q or E that was logged); queryStart: when its answer began to be owed (-1: now).
   */
  forward(type: number, buf: Buffer, start: number, end: number, msg: ClientMessage | null, record: QueryRecord | null, queryStart: number): void {
    const repair = this.books.sent(type, msg, record, queryStart);
    if (repair !== null) this.toUpstream.push(repair, 0, repair.length);
    switch (type) {
      case Frontend.Terminate:
        this.clientTerminated = true;
        break;
      case Frontend.CopyDone:
      case Frontend.CopyFail:
        if (this.state === S.CopyIn) this.transition(S.Response);
        break;
    }
    if (this.state === S.Idle && STARTS_REQUEST[type] === 1) this.transition(S.Request);
    this.toUpstream.push(buf, start, end);
  }

  flushToUpstream(): void {
    const up = this.upstream.socket;
    if (this.toUpstream.empty || up === null) return;
    if (!this.toUpstream.flush(up)) this.setClientPaused(PAUSE_UPSTREAM_FULL, true);
  }

  /** Write what waits for the client; a slow client stops the upstream being read. */
  flushToClient(): void {
    if (this.toClient.empty || (this.cache !== null && this.cache.holding)) return;
    if (!this.toClient.flush(this.socket)) {
      this.setUpstreamPaused(true);
      this.setClientPaused(PAUSE_CLIENT_FULL, true);
    }
  }

  // ---- startup (startup.ts and upstream.ts call these) -----------------------------------------

  get clientAtBoundary(): boolean {
    return this.clientFramer.atBoundary;
  }

  writeToClient(bytes: Buffer, done?: (err?: Error | null) => void): void {
    this.socket.write(bytes, done);
  }

  pauseClient(): void {
    this.socket.pause();
  }

  releaseRawSocket(): net.Socket {
    const raw = this.rawSocket;
    // From here the TLS session reads the socket (and takes what it already buffered); the
    // accepted socket keeps only its 'close', which also comes when the session closes.
    raw.off('data', this.onData);
    raw.off('drain', this.onDrain);
    raw.off('error', this.onError);
    raw.on('error', noop);
    return raw;
  }

  useTlsSocket(sock: tls.TLSSocket, listen: boolean): void {
    this.socket = sock;
    sock.on('error', this.onError);
    if (!listen) return;
    sock.on('data', this.onData);
    sock.on('drain', this.onDrain);
  }

  closeAfterCancel(): void {
    this.clientFramer.stop();
    this.transition(S.Closing);
  }

  begin(user: string, params: ReadonlyMap<string, string>, packet: Buffer): void {
    const host = this.host;
    const database = params.get('database') || user;
    this.admitted = true;
    this.recorder.session = { id: this.id, user, database, client: this.address };
    if (host.cache !== null) this.cache = this.books.cache = new CacheDriver(this, host.cache, this.ledger, this.recorder, params, user, database);
    this.clientFramer.setStartup(false);
    this.transition(S.Connecting);
    this.serverFramer = new Framer(
      {
        onMessage: (type, b, s, e) => this.onServerMessage(type, b, s, e),
        onPassthrough: (_type, b, s, e) => this.onServerPiece(b, s, e),
        onFramingError: (reason) => this.upstreamProtocolViolation(reason),
      },
      { maxLength: SERVER_MAX_LENGTH, maxInspectLength: SERVER_MAX_INSPECT_ALLOC, inspect: serverInspect({ ledger: this.decodes, cache: this.cache !== null, completions: this.recorder.tracker !== null }) },
    );
    this.setClientPaused(PAUSE_CONNECTING, true);
    this.upstream.connect(packet);
  }

  upstreamReady(): void {
    this.transition(S.Authenticating);
    this.setClientPaused(PAUSE_CONNECTING, false);
  }

  onUpstreamDrain(): void {
    this.setClientPaused(PAUSE_UPSTREAM_FULL, false);
  }

  // ---- response ------------------------------------------------------------------------------

  onServerData(chunk: Buffer): void {
    this.host.counters.bytesFromServers += chunk.length;
    this.serverFramer!.push(chunk);
    const cache = this.cache;
    if (cache !== null) cache.cs.capturing?.capture.settle();
    if (cache !== null && cache.holding) this.setUpstreamPaused(true);
    else if (!this.toClient.empty && !this.toClient.flush(this.socket)) this.setUpstreamPaused(true);
    if (this.shutdownRequested && this.isIdle && (cache === null || !cache.holding)) this.closeForShutdown();
  }

  /** A whole server message: keep the books, then relay it. */
  private onServerMessage(type: number, buf: Buffer, start: number, end: number): void {
    if (this.state === S.Closing) return;
    // Completions of messages the proxy injected (the ledger's repair) are not the client's.
    if ((type === Backend.ParseComplete || type === Backend.CloseComplete) && !this.books.completion(type)) return;
    const cache = this.cache;
    if (cache !== null && cache.cs.capturing !== null) cache.cs.capturing.capture.add(buf, start, end);
    const tracker = this.recorder.tracker;
    if (tracker !== null) tracker.server(type, buf, start, end);
    let lead = null;
    switch (type) {
      case Backend.ReadyForQuery: {
        if (end - start < 6) {
          this.upstreamProtocolViolation('ReadyForQuery without a transaction status');
          return;
        }
        const prev = this.txStatus;
        this.txStatus = buf[start + 5] as TxStatus;
        lead = this.books.readyForQuery(prev, this.txStatus);
        if (this.state === S.Authenticating || this.ledger.pendingGroups === 0) this.transition(S.Idle);
        else this.transition(S.Response);
        break;
      }
      case Backend.Authentication:
        if (this.upstream.encrypted && !this.startup.encrypted && this.state === S.Authenticating) {
          let offer: Buffer | null;
          try {
            offer = withoutChannelBinding(buf, start, end);
          } catch (err) {
            if (!(err instanceof ProtocolError)) throw err;
            this.upstreamProtocolViolation(err.message);
            return;
          }
          if (offer !== null) {
            this.toClient.push(offer, 0, offer.length);
            return;
          }
        }
        break;
      case Backend.ParameterStatus:
        if (cache !== null) {
          try {
            const p = decodeParameterStatus(buf, start, end);
            cache.cs.parameterStatus(p.name, p.value);
          } catch (err) {
            if (!(err instanceof ProtocolError)) throw err;
            this.upstreamProtocolViolation(err.message);
            return;
          }
        }
        break;
      case Backend.BackendKeyData:
        if (end - start >= 13) {
          this.backendKey = { pid: buf.readInt32BE(start + 5), secret: buf.readInt32BE(start + 9) };
          this.host.keys.register(this);
        }
        break;
      case Backend.CopyInResponse:
        this.transition(S.CopyIn);
        break;
      case Backend.CopyOutResponse:
        this.transition(S.CopyOut);
        break;
      case Backend.CopyBothResponse:
        this.transition(S.CopyBoth);
        break;
      case Backend.CopyDone:
        if (this.state === S.CopyOut || this.state === S.CopyBoth) this.transition(S.Response);
        break;
      case Backend.ErrorResponse:
        if (isFatalError(buf, start, end)) this.serverSaidFatal = true;
        if (this.state === S.CopyIn || this.state === S.CopyOut || this.state === S.CopyBoth || this.state === S.Request) {
          this.transition(S.Response);
        }
        break;
      default:
        if (this.state === S.Request) this.transition(S.Response);
    }
    this.toClient.push(buf, start, end);
    if (lead !== null) cache!.finishLead(lead);
  }

  private onServerPiece(buf: Buffer, start: number, end: number): void {
    if (this.state === S.Closing) return;
    if (this.state === S.Request) this.transition(S.Response);
    this.cache?.cs.capturing?.capture.add(buf, start, end);
    this.toClient.push(buf, start, end);
  }

  /** The invalidations of a commit reached the other instances: let its ReadyForQuery go. */
  holdReleased(): void {
    if (this.state === S.Closing) return;
    if (!this.toClient.empty && !this.toClient.flush(this.socket)) return; // 'drain' resumes the upstream
    this.setUpstreamPaused(false);
    if (this.shutdownRequested && this.isIdle) this.closeForShutdown();
  }

  // ---- flow control --------------------------------------------------------------------------

  private setClientPaused(reason: number, on: boolean): void {
    const before = this.clientPaused;
    this.clientPaused = on ? before | reason : before & ~reason;
    if (before === 0 && this.clientPaused !== 0) this.socket.pause();
    else if (before !== 0 && this.clientPaused === 0 && this.state !== S.Closing) this.socket.resume();
  }

  private setUpstreamPaused(on: boolean): void {
    const up = this.upstream.socket;
    if (up === null || on === this.upstreamPaused) return;
    this.upstreamPaused = on;
    if (on) up.pause();
    else if (this.state !== S.Closing) up.resume();
  }

  pauseForCache(paused: boolean): void {
    this.setClientPaused(PAUSE_CACHE_WAIT, paused);
  }

  // ---- errors and teardown -------------------------------------------------------------------

  protocolViolation(reason: string): void {
    this.host.ops.warn('client protocol violation; closing it', { conn: this.id, client: this.address, reason });
    this.fail({ severity: 'FATAL', code: SqlState.ProtocolViolation, message: `pgscribe: protocol violation: ${reason}` });
  }

  private upstreamProtocolViolation(reason: string): void {
    this.host.ops.error('upstream sent an invalid message; closing the session', { conn: this.id, client: this.address, reason });
    this.host.counters.upstreamErrors++;
    this.fail({ severity: 'FATAL', code: SqlState.ConnectionFailure, message: `pgscribe: upstream server sent an invalid message: ${reason}` });
  }

  private onClientError(err: NodeJS.ErrnoException): void {
    // Resets are how many clients say goodbye; 'close' follows and does the work.
    if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') {
      this.host.ops.warn('client socket error', { conn: this.id, client: this.address, error: err.code ?? err.message });
    }
  }

  private onClientClose(): void {
    this.clientFramer.stop();
    if (this.state === S.TlsHandshake) {
      this.host.ops.warn('TLS handshake with client failed; closing it', { conn: this.id, client: this.address, error: 'connection closed during the handshake' });
    }
    if (this.state !== S.Closing) this.transition(S.Closing);
    this.host.closed(this, this.admitted);
    this.admitted = false;
  }

  onUpstreamClose(): void {
    if (this.state === S.Closing || this.state === S.Connecting) return;
    if (this.clientTerminated || this.serverSaidFatal) {
      // The server said why (FATAL) or the client asked for it (Terminate): nothing to add.
      this.transition(S.Closing);
      return;
    }
    this.host.counters.upstreamErrors++;
    this.host.ops.warn('upstream closed the session unexpectedly', { conn: this.id, client: this.address, state: this.state });
    this.fail({
      severity: 'FATAL',
      code: SqlState.ConnectionFailure,
      message: 'pgscribe: upstream server closed the connection unexpectedly',
      hint: 'The PostgreSQL server may have restarted or terminated this backend; reconnect.',
    });
  }

  /** Send a FATAL ErrorResponse (when the client stream is at a message boundary) and close. */
  fail(error: ErrorFields): void {
    if (this.state === S.Closing) return;
    // Mid-handshake there is no channel to speak on: the client expects TLS records.
    const canSpeak = (this.serverFramer === null || !this.serverFramer.midPassthrough) && this.state !== S.TlsHandshake;
    if (!this.toClient.empty) this.toClient.flush(this.socket);
    if (canSpeak && !this.socket.destroyed && this.socket.writable) this.socket.write(encodeErrorResponse(error));
    this.transition(S.Closing);
  }

  cancelWait(): boolean {
    return this.cache !== null && this.cache.cancelWait();
  }

  requestShutdown(): void {
    this.shutdownRequested = true;
    if (inStartup(this.state) || this.isIdle) this.closeForShutdown();
  }

  shutdownIfIdle(): void {
    if (this.shutdownRequested && this.isIdle) this.closeForShutdown();
  }

  closeForShutdown(): void {
    this.fail({ severity: 'FATAL', code: SqlState.AdminShutdown, message: 'pgscribe: terminating connection because the proxy is shutting down' });
  }

  /** Entered once, from transition(Closing): release both sockets. */
  private teardown(from: ClientState): void {
    this.startup.close(from);
    this.clientFramer.stop();
    this.serverFramer?.stop();
    this.host.keys.unregister(this);
    this.books.close();
    if (this.upstream.socket !== null && !this.upstream.negotiating && !this.upstream.socket.destroyed) this.flushToUpstream();
    this.upstream.close(!this.clientFramer.midPassthrough && !this.clientTerminated, TERMINATE, CLOSE_LINGER_MS);
    this.toUpstream.clear();
    this.toClient.clear();
    const sock = this.socket;
    if (from === S.TlsHandshake) {
      // The handshake is abandoned: close the connection under it.
      this.rawSocket.destroy();
    } else if (!sock.destroyed) {
      sock.end();
      sock.resume(); // drain and discard whatever the client still sends
      setTimeout(() => sock.destroy(), CLOSE_LINGER_MS).unref();
    }
  }

  destroy(): void {
    this.upstream.socket?.destroy();
    this.socket.destroy();
    this.rawSocket.destroy();
  }
}

function formatAddress(addr: string | undefined, port: number | undefined): string {
  if (addr === undefined) return 'unknown';
  const a = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
  return a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`;
}
