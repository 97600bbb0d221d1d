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
 * Held messages are views of the socket chunk they came in; keep() copies them when the unit
 * outlives its chunk.
 *
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html
 */
import { Frontend } from '../protocol/codes';
import { ProtocolError, cstringEnd as cstr, decodeBind, need, paramFormat } from '../protocol/messages';
import { MAX_CACHEABLE_SQL } from './policy';
import { isVolatileInput } from '../sql/volatile-input';

export interface Held {
  type: number;
  buf: Buffer;
  start: number;
  end: number;
}

export const MORE = 0;
export const REJECT = 1;
export const COMPLETE = 2;
export type UnitVerdict = typeof MORE | typeof REJECT | typeof COMPLETE;

/** Largest Bind parameter section that may become part of a key. */
const MAX_PARAMS_KEY = 64 * 1024;

/**
 * Validates a Parse body from its SQL on (after the statement name), returns the index of the
 * NUL ending the SQL.
 */
export function parseSqlEnd(buf: Buffer, from: number, end: number): number {
  const nul = cstr(buf, from, end, 'Parse');
  need(nul + 1, 2, end, 'Parse');
  const n = buf.readInt16BE(nul + 1);
  if (n < 0) throw new ProtocolError('Parse: negative parameter type count');
  need(nul + 3, n * 4, end, 'Parse');
  return nul;
}

export interface BindLayout {
  portal: string;
  statement: string;
  /** Where the parameter formats start (after the statement name). */
  paramsAt: number;
  /** A text parameter is a date/time input resolved at execution ('now', 'today', ...). */
  volatileInput: boolean;
}

/** Validates a Bind (decodeBind) and finds what the cache needs of it. */
export function bindLayout(buf: Buffer, start: number, end: number): BindLayout {
  const m = decodeBind(buf, start, end);
  let volatileInput = false;
  for (let i = 0; i < m.params.length && !volatileInput; i++) {
    const v = m.params[i];
    if (v !== null && v !== undefined && paramFormat(m.paramFormats, i) === 0) volatileInput = isVolatileInput(v, 0, v.length);
  }
  return { portal: m.portal, statement: m.statement, paramsAt: m.paramsAt, volatileInput };
}

/** buf[from, to) is the name `name` (the common unnamed case without decoding). */
function sameName(buf: Buffer, from: number, to: number, name: string): boolean {
  return to === from ? name === '' : buf.toString('utf8', from, to) === name;
}

export class Unit {
  held: Held[] = [];
  /** 0: nothing yet; Frontend.Query or Frontend.Parse/Bind (extended). */
  kind: 0 | 'Q' | 'X' = 0;
  hasParse = false;
  hasDescribe = false;
  private executed = false;
  private bound = false;
  /** Q: the SQL (latin1). */
  sql = '';
  /** P: where the Parse body from the SQL on (the statement's identity) starts, from the message start. */
  parseOffset = 0;
  /** Length of the SQL at the start of that body. */
  parseSqlLength = 0;
  /** B: statement and portal names, parameters section (latin1: formats, values, result formats). */
  bindStatement = '';
  bindPortal = '';
  paramsKey = '';
  volatileInput = false;
  /** The held messages are copies (the unit outlived its chunk). */
  private kept = false;

  get active(): boolean {
    return this.held.length > 0;
  }

  /**
   * Take one message. REJECT and COMPLETE hand the held messages (including this one) to the
   * caller through take(). Throws ProtocolError on a malformed message.
   */
  add(type: number, buf: Buffer, start: number, end: number): UnitVerdict {
    this.held.push({ type, buf, start, end });
    switch (type) {
      case Frontend.Query: {
        if (this.held.length !== 1) return REJECT;
        const nul = cstr(buf, start + 5, end, 'Query');
        if (nul - start - 5 > MAX_CACHEABLE_SQL) return REJECT;
        this.kind = 'Q';
        this.sql = buf.toString('latin1', start + 5, nul);
        return COMPLETE;
      }
      case Frontend.Parse: {
        if (this.held.length !== 1) return REJECT;
        const nameEnd = cstr(buf, start + 5, end, 'Parse');
        const sqlEnd = parseSqlEnd(buf, nameEnd + 1, end);
        if (nameEnd !== start + 5 || end - nameEnd > MAX_CACHEABLE_SQL) return REJECT; // named: PostgreSQL must see it
        this.kind = 'X';
        this.hasParse = true;
        this.parseOffset = nameEnd + 1 - start;
        this.parseSqlLength = sqlEnd - nameEnd - 1;
        return MORE;
      }
      case Frontend.Bind: {
        if (this.bound) return REJECT;
        const b = bindLayout(buf, start, end);
        if (this.hasParse && b.statement !== '') return REJECT;
        if (end - b.paramsAt > MAX_PARAMS_KEY) return REJECT;
        this.kind = 'X';
        this.bound = true;
        this.bindStatement = b.statement;
        this.bindPortal = b.portal;
        this.paramsKey = buf.toString('latin1', b.paramsAt, end);
        this.volatileInput = b.volatileInput;
        return MORE;
      }
      case Frontend.Describe: {
        need(start + 5, 1, end, 'Describe');
        const nul = cstr(buf, start + 6, end, 'Describe');
        if (!this.bound || this.executed || this.hasDescribe || buf[start + 5] !== 0x50) return REJECT; // 'P'
        if (!sameName(buf, start + 6, nul, this.bindPortal)) return REJECT;
        this.hasDescribe = true;
        return MORE;
      }
      case Frontend.Execute: {
        const nul = cstr(buf, start + 5, end, 'Execute');
        need(nul + 1, 4, end, 'Execute');
        if (!this.bound || this.executed || buf.readInt32BE(nul + 1) !== 0) return REJECT;
        if (!sameName(buf, start + 5, nul, this.bindPortal)) return REJECT;
        this.executed = true;
        return MORE;
      }
      case Frontend.Sync:
        return this.executed ? COMPLETE : REJECT;
      default:
        return REJECT;
    }
  }

  /** P: the Parse body from the SQL on, as latin1 (the statement's identity in keys). */
  get parseIdent(): string {
    const h = this.held[0]!;
    return h.buf.toString('latin1', h.start + this.parseOffset, h.end);
  }

  /** Copy the held messages out of the socket chunk (the unit waits past it). */
  keep(): void {
    if (this.kept) return;
    this.kept = true;
    for (const h of this.held) {
      h.buf = Buffer.from(h.buf.subarray(h.start, h.end));
      h.end -= h.start;
      h.start = 0;
    }
  }

  /** Start over (after the held messages were handed on). */
  reset(): void {
    this.held = [];
    this.kind = 0;
    this.hasParse = this.hasDescribe = this.executed = this.bound = this.kept = false;
    this.volatileInput = false;
  }
}
