/**
 * The client messages pgscribe looks inside (Query, Parse, Bind, Describe, Execute, Close),
 * decoded once. The decode validates the whole message (a malformed one throws ProtocolError) and
 * records offsets; strings and parameter views are made the first time someone reads them, and
 * kept. The query log, the session ledger and the cache all read the same object, so a Bind that
 * the log, the ledger and the cache each need is still walked once.
 *
 * Offsets are relative to the message start, so keep() can move a message out of its socket
 * chunk (a cache unit that waits past its read) without decoding it again.
 *
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html
 */
import { Frontend } from './codes';
import { ProtocolError, cstringEnd, need } from './messages';

/**
 * Statement and portal names, decoded once while they repeat: sessions Bind the same statement
 * over and over (pgbench's P_0, a driver's S_1), and the decoded name is then looked up in the
 * session's maps, where a string already hashed costs less (issue 21). One entry for the
 * process: a different name costs a length check, or a compare of its few bytes.
 */
const NAME_MEMO_BYTES = 64;
const memoBytes = Buffer.alloc(NAME_MEMO_BYTES);
let memoLength = -1;
let memoName = '';

/** The name at buf[from, to) (absolute offsets), as UTF-8. */
export function nameAt(buf: Buffer, from: number, to: number): string {
  const n = to - from;
  if (n === 0) return '';
  if (n === memoLength) {
    let i = 0;
    while (i < n && buf[from + i] === memoBytes[i]) i++;
    if (i === n) return memoName;
  }
  const name = buf.toString('utf8', from, to);
  if (n <= NAME_MEMO_BYTES) {
    buf.copy(memoBytes, 0, from, to);
    memoLength = n;
    memoName = name;
  }
  return name;
}

/** A Bind's format codes when it sends none (all-text parameters, as most clients send): shared, never written. */
const NO_CODES: number[] = new Array<number>(0);

/**
 * What every inspected message has: its bytes, header included, at buf[start, end).
 *
 * Its fields are `declare`d and assigned, never class fields: a class field is defined
 * (DefineNamedOwnIC) in this one constructor for objects of six subclass shapes, a megamorphic
 * define that V8 sends to its runtime every time. That cost about 1 µs per message, 3.3 µs per
 * pgbench transaction (issue 21, docs/performance.md); a plain assignment is cached.
 */
abstract class InspectedMessage {
  declare buf: Buffer;
  declare start: number;
  declare end: number;
  /** The bytes are a copy owned by this message. */
  declare private kept: boolean;

  constructor(buf: Buffer, start: number, end: number) {
    this.buf = buf;
    this.start = start;
    this.end = end;
    this.kept = false;
  }

  /** Copy the message out of the socket chunk it was read in (it is kept past that read). */
  keep(): void {
    if (this.kept) return;
    this.kept = true;
    this.buf = Buffer.from(this.buf.subarray(this.start, this.end));
    this.start = 0;
    this.end = this.buf.length;
    this.rebased();
  }

  /** The bytes moved: drop views of the old ones. */
  protected rebased(): void {}

  /** The text at [from, to) relative to the message start, as UTF-8. */
  protected utf8(from: number, to: number): string {
    return to === from ? '' : this.buf.toString('utf8', this.start + from, this.start + to);
  }

  /** A statement or portal name at [from, to) relative to the message start (nameAt). */
  protected nameText(from: number, to: number): string {
    return nameAt(this.buf, this.start + from, this.start + to);
  }

  protected latin1(from: number, to: number): string {
    return this.buf.toString('latin1', this.start + from, this.start + to);
  }
}

/**
 * Query ('Q'): one SQL text.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (Query)
 */
export class QueryMessage extends InspectedMessage {
  readonly type = Frontend.Query;
  /** Offset of the NUL ending the SQL. */
  readonly sqlEnd: number;
  private utf8Sql: string | undefined = undefined;
  private bytesSql: string | undefined = undefined;

  constructor(buf: Buffer, start: number, end: number) {
    super(buf, start, end);
    this.sqlEnd = cstringEnd(buf, start + 5, end, 'Query') - start;
  }

  /** The SQL as text (the log). */
  get sql(): string {
    return (this.utf8Sql ??= this.utf8(5, this.sqlEnd));
  }

  /** The SQL as the bytes the client sent, one char per byte (cache keys and the classifier). */
  get sqlBytes(): string {
    return (this.bytesSql ??= this.latin1(5, this.sqlEnd));
  }

  /** Length of the SQL in bytes. */
  get sqlLength(): number {
    return this.sqlEnd - 5;
  }
}

/**
 * Parse ('P'): statement name, SQL and parameter type OIDs.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (Parse)
 */
export class ParseMessage extends InspectedMessage {
  readonly type = Frontend.Parse;
  /** Offset of the NUL ending the statement name; the SQL starts after it. */
  readonly nameEnd: number;
  /** Offset of the NUL ending the SQL; the parameter types follow. */
  readonly sqlEnd: number;
  private statementName: string | undefined = undefined;
  private utf8Sql: string | undefined = undefined;

  constructor(buf: Buffer, start: number, end: number) {
    super(buf, start, end);
    const n1 = cstringEnd(buf, start + 5, end, 'Parse');
    const n2 = cstringEnd(buf, n1 + 1, end, 'Parse');
    need(n2 + 1, 2, end, 'Parse');
    const nTypes = buf.readInt16BE(n2 + 1);
    if (nTypes < 0) throw new ProtocolError('Parse: negative parameter type count');
    need(n2 + 3, nTypes * 4, end, 'Parse');
    this.nameEnd = n1 - start;
    this.sqlEnd = n2 - start;
  }

  /** The prepared statement's name ('' is the unnamed one). */
  get statement(): string {
    return (this.statementName ??= this.nameText(5, this.nameEnd));
  }

  get sql(): string {
    return (this.utf8Sql ??= this.utf8(this.nameEnd + 1, this.sqlEnd));
  }

  /** Offset where the statement's definition (SQL, NUL, type count, type OIDs) starts. */
  get bodyOffset(): number {
    return this.nameEnd + 1;
  }

  /** Length of the SQL in bytes. */
  get sqlLength(): number {
    return this.sqlEnd - this.nameEnd - 1;
  }

  /** The parameter type OIDs as sent (0: unspecified), a new array each call (log-replay reads it once). */
  paramTypes(): number[] {
    const at = this.start + this.sqlEnd + 1;
    const n = this.buf.readInt16BE(at);
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = this.buf.readUInt32BE(at + 2 + 4 * i);
    return out;
  }

  /** The statement's definition as bytes, one char per byte: what makes two Parses the same statement. */
  definitionBytes(): string {
    return this.latin1(this.nameEnd + 1, this.end - this.start);
  }
}

/** The format code of parameter i: none given means text, one applies to all, else one each. */
export function paramFormat(formats: readonly number[], i: number): number {
  return formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : (formats[i] ?? 0);
}

/**
 * Bind ('B'): portal, statement, parameter formats and values, result formats.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (Bind)
 */
export class BindMessage extends InspectedMessage {
  readonly type = Frontend.Bind;
  readonly portalEnd: number;
  readonly statementEnd: number;
  /**
   * Parameter format codes as sent: empty (all text), one (applies to all) or one per parameter.
   * `formats` and `values` make the message its own query record's BindParams (log/format.ts):
   * the log makes no object, array or view per Bind unless a formatter reads values.
   */
  readonly formats: readonly number[];
  readonly resultFormats: readonly number[];
  /** Where each parameter value starts (relative), -1 for NULL; its length is the 4 bytes before. */
  private readonly valueAt: number[];
  private portalName: string | undefined = undefined;
  private statementName: string | undefined = undefined;
  private views: (Buffer | null)[] | undefined = undefined;

  constructor(buf: Buffer, start: number, end: number) {
    super(buf, start, end);
    const n1 = cstringEnd(buf, start + 5, end, 'Bind');
    const n2 = cstringEnd(buf, n1 + 1, end, 'Bind');
    let off = n2 + 1;
    need(off, 2, end, 'Bind');
    const nFormats = buf.readInt16BE(off);
    off += 2;
    if (nFormats < 0) throw new ProtocolError('Bind: negative format count');
    need(off, nFormats * 2, end, 'Bind');
    const paramFormats = nFormats === 0 ? NO_CODES : new Array<number>(nFormats);
    for (let i = 0; i < nFormats; i++, off += 2) paramFormats[i] = buf.readInt16BE(off);
    need(off, 2, end, 'Bind');
    const nParams = buf.readInt16BE(off);
    off += 2;
    if (nParams < 0) throw new ProtocolError('Bind: negative parameter count');
    const valueAt = new Array<number>(nParams);
    for (let i = 0; i < nParams; i++) {
      need(off, 4, end, 'Bind');
      const len = buf.readInt32BE(off);
      off += 4;
      if (len === -1) {
        valueAt[i] = -1;
        continue;
      }
      if (len < 0) throw new ProtocolError('Bind: invalid parameter length');
      need(off, len, end, 'Bind');
      valueAt[i] = off - start;
      off += len;
    }
    need(off, 2, end, 'Bind');
    const nResult = buf.readInt16BE(off);
    off += 2;
    if (nResult < 0) throw new ProtocolError('Bind: negative result format count');
    need(off, nResult * 2, end, 'Bind');
    const resultFormats = nResult === 0 ? NO_CODES : new Array<number>(nResult);
    for (let i = 0; i < nResult; i++, off += 2) resultFormats[i] = buf.readInt16BE(off);
    this.portalEnd = n1 - start;
    this.statementEnd = n2 - start;
    this.formats = paramFormats;
    this.resultFormats = resultFormats;
    this.valueAt = valueAt;
  }

  get portal(): string {
    return (this.portalName ??= this.nameText(5, this.portalEnd));
  }

  get statement(): string {
    return (this.statementName ??= this.nameText(this.portalEnd + 1, this.statementEnd));
  }

  get paramCount(): number {
    return this.valueAt.length;
  }

  /** Where parameter i's value starts in buf (absolute), or -1 for NULL: read it without a view. */
  valueStart(i: number): number {
    const at = this.valueAt[i]!;
    return at < 0 ? -1 : this.start + at;
  }

  /** Length in bytes of parameter i's value (0 for NULL). */
  valueBytes(i: number): number {
    const at = this.valueAt[i]!;
    return at < 0 ? 0 : this.buf.readInt32BE(this.start + at - 4);
  }

  /** Parameter values as views of the message (null for SQL NULL), made on first use: copy what you keep. */
  get values(): (Buffer | null)[] {
    if (this.views === undefined) {
      const n = this.valueAt.length;
      const out = new Array<Buffer | null>(n);
      const base = this.start;
      for (let i = 0; i < n; i++) {
        const at = this.valueAt[i]!;
        out[i] = at < 0 ? null : this.buf.subarray(base + at, base + at + this.valueBytes(i));
      }
      this.views = out;
    }
    return this.views;
  }

  /** Offset where the parameter section (format count, formats, values, result formats) starts. */
  get paramsAt(): number {
    return this.statementEnd + 1;
  }

  /** The parameter section as bytes, one char per byte: the part of a cache key a Bind gives. */
  paramsBytes(): string {
    return this.latin1(this.statementEnd + 1, this.end - this.start);
  }

  protected override rebased(): void {
    this.views = undefined;
  }
}

/** 'S' (a prepared statement) or 'P' (a portal), as Describe and Close name their target. */
export type TargetKind = 'S' | 'P';

function targetKind(buf: Buffer, start: number, end: number, what: string): TargetKind {
  need(start + 5, 1, end, what);
  const k = buf[start + 5];
  if (k !== 0x53 && k !== 0x50) throw new ProtocolError(`${what}: invalid target type`);
  return k === 0x53 ? 'S' : 'P';
}

/** Describe and Close: a target kind ('S' or 'P') and a name. */
abstract class TargetMessage extends InspectedMessage {
  readonly kind: TargetKind;
  /** Offset of the NUL ending the name (the name starts at 6). */
  readonly nameEnd: number;
  private targetName: string | undefined = undefined;

  constructor(buf: Buffer, start: number, end: number, what: string) {
    super(buf, start, end);
    this.kind = targetKind(buf, start, end, what);
    this.nameEnd = cstringEnd(buf, start + 6, end, what) - start;
  }

  get name(): string {
    return (this.targetName ??= this.nameText(6, this.nameEnd));
  }
}

/**
 * Describe ('D') of a statement or portal.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (Describe)
 */
export class DescribeMessage extends TargetMessage {
  readonly type = Frontend.Describe;

  constructor(buf: Buffer, start: number, end: number) {
    super(buf, start, end, 'Describe');
  }
}

/**
 * Close ('C'): which statement or portal to forget.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (Close)
 */
export class CloseMessage extends TargetMessage {
  readonly type = Frontend.Close;

  constructor(buf: Buffer, start: number, end: number) {
    super(buf, start, end, 'Close');
  }
}

/**
 * Execute ('E'): a portal and a row limit (0: all rows).
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (Execute)
 */
export class ExecuteMessage extends InspectedMessage {
  readonly type = Frontend.Execute;
  readonly portalEnd: number;
  readonly maxRows: number;
  private portalName: string | undefined = undefined;

  constructor(buf: Buffer, start: number, end: number) {
    super(buf, start, end);
    const nul = cstringEnd(buf, start + 5, end, 'Execute');
    need(nul + 1, 4, end, 'Execute');
    this.portalEnd = nul - start;
    this.maxRows = buf.readInt32BE(nul + 1);
  }

  get portal(): string {
    return (this.portalName ??= this.nameText(5, this.portalEnd));
  }
}

/** A client message decoded once; `type` tells which. */
export type ClientMessage = QueryMessage | ParseMessage | BindMessage | DescribeMessage | ExecuteMessage | CloseMessage;

/**
 * Decode one whole client message of a type pgscribe looks inside; null for the other types.
 * Throws ProtocolError on a malformed message.
 */
export function decodeClientMessage(type: number, buf: Buffer, start: number, end: number): ClientMessage | null {
  switch (type) {
    case Frontend.Query:
      return new QueryMessage(buf, start, end);
    case Frontend.Parse:
      return new ParseMessage(buf, start, end);
    case Frontend.Bind:
      return new BindMessage(buf, start, end);
    case Frontend.Describe:
      return new DescribeMessage(buf, start, end);
    case Frontend.Execute:
      return new ExecuteMessage(buf, start, end);
    case Frontend.Close:
      return new CloseMessage(buf, start, end);
    default:
      return null;
  }
}
