/**
 * A session's side of the cache and singleflight layer (only with --cache or --singleflight):
 * it assembles request units from an idle session (cache/unit.ts), asks the layer about each,
 * holds the session in Waiting while a worker thread or another client's flight decides, answers
 * from the cache or the flight in the client's own protocol shape, or releases the unit upstream
 * as if the cache were not there. Messages that arrive while it waits are kept in order and taken
 * when it is over. It also holds a commit's ReadyForQuery while its invalidation is being shared
 * with other pgscribe instances (the commit hold, --redis).
 */
import { Frontend, SqlState, TxStatus } from '../protocol/codes';
import type { ClientMessage } from '../protocol/client-messages';
import { READY_IDLE, encodeErrorResponse } from '../protocol/messages';
import type { Outbox } from '../outbox';
import type { QueryRecord } from '../log/format';
import type { FlightClient, SharedAnswer, Verdict } from '../cache/layer';
import type { Lead, Request } from '../cache/lead';
import { ResponseCapture, describedIn, judgeResponse, replayAnswer } from '../cache/response';
import { CacheSession, type CacheContext } from '../cache/session';
import { Backlog } from './backlog';
import { MORE, REJECT, Unit } from '../cache/unit';
import { parseProbeAnswer } from '../cache/probe';
import { recheckBatch, recheckRefusal } from '../cache/recheck';
import type { PendingGroup, SessionLedger, SideRequest, StatementDef } from './ledger';
import type { Annotation, Recorder } from './recorder';
import { ClientState } from './states';

/** The answers to pgscribe's own requests (the probe, the recheck) are short; anything larger is not theirs. */
const SIDE_MAX_BYTES = 64 * 1024;

/** A request of pgscribe's own in the session, its whole answer to done (null: the session closed). */
function side(done: (answer: Buffer | null) => void): SideRequest {
  return { capture: new ResponseCapture(SIDE_MAX_BYTES), done };
}

const HIT: Annotation = { cache: 'hit' };
const L2_HIT: Annotation = { cache: 'l2' };
const L2_REMOTE: Annotation = { cache: 'l2', flight: 'remote' };

/** What the driver needs of its session. */
export interface CacheDriverSession {
  readonly id: number;
  readonly state: ClientState;
  readonly txStatus: TxStatus;
  /** What the proxy writes to the client itself (answers from the cache). */
  readonly toClient: Outbox;
  transition(next: ClientState): void;
  /** Send pgscribe's own request in the session (the probe), its answer to side.done. */
  sendSide(batch: Buffer, side: SideRequest): void;
  /** Decode a whole client message; undefined when it was malformed (the session is failing). */
  decode(type: number, buf: Buffer, start: number, end: number): ClientMessage | null | undefined;
  /** log, then forward, one message outside any unit. */
  logAndForward(type: number, buf: Buffer, start: number, end: number, msg: ClientMessage | null, ann: Annotation | null): void;
  /** forward a message whose line was written (record: its record if it is the unit's Q or E). */
  forward(type: number, buf: Buffer, start: number, end: number, msg: ClientMessage | null, record: QueryRecord | null, queryStart: number): void;
  /** A streamed piece of a message, relayed as it arrives. */
  relayPiece(type: number, buf: Buffer, start: number, end: number): void;
  flushToUpstream(): void;
  flushToClient(): void;
  /** Stop (true) or resume (false) reading the client while the cache decides. */
  pauseForCache(paused: boolean): void;
  /** The commit hold is over: relay what waited, read the upstream again. */
  holdReleased(): void;
  /** After a wait: close now if a shutdown is pending and the session is idle. */
  shutdownIfIdle(): void;
}

export class CacheDriver implements FlightClient {
  readonly id: number;
  readonly cs: CacheSession;
  private readonly ctx: CacheContext;
  private readonly session: CacheDriverSession;
  private readonly ledger: SessionLedger;
  private readonly recorder: Recorder;
  private readonly unit = new Unit();
  /** The complete unit handed to the cache layer, until it is answered or sent upstream. */
  private request: Request | null = null;
  /** The statement the unit's Parse defines. */
  private parseDef: StatementDef | null = null;
  /**
   * What the unit waits for: nothing, the session's answer to pgscribe's probe of its settings,
   * the layer's verdict (worker threads answer later), or another client's flight.
   */
  private waitingFor: 'nothing' | 'catalog' | 'probe' | 'check' | 'verdict' | 'flight' = 'nothing';
  /** The flight this client waits for (waitingFor 'flight'). */
  private flightId = 0;
  /** The unit's log lines are written (once, when the cache first decided). */
  private logged = false;
  /** The unit's Q or E record, once its lines are written. */
  private query: QueryRecord | null = null;
  /** performance.now() when the unit was complete: its query's start. */
  private start = 0;
  /** Client messages received while Waiting, in order. */
  private readonly backlog = new Backlog();
  /**
   * What goes to the client waits: a commit's invalidation is being shared with other pgscribe
   * instances (--redis), and its ReadyForQuery must not reach the client before they can no
   * longer serve what it changed.
   */
  holding = false;

  /** relayReads: a read-only listener's session (CacheSession.relayReads). */
  constructor(session: CacheDriverSession, ctx: CacheContext, ledger: SessionLedger, recorder: Recorder, startup: ReadonlyMap<string, string>, user: string, db: string, relayReads = false) {
    this.id = session.id;
    this.session = session;
    this.ctx = ctx;
    this.ledger = ledger;
    this.recorder = recorder;
    this.cs = new CacheSession(ctx, ledger, startup, user, db);
    this.cs.relayReads = relayReads;
    this.cs.onShared = () => {
      if (!this.holding) return;
      this.holding = false;
      this.session.holdReleased();
    };
  }

  // ---- client -> proxy -------------------------------------------------------------------------

  /** Client messages are held here (a unit being gathered, or kept while the session waits): nothing may overtake them. */
  get holdsClient(): boolean {
    return this.unit.active || this.deferring;
  }

  /** The session waits, or messages that arrived while it waited are still to be taken. */
  private get deferring(): boolean {
    return this.backlog.holds(this.session.state === ClientState.Waiting);
  }

  /** client-request, with the cache on: a whole message. */
  onMessage(type: number, buf: Buffer, start: number, end: number): void {
    if (this.deferring) {
      this.backlog.keep(type, buf, start, end, true);
      return;
    }
    const msg = this.session.decode(type, buf, start, end);
    if (msg !== undefined) this.intake(type, buf, start, end, msg);
  }

  /** A streamed piece of a message: false when the session relays it as usual. */
  onPiece(type: number, buf: Buffer, start: number, end: number): boolean {
    if (this.deferring) {
      this.backlog.keep(type, buf, start, end, false);
      return true;
    }
    // A streamed message is never part of a cacheable unit.
    if (this.unit.active) this.releaseUnit(null);
    return false;
  }

  /** The read is over: what the unit holds must outlive its socket chunk. */
  afterRead(): void {
    if (this.unit.active) this.unit.keep();
  }

  /** After a read of the server: what the captures of answers in progress took is settled. */
  afterServerRead(): void {
    this.cs.capturing?.capture.settle();
    this.ledger.side?.capture.settle();
  }

  private intake(type: number, buf: Buffer, start: number, end: number, msg: ClientMessage | null): void {
    const s = this.session;
    const u = this.unit;
    // While a commit's ReadyForQuery is held (its invalidation shared through Redis, or awaited
    // from the change stream), a read pipelined behind it must not be answered from the cache:
    // what the commit changed may not be invalidated yet. It is relayed (issue 16, review finding 2).
    if (!u.active && !(s.state === ClientState.Idle && this.ledger.pendingGroups === 0 && s.txStatus === TxStatus.Idle && this.cs.usable && this.cs.sharing === 0)) {
      s.logAndForward(type, buf, start, end, msg, null);
      return;
    }
    const v = u.add(type, buf, start, end, msg);
    if (v === MORE) return;
    if (v === REJECT) {
      this.releaseUnit(null);
      return;
    }
    this.start = performance.now();
    this.prepare();
  }

  /**
   * Before the first cacheable read of a session: the catalog of its database read (the first
   * session of a database waits for that rather than being relayed) and the session's identity
   * asked (the probe, probe.ts: what it says goes into every key). Then decide.
   */
  private prepare(): void {
    const loading = this.cs.catalogLoading();
    if (loading !== null) {
      this.waitFor('catalog', (resume) => void loading.then(() => resume(() => this.prepare())));
      return;
    }
    if (this.cs.identified) {
      this.decide();
      return;
    }
    // An answer that is not the probe's (it failed, or the session is not what it asks about):
    // the session's settings cannot be known, so it is never served from the cache.
    const done = (answer: Buffer | null) => {
      this.cs.identify(answer === null ? null : parseProbeAnswer(answer));
      this.decide();
    };
    this.waitFor('probe', (resume) => this.session.sendSide(this.cs.probeRequest(), side((a) => resume(() => done(a)))));
  }

  /** The unit is complete and the session's identity known: a cacheable read goes to the layer. */
  private decide(): void {
    const u = this.unit;
    const believed = !u.hasParse && u.bindStatement === '' ? this.ledger.unnamedToCheck() : null;
    if (believed !== null) {
      // The unit runs the unnamed statement the client believes in, which an answer from the
      // cache kept from the server: parse it there again and compare descriptions (recheck.ts).
      this.waitFor('check', (resume) => this.session.sendSide(recheckBatch(believed), side((a) => resume(() => this.checked(believed, a)))));
      return;
    }
    this.parseDef = u.parse === null ? null : this.cs.statementFor(u.parse, this.recorder.recording);
    const req = this.cs.usable ? this.cs.request(u, this.parseDef) : null;
    if (req === null) {
      this.releaseUnit(null);
      return;
    }
    this.request = req;
    this.lookup();
  }

  /**
   * The unit is held (the session Waiting) until step `kind`, started by `begin`, calls resume;
   * then `go` runs, unless the session closed or stopped waiting for it meanwhile.
   */
  private waitFor(kind: 'catalog' | 'probe' | 'check', begin: (resume: (go: () => void) => void) => void): void {
    this.waitingFor = kind;
    this.startWaiting();
    begin((go) => {
      if (this.waitingFor !== kind) return;
      this.waitingFor = 'nothing';
      if (this.session.state === ClientState.Closing) return;
      go();
      this.session.flushToUpstream();
      this.session.flushToClient();
    });
  }

  /** The recheck's answer: the server has the client's statement now, or the unit gets PostgreSQL's refusal. */
  private checked(def: StatementDef, answer: Buffer | null): void {
    const refusal = recheckRefusal(answer ?? Buffer.alloc(0), def.description!);
    this.ledger.unnamedChecked(def, refusal === null);
    if (refusal === null) {
      this.decide();
      return;
    }
    // What PostgreSQL answers the unit: the error at its Bind, the rest skipped up to Sync.
    if (this.recorder.recording) this.query = this.recorder.recordBatch(this.unit.held, {});
    const out = this.session.toClient;
    out.push(refusal, 0, refusal.length);
    out.push(READY_IDLE, 0, READY_IDLE.length);
    this.recorder.answeredLocally(this.query, this.start, refusal);
    this.finishLocal();
  }

  // ---- the layer's answers ---------------------------------------------------------------------

  /** Ask the cache layer about the pending request; enter Waiting if it answers later. */
  private lookup(): void {
    this.waitingFor = 'verdict';
    this.ctx.layer.lookup(this.request!, this);
    if (this.waitingFor === 'verdict') this.startWaiting();
  }

  private startWaiting(): void {
    this.unit.keep();
    if (this.session.state !== ClientState.Waiting) {
      this.session.transition(ClientState.Waiting);
      this.session.pauseForCache(true);
    }
  }

  /** FlightClient: what the cache layer decided for the pending request. */
  onVerdict(v: Verdict, flightId: number): void {
    this.waitingFor = 'nothing';
    const layer = this.ctx.layer;
    if (this.session.state === ClientState.Closing || this.request === null) {
      // Gone while a worker thread was deciding: give back what it handed out.
      if (v.kind === 'lead') layer.complete(flightId, null, 0, 0);
      else if (v.kind === 'wait') layer.leave(v.flightId, this);
      return;
    }
    const miss = this.ctx.cache ? 'miss' : undefined;
    switch (v.kind) {
      case 'hit':
        if (!this.fits(v)) {
          this.releaseUnit({ cache: 'bypass' });
          break;
        }
        this.logUnit(v.l2 === undefined ? HIT : v.l2 === 'hit' ? L2_HIT : L2_REMOTE);
        this.answerLocally(v);
        break;
      case 'wait':
        this.waitingFor = 'flight';
        this.flightId = v.flightId;
        this.logUnit({ cache: miss, flight: 'waiter' });
        this.startWaiting();
        break;
      case 'lead':
        this.cs.lead(flightId, this.request);
        this.releaseUnit({ cache: miss, flight: this.ctx.singleflight ? 'leader' : undefined });
        break;
      case 'bypass':
        this.releaseUnit({ cache: 'bypass' });
        break;
    }
    this.session.flushToUpstream();
    this.session.flushToClient();
  }

  /** FlightClient: the flight this client waited for is over. */
  onFlightDone(answer: SharedAnswer | null): void {
    this.waitingFor = 'nothing';
    this.flightId = 0;
    if (this.session.state === ClientState.Closing || this.request === null) return;
    if (answer !== null) {
      if (this.fits(answer)) this.answerLocally(answer);
      else this.releaseUnit(null);
      this.session.flushToUpstream();
      this.session.flushToClient();
      return;
    }
    // The leader failed, went away or was cancelled: not this client's fate. Ask again (it may
    // lead now, or join a newer flight).
    this.lookup();
  }

  /** Write the lines of the pending unit, once. */
  private logUnit(ann: Annotation): void {
    if (this.logged) return;
    this.logged = true;
    if (this.recorder.recording) this.query = this.recorder.recordBatch(this.unit.held, ann);
  }

  /** Send the held unit upstream (ann for its log lines, unless they are written already). */
  private releaseUnit(ann: Annotation | null): void {
    const s = this.session;
    const held = this.unit.held;
    const logged = this.logged;
    const query = this.query;
    this.unit.reset();
    this.request = null;
    this.parseDef = null;
    this.logged = false;
    const wasWaiting = s.state === ClientState.Waiting;
    if (wasWaiting) s.transition(ClientState.Idle);
    for (const h of held) {
      if (s.state === ClientState.Closing) return;
      if (!logged) s.logAndForward(h.type, h.buf, h.start, h.end, h.msg, ann);
      else s.forward(h.type, h.buf, h.start, h.end, h.msg, h.type === Frontend.Query || h.type === Frontend.Execute ? query : null, this.start);
    }
    this.query = null;
    if (wasWaiting) this.resumeAfterWait();
  }

  /**
   * The answer may be served to this request: a statement parsed earlier is served only an answer
   * of the description PostgreSQL gave it (otherwise PostgreSQL itself must answer, with 0A000
   * "cached plan must not change result type" when its result type changed since).
   */
  private fits(a: SharedAnswer): boolean {
    const want = this.request!.description;
    return want === null || describedIn(a.bytes) === want;
  }

  /** The pending unit is answered by the proxy (cache hit, flight answer): reply in its own shape. */
  private answerLocally(a: SharedAnswer): void {
    const u = this.unit;
    replayAnswer(this.session.toClient, a, u.hasParse);
    // The server never saw it: what it did to the unnamed statement is only the client's belief.
    if (u.kind === 'Q') this.ledger.answeredLocally(null);
    else if (u.hasParse) {
      this.ledger.answeredLocally(this.parseDef);
      // What a later Bind of it without a Parse is keyed by (cache/session.ts).
      if (u.hasDescribe && this.parseDef !== null && this.parseDef.description === null) this.parseDef.description = describedIn(a.bytes);
    }
    this.recorder.answeredLocally(this.query, this.start, a.bytes);
    this.finishLocal();
  }

  private finishLocal(): void {
    this.unit.reset();
    this.request = null;
    this.parseDef = null;
    this.logged = false;
    this.query = null;
    if (this.session.state === ClientState.Waiting) {
      this.session.transition(ClientState.Idle);
      this.resumeAfterWait();
    }
  }

  /** Back from Waiting: take the messages that arrived meanwhile, then read the client again. */
  private resumeAfterWait(): void {
    const s = this.session;
    s.flushToClient();
    const going = () => s.state !== ClientState.Waiting && s.state !== ClientState.Closing;
    const taken = this.backlog.take(going, (d) => {
      if (!d.whole) {
        if (!this.onPiece(d.type, d.buf, 0, d.buf.length)) s.relayPiece(d.type, d.buf, 0, d.buf.length);
        return;
      }
      const msg = s.decode(d.type, d.buf, 0, d.buf.length);
      if (msg !== undefined) this.intake(d.type, d.buf, 0, d.buf.length, msg);
    });
    if (!taken || !going()) return;
    s.pauseForCache(false);
    s.flushToUpstream();
    s.flushToClient();
    s.shutdownIfIdle();
  }

  /**
   * A CancelRequest for this session: if it waits for another client's flight, answer what
   * PostgreSQL answers a cancelled statement and stop waiting. False when it does not wait (the
   * cancel goes to the server as usual).
   */
  cancelWait(): boolean {
    if (this.session.state !== ClientState.Waiting) return false;
    const layer = this.ctx.layer;
    if (this.waitingFor === 'flight') layer.leave(this.flightId, this);
    else if (this.waitingFor !== 'verdict' || !layer.abandon(this)) return false;
    // (Waiting on the shared cache or on another instance's flight: the layer forgot it.)
    this.waitingFor = 'nothing';
    this.flightId = 0;
    const err = encodeErrorResponse({
      severity: 'ERROR',
      code: SqlState.QueryCanceled,
      message: 'canceling statement due to user request',
      detail: 'pgscribe: the statement was waiting for the same query of another client (singleflight).',
    });
    const out = this.session.toClient;
    out.push(err, 0, err.length);
    out.push(READY_IDLE, 0, READY_IDLE.length);
    // As if PostgreSQL had been cancelled while parsing: a Query or an unnamed Parse leaves no unnamed statement.
    if (this.unit.kind === 'Q' || this.unit.hasParse) this.ledger.answeredLocally(null);
    this.recorder.answeredLocally(this.query, this.start, err);
    this.finishLocal();
    this.session.flushToClient();
    return true;
  }

  // ---- server -> client ------------------------------------------------------------------------

  /** The leader's answer is complete: share it with the waiters and offer it to the cache. */
  finishLead(lead: Lead): void {
    const layer = this.ctx.layer;
    if (lead.capture.overflow) {
      layer.complete(lead.flightId, null, 0, this.ctx.bypassMs);
      return;
    }
    const bytes = lead.capture.finish();
    const j = judgeResponse(bytes, lead.kind, lead.hasParse, lead.hasDescribe);
    layer.complete(lead.flightId, j.shareable ? { bytes, hasParse: lead.hasParse } : null, j.storable ? lead.ttlMs : 0, 0);
  }

  /**
   * ReadyForQuery ended group g: commit or drop its writes. Returns the lead whose answer is now
   * complete, if any; `holding` tells whether what follows must wait for other instances.
   */
  readyForQuery(g: PendingGroup | undefined, prev: TxStatus, status: TxStatus): Lead | null {
    const lead = this.cs.readyForQuery(g, prev, status);
    if (this.cs.sharing > 0) this.holding = true;
    return lead;
  }

  // ---- teardown --------------------------------------------------------------------------------

  /**
   * The session is closing; `unanswered` are the groups sent without their ReadyForQuery. Hand
   * back flights, invalidate writes that may have committed, and log what never went anywhere:
   * every Q/P/B/E the client sent gets its line, answered or not (and its `done`: aborted).
   */
  close(unanswered: readonly PendingGroup[]): void {
    const layer = this.ctx.layer;
    const lead = this.cs.close(unanswered);
    if (lead !== null) layer.complete(lead.flightId, null, 0, 0);
    if (this.waitingFor === 'verdict' && layer.abandon(this)) this.waitingFor = 'nothing';
    if (this.waitingFor === 'flight') layer.leave(this.flightId, this);
    this.waitingFor = 'nothing';
    this.flightId = 0;
    if (this.unit.active) {
      this.logUnit({});
      if (this.query !== null) this.recorder.abandoned(this.query, this.start);
    }
    const kept = this.backlog.abandon();
    if (this.recorder.recording) {
      const now = performance.now();
      this.recorder.recordBatch(kept, null, (r) => this.recorder.abandoned(r, now));
    }
    this.query = null;
    this.request = null;
    this.unit.reset();
  }
}
