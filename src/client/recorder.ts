/**
 * The log phase of a session: one query record per Q/P/B/E message (with log-replay also per
 * D/C/S/H, and the session's start and end lines), handed to the ClientLogger, the completion
 * records that follow the answers (`done` lines and query digests), and the log's backpressure
 * (a writer that falls behind stops the client being read; a line is never dropped).
 *
 * Records read the statement and portal names they show from the session ledger; nothing here
 * keeps its own copy of them.
 */
import { Frontend } from '../protocol/codes';
import type { ClientMessage, CloseMessage, DescribeMessage } from '../protocol/client-messages';
import type { ClientLogger } from '../log/client-logger';
import type { OpsLog } from '../log/ops';
import type { CacheOutcome, EndReason, FlightRole, LogRecord, QueryRecord, SessionInfo, SessionStart, WireRecord } from '../log/format';
import type { CompletionSample } from '../insight/types';
import { CompletionTracker, type Completed } from './completions';
import type { SessionLedger } from './ledger';
import { RowsDigest } from './rows-digest';
import { reached, sessionStart, type SystemIdSource } from './session-start';

/** How the log lines of a request unit describe the cache's part in it. */
export interface Annotation {
  cache?: CacheOutcome | undefined;
  flight?: FlightRole | undefined;
  /** pgscribe refused the query itself (a rate limit's 53400): it never goes upstream. */
  refused?: 'rate-limit' | undefined;
}

/** Where completed queries go besides the log: the query digests (--admin). */
export interface CompletionSink {
  record(s: CompletionSample): void;
}

/** What the recorder needs of the proxy (the session's host, host.ts). */
export interface RecorderHost {
  readonly logger: ClientLogger;
  readonly digests: CompletionSink | null;
  readonly settings: {
    /** A `done` line follows each answered Q/E (--log-completions). */
    readonly logCompletions: boolean;
    /** The log is replayable (--log-replay, docs/replay.md). */
    readonly logReplay: boolean;
  };
  /** Sessions track how each Q/E ends (--log-completions, or digests). */
  readonly tracksCompletions: boolean;
  /** The nodes' system identifiers, for the start lines (null without catalog-user). */
  readonly systemIds: SystemIdSource | null;
}

/** Records held before the session is accepted, at most; then the client is not read until it is. */
const UNACCEPTED_MAX = 256;

export class Recorder {
  /** Q/P/B/E messages are decoded into records: for the log, or for the completion tracker. */
  readonly recording: boolean;
  /** Completion tracking (null unless --log-completions or the digests need it). */
  readonly tracker: CompletionTracker | null;
  /** log-replay: D/C/S/H records, the wire details of P/B/E, the start and end lines. */
  readonly replay: boolean;
  /** Who sends the queries; set once the startup packet is accepted. */
  session: SessionInfo | null = null;
  private readonly host: RecorderHost;
  private readonly ledger: SessionLedger;
  private readonly pauseForLog: (paused: boolean) => void;
  private readonly logCompletions: boolean;
  /** log-replay: the start line, until it is written. */
  private start: SessionStart | null = null;
  /** seq of the last Q/P/B/E record. */
  private seq = 0;
  /**
   * Records of a session PostgreSQL has not accepted yet (before its first ReadyForQuery): held,
   * not logged, because until then the startup packet's user is only a claim, and a client
   * without the password could have lines logged under any user. null once accepted.
   */
  private unaccepted: LogRecord[] | null = [];
  /** The client is not read because UNACCEPTED_MAX records are held. */
  private pausedUnaccepted = false;
  private awaitingDrain = false;
  private readonly resume = (): void => {
    this.awaitingDrain = false;
    this.pauseForLog(false);
  };

  /** pauseForLog: the log writer is behind (true) or caught up (false): stop or resume reading the client. */
  constructor(host: RecorderHost, ledger: SessionLedger, pauseForLog: (paused: boolean) => void) {
    this.host = host;
    this.ledger = ledger;
    this.pauseForLog = pauseForLog;
    this.logCompletions = host.settings.logCompletions;
    this.replay = host.settings.logReplay && host.logger.enabled;
    this.tracker = host.tracksCompletions ? new CompletionTracker(ledger, (c) => this.completed(c), this.replay ? new RowsDigest() : null) : null;
    this.recording = host.logger.enabled || this.tracker !== null;
  }

  /** The startup packet was taken: who the session is (its lines' head) and, with log-replay, what it asked for. */
  begin(session: SessionInfo, packet: Buffer): void {
    this.session = session;
    if (this.replay) this.start = sessionStart(packet);
  }

  /**
   * The log phase of one client message: its line, when it is a Q/P/B/E (with log-replay also
   * D/C/S/H; msg null: not decoded) and something records. Its record, else null.
   */
  log(type: number, msg: ClientMessage | null, ann: Annotation | null): QueryRecord | null {
    if (msg !== null) return this.recording ? this.record(msg, ann) : null;
    return this.replay ? this.bare(type) : null;
  }

  /**
   * One record per Q/P/B/E, written when the log is on; null for other messages. ann: how the
   * cache took part (null: a line outside any cacheable unit). boundSql: for a Bind, the SQL of
   * its statement when the ledger does not know it yet (the Parse of the same unit).
   */
  record(msg: ClientMessage, ann: Annotation | null, boundSql?: string | null): QueryRecord | null {
    // Every record has the same fields in the same order (one hidden class for the formatter).
    const cache = ann === null ? undefined : ann.cache;
    const flight = ann === null ? undefined : ann.flight;
    const refused = ann === null ? undefined : ann.refused;
    let r: QueryRecord;
    switch (msg.type) {
      case Frontend.Query:
        r = { type: 'Q', statement: null, portal: null, sql: msg.sql, params: null, cache, flight, refused, seq: ++this.seq, wire: undefined };
        break;
      case Frontend.Parse: {
        const wire = this.replay ? { paramTypes: msg.paramTypes() } : undefined;
        r = { type: 'P', statement: msg.statement, portal: null, sql: msg.sql, params: null, cache, flight, refused, seq: ++this.seq, wire };
        break;
      }
      case Frontend.Bind: {
        let sql = boundSql;
        if (sql === undefined) {
          const def = this.ledger.statement(msg.statement);
          sql = def === null || def === undefined ? null : def.sql;
        }
        const wire = this.replay ? { resultFormats: msg.resultFormats } : undefined;
        // The message is the record's BindParams: its views are made only if a formatter reads values.
        r = { type: 'B', statement: msg.statement, portal: msg.portal, sql, params: msg, cache, flight, refused, seq: ++this.seq, wire };
        break;
      }
      case Frontend.Execute: {
        const p = this.ledger.portal(msg.portal);
        const wire = this.replay ? { maxRows: msg.maxRows } : undefined;
        r = { type: 'E', statement: p ? p.statement : null, portal: msg.portal, sql: p && p.def !== null ? p.def.sql : null, params: null, cache, flight, refused, seq: ++this.seq, wire };
        break;
      }
      default:
        if (this.replay) this.target(msg);
        return null;
    }
    this.write(r);
    return r;
  }

  /** log-replay: a Describe's or Close's record (a line of its own, with its target). */
  private target(msg: DescribeMessage | CloseMessage): void {
    const type = msg.type === Frontend.Describe ? 'D' : 'C';
    this.writeWire({ type, statement: msg.name, portal: null, sql: null, params: null, cache: undefined, flight: undefined, refused: undefined, seq: ++this.seq, wire: { kind: msg.kind } });
  }

  /**
   * log-replay: the record of a message that is not decoded (Sync, Flush); nothing for the
   * others, nor without log-replay. Returns null: no query record, for the callers' books.
   */
  bare(type: number): null {
    if (!this.replay || (type !== Frontend.Sync && type !== Frontend.Flush)) return null;
    const wire = type === Frontend.Sync ? 'S' : 'H';
    this.writeWire({ type: wire, statement: null, portal: null, sql: null, params: null, cache: undefined, flight: undefined, refused: undefined, seq: ++this.seq, wire: undefined });
    return null;
  }

  /**
   * The records of messages that have not gone upstream yet, in order: a cacheable unit ([P] B
   * [D] E S, or Q) when the cache decides on it, or what a closing session still held. The
   * ledger does not know their statements yet, so a Bind takes its SQL from the Parse before it
   * in the batch, and an Execute from the Bind before it. Returns the last Q or E record;
   * eachQuery sees every one.
   */
  recordBatch(msgs: readonly { type: number; msg: ClientMessage | null }[], ann: Annotation | null, eachQuery?: (r: QueryRecord) => void): QueryRecord | null {
    let query: QueryRecord | null = null;
    let parsedName: string | null = null;
    let parsedSql: string | null = null;
    let bound: QueryRecord | null = null;
    for (const { type, msg: m } of msgs) {
      if (m === null) {
        if (this.replay) this.bare(type);
        continue;
      }
      switch (m.type) {
        case Frontend.Parse:
          parsedSql = this.record(m, ann)!.sql;
          parsedName = m.statement;
          break;
        case Frontend.Bind:
          bound = this.record(m, ann, parsedName === m.statement ? parsedSql : undefined);
          break;
        case Frontend.Execute:
          if (bound === null || bound.portal !== m.portal) query = this.record(m, ann);
          else {
            const wire = this.replay ? { maxRows: m.maxRows } : undefined;
            query = { type: 'E', statement: bound.statement, portal: m.portal, sql: bound.sql, params: null, cache: bound.cache, flight: bound.flight, refused: undefined, seq: ++this.seq, wire };
            this.write(query);
          }
          if (eachQuery !== undefined && query !== null) eachQuery(query);
          break;
        case Frontend.Query:
          query = this.record(m, ann);
          if (eachQuery !== undefined && query !== null) eachQuery(query);
          break;
        default:
          // Describe and Close: lines of their own only with log-replay.
          if (this.replay) this.target(m);
      }
    }
    return query;
  }

  private write(r: QueryRecord): void {
    if (!this.host.logger.enabled) return;
    if (this.unaccepted !== null) {
      this.hold(r);
      return;
    }
    this.written(this.host.logger.log(this.session!, r));
  }

  /** log-replay's D/C/S/H records (replay implies a logger that is enabled). */
  private writeWire(r: WireRecord): void {
    if (this.unaccepted !== null) {
      this.hold(r);
      return;
    }
    const logger = this.host.logger;
    if (logger.logWire !== undefined) this.written(logger.logWire(this.session!, r));
  }

  private hold(r: LogRecord): void {
    const held = this.unaccepted!;
    held.push(r);
    if (held.length >= UNACCEPTED_MAX && !this.pausedUnaccepted) {
      // A client pipelining this much before its session exists is read again once it does.
      this.pausedUnaccepted = true;
      this.pauseForLog(true);
    }
  }

  /**
   * PostgreSQL accepted the session (its first ReadyForQuery): with log-replay its start line
   * (upstream.address: HOST:PORT of the node it reached, read only then), then what was held, in order.
   */
  accepted(upstream: { readonly address: string }): void {
    const held = this.unaccepted;
    if (held === null) return;
    this.unaccepted = null;
    const logger = this.host.logger;
    if (this.start !== null && logger.logSession !== undefined) {
      const start = reached(this.start, upstream.address, this.host.systemIds);
      this.start = null;
      this.written(logger.logSession(this.session!, { type: 'start', start }));
    }
    for (const r of held) {
      if (isWire(r)) this.writeWire(r);
      else this.write(r);
    }
    if (this.pausedUnaccepted) {
      this.pausedUnaccepted = false;
      if (!this.awaitingDrain) this.pauseForLog(false);
    }
  }

  /**
   * The session ends (after its unanswered queries ended): with log-replay, an accepted session's
   * end line; records never logged because PostgreSQL never accepted it are dropped, and said.
   */
  close(reason: EndReason, ops: OpsLog, conn: number, client: string): void {
    const logger = this.host.logger;
    if (this.replay && this.unaccepted === null && this.session !== null && logger.logSession !== undefined) logger.logSession(this.session, { type: 'end', reason });
    this.discardUnaccepted(ops, conn, client);
  }

  /** Records never logged because PostgreSQL never accepted the session are dropped, and said (never silently). */
  private discardUnaccepted(ops: OpsLog, conn: number, client: string): void {
    const n = this.unaccepted === null ? 0 : this.unaccepted.length;
    this.unaccepted = null;
    if (n === 0) return;
    ops.warn('session ended before PostgreSQL accepted it; its queries were not logged, since its user was never confirmed', {
      conn,
      client,
      claimed_user: this.session?.user,
      messages: n,
    });
  }

  /**
   * A Q or E went upstream (r: its record; start: when its answer began to be owed, -1: now). The
   * completion tracker follows it in the ledger's group being built.
   */
  sent(r: QueryRecord, start: number): void {
    // -1 is "now" (Client.forward): a relayed query's time runs from here, not from the clock's zero.
    if (this.tracker !== null && (r.type === 'Q' || r.type === 'E')) this.tracker.sent(r.type, r.seq!, r.sql, start < 0 ? performance.now() : start, r.cache, r.flight);
  }

  /** The unit's query was answered by the proxy itself (cache hit, flight answer, cancel). */
  answeredLocally(r: QueryRecord | null, start: number, answer: Buffer): void {
    if (this.tracker === null || r === null) return;
    this.tracker.local(r.type === 'Q' ? 'Q' : 'E', r.seq!, r.sql, start, answer, r.cache, r.flight);
  }

  /** A Q or E that was logged but never went upstream: it ends as aborted with the connection. */
  abandoned(r: QueryRecord, start: number): void {
    if (this.tracker === null || (r.type !== 'Q' && r.type !== 'E')) return;
    this.completed({ seq: r.seq!, of: r.type, sql: r.sql, ms: performance.now() - start, rows: 0, status: 'aborted', sqlstate: null, cache: r.cache, flight: r.flight, rowsDigest: undefined });
  }

  /** A query ended (completions.ts): its `done` line and its digest. */
  private completed(c: Completed): void {
    // Nothing of a session PostgreSQL never accepted is recorded (see unaccepted).
    if (this.unaccepted !== null) return;
    const digests = this.host.digests;
    if (digests !== null && c.sql !== null) {
      digests.record({ sql: c.sql, ms: c.ms, rows: c.rows, error: c.status === 'error', cache: c.cache, flight: c.flight, now: Date.now(), node: this.session?.node });
    }
    const logger = this.host.logger;
    if (this.logCompletions && logger.enabled && this.session !== null) this.written(logger.logCompletion(this.session, c));
  }

  /** After a line went to the logger: false means the writer is behind. */
  private written(accepted: boolean): void {
    if (accepted || this.awaitingDrain) return;
    // The log writer is behind: stop reading from this client until it catches up.
    this.awaitingDrain = true;
    this.pauseForLog(true);
    this.host.logger.onDrain(this.resume);
  }
}

function isWire(r: LogRecord): r is WireRecord {
  return r.type === 'D' || r.type === 'C' || r.type === 'S' || r.type === 'H';
}
