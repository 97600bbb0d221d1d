// A walsender's messages built by hand, for the tests of the change stream (src/wal/).
// Independent of src/: each message is written out field by field from the protocol docs
// ("Streaming Replication Protocol" and "Logical Replication Message Formats", PostgreSQL 15).
import { cstr, i16, i32 } from '../harness/wire';

export const u8 = (n: number): Buffer => Buffer.from([n]);
export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
export const u64 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
};
export const i64 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(n);
  return b;
};
const ch = (c: string): Buffer => Buffer.from(c, 'latin1');

/** Unix ms to PostgreSQL microseconds since 2000-01-01. */
export const pgTime = (ms: number): bigint => (BigInt(ms) - 946_684_800_000n) * 1000n;

/** A column of TupleData: null, unchanged TOAST, text or binary bytes. */
export type Col = null | 'u' | { t: string } | { b: Buffer };

export function tuple(cols: Col[]): Buffer {
  return Buffer.concat([
    i16(cols.length),
    ...cols.map((c) => {
      if (c === null) return ch('n');
      if (c === 'u') return ch('u');
      if ('t' in c) return Buffer.concat([ch('t'), i32(Buffer.byteLength(c.t)), Buffer.from(c.t, 'utf8')]);
      return Buffer.concat([ch('b'), i32(c.b.length), c.b]);
    }),
  ]);
}

/** pgoutput protocol version 1 messages (the payload of one XLogData). */
export const po = {
  begin: (finalLsn: bigint, commitTime: bigint, xid: number) => Buffer.concat([ch('B'), u64(finalLsn), i64(commitTime), u32(xid)]),
  commit: (commitLsn: bigint, endLsn: bigint, commitTime: bigint, flags = 0) => Buffer.concat([ch('C'), u8(flags), u64(commitLsn), u64(endLsn), i64(commitTime)]),
  origin: (lsn: bigint, name: string) => Buffer.concat([ch('O'), u64(lsn), cstr(name)]),
  relation: (oid: number, schema: string, name: string, columns: { name: string; type: number; key?: boolean }[] = [], identity = 'd') =>
    Buffer.concat([
      ch('R'),
      u32(oid),
      cstr(schema),
      cstr(name),
      ch(identity),
      i16(columns.length),
      ...columns.map((c) => Buffer.concat([u8(c.key === true ? 1 : 0), cstr(c.name), u32(c.type), i32(-1)])),
    ]),
  type: (oid: number, schema: string, name: string) => Buffer.concat([ch('Y'), u32(oid), cstr(schema), cstr(name)]),
  insert: (oid: number, row: Col[]) => Buffer.concat([ch('I'), u32(oid), ch('N'), tuple(row)]),
  /** old: ['K' | 'O', columns] when the old key or row is sent. */
  update: (oid: number, row: Col[], old?: ['K' | 'O', Col[]]) =>
    Buffer.concat([ch('U'), u32(oid), ...(old === undefined ? [] : [ch(old[0]), tuple(old[1])]), ch('N'), tuple(row)]),
  delete: (oid: number, kind: 'K' | 'O', old: Col[]) => Buffer.concat([ch('D'), u32(oid), ch(kind), tuple(old)]),
  truncate: (oids: number[], flags = 0) => Buffer.concat([ch('T'), i32(oids.length), u8(flags), ...oids.map(u32)]),
  message: (transactional: boolean, lsn: bigint, prefix: string, content: Buffer) =>
    Buffer.concat([ch('M'), u8(transactional ? 1 : 0), u64(lsn), cstr(prefix), i32(content.length), content]),
};

/** The CopyData bodies a walsender sends, and the standby status update a client sends. */
export const repl = {
  xlog: (walStart: bigint, walEnd: bigint, sendTime: bigint, payload: Buffer) => Buffer.concat([ch('w'), u64(walStart), u64(walEnd), i64(sendTime), payload]),
  keepalive: (walEnd: bigint, sendTime: bigint, replyRequested: boolean) => Buffer.concat([ch('k'), u64(walEnd), i64(sendTime), u8(replyRequested ? 1 : 0)]),
  status: (write: bigint, flush: bigint, apply: bigint, clock: bigint, replyRequested: boolean) =>
    Buffer.concat([ch('r'), u64(write), u64(flush), u64(apply), i64(clock), u8(replyRequested ? 1 : 0)]),
};

/** A decoded standby status update (as a fake walsender reads it). */
export interface StatusUpdate {
  write: bigint;
  flush: bigint;
  apply: bigint;
  clock: bigint;
  replyRequested: boolean;
}

export function readStatus(body: Buffer): StatusUpdate {
  if (body.length !== 34 || body[0] !== 0x72) throw new Error(`not a standby status update: ${body.toString('hex')}`);
  return {
    write: body.readBigUInt64BE(1),
    flush: body.readBigUInt64BE(9),
    apply: body.readBigUInt64BE(17),
    clock: body.readBigInt64BE(25),
    replyRequested: body[33] === 1,
  };
}
