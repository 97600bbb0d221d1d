/**
 * One logged session, replayed on its own connection: its lines in log order, each message sent
 * once (a) the session is connected, (b) every answer the original client had received before
 * sending it has arrived here (its `done` lines that precede it in the log: a pipelining client
 * is replayed pipelined, a waiting one waits) and (c) its time is due (--speed). The answers are
 * matched to what was sent, in order, as the server gives them, and each Q and E's outcome is
 * handed on with the original's for the comparison.
 *
 * Lines that cannot be sent as logged (redacted, parameters hidden or cut, SQL never seen) and,
 * with --read-only, writes are left out together with the messages that depend on them (a Bind of
 * a statement left out, an Execute of its portal); Sync and Flush always go.
 */
import { Backend } from '../protocol/codes';
import { decodeError, encodeCopyFail } from '../pg/messages';
import { errorCode, tagRows } from '../client/completions';
import { RowsDigest } from '../client/rows-digest';
import { encodeBind, encodeClose, encodeDescribe, encodeExecute, encodeParse, encodeQueryMessage, FLUSH, SYNC } from './frontend';
import { ReplayConnection, type ReplayConnectOptions } from './replay-connection';
import type { DoneLine, EndLine, LogLine, MessageLine, StartLine } from './log-lines';
import type { Outcome } from './report-types';

/** A statement's two outcomes, for the comparison (either side may be missing). */
export interface StatementResult {
  conn: number;
  seq: number;
  sql: string | null;
  original: (Outcome & { ms: number }) | null;
  replayed: (Outcome & { ms: number; message?: string | undefined }) | null;
}

export interface ParseFailure {
  conn: number;
  /** The P line's seq. */
  seq: number;
  sql: string;
  sqlstate: string | null;
  message: string | undefined;
}

export interface PlayerHost {
  readonly readOnly: boolean;
  /** Is this SQL a read (--read-only lets it through)? */
  isRead(sql: string): boolean;
  connectOptions(user: string, database: string, startup: Record<string, string>): ReplayConnectOptions;
  /** performance.now() at which a line logged at ts is due (-Infinity: at once). */
  dueAt(ts: number): number;
  /** A Q or E went to the target, late by lagMs behind its schedule. */
  sentStatement(lagMs: number): void;
  result(r: StatementResult): void;
  /** The target refused a Parse that succeeded at capture (one of its Executes ran ok there). */
  parseFailed(r: ParseFailure): void;
  notReplayable(reason: string): void;
  skippedWrite(): void;
  /** Lines were taken off this session's queue (the reader's memory bound). */
  consumed(n: number): void;
  /** The session is over: null when it ran to its end, else why it stopped (cut, failed). */
  finished(p: SessionPlayer, how: { failed: string | null; cut: string | null }): void;
}

/** What an answer is owed to, in send order. */
interface Expect {
  kind: MessageLine['kind'];
  /** For P: the statement's name. */
  name: string;
  /** For Q and E: the statement's seq, SQL and what its answer showed so far. */
  seq: number;
  sql: string | null;
  sentAt: number;
  rows: number;
  sqlstate: string | null;
  message: string | undefined;
  /** Q and E: their answer's DataRows, digested as capture digests them (rows-digest.ts). */
  rowsDigest: RowsDigest | null;
  /** Not compared (a COPY FROM STDIN, answered with CopyFail). */
  leftOut: boolean;
}

/** COPY ... FROM STDIN (leading comments and whitespace allowed). */
const COPY_FROM_STDIN = /^(?:\s|--[^\n]*\n|\/\*[\s\S]*?\*\/)*copy\b[\s\S]*\bfrom\s+stdin\b/i;
const COPY_REASON = 'COPY FROM STDIN (its data is not logged)';

export class SessionPlayer {
  private readonly queue: (MessageLine | DoneLine | EndLine)[] = [];
  private head = 0;
  private conn: ReplayConnection | null = null;
  private ready = false;
  private over = false;
  private logEnded = false;
  /** Q/E completions seen on the target (and those left out, which count as answered). */
  private answered = 0;
  /** done lines taken from the queue: a message waits until answered reaches this. */
  private doneBefore = 0;
  private lastSeq = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly pending: Expect[] = [];
  /** Outcomes waiting for their other side, by seq. */
  private readonly originals = new Map<number, DoneLine>();
  private readonly replays = new Map<number, NonNullable<StatementResult['replayed']>>();
  /** Statement and portal names left out (read-only, unreplayable), and their SQL otherwise. */
  private readonly skippedStatements = new Set<string>();
  private readonly skippedPortals = new Set<string>();
  private readonly statementSql = new Map<string, string | null>();
  private readonly portalSql = new Map<string, string | null>();
  /** The Q/E seqs left out: their done lines are not compared. */
  private readonly leftOut = new Set<number>();
  /** Statements whose Parse the target refused, by name, until confirmed as a change (or parsed again). */
  private readonly parseFailures = new Map<string, ParseFailure>();
  /** Each portal's statement name (from its Bind). */
  private readonly portalStatement = new Map<string, string>();
  /** The statement of each Execute sent, by seq, until its done line comes. */
  private readonly statementOfSeq = new Map<number, string>();
  /** The SQL of each Q/E sent or left out whose comparison is still open, by seq (the digest). */
  private readonly sqlOf = new Map<number, string | null>();
  private cut: string | null = null;
  /**
   * An Execute of COPY ... FROM STDIN was sent and its CopyInResponse (or an end) has not come:
   * nothing more goes until it does. The original client waited for it (it had data to send), and
   * PostgreSQL ignores a Sync that arrives in copy-in mode, so a Sync pipelined behind the Execute
   * would be lost and the replay would wait for its ReadyForQuery forever.
   */
  private copyWait = false;
  /** The log has a done line `aborted`: the original client left before its answer came. */
  private abortedInLog = false;

  constructor(
    readonly start: StartLine,
    private readonly host: PlayerHost,
  ) {}

  /** Queue one of the session's lines (log order). */
  push(line: LogLine): void {
    if (line.kind === 'start') return;
    this.queue.push(line);
    if (this.conn !== null) this.pump();
  }

  /** No more lines will come (the log ended): the session ends after what is queued. */
  endOfLog(): void {
    this.logEnded = true;
    if (this.conn !== null) this.pump();
  }

  /** The replay gave up: close the connection (a session not started has none). */
  abort(): void {
    this.over = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.conn?.close();
  }

  /** Connect (the scheduler decided the session may start). */
  begin(): void {
    const s = this.start;
    this.conn = new ReplayConnection(this.host.connectOptions(s.user, s.db, s.startup), {
      ready: () => {
        this.ready = true;
        this.pump();
      },
      message: (type, buf, start, end) => this.onMessage(type, buf, start, end),
      closed: (error) => this.onClosed(error),
    });
  }

  /** Send what may be sent now; schedule a wake-up for a line not yet due. */
  private pump(): void {
    if (!this.ready || this.over) return;
    let taken = 0;
    while (this.head < this.queue.length) {
      const line = this.queue[this.head]!;
      if (line.kind === 'done') {
        this.take();
        taken++;
        this.doneBefore++;
        if (line.status === 'aborted') this.abortedInLog = true;
        this.original(line);
        continue;
      }
      if (line.kind === 'end') {
        // The original client hung up without the answers it was owed: so does the replay (what
        // is still owed ends 'aborted', as in the log) rather than wait them out.
        if (this.pending.length > 0 && !this.abortedInLog) break;
        this.take();
        taken++;
        this.finish();
        break;
      }
      if (this.answered < this.doneBefore || this.copyWait) break;
      const due = this.host.dueAt(line.ts);
      const now = performance.now();
      if (due > now) {
        this.wakeAt(due - now);
        break;
      }
      if (line.seq !== this.lastSeq + 1) {
        this.cut = `lines missing after seq ${this.lastSeq} (next is ${line.seq}): log-overflow drop, or a cut log`;
        this.take();
        taken++;
        this.conn!.close();
        break;
      }
      this.lastSeq = line.seq;
      if (line.kind === 'Q') this.sqlOf.set(line.seq, line.sql);
      else if (line.kind === 'E') this.sqlOf.set(line.seq, line.sql ?? this.portalSql.get(line.portal) ?? null);
      this.take();
      taken++;
      this.send(line, now, now - due);
    }
    this.conn!.flush();
    if (taken > 0) this.host.consumed(taken);
    if (!this.over && this.head >= this.queue.length && this.logEnded && this.pending.length === 0) this.finish();
  }

  private take(): void {
    this.queue[this.head++] = undefined as never;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }

  private wakeAt(ms: number): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.pump();
    }, Math.max(1, Math.ceil(ms)));
  }

  /** One message to the target, or left out with what depends on it. */
  private send(line: MessageLine, now: number, lagMs: number): void {
    const c = this.conn!;
    switch (line.kind) {
      case 'Q':
        if (line.unreplayable !== null) return this.leaveOut(line.seq, line.unreplayable);
        if (this.host.readOnly && !this.host.isRead(line.sql!)) return this.leaveOut(line.seq, null);
        this.expect('Q', line.seq, line.sql, now);
        this.host.sentStatement(lagMs);
        c.send(encodeQueryMessage(line.sql!));
        return;
      case 'P': {
        const skip = line.unreplayable !== null || (this.host.readOnly && !this.host.isRead(line.sql!));
        if (skip) {
          if (line.unreplayable !== null) this.host.notReplayable(line.unreplayable);
          this.skippedStatements.add(line.stmt);
          return;
        }
        this.skippedStatements.delete(line.stmt);
        this.statementSql.set(line.stmt, line.sql);
        this.parseFailures.delete(line.stmt);
        this.expect('P', line.seq, line.sql, now, line.stmt);
        c.send(encodeParse(line.stmt, line.sql!, line.paramTypes));
        return;
      }
      case 'B':
        if (line.unreplayable !== null || this.skippedStatements.has(line.stmt)) {
          if (line.unreplayable !== null) this.host.notReplayable(line.unreplayable);
          this.skippedPortals.add(line.portal);
          return;
        }
        this.skippedPortals.delete(line.portal);
        this.portalSql.set(line.portal, this.statementSql.get(line.stmt) ?? null);
        this.portalStatement.set(line.portal, line.stmt);
        this.expect('B', 0, null, now);
        c.send(encodeBind(line.portal, line.stmt, line.paramFormats, line.params, line.resultFormats));
        return;
      case 'E':
        if (this.skippedPortals.has(line.portal)) return this.leaveOut(line.seq, this.host.readOnly ? null : 'depends on a line left out');
        this.expect('E', line.seq, line.sql ?? this.portalSql.get(line.portal) ?? null, now);
        {
          // Kept until its done line: its Parse's answer may still be on the way.
          const stmt = this.portalStatement.get(line.portal);
          if (stmt !== undefined) this.statementOfSeq.set(line.seq, stmt);
        }
        this.host.sentStatement(lagMs);
        c.send(encodeExecute(line.portal, line.maxRows));
        if (COPY_FROM_STDIN.test(line.sql ?? this.portalSql.get(line.portal) ?? '')) this.copyWait = true;
        return;
      case 'D':
      case 'C': {
        const skipped = line.target === 'S' ? this.skippedStatements : this.skippedPortals;
        if (skipped.has(line.name)) {
          if (line.kind === 'C') skipped.delete(line.name);
          return;
        }
        this.expect(line.kind, 0, null, now);
        c.send(line.kind === 'D' ? encodeDescribe(line.target, line.name) : encodeClose(line.target, line.name));
        return;
      }
      case 'S':
        this.expect('S', 0, null, now);
        c.send(SYNC);
        return;
      case 'H':
        c.send(FLUSH);
        return;
    }
  }

  /** A Q or E not sent: it counts as answered (for pacing) and is not compared. */
  private leaveOut(seq: number, reason: string | null): void {
    if (reason === null) this.host.skippedWrite();
    else this.host.notReplayable(reason);
    this.leftOut.add(seq);
    this.sqlOf.delete(seq);
    this.answered++;
  }

  private expect(kind: MessageLine['kind'], seq: number, sql: string | null, now: number, name = ''): void {
    const statement = kind === 'Q' || kind === 'E';
    this.pending.push({ kind, seq, sql, name, sentAt: now, rows: 0, sqlstate: null, message: undefined, rowsDigest: statement ? new RowsDigest() : null, leftOut: false });
  }

  private onMessage(type: number, buf: Buffer, start: number, end: number): void {
    const e = this.pending[0];
    if (type === Backend.CopyInResponse || type === Backend.ErrorResponse || type === Backend.ReadyForQuery || type === Backend.CommandComplete) this.copyWait = false;
    switch (type) {
      case Backend.ParseComplete:
      case Backend.BindComplete:
      case Backend.CloseComplete:
      case Backend.NoData:
        if (e !== undefined && e.kind !== 'Q' && e.kind !== 'E' && e.kind !== 'S') this.pending.shift();
        break;
      case Backend.RowDescription:
        if (e !== undefined && e.kind === 'D') this.pending.shift();
        break;
      case Backend.DataRow:
        if (e !== undefined && e.rowsDigest !== null) e.rowsDigest.whole(buf, start, end);
        break;
      case Backend.CommandComplete:
        if (e === undefined) break;
        if (e.kind === 'E') this.complete('ok', tagRows(buf, start, end));
        else if (e.kind === 'Q') e.rows += tagRows(buf, start, end);
        break;
      case Backend.EmptyQueryResponse:
        if (e !== undefined && e.kind === 'E') this.complete('ok', 0);
        break;
      case Backend.PortalSuspended:
        if (e !== undefined && e.kind === 'E') this.complete('suspended', 0);
        break;
      case Backend.CopyInResponse:
        // The data of COPY FROM STDIN is not in the log: the server is told so, and the error it answers is not compared.
        if (e !== undefined && (e.kind === 'Q' || e.kind === 'E') && !e.leftOut) {
          this.host.notReplayable(COPY_REASON);
          e.leftOut = true;
          this.sqlOf.delete(e.seq);
          // Its done line is dropped now if it came already, else when it comes.
          if (!this.originals.delete(e.seq)) this.leftOut.add(e.seq);
        }
        this.conn!.send(encodeCopyFail('pgscribe replay: the log holds no COPY data'));
        this.conn!.flush();
        break;
      case Backend.ErrorResponse:
        this.onError(buf, start, end);
        break;
      case Backend.ReadyForQuery:
        // Ends the Q or Sync at the head; anything before it was skipped after an error.
        while (this.pending.length > 0) {
          const h = this.pending[0]!;
          if (h.kind === 'Q') {
            this.complete(h.sqlstate === null ? 'ok' : 'error', 0);
            break;
          }
          this.pending.shift();
          if (h.kind === 'S') break;
          if (h.kind === 'E') this.completeExpect(h, 'skipped', 0);
        }
        break;
      case Backend.CopyBothResponse:
        this.conn!.close();
        break;
      default:
        // ParameterDescription (a statement Describe goes on to RowDescription or NoData),
        // NoticeResponse, ParameterStatus, NotificationResponse, CopyOut data: nothing owed.
        break;
    }
    this.pump();
  }

  /**
   * An ErrorResponse fails the message at the head, and the server skips the rest up to the Sync.
   * As pgscribe's completion records count it (src/client/completions.ts), the error belongs to
   * the first Execute of that stretch (a Bind that fails fails its Execute) and the later ones
   * are skipped.
   */
  private onError(buf: Buffer, start: number, end: number): void {
    const e = this.pending[0];
    if (e === undefined) return;
    const code = errorCode(buf, start, end);
    let message: string | undefined;
    try {
      message = decodeError(buf, start, end).message;
    } catch {
      message = undefined;
    }
    if (e.kind === 'Q') {
      if (e.sqlstate === null) {
        e.sqlstate = code;
        e.message = message;
      }
      return;
    }
    if (e.kind === 'S') return;
    // A Parse the target refuses: a change once the log shows that statement ran at capture.
    if (e.kind === 'P') this.parseFailures.set(e.name, { conn: this.start.conn, seq: e.seq, sql: e.sql ?? '', sqlstate: code, message });
    let failed = false;
    while (this.pending.length > 0 && this.pending[0]!.kind !== 'S') {
      const s = this.pending.shift()!;
      if (s.kind !== 'E') continue;
      if (!failed) {
        failed = true;
        s.sqlstate = code;
        s.message = message;
        this.completeExpect(s, 'error', 0);
      } else this.completeExpect(s, 'skipped', 0);
    }
  }

  /** The Q or E at the head ended. */
  private complete(status: Outcome['status'], rows: number): void {
    const e = this.pending.shift()!;
    this.completeExpect(e, status, rows);
  }

  private completeExpect(e: Expect, status: Outcome['status'], rows: number): void {
    this.answered++;
    if (e.leftOut) return;
    const replayed = {
      status,
      sqlstate: e.sqlstate,
      rows: rows + e.rows,
      rowsDigest: e.rowsDigest?.take(),
      ms: performance.now() - e.sentAt,
      message: e.message,
    };
    const original = this.originals.get(e.seq);
    if (original !== undefined) {
      this.originals.delete(e.seq);
      this.report(e.seq, original, replayed);
    } else this.replays.set(e.seq, replayed);
  }

  /** A done line from the log: compared now if its replay already ended, else kept for it. */
  private original(d: DoneLine): void {
    this.confirmParseFailure(d);
    if (this.leftOut.delete(d.seq)) {
      this.sqlOf.delete(d.seq);
      return;
    }
    const r = this.replays.get(d.seq);
    if (r === undefined) {
      this.originals.set(d.seq, d);
      return;
    }
    this.replays.delete(d.seq);
    this.report(d.seq, d, r);
  }

  /** An Execute of a statement whose Parse failed here ran ok at capture: that Parse failure is a change. */
  private confirmParseFailure(d: DoneLine): void {
    const stmt = this.statementOfSeq.get(d.seq);
    if (stmt === undefined) return;
    this.statementOfSeq.delete(d.seq);
    const f = this.parseFailures.get(stmt);
    if (f === undefined || d.status !== 'ok') return;
    this.parseFailures.delete(stmt);
    this.host.parseFailed(f);
  }

  private report(seq: number, d: DoneLine | null, r: StatementResult['replayed']): void {
    const original = d === null ? null : { status: d.status, sqlstate: d.sqlstate, rows: d.rows, rowsDigest: d.rowsDigest ?? undefined, ms: d.ms };
    const sql = this.sqlOf.get(seq) ?? null;
    this.sqlOf.delete(seq);
    this.host.result({ conn: this.start.conn, seq, sql, original, replayed: r });
  }

  private finish(): void {
    if (this.over) return;
    this.conn?.close();
  }

  private onClosed(error: string | null): void {
    if (this.over) return;
    this.over = true;
    if (this.timer !== null) clearTimeout(this.timer);
    // What never got an answer ended with the connection.
    for (const e of this.pending) if (e.kind === 'Q' || e.kind === 'E') this.completeExpect(e, 'aborted', 0);
    this.pending.length = 0;
    // Originals never replayed, and replays whose done line never came.
    for (const d of this.originals.values()) this.report(d.seq, d, null);
    for (const [seq, r] of this.replays) this.report(seq, null, r);
    const rest = this.queue.length - this.head;
    // Statements still queued never ran here: their originals are reported alone.
    for (let i = this.head; i < this.queue.length; i++) {
      const l = this.queue[i]!;
      if (l.kind === 'Q' || l.kind === 'E') this.sqlOf.set(l.seq, l.sql);
      else if (l.kind === 'done' && !this.leftOut.has(l.seq)) this.report(l.seq, l, null);
    }
    this.queue.length = 0;
    this.head = 0;
    if (rest > 0) this.host.consumed(rest);
    const failed = !this.ready ? (error ?? 'closed before it was ready') : null;
    const cut = this.cut ?? (this.ready && error !== null ? `the target ended the session: ${error}` : null);
    this.host.finished(this, { failed, cut });
  }
}
