/**
 * Which answer ends which query. A session's Q and E messages are answered in the order they
 * were sent, and the session ledger already keeps them in order, in the request groups its
 * ReadyForQuery boundaries cut: CommandComplete, EmptyQueryResponse, PortalSuspended and
 * ErrorResponse end the Execute at the head of the group being answered; a Q collects the row
 * counts of its statements and ends at its ReadyForQuery. ReadyForQuery also closes the pipeline
 * segment up to its Sync (or Q, or FunctionCall): an Execute of that segment still open was
 * skipped by the server after an earlier error. Used for completion records and query digests.
 */
import { Backend } from '../protocol/codes';
import type { CacheOutcome, CompletionStatus, FlightRole } from '../log/format';
import type { PendingGroup, PendingQuery, SessionLedger } from './ledger';
import type { RowsDigest } from './rows-digest';

/** What the tracker reports when a query ends. */
export interface Completed {
  seq: number;
  of: 'Q' | 'E';
  /** The SQL text, null when the E named a portal the session never showed. */
  sql: string | null;
  ms: number;
  rows: number;
  status: CompletionStatus;
  sqlstate: string | null;
  cache: CacheOutcome | undefined;
  flight: FlightRole | undefined;
  /** log-replay: the digest of its answer's DataRows (undefined: no rows, or no replay). */
  rowsDigest: string | undefined;
}

export class CompletionTracker {
  constructor(
    private readonly ledger: SessionLedger,
    private readonly done: (c: Completed) => void,
    /** log-replay: the DataRows of the answer being read, hashed (rows-digest.ts); null without it. */
    readonly rows: RowsDigest | null = null,
  ) {}

  /**
   * A Q or E goes upstream, in the group being built (for a Q: before the Q seals it). start:
   * performance.now() when it arrived or was decided on.
   */
  sent(of: 'Q' | 'E', seq: number, sql: string | null, start: number, cache: CacheOutcome | undefined, flight: FlightRole | undefined): void {
    const g = this.ledger.openGroup();
    if (g.failed) {
      // The server discards it unanswered (an earlier message of the group failed, no Sync since):
      // it ends now, skipped, instead of waiting in the group. Its place in the order holds, since
      // the error already ended every query the group held before it.
      this.done({ seq, of, sql, ms: 0, rows: 0, status: 'skipped', sqlstate: null, cache, flight, rowsDigest: undefined });
      return;
    }
    (g.queries ??= []).push({ of, seq, sql, start, rows: 0, sqlstate: null, cache, flight });
  }

  /** A query answered without the server (cache hit, flight answer): it ends now. */
  local(of: 'Q' | 'E', seq: number, sql: string | null, start: number, answer: Buffer, cache: CacheOutcome | undefined, flight: FlightRole | undefined): void {
    const { rows, sqlstate } = summarizeAnswer(answer);
    let rowsDigest: string | undefined;
    if (this.rows !== null) {
      this.rows.answer(answer);
      rowsDigest = this.rows.take();
    }
    this.done({ seq, of, sql, ms: performance.now() - start, rows, status: sqlstate === null ? 'ok' : 'error', sqlstate, cache, flight, rowsDigest });
  }

  /** A server message that may end a query; others are ignored (callers pass only these types). */
  server(type: number, buf: Buffer, start: number, end: number): void {
    const g = this.ledger.head;
    const e = g === null || g.queries === null ? undefined : g.queries[g.queryHead];
    if (e === undefined) return;
    switch (type) {
      case Backend.DataRow:
        // Whole DataRows pass here with replay and without; only replay hashes them.
        if (this.rows !== null) this.rows.whole(buf, start, end);
        return;
      case Backend.CommandComplete:
        if (e.of === 'E') this.finish(g!, e, 'ok', tagRows(buf, start, end));
        else e.rows += tagRows(buf, start, end);
        return;
      case Backend.EmptyQueryResponse:
        if (e.of === 'E') this.finish(g!, e, 'ok', 0);
        return;
      case Backend.PortalSuspended:
        if (e.of === 'E') this.finish(g!, e, 'suspended', 0);
        return;
      case Backend.ErrorResponse: {
        const code = errorCode(buf, start, end);
        if (e.of === 'E') {
          e.sqlstate = code;
          this.finish(g!, e, 'error', 0);
          // PostgreSQL discards the rest of the group up to its Sync: the Executes queued behind
          // this one end now, skipped, so that a group failed early holds no queue.
          if (g!.failed) this.skipRest(g!);
        } else if (e.sqlstate === null) e.sqlstate = code;
        return;
      }
    }
  }

  /** ReadyForQuery ended group g (ledger.readyForQuery): its Q ends, its open Executes were skipped. */
  ended(g: PendingGroup | undefined): void {
    if (g === undefined || g.queries === null) return;
    while (g.queryHead < g.queries.length) {
      const e = g.queries[g.queryHead]!;
      this.finish(g, e, e.of === 'Q' ? (e.sqlstate === null ? 'ok' : 'error') : 'skipped', 0);
    }
  }

  /** The server failed group g: it discards the rest up to the Sync, so every query still queued in it is skipped. */
  private skipRest(g: PendingGroup): void {
    while (g.queryHead < g.queries!.length) this.finish(g, g.queries![g.queryHead]!, 'skipped', 0);
  }

  /** The connection ended: whatever the groups still held never completed. */
  abort(unanswered: readonly PendingGroup[]): void {
    for (const g of unanswered) {
      if (g.queries === null) continue;
      while (g.queryHead < g.queries.length) this.finish(g, g.queries[g.queryHead]!, 'aborted', 0);
    }
  }

  private finish(g: PendingGroup, e: PendingQuery, status: CompletionStatus, rows: number): void {
    g.queryHead++;
    // The rows read since the last query ended are this one's (answers come in order); a skipped
    // query had none, and the hash running meanwhile is not its.
    const rowsDigest = this.rows === null || status === 'skipped' ? undefined : this.rows.take();
    this.done({ seq: e.seq, of: e.of, sql: e.sql, ms: performance.now() - e.start, rows: rows + e.rows, status, sqlstate: e.sqlstate, cache: e.cache, flight: e.flight, rowsDigest });
  }
}

/** Rows of a CommandComplete tag: the last number of "SELECT 5", "INSERT 0 5", "COPY 5"; 0 for "BEGIN". */
export function tagRows(buf: Buffer, start: number, end: number): number {
  // Body: the tag, NUL-terminated. Walk back from the NUL over digits.
  let i = end - 1;
  if (i >= start + 5 && buf[i] === 0) i--;
  let n = 0;
  let scale = 1;
  while (i >= start + 5) {
    const c = buf[i]!;
    if (c < 0x30 || c > 0x39) break;
    n += (c - 0x30) * scale;
    scale *= 10;
    i--;
  }
  return scale === 1 || buf[i] !== 0x20 ? 0 : n;
}

/** The SQLSTATE (field 'C') of an ErrorResponse, or null when it has none. */
export function errorCode(buf: Buffer, start: number, end: number): string | null {
  let i = start + 5;
  while (i < end && buf[i] !== 0) {
    const field = buf[i]!;
    const z = buf.indexOf(0, i + 1);
    if (z < 0 || z >= end) return null;
    if (field === 0x43) return buf.toString('latin1', i + 1, z);
    i = z + 1;
  }
  return null;
}

/** Rows and error of an answer the proxy replays (whole messages, as stored by the cache). */
export function summarizeAnswer(bytes: Buffer): { rows: number; sqlstate: string | null } {
  let rows = 0;
  let sqlstate: string | null = null;
  let off = 0;
  while (off + 5 <= bytes.length) {
    const type = bytes[off]!;
    const end = off + 1 + bytes.readUInt32BE(off + 1);
    if (end > bytes.length) break;
    if (type === Backend.CommandComplete) rows += tagRows(bytes, off, end);
    else if (type === Backend.ErrorResponse && sqlstate === null) sqlstate = errorCode(bytes, off, end);
    off = end;
  }
  return { rows, sqlstate };
}
