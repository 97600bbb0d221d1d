/**
 * Which answer ends which query. A session's Q and E messages are answered in the order they
 * were sent, so one FIFO per session is enough: CommandComplete, EmptyQueryResponse,
 * PortalSuspended and ErrorResponse end the Execute at its head; a Q collects the row counts of
 * its statements and ends at its ReadyForQuery. ReadyForQuery also closes the pipeline segment
 * up to its Sync (or Q, or FunctionCall): an Execute of that segment still open was skipped by
 * the server after an earlier error. Used for completion records and query digests.
 */
import { Backend } from './protocol/codes';
import type { CacheOutcome, CompletionStatus, FlightRole } from './log/format';

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
}

const K_SYNC = 0;
const K_QUERY = 1;
const K_EXECUTE = 2;

interface Entry {
  kind: number;
  seq: number;
  sql: string | null;
  start: number;
  rows: number;
  sqlstate: string | null;
  cache: CacheOutcome | undefined;
  flight: FlightRole | undefined;
}

const SYNC: Entry = { kind: K_SYNC, seq: 0, sql: null, start: 0, rows: 0, sqlstate: null, cache: undefined, flight: undefined };

export class CompletionTracker {
  private queue: Entry[] = [];
  private head = 0;

  constructor(private readonly done: (c: Completed) => void) {}

  get pending(): number {
    return this.queue.length - this.head;
  }

  /** A Q went upstream (start: performance.now() when it arrived or was decided). */
  query(seq: number, sql: string | null, start: number, cache: CacheOutcome | undefined, flight: FlightRole | undefined): void {
    this.queue.push({ kind: K_QUERY, seq, sql, start, rows: 0, sqlstate: null, cache, flight });
  }

  execute(seq: number, sql: string | null, start: number, cache: CacheOutcome | undefined, flight: FlightRole | undefined): void {
    this.queue.push({ kind: K_EXECUTE, seq, sql, start, rows: 0, sqlstate: null, cache, flight });
  }

  /** A Sync or FunctionCall went upstream: its ReadyForQuery ends a segment. */
  sync(): void {
    this.queue.push(SYNC);
  }

  /** A query answered without the server (cache hit, flight answer): it ends now. */
  local(of: 'Q' | 'E', seq: number, sql: string | null, start: number, answer: Buffer, cache: CacheOutcome | undefined, flight: FlightRole | undefined): void {
    const { rows, sqlstate } = summarizeAnswer(answer);
    this.done({ seq, of, sql, ms: performance.now() - start, rows, status: sqlstate === null ? 'ok' : 'error', sqlstate, cache, flight });
  }

  /** A server message that may end a query; others are ignored (callers pass only these types). */
  server(type: number, buf: Buffer, start: number, end: number): void {
    const e = this.head < this.queue.length ? this.queue[this.head]! : null;
    switch (type) {
      case Backend.CommandComplete:
        if (e === null) return;
        if (e.kind === K_EXECUTE) this.finish(e, 'ok', tagRows(buf, start, end));
        else if (e.kind === K_QUERY) e.rows += tagRows(buf, start, end);
        return;
      case Backend.EmptyQueryResponse:
        if (e !== null && e.kind === K_EXECUTE) this.finish(e, 'ok', 0);
        return;
      case Backend.PortalSuspended:
        if (e !== null && e.kind === K_EXECUTE) this.finish(e, 'suspended', 0);
        return;
      case Backend.ErrorResponse: {
        if (e === null || e.kind === K_SYNC) return;
        const code = errorCode(buf, start, end);
        if (e.kind === K_EXECUTE) {
          e.sqlstate = code;
          this.finish(e, 'error', 0);
        } else if (e.sqlstate === null) e.sqlstate = code;
        return;
      }
      case Backend.ReadyForQuery:
        this.readyForQuery();
        return;
    }
  }

  private finish(e: Entry, status: CompletionStatus, rows: number): void {
    this.head++;
    this.compact();
    this.done({ seq: e.seq, of: e.kind === K_QUERY ? 'Q' : 'E', sql: e.sql, ms: performance.now() - e.start, rows: rows + e.rows, status, sqlstate: e.sqlstate, cache: e.cache, flight: e.flight });
  }

  /** Close the segment at the head: through its Sync, or its Q. */
  private readyForQuery(): void {
    while (this.head < this.queue.length) {
      const e = this.queue[this.head]!;
      if (e.kind === K_SYNC) {
        this.head++;
        break;
      }
      if (e.kind === K_QUERY) {
        this.finish(e, e.sqlstate === null ? 'ok' : 'error', 0);
        break;
      }
      this.finish(e, 'skipped', 0);
    }
    this.compact();
  }

  /** The connection ended: whatever is still open never completed. */
  abort(): void {
    while (this.head < this.queue.length) {
      const e = this.queue[this.head]!;
      if (e.kind === K_SYNC) this.head++;
      else this.finish(e, 'aborted', 0);
    }
    this.queue = [];
    this.head = 0;
  }

  private compact(): void {
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
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
