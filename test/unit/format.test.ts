// Query log line formats: exact lines for each message type, escaping, parameter cutting, and
// the one-line-per-query invariant ("a line never contains a raw newline or control character").
import t from 'tap';
import {
  isoTime,
  jsonCompletionFormatter,
  jsonFormatter,
  textCompletionFormatter,
  textFormatter,
  unescapeText as srcUnescape,
  type BindParams,
  type QueryRecord,
  type SessionInfo,
} from '../../src/log/format';
import { formatOps } from '../../src/log/ops';
import { BindMessage } from '../../src/protocol/client-messages';
import { prng } from '../harness/prng';
import { enc } from '../harness/wire';

const S: SessionInfo = { id: 17, user: 'app', database: 'shop', client: '127.0.0.1:53422' };
const NOW = Date.UTC(2026, 10, 23, 10, 15, 2, 345);
const TS = '2026-11-23T10:15:02.345Z';
const PREFIX = `${TS} conn=17 app@shop 127.0.0.1:53422`;

const text = textFormatter({ params: true, paramMaxBytes: 256 });
const json = jsonFormatter({ params: true, paramMaxBytes: 256 });

const q = (sql: string | null): QueryRecord => ({ type: 'Q', statement: null, portal: null, sql, params: null });
const b = (values: (Buffer | string | null)[], formats: number[] = [], statement = 's1', portal = ''): QueryRecord => ({
  type: 'B',
  statement,
  portal,
  sql: 'SELECT $1',
  params: { formats, values: values.map((v) => (typeof v === 'string' ? Buffer.from(v, 'utf8') : v)) },
});

/** Independent inverse of the text format's escaping: \\ \n \r \t \xHH \uHHHH. */
function unescapeText(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const n = s[++i];
    if (n === '\\') out += '\\';
    else if (n === 'n') out += '\n';
    else if (n === 'r') out += '\r';
    else if (n === 't') out += '\t';
    else if (n === 'x') {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9a-f]{2}$/.test(hex)) throw new Error(`bad escape \\x${hex}`);
      out += String.fromCharCode(parseInt(hex, 16));
      i += 2;
    } else if (n === 'u') {
      const hex = s.slice(i + 1, i + 5);
      if (!/^[0-9a-f]{4}$/.test(hex)) throw new Error(`bad escape \\u${hex}`);
      out += String.fromCharCode(parseInt(hex, 16));
      i += 4;
    } else throw new Error(`bad escape \\${n}`);
  }
  return out;
}

/** Raw C0 controls or DEL anywhere but the final newline. */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\x00-\x1f\x7f]/;
const newlines = (line: string) => line.split('\n').length - 1;

// ---- text format -------------------------------------------------------------------------------

t.test('text: exact lines for Q, P, B, E', async (tt) => {
  tt.equal(text(S, q('SELECT 1'), NOW), `${PREFIX} Q sql=SELECT 1\n`);
  tt.equal(text(S, { type: 'P', statement: 's1', portal: null, sql: 'SELECT $1::int', params: null }, NOW), `${PREFIX} P stmt=s1 sql=SELECT $1::int\n`);
  tt.equal(text(S, { type: 'P', statement: '', portal: null, sql: 'SELECT 2', params: null }, NOW), `${PREFIX} P sql=SELECT 2\n`, 'unnamed statement: no stmt=');
  tt.equal(
    text(S, b(['42', null, Buffer.from([0xde, 0xad, 0xbe, 0xef])], [0, 0, 1]), NOW),
    `${PREFIX} B stmt=s1 params=('42', NULL, x'deadbeef') sql=SELECT $1\n`,
    'text, NULL, binary',
  );
  tt.equal(text(S, b(['x'], [], 's1', 'p1'), NOW), `${PREFIX} B stmt=s1 portal=p1 params=('x') sql=SELECT $1\n`, 'named portal');
  tt.equal(text(S, b([], [], '', ''), NOW), `${PREFIX} B params=() sql=SELECT $1\n`, 'no parameters');
  tt.equal(text(S, { type: 'E', statement: 's1', portal: 'p1', sql: 'SELECT $1', params: null }, NOW), `${PREFIX} E stmt=s1 portal=p1 sql=SELECT $1\n`);
  tt.equal(text(S, { type: 'E', statement: null, portal: '', sql: null, params: null }, NOW), `${PREFIX} E sql=?\n`, 'unknown SQL');
  tt.equal(text(S, q(''), NOW), `${PREFIX} Q sql=\n`, 'empty SQL');
});

t.test('text: names that are not plain tokens are JSON-quoted', async (tt) => {
  const p = (statement: string) => text(S, { type: 'P', statement, portal: null, sql: 'SELECT 1', params: null }, NOW);
  tt.equal(p('S_1.x$-y'), `${PREFIX} P stmt=S_1.x$-y sql=SELECT 1\n`, 'word chars . $ - stay bare');
  tt.equal(p('my stmt'), `${PREFIX} P stmt="my stmt" sql=SELECT 1\n`);
  tt.equal(p('a"b\nc'), `${PREFIX} P stmt="a\\"b\\nc" sql=SELECT 1\n`, 'quote and newline escaped');
  tt.equal(p('日本'), `${PREFIX} P stmt="日本" sql=SELECT 1\n`);
});

t.test('text: binary formats: one code for all, per parameter, missing codes mean text', async (tt) => {
  tt.equal(text(S, b([Buffer.from([1]), Buffer.from([2, 0xff])], [1]), NOW), `${PREFIX} B stmt=s1 params=(x'01', x'02ff') sql=SELECT $1\n`);
  tt.equal(text(S, b(['1', Buffer.from([0])], [0, 1]), NOW), `${PREFIX} B stmt=s1 params=('1', x'00') sql=SELECT $1\n`);
  tt.equal(text(S, b(['a', 'b'], []), NOW), `${PREFIX} B stmt=s1 params=('a', 'b') sql=SELECT $1\n`);
  tt.equal(text(S, b([Buffer.alloc(0)], [1]), NOW), `${PREFIX} B stmt=s1 params=(x'') sql=SELECT $1\n`, 'empty binary');
});

t.test('text: SQL and parameter escaping keeps one line', async (tt) => {
  const sql = "SELECT 'it''s'\n  FROM t\r\n\tWHERE a = 'x\\y' -- \x1b[31mred\x7f\x00";
  const line = text(S, q(sql), NOW);
  tt.equal(line, `${PREFIX} Q sql=SELECT 'it''s'\\n  FROM t\\r\\n\\tWHERE a = 'x\\\\y' -- \\x1b[31mred\\x7f\\x00\n`);
  tt.equal(newlines(line), 1);
  tt.ok(line.endsWith('\n'));
  tt.notOk(RAW_CONTROL.test(line.slice(0, -1)), 'no raw control characters');
  tt.equal(unescapeText(line.slice(PREFIX.length + ' Q sql='.length, -1)), sql, 'unescapes to the original');

  const pline = text(S, b(["it's\n", 'back\\slash', '\x1b\x7f\t\r']), NOW);
  tt.equal(pline, `${PREFIX} B stmt=s1 params=('it''s\\n', 'back\\\\slash', '\\x1b\\x7f\\t\\r') sql=SELECT $1\n`);
  tt.equal(newlines(pline), 1);
});

t.test('text: escaping round-trips random strings (test oracle and src unescapeText agree)', async (tt) => {
  const pool = ['a', 'Z', '0', 'x', '1', 'f', ' ', "'", '"', '\\', '\n', '\r', '\t', '\x00', '\x01', '\x1b', '\x1f', '\x7f', 'é', '日', '😀', '\\x41', '\\n'];
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const bad: string[] = [];
  for (let i = 0; i < 2000; i++) {
    let sql = '';
    const n = Math.floor(rnd() * 30);
    for (let j = 0; j < n; j++) sql += pool[Math.floor(rnd() * pool.length)];
    const line = text(S, q(sql), NOW);
    const body = line.slice(PREFIX.length + ' Q sql='.length, -1);
    if (!line.startsWith(`${PREFIX} Q sql=`) || newlines(line) !== 1 || !line.endsWith('\n') || RAW_CONTROL.test(body) || unescapeText(body) !== sql || srcUnescape(body) !== sql) {
      bad.push(JSON.stringify(sql));
      if (bad.length >= 5) break;
    }
  }
  tt.strictSame(bad, []);
});

t.test('text: parameters over paramMaxBytes are cut with a marker', async (tt) => {
  const f = textFormatter({ params: true, paramMaxBytes: 4 });
  const line = (values: (Buffer | string | null)[], formats: number[] = []) => f(S, b(values, formats), NOW);
  tt.equal(line(['abcd']), `${PREFIX} B stmt=s1 params=('abcd') sql=SELECT $1\n`, 'exactly the limit: whole');
  tt.equal(line(['abcdefgh']), `${PREFIX} B stmt=s1 params=('abcd'...(+4 bytes)) sql=SELECT $1\n`);
  tt.equal(line(["it's a long one"]), `${PREFIX} B stmt=s1 params=('it''s'...(+11 bytes)) sql=SELECT $1\n`, 'cut counts bytes before quoting');
  tt.equal(line(['a\n\n\nbc']), `${PREFIX} B stmt=s1 params=('a\\n\\n\\n'...(+2 bytes)) sql=SELECT $1\n`, 'cut counts bytes before escaping');
  tt.equal(line([Buffer.from([1, 2, 3, 4, 5, 6])], [1]), `${PREFIX} B stmt=s1 params=(x'01020304'...(+2 bytes)) sql=SELECT $1\n`);
  tt.equal(line([Buffer.from([1, 2, 3, 4])], [1]), `${PREFIX} B stmt=s1 params=(x'01020304') sql=SELECT $1\n`);
  tt.equal(line([null, 'abcde']), `${PREFIX} B stmt=s1 params=(NULL, 'abcd'...(+1 bytes)) sql=SELECT $1\n`);
  // 'é' is 2 bytes: 4 bytes of 'aaéé' end on a character boundary, 4 bytes of 'aaaé' do not.
  tt.equal(line(['aaéé']), `${PREFIX} B stmt=s1 params=('aaé'...(+2 bytes)) sql=SELECT $1\n`);
  tt.equal(line(['aaaé']), `${PREFIX} B stmt=s1 params=('aaa\ufffd'...(+1 bytes)) sql=SELECT $1\n`, 'split UTF-8 sequence shows U+FFFD');

  const zero = textFormatter({ params: true, paramMaxBytes: 0 });
  tt.equal(zero(S, b(['abc', '', null]), NOW), `${PREFIX} B stmt=s1 params=(''...(+3 bytes), '', NULL) sql=SELECT $1\n`, 'limit 0');
});

t.test('text: params:false hides values, shows the count', async (tt) => {
  const f = textFormatter({ params: false, paramMaxBytes: 256 });
  tt.equal(f(S, b(['secret', null, Buffer.from([1])], [0, 0, 1]), NOW), `${PREFIX} B stmt=s1 params=3:hidden sql=SELECT $1\n`);
  tt.equal(f(S, b([]), NOW), `${PREFIX} B stmt=s1 params=0:hidden sql=SELECT $1\n`);
  tt.notOk(f(S, b(['secret']), NOW).includes('secret'));
  tt.equal(f(S, q('SELECT 1'), NOW), `${PREFIX} Q sql=SELECT 1\n`, 'no params field without a Bind');
});

t.test('text: session user and database cannot break the line', async (tt) => {
  // user and database come straight from the client's StartupMessage, before authentication.
  const evil: SessionInfo = { id: 1, user: 'x\n2026-01-01T00:00:00.000Z conn=9 admin@prod 10.0.0.1:1 Q sql=DROP TABLE t', database: 'db\r\x1b[2J', client: '10.0.0.2:5555' };
  const line = text(evil, q('SELECT 1'), NOW);
  tt.equal(newlines(line), 1, 'exactly one newline');
  tt.notOk(RAW_CONTROL.test(line.slice(0, -1)), 'no raw control characters');
});

// ---- JSON format -------------------------------------------------------------------------------

t.test('json: exact lines for Q, P, B, E', async (tt) => {
  const head = `{"ts":"${TS}","conn":17,"user":"app","db":"shop","client":"127.0.0.1:53422"`;
  tt.equal(json(S, q('SELECT 1'), NOW), `${head},"type":"Q","sql":"SELECT 1"}\n`);
  tt.equal(json(S, { type: 'P', statement: 's1', portal: null, sql: 'SELECT $1::int', params: null }, NOW), `${head},"type":"P","stmt":"s1","sql":"SELECT $1::int"}\n`);
  tt.equal(json(S, { type: 'P', statement: '', portal: null, sql: 'SELECT 2', params: null }, NOW), `${head},"type":"P","stmt":"","sql":"SELECT 2"}\n`, 'unnamed statement kept as ""');
  tt.equal(
    json(S, b(['42', null, Buffer.from([0xde, 0xad, 0xbe, 0xef])], [0, 0, 1]), NOW),
    `${head},"type":"B","stmt":"s1","portal":"","params":["42",null,{"hex":"deadbeef"}],"sql":"SELECT $1"}\n`,
  );
  tt.equal(json(S, { type: 'E', statement: 's1', portal: 'p1', sql: 'SELECT $1', params: null }, NOW), `${head},"type":"E","stmt":"s1","portal":"p1","sql":"SELECT $1"}\n`);
  tt.equal(json(S, { type: 'E', statement: null, portal: '', sql: null, params: null }, NOW), `${head},"type":"E","portal":"","sql":null}\n`, 'unknown SQL is null');
});

t.test('json: lines parse and round-trip SQL, names and params exactly', async (tt) => {
  const sql = "SELECT 'it''s'\n  FROM t\r\n\tWHERE a = 'x\\y' -- \x1b[31mred\x7f\x00 \"q\" é日本😀";
  const line = json(S, { type: 'B', statement: 'my "stmt"\n', portal: 'p\t1', sql, params: { formats: [0, 1], values: [Buffer.from('a\nb"c\\'), Buffer.from([0, 255])] } }, NOW);
  tt.equal(newlines(line), 1, 'exactly one newline');
  tt.ok(line.endsWith('}\n'));
  const o = JSON.parse(line) as Record<string, unknown>;
  tt.strictSame(o, {
    ts: TS,
    conn: 17,
    user: 'app',
    db: 'shop',
    client: '127.0.0.1:53422',
    type: 'B',
    stmt: 'my "stmt"\n',
    portal: 'p\t1',
    params: ['a\nb"c\\', { hex: '00ff' }],
    sql,
  });
  tt.equal(o['sql'], sql, 'SQL round-trips exactly');
});

t.test('json: no raw control characters in a line (DEL included)', async (tt) => {
  const line = json(S, q('SELECT 1 -- \x1b[31m\x7f\x00\t'), NOW);
  tt.equal(newlines(line), 1);
  tt.notOk(RAW_CONTROL.test(line.slice(0, -1)), 'no raw C0 control or DEL');
});

t.test('json: cut parameters carry truncatedBytes; params:false gives paramCount', async (tt) => {
  const f = jsonFormatter({ params: true, paramMaxBytes: 4 });
  const params = (values: (Buffer | string | null)[], formats: number[] = []) => (JSON.parse(f(S, b(values, formats), NOW)) as { params: unknown }).params;
  tt.strictSame(params(['abcd', 'abcdefgh', null]), ['abcd', { text: 'abcd', truncatedBytes: 4 }, null]);
  tt.strictSame(params([Buffer.from([1, 2, 3, 4, 5, 6]), Buffer.from([9])], [1]), [{ hex: '01020304', truncatedBytes: 2 }, { hex: '09' }]);
  tt.strictSame(params(['aaaé']), [{ text: 'aaa\ufffd', truncatedBytes: 1 }]);

  const hidden = jsonFormatter({ params: false, paramMaxBytes: 256 });
  const o = JSON.parse(hidden(S, b(['secret', null, Buffer.from([1])], [0, 0, 1]), NOW)) as Record<string, unknown>;
  tt.equal(o['paramCount'], 3);
  tt.notOk('params' in o, 'no params key');
  tt.notOk(hidden(S, b(['secret']), NOW).includes('secret'));
  const qo = JSON.parse(hidden(S, q('SELECT 1'), NOW)) as Record<string, unknown>;
  tt.notOk('paramCount' in qo || 'params' in qo, 'no parameter fields without a Bind');
});

// ---- both formats ------------------------------------------------------------------------------

t.test('C1 control characters (U+0080-U+009F) do not appear raw', async (tt) => {
  // U+0085 is NEL (a line break to some tools), U+009B is CSI (a terminal escape to some terminals).
  const sql = 'SELECT 1 \u0085 \u009b31m';
  for (const [name, f] of [
    ['text', text],
    ['json', json],
  ] as const) {
    const line = f(S, q(sql), NOW);
    tt.notOk(/[\u0080-\u009f]/.test(line), `${name}: no raw C1 control`);
  }
});

t.test('isoTime: ISO-8601 UTC with milliseconds, correct across cache changes', async (tt) => {
  tt.equal(isoTime(0), '1970-01-01T00:00:00.000Z');
  tt.equal(isoTime(NOW), TS);
  tt.equal(isoTime(NOW), TS, 'cached value');
  tt.equal(isoTime(NOW + 1), '2026-11-23T10:15:02.346Z');
  tt.equal(isoTime(NOW), TS, 'back to an earlier ms');
  tt.equal(isoTime(NOW + 655), '2026-11-23T10:15:03.000Z');
  const bad: number[] = [];
  for (let ms = NOW - 5000; ms < NOW + 5000; ms += 7) {
    const s = isoTime(ms);
    if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(s) || Date.parse(s) !== ms) bad.push(ms);
  }
  tt.strictSame(bad, []);
  tt.equal(text(S, q('x'), 0).slice(0, 24), '1970-01-01T00:00:00.000Z', 'lines start with the timestamp');
});

t.test('seq on query lines (only with the seq option) and done lines', async (tt) => {
  const rec: QueryRecord = { ...q('SELECT 1'), seq: 42 };
  tt.equal(text(S, rec, NOW), `${PREFIX} Q sql=SELECT 1\n`, 'no seq without the option');
  tt.equal(textFormatter({ params: true, paramMaxBytes: 256, seq: true })(S, rec, NOW), `${PREFIX} Q seq=42 sql=SELECT 1\n`);
  tt.same(JSON.parse(jsonFormatter({ params: true, paramMaxBytes: 256, seq: true })(S, rec, NOW))['seq'], 42);
  tt.notOk('seq' in JSON.parse(json(S, rec, NOW)), 'json: no seq without the option');
  const done = textCompletionFormatter();
  tt.equal(done(S, { seq: 42, of: 'E', ms: 0.1534, rows: 3, status: 'ok', sqlstate: null, cache: 'hit' }, NOW), `${PREFIX} done seq=42 of=E ms=0.153 rows=3 cache=hit\n`);
  tt.equal(
    done(S, { seq: 7, of: 'Q', ms: 12, rows: 0, status: 'error', sqlstate: '22012', flight: 'waiter' }, NOW),
    `${PREFIX} done seq=7 of=Q ms=12 rows=0 status=error sqlstate=22012 flight=waiter\n`,
  );
  tt.equal(done(S, { seq: 8, of: 'Q', ms: 1, rows: 0, status: 'error', sqlstate: 'a b\n' }, NOW), `${PREFIX} done seq=8 of=Q ms=1 rows=0 status=error sqlstate="a b\\n"\n`, 'a strange SQLSTATE from the server stays one token on one line');
  tt.same(JSON.parse(jsonCompletionFormatter()(S, { seq: 9, of: 'E', ms: 2.5, rows: 1, status: 'skipped', sqlstate: null }, NOW)), {
    ts: TS,
    conn: 17,
    user: 'app',
    db: 'shop',
    client: '127.0.0.1:53422',
    type: 'done',
    seq: 9,
    of: 'E',
    ms: 2.5,
    rows: 1,
    status: 'skipped',
    sqlstate: null,
  });
});

// ---- readers that split lines more eagerly than on \n (issue 15, security finding 16) ------------

/** Every line end Python's str.splitlines() knows, and what terminals and humans misread. */
const SPLITLINES = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/;
const TRICKY = ['\u2028', '\u2029', '\x85', '\x1c', '\x1d', '\x1e', '\v', '\f', '\x9b', '\u202e', '\u202a', '\u2066', '\u2069', '\u200e', '\u200f', '\u061c'];
/** Raw: a line end for some reader, a terminal control, or a bidi control. */
// eslint-disable-next-line no-control-regex
const RAW_TRICKY = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;

t.test('no line end, terminal control or bidi control reaches a log line raw, in any field', async (tt) => {
  const evil = `select 1 ${TRICKY.join(' x ')} -- fake\u2028${PREFIX} Q sql=DROP TABLE t`;
  const who: SessionInfo = { id: 3, user: `u\u2028${TRICKY.join('')}`, database: `d\u202e`, client: '127.0.0.1:1' };
  const records: QueryRecord[] = [q(evil), b([evil, Buffer.from(evil, 'utf8')], [0, 1], `s\u2029`, `p\x85`), { type: 'E', statement: `s\u2029`, portal: `p\x85`, sql: evil, params: null }];
  for (const [name, f] of [
    ['text', text],
    ['json', json],
  ] as const) {
    const out = records.map((r) => f(who, r, NOW)).join('');
    tt.equal(out.split(SPLITLINES).length - 1, records.length, `${name}: splitlines() reads exactly ${records.length} lines`);
    for (const line of out.split('\n').slice(0, -1)) tt.notMatch(line, RAW_TRICKY, `${name}: nothing raw in ${JSON.stringify(line.slice(0, 60))}...`);
  }
  for (const c of TRICKY) tt.equal(unescapeText(text(S, q(`a${c}b`), NOW).trimEnd().split(' sql=')[1]!), `a${c}b`, `text: U+${c.charCodeAt(0).toString(16)} escaped and read back`);
  for (const c of TRICKY) tt.equal(srcUnescape(text(S, q(`a${c}b`), NOW).trimEnd().split(' sql=')[1]!), `a${c}b`, `unescapeText reads back U+${c.charCodeAt(0).toString(16)}`);
  tt.equal(JSON.parse(json(S, q(evil), NOW)).sql, evil, 'json: the same text, parsed back');
});

t.test('the operational log: a client-chosen value cannot add a line or reorder one', async (tt) => {
  const line = formatOps('WARN', 'client startup packet refused', { user: `x\u2028${TRICKY.join('')}`, reason: 'a\x85b' }, NOW);
  tt.equal(line.split(SPLITLINES).length - 1, 1, 'one line for splitlines()');
  tt.notMatch(line.slice(0, -1), RAW_TRICKY, 'nothing raw');
  tt.match(line, /user="x\\u2028/, 'escaped, still readable');
});

// Issue 15, security finding 1: every B and E line repeated its statement's whole SQL, so a
// 512 KiB Parse and 400 Executes (528 KB sent) wrote 211 MB of log. B and E lines now repeat at
// most repeatedSqlMaxChars of it, marked; P and Q lines (one per message sent) keep it whole.
t.test('B and E lines repeat at most repeatedSqlMaxChars of the SQL; P and Q keep it whole', async (tt) => {
  const big = 'select ' + 'x'.repeat(10_000);
  const opts = { params: true, paramMaxBytes: 256, repeatedSqlMaxChars: 100 };
  const tf = textFormatter(opts);
  const jf = jsonFormatter(opts);
  const recs: QueryRecord[] = [
    q(big),
    { type: 'P', statement: 's1', portal: null, sql: big, params: null },
    { type: 'B', statement: 's1', portal: '', sql: big, params: { formats: [], values: [] } },
    { type: 'E', statement: 's1', portal: '', sql: big, params: null },
  ];
  const [tq, tp, tb, te] = recs.map((r) => tf(S, r, NOW));
  tt.ok(tq!.endsWith(` sql=${big}\n`), 'Q: whole');
  tt.ok(tp!.endsWith(` sql=${big}\n`), 'P: whole');
  tt.ok(tb!.endsWith(` sql=${big.slice(0, 100)}...(+${big.length - 100} chars)\n`), 'B: cut, marked');
  tt.ok(te!.endsWith(` sql=${big.slice(0, 100)}...(+${big.length - 100} chars)\n`), 'E: cut, marked');
  const [jq, , , je] = recs.map((r) => JSON.parse(jf(S, r, NOW)));
  tt.equal(jq.sql, big, 'json Q: whole');
  tt.equal(je.sql, big.slice(0, 100), 'json E: cut');
  tt.equal(je.sqlCutChars, big.length - 100, 'json E: says how much');
  tt.equal(textFormatter({ ...opts, repeatedSqlMaxChars: 0 })(S, recs[3]!, NOW).endsWith(` sql=${big}\n`), true, '0: no limit');
  tt.equal(tf(S, { ...recs[3]!, sql: 'select 1' }, NOW).endsWith(' sql=select 1\n'), true, 'short SQL: unchanged');
});

t.test('a Bind message as its own params prints exactly what views of its values print', async (tt) => {
  // The recorder hands the formatter the BindMessage itself (read from its bytes, no view per
  // value); plain { formats, values } objects go the other way. Random parameters (NULL, text
  // with quotes, escapes and non-ASCII, binary, values past the cut), each message at a random
  // offset inside a larger buffer, as in a socket read.
  const rnd = prng(2121);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const pieces = ['a', "'", '\\', '\n', 'é', '漢', '\u2028', '\x00', '42', ' ', '\x7f'];
  const formatters = [textFormatter({ params: true, paramMaxBytes: 6 }), textFormatter({ params: true, paramMaxBytes: 256 }), jsonFormatter({ params: true, paramMaxBytes: 6 })];
  let compared = 0;
  for (let round = 0; round < 400; round++) {
    const n = Math.floor(rnd() * 5);
    const values: (Buffer | null)[] = [];
    for (let i = 0; i < n; i++) {
      if (rnd() < 0.2) values.push(null);
      else values.push(Buffer.from(Array.from({ length: Math.floor(rnd() * 10) }, () => pick(pieces)).join(''), 'utf8'));
    }
    const formats = pick([[], [1], [0], values.map(() => (rnd() < 0.5 ? 1 : 0))]);
    const body = enc.bind(pick(['', 'p1']), pick(['', 's1', 'stmt "2"']), values, formats);
    const before = Math.floor(rnd() * 40);
    const chunk = Buffer.concat([Buffer.alloc(before, 0x5a), body, Buffer.alloc(Math.floor(rnd() * 40), 0x5a)]);
    const msg = new BindMessage(chunk, before, before + body.length);
    const record = (params: BindParams): QueryRecord => ({ type: 'B', statement: msg.statement, portal: msg.portal, sql: 'SELECT $1', params });
    for (const f of formatters) {
      const viaMessage = f(S, record(msg), NOW);
      const viaViews = f(S, record({ formats: [...formats], values }), NOW);
      if (viaMessage !== viaViews) {
        tt.equal(viaMessage, viaViews, `round ${round}`);
        return;
      }
      compared++;
    }
  }
  tt.equal(compared, 1200, 'every line the same both ways');
  const one = new BindMessage(enc.bind('', 's1', ["it's", null, Buffer.from([1, 255])], [0, 0, 1]), 0, enc.bind('', 's1', ["it's", null, Buffer.from([1, 255])], [0, 0, 1]).length);
  tt.equal(text(S, { type: 'B', statement: 's1', portal: '', sql: 'SELECT $1', params: one }, NOW), `${PREFIX} B stmt=s1 params=('it''s', NULL, x'01ff') sql=SELECT $1\n`);
});
