/**
 * The bytes of a logical replication stream: the two CopyData wrappers a walsender sends
 * (XLogData 'w', primary keepalive 'k'), the standby status update 'r' pgscribe answers with,
 * and the messages of the pgoutput plugin, protocol version 1, that XLogData carries.
 *
 * Each decoder takes one whole message as buf[start, end) (without the CopyData header; the
 * connection's framer assembled it) and trusts nothing: every read is checked against `end`, a
 * message must end exactly where its last field does, and a fault throws WalDecodeError without
 * reading past `end`. The consumer treats that as "the stream is broken" and starts again on a
 * new slot; nothing here is allowed to escape as another kind of exception.
 *
 * Tuple data (the row values of Insert, Update and Delete) is walked over and checked, never
 * decoded: the cache only needs to know which relation changed.
 *
 * @see https://www.postgresql.org/docs/15/protocol-replication.html (XLogData, keepalive, status update)
 * @see https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html (pgoutput)
 */
import { msToPgTime } from './lsn';

/** Input that is not the protocol; `code` is stable for logs and tests. */
export class WalDecodeError extends Error {
  readonly code = 'PGSCRIBE_WAL_DECODE';
  override readonly name = 'WalDecodeError';
}

/** Bounds-checked reads of buf[off, end). */
class Reader {
  constructor(
    private readonly buf: Buffer,
    public off: number,
    private readonly end: number,
    private readonly what: string,
  ) {}

  private need(n: number): void {
    if (this.off + n > this.end) throw new WalDecodeError(`${this.what}: message too short`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.off++]!;
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.off);
    this.off += 2;
    return v;
  }

  i32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.off);
    this.off += 4;
    return v;
  }

  /** An Oid or TransactionId: unsigned 32 bits. */
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }

  /** An XLogRecPtr (unsigned) as a bigint. */
  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.off);
    this.off += 8;
    return v;
  }

  /** A TimestampTz (signed microseconds since 2000-01-01). */
  i64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.off);
    this.off += 8;
    return v;
  }

  /** A NUL-terminated string, as UTF-8 (the connection asks for client_encoding UTF8). */
  cstring(): string {
    const nul = this.buf.indexOf(0, this.off);
    if (nul < 0 || nul >= this.end) throw new WalDecodeError(`${this.what}: missing string terminator`);
    const s = this.buf.toString('utf8', this.off, nul);
    this.off = nul + 1;
    return s;
  }

  skip(n: number): void {
    this.need(n);
    this.off += n;
  }

  done(): void {
    if (this.off !== this.end) throw new WalDecodeError(`${this.what}: ${this.end - this.off} unexpected bytes at the end`);
  }
}

// ---- the CopyData wrappers ----------------------------------------------------------------------

/** The first byte of a CopyData body on a replication connection. */
export const ReplicationCode = {
  XLogData: 0x77, // 'w'
  PrimaryKeepalive: 0x6b, // 'k'
  StandbyStatusUpdate: 0x72, // 'r'
} as const;

/** XLogData: a piece of the stream, here one pgoutput message at buf[payloadStart, payloadEnd). */
export interface XLogData {
  kind: 'xlog';
  /** A logical walsender writes the position only into a transaction's last message, 0 elsewhere. */
  walStart: bigint;
  walEnd: bigint;
  /** The server's clock when it sent the message, microseconds since 2000-01-01. */
  sendTime: bigint;
  payloadStart: number;
  payloadEnd: number;
}

/** Primary keepalive: how far the walsender has read the WAL; a reply may be asked for. */
export interface PrimaryKeepalive {
  kind: 'keepalive';
  /**
   * For a logical walsender: the end of the last WAL record it decoded (its sentPtr), unless it
   * says otherwise. Every transaction that committed before that point has been sent before
   * this message, except one whose messages are being sent right now.
   */
  walEnd: bigint;
  sendTime: bigint;
  replyRequested: boolean;
}

export type ReplicationMessage = XLogData | PrimaryKeepalive;

/**
 * The body of a CopyData the walsender sent, buf[start, end): XLogData or a primary keepalive.
 * @see https://www.postgresql.org/docs/15/protocol-replication.html (XLogData, Primary keepalive message)
 */
export function decodeReplicationMessage(buf: Buffer, start: number, end: number): ReplicationMessage {
  const r = new Reader(buf, start, end, 'replication message');
  const code = r.u8();
  if (code === ReplicationCode.XLogData) {
    const walStart = r.u64();
    const walEnd = r.u64();
    const sendTime = r.i64();
    return { kind: 'xlog', walStart, walEnd, sendTime, payloadStart: r.off, payloadEnd: end };
  }
  if (code === ReplicationCode.PrimaryKeepalive) {
    const walEnd = r.u64();
    const sendTime = r.i64();
    const reply = r.u8();
    r.done();
    if (reply > 1) throw new WalDecodeError(`primary keepalive: reply-requested byte ${reply}`);
    return { kind: 'keepalive', walEnd, sendTime, replyRequested: reply === 1 };
  }
  throw new WalDecodeError(`replication message: unknown type ${describe(code)}`);
}

export interface StandbyStatus {
  /** Positions received, flushed and applied; pgscribe gives the same one thrice. */
  write: bigint;
  flush: bigint;
  apply: bigint;
  /** The client's clock, Unix milliseconds (default: now). */
  clockMs?: number;
  /** Ask the walsender to answer at once with a keepalive (a ping). */
  replyRequested: boolean;
}

/**
 * Standby status update ('r'), the body of a CopyData: three positions, the client's clock
 * (microseconds since 2000-01-01) and the reply-requested byte.
 * @see https://www.postgresql.org/docs/15/protocol-replication.html (Standby status update)
 */
export function encodeStandbyStatusUpdate(s: StandbyStatus): Buffer {
  const out = Buffer.allocUnsafe(34);
  out[0] = ReplicationCode.StandbyStatusUpdate;
  out.writeBigUInt64BE(s.write, 1);
  out.writeBigUInt64BE(s.flush, 9);
  out.writeBigUInt64BE(s.apply, 17);
  out.writeBigInt64BE(msToPgTime(s.clockMs ?? Date.now()), 25);
  out[33] = s.replyRequested ? 1 : 0;
  return out;
}

// ---- pgoutput, protocol version 1 ---------------------------------------------------------------

/** pgoutput message types (protocol version 1: no streaming, no two-phase messages). */
export const PgoutputCode = {
  Begin: 0x42, // 'B'
  Commit: 0x43, // 'C'
  Origin: 0x4f, // 'O'
  Relation: 0x52, // 'R'
  Type: 0x59, // 'Y'
  Insert: 0x49, // 'I'
  Update: 0x55, // 'U'
  Delete: 0x44, // 'D'
  Truncate: 0x54, // 'T'
  Message: 0x4d, // 'M'
} as const;

export type PgoutputMessage =
  /** finalLsn: the LSN of the commit record; commitTime: microseconds since 2000-01-01. */
  | { type: 'begin'; finalLsn: bigint; commitTime: bigint; xid: number }
  /** endLsn: the end of the commit record, the position to acknowledge. */
  | { type: 'commit'; commitLsn: bigint; endLsn: bigint; commitTime: bigint }
  /** The transaction was replayed from another node (replication origin). */
  | { type: 'origin'; originLsn: bigint; name: string }
  /** A relation's description, sent before its first change on this connection (and after DDL). */
  | { type: 'relation'; oid: number; schema: string; name: string; replicaIdentity: number; columns: number }
  | { type: 'type'; oid: number; schema: string; name: string }
  | { type: 'insert'; oid: number }
  | { type: 'update'; oid: number }
  | { type: 'delete'; oid: number }
  | { type: 'truncate'; oids: number[]; cascade: boolean; restartIdentity: boolean }
  /** pg_logical_emit_message(); only sent when asked for (the `messages` option), never here. */
  | { type: 'message'; transactional: boolean; lsn: bigint; prefix: string; length: number };

/** Replica identity as relreplident: default, nothing, full, index. */
const REPLICA_IDENTITIES = new Set([0x64, 0x6e, 0x66, 0x69]); // 'd' 'n' 'f' 'i'

/** Tuple column kinds. */
const Column = { Null: 0x6e, Unchanged: 0x75, Text: 0x74, Binary: 0x62 } as const; // 'n' 'u' 't' 'b'

/**
 * One pgoutput message (protocol version 1), the payload of one XLogData: buf[start, end).
 * @see https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
 */
export function decodePgoutput(buf: Buffer, start: number, end: number): PgoutputMessage {
  if (start >= end) throw new WalDecodeError('pgoutput: empty message');
  const code = buf[start]!;
  const r = new Reader(buf, start + 1, end, `pgoutput ${describe(code)}`);
  let m: PgoutputMessage;
  switch (code) {
    case PgoutputCode.Begin: {
      const finalLsn = r.u64();
      if (finalLsn === 0n) throw new WalDecodeError('pgoutput Begin: final LSN not set');
      m = { type: 'begin', finalLsn, commitTime: r.i64(), xid: r.u32() };
      break;
    }
    case PgoutputCode.Commit: {
      const flags = r.u8();
      if (flags !== 0) throw new WalDecodeError(`pgoutput Commit: unknown flags ${flags}`);
      const commitLsn = r.u64();
      const endLsn = r.u64();
      if (endLsn === 0n || endLsn < commitLsn) throw new WalDecodeError('pgoutput Commit: end LSN not after the commit LSN');
      m = { type: 'commit', commitLsn, endLsn, commitTime: r.i64() };
      break;
    }
    case PgoutputCode.Origin:
      m = { type: 'origin', originLsn: r.u64(), name: r.cstring() };
      break;
    case PgoutputCode.Relation: {
      const oid = r.u32();
      const schema = namespace(r.cstring());
      const name = r.cstring();
      const replicaIdentity = r.u8();
      if (!REPLICA_IDENTITIES.has(replicaIdentity)) throw new WalDecodeError(`pgoutput Relation: unknown replica identity ${describe(replicaIdentity)}`);
      const columns = r.u16();
      for (let i = 0; i < columns; i++) {
        r.u8(); // flags: 1 = part of the key
        r.cstring(); // name
        r.skip(8); // type oid, type modifier
      }
      m = { type: 'relation', oid, schema, name, replicaIdentity, columns };
      break;
    }
    case PgoutputCode.Type:
      m = { type: 'type', oid: r.u32(), schema: namespace(r.cstring()), name: r.cstring() };
      break;
    case PgoutputCode.Insert: {
      const oid = r.u32();
      expectTuple(r, 0x4e, 'N'); // new tuple
      m = { type: 'insert', oid };
      break;
    }
    case PgoutputCode.Update: {
      const oid = r.u32();
      let kind = r.u8();
      if (kind === 0x4b || kind === 0x4f) {
        skipTuple(r); // old key ('K') or old row ('O')
        kind = r.u8();
      }
      if (kind !== 0x4e) throw new WalDecodeError(`pgoutput Update: expected a new tuple ('N'), got ${describe(kind)}`);
      skipTuple(r);
      m = { type: 'update', oid };
      break;
    }
    case PgoutputCode.Delete: {
      const oid = r.u32();
      const kind = r.u8();
      if (kind !== 0x4b && kind !== 0x4f) throw new WalDecodeError(`pgoutput Delete: expected an old key or row ('K', 'O'), got ${describe(kind)}`);
      skipTuple(r);
      m = { type: 'delete', oid };
      break;
    }
    case PgoutputCode.Truncate: {
      const count = r.i32();
      const flags = r.u8();
      // Checked before the array is made: a forged count must not allocate.
      if (count < 0 || count > (end - r.off) / 4) throw new WalDecodeError(`pgoutput Truncate: ${count} relations do not fit the message`);
      const oids: number[] = [];
      for (let i = 0; i < count; i++) oids.push(r.u32());
      m = { type: 'truncate', oids, cascade: (flags & 1) !== 0, restartIdentity: (flags & 2) !== 0 };
      break;
    }
    case PgoutputCode.Message: {
      const flags = r.u8();
      const lsn = r.u64();
      const prefix = r.cstring();
      const length = r.i32();
      if (length < 0) throw new WalDecodeError(`pgoutput Message: negative length ${length}`);
      r.skip(length);
      m = { type: 'message', transactional: (flags & 1) !== 0, lsn, prefix, length };
      break;
    }
    default:
      throw new WalDecodeError(`pgoutput: unknown message type ${describe(code)} (protocol version 1 was asked for)`);
  }
  r.done();
  return m;
}

/** pgoutput sends an empty namespace for pg_catalog (to save space). */
function namespace(s: string): string {
  return s === '' ? 'pg_catalog' : s;
}

function expectTuple(r: Reader, kind: number, name: string): void {
  const got = r.u8();
  if (got !== kind) throw new WalDecodeError(`expected a tuple '${name}', got ${describe(got)}`);
  skipTuple(r);
}

/** TupleData: Int16 column count, then per column 'n', 'u', or 't'/'b' with an Int32 length and the bytes. */
function skipTuple(r: Reader): void {
  const columns = r.u16();
  for (let i = 0; i < columns; i++) {
    const kind = r.u8();
    if (kind === Column.Null || kind === Column.Unchanged) continue;
    if (kind !== Column.Text && kind !== Column.Binary) throw new WalDecodeError(`tuple data: unknown column kind ${describe(kind)}`);
    const len = r.i32();
    if (len < 0) throw new WalDecodeError(`tuple data: negative column length ${len}`);
    r.skip(len);
  }
}

/** A type byte for an error message: 'B' (0x42), or just the hex when it is not printable. */
function describe(code: number): string {
  const hex = `0x${code.toString(16).padStart(2, '0')}`;
  return code >= 0x20 && code < 0x7f ? `'${String.fromCharCode(code)}' (${hex})` : hex;
}
