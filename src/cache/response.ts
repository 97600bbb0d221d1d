/**
 * A leader's answer: the upstream bytes of one cacheable request, copied as they are relayed
 * (ResponseCapture), judged once complete (judgeResponse), and replayed to other clients in their
 * own protocol shape (replayAnswer). Entries are always copies, never views of socket buffers.
 *
 * The shapes: a simple Query is answered `T D* C Z`. An extended request `[P] B [D] E S` is
 * answered `[1] 2 [T|n] D* C Z`: ParseComplete only when the request had a Parse, the row
 * description only when it had a Describe (which is part of the cache key). So an answer
 * recorded for a request with a Parse serves one without by skipping its first 5 bytes, and the
 * other way round by prefixing ParseComplete: byte for byte what PostgreSQL would have sent.
 *
 * @see https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY
 */
import { Backend, TxStatus } from '../protocol/codes';
import { decodeFields, rowShape } from '../protocol/messages';
import type { Outbox } from '../outbox';
import type { SharedAnswer } from './layer';

/** ParseComplete ('1'). */
export const PARSE_COMPLETE = Buffer.from([0x31, 0, 0, 0, 4]);

/** Collects relayed byte ranges, copying each socket chunk's part once, up to a limit. */
export class ResponseCapture {
  private readonly limit: number;
  private parts: Buffer[] = [];
  private buf: Buffer | null = null;
  private start = 0;
  private end = 0;
  private size = 0;
  /** The answer grew past the limit: it will be neither stored nor shared. */
  overflow = false;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** buf[start, end) was relayed to the leader's client. Valid until the next chunk: kept as a view till then. */
  add(buf: Buffer, start: number, end: number): void {
    if (this.overflow) return;
    this.size += end - start;
    if (this.size > this.limit) {
      this.overflow = true;
      this.parts = [];
      this.buf = null;
      return;
    }
    if (buf === this.buf && start === this.end) {
      this.end = end;
      return;
    }
    this.settle();
    this.buf = buf;
    this.start = start;
    this.end = end;
  }

  /** Copy the pending view out of its socket chunk (call before the chunk is gone). */
  settle(): void {
    if (this.buf === null) return;
    this.parts.push(Buffer.from(this.buf.subarray(this.start, this.end)));
    this.buf = null;
  }

  /**
   * All the bytes, in one buffer of their own: not a slice of Node's shared pool, which a small
   * cache entry would otherwise keep alive (8 KiB for a 100-byte answer, uncounted by the byte bound).
   */
  finish(): Buffer {
    let size = this.buf === null ? 0 : this.end - this.start;
    for (const p of this.parts) size += p.length;
    const out = Buffer.allocUnsafeSlow(size);
    let off = 0;
    for (const p of this.parts) off += p.copy(out, off);
    if (this.buf !== null) this.buf.copy(out, off, this.start, this.end);
    this.parts = [];
    this.buf = null;
    return out;
  }
}

export interface Judgement {
  /** A complete, clean answer: may be stored in the cache and shared. */
  storable: boolean;
  /** May be handed to waiters (storable answers, and errors of the query itself). */
  shareable: boolean;
}

const NEITHER: Judgement = { storable: false, shareable: false };

/**
 * Judge a complete answer. kind 'Q': `T D* C Z`; kind 'X' with the request's Parse/Describe:
 * `[1] 2 [T|n] D* C Z`. Anything else in it (a notice, a parameter status, a notification, an
 * unexpected message) makes it neither storable nor shareable: the waiters run the query
 * themselves. An ErrorResponse raised while executing (after BindComplete and the description)
 * with a SQLSTATE of class 22 (data exception) or 42 (syntax error or access rule violation) is
 * the query's own answer and is shared, never stored; any other error (cancel, deadlock,
 * shutdown, connection trouble) belongs to the leader's session and is not.
 */
export function judgeResponse(b: Buffer, kind: 'Q' | 'X', hasParse: boolean, hasDescribe: boolean): Judgement {
  let off = 0;
  const n = b.length;
  const type = (): number => (off + 5 <= n ? b[off]! : -1);
  const skip = (): void => {
    off += 1 + b.readUInt32BE(off + 1);
  };
  if (kind === 'X') {
    if (hasParse) {
      if (type() !== Backend.ParseComplete) return NEITHER;
      skip();
    }
    if (type() !== Backend.BindComplete) return NEITHER;
    skip();
    if (hasDescribe) {
      const t = type();
      if (t === Backend.ErrorResponse) return judgeError(b, off);
      if (t !== Backend.RowDescription && t !== Backend.NoData) return NEITHER;
      skip();
    }
  } else {
    if (type() === Backend.ErrorResponse) return judgeError(b, off);
    if (type() !== Backend.RowDescription) return NEITHER;
    skip();
  }
  while (type() === Backend.DataRow) skip();
  const t = type();
  if (t === Backend.ErrorResponse) return judgeError(b, off);
  if (t !== Backend.CommandComplete) return NEITHER;
  skip();
  return isFinalIdle(b, off) ? { storable: true, shareable: true } : NEITHER;
}

/** An ErrorResponse at off followed only by ReadyForQuery('I'). */
function judgeError(b: Buffer, off: number): Judgement {
  const len = b.readUInt32BE(off + 1);
  const end = off + 1 + len;
  if (!isFinalIdle(b, end)) return NEITHER;
  let code: string | undefined;
  let severity: string | undefined;
  try {
    const f = decodeFields(b, off, end);
    code = f.get('C');
    severity = f.get('V') ?? f.get('S');
  } catch {
    return NEITHER;
  }
  if (severity !== 'ERROR' || code === undefined) return NEITHER;
  const cls = code.slice(0, 2);
  return cls === '22' || cls === '42' ? { storable: false, shareable: true } : NEITHER;
}

/** b[off..] is exactly one ReadyForQuery with status idle. */
function isFinalIdle(b: Buffer, off: number): boolean {
  return off + 6 === b.length && b[off] === Backend.ReadyForQuery && b.readUInt32BE(off + 1) === 5 && b[off + 5] === TxStatus.Idle;
}

/** Queue an answer for a client whose request had (wantParse) or had not a Parse. */
export function replayAnswer(out: Outbox, a: SharedAnswer, wantParse: boolean): void {
  if (a.hasParse === wantParse) out.push(a.bytes, 0, a.bytes.length);
  else if (wantParse) {
    out.push(PARSE_COMPLETE, 0, PARSE_COMPLETE.length);
    out.push(a.bytes, 0, a.bytes.length);
  } else out.push(a.bytes, PARSE_COMPLETE.length, a.bytes.length);
}

/**
 * The result description in an answer to a request with a Describe (ParseComplete and
 * BindComplete first): the RowDescription's shape (rowShape: formats left out), 'n' for NoData,
 * null when there is none. The form the session ledger keeps a statement's description in.
 */
export function describedIn(answer: Buffer): string | null {
  let off = 0;
  while (off + 5 <= answer.length) {
    const type = answer[off]!;
    const end = off + 1 + answer.readUInt32BE(off + 1);
    if (end > answer.length) return null;
    if (type === Backend.RowDescription) return rowShape(answer, off, end);
    if (type === Backend.NoData) return 'n';
    if (type !== Backend.ParseComplete && type !== Backend.BindComplete) return null;
    off = end;
  }
  return null;
}
