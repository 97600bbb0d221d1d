/**
 * The request unit the cache can answer: what a client sends from an idle session up to the
 * message that asks for an answer. Two shapes qualify:
 *
 *   Q                      one simple Query
 *   [P] B [D] E S          an unnamed Parse (optional), one Bind, an optional Describe of that
 *                          portal, one Execute of it fetching all rows, and Sync
 *
 * (pgbench -M simple/extended/prepared, sysbench, libpq's PQexecParams/PQexecPrepared, JDBC and
 * node-postgres all send these). The assembler holds the messages until the unit is complete
 * (then the cache decides) or something else shows up (then they are released in order, as if
 * the cache were not there). Named Parse, Flush, Describe of a statement, Close, several
 * Executes, a row limit: all released.
 *
 * Held messages are the decoded messages of the session (client-messages.ts), or for Sync and
 * Flush the raw bytes, as views of the socket chunk they came in; keep() copies them when the
 * unit outlives its chunk.
 *
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html
 */
import { Frontend } from '../protocol/codes';
import type { BindMessage, ClientMessage, ParseMessage } from '../protocol/client-messages';
import { MAX_CACHEABLE_SQL } from './policy';
import { isVolatileInput } from '../sql/volatile-input';

/** One held client message: its bytes, and its decoded form when it has one. */
export interface Held {
  type: number;
  buf: Buffer;
  start: number;
  end: number;
  msg: ClientMessage | null;
  /** The bytes are a copy (keep()). */
  kept: boolean;
}

export const MORE = 0;
export const REJECT = 1;
export const COMPLETE = 2;
export type UnitVerdict = typeof MORE | typeof REJECT | typeof COMPLETE;

/** Largest Bind parameter section that may become part of a key. */
const MAX_PARAMS_KEY = 64 * 1024;

/**
 * A parameter of the Bind may hold a date/time input resolved at execution ('now', 'today', ...),
 * in either format: a binary-format text parameter is its bytes.
 */
export function hasVolatileInput(b: BindMessage): boolean {
  const n = b.paramCount;
  if (n === 0) return false;
  const values = b.values;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v !== null && v !== undefined && isVolatileInput(v, 0, v.length)) return true;
  }
  return false;
}

export class Unit {
  held: Held[] = [];
  /** 0: nothing yet; 'Q' or 'X' (extended). */
  kind: 0 | 'Q' | 'X' = 0;
  hasParse = false;
  hasDescribe = false;
  private executed = false;
  /** Q: the SQL as bytes (latin1). */
  sql = '';
  /** P: the unit's Parse. */
  parse: ParseMessage | null = null;
  /** B: statement and portal names, parameters section (latin1: formats, values, result formats). */
  bind: BindMessage | null = null;
  bindStatement = '';
  bindPortal = '';
  paramsKey = '';
  volatileInput = false;
  get active(): boolean {
    return this.held.length > 0;
  }

  /**
   * Take one message (msg: its decoded form, for the types the session decodes). REJECT and
   * COMPLETE leave the held messages, this one included, for the caller to release or answer.
   */
  add(type: number, buf: Buffer, start: number, end: number, msg: ClientMessage | null): UnitVerdict {
    this.held.push({ type, buf, start, end, msg, kept: false });
    if (msg === null) return type === Frontend.Sync && this.executed ? COMPLETE : REJECT;
    switch (msg.type) {
      case Frontend.Query: {
        if (this.held.length !== 1 || msg.sqlLength > MAX_CACHEABLE_SQL) return REJECT;
        this.kind = 'Q';
        this.sql = msg.sqlBytes;
        return COMPLETE;
      }
      case Frontend.Parse: {
        // A named statement must be created on the server: PostgreSQL has to see it.
        if (this.held.length !== 1 || msg.nameEnd !== 5 || msg.end - msg.start - msg.nameEnd > MAX_CACHEABLE_SQL) return REJECT;
        this.kind = 'X';
        this.hasParse = true;
        this.parse = msg;
        return MORE;
      }
      case Frontend.Bind: {
        if (this.bind !== null) return REJECT;
        if (this.hasParse && msg.statementEnd !== msg.portalEnd + 1) return REJECT; // binds another statement than the unit's Parse
        if (msg.end - msg.start - msg.paramsAt > MAX_PARAMS_KEY) return REJECT;
        this.kind = 'X';
        this.bind = msg;
        this.bindStatement = msg.statement;
        this.bindPortal = msg.portal;
        this.paramsKey = msg.paramsBytes();
        this.volatileInput = hasVolatileInput(msg);
        return MORE;
      }
      case Frontend.Describe: {
        if (this.bind === null || this.executed || this.hasDescribe || msg.kind !== 'P') return REJECT;
        if (msg.name !== this.bindPortal) return REJECT;
        this.hasDescribe = true;
        return MORE;
      }
      case Frontend.Execute: {
        if (this.bind === null || this.executed || msg.maxRows !== 0) return REJECT;
        if (msg.portal !== this.bindPortal) return REJECT;
        this.executed = true;
        return MORE;
      }
      default:
        return REJECT;
    }
  }

  /** P: the Parse body from the SQL on, as latin1 (the statement's identity in keys). */
  get parseIdent(): string {
    return this.parse === null ? '' : this.parse.definitionBytes();
  }

  /** Length of the SQL at the start of parseIdent. */
  get parseSqlLength(): number {
    return this.parse === null ? 0 : this.parse.sqlLength;
  }

  /** Copy the held messages out of the socket chunk (the unit waits past it). */
  keep(): void {
    for (const h of this.held) {
      if (h.kept) continue;
      h.kept = true;
      if (h.msg !== null) {
        h.msg.keep();
        h.buf = h.msg.buf;
        h.start = h.msg.start;
        h.end = h.msg.end;
        continue;
      }
      h.buf = Buffer.from(h.buf.subarray(h.start, h.end));
      h.end -= h.start;
      h.start = 0;
    }
  }

  /** Start over (after the held messages were handed on). */
  reset(): void {
    this.held = [];
    this.kind = 0;
    this.hasParse = this.hasDescribe = this.executed = false;
    this.parse = this.bind = null;
    this.volatileInput = false;
  }
}
