/**
 * One client connection and its upstream connection (1:1, session mode), driven by an explicit
 * state machine (states.ts). A client message goes through the design card's phases
 * (docs/architecture.md): client-request (onClientRequest: a whole message, decoded once if
 * anything looks inside it), log (Recorder.log: its query line), forward (forward: the books and
 * its original bytes queued upstream), response (onResponse: the answer kept in the books and
 * relayed as the original ranges, until the ReadyForQuery that makes the session Idle again).
 *
 * With the cache on, a request may take the cache driver's detour (cache-driver.ts) between
 * client-request and log. The startup phase (startup.ts) and the upstream connection
 * (upstream.ts) live in their own files; what the session needs of the proxy is its host
 * (host.ts). Only the messages the log and the bookkeeping need are looked into; everything else
 * streams through.
 */
import type * as net from 'node:net';
import { Backend, Frontend, TxStatus } from '../protocol/codes';
import { Framer, describeType } from '../protocol/framer';
import { ProtocolError, TERMINATE, encodeErrorResponse, isFatalError, type ErrorFields } from '../protocol/messages';
import { decodeClientMessage, type ClientMessage } from '../protocol/client-messages';
import { Outbox } from '../outbox';
import type { EndReason, QueryRecord } from '../log/format';
import { CacheDriver, type CacheDriverSession } from './cache-driver';
import type { BackendKey, ClientHandle, ClientHost } from './host';
import { Books } from './books';
import { ClientLeg, Pause, type ClientLegEvents } from './client-leg';
import { SessionError, isGoodbye } from './errors';
import { MAX_UNAUTHENTICATED_MESSAGE_LENGTH, STARTS_REQUEST, clientFramerOptions, serverFramerOptions } from './inspect';
import { SessionLedger, type SideRequest } from './ledger';
import { Recorder, type Annotation } from './recorder';
import { offerOrFault } from './scram-filter';
import { StartupPhase, type StartupSession } from './startup';
import { ALLOWED, ClientState, afterServerMessage, inStartup, relaying } from './states';
import { UpstreamLeg, type UpstreamSession } from './upstream';
import { closedOnStandby } from './standby-guard';
import { gateFor, type RateGate, type GatedSession } from '../limits/rate-gate';

export { ClientState } from './states';

const S = ClientState;

/** How long a closing client gets to read its final ErrorResponse before the socket is destroyed. */
const CLOSE_LINGER_MS = 5000;

export class Client implements ClientHandle, ClientLegEvents, StartupSession, UpstreamSession, CacheDriverSession, GatedSession {
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
  /** Its connection to PostgreSQL (`upstream.node`: which node, with several upstreams). */
  readonly upstream: UpstreamLeg;
  /** The cache driver, once the session started (null while --cache and --singleflight are off). */
  private cache: CacheDriver | null = null;
  /** Client messages are decoded: the log, the completion records or the cache look inside them. */
  private readonly decodes: boolean;
  /** The connection to the client (the startup phase hands it to TLS and back). */
  readonly clientLeg: ClientLeg;
  private readonly clientFramer: Framer;
  /** The query log asked for a pause (pauseForLog), and has not lifted it yet. */
  private logPaused = false;
  private gate: RateGate | null = null; // a rate-limits rule matched the session
  private serverFramer: Framer | null = null;
  private readonly toUpstream = new Outbox();
  /** The client sent Terminate: it expects the close, and the upstream got its goodbye. */
  private clientTerminated = false;
  /** The server sent a FATAL error: it said why it closes. */
  private serverSaidFatal = false;
  /** CopyDone/CopyFail sent before the server's CopyInResponse (pipelined with the COPY): its copy ends at once. */
  private copyEndsAhead = 0;
  /** Who ended the session first, for log-replay's end line (null: pgscribe itself; Terminate and FATAL have their flags). */
  private endReason: EndReason | null = null;
  private shutdownRequested = false;
  /**
   * The StartupMessage asked for a protocol before 3.0: the server's refusal comes in that
   * version's format, without message lengths, and is relayed as bytes until the server closes.
   */
  private rawAnswer = false;

  /**
   * readOnly: it came through the read-only listener (--listen-replicas): a standby serves it; its
   * reads never come from the cache. inPlace: read both legs into reused buffers (ClientLeg).
   */
  constructor(host: ClientHost, socket: net.Socket, id: number, readonly readOnly = false, inPlace = false) {
    this.host = host;
    this.id = id;
    this.clientLeg = new ClientLeg(socket, this, inPlace);
    this.address = this.clientLeg.address;
    this.recorder = new Recorder(host, this.ledger, (paused) => this.pauseForLog(paused));
    this.books = new Books(this.ledger, this.recorder);
    this.decodes = this.recorder.recording || host.cache !== null;
    this.clientFramer = new Framer(
      {
        onMessage: (type, buf, start, end) => this.onClientRequest(type, buf, start, end),
        onPassthrough: (type, buf, start, end) => this.onClientPiece(type, buf, start, end),
        // A startup packet's bad length is one of the faults the postmaster only logs.
        onFramingError: (reason) => (this.state === S.Startup ? this.startup.onBadLength(reason) : this.protocolViolation(reason)),
      },
      clientFramerOptions(host.settings.maxMessageBytes, host.cache !== null, this.recorder.replay),
    );
    this.startup = new StartupPhase(this, host);
    this.upstream = new UpstreamLeg(this, host, inPlace);
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

  onClientData(chunk: Buffer): void {
    this.host.counters.bytesFromClients += chunk.length;
    this.clientFramer.push(chunk);
    if (this.cache !== null) this.cache.afterRead();
    this.flushToUpstream();
    this.flushToClient();
  }

  /** A read into the client leg's reused buffer: true when a view of its bytes outlives the call (reused-reads.ts). */
  onClientRead(chunk: Buffer): boolean {
    this.onClientData(chunk);
    return !relaying(this.state, this.cache, this.ledger.side) || this.clientFramer.holdsInput || this.toUpstream.holds(this.upstream.socket);
  }

  /** client-request: a whole client message arrived. */
  private onClientRequest(type: number, buf: Buffer, start: number, end: number): void {
    if (this.state === S.Startup) {
      this.startup.onPacket(buf, start, end);
      return;
    }
    if (this.state === S.Closing || (this.gate !== null && this.gate.takes(type, buf, start, end))) return;
    this.request(type, buf, start, end);
  }

  /** client-request, past the rate limit (src/limits/rate-gate.ts). */
  request(type: number, buf: Buffer, start: number, end: number): void {
    const counts = this.host.counters.messagesIn;
    counts[type] = counts[type]! + 1;
    if (this.cache !== null) {
      this.cache.onMessage(type, buf, start, end);
      return;
    }
    // Past the cache's branch, only log-replay reads a Describe (its line): others stream through undecoded.
    const msg = this.decodes && (type !== Frontend.Describe || this.recorder.replay) ? this.decode(type, buf, start, end) : null;
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
    if (this.state === S.Closing || this.gate?.discarding === true) return;
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
    this.forward(type, buf, start, end, msg, this.recorder.log(type, msg, ann), -1);
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
        else this.copyEndsAhead++;
        break;
    }
    if (this.state === S.Idle && STARTS_REQUEST[type] === 1) this.transition(S.Request);
    this.toUpstream.push(buf, start, end);
    const after = this.books.after(type, msg);
    if (after !== null) this.toUpstream.push(after, 0, after.length);
  }

  flushToUpstream(): void {
    const up = this.upstream.socket;
    if (this.toUpstream.empty || up === null) return;
    if (!this.toUpstream.flush(up)) this.setClientPaused(Pause.UpstreamFull, true);
  }

  /** Write what waits for the client; a slow client stops the upstream being read. */
  flushToClient(): void {
    if (this.toClient.empty || (this.cache !== null && this.cache.holding)) return;
    if (!this.clientLeg.flush(this.toClient)) {
      this.setUpstreamPaused(true);
      this.setClientPaused(Pause.ClientFull, true);
    }
  }

  // ---- startup (startup.ts and upstream.ts call these) -----------------------------------------

  get clientAtBoundary(): boolean {
    return this.clientFramer.atBoundary;
  }

  closeWithServerError(bytes: Buffer): void {
    if (this.clientLeg.writable) this.clientLeg.write(bytes);
    this.transition(S.Closing);
  }

  closeSilently(): void {
    this.clientFramer.stop();
    this.transition(S.Closing);
  }

  begin(user: string, params: ReadonlyMap<string, string>, packet: Buffer, rawAnswer: boolean): void {
    this.rawAnswer = rawAnswer;
    const host = this.host;
    const database = params.get('database') || user;
    const application = params.get('application_name') ?? '';
    this.recorder.begin({ id: this.id, user, database, client: this.address, application }, packet);
    if (host.cache !== null) this.cache = this.books.cache = new CacheDriver(this, host.cache, this.ledger, this.recorder, params, user, database, this.readOnly);
    this.gate = gateFor(this, host, { user, database, application }, this.cache);
    this.clientFramer.setStartup(false);
    // Until PostgreSQL accepts the session, what a client may make pgscribe assemble is what the
    // server itself reads from an unauthenticated client (an authentication message); the full
    // max-message-bytes once it is accepted (onResponse, ReadyForQuery).
    this.clientFramer.setMaxInspectLength(MAX_UNAUTHENTICATED_MESSAGE_LENGTH);
    this.transition(S.Connecting);
    this.serverFramer = new Framer(
      {
        onMessage: (type, b, s, e) => this.onResponse(type, b, s, e),
        onPassthrough: (type, b, s, e) => this.onServerPiece(type, b, s, e),
        onFramingError: (reason) => this.upstreamProtocolViolation(reason),
      },
      serverFramerOptions({ ledger: this.decodes, cache: this.cache !== null, completions: this.recorder.tracker !== null, upstreams: this.host.upstreams !== null }),
    );
    this.setClientPaused(Pause.Connecting, true);
    this.upstream.connect(packet);
  }

  upstreamReady(): void {
    this.transition(S.Authenticating);
    this.setClientPaused(Pause.Connecting, false);
  }

  onUpstreamDrain(): void {
    this.setClientPaused(Pause.UpstreamFull, false);
  }

  // ---- response ------------------------------------------------------------------------------

  onServerData(chunk: Buffer): void {
    this.host.counters.bytesFromServers += chunk.length;
    if (this.rawAnswer) {
      this.clientLeg.write(chunk);
      return;
    }
    this.serverFramer!.push(chunk);
    const cache = this.cache;
    cache?.afterServerRead();
    if (cache !== null && cache.holding) this.setUpstreamPaused(true);
    else if (!this.toClient.empty && !this.clientLeg.flush(this.toClient)) this.setUpstreamPaused(true);
    if (this.shutdownRequested && this.isIdle && (cache === null || !cache.holding)) this.closeForShutdown();
  }

  /** A read into the upstream leg's reused buffer; true as in onClientRead. */
  onServerRead(chunk: Buffer): boolean {
    this.onServerData(chunk);
    return !relaying(this.state, this.cache, this.ledger.side) || this.serverFramer!.holdsInput || this.toClient.holds(this.clientLeg.socket);
  }

  /** response: a whole server message; keep the books, then relay it. */
  private onResponse(type: number, buf: Buffer, start: number, end: number): void {
    if (this.state === S.Closing) return;
    if (this.ledger.side !== null && this.sideAnswer(type, buf, start, end)) return;
    try {
      if (!this.books.received(type, buf, start, end)) return;
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.upstreamProtocolViolation(err.message);
      return;
    }
    let lead = null;
    switch (type) {
      case Backend.ReadyForQuery: {
        if (end - start < 6) {
          this.upstreamProtocolViolation('ReadyForQuery without a transaction status');
          return;
        }
        // Where it leads once it has ended the oldest pending group, checked before anything changes.
        const settled = this.state === S.Authenticating || this.ledger.pendingGroups <= 1 ? S.Idle : S.Response;
        if (!this.serverMayMove(settled, type)) return;
        const prev = this.txStatus;
        // Only a rate limit refuses a query (the gate): without one, the ledger is not asked.
        if (this.gate !== null && this.state !== S.Authenticating && this.ledger.refusal !== null) this.toClient.push(this.ledger.refusal, 0, this.ledger.refusal.length);
        this.txStatus = buf[start + 5] as TxStatus;
        lead = this.books.readyForQuery(prev, this.txStatus);
        if (this.state === S.Authenticating) {
          if (!this.readOnly && this.upstream.node !== null) this.host.upstreams?.startupDone(this.upstream.node);
          this.recorder.accepted(this.upstream);
          this.clientFramer.setMaxInspectLength(this.host.settings.maxMessageBytes);
        }
        if (settled === S.Idle) this.copyEndsAhead = 0; // PostgreSQL ignored any the server never asked for
        this.transition(settled);
        break;
      }
      case Backend.Authentication: {
        const offer = this.upstream.encrypted && !this.startup.encrypted && this.state === S.Authenticating ? offerOrFault(buf, start, end) : null;
        if (typeof offer === 'string') return this.upstreamProtocolViolation(offer);
        if (offer !== null) return this.toClient.push(offer, 0, offer.length);
        break;
      }
      case Backend.ParameterStatus:
        if (this.state === S.Authenticating && closedOnStandby(this, this.host, this.upstream.node, buf, start, end)) return;
        break;
      case Backend.BackendKeyData:
        if (end - start >= 13) {
          this.backendKey = { pid: buf.readInt32BE(start + 5), secret: buf.readInt32BE(start + 9) };
          this.host.keys.register(this);
        }
        break;
      case Backend.ErrorResponse:
        if (isFatalError(buf, start, end)) this.serverSaidFatal = true;
        break;
    }
    let next = afterServerMessage(this.state, type);
    // A client that sent its CopyDone with the COPY (not waiting for CopyInResponse) is done copying.
    if (next === S.CopyIn && this.copyEndsAhead > 0) {
      this.copyEndsAhead--;
      next = S.Response;
    }
    if (next !== null) {
      if (!this.serverMayMove(next, type)) return;
      this.transition(next);
    }
    this.toClient.push(buf, start, end);
    if (lead !== null) this.cache!.finishLead(lead);
    if (type === Backend.ErrorResponse && this.serverSaidFatal) this.closeAfterServerFatal();
  }

  /**
   * The server's FATAL is its last word (PostgreSQL closes right after it): pass it on and close
   * now rather than when the server's socket closes, so that nothing reaches the client after it,
   * such as an answer from the cache to a read sent meanwhile (issue 15, the chaos test). While a
   * commit's answer is held for Redis, holdReleased() does it.
   */
  private closeAfterServerFatal(): void {
    if (this.state === S.Closing || (this.cache !== null && this.cache.holding)) return;
    this.clientLeg.flush(this.toClient);
    this.transition(S.Closing);
  }

  private onServerPiece(type: number, buf: Buffer, start: number, end: number): void {
    if (this.state === S.Closing) return;
    if (this.ledger.side !== null && this.sideAnswer(type, buf, start, end)) return;
    const next = afterServerMessage(this.state, type);
    if (next !== null) {
      if (!this.serverMayMove(next, type)) return;
      this.transition(next);
    }
    this.cache?.cs.capturing?.capture.add(buf, start, end);
    if (type === Backend.DataRow) this.recorder.tracker?.rows?.piece(buf, start, end);
    this.toClient.push(buf, start, end);
  }

  /**
   * Whether the session's state can take a server message that leads to `next`. One it cannot (a
   * COPY answer during authentication or while idle, ReadyForQuery in the middle of COPY FROM
   * STDIN) is the server's protocol violation, not pgscribe's illegal transition: the session is
   * failed with 08006 like any invalid server message (found by the hostile-upstream fuzzer;
   * test/regress/issue-15-20).
   */
  private serverMayMove(next: ClientState, type: number): boolean {
    if (next === this.state || ALLOWED[this.state].includes(next)) return true;
    this.upstreamProtocolViolation(`${describeType(type)} while the session is ${this.state}`);
    return false;
  }

  /**
   * Send pgscribe's own request in this session (the cache's probe): a batch ending in Sync, at a
   * moment when nothing is pending and the client is held. Its answer goes to side.done.
   */
  sendSide(batch: Buffer, side: SideRequest): void {
    this.ledger.sendSide(side);
    this.toUpstream.push(batch, 0, batch.length);
    this.flushToUpstream();
  }

  /** A server message (or a piece of one) while pgscribe's own request is answered: true when it was part of that answer. */
  private sideAnswer(type: number, buf: Buffer, start: number, end: number): boolean {
    if (!this.books.side(type, buf, start, end)) return false;
    if (type === Backend.ReadyForQuery && end - start >= 6) this.txStatus = buf[start + 5] as TxStatus;
    return true;
  }

  /** The invalidations of a commit reached the other instances: let its ReadyForQuery go. */
  holdReleased(): void {
    if (this.state === S.Closing) return;
    if (this.serverSaidFatal) {
      this.closeAfterServerFatal();
      return;
    }
    if (!this.toClient.empty && !this.clientLeg.flush(this.toClient)) return; // 'drain' resumes the upstream
    this.setUpstreamPaused(false);
    if (this.shutdownRequested && this.isIdle) this.closeForShutdown();
  }

  // ---- flow control --------------------------------------------------------------------------

  /**
   * The query log is behind (or the session is not accepted yet, see Recorder): stop reading the
   * client, and stop delivering the messages of the read at hand after the current one, so that a
   * read costs at most one message's lines beyond the log's bound (a 64 KiB read of Executes is
   * thousands of them). This may be called inside another message's handling, a server's among
   * them, so delivery resumes in a microtask, once that handling is over.
   */
  private pauseForLog(paused: boolean): void {
    this.logPaused = paused;
    this.setClientPaused(Pause.LogFull, paused);
    if (paused) this.clientFramer.hold();
    else queueMicrotask(this.releaseForLog);
  }

  /** The log caught up: the messages held back are delivered, then what they queued goes out. */
  private readonly releaseForLog = (): void => {
    if (this.logPaused || this.state === S.Closing || this.gate?.holding === true) return;
    this.clientFramer.release();
    if (this.cache !== null) this.cache.afterRead();
    this.flushToUpstream();
    this.flushToClient();
  };

  private setClientPaused(reason: Pause, on: boolean): void {
    this.clientLeg.setPaused(reason, on, this.state !== S.Closing);
  }

  onClientDrain(): void {
    if (this.cache === null || !this.cache.holding) this.setUpstreamPaused(false);
    this.setClientPaused(Pause.ClientFull, false);
  }

  private setUpstreamPaused(on: boolean): void {
    this.upstream.setPaused(on, this.state !== S.Closing);
  }

  holdForAdmission(on: boolean): void {
    this.setClientPaused(Pause.Admission, on);
    if (on) this.clientFramer.hold();
    else if (this.state !== S.Closing) this.clientFramer.release();
  }

  holdForRate(on: boolean): void {
    this.setClientPaused(Pause.RateLimit, on);
    if (on) this.clientFramer.hold();
    else queueMicrotask(this.releaseForLog);
  }

  pauseForCache(paused: boolean): void {
    this.setClientPaused(Pause.CacheWait, paused);
  }

  // ---- errors and teardown -------------------------------------------------------------------

  protocolViolation(reason: string): void {
    this.host.ops.warn('client protocol violation; closing it', { conn: this.id, client: this.address, reason });
    this.fail(SessionError.protocolViolation(reason));
  }

  private upstreamProtocolViolation(reason: string): void {
    this.endReason ??= 'server';
    this.host.ops.error('upstream sent an invalid message; closing the session', { conn: this.id, client: this.address, reason });
    this.host.counters.upstreamErrors++;
    this.fail(SessionError.upstreamInvalid(reason));
  }

  onClientError(err: NodeJS.ErrnoException): void {
    // Resets are how many clients say goodbye; 'close' follows and does the work.
    if (!isGoodbye(err)) this.host.ops.warn('client socket error', { conn: this.id, client: this.address, error: err.code ?? err.message });
  }

  onClientClose(): void {
    this.endReason ??= 'client';
    this.clientFramer.stop();
    if (this.state === S.TlsHandshake) {
      this.host.ops.warn('TLS handshake with client failed; closing it', { conn: this.id, client: this.address, error: 'connection closed during the handshake' });
    }
    if (this.state !== S.Closing) this.transition(S.Closing);
    this.host.closed(this);
  }

  onUpstreamClose(): void {
    if (this.state === S.Closing || this.state === S.Connecting) return;
    this.endReason ??= 'server';
    if (this.clientTerminated || this.serverSaidFatal || this.rawAnswer) {
      // The server said why (FATAL) or the client asked for it (Terminate): nothing to add.
      this.transition(S.Closing);
      return;
    }
    this.host.counters.upstreamErrors++;
    this.host.ops.warn('upstream closed the session unexpectedly', { conn: this.id, client: this.address, state: this.state });
    this.fail(SessionError.upstreamClosed());
  }

  /** Send a FATAL ErrorResponse (when the client stream is at a message boundary) and close. */
  fail(error: ErrorFields): void {
    if (this.state === S.Closing) return;
    // Mid-handshake there is no channel to speak on: the client expects TLS records.
    const canSpeak = (this.serverFramer === null || !this.serverFramer.midPassthrough) && this.state !== S.TlsHandshake;
    if (!this.toClient.empty) this.clientLeg.flush(this.toClient);
    if (canSpeak && this.clientLeg.writable) this.clientLeg.write(encodeErrorResponse(error));
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
    this.fail(SessionError.shuttingDown());
  }

  /** Entered once, from transition(Closing): release both sockets. */
  private teardown(from: ClientState): void {
    this.startup.close(from);
    this.clientFramer.stop();
    this.serverFramer?.stop();
    this.host.keys.unregister(this);
    this.gate?.close();
    this.books.close();
    this.recorder.close(this.clientTerminated ? 'terminate' : this.serverSaidFatal ? 'server' : (this.endReason ?? 'proxy'), this.host.ops, this.id, this.address);
    if (this.upstream.socket !== null && !this.upstream.negotiating && !this.upstream.socket.destroyed) this.flushToUpstream();
    this.upstream.close(!this.clientFramer.midPassthrough && !this.clientTerminated, TERMINATE, CLOSE_LINGER_MS);
    this.toUpstream.clear();
    this.toClient.clear();
    this.clientLeg.close(from === S.TlsHandshake, CLOSE_LINGER_MS);
  }

  destroy(): void {
    this.upstream.socket?.destroy();
    this.clientLeg.destroy();
  }
}
