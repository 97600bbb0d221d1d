// The decoders and encoders of pgscribe's own PostgreSQL client (src/pg/messages.ts), against
// the hand-written server messages of test/helpers/pg-backend.ts. Each decoder gets its message
// inside a larger buffer (bytes before, the rest of a real message and junk after), so that a
// read past `end` would change an answer or stop a throw. (The stream through the Framer, split
// at every byte offset, is tested in pg-session.test.ts.)
import t, { type Test } from 'tap';
import { ProtocolError } from '../../src/protocol/messages';
import * as m from '../../src/pg/messages';
import { PgError } from '../../src/pg/errors';
import { be } from '../helpers/pg-backend';
import { cstr, enc, i16, i32 } from '../harness/wire';

const PRE = Buffer.from([0x44, 0, 0, 0, 6, 0, 1]); // the tail of another message
const JUNK = Buffer.from([0, 0, 0, 0, 0x5a, 0, 0x49, 0, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0, 0]);

type Decoder = (buf: Buffer, start: number, end: number) => unknown;

function call(decode: Decoder, msg: Buffer, after: Buffer = Buffer.alloc(0)): unknown {
  const buf = Buffer.concat([PRE, msg, after, JUNK]);
  return decode(buf, PRE.length, PRE.length + msg.length);
}

function throwsProtocol(tt: Test, fn: () => unknown, name: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  tt.ok(thrown instanceof ProtocolError, `${name}: throws ProtocolError (got ${String(thrown)})`);
}

/**
 * Every cut of msg (header length fixed to match, the rest of the real message right after `end`)
 * throws ProtocolError, and so does the message with one byte too many.
 */
function strictLength(tt: Test, name: string, decode: Decoder, msg: Buffer): void {
  const bad: string[] = [];
  for (let len = 5; len < msg.length; len++) {
    const cut = Buffer.from(msg.subarray(0, len));
    cut.writeUInt32BE(len - 1, 1);
    try {
      bad.push(`len ${len}: returned ${JSON.stringify(call(decode, cut, msg.subarray(len)))}`);
    } catch (err) {
      if (!(err instanceof ProtocolError)) bad.push(`len ${len}: threw ${String(err)}`);
    }
  }
  tt.strictSame(bad, [], `${name}: all ${msg.length - 5} truncations throw ProtocolError`);
  const longer = Buffer.concat([msg, Buffer.from([0])]);
  longer.writeUInt32BE(longer.length - 1, 1);
  throwsProtocol(tt, () => call(decode, longer), `${name} with a byte too many`);
}

t.test('Authentication requests', async (tt) => {
  tt.strictSame(call(m.decodeAuthentication, be.authOk()), { kind: 'ok' });
  tt.strictSame(call(m.decodeAuthentication, be.authCleartext()), { kind: 'cleartext' });
  tt.strictSame(call(m.decodeAuthentication, be.authMd5(Buffer.from([1, 0, 0xfe, 0xff]))), { kind: 'md5', salt: Buffer.from([1, 0, 0xfe, 0xff]) });
  tt.strictSame(call(m.decodeAuthentication, be.authSasl(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'])), { kind: 'sasl', mechanisms: ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'] });
  tt.strictSame(call(m.decodeAuthentication, be.authSasl([])), { kind: 'sasl', mechanisms: [] }, 'an empty mechanism list decodes (and is refused later)');
  tt.strictSame(call(m.decodeAuthentication, be.saslContinue('r=abc,s=c2FsdA==,i=4096')), { kind: 'sasl-continue', data: Buffer.from('r=abc,s=c2FsdA==,i=4096') });
  tt.strictSame(call(m.decodeAuthentication, be.saslFinal('v=xyz')), { kind: 'sasl-final', data: Buffer.from('v=xyz') });
  for (const code of [2, 6, 7, 9, 99]) tt.strictSame(call(m.decodeAuthentication, be.authCode(code)), { kind: 'unsupported', code });
  strictLength(tt, 'AuthenticationOk', m.decodeAuthentication, be.authOk());
  strictLength(tt, 'AuthenticationCleartextPassword', m.decodeAuthentication, be.authCleartext());
  strictLength(tt, 'AuthenticationMD5Password', m.decodeAuthentication, be.authMd5(Buffer.from('salt')));
  strictLength(tt, 'AuthenticationSASL', m.decodeAuthentication, be.authSasl(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']));
  // SASLContinue/SASLFinal carry the rest of the message: any length is theirs, the SCRAM parser judges it.
  const msg = be.saslContinue('r=abc');
  const chunk = Buffer.concat([PRE, msg, JUNK]);
  const got = m.decodeAuthentication(chunk, PRE.length, PRE.length + msg.length) as { data: Buffer };
  chunk.fill(0);
  tt.equal(got.data.toString(), 'r=abc', 'the SASL data is a copy: it outlives the chunk');
});

t.test('BackendKeyData, ReadyForQuery, CommandComplete', async (tt) => {
  tt.strictSame(call(m.decodeBackendKeyData, be.keyData(4242, -7)), { pid: 4242, secret: -7 });
  strictLength(tt, 'BackendKeyData', m.decodeBackendKeyData, be.keyData(1, 2));
  tt.equal(call(m.decodeReadyForQuery, be.ready('I')), 0x49);
  tt.equal(call(m.decodeReadyForQuery, be.ready('T')), 0x54);
  tt.equal(call(m.decodeReadyForQuery, be.ready('E')), 0x45);
  throwsProtocol(tt, () => call(m.decodeReadyForQuery, enc.raw('Z', Buffer.from('X'))), 'unknown transaction status');
  strictLength(tt, 'ReadyForQuery', m.decodeReadyForQuery, be.ready('T'));
  tt.equal(call(m.decodeCommandComplete, be.complete('SELECT 3')), 'SELECT 3');
  tt.equal(call(m.decodeCommandComplete, be.complete('')), '');
  strictLength(tt, 'CommandComplete', m.decodeCommandComplete, be.complete('INSERT 0 1'));
});

t.test('RowDescription', async (tt) => {
  tt.strictSame(call(m.decodeRowDescription, be.rowDesc(['a', 'é日本', ''])), { names: ['a', 'é日本', ''], binary: false });
  tt.strictSame(call(m.decodeRowDescription, be.rowDesc([])), { names: [], binary: false });
  tt.strictSame(call(m.decodeRowDescription, be.rowDesc(['x'], 1)), { names: ['x'], binary: true }, 'binary format noticed');
  strictLength(tt, 'RowDescription', m.decodeRowDescription, be.rowDesc(['id', 'name', 'é']));
  throwsProtocol(tt, () => call(m.decodeRowDescription, enc.raw('T', i16(-1))), 'negative field count');
  throwsProtocol(tt, () => call(m.decodeRowDescription, enc.raw('T', Buffer.concat([i16(2), cstr('a'), Buffer.alloc(18)]))), 'count larger than the fields present');
});

t.test('DataRow', async (tt) => {
  tt.strictSame(call(m.decodeDataRow, be.dataRow(['1', null, '', 'é日本😀'])), ['1', null, '', 'é日本😀']);
  tt.strictSame(call(m.decodeDataRow, be.dataRow([])), []);
  tt.strictSame(call(m.decodeDataRow, be.dataRow(['x'.repeat(70_000)])), ['x'.repeat(70_000)], 'a 70 KB value');
  strictLength(tt, 'DataRow', m.decodeDataRow, be.dataRow(['42', null, 'text', '']));
  strictLength(tt, 'DataRow (nulls)', m.decodeDataRow, be.dataRow([null, null]));
  const cases: [string, Buffer][] = [
    ['negative column count', i16(-2)],
    ['column length -2', Buffer.concat([i16(1), i32(-2)])],
    ['column length -65536', Buffer.concat([i16(1), i32(-65536)])],
    ['column length past the end', Buffer.concat([i16(1), i32(0x7fffffff), Buffer.from('abc')])],
    ['more columns than present', Buffer.concat([i16(2), i32(1), Buffer.from('a')])],
  ];
  for (const [name, body] of cases) throwsProtocol(tt, () => call(m.decodeDataRow, enc.raw('D', body)), name);
});

t.test('ErrorResponse and NoticeResponse', async (tt) => {
  const e = call(m.decodeError, be.error([['S', 'ERROR'], ['V', 'ERROR'], ['C', '42P01'], ['M', 'relation "nope" does not exist'], ['D', 'd'], ['H', 'h'], ['P', '15']])) as PgError;
  tt.ok(e instanceof PgError);
  tt.strictSame([e.code, e.severity, e.message, e.detail, e.hint, e.fatal], ['42P01', 'ERROR', 'relation "nope" does not exist', 'd', 'h', false]);
  const f = call(m.decodeError, be.error([['S', 'FATAL'], ['C', '57P01'], ['M', 'terminating connection']])) as PgError;
  tt.strictSame([f.severity, f.fatal, 'detail' in f, 'hint' in f], ['FATAL', true, false, false], 'severity from S without V; no detail, no hint');
  const localized = call(m.decodeError, be.error([['S', 'FATAL'], ['V', 'PANIC'], ['C', 'XX000'], ['M', 'm']])) as PgError;
  tt.equal(localized.severity, 'PANIC', 'V (never localized) wins over S');
  tt.ok(localized.fatal);
  for (const missing of ['S', 'C', 'M']) {
    const fields = ([['S', 'ERROR'], ['C', '42000'], ['M', 'm']] as [string, string][]).filter(([k]) => k !== missing);
    throwsProtocol(tt, () => call(m.decodeError, be.error(fields)), `no ${missing} field`);
  }
  const msg = be.sqlError('42601', 'syntax error at or near "x"');
  const bad: number[] = [];
  for (let len = 5; len < msg.length; len++) {
    const cut = Buffer.from(msg.subarray(0, len));
    cut.writeUInt32BE(len - 1, 1);
    try {
      call(m.decodeError, cut, msg.subarray(len));
      bad.push(len);
    } catch (err) {
      if (!(err instanceof ProtocolError)) bad.push(len);
    }
  }
  tt.strictSame(bad, [], 'every truncation of an ErrorResponse throws ProtocolError');
});

t.test('NegotiateProtocolVersion', async (tt) => {
  tt.strictSame(call(m.decodeNegotiateProtocolVersion, be.negotiate(0, ['_pq_.x', '_pq_.y'])), { minor: 0, unrecognized: ['_pq_.x', '_pq_.y'] });
  tt.strictSame(call(m.decodeNegotiateProtocolVersion, be.negotiate(0, [])), { minor: 0, unrecognized: [] });
  strictLength(tt, 'NegotiateProtocolVersion', m.decodeNegotiateProtocolVersion, be.negotiate(0, ['_pq_.a']));
  throwsProtocol(tt, () => call(m.decodeNegotiateProtocolVersion, enc.raw('v', Buffer.concat([i32(0), i32(-1)]))), 'negative option count');
});

t.test('encoders match the independent test encoder', async (tt) => {
  const params = new Map([
    ['user', 'u'],
    ['database', 'd é'],
    ['application_name', 'pgscribe catalog'],
  ]);
  tt.strictSame(m.encodeStartup(params), enc.startup({ user: 'u', database: 'd é', application_name: 'pgscribe catalog' }));
  tt.strictSame(m.encodeQuery("SELECT 'é' -- x"), enc.query("SELECT 'é' -- x"));
  tt.strictSame(m.encodePassword('md5abc'), enc.raw('p', cstr('md5abc')));
  const data = Buffer.from('n,,n=,r=abc');
  tt.strictSame(m.encodeSaslInitialResponse('SCRAM-SHA-256', data), enc.raw('p', Buffer.concat([cstr('SCRAM-SHA-256'), i32(data.length), data])));
  tt.strictSame(m.encodeSaslResponse(Buffer.from('c=biws')), enc.raw('p', Buffer.from('c=biws')));
  tt.strictSame(m.encodeCopyFail('no'), enc.raw('f', cstr('no')));
  throwsProtocol(tt, () => m.encodeQuery('SELECT 1\0; DROP TABLE t'), 'a NUL inside a query string');
  throwsProtocol(tt, () => m.encodeStartup(new Map([['options', 'a\0b']])), 'a NUL inside a startup parameter');
  throwsProtocol(tt, () => m.encodePassword('pa\0ss'), 'a NUL inside a password');
});
