// The cache's probe of a session's settings: the batch it sends (an extended-protocol batch of a
// named statement of its own, closed again: the client's unnamed statement and portals are left
// alone) and how its answer is read (anything but the expected row means "unknown": not served).
import t from 'tap';
import { identityScope, parseProbeAnswer, probeBatch } from '../../src/cache/probe';

const PROBE_BATCH = probeBatch();
import { ParseMessage, BindMessage, ExecuteMessage, CloseMessage, decodeClientMessage } from '../../src/protocol/client-messages';
import { Frontend } from '../../src/protocol/codes';

function msg(type: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeUInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}

function dataRow(values: (string | null)[]): Buffer {
  const parts: Buffer[] = [Buffer.from([0, 0])];
  parts[0]!.writeInt16BE(values.length, 0);
  for (const v of values) {
    const len = Buffer.alloc(4);
    if (v === null) {
      len.writeInt32BE(-1, 0);
      parts.push(len);
      continue;
    }
    const b = Buffer.from(v, 'utf8');
    len.writeInt32BE(b.length, 0);
    parts.push(len, b);
  }
  return msg('D', Buffer.concat(parts));
}

const ROW = ['alice', 'bob', 'f', '["pg_catalog","s2","public"]', '"$user", s2, public', '0123456789abcdef0123456789abcdef', '[["app.tenant", "1"]]'];
const answer = (row: Buffer) =>
  Buffer.concat([msg('1', Buffer.alloc(0)), msg('2', Buffer.alloc(0)), row, msg('C', Buffer.from('SELECT 1\0')), msg('3', Buffer.alloc(0)), msg('Z', Buffer.from('I'))]);

t.test('the batch: Parse, Bind, Execute of a named statement of its own, Close of it, Sync', async (t) => {
  const types: number[] = [];
  let off = 0;
  const decoded = [];
  while (off < PROBE_BATCH.length) {
    const end = off + 1 + PROBE_BATCH.readUInt32BE(off + 1);
    types.push(PROBE_BATCH[off]!);
    decoded.push(decodeClientMessage(PROBE_BATCH[off]!, PROBE_BATCH, off, end));
    off = end;
  }
  t.strictSame(types, [Frontend.Parse, Frontend.Bind, Frontend.Execute, Frontend.Close, Frontend.Sync]);
  const [p, b, e, c] = decoded as [ParseMessage, BindMessage, ExecuteMessage, CloseMessage];
  t.not(p.statement, '', 'a named statement: the unnamed one is the client\'s');
  t.match(p.sql, /^\/\* pgscribe \*\/ SELECT /, 'marked as pgscribe\'s own SQL');
  t.match(p.sql, /pg_settings/, 'every setting');
  t.match(p.sql, /current_schemas\(true\)/, 'the effective search order');
  t.equal(b.statement, p.statement);
  t.equal(b.paramCount, 0);
  t.equal(e.maxRows, 0);
  t.strictSame([c.kind, c.name], ['S', p.statement], 'closed in the same batch');
});

t.test('the answer: the identity, or null for anything else', async (t) => {
  const id = parseProbeAnswer(answer(dataRow(ROW)));
  t.strictSame(id, {
    currentUser: 'alice',
    sessionUser: 'bob',
    hasTempSchema: false,
    schemas: ['pg_catalog', 's2', 'public'],
    searchPath: '"$user", s2, public',
    settingsDigest: '0123456789abcdef0123456789abcdef',
    customSettings: '[["app.tenant", "1"]]',
  });
  t.equal(parseProbeAnswer(answer(dataRow(ROW.map((v, i) => (i === 2 ? 't' : v)))))!.hasTempSchema, true, 'a temp schema');
  const failed = Buffer.concat([msg('E', Buffer.from('SERROR\0C42P05\0Mexists\0\0')), msg('Z', Buffer.from('I'))]);
  t.equal(parseProbeAnswer(failed), null, 'an error (e.g. the name is taken)');
  t.equal(parseProbeAnswer(answer(dataRow(ROW.slice(0, 6)))), null, 'a row of another shape');
  t.equal(parseProbeAnswer(answer(dataRow(ROW.map((v, i) => (i === 1 ? null : v))))), null, 'a NULL');
  t.equal(parseProbeAnswer(answer(dataRow(ROW.map((v, i) => (i === 3 ? '{pg_catalog}' : v))))), null, 'schemas that are not JSON');
  t.equal(parseProbeAnswer(answer(dataRow(ROW.map((v, i) => (i === 3 ? '[1,2]' : v))))), null, 'schemas that are not names');
  t.equal(parseProbeAnswer(Buffer.concat([msg('1', Buffer.alloc(0)), msg('Z', Buffer.from('I'))])), null, 'no row');
  const whole = answer(dataRow(ROW));
  const rowEnd = 5 + 5 + dataRow(ROW).length; // ParseComplete, BindComplete, the row
  const early: number[] = [];
  for (let cut = 0; cut < rowEnd; cut++) if (parseProbeAnswer(whole.subarray(0, cut)) !== null) early.push(cut);
  t.strictSame(early, [], `no identity from an answer cut before its row is whole (${rowEnd} cuts)`);
  const bad = Buffer.from(whole);
  bad.writeUInt32BE(2, 1); // a length below 4
  t.equal(parseProbeAnswer(bad), null, 'an impossible length');
});

t.test('identityScope: equal only when everything the probe saw is equal', async (t) => {
  const a = parseProbeAnswer(answer(dataRow(ROW)))!;
  t.equal(identityScope(a), identityScope({ ...a }), 'the same identity');
  for (const [what, other] of [
    ['current user', { ...a, currentUser: 'carol' }],
    ['session user', { ...a, sessionUser: 'carol' }],
    ['temp schema', { ...a, hasTempSchema: true }],
    ['schemas', { ...a, schemas: ['pg_catalog', 'public', 's2'] }],
    ['settings', { ...a, settingsDigest: 'f'.repeat(32) }],
    ['custom setting', { ...a, customSettings: '[["app.tenant", "2"]]' }],
  ] as const) {
    t.not(identityScope(other), identityScope(a), `a different ${what}`);
  }
});

t.test('custom settings: asked for by name, every name a role or database default sets and those given', async (t) => {
  const sqlOf = (b: Buffer): string => {
    const end = 1 + b.readUInt32BE(1);
    return (decodeClientMessage(b[0]!, b, 0, end) as ParseMessage).sql;
  };
  const plain = sqlOf(probeBatch());
  t.match(plain, /pg_db_role_setting/, 'the names role and database defaults set');
  t.match(plain, /current_setting\(n, true\)/, 'each asked for, missing or not');
  const named = sqlOf(probeBatch(['app.tenant', 'x.y_z']));
  t.match(named, /ARRAY\['app\.tenant', 'x\.y_z'\]/, 'the names the session SET');
  for (const bad of ["app.x'; DROP TABLE t; --", 'tenant', 'App.Tenant', 'app."t"']) {
    t.throws(() => probeBatch([bad]), `${JSON.stringify(bad)} is not written into SQL`);
  }
});
