// Message decoders and encoders, checked against the independent test encoder. Every decoder is
// given its message inside a larger buffer (bytes before, the rest of the real message and junk
// after) so that a read past `end` would change the answer or stop a throw.
import t from 'tap';
import {
  NEGOTIATION_REFUSED,
  ProtocolError,
  TERMINATE,
  decodeFields,
  decodeSaslMechanisms,
  decodeStartup,
  readStartupParams,
  encodeAuthenticationSasl,
  encodeCancelRequest,
  encodeErrorResponse,
  encodeSslRequest,
  isFatalError,
  rowShape,
  SSL_ACCEPTED,
} from '../../src/protocol/messages';
import { BindMessage, CloseMessage, DescribeMessage, ExecuteMessage, ParseMessage, QueryMessage, decodeClientMessage, nameAt } from '../../src/protocol/client-messages';
import { cstr, enc, errorFields, i16, i32 } from '../harness/wire';

// The client messages are decoded once into objects (client-messages.ts); these give the parts
// the tests compare as plain values (paramsAt as an offset in the buffer, as the test data has it).
const decodeQuery = (buf: Buffer, start: number, end: number): string => new QueryMessage(buf, start, end).sql;
const decodeParse = (buf: Buffer, start: number, end: number) => {
  const m = new ParseMessage(buf, start, end);
  return { statement: m.statement, sql: m.sql };
};
const decodeBind = (buf: Buffer, start: number, end: number) => {
  const m = new BindMessage(buf, start, end);
  return { portal: m.portal, statement: m.statement, paramFormats: m.formats, params: m.values, resultFormats: m.resultFormats, paramsAt: start + m.paramsAt };
};
const decodeExecute = (buf: Buffer, start: number, end: number): string => new ExecuteMessage(buf, start, end).portal;
const decodeClose = (buf: Buffer, start: number, end: number) => {
  const m = new CloseMessage(buf, start, end);
  return { kind: m.kind, name: m.name };
};
const decodeDescribe = (buf: Buffer, start: number, end: number) => {
  const m = new DescribeMessage(buf, start, end);
  return { kind: m.kind, name: m.name };
};

const PRE = Buffer.from([0x51, 0, 0, 0, 9, 0x41, 0]); // looks like the tail of another message
const JUNK = Buffer.from([0, 0, 0, 0, 0x53, 0, 0x50, 0, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0, 0]);

interface View {
  buf: Buffer;
  start: number;
  end: number;
}

/** msg placed at offset PRE.length of a bigger buffer, followed by `after` and junk. */
function embed(msg: Buffer, after: Buffer = Buffer.alloc(0)): View {
  const buf = Buffer.concat([PRE, msg, after, JUNK]);
  return { buf, start: PRE.length, end: PRE.length + msg.length };
}

/**
 * The first `len` bytes of msg with the length header fixed to match, embedded with the rest of
 * the original message right after `end`: a decoder that reads past `end` finds valid data there.
 */
function truncated(msg: Buffer, len: number, startup: boolean): View {
  const cut = Buffer.from(msg.subarray(0, len));
  if (startup) cut.writeUInt32BE(len, 0);
  else cut.writeUInt32BE(len - 1, 1);
  return embed(cut, msg.subarray(len));
}

type Decoder = (buf: Buffer, start: number, end: number) => unknown;

/** Cut msg at every length from `from` to full-1; every cut must throw ProtocolError. */
function everyTruncationThrows(tt: { strictSame(a: unknown, b: unknown, m: string): unknown }, name: string, decode: Decoder, msg: Buffer, startup = false) {
  const from = startup ? 4 : 5;
  const bad: string[] = [];
  for (let len = from; len < msg.length; len++) {
    const v = truncated(msg, len, startup);
    try {
      const r = decode(v.buf, v.start, v.end);
      bad.push(`len ${len}: returned ${JSON.stringify(r, (_k, x: unknown) => (x instanceof Map ? [...x] : x))}`);
    } catch (err) {
      if (!(err instanceof ProtocolError) || err.code !== 'PGSCRIBE_PROTOCOL') bad.push(`len ${len}: threw ${String(err)}`);
    }
  }
  tt.strictSame(bad, [], `${name}: all ${msg.length - from} truncations throw ProtocolError`);
}

/** Asserts that fn throws a ProtocolError (instance and stable code). */
function throwsProtocol(tt: { ok(v: unknown, m: string): unknown }, fn: () => unknown, name: string): void {
  let thrown: unknown = undefined;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  tt.ok(thrown instanceof ProtocolError && thrown.code === 'PGSCRIBE_PROTOCOL', `${name}: throws ProtocolError (got ${String(thrown)})`);
}

const call = <T>(decode: (buf: Buffer, start: number, end: number) => T, msg: Buffer): T => {
  const v = embed(msg);
  return decode(v.buf, v.start, v.end);
};

/** An ErrorResponse/NoticeResponse built by hand: code byte, value, NUL ... then a final NUL. */
function fieldsMessage(type: string, fields: [string, string][]): Buffer {
  return enc.raw(type, Buffer.concat([...fields.map(([k, v]) => Buffer.concat([Buffer.from(k, 'latin1'), cstr(v)])), Buffer.from([0])]));
}

// ---- Query -----------------------------------------------------------------------------------

t.test('decodeQuery', async (tt) => {
  tt.equal(call(decodeQuery, enc.query('SELECT 1')), 'SELECT 1');
  tt.equal(call(decodeQuery, enc.query('')), '', 'empty query string');
  tt.equal(call(decodeQuery, enc.query("SELECT 'é日本😀'\n  FROM t")), "SELECT 'é日本😀'\n  FROM t", 'UTF-8 and newlines');
  everyTruncationThrows(tt, 'Query', decodeQuery, enc.query('SELECT 42 AS answer'));
  everyTruncationThrows(tt, 'Query (empty)', decodeQuery, enc.query(''));
  throwsProtocol(tt, () => call(decodeQuery, enc.raw('Q', Buffer.from('SELECT 1'))), 'no terminator at all');
});

// ---- Parse -----------------------------------------------------------------------------------

t.test('decodeParse', async (tt) => {
  tt.strictSame(call(decodeParse, enc.parse('s1', 'SELECT $1::int, $2', [23, 25])), { statement: 's1', sql: 'SELECT $1::int, $2' });
  tt.strictSame(call(decodeParse, enc.parse('', 'SELECT 1')), { statement: '', sql: 'SELECT 1' }, 'unnamed statement');
  tt.strictSame(call(decodeParse, enc.parse('日本', 'SELECT $1', [0])), { statement: '日本', sql: 'SELECT $1' }, 'UTF-8 name, unspecified type OID 0');
  everyTruncationThrows(tt, 'Parse with types', decodeParse, enc.parse('stmt_1', 'SELECT $1, $2', [23, 1043]));
  everyTruncationThrows(tt, 'Parse without types', decodeParse, enc.parse('', 'SELECT 1'));

  const negative = enc.raw('P', Buffer.concat([cstr('s'), cstr('SELECT 1'), i16(-1)]));
  throwsProtocol(tt, () => call(decodeParse, negative), 'negative type count');
  const tooMany = enc.raw('P', Buffer.concat([cstr('s'), cstr('SELECT 1'), i16(3), i32(23), i32(23)]));
  throwsProtocol(tt, () => call(decodeParse, tooMany), 'type count larger than the OIDs present');
});

// ---- Bind ------------------------------------------------------------------------------------

t.test('decodeBind: names, text/NULL/empty/binary params, formats', async (tt) => {
  const bin = Buffer.from([0x00, 0x01, 0xfe, 0xff]);
  const msg = enc.bind('portal_1', 'stmt_1', ['42', null, '', bin, 'é'], [0, 0, 0, 1, 0], [1, 0]);
  const v = embed(msg);
  const b = decodeBind(v.buf, v.start, v.end);
  tt.equal(b.portal, 'portal_1');
  tt.equal(b.statement, 'stmt_1');
  tt.strictSame(b.paramFormats, [0, 0, 0, 1, 0]);
  tt.strictSame(b.resultFormats, [1, 0]);
  tt.equal(b.params.length, 5);
  tt.strictSame(b.params[0], Buffer.from('42'));
  tt.equal(b.params[1], null, 'NULL is null');
  tt.strictSame(b.params[2], Buffer.alloc(0), 'empty string is an empty buffer, not NULL');
  tt.strictSame(b.params[3], bin, 'binary value bytes intact');
  tt.strictSame(b.params[4], Buffer.from('é', 'utf8'));
  // Documented as views of the message buffer, not copies.
  const p0 = b.params[0]!;
  tt.equal(p0.buffer, v.buf.buffer, 'parameter is a view of the message');
  tt.equal(p0.byteOffset - v.buf.byteOffset, v.buf.indexOf('42', v.start));
});

t.test('decodeBind: unnamed portal and statement, no params, one format for all', async (tt) => {
  // paramsAt: after the 5-byte header and the two names, from the start of the buffer.
  tt.strictSame(call(decodeBind, enc.bind('', '', [])), { portal: '', statement: '', paramFormats: [], params: [], resultFormats: [], paramsAt: PRE.length + 5 + 1 + 1 });
  const all = call(decodeBind, enc.bind('', 's', [Buffer.from([1]), Buffer.from([2, 3])], [1], [1]));
  tt.strictSame(all, { portal: '', statement: 's', paramFormats: [1], params: [Buffer.from([1]), Buffer.from([2, 3])], resultFormats: [1], paramsAt: PRE.length + 5 + 1 + 2 });
  tt.strictSame(call(decodeBind, enc.bind('p', '', [null, null])).params, [null, null], 'all NULL');
});

t.test('decodeBind: every truncation throws', async (tt) => {
  everyTruncationThrows(tt, 'Bind', decodeBind, enc.bind('p1', 's1', ['42', null, Buffer.from([0, 0, 0, 0]), 'text'], [0, 0, 1, 0], [1, 1]));
  everyTruncationThrows(tt, 'Bind (unnamed, no params)', decodeBind, enc.bind('', '', []));
  everyTruncationThrows(tt, 'Bind (70 KB parameter)', decodeBind, enc.bind('', 's', ['y'.repeat(70 * 1024)]));
});

t.test('decodeBind: malformed counts and lengths throw', async (tt) => {
  const head = Buffer.concat([cstr('p'), cstr('s')]);
  const cases: [string, Buffer][] = [
    ['negative format count', Buffer.concat([head, i16(-1), i16(0), i16(0)])],
    ['negative parameter count', Buffer.concat([head, i16(0), i16(-2), i16(0)])],
    ['parameter length -2', Buffer.concat([head, i16(0), i16(1), i32(-2), i16(0)])],
    ['parameter length -65536 (0xffff0000)', Buffer.concat([head, i16(0), i16(1), i32(-65536), i16(0)])],
    ['parameter length past the end', Buffer.concat([head, i16(0), i16(1), i32(0x7fffffff), Buffer.from('abc'), i16(0)])],
    ['more parameters than present', Buffer.concat([head, i16(0), i16(2), i32(1), Buffer.from('a'), i16(0)])],
    ['negative result format count', Buffer.concat([head, i16(0), i16(0), i16(-1)])],
    ['result format count past the end', Buffer.concat([head, i16(0), i16(0), i16(3), i16(1)])],
  ];
  for (const [name, body] of cases) throwsProtocol(tt, () => call(decodeBind, enc.raw('B', body)), name);
});

// ---- Execute, Close ----------------------------------------------------------------------------

t.test('decodeExecute', async (tt) => {
  tt.equal(call(decodeExecute, enc.execute('', 0)), '', 'unnamed portal');
  tt.equal(call(decodeExecute, enc.execute('portal_9', 100)), 'portal_9');
  everyTruncationThrows(tt, 'Execute', decodeExecute, enc.execute('p1', 5));
  everyTruncationThrows(tt, 'Execute (unnamed)', decodeExecute, enc.execute('', 0));
});

t.test('decodeClose', async (tt) => {
  tt.strictSame(call(decodeClose, enc.close('S', 's1')), { kind: 'S', name: 's1' });
  tt.strictSame(call(decodeClose, enc.close('P', '')), { kind: 'P', name: '' });
  tt.strictSame(call(decodeClose, enc.close('S', '日本')), { kind: 'S', name: '日本' });
  throwsProtocol(tt, () => call(decodeClose, enc.raw('C', Buffer.concat([Buffer.from('X'), cstr('s1')]))), 'unknown target type');
  everyTruncationThrows(tt, 'Close S', decodeClose, enc.close('S', 'stmt'));
  everyTruncationThrows(tt, 'Close P unnamed', decodeClose, enc.close('P', ''));
});

t.test('decodeDescribe', async (tt) => {
  tt.strictSame(call(decodeDescribe, enc.describe('S', 's1')), { kind: 'S', name: 's1' });
  tt.strictSame(call(decodeDescribe, enc.describe('P', '')), { kind: 'P', name: '' });
  throwsProtocol(tt, () => call(decodeDescribe, enc.raw('D', Buffer.concat([Buffer.from('Q'), cstr('s1')]))), 'unknown target type');
  everyTruncationThrows(tt, 'Describe S', decodeDescribe, enc.describe('S', 'stmt'));
  everyTruncationThrows(tt, 'Describe P unnamed', decodeDescribe, enc.describe('P', ''));
});

// ---- decoded once ------------------------------------------------------------------------------

t.test('decodeClientMessage: one object per inspected type, null for the rest', async (tt) => {
  const cases: [Buffer, unknown][] = [
    [enc.query('SELECT 1'), QueryMessage],
    [enc.parse('', 'SELECT 1'), ParseMessage],
    [enc.bind('', '', []), BindMessage],
    [enc.describe('P', ''), DescribeMessage],
    [enc.execute('', 0), ExecuteMessage],
    [enc.close('S', 'x'), CloseMessage],
  ];
  for (const [msg, cls] of cases) {
    const v = embed(msg);
    const m = decodeClientMessage(msg[0]!, v.buf, v.start, v.end);
    tt.ok(m instanceof (cls as new (...a: never[]) => object), `${String.fromCharCode(msg[0]!)} decodes to ${(cls as { name: string }).name}`);
    tt.equal(m!.type, msg[0], 'type is the type byte');
  }
  const sync = enc.sync();
  tt.equal(decodeClientMessage(sync[0]!, sync, 0, sync.length), null, 'Sync is not looked into');
});

t.test('a decoded message: UTF-8 text for the log, the bytes for keys, the row limit', async (tt) => {
  const q = call((b, s, e) => new QueryMessage(b, s, e), enc.query("SELECT 'é'"));
  tt.equal(q.sql, "SELECT 'é'");
  tt.equal(q.sqlBytes, Buffer.from("SELECT 'é'", 'utf8').toString('latin1'), 'one char per byte');
  tt.equal(q.sqlLength, Buffer.byteLength("SELECT 'é'"));
  const p = call((b, s, e) => new ParseMessage(b, s, e), enc.parse('n', 'SELECT $1', [23]));
  tt.equal(p.definitionBytes(), 'SELECT $1\0\0\x01\0\0\0\x17', 'definition: SQL, NUL, type count, OIDs');
  tt.equal(p.sqlLength, 9);
  const x = call((b, s, e) => new ExecuteMessage(b, s, e), enc.execute('p', 100));
  tt.equal(x.maxRows, 100);
  const b = call((bb, s, e) => new BindMessage(bb, s, e), enc.bind('', 's', ['ab', null], [0], [1]));
  tt.equal(b.paramsBytes(), Buffer.concat([i16(1), i16(0), i16(2), i32(2), Buffer.from('ab'), i32(-1), i16(1), i16(1)]).toString('latin1'), 'the parameter section as bytes');
  tt.equal(b.paramCount, 2);
});

t.test('keep() moves a decoded message out of its chunk without decoding it again', async (tt) => {
  const chunk = Buffer.concat([enc.parse('s', 'SELECT 1'), enc.bind('p', 's', ['v1', 'v22'])]);
  const plen = chunk.readUInt32BE(1) + 1;
  const p = new ParseMessage(chunk, 0, plen);
  const b = new BindMessage(chunk, plen, chunk.length);
  const before = b.values;
  tt.equal(before[0]!.buffer, chunk.buffer, 'a view of the chunk until kept');
  p.keep();
  b.keep();
  chunk.fill(0);
  tt.equal(p.sql, 'SELECT 1', 'the copy survives the chunk');
  tt.equal(p.statement, 's');
  tt.equal(b.portal, 'p');
  tt.strictSame(b.values, [Buffer.from('v1'), Buffer.from('v22')], 'parameter views point into the copy');
  tt.equal(b.start, 0);
  tt.equal(b.buf[0], 0x42, "Bind's type byte");
});

// ---- startup packets ---------------------------------------------------------------------------

t.test('decodeStartup: the four request kinds', async (tt) => {
  tt.strictSame(call(decodeStartup, enc.sslRequest()), { kind: 'ssl' });
  tt.strictSame(call(decodeStartup, enc.gssencRequest()), { kind: 'gssenc' });
  tt.strictSame(call(decodeStartup, enc.cancel(4242, -123456789)), { kind: 'cancel', pid: 4242, secret: -123456789 });
  tt.strictSame(call(decodeStartup, enc.cancel(0x7fffffff, -0x80000000)), { kind: 'cancel', pid: 0x7fffffff, secret: -0x80000000 });

  const s = call(decodeStartup, enc.startup({ user: 'alice', database: 'shop', application_name: 'psql é' }));
  tt.strictSame(s, {
    kind: 'startup',
    major: 3,
    minor: 0,
    params: new Map([
      ['user', 'alice'],
      ['database', 'shop'],
      ['application_name', 'psql é'],
    ]),
  });
  tt.strictSame(call(decodeStartup, enc.startup({})), { kind: 'startup', major: 3, minor: 0, params: new Map() }, 'no parameters');
  tt.strictSame(call(decodeStartup, enc.startup({ user: 'u', options: '' }, 0x00030002)), {
    kind: 'startup',
    major: 3,
    minor: 2,
    params: new Map([
      ['user', 'u'],
      ['options', ''],
    ]),
  }, 'protocol 3.2, empty value');
});

t.test('decodeStartup: unsupported versions and codes', async (tt) => {
  tt.strictSame(call(decodeStartup, enc.startup({ user: 'u' }, 0x00020000)), { kind: 'unsupported', code: 0x00020000 }, 'protocol 2.0');
  tt.strictSame(call(decodeStartup, enc.startup({ user: 'u' }, 0x00040000)), { kind: 'unsupported', code: 0x00040000 }, 'protocol 4.0');
  const unknown = Buffer.concat([i32(8), i32(80877105)]); // 1234.5681: not a request code
  tt.strictSame(call(decodeStartup, unknown), { kind: 'unsupported', code: 80877105 });
});

// The postmaster's reading: strings until an empty name, a name without a value, or the end; the
// packet always reads (PostgreSQL judges its layout itself, pgscribe only names the session).
t.test('readStartupParams: what the postmaster reads, for any version and any layout', async (tt) => {
  const body = (...parts: Buffer[]) => Buffer.concat([i32(8 + Buffer.concat(parts).length), i32(0x00030000), ...parts]);
  const z = (s: string) => cstr(s);
  const cases: [string, Buffer, [string, string][]][] = [
    ['well formed', enc.startup({ user: 'alice', database: 'shop' }), [['user', 'alice'], ['database', 'shop']]],
    ['protocol 2.0', enc.startup({ user: 'bob' }, 0x00020000), [['user', 'bob']]],
    ['no parameters', enc.startup({}), []],
    ['no terminator', body(z('user'), z('carol')), [['user', 'carol']]],
    ['a name without its value', body(z('user'), z('dave'), z('database')), [['user', 'dave']]],
    ['a value without its NUL', body(z('user'), Buffer.from('erin')), [['user', 'erin']]],
    ['a name without its NUL', body(z('user'), z('fay'), Buffer.from('datab')), [['user', 'fay']]],
    ['bytes after the terminator', body(z('user'), z('gus'), Buffer.from([0, 0x41, 0])), [['user', 'gus']]],
    ['the later of two users', body(z('user'), z('h1'), z('user'), z('h2'), Buffer.from([0])), [['user', 'h2']]],
    ['only the 8-byte header', Buffer.concat([i32(8), i32(0x00030000)]), []],
  ];
  for (const [name, packet, want] of cases) {
    tt.strictSame([...call(readStartupParams, packet)], want, name);
    // Nothing is read past the packet's end, whatever follows it in the buffer.
    const v = embed(packet);
    v.buf.fill(0x41, v.end);
    tt.strictSame([...readStartupParams(v.buf, v.start, v.end)], want, `${name}: bounded by the packet`);
  }
});

t.test('decodeStartup: every truncation throws (never a short or partial result)', async (tt) => {
  // A cut StartupMessage lacks its final terminator (or more); a cut request lacks its code or key.
  everyTruncationThrows(tt, 'StartupMessage', decodeStartup, enc.startup({ user: 'alice', database: 'shop' }), true);
  everyTruncationThrows(tt, 'StartupMessage (no params)', decodeStartup, enc.startup({}), true);
  everyTruncationThrows(tt, 'SSLRequest', decodeStartup, enc.sslRequest(), true);
  everyTruncationThrows(tt, 'CancelRequest', decodeStartup, enc.cancel(1, 2), true);
});

// ---- ErrorResponse ----------------------------------------------------------------------------

t.test('decodeFields', async (tt) => {
  const msg = fieldsMessage('E', [
    ['S', 'FEHLER'],
    ['V', 'ERROR'],
    ['C', '42P01'],
    ['M', 'relation "nope" does not exist'],
    ['P', '15'],
  ]);
  tt.strictSame(
    call(decodeFields, msg),
    new Map([
      ['S', 'FEHLER'],
      ['V', 'ERROR'],
      ['C', '42P01'],
      ['M', 'relation "nope" does not exist'],
      ['P', '15'],
    ]),
  );
  tt.strictSame(call(decodeFields, fieldsMessage('N', [])), new Map(), 'no fields');
  tt.strictSame(call(decodeFields, fieldsMessage('E', [['M', '']])), new Map([['M', '']]), 'empty value');
});

t.test('decodeFields: every truncation throws', async (tt) => {
  // A message cut right after a field's NUL has no final terminator: that is malformed too.
  everyTruncationThrows(tt, 'ErrorResponse', decodeFields, fieldsMessage('E', [['S', 'ERROR'], ['C', '22012'], ['M', 'division by zero']]));
});

t.test('isFatalError', async (tt) => {
  const f = (fields: [string, string][]) => call(isFatalError, fieldsMessage('E', fields));
  tt.equal(f([['S', 'FATAL'], ['V', 'FATAL'], ['C', '57P01'], ['M', 'bye']]), true, 'FATAL');
  tt.equal(f([['S', 'PANIC'], ['V', 'PANIC'], ['M', 'x']]), true, 'PANIC');
  tt.equal(f([['S', 'ERROR'], ['V', 'ERROR'], ['M', 'x']]), false, 'ERROR');
  tt.equal(f([['S', 'FATAL'], ['M', 'x']]), true, 'S only (pre-9.6 server)');
  tt.equal(f([['S', 'SCHWERWIEGEND'], ['V', 'FATAL']]), true, 'localized S, V decides');
  tt.equal(f([['S', 'FATAL'], ['V', 'ERROR']]), false, 'V wins over S');
  tt.equal(f([['M', 'no severity']]), false);
  tt.equal(call(isFatalError, enc.raw('E', Buffer.from('VFATAL'))), false, 'malformed: no terminator, no throw');
});

t.test('encodeErrorResponse: exact bytes, length header, round trip', async (tt) => {
  const cases = [
    { severity: 'FATAL' as const, code: '08P01', message: 'pgscribe: invalid message length' },
    { severity: 'ERROR' as const, code: '53300', message: 'too many: é日本😀', detail: 'détail', hint: 'try later' },
    { severity: 'FATAL' as const, code: '08001', message: '', hint: 'only a hint' },
    { severity: 'ERROR' as const, code: '0A000', message: 'm', detail: '' },
  ];
  for (const e of cases) {
    const b = encodeErrorResponse(e);
    const fields: [string, string][] = [
      ['S', e.severity],
      ['V', e.severity],
      ['C', e.code],
      ['M', e.message],
    ];
    if (e.detail !== undefined) fields.push(['D', e.detail]);
    if (e.hint !== undefined) fields.push(['H', e.hint]);
    tt.strictSame(b, fieldsMessage('E', fields), `bytes: ${JSON.stringify(e)}`);
    tt.equal(b[0], 0x45, "type 'E'");
    tt.equal(b.readUInt32BE(1), b.length - 1, 'length header counts everything but the type byte');
    tt.equal(b[b.length - 1], 0, 'final terminator');
    tt.strictSame(call(decodeFields, b), new Map(fields), 'decodeFields round trip');
    tt.strictSame(errorFields(b.subarray(5)), Object.fromEntries(fields), 'independent decoder agrees');
    tt.equal(call(isFatalError, b), e.severity === 'FATAL');
  }
});

t.test('encodeCancelRequest, TERMINATE, NEGOTIATION_REFUSED', async (tt) => {
  for (const [pid, secret] of [
    [1234, 5678],
    [0x7fffffff, -1],
    [1, -0x80000000],
    [0, 0],
  ] as const) {
    const b = encodeCancelRequest(pid, secret);
    tt.strictSame(b, enc.cancel(pid, secret), `cancel(${pid}, ${secret})`);
    tt.strictSame(call(decodeStartup, b), { kind: 'cancel', pid, secret }, 'decodes back');
  }
  tt.strictSame(TERMINATE, enc.terminate());
  tt.strictSame(NEGOTIATION_REFUSED, Buffer.from([0x4e]));
});

// ---- AuthenticationSASL, SSLRequest -----------------------------------------------------------------

/** AuthenticationSASL by hand: code 10, the names, an empty name. */
function saslMessage(mechanisms: string[]): Buffer {
  return enc.raw('R', Buffer.concat([i32(10), ...mechanisms.map(cstr), Buffer.from([0])]));
}

t.test('decodeSaslMechanisms and encodeAuthenticationSasl', async (tt) => {
  for (const list of [['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'], ['SCRAM-SHA-256'], [], ['a', 'é']]) {
    const msg = saslMessage(list);
    tt.strictSame(call(decodeSaslMechanisms, msg), list, `decodes ${JSON.stringify(list)}`);
    tt.strictSame(encodeAuthenticationSasl(list), msg, `encodes ${JSON.stringify(list)} byte for byte`);
  }
  tt.equal(call(decodeSaslMechanisms, enc.raw('R', i32(0))), null, 'AuthenticationOk is not SASL');
  tt.equal(call(decodeSaslMechanisms, enc.raw('R', Buffer.concat([i32(11), Buffer.from('c=biws')]))), null, 'SASLContinue is not the list');
  everyTruncationThrows(tt, 'AuthenticationSASL', decodeSaslMechanisms, saslMessage(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']));
  throwsProtocol(tt, () => call(decodeSaslMechanisms, enc.raw('R', Buffer.from([0, 0]))), 'a code cut short');
});

t.test('encodeSslRequest, SSL_ACCEPTED', async (tt) => {
  tt.strictSame(encodeSslRequest(), enc.sslRequest());
  tt.strictSame(call(decodeStartup, encodeSslRequest()), { kind: 'ssl' });
  tt.strictSame(SSL_ACCEPTED, Buffer.from([0x53]));
});

t.test('rowShape: a RowDescription without its format codes', async (tt) => {
  const field = (name: string, type: number, format: number) =>
    Buffer.concat([cstr(name), i32(16384), i16(1), i32(type), i16(4), i32(-1), i16(format)]);
  const rd = (...fields: Buffer[]) => enc.raw('T', Buffer.concat([i16(fields.length), ...fields]));
  const text = rd(field('v', 23, 0), field('w', 25, 0));
  const binary = rd(field('v', 23, 1), field('w', 25, 1));
  const v = embed(binary);
  tt.equal(rowShape(v.buf, v.start, v.end), text.toString('latin1'), 'a portal\'s binary formats: the shape of the statement\'s description');
  const retyped = rd(field('v', 25, 0), field('w', 25, 0));
  tt.not(rowShape(retyped, 0, retyped.length), rowShape(text, 0, text.length), 'another type is another shape');
  const renamed = rd(field('x', 23, 0), field('w', 25, 0));
  tt.not(rowShape(renamed, 0, renamed.length), rowShape(text, 0, text.length), 'another name is another shape');
  const cut = Buffer.from(text.subarray(0, text.length - 3));
  tt.equal(rowShape(cut, 0, cut.length), cut.toString('latin1'), 'a malformed one is returned as it is');
  tt.equal(v.buf[v.end - 1], 1, 'the message itself is not changed');
});

t.test('nameAt: the same string as decoding the bytes, whatever the memo holds', async (tt) => {
  // Names that repeat, share lengths, differ in one byte, run past the memo's 64 bytes, or are
  // not valid UTF-8; each read from a random place in a buffer of junk.
  const pool = ['P_0', 'P_1', 'Q_0', 'S_1', 'S_10', 'ß', 'é', 'x'.repeat(64), 'x'.repeat(63) + 'y', 'x'.repeat(65), 'x'.repeat(65) + 'z'];
  const bytesOf = (name: string) => (name === 'bad' ? Buffer.from([0xc3, 0x28]) : Buffer.from(name, 'utf8'));
  pool.push('bad');
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2147483648) % n);
  let mismatches = 0;
  for (let i = 0; i < 3000; i++) {
    const name = pool[rand(pool.length)]!;
    const bytes = bytesOf(name);
    const before = rand(9);
    const buf = Buffer.concat([Buffer.from('junk!!!!!'.slice(0, before)), bytes, Buffer.from([0, rand(256)])]);
    const got = nameAt(buf, before, before + bytes.length);
    if (got !== bytes.toString('utf8')) mismatches++;
  }
  tt.equal(mismatches, 0);
  tt.equal(nameAt(Buffer.from('ab'), 1, 1), '', 'an empty name');
});
