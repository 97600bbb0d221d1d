/**
 * One client connection and its upstream connection (1:1, session mode), driven by an explicit
 * state machine. Bytes are relayed as the original ranges; only the messages the query log and
 * the session bookkeeping need are looked into.
 */
import * as net from 'node:net';
import type * as tls from 'node:tls';
import { Backend, Frontend, MAX_STARTUP_PACKET_LENGTH, SqlState, TxStatus } from './protocol/codes';
import { Framer } from './protocol/framer';
import {
  NEGOTIATION_REFUSED,
  READY_IDLE,
  ProtocolError,
  SSL_ACCEPTED,
  TERMINATE,
  decodeBind,
  decodeClose,
  decodeExecute,
  decodeParameterStatus,
  decodeParse,
  decodeQuery,
  decodeSaslMechanisms,
  decodeStartup,
  encodeAuthenticationSasl,
  encodeErrorResponse,
  isFatalError,
  type ErrorFields,
} from './protocol/messages';
import { Outbox } from './outbox';
import type { CacheOutcome, FlightRole, QueryRecord, SessionInfo } from './log/format';
import type { Server } from './server';
import type { FlightClient, SharedAnswer, Verdict } from './cache/layer';
import { judgeResponse, replayAnswer } from './cache/response';
import { CacheSession, type Lead, type Request } from './cache/session';
import { COMPLETE, MORE, REJECT, Unit } from './cache/unit';
import { CompletionTracker, type Completed } from './completions';
import { negotiateUpstream, type ClientTls, type Negotiation, type TlsUpgradeListener } from './tls';

/**
 * Client states. The field `state` changes only in `transition()`.
 */
export const ClientState = {
  /** Waiting for the startup packet: SSL/GSS negotiation, CancelRequest or StartupMessage. */
  Startup: 'startup',
  /** SSLRequest answered 'S': the TLS handshake runs; then Startup again, encrypted. */
  TlsHandshake: 'tls-handshake',
  /** StartupMessage accepted; the upstream connection is being opened. */
  Connecting: 'connecting',
  /** StartupMessage relayed; authentication runs between client and server until ReadyForQuery. */
  Authenticating: 'authenticating',
  /** Nothing outstanding: the last Query/Sync has been answered by ReadyForQuery. */
  Idle: 'idle',
  /**
   * A cacheable request waits for the cache layer (a lookup in a worker thread, or another
   * client's identical query in flight); nothing of it went upstream. Later client messages wait too.
   */
  Waiting: 'waiting',
  /** The client has sent messages that the server has not started answering. */
  Request: 'request',
  /** The server is answering; lasts until the ReadyForQuery that answers the last Query/Sync. */
  Response: 'response',
  /** COPY FROM STDIN: the client streams CopyData until CopyDone or CopyFail. */
  CopyIn: 'copy-in',
  /** COPY TO STDOUT: the server streams CopyData until CopyDone. */
  CopyOut: 'copy-out',
  /** Replication streaming: CopyData both ways. */
  CopyBoth: 'copy-both',
  /** Being torn down; terminal. */
  Closing: 'closing',
} as const;
export type ClientState = (typeof ClientState)[keyof typeof ClientState];

const S = ClientState;
const ALLOWED: Record<ClientState, readonly ClientState[]> = {
  [S.Startup]: [S.TlsHandshake, S.Connecting, S.Closing],
  [S.TlsHandshake]: [S.Startup, S.Closing],
  [S.Connecting]: [S.Authenticating, S.Closing],
  [S.Authenticating]: [S.Idle, S.Closing],
  [S.Idle]: [S.Request, S.Response, S.Waiting, S.Closing],
  [S.Waiting]: [S.Idle, S.Closing],
  [S.Request]: [S.Response, S.Idle, S.CopyIn, S.CopyOut, S.CopyBoth, S.Closing],
  [S.Response]: [S.Idle, S.CopyIn, S.CopyOut, S.CopyBoth, S.Closing],
  [S.CopyIn]: [S.Response, S.Closing],
  [S.CopyOut]: [S.Response, S.Closing],
  [S.CopyBoth]: [S.Response, S.Closing],
  [S.Closing]: [],
};

/** Backend messages the proxy looks inside; everything else may stream through in pieces. */
const SERVER_INSPECT = [
  // Only during authentication (the SASL mechanism list, see onServerMessage).
  Backend.Authentication,
  Backend.ReadyForQuery,
  Backend.BackendKeyData,
  Backend.CopyInResponse,
  Backend.CopyOutResponse,
  Backend.CopyBothResponse,
  Backend.CopyDone,
  Backend.ErrorResponse,
];
/**
 * Frontend messages the proxy looks inside or acts on (log, statement/portal tracking, counting
 * Sync/Query for ReadyForQuery, copy and terminate bookkeeping). Each must arrive whole even when
 * it straddles two reads, so all of them are listed; the rest may stream through.
 */
const CLIENT_INSPECT = [
  Frontend.Query,
  Frontend.Parse,
  Frontend.Bind,
  Frontend.Execute,
  Frontend.Close,
  Frontend.Sync,
  Frontend.FunctionCall,
  Frontend.Terminate,
  Frontend.CopyDone,
  Frontend.CopyFail,
];
/** With the cache on, a request unit also needs its Describe and Flush whole (unit.ts). */
const CLIENT_INSPECT_CACHE = [...CLIENT_INSPECT, Frontend.Describe, Frontend.Flush];
/** With the cache on: the statement ledger's completions and the session parameters of the key. */
const SERVER_INSPECT_CACHE = [...SERVER_INSPECT, Backend.ParseComplete, Backend.CloseComplete, Backend.ParameterStatus];
/** With completion tracking: the messages that end a query (completions.ts). */
const SERVER_INSPECT_COMPLETIONS = [Backend.CommandComplete, Backend.EmptyQueryResponse, Backend.PortalSuspended];

/**
 * Frontend messages that ask the server for something, moving an idle session to `request`.
 * CopyData/CopyDone/CopyFail are not among them: outside COPY the server ignores them (e.g. the
 * rest of a COPY stream after the server rejected a row), so they must not make a session busy.
 */
const STARTS_REQUEST = new Uint8Array(256);
for (const t of [
  Frontend.Query,
  Frontend.Parse,
  Frontend.Bind,
  Frontend.Execute,
  Frontend.Describe,
  Frontend.Close,
  Frontend.Sync,
  Frontend.Flush,
  Frontend.FunctionCall,
]) {
  STARTS_REQUEST[t] = 1;
}
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

interface Portal {
  statement: string;
  sql: string | null;
}

/** How the log lines of a request unit describe the cache's part in it. */
interface Annotation {
  cache?: CacheOutcome;
  flight?: FlightRole;
}
const HIT: Annotation = { cache: 'hit' };
const L2_HIT: Annotation = { cache: 'l2' };
const L2_REMOTE: Annotation = { cache: 'l2', flight: 'remote' };
/** forward() without a log line: the message was logged when its unit was decided. */
const NO_LOG = 0;

/** A client message that arrived while the session was Waiting: a copy, whole or a streamed piece. */
interface Deferred {
  type: number;
  buf: Buffer;
  whole: boolean;
}

const noop = (): void => {};
/** The SASL mechanism with channel binding (tls-server-end-point). */
const SCRAM_PLUS = 'SCRAM-SHA-256-PLUS';

export class Client implements FlightClient, TlsUpgradeListener {
  readonly id: number;
  readonly address: string;
  state: ClientState = S.Startup;
  /** Transaction status from the last ReadyForQuery ('I', 'T' or 'E'). */
  txStatus: TxStatus = TxStatus.Idle;
  session: SessionInfo | null = null;
  /** BackendKeyData of the upstream session: the key a CancelRequest must carry. */
  backendKey: { pid: number; secret: number } | null = null;
  /** Prepared statements by name ('' is the unnamed one) -> SQL, as the client defined them. */
  readonly statements = new Map<string, string>();
  /** Portals by name -> their statement. */
  readonly portals = new Map<string, Portal>();
  /** Query/Sync/FunctionCall messages sent upstream and not yet answered by ReadyForQuery. */
  private pendingSyncs = 0;

  private readonly server: Server;
  /** The client connection: the accepted socket, or the TLS session over it once the handshake is done. */
  private socket: net.Socket;
  /** The accepted socket (its 'close' ends the session, TLS or not). */
  private readonly rawSocket: net.Socket;
  /** The session is TLS (SSLRequest answered 'S' and the handshake completed). */
  private encrypted = false;
  /** 'S' has been written: nothing may follow in the clear before the handshake. */
  private sslAnswered = false;
  /** The handshake's key in ClientTls (to forget it if the client goes away first). */
  private handshakeKey = '';
  /** The upstream's answer to pgscribe's SSLRequest, or its TLS handshake, is awaited. */
  private upstreamNegotiating = false;
  /** pgscribe's connection to the upstream is TLS. */
  private upstreamEncrypted = false;
  private upstream: net.Socket | null = null;
  private readonly clientFramer: Framer;
  private serverFramer: Framer | null = null;
  private readonly toUpstream = new Outbox();
  private readonly toClient = new Outbox();
  private clientPaused = 0;
  private upstreamPaused = false;
  private awaitingLogDrain = false;
  private clientTerminated = false;
  private upstreamSaidFatal = false;
  private shutdownRequested = false;
  private timer: NodeJS.Timeout | null = null;
  private counted = false;

  // Cache/singleflight (null/unused unless --cache or --singleflight).
  private cs: CacheSession | null = null;
  private unit: Unit | null = null;
  /** The complete unit handed to the cache layer, until it is answered or sent upstream. */
  private request: Request | null = null;
  /** lookup() has not called back yet (worker threads answer later). */
  private verdictPending = false;
  /** The unit's log lines are written (once, when the cache first decided). */
  private unitLogged = false;
  /** The flight this client waits for (0: none). */
  private flightId = 0;
  /** Client messages received while Waiting, in order. */
  private backlog: Deferred[] = [];
  private draining = false;
  /**
   * What goes to the client waits: a commit's invalidation is being shared with other pgscribe
   * instances (--redis), and its ReadyForQuery must not reach the client before they can no
   * longer serve what it changed.
   */
  private holding = false;

  // Completion tracking (null unless --log-completions or --admin).
  private readonly tracker: CompletionTracker | null;
  /** Q/P/B/E messages are decoded: for the log, or for the tracker (statement and portal SQL). */
  private readonly recording: boolean;
  /** seq of the last Q/P/B/E record. */
  private seq = 0;
  /** performance.now() when the pending unit was complete: its queries' start. */
  private unitStart = 0;
  /** The Q or E record of the pending unit, once its lines are written. */
  private unitQuery: QueryRecord | null = null;
  // The client socket's listeners, kept by name to move data and drain to the TLS session.
  private readonly onData = (chunk: Buffer): void => this.onClientData(chunk);
  private readonly onDrain = (): void => {
    if (!this.holding) this.setUpstreamPaused(false);
    this.setClientPaused(PAUSE_CLIENT_FULL, false);
  };
  private readonly onError = (err: NodeJS.ErrnoException): void => this.onSocketError('client', err);

  constructor(server: Server, socket: net.Socket, id: number) {
    this.server = server;
    this.socket = socket;
    this.rawSocket = socket;
    this.id = id;
    this.address = formatAddress(socket.remoteAddress, socket.remotePort);
    this.tracker = server.tracksCompletions ? new CompletionTracker((c) => this.onCompleted(c)) : null;
    this.recording = server.logger.enabled || this.tracker !== null;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    this.clientFramer = new Framer(
      {
        onMessage: (type, buf, start, end) => this.onClientMessage(type, buf, start, end),
        onPassthrough: (type, buf, start, end) => this.onClientPassthrough(type, buf, start, end),
        onFramingError: (reason) => this.protocolViolation(reason),
      },
      {
        maxLength: server.config.limits.maxMessageBytes,
        maxStartupLength: MAX_STARTUP_PACKET_LENGTH,
        inspect: server.cache === null ? CLIENT_INSPECT : CLIENT_INSPECT_CACHE,
        startup: true,
      },
    );
    socket.on('data', this.onData);
    socket.on('drain', this.onDrain);
    socket.on('error', this.onError);
    socket.on('close', () => this.onClientClose());
    this.timer = setTimeout(() => this.onStartupTimeout(), server.config.limits.startupTimeoutMs);
  }

  // ---- state ---------------------------------------------------------------------------------

  /** The only place `state` changes. */
  private transition(next: ClientState): void {
    const from = this.state;
    if (from === next) return;
    if (!ALLOWED[from].includes(next)) {
      this.server.ops.error('internal error: illegal client state transition; closing the client', {
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
    return this.state === S.Idle && this.txStatus === TxStatus.Idle && this.pendingSyncs === 0;
  }

  // ---- client -> proxy -----------------------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    this.server.bytesFromClients += chunk.length;
    this.clientFramer.push(chunk);
    if (this.unit !== null && this.unit.active) this.unit.keep();
    this.flushToUpstream();
    this.flushToClient();
  }

  private onClientMessage(type: number, buf: Buffer, start: number, end: number): void {
    if (this.state === S.Startup) {
      this.onStartupPacket(buf, start, end);
      return;
    }
    if (this.state === S.Closing) return;
    this.server.messagesIn[type]++;
    if (this.cs === null) this.forward(type, buf, start, end, null);
    else if (this.state === S.Waiting || (this.backlog.length > 0 && !this.draining)) this.defer(type, buf, start, end, true);
    else this.intake(type, buf, start, end);
  }

  private onClientPassthrough(type: number, buf: Buffer, start: number, end: number): void {
    if (this.state === S.Closing) return;
    if (this.cs !== null) {
      if (this.state === S.Waiting || (this.backlog.length > 0 && !this.draining)) {
        this.defer(type, buf, start, end, false);
        return;
      }
      // A streamed message is never part of a cacheable unit.
      if (this.unit!.active) this.releaseUnit(null);
    }
    if (this.state === S.Idle && STARTS_REQUEST[type] === 1) this.transition(S.Request);
    this.toUpstream.push(buf, start, end);
  }

  /**
   * Log (unless ann is NO_LOG), keep the books, and queue one client message for the upstream.
   * ann: null for a plain line, an Annotation for a line of a cacheable unit.
   */
  private forward(type: number, buf: Buffer, start: number, end: number, ann: Annotation | null | typeof NO_LOG): void {
    try {
      const r = ann === NO_LOG ? this.unitQuery : this.recording ? this.logMessage(type, buf, start, end, ann) : null;
      if (this.tracker !== null) this.track(type, r, ann === NO_LOG);
      if (this.cs !== null) this.cs.beforeForward(type, buf, start, end, this.toUpstream);
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.protocolViolation(err.message);
        return;
      }
      throw err;
    }
    switch (type) {
      case Frontend.Query:
      case Frontend.Sync:
      case Frontend.FunctionCall:
        this.pendingSyncs++;
        break;
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

  /**
   * A message going upstream, as the completion tracker needs it (r: its record, for Q and E;
   * ofUnit: it belongs to a unit the cache decided on, whose queries started then).
   */
  private track(type: number, r: QueryRecord | null, ofUnit: boolean): void {
    const t = this.tracker!;
    switch (type) {
      case Frontend.Query:
        if (r !== null && r.type === 'Q') t.query(r.seq!, r.sql, ofUnit ? this.unitStart : performance.now(), r.cache, r.flight);
        break;
      case Frontend.Execute:
        if (r !== null && r.type === 'E') t.execute(r.seq!, r.sql, ofUnit ? this.unitStart : performance.now(), r.cache, r.flight);
        break;
      case Frontend.Sync:
      case Frontend.FunctionCall:
        t.sync();
        break;
    }
  }

  /** A query ended (completions.ts): its `done` line and its digest. */
  private onCompleted(c: Completed): void {
    const srv = this.server;
    if (srv.insight !== null && c.sql !== null) {
      srv.insight.record({ sql: c.sql, ms: c.ms, rows: c.rows, error: c.status === 'error', cache: c.cache, flight: c.flight, now: Date.now() });
    }
    if (srv.config.log.completions && srv.logger.enabled && this.session !== null) this.written(srv.logger.logCompletion(this.session, c));
  }

  /**
   * One line per Q/P/B/E, and the statement/portal names the lines show. Statements and portals
   * are tracked for the log and the completion tracker only: with both off, nothing is decoded.
   * Returns the record (written when the log is on), or null for a Close.
   */
  private logMessage(type: number, buf: Buffer, start: number, end: number, ann: Annotation | null): QueryRecord | null {
    // Every record has the same fields in the same order (one hidden class for the formatter).
    const cache = ann === null ? undefined : ann.cache;
    const flight = ann === null ? undefined : ann.flight;
    let r: QueryRecord;
    switch (type) {
      case Frontend.Query:
        r = { type: 'Q', statement: null, portal: null, sql: decodeQuery(buf, start, end), params: null, cache, flight, seq: ++this.seq };
        break;
      case Frontend.Parse: {
        const m = decodeParse(buf, start, end);
        this.statements.set(m.statement, m.sql);
        r = { type: 'P', statement: m.statement, portal: null, sql: m.sql, params: null, cache, flight, seq: ++this.seq };
        break;
      }
      case Frontend.Bind: {
        const m = decodeBind(buf, start, end);
        const sql = this.statements.get(m.statement) ?? null;
        this.portals.set(m.portal, { statement: m.statement, sql });
        r = { type: 'B', statement: m.statement, portal: m.portal, sql, params: { formats: m.paramFormats, values: m.params }, cache, flight, seq: ++this.seq };
        break;
      }
      case Frontend.Execute: {
        const portal = decodeExecute(buf, start, end);
        const p = this.portals.get(portal);
        r = { type: 'E', statement: p ? p.statement : null, portal, sql: p ? p.sql : null, params: null, cache, flight, seq: ++this.seq };
        break;
      }
      case Frontend.Close: {
        const m = decodeClose(buf, start, end);
        if (m.kind === 'S') this.statements.delete(m.name);
        else this.portals.delete(m.name);
        return null;
      }
      default:
        return null;
    }
    if (this.server.logger.enabled) this.logQuery(r);
    return r;
  }

  // ---- cache and singleflight ----------------------------------------------------------------

  /** A client message with the cache on, when the session is not Waiting. */
  private intake(type: number, buf: Buffer, start: number, end: number): void {
    const u = this.unit!;
    if (!u.active && !(this.state === S.Idle && this.pendingSyncs === 0 && this.txStatus === TxStatus.Idle && this.cs!.usable)) {
      this.forward(type, buf, start, end, null);
      return;
    }
    let v;
    try {
      v = u.add(type, buf, start, end);
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.protocolViolation(err.message);
        return;
      }
      throw err;
    }
    if (v === MORE) return;
    const req = v === COMPLETE ? this.cs!.request(u) : null;
    if (v === REJECT || req === null) {
      this.releaseUnit(null);
      return;
    }
    this.request = req;
    this.unitStart = performance.now();
    this.lookup();
  }

  /** Ask the cache layer about the pending request; enter Waiting if it answers later. */
  private lookup(): void {
    this.verdictPending = true;
    this.cs!.ctx.layer.lookup(this.request!, this);
    if (this.verdictPending) this.startWaiting();
  }

  private startWaiting(): void {
    this.unit!.keep();
    if (this.state !== S.Waiting) {
      this.transition(S.Waiting);
      this.setClientPaused(PAUSE_CACHE_WAIT, true);
    }
  }

  /** FlightClient: what the cache layer decided for the pending request. */
  onVerdict(v: Verdict, flightId: number): void {
    this.verdictPending = false;
    const ctx = this.cs!.ctx;
    if (this.state === S.Closing || this.request === null) {
      // Gone while a worker thread was deciding: give back what it handed out.
      if (v.kind === 'lead') ctx.layer.complete(flightId, null, 0, 0);
      else if (v.kind === 'wait') ctx.layer.leave(v.flightId, this);
      return;
    }
    const miss: CacheOutcome | undefined = ctx.cache ? 'miss' : undefined;
    switch (v.kind) {
      case 'hit':
        this.logUnit(v.l2 === undefined ? HIT : v.l2 === 'hit' ? L2_HIT : L2_REMOTE);
        this.answerLocally(v);
        break;
      case 'wait':
        this.flightId = v.flightId;
        this.logUnit({ cache: miss, flight: 'waiter' });
        this.startWaiting();
        break;
      case 'lead':
        this.cs!.lead(flightId, this.request);
        this.releaseUnit({ cache: miss, flight: ctx.singleflight ? 'leader' : undefined });
        break;
      case 'bypass':
        this.releaseUnit({ cache: 'bypass' });
        break;
    }
    this.flushToUpstream();
    this.flushToClient();
  }

  /** FlightClient: the flight this client waited for is over. */
  onFlightDone(answer: SharedAnswer | null): void {
    this.flightId = 0;
    if (this.state === S.Closing || this.request === null) return;
    if (answer !== null) {
      this.answerLocally(answer);
      this.flushToClient();
      return;
    }
    // The leader failed, went away or was cancelled: not this client's fate. Ask again (it may
    // lead now, or join a newer flight).
    this.lookup();
  }

  /** Write the lines of the pending unit, once. */
  private logUnit(ann: Annotation): void {
    if (this.unitLogged) return;
    this.unitLogged = true;
    if (!this.recording) return;
    try {
      for (const h of this.unit!.held) {
        const r = this.logMessage(h.type, h.buf, h.start, h.end, ann);
        if (r !== null && (r.type === 'Q' || r.type === 'E')) this.unitQuery = r;
      }
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      // The unit assembler validated these messages: unreachable, but never fatal to the process.
    }
  }

  /** Send the held unit upstream (ann for its log lines, unless they are written already). */
  private releaseUnit(ann: Annotation | null): void {
    const u = this.unit!;
    const held = u.held;
    const logged = this.unitLogged;
    u.reset();
    this.request = null;
    this.unitLogged = false;
    const wasWaiting = this.state === S.Waiting;
    if (wasWaiting) this.transition(S.Idle);
    for (const h of held) {
      if (this.state === S.Closing) return;
      this.forward(h.type, h.buf, h.start, h.end, logged ? NO_LOG : ann);
    }
    this.unitQuery = null;
    if (wasWaiting) this.resumeAfterWait();
  }

  /** The pending unit is answered by the proxy (cache hit, flight answer): reply in its own shape. */
  private answerLocally(a: SharedAnswer): void {
    const u = this.unit!;
    replayAnswer(this.toClient, a, u.hasParse);
    this.cs!.answeredLocally(u);
    this.completeLocally(a.bytes);
    this.finishLocal();
  }

  /** The pending unit's query ends with an answer the proxy wrote itself. */
  private completeLocally(answer: Buffer): void {
    const r = this.unitQuery;
    if (this.tracker === null || r === null) return;
    this.tracker.local(r.type === 'Q' ? 'Q' : 'E', r.seq!, r.sql, this.unitStart, answer, r.cache, r.flight);
  }

  private finishLocal(): void {
    this.unit!.reset();
    this.request = null;
    this.unitLogged = false;
    this.unitQuery = null;
    if (this.state === S.Waiting) {
      this.transition(S.Idle);
      this.resumeAfterWait();
    }
  }

  /** Back from Waiting: take the messages that arrived meanwhile, then read the client again. */
  private resumeAfterWait(): void {
    this.flushToClient();
    if (this.draining) return;
    this.draining = true;
    while (this.backlog.length > 0 && this.state !== S.Waiting && this.state !== S.Closing) {
      const d = this.backlog.shift()!;
      if (d.whole) this.intake(d.type, d.buf, 0, d.buf.length);
      else this.onClientPassthrough(d.type, d.buf, 0, d.buf.length);
    }
    this.draining = false;
    if (this.state === S.Waiting || this.state === S.Closing) return;
    this.setClientPaused(PAUSE_CACHE_WAIT, false);
    this.flushToUpstream();
    this.flushToClient();
    if (this.shutdownRequested && this.isIdle) this.closeForShutdown();
  }

  private defer(type: number, buf: Buffer, start: number, end: number, whole: boolean): void {
    this.backlog.push({ type, buf: Buffer.from(buf.subarray(start, end)), whole });
  }

  /**
   * A CancelRequest for this session: if it waits for another client's flight, answer what
   * PostgreSQL answers a cancelled statement and stop waiting. False when it does not wait (the
   * cancel goes to the server as usual).
   */
  cancelWait(): boolean {
    if (this.state !== S.Waiting || this.cs === null) return false;
    const layer = this.cs.ctx.layer;
    if (this.flightId !== 0) {
      layer.leave(this.flightId, this);
      this.flightId = 0;
    } else if (this.verdictPending && layer.abandon(this)) {
      // (Waiting on the shared cache or on another instance's flight: the layer forgets it.)
      this.verdictPending = false;
    } else return false;
    const err = encodeErrorResponse({
      severity: 'ERROR',
      code: SqlState.QueryCanceled,
      message: 'canceling statement due to user request',
      detail: 'pgscribe: the statement was waiting for the same query of another client (singleflight).',
    });
    this.toClient.push(err, 0, err.length);
    this.toClient.push(READY_IDLE, 0, READY_IDLE.length);
    this.cs.cancelledLocally(this.unit!);
    this.completeLocally(err);
    this.finishLocal();
    this.flushToClient();
    return true;
  }

  /** The leader's answer is complete: share it with the waiters and offer it to the cache. */
  private finishLead(lead: Lead): void {
    const ctx = this.cs!.ctx;
    if (lead.capture.overflow) {
      ctx.layer.complete(lead.flightId, null, 0, ctx.bypassMs);
      return;
    }
    const bytes = lead.capture.finish();
    const j = judgeResponse(bytes, lead.kind, lead.hasParse, lead.hasDescribe);
    ctx.layer.complete(lead.flightId, j.shareable ? { bytes, hasParse: lead.hasParse } : null, j.storable ? lead.ttlMs : 0, 0);
  }

  private logQuery(record: QueryRecord): void {
    this.written(this.server.logger.log(this.session!, record));
  }

  /** After a line went to the logger: false means the writer is behind. */
  private written(accepted: boolean): void {
    if (!accepted && !this.awaitingLogDrain) {
      // The log writer is behind: stop reading from this client until it catches up.
      const logger = this.server.logger;
      this.awaitingLogDrain = true;
      this.setClientPaused(PAUSE_LOG_FULL, true);
      logger.onDrain(() => {
        this.awaitingLogDrain = false;
        this.setClientPaused(PAUSE_LOG_FULL, false);
      });
    }
  }

  private flushToUpstream(): void {
    if (this.toUpstream.empty || this.upstream === null) return;
    if (!this.toUpstream.flush(this.upstream)) this.setClientPaused(PAUSE_UPSTREAM_FULL, true);
  }

  /** Write what the proxy answered itself (cache replays); a slow client stops being read. */
  private flushToClient(): void {
    if (this.toClient.empty || this.holding) return;
    if (!this.toClient.flush(this.socket)) {
      this.setUpstreamPaused(true);
      this.setClientPaused(PAUSE_CLIENT_FULL, true);
    }
  }

  // ---- startup -------------------------------------------------------------------------------

  private onStartupPacket(buf: Buffer, start: number, end: number): void {
    if (this.sslAnswered) {
      // PostgreSQL's rule since CVE-2021-23214: bytes that follow an SSLRequest before the handshake
      // were not protected by it (they may come from someone in the middle), so they are refused.
      this.protocolViolation('received unencrypted data after SSLRequest');
      return;
    }
    let packet;
    try {
      packet = decodeStartup(buf, start, end);
    } catch (err) {
      this.protocolViolation((err as Error).message);
      return;
    }
    switch (packet.kind) {
      case 'ssl':
      case 'gssenc': {
        if (this.encrypted) {
          this.protocolViolation(`${packet.kind === 'ssl' ? 'SSLRequest' : 'GSSENCRequest'} on a connection that is already encrypted`);
          return;
        }
        const ctls = this.server.tls.client;
        if (packet.kind === 'ssl' && ctls !== null) {
          this.answerSsl(ctls);
          return;
        }
        // No GSSAPI encryption (nor TLS, unless configured): 'N' lets the client carry on in plaintext.
        this.socket.write(NEGOTIATION_REFUSED);
        return;
      }
      case 'cancel':
        // Accepted in the clear even with --tls-mode require, as PostgreSQL accepts it whatever
        // pg_hba.conf says: libpq before 17 always sends cancel requests unencrypted.
        this.clearTimer();
        this.server.cancel(packet.pid, packet.secret, this.address);
        this.clientFramer.stop();
        this.transition(S.Closing);
        return;
      case 'unsupported':
        this.fail({
          severity: 'FATAL',
          code: SqlState.FeatureNotSupported,
          message: `pgscribe: unsupported frontend protocol ${packet.code >>> 16}.${packet.code & 0xffff}: only protocol 3 is supported`,
        });
        return;
      case 'startup':
        break;
    }
    if (!this.encrypted && this.server.tls.client?.mode === 'require') {
      this.server.ops.warn('plaintext client refused: --tls-mode require; it must connect with sslmode=require or stronger', {
        conn: this.id,
        client: this.address,
        user: packet.params.get('user'),
      });
      this.fail({
        severity: 'FATAL',
        code: SqlState.InvalidAuthorizationSpecification,
        message: 'pgscribe: this proxy accepts only TLS connections',
        hint: 'Connect with sslmode=require, verify-ca or verify-full.',
      });
      return;
    }
    this.clearTimer();
    const params = packet.params;
    const user = params.get('user');
    if (user === undefined || user === '') {
      this.fail({ severity: 'FATAL', code: SqlState.InvalidAuthorizationSpecification, message: 'pgscribe: no PostgreSQL user name specified in startup packet' });
      return;
    }
    this.session = { id: this.id, user, database: params.get('database') || user, client: this.address };
    if (this.server.cache !== null) {
      this.cs = new CacheSession(this.server.cache, params, user, this.session.database);
      this.cs.onShared = () => this.releaseHold();
      this.unit = new Unit();
    }
    if (!this.server.admitSession(this)) {
      this.fail({ severity: 'FATAL', code: SqlState.TooManyConnections, message: 'pgscribe: sorry, too many clients already' });
      return;
    }
    this.counted = true;
    this.clientFramer.setStartup(false);
    this.transition(S.Connecting);
    this.connectUpstream(buf.subarray(start, end));
  }

  /**
   * Answer 'S' and hand the socket to the TLS handshake once the answer is written. The write's
   * callback runs after the framer has gone through the rest of the read that held the
   * SSLRequest, so whatever followed it in the clear has shown up by then: a whole packet in
   * onStartupPacket, a partial one as bytes the framer holds. Either is refused.
   */
  private answerSsl(ctls: ClientTls): void {
    this.sslAnswered = true;
    this.socket.pause();
    this.socket.write(SSL_ACCEPTED, (err) => {
      if (err === undefined || err === null) this.startTls(ctls);
    });
  }

  private startTls(ctls: ClientTls): void {
    if (this.state !== S.Startup) return;
    if (!this.clientFramer.atBoundary) {
      this.protocolViolation('received unencrypted data after SSLRequest');
      return;
    }
    const raw = this.rawSocket;
    // From here the TLS session reads the socket (and takes what it already buffered); the
    // accepted socket keeps only its 'close', which also comes when the session closes.
    raw.off('data', this.onData);
    raw.off('drain', this.onDrain);
    raw.off('error', this.onError);
    raw.on('error', noop);
    this.transition(S.TlsHandshake);
    this.handshakeKey = ctls.upgrade(raw, this);
  }

  /** TlsUpgradeListener: the handshake is done. */
  onTlsSecure(sock: tls.TLSSocket): void {
    if (this.state !== S.TlsHandshake) {
      sock.destroy();
      return;
    }
    this.socket = sock;
    this.encrypted = true;
    this.sslAnswered = false;
    sock.on('error', this.onError);
    this.transition(S.Startup);
    const ctls = this.server.tls.client!;
    if (ctls.verifyClients && !sock.authorized) {
      const peer = sock.getPeerCertificate();
      const reason = peer === null || Object.keys(peer).length === 0 ? 'no certificate' : (sock.authorizationError?.toString() ?? 'not verified');
      this.server.ops.warn('client certificate refused (not signed by the --tls-ca certificates); closing it', {
        conn: this.id,
        client: this.address,
        reason,
      });
      this.fail({
        severity: 'FATAL',
        code: SqlState.InvalidAuthorizationSpecification,
        message: `pgscribe: a client certificate signed by a trusted CA is required (${reason})`,
        hint: 'Connect with sslcert and sslkey naming a certificate signed by one of the --tls-ca certificates.',
      });
      return;
    }
    sock.on('data', this.onData);
    sock.on('drain', this.onDrain);
  }

  /** TlsUpgradeListener: the handshake failed. */
  onTlsError(err: Error): void {
    if (this.state !== S.TlsHandshake) return;
    this.server.ops.warn('TLS handshake with client failed; closing it', {
      conn: this.id,
      client: this.address,
      error: (err as NodeJS.ErrnoException).code ?? err.message,
    });
    this.transition(S.Closing);
  }

  private connectUpstream(startupPacket: Buffer): void {
    const { host, port } = this.server.config.upstream;
    const up = net.connect({ host, port });
    this.upstream = up;
    up.setNoDelay(true);
    up.setKeepAlive(true, 60_000);
    this.serverFramer = new Framer(
      {
        onMessage: (type, b, s, e) => this.onServerMessage(type, b, s, e),
        onPassthrough: (_type, b, s, e) => this.onServerPassthrough(b, s, e),
        onFramingError: (reason) => this.upstreamProtocolViolation(reason),
      },
      { maxLength: SERVER_MAX_LENGTH, maxInspectLength: SERVER_MAX_INSPECT_ALLOC, inspect: this.serverInspect() },
    );
    this.setClientPaused(PAUSE_CONNECTING, true);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.server.ops.warn('upstream connect timed out', { conn: this.id, client: this.address, upstream: `${host}:${port}`, timeout_ms: this.server.config.limits.connectTimeoutMs });
      this.fail({
        severity: 'FATAL',
        code: SqlState.SqlclientUnableToEstablishSqlconnection,
        message: `pgscribe: could not connect to upstream server ${host}:${port}: timeout after ${this.server.config.limits.connectTimeoutMs} ms`,
        hint: 'Check that PostgreSQL is running and reachable at the --upstream address.',
      });
    }, this.server.config.limits.connectTimeoutMs);
    const utls = this.server.tls.upstream;
    if (utls === null) {
      // net queues this write until the connection is up; the client is not read until then.
      up.write(Buffer.from(startupPacket));
      up.on('connect', () => this.upstreamReady());
      this.listenUpstream(up);
      return;
    }
    // The startup packet waits for the TLS session (or for 'N' with prefer).
    const packet = Buffer.from(startupPacket);
    const onConnectError = (err: NodeJS.ErrnoException): void => this.onSocketError('upstream', err);
    up.on('error', onConnectError);
    this.upstreamNegotiating = true;
    negotiateUpstream(up, host, utls, (n) => {
      up.off('error', onConnectError);
      this.onUpstreamNegotiated(up, n, packet);
    });
  }

  private listenUpstream(sock: net.Socket): void {
    sock.on('data', (chunk: Buffer) => this.onServerData(chunk));
    sock.on('drain', () => this.setClientPaused(PAUSE_UPSTREAM_FULL, false));
    sock.on('error', (err: NodeJS.ErrnoException) => this.onSocketError('upstream', err));
    sock.on('close', () => this.onUpstreamClose());
  }

  /** The upstream connection carries the session: relay authentication, read the client again. */
  private upstreamReady(): void {
    this.clearTimer();
    if (this.state !== S.Connecting) return;
    this.transition(S.Authenticating);
    this.setClientPaused(PAUSE_CONNECTING, false);
  }

  /** The upstream answered pgscribe's SSLRequest (see negotiateUpstream). */
  private onUpstreamNegotiated(raw: net.Socket, n: Negotiation, startupPacket: Buffer): void {
    this.upstreamNegotiating = false;
    if (this.state !== S.Connecting) {
      if (n.kind === 'tls') n.socket.destroy();
      raw.destroy();
      return;
    }
    const { host, port } = this.server.config.upstream;
    const upstream = `${host}:${port}`;
    switch (n.kind) {
      case 'tls':
        this.upstream = n.socket;
        this.upstreamEncrypted = true;
        this.listenUpstream(n.socket);
        n.socket.write(startupPacket);
        this.upstreamReady();
        return;
      case 'plain':
        if (!this.server.tls.upstream!.plaintextNoted) {
          // Said once: with prefer against a server without SSL, every session would say it.
          this.server.tls.upstream!.plaintextNoted = true;
          this.server.ops.info('upstream does not support SSL; connecting in plaintext (--upstream-tls prefer; said once)', { conn: this.id, client: this.address, upstream });
        }
        this.listenUpstream(raw);
        raw.write(startupPacket);
        raw.resume();
        this.upstreamReady();
        return;
      case 'error': {
        // Like libpq: a protocol-3 ErrorResponse is the server's word and goes to the client as
        // is; anything else is an old-style error text ('E', then a string).
        const d = n.data;
        const len = d.length >= 5 ? d.readUInt32BE(1) : 8;
        if (len >= 8 && len <= 30000) {
          this.server.ops.warn('upstream answered the SSL request with an error; passing it on to the client', { conn: this.id, client: this.address, upstream });
          this.listenUpstream(raw);
          raw.resume();
          this.upstreamReady();
          this.onServerData(d);
          return;
        }
        const text = d.toString('utf8', 1).replace(/\0[\s\S]*$/, '').trim();
        this.upstreamNegotiationFailed(`the server sent an error during SSL negotiation: ${text}`);
        return;
      }
      case 'failed':
        this.upstreamNegotiationFailed(n.reason);
        return;
    }
  }

  private upstreamNegotiationFailed(reason: string): void {
    const { host, port } = this.server.config.upstream;
    const mode = this.server.tls.upstream!.mode;
    this.server.ops.warn('TLS negotiation with upstream failed; refusing the client with 08001', {
      conn: this.id,
      client: this.address,
      upstream: `${host}:${port}`,
      upstream_tls: mode,
      reason,
    });
    this.fail({
      severity: 'FATAL',
      code: SqlState.SqlclientUnableToEstablishSqlconnection,
      message: `pgscribe: could not connect to upstream server ${host}:${port}: ${reason}`,
      hint: `Check --upstream-tls ${mode} and --upstream-tls-ca against the server's SSL settings.`,
    });
  }

  /** Server messages that must arrive whole: what this session's features look into. */
  private serverInspect(): number[] {
    const base = this.cs === null ? SERVER_INSPECT : SERVER_INSPECT_CACHE;
    return this.tracker === null ? base : [...base, ...SERVER_INSPECT_COMPLETIONS];
  }

  private onStartupTimeout(): void {
    this.timer = null;
    if (this.state === S.TlsHandshake) {
      this.server.ops.warn('client did not complete the TLS handshake in time; dropping it', {
        conn: this.id,
        client: this.address,
        timeout_ms: this.server.config.limits.startupTimeoutMs,
      });
      this.transition(S.Closing);
      return;
    }
    if (this.state !== S.Startup) return;
    this.server.ops.warn('client did not send a startup packet in time; dropping it', {
      conn: this.id,
      client: this.address,
      timeout_ms: this.server.config.limits.startupTimeoutMs,
    });
    this.fail({
      severity: 'FATAL',
      code: SqlState.ProtocolViolation,
      message: `pgscribe: startup packet not received within ${this.server.config.limits.startupTimeoutMs} ms`,
    });
  }

  // ---- server -> proxy -----------------------------------------------------------------------

  private onServerData(chunk: Buffer): void {
    this.server.bytesFromServers += chunk.length;
    this.serverFramer!.push(chunk);
    this.cs?.capturing?.capture.settle();
    if (this.holding) this.setUpstreamPaused(true);
    else if (!this.toClient.empty && !this.toClient.flush(this.socket)) this.setUpstreamPaused(true);
    if (this.shutdownRequested && this.isIdle && !this.holding) this.closeForShutdown();
  }

  /** The invalidations of a commit reached the other instances: let its ReadyForQuery go. */
  private releaseHold(): void {
    if (!this.holding) return;
    this.holding = false;
    if (this.state === S.Closing) return;
    if (!this.toClient.empty && !this.toClient.flush(this.socket)) return; // 'drain' resumes the upstream
    this.setUpstreamPaused(false);
    if (this.shutdownRequested && this.isIdle) this.closeForShutdown();
  }

  private onServerMessage(type: number, buf: Buffer, start: number, end: number): void {
    if (this.state === S.Closing) return;
    let lead: Lead | null = null;
    const cs = this.cs;
    if (cs !== null) {
      // Completions of messages the proxy injected (statement ledger repair) are not the client's.
      if ((type === Backend.ParseComplete || type === Backend.CloseComplete) && !cs.completion(type)) return;
      if (cs.capturing !== null) cs.capturing.capture.add(buf, start, end);
    }
    if (this.tracker !== null) this.tracker.server(type, buf, start, end);
    switch (type) {
      case Backend.ReadyForQuery: {
        if (end - start < 6) {
          this.upstreamProtocolViolation('ReadyForQuery without a transaction status');
          return;
        }
        const prev = this.txStatus;
        this.txStatus = buf[start + 5] as TxStatus;
        if (this.pendingSyncs > 0) this.pendingSyncs--;
        if (this.txStatus === TxStatus.Idle) this.portals.clear();
        if (cs !== null) {
          lead = cs.readyForQuery(prev, this.txStatus);
          if (cs.sharing > 0) this.holding = true;
        }
        if (this.state === S.Authenticating || this.pendingSyncs === 0) this.transition(S.Idle);
        else this.transition(S.Response);
        break;
      }
      case Backend.Authentication:
        if (this.upstreamEncrypted && !this.encrypted && this.state === S.Authenticating) {
          // PostgreSQL offers SCRAM-SHA-256-PLUS because pgscribe's connection to it is TLS; libpq
          // on a plaintext connection gives up when it sees that offer (it takes it for stripped
          // TLS). Channel binding cannot span two TLS sessions anyway: offer the client what it
          // can use, plain SCRAM-SHA-256, which the server accepts from a client without TLS.
          let mechanisms: string[] | null;
          try {
            mechanisms = decodeSaslMechanisms(buf, start, end);
          } catch (err) {
            if (!(err instanceof ProtocolError)) throw err;
            this.upstreamProtocolViolation(err.message);
            return;
          }
          if (mechanisms !== null && mechanisms.includes(SCRAM_PLUS)) {
            const offered = mechanisms.filter((m) => m !== SCRAM_PLUS);
            if (offered.length > 0) {
              const out = encodeAuthenticationSasl(offered);
              this.toClient.push(out, 0, out.length);
              return;
            }
          }
        }
        break;
      case Backend.ParameterStatus:
        if (cs !== null) {
          try {
            const p = decodeParameterStatus(buf, start, end);
            cs.parameterStatus(p.name, p.value);
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
          this.server.registerKey(this);
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
        if (isFatalError(buf, start, end)) this.upstreamSaidFatal = true;
        if (this.state === S.CopyIn || this.state === S.CopyOut || this.state === S.CopyBoth || this.state === S.Request) {
          this.transition(S.Response);
        }
        break;
      default:
        if (this.state === S.Request) this.transition(S.Response);
    }
    this.toClient.push(buf, start, end);
    if (lead !== null) this.finishLead(lead);
  }

  private onServerPassthrough(buf: Buffer, start: number, end: number): void {
    if (this.state === S.Closing) return;
    if (this.state === S.Request) this.transition(S.Response);
    this.cs?.capturing?.capture.add(buf, start, end);
    this.toClient.push(buf, start, end);
  }

  // ---- flow control --------------------------------------------------------------------------

  private setClientPaused(reason: number, on: boolean): void {
    const before = this.clientPaused;
    this.clientPaused = on ? before | reason : before & ~reason;
    if (before === 0 && this.clientPaused !== 0) this.socket.pause();
    else if (before !== 0 && this.clientPaused === 0 && this.state !== S.Closing) this.socket.resume();
  }

  private setUpstreamPaused(on: boolean): void {
    if (this.upstream === null || on === this.upstreamPaused) return;
    this.upstreamPaused = on;
    if (on) this.upstream.pause();
    else if (this.state !== S.Closing) this.upstream.resume();
  }

  // ---- errors and teardown -------------------------------------------------------------------

  private protocolViolation(reason: string): void {
    this.server.ops.warn('client protocol violation; closing it', { conn: this.id, client: this.address, reason });
    this.fail({ severity: 'FATAL', code: SqlState.ProtocolViolation, message: `pgscribe: protocol violation: ${reason}` });
  }

  private upstreamProtocolViolation(reason: string): void {
    this.server.ops.error('upstream sent an invalid message; closing the session', { conn: this.id, client: this.address, reason });
    this.server.upstreamErrors++;
    this.fail({ severity: 'FATAL', code: SqlState.ConnectionFailure, message: `pgscribe: upstream server sent an invalid message: ${reason}` });
  }

  private onSocketError(side: 'client' | 'upstream', err: NodeJS.ErrnoException): void {
    if (side === 'upstream' && this.state === S.Connecting) {
      const { host, port } = this.server.config.upstream;
      this.server.upstreamErrors++;
      this.server.ops.warn('cannot connect to upstream', { conn: this.id, client: this.address, upstream: `${host}:${port}`, error: err.code ?? err.message });
      this.fail({
        severity: 'FATAL',
        code: SqlState.SqlclientUnableToEstablishSqlconnection,
        message: `pgscribe: could not connect to upstream server ${host}:${port}: ${err.message}`,
        hint: 'Check that PostgreSQL is running and reachable at the --upstream address.',
      });
      return;
    }
    // Resets are how many clients say goodbye; 'close' follows and does the work.
    if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') {
      this.server.ops.warn(`${side} socket error`, { conn: this.id, client: this.address, error: err.code ?? err.message });
    }
  }

  private onClientClose(): void {
    this.clientFramer.stop();
    if (this.state === S.TlsHandshake) {
      this.server.ops.warn('TLS handshake with client failed; closing it', { conn: this.id, client: this.address, error: 'connection closed during the handshake' });
    }
    if (this.state !== S.Closing) this.transition(S.Closing);
    this.clearTimer();
    if (this.counted) {
      this.counted = false;
      this.server.releaseSession();
    }
    this.server.removeClient(this);
  }

  private onUpstreamClose(): void {
    if (this.state === S.Closing || this.state === S.Connecting) return;
    if (this.clientTerminated || this.upstreamSaidFatal) {
      // The server said why (FATAL) or the client asked for it (Terminate): nothing to add.
      this.transition(S.Closing);
      return;
    }
    this.server.upstreamErrors++;
    this.server.ops.warn('upstream closed the session unexpectedly', { conn: this.id, client: this.address, state: this.state });
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

  /** Server shutdown: close now if idle, else as soon as the session is idle again. */
  requestShutdown(): void {
    this.shutdownRequested = true;
    if (this.state === S.Startup || this.state === S.TlsHandshake || this.state === S.Connecting || this.isIdle) this.closeForShutdown();
  }

  closeForShutdown(): void {
    this.fail({ severity: 'FATAL', code: SqlState.AdminShutdown, message: 'pgscribe: terminating connection because the proxy is shutting down' });
  }

  /** Entered once, from transition(Closing): release both sockets. */
  private teardown(from: ClientState): void {
    this.clearTimer();
    this.clientFramer.stop();
    if (from === S.TlsHandshake) this.server.tls.client?.forget(this.handshakeKey, this);
    this.serverFramer?.stop();
    this.server.unregisterKey(this);
    if (this.cs !== null) this.leaveCache();
    this.tracker?.abort();
    const up = this.upstream;
    if (up !== null && this.upstreamNegotiating) {
      // Mid SSL negotiation there is nothing to say goodbye to.
      up.destroy();
    } else if (up !== null && !up.destroyed) {
      this.flushToUpstream();
      if (!this.clientFramer.midPassthrough && !this.clientTerminated && up.writable) up.end(TERMINATE);
      else up.end();
      up.resume();
      setTimeout(() => up.destroy(), CLOSE_LINGER_MS).unref();
    }
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

  /** Closing: hand back flights, invalidate writes that may have committed, log what never went anywhere. */
  private leaveCache(): void {
    const cs = this.cs!;
    const lead = cs.close();
    if (lead !== null) cs.ctx.layer.complete(lead.flightId, null, 0, 0);
    if (this.verdictPending && cs.ctx.layer.abandon(this)) this.verdictPending = false;
    if (this.flightId !== 0) {
      cs.ctx.layer.leave(this.flightId, this);
      this.flightId = 0;
    }
    // Every Q/P/B/E the client sent gets its line, answered or not (and its `done`: aborted).
    if (this.unit!.active) {
      this.logUnit({});
      if (this.unitQuery !== null) this.abandon(this.unitQuery, this.unitStart);
    }
    const backlog = this.backlog;
    this.backlog = [];
    if (this.recording) {
      for (const d of backlog) {
        if (!d.whole) continue;
        try {
          const r = this.logMessage(d.type, d.buf, 0, d.buf.length, null);
          if (r !== null) this.abandon(r, performance.now());
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
        }
      }
    }
    this.unitQuery = null;
    this.request = null;
    this.unit!.reset();
  }

  /** A Q or E that was logged but never went upstream: it ends as aborted with the connection. */
  private abandon(r: QueryRecord, start: number): void {
    if (this.tracker === null || (r.type !== 'Q' && r.type !== 'E')) return;
    this.onCompleted({ seq: r.seq!, of: r.type, sql: r.sql, ms: performance.now() - start, rows: 0, status: 'aborted', sqlstate: null, cache: r.cache, flight: r.flight });
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  /** Destroy both sockets now (process exit after the grace period). */
  destroy(): void {
    this.upstream?.destroy();
    this.socket.destroy();
    this.rawSocket.destroy();
  }
}

function formatAddress(addr: string | undefined, port: number | undefined): string {
  if (addr === undefined) return 'unknown';
  const a = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
  return a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`;
}
