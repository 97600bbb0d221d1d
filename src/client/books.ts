/**
 * The books a session keeps while its messages go upstream (the forward phase) and its answers
 * come back (the response phase): the session ledger, the cache's writes and flights, and the
 * completion tracker. Each is told about every message once, in the order PostgreSQL acts on
 * them, so none of them can drift from the others.
 */
import { Backend, Frontend, TxStatus } from '../protocol/codes';
import { decodeParameterStatus } from '../protocol/messages';
import type { ClientMessage } from '../protocol/client-messages';
import type { QueryRecord } from '../log/format';
import type { Lead } from '../cache/lead';
import type { CacheDriver } from './cache-driver';
import { StatementDef, type SessionLedger } from './ledger';
import type { Recorder } from './recorder';

export class Books {
  readonly ledger: SessionLedger;
  private readonly recorder: Recorder;
  /** The session's cache driver, once it started (null without --cache and --singleflight). */
  cache: CacheDriver | null = null;

  constructor(ledger: SessionLedger, recorder: Recorder) {
    this.ledger = ledger;
    this.recorder = recorder;
  }

  /**
   * One client message goes upstream (msg: its decoded form, when the session decodes; record:
   * its query record, for a logged Q or E; queryStart: when its answer began to be owed, -1 for
   * now). Returns what must reach the server before it (the ledger's repair of the unnamed
   * statement), or null.
   */
  sent(type: number, msg: ClientMessage | null, record: QueryRecord | null, queryStart: number): Buffer | null {
    if (record !== null) this.recorder.sent(record, queryStart);
    const cs = this.cache === null ? null : this.cache.cs;
    const ledger = this.ledger;
    // The server failed the group being built and discards everything up to the Sync, Queries
    // and FunctionCalls included (PostgreSQL's ignore_till_sync): those messages change no
    // statement, portal or group and owe no answer, so the ledger skips them. The cache still
    // hears of the writes they name: an invalidation of a write that never ran is only more care.
    const discarding = ledger.discarding;
    switch (type) {
      case Frontend.Query:
        if (cs !== null && msg !== null && msg.type === Frontend.Query) cs.query(msg.sqlBytes);
        if (discarding) return null;
        this.sealing();
        ledger.query();
        return null;
      case Frontend.Parse:
        if (msg !== null && msg.type === Frontend.Parse && !discarding) {
          const def = cs !== null ? cs.statementFor(msg, this.recorder.recording) : new StatementDef(msg.sql, '', msg.sqlLength);
          ledger.parse(msg.statement, def);
        }
        return null;
      case Frontend.Bind: {
        if (msg === null || msg.type !== Frontend.Bind || discarding) return null;
        const repair = msg.statementEnd === msg.portalEnd + 1 ? ledger.repairUnnamed() : null;
        ledger.bind(msg.portal, msg.statement);
        return repair;
      }
      case Frontend.Describe: {
        if (msg === null || msg.type !== Frontend.Describe || discarding) return null;
        const repair = msg.kind === 'S' && msg.nameEnd === 6 ? ledger.repairUnnamed() : null;
        // Only the cache's sessions read a Describe's answer (received()). Without them, an entry
        // awaiting it would stand in the way of the Parse and Close completions after it
        // (test/regress/describe-between-parses).
        if (cs !== null) ledger.describe(msg.kind, msg.name);
        return repair;
      }
      case Frontend.Execute:
        if (cs !== null && msg !== null && msg.type === Frontend.Execute) {
          const p = ledger.portal(msg.portal);
          cs.execute(p === undefined ? null : p.def);
        }
        return null;
      case Frontend.Close:
        if (msg !== null && msg.type === Frontend.Close && !discarding) ledger.close(msg.kind, msg.name);
        return null;
      case Frontend.Sync:
        this.sealing();
        ledger.seal();
        return null;
      case Frontend.FunctionCall:
        if (cs !== null) cs.functionCall();
        if (discarding) return null;
        this.sealing();
        ledger.seal();
        return null;
      default:
        return null;
    }
  }

  /**
   * What must reach the server right after a client message (its bytes are queued already): with
   * the cache, a Describe of a named statement just parsed (ledger.describeParsed), or null.
   */
  after(type: number, msg: ClientMessage | null): Buffer | null {
    if (this.cache === null || type !== Frontend.Parse || msg === null || msg.type !== Frontend.Parse || msg.nameEnd === 5 || this.ledger.discarding) return null;
    return this.ledger.describeParsed(msg.statement);
  }

  /** The ledger's open group is about to be sealed: the cache attaches the flight it leads. */
  private sealing(): void {
    if (this.cache !== null) this.cache.cs.sealing(this.ledger.openGroup());
  }

  /**
   * A whole server message arrived: the completion tracker, the cache's capture and session
   * parameters see it. False when the client must not see it (the completion of the ledger's
   * repair). Throws ProtocolError on a malformed ParameterStatus.
   */
  received(type: number, buf: Buffer, start: number, end: number): boolean {
    // Completions of messages the proxy injected (the ledger's repair) are not the client's.
    if ((type === Backend.ParseComplete || type === Backend.CloseComplete) && !this.ledger.completion(type)) return false;
    if (type === Backend.ErrorResponse) this.ledger.serverError();
    const cs = this.cache === null ? null : this.cache.cs;
    if (cs !== null) {
      if ((type === Backend.RowDescription || type === Backend.NoData || type === Backend.ParameterDescription) && !this.ledger.described(type, buf, start, end)) return false;
      if (cs.capturing !== null) cs.capturing.capture.add(buf, start, end);
      if (type === Backend.ParameterStatus) {
        const p = decodeParameterStatus(buf, start, end);
        cs.parameterStatus(p.name, p.value);
      }
    }
    const tracker = this.recorder.tracker;
    if (tracker !== null) tracker.server(type, buf, start, end);
    return true;
  }

  /**
   * A server message (or a piece of one) while pgscribe's own request (the cache's probe) is
   * answered: it is captured, not relayed, unless it is not part of the answer (a notification or
   * a parameter change, which the client must see). At its ReadyForQuery the request is done.
   * True when it was taken.
   */
  side(type: number, buf: Buffer, start: number, end: number): boolean {
    if (type === Backend.NotificationResponse || type === Backend.ParameterStatus) return false;
    const side = this.ledger.side!;
    side.capture.add(buf, start, end);
    if (type !== Backend.ReadyForQuery) return true;
    this.ledger.readyForQuery(end - start >= 6 ? (buf[start + 5] as TxStatus) : TxStatus.Idle);
    side.done(side.capture.overflow ? null : side.capture.finish());
    return true;
  }

  /**
   * ReadyForQuery (prev: the transaction status before it) ended the oldest group: queries still
   * open in it end, its writes commit or roll back. Returns the cache flight whose answer is now
   * complete, if the session led one.
   */
  readyForQuery(prev: TxStatus, status: TxStatus): Lead | null {
    const g = this.ledger.readyForQuery(status);
    const tracker = this.recorder.tracker;
    if (tracker !== null) tracker.ended(g);
    return this.cache === null ? null : this.cache.readyForQuery(g, prev, status);
  }

  /** The session is over: the groups never answered end (aborted queries, writes that may have committed). */
  close(): void {
    const unanswered = this.ledger.drain();
    for (const g of unanswered) g.side?.done(null);
    if (this.cache !== null) this.cache.close(unanswered);
    this.recorder.tracker?.abort(unanswered);
  }
}
