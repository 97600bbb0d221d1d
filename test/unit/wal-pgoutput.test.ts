// The change stream's decoders (src/wal/pgoutput.ts, lsn.ts) and its transaction assembly
// (src/wal/transactions.ts) against messages built by hand from the protocol docs
// (test/helpers/pgoutput-wire.ts): every message type, every truncation refused with a
// WalDecodeError and nothing else, trailing bytes refused, random bytes never escaping as another
// exception, and the standby status update byte for byte.
import t from 'tap';
import { formatLsn, msToPgTime, parseLsn, pgTimeToMs } from '../../src/wal/lsn';
import { WalDecodeError, decodePgoutput, decodeReplicationMessage, encodeStandbyStatusUpdate } from '../../src/wal/pgoutput';
import { TransactionAssembler } from '../../src/wal/transactions';
import { prng } from '../harness/prng';
import { pgTime, po, readStatus, repl } from '../helpers/pgoutput-wire';

const T0 = Date.UTC(2026, 0, 2, 3, 4, 5, 678);

t.test('LSNs and timestamps', async (tt) => {
  tt.equal(parseLsn('16/B374D848'), 0x16b374d848n);
  tt.equal(parseLsn('0/0'), 0n);
  tt.equal(parseLsn('FFFFFFFF/FFFFFFFF'), 0xffffffffffffffffn, 'the largest LSN, past 2^53');
  tt.equal(parseLsn(' 0/1A\n'), 0x1an, 'psql output with whitespace');
  for (const bad of ['', '16', '16/', '/1', 'G/1', '1/2/3', '123456789/0', '-1/0']) tt.equal(parseLsn(bad), null, `${JSON.stringify(bad)} is not an LSN`);
  tt.equal(formatLsn(0x16b374d848n), '16/B374D848');
  tt.equal(formatLsn(0n), '0/0');
  for (const lsn of [0n, 1n, 0xffffffffn, 0x100000000n, 0xffffffffffffffffn, 0x2a0000002an]) tt.equal(parseLsn(formatLsn(lsn)), lsn, `${lsn} round trip`);
  tt.throws(() => formatLsn(-1n), RangeError);
  tt.throws(() => formatLsn(1n << 64n), RangeError);
  tt.equal(msToPgTime(946_684_800_000), 0n, 'the PostgreSQL epoch');
  tt.equal(msToPgTime(T0), pgTime(T0));
  tt.equal(pgTimeToMs(pgTime(T0) + 999n), T0, 'microseconds truncated');
  tt.equal(pgTimeToMs(-1_000_000n), 946_684_799_000, 'before 2000');
});

t.test('every pgoutput message type', async (tt) => {
  const cases: [string, Buffer, unknown][] = [
    ['Begin', po.begin(0x10000a0n, pgTime(T0), 4000000000), { type: 'begin', finalLsn: 0x10000a0n, commitTime: pgTime(T0), xid: 4000000000 }],
    ['Commit', po.commit(0x10000a0n, 0x10000d8n, pgTime(T0)), { type: 'commit', commitLsn: 0x10000a0n, endLsn: 0x10000d8n, commitTime: pgTime(T0) }],
    ['Origin', po.origin(0x5n, 'node_é'), { type: 'origin', originLsn: 5n, name: 'node_é' }],
    [
      'Relation with columns',
      po.relation(16384, 'public', 'Orders é', [
        { name: 'id', type: 23, key: true },
        { name: 'note', type: 25 },
      ]),
      { type: 'relation', oid: 16384, schema: 'public', name: 'Orders é', replicaIdentity: 0x64, columns: 2 },
    ],
    ['Relation in pg_catalog (empty namespace), replica identity full', po.relation(4294967295, '', 't', [], 'f'), { type: 'relation', oid: 4294967295, schema: 'pg_catalog', name: 't', replicaIdentity: 0x66, columns: 0 }],
    ['Type', po.type(70000, 'public', 'mood'), { type: 'type', oid: 70000, schema: 'public', name: 'mood' }],
    ['Type in pg_catalog', po.type(70001, '', 'x'), { type: 'type', oid: 70001, schema: 'pg_catalog', name: 'x' }],
    ['Insert', po.insert(16384, [{ t: '1' }, null, 'u', { b: Buffer.from([0, 1, 2]) }, { t: '' }]), { type: 'insert', oid: 16384 }],
    ['Insert with no columns', po.insert(16384, []), { type: 'insert', oid: 16384 }],
    ['Update, new row only', po.update(16385, [{ t: 'x' }]), { type: 'update', oid: 16385 }],
    ['Update with the old key', po.update(16385, [{ t: 'x' }, 'u'], ['K', [{ t: '1' }, null]]), { type: 'update', oid: 16385 }],
    ['Update with the old row', po.update(16385, [{ t: 'x' }], ['O', [{ t: 'y' }]]), { type: 'update', oid: 16385 }],
    ['Delete by key', po.delete(16386, 'K', [{ t: '7' }]), { type: 'delete', oid: 16386 }],
    ['Delete, old row', po.delete(16386, 'O', [{ t: '7' }, null]), { type: 'delete', oid: 16386 }],
    ['Truncate', po.truncate([16384, 16386], 3), { type: 'truncate', oids: [16384, 16386], cascade: true, restartIdentity: true }],
    ['Truncate, no flags', po.truncate([1]), { type: 'truncate', oids: [1], cascade: false, restartIdentity: false }],
    ['Message, transactional', po.message(true, 0x99n, 'pfx', Buffer.from('hello')), { type: 'message', transactional: true, lsn: 0x99n, prefix: 'pfx', length: 5 }],
    ['Message, empty content', po.message(false, 0x9an, '', Buffer.alloc(0)), { type: 'message', transactional: false, lsn: 0x9an, prefix: '', length: 0 }],
  ];
  for (const [name, bytes, want] of cases) {
    tt.strictSame(decodePgoutput(bytes, 0, bytes.length), want, name);
    // Inside a larger buffer (the socket chunk), with bytes on both sides that must not be read.
    const framed = Buffer.concat([Buffer.from([0xee, 0xee, 0xee]), bytes, Buffer.from([0xee])]);
    tt.strictSame(decodePgoutput(framed, 3, 3 + bytes.length), want, `${name}, as a view`);
    // Every truncation is refused, with a WalDecodeError and nothing else.
    const wrong: string[] = [];
    for (let k = 0; k < bytes.length; k++) {
      try {
        decodePgoutput(bytes, 0, k);
        wrong.push(`cut at ${k}: decoded`);
      } catch (err) {
        if (!(err instanceof WalDecodeError)) wrong.push(`cut at ${k}: ${String(err)}`);
      }
    }
    tt.strictSame(wrong, [], `${name}: all ${bytes.length} truncations refused`);
    const longer = Buffer.concat([bytes, Buffer.from([0])]);
    tt.throws(() => decodePgoutput(longer, 0, longer.length), /unexpected bytes at the end/, `${name}: a byte too many is refused`);
  }
});

t.test('malformed pgoutput messages', async (tt) => {
  const bad: [string, Buffer, RegExp][] = [
    ['an unknown type', Buffer.from('Zxyz'), /unknown message type 'Z'/],
    ['a protocol-2 Stream Start', Buffer.from([0x53, 0, 0, 0, 1, 1]), /unknown message type 'S'/],
    ['Begin without final LSN', po.begin(0n, 0n, 1), /final LSN not set/],
    ['Commit with flags', po.commit(1n, 2n, 0n, 1), /unknown flags 1/],
    ['Commit ending before it starts', po.commit(10n, 9n, 0n), /end LSN/],
    ['Relation with an unknown replica identity', po.relation(1, 'public', 't', [], 'x'), /unknown replica identity 'x'/],
    ['Insert without N', Buffer.concat([Buffer.from('I'), Buffer.from([0, 0, 0, 1]), Buffer.from('K'), Buffer.from([0, 0])]), /expected a tuple 'N'/],
    ['Update with two old tuples', Buffer.concat([po.update(1, [], ['K', []]).subarray(0, 8), Buffer.from('K'), Buffer.from([0, 0]), Buffer.from('N'), Buffer.from([0, 0])]), /expected a new tuple/],
    ['Delete with a new tuple', po.delete(1, 'K', []).fill(0x4e, 5, 6), /expected an old key or row/],
    ['a tuple column of unknown kind', Buffer.concat([po.insert(1, []).subarray(0, 6), Buffer.from([0, 1]), Buffer.from('x')]), /unknown column kind 'x'/],
    ['a negative column length', Buffer.concat([po.insert(1, []).subarray(0, 6), Buffer.from([0, 1]), Buffer.from('t'), Buffer.from([0xff, 0xff, 0xff, 0xfe])]), /negative column length/],
    ['a column longer than the message', Buffer.concat([po.insert(1, []).subarray(0, 6), Buffer.from([0, 1]), Buffer.from('t'), Buffer.from([0, 0, 0, 9]), Buffer.from('abc')]), /too short/],
    ['a column count past the columns', Buffer.concat([po.insert(1, []).subarray(0, 6), Buffer.from([0xff, 0xff]), Buffer.from('n')]), /too short/],
    ['Truncate of a forged count', Buffer.concat([Buffer.from('T'), Buffer.from([0x7f, 0xff, 0xff, 0xff, 0])]), /do not fit/],
    ['Truncate of a negative count', Buffer.concat([Buffer.from('T'), Buffer.from([0xff, 0xff, 0xff, 0xff, 0])]), /do not fit/],
    ['Message with a negative length', Buffer.concat([po.message(false, 1n, 'p', Buffer.alloc(0)).subarray(0, 12), Buffer.from([0xff, 0xff, 0xff, 0xff])]), /negative length/],
    ['a string without terminator', Buffer.concat([Buffer.from('O'), Buffer.alloc(8), Buffer.from('abc')]), /missing string terminator/],
    ['an empty message', Buffer.alloc(0), /empty message/],
  ];
  for (const [name, bytes, re] of bad) {
    let err: unknown = null;
    try {
      decodePgoutput(bytes, 0, bytes.length);
    } catch (e) {
      err = e;
    }
    tt.ok(err instanceof WalDecodeError, `${name}: a WalDecodeError`);
    tt.match((err as Error | null)?.message ?? 'decoded', re, `${name}: says what`);
  }
});

t.test('random bytes never escape as anything but WalDecodeError', async (tt) => {
  const rand = prng(1607);
  const seeds = [po.insert(1, [{ t: 'abc' }, null]), po.relation(2, 's', 'n', [{ name: 'c', type: 23 }]), po.truncate([1, 2]), po.update(3, [{ t: 'x' }], ['O', ['u']])];
  let decoded = 0;
  const escaped: string[] = [];
  for (let i = 0; i < 20000; i++) {
    let b: Buffer;
    if (i % 2 === 0) {
      b = Buffer.from(seeds[i % seeds.length]!);
      for (let k = 0; k < 3; k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    } else {
      b = Buffer.alloc(Math.floor(rand() * 40));
      for (let k = 0; k < b.length; k++) b[k] = Math.floor(rand() * 256);
      if (b.length > 0) b[0] = 'BCORYIUDTM'.charCodeAt(Math.floor(rand() * 10));
    }
    try {
      decodePgoutput(b, 0, b.length);
      decoded++;
    } catch (err) {
      if (!(err instanceof WalDecodeError)) escaped.push(`${b.toString('hex')}: ${String(err)}`);
    }
  }
  tt.strictSame(escaped.slice(0, 5), [], 'only WalDecodeError');
  tt.ok(decoded > 0 && decoded < 20000, `some decoded (${decoded}), some refused`);
});

t.test('XLogData and primary keepalive', async (tt) => {
  const payload = po.begin(0x20n, pgTime(T0), 7);
  const w = repl.xlog(0n, 0x20n, pgTime(T0), payload);
  const framed = Buffer.concat([Buffer.from('d\0\0\0\0'), w]);
  const x = decodeReplicationMessage(framed, 5, framed.length);
  tt.strictSame(x, { kind: 'xlog', walStart: 0n, walEnd: 0x20n, sendTime: pgTime(T0), payloadStart: 30, payloadEnd: framed.length });
  if (x.kind === 'xlog') tt.strictSame(decodePgoutput(framed, x.payloadStart, x.payloadEnd), { type: 'begin', finalLsn: 0x20n, commitTime: pgTime(T0), xid: 7 }, 'the payload is the pgoutput message');
  tt.strictSame(decodeReplicationMessage(repl.xlog(1n, 2n, 3n, Buffer.alloc(0)), 0, 25), { kind: 'xlog', walStart: 1n, walEnd: 2n, sendTime: 3n, payloadStart: 25, payloadEnd: 25 }, 'an empty payload (refused later by decodePgoutput)');
  const k = repl.keepalive(0xffffffffffffffffn, pgTime(T0), true);
  tt.strictSame(decodeReplicationMessage(k, 0, k.length), { kind: 'keepalive', walEnd: 0xffffffffffffffffn, sendTime: pgTime(T0), replyRequested: true });
  const k0 = repl.keepalive(5n, -1n, false);
  tt.strictSame(decodeReplicationMessage(k0, 0, k0.length), { kind: 'keepalive', walEnd: 5n, sendTime: -1n, replyRequested: false });
  for (const [name, bytes, re] of [
    ['a truncated XLogData header', w.subarray(0, 24), /too short/],
    ['a truncated keepalive', k.subarray(0, 17), /too short/],
    ['a keepalive with a byte too many', Buffer.concat([k, Buffer.from([0])]), /unexpected bytes/],
    ['a keepalive with reply-requested 2', Buffer.concat([k.subarray(0, 17), Buffer.from([2])]), /reply-requested byte 2/],
    ['an unknown type', Buffer.from('h123'), /unknown type 'h'/],
    ['nothing', Buffer.alloc(0), /too short/],
  ] as [string, Buffer, RegExp][]) {
    tt.throws(() => decodeReplicationMessage(bytes, 0, bytes.length), re, name);
  }
  const refused: boolean[] = [];
  for (let cut = 0; cut < 25; cut++) {
    try {
      decodeReplicationMessage(w, 0, cut);
      refused.push(false);
    } catch (err) {
      refused.push(err instanceof WalDecodeError);
    }
  }
  tt.ok(refused.every((r) => r), 'every cut of the XLogData header is refused with a WalDecodeError');
});

t.test('standby status update', async (tt) => {
  const got = encodeStandbyStatusUpdate({ write: 0x1234n, flush: 0x1233n, apply: 0xffffffffffffffffn, clockMs: T0, replyRequested: true });
  tt.strictSame(got, repl.status(0x1234n, 0x1233n, 0xffffffffffffffffn, pgTime(T0), true), 'byte for byte');
  tt.strictSame(readStatus(encodeStandbyStatusUpdate({ write: 1n, flush: 1n, apply: 1n, clockMs: T0, replyRequested: false })), { write: 1n, flush: 1n, apply: 1n, clock: pgTime(T0), replyRequested: false });
  const before = Date.now();
  const now = readStatus(encodeStandbyStatusUpdate({ write: 0n, flush: 0n, apply: 0n, replyRequested: false }));
  tt.ok(pgTimeToMs(now.clock) >= before && pgTimeToMs(now.clock) <= Date.now(), 'the clock defaults to now');
});

/** Decode and apply a list of pgoutput messages; the commits that came out. */
function assemble(a: TransactionAssembler, msgs: Buffer[]) {
  return msgs.map((m) => a.apply(decodePgoutput(m, 0, m.length))).filter((c) => c !== null);
}

t.test('transactions: relations per commit, once each, names from Relation messages', async (tt) => {
  const a = new TransactionAssembler(100);
  const ct = pgTime(T0);
  const commits = assemble(a, [
    po.begin(0x100n, ct, 10),
    po.relation(1, 'public', 'a'),
    po.insert(1, [{ t: '1' }]),
    po.insert(1, [{ t: '2' }]),
    po.relation(2, 'app', 'b'),
    po.type(9000, 'public', 'mood'),
    po.update(2, [{ t: 'x' }]),
    po.delete(1, 'K', [{ t: '1' }]),
    po.commit(0x100n, 0x128n, ct),
    po.begin(0x200n, ct + 1000n, 11),
    po.origin(5n, 'elsewhere'),
    po.truncate([2, 1]),
    po.message(true, 0x1f0n, 'x', Buffer.from('y')),
    po.commit(0x200n, 0x228n, ct + 1000n),
    // The relation renamed: described again within the connection.
    po.begin(0x300n, ct, 12),
    po.relation(1, 'public', 'a2'),
    po.update(1, [{ t: 'x' }]),
    po.commit(0x300n, 0x328n, ct),
  ]);
  tt.strictSame(commits, [
    { xid: 10, commitLsn: 0x100n, endLsn: 0x128n, commitTimeMs: T0, relations: [{ oid: 1, schema: 'public', name: 'a' }, { oid: 2, schema: 'app', name: 'b' }], truncate: false },
    { xid: 11, commitLsn: 0x200n, endLsn: 0x228n, commitTimeMs: T0 + 1, relations: [{ oid: 2, schema: 'app', name: 'b' }, { oid: 1, schema: 'public', name: 'a' }], truncate: true },
    { xid: 12, commitLsn: 0x300n, endLsn: 0x328n, commitTimeMs: T0, relations: [{ oid: 1, schema: 'public', name: 'a2' }], truncate: false },
  ]);
  tt.equal(a.inTransaction, false);
  tt.equal(a.relationCount, 2);
});

t.test('transactions: messages out of place are refused', async (tt) => {
  const cases: [string, Buffer[], RegExp][] = [
    ['a change outside a transaction', [po.relation(1, 'p', 'a'), po.insert(1, [])], /Insert outside a transaction|insert outside a transaction/],
    ['a commit without begin', [po.commit(1n, 2n, 0n)], /Commit outside a transaction/],
    ['a truncate outside a transaction', [po.truncate([1])], /Truncate outside/],
    ['a begin inside a transaction', [po.begin(1n, 0n, 1), po.begin(2n, 0n, 2)], /Begin of xid 2 inside the transaction of xid 1/],
    ['a change to an undescribed relation', [po.begin(1n, 0n, 1), po.update(77, [])], /relation 77, which no Relation message described/],
    ['a truncate of an undescribed relation', [po.begin(1n, 0n, 1), po.relation(1, 'p', 'a'), po.truncate([1, 78])], /relation 78/],
  ];
  for (const [name, msgs, re] of cases) {
    tt.throws(() => assemble(new TransactionAssembler(10), msgs), re, name);
    let err: unknown;
    try {
      assemble(new TransactionAssembler(10), msgs);
    } catch (e) {
      err = e;
    }
    tt.ok(err instanceof WalDecodeError, `${name}: a WalDecodeError (the stream is broken)`);
  }
});

t.test('transactions: the relation map is bounded; a change to an evicted relation breaks the stream', async (tt) => {
  const a = new TransactionAssembler(3);
  const msgs = [po.begin(1n, 0n, 1)];
  for (let oid = 1; oid <= 5; oid++) msgs.push(po.relation(oid, 's', `r${oid}`), po.insert(oid, []));
  msgs.push(po.commit(1n, 2n, 0n));
  const [c] = assemble(a, msgs);
  tt.strictSame(c?.relations.map((r) => r.oid), [1, 2, 3, 4, 5], 'every change of the transaction is reported');
  tt.equal(a.relationCount, 3, 'only three descriptions kept');
  tt.throws(() => assemble(a, [po.begin(3n, 0n, 2), po.insert(1, [])]), /relation 1, whose description was dropped to keep at most 3/);
  const b = new TransactionAssembler(2);
  assemble(b, [po.relation(1, 's', 'a'), po.relation(2, 's', 'b'), po.relation(1, 's', 'a'), po.relation(3, 's', 'c')]);
  tt.strictSame(assemble(b, [po.begin(3n, 0n, 2), po.insert(1, []), po.commit(3n, 4n, 0n)])[0]?.relations, [{ oid: 1, schema: 's', name: 'a' }], 'a described-again relation is the newest, not evicted');
});
