// The pieces of `pgscribe replay` that need no server: reading log lines back (log-lines.ts), the
// frontend messages rebuilt from them (frontend.ts: byte for byte what a client sends, checked
// against the test harness's own encoder), the line splitter fed at every byte offset
// (log-files.ts), rotated files in order, and the passfile (passfile.ts).
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseLogLine, Unreplayable } from '../../src/replay/log-lines';
import { encodeBind, encodeClose, encodeDescribe, encodeExecute, encodeParse, encodeQueryMessage, FLUSH, SYNC } from '../../src/replay/frontend';
import { expandRotated, LineSplitter } from '../../src/replay/log-files';
import { Passwords, parsePassfile, passfileFields } from '../../src/replay/passfile';
import { enc } from '../harness/wire';

const head = '"ts":"2026-12-05T10:00:00.123Z","conn":7,"user":"app","db":"shop","client":"127.0.0.1:5000"';

t.test('log lines: every record type read back, with its fields', async (t) => {
  const start = parseLogLine(`{${head},"type":"start","startup":{"application_name":"pgbench","options":"-c geqo=off","n":3},"protocol":"3.0","upstream":"127.0.0.1:5432","system":"7312"}`);
  t.same(start, { kind: 'start', ts: Date.parse('2026-12-05T10:00:00.123Z'), conn: 7, user: 'app', db: 'shop', startup: { application_name: 'pgbench', options: '-c geqo=off' }, upstream: '127.0.0.1:5432', system: '7312' }, 'start: non-string startup values are dropped');
  t.match(parseLogLine(`{${head},"type":"end","reason":"terminate"}`), { kind: 'end', reason: 'terminate' });
  t.match(parseLogLine(`{${head},"type":"Q","seq":1,"sql":"select 1"}`), { kind: 'Q', seq: 1, sql: 'select 1', unreplayable: null });
  t.match(parseLogLine(`{${head},"type":"P","seq":2,"stmt":"s1","sql":"select $1","paramTypes":[23,4294967295]}`), { kind: 'P', stmt: 's1', paramTypes: [23, 4294967295], unreplayable: null });
  t.match(parseLogLine(`{${head},"type":"B","seq":3,"stmt":"s1","portal":"p","params":["42",null,{"hex":"00ff"}],"paramFormats":[0,0,1],"resultFormats":[1]}`), {
    kind: 'B', stmt: 's1', portal: 'p', params: [{ text: '42' }, null, { hex: '00ff' }], paramFormats: [0, 0, 1], resultFormats: [1], unreplayable: null,
  });
  t.match(parseLogLine(`{${head},"type":"E","seq":4,"stmt":"s1","portal":"p","maxRows":5,"sql":"select $1"}`), { kind: 'E', portal: 'p', maxRows: 5, sql: 'select $1' });
  t.match(parseLogLine(`{${head},"type":"D","seq":5,"kind":"S","name":"s1"}`), { kind: 'D', target: 'S', name: 's1' });
  t.match(parseLogLine(`{${head},"type":"C","seq":6,"kind":"P","name":"p"}`), { kind: 'C', target: 'P', name: 'p' });
  t.match(parseLogLine(`{${head},"type":"S","seq":7}`), { kind: 'S', seq: 7 });
  t.match(parseLogLine(`{${head},"type":"H","seq":8}`), { kind: 'H', seq: 8 });
  t.match(parseLogLine(`{${head},"type":"done","seq":4,"of":"E","ms":0.5,"rows":3,"status":"error","sqlstate":"42703","rowsDigest":"0123456789abcdef"}`), {
    kind: 'done', seq: 4, of: 'E', ms: 0.5, rows: 3, status: 'error', sqlstate: '42703', rowsDigest: '0123456789abcdef',
  });
});

t.test('log lines: what cannot be replayed says why', async (t) => {
  t.equal((parseLogLine(`{${head},"type":"Q","seq":1,"sql":"select $1","redacted":true}`) as { unreplayable: string }).unreplayable, Unreplayable.Redacted);
  t.equal((parseLogLine(`{${head},"type":"B","seq":1,"stmt":"","portal":"","paramCount":2}`) as { unreplayable: string }).unreplayable, Unreplayable.ParamsHidden);
  t.equal((parseLogLine(`{${head},"type":"B","seq":1,"stmt":"","portal":"","params":[{"text":"abc","truncatedBytes":9}]}`) as { unreplayable: string }).unreplayable, Unreplayable.ParamCut);
  t.equal((parseLogLine(`{${head},"type":"P","seq":1,"stmt":"","sql":null}`) as { unreplayable: string }).unreplayable, Unreplayable.SqlUnknown);
  t.equal((parseLogLine(`{${head},"type":"Q","seq":1,"sql":"select '\uFFFD'"}`) as { unreplayable: string }).unreplayable, Unreplayable.NotUtf8, 'a byte that was not UTF-8 at capture (U+FFFD)');
  t.equal((parseLogLine(`{${head},"type":"B","seq":1,"stmt":"","portal":"","params":["caf\uFFFD"]}`) as { unreplayable: string }).unreplayable, Unreplayable.NotUtf8, 'in a text parameter too');
  t.equal((parseLogLine(`{${head},"type":"B","seq":1,"stmt":"","portal":"","params":[{"hex":"e9"}]}`) as { unreplayable: string | null }).unreplayable, null, 'binary parameters keep their bytes');
});

t.test('log lines: anything else is null, never a throw', async (t) => {
  const bad = [
    '',
    'plain text line',
    '2026-11-23T10:15:02.345Z conn=17 app@shop 127.0.0.1:53422 Q sql=select 1',
    '{"ts":"x","conn":1,"user":"u","db":"d","type":"Q","seq":1,"sql":"s"}',
    `{${head},"type":"Q","sql":"no seq"}`,
    `{${head},"type":"D","seq":1,"kind":"X","name":""}`,
    `{${head},"type":"done","seq":1,"of":"E","status":"weird"}`,
    `{${head},"type":"Z","seq":1}`,
    `{${head},"type":"B","seq":1,"params":[{"neither":1}]}`,
    '[1,2,3]',
    'null',
    `{${head},"type":"Q","seq":1,"sql":"cut here`,
    // Values the wire cannot carry: a line pgscribe never wrote, not a replay that throws.
    `{${head},"type":"E","seq":1,"portal":"","maxRows":4294967296}`,
    `{${head},"type":"P","seq":1,"stmt":"","sql":"s","paramTypes":[-1]}`,
    `{${head},"type":"P","seq":1,"stmt":"","sql":"s","paramTypes":[4294967296]}`,
    `{${head},"type":"B","seq":1,"stmt":"","portal":"","params":[],"paramFormats":[70000]}`,
    `{${head},"type":"B","seq":1,"stmt":"","portal":"","params":[],"resultFormats":[1.5]}`,
    `{${head},"type":"B","seq":1,"stmt":"","portal":"","params":[{"hex":"abc"}]}`,
    `{${head},"type":"B","seq":1,"stmt":"","portal":"","params":[{"hex":"zz"}]}`,
  ];
  for (const l of bad) t.equal(parseLogLine(l), null, JSON.stringify(l.slice(0, 60)));
});

t.test('frontend messages: the bytes a client sends, rebuilt', async (t) => {
  t.same(encodeQueryMessage('select 1'), enc.query('select 1'));
  t.same(encodeParse('s1', 'select $1, $2', [23, 25]), enc.parse('s1', 'select $1, $2', [23, 25]));
  t.same(encodeParse('', 'select 1', []), enc.parse('', 'select 1'));
  t.same(encodeParse('x', 'select $1', [4294967295]).subarray(-4), Buffer.from([0xff, 0xff, 0xff, 0xff]), 'an OID above 2^31 is written unsigned');
  t.same(
    encodeBind('p', 's1', [0, 1], [{ text: 'é42' }, { hex: '00ff10' }, null], [1]),
    enc.bind('p', 's1', ['é42', Buffer.from([0, 0xff, 0x10]), null], [0, 1], [1]),
  );
  t.same(encodeBind('', '', [], [], []), enc.bind('', '', []));
  const big = 'x'.repeat(100_000);
  t.same(encodeBind('', 'big', [], [{ text: big }], []), enc.bind('', 'big', [big]), 'a message larger than its first guess grows');
  t.same(encodeExecute('p', 10), enc.execute('p', 10));
  t.same(encodeDescribe('S', 's1'), enc.describe('S', 's1'));
  t.same(encodeClose('P', 'p'), enc.close('P', 'p'));
  t.same(SYNC, enc.sync());
  t.same(FLUSH, enc.flush());
});

t.test('line splitter: the same lines whatever the chunks, at every byte offset', async (t) => {
  const text = `{"a":1}\n\n{"b":"é ü"}\nlast without newline`;
  const bytes = Buffer.from(text);
  const want = ['{"a":1}', '{"b":"é ü"}', 'last without newline'];
  for (let i = 0; i <= bytes.length; i++) {
    for (let j = i; j <= bytes.length; j += 3) {
      const got: string[] = [];
      const s = new LineSplitter((l) => got.push(l));
      s.push(bytes.subarray(0, i));
      s.push(bytes.subarray(i, j));
      s.push(bytes.subarray(j));
      s.end();
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        t.same(got, want, `split at ${i} and ${j}`);
        return;
      }
    }
  }
  t.pass('every split gave the same lines');
  const got: string[] = [];
  const s = new LineSplitter((l) => got.push(l), 10);
  s.push(Buffer.from('short\n0123456789abc'));
  s.push(Buffer.from('def\nafter\n'));
  s.end();
  t.same(got, ['short', 'after'], 'a line over the bound is skipped whole');
  t.equal(s.skippedLong, 1, 'and counted');
});

t.test('rotated files are read oldest first', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'replay-rot-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const n of ['q.log', 'q.log.1', 'q.log.2', 'q.log.10', 'q.log.old', 'q.log.0', 'other.log.1']) fs.writeFileSync(path.join(dir, n), '');
  t.same(expandRotated([path.join(dir, 'q.log')]).map((f) => path.basename(f)), ['q.log.10', 'q.log.2', 'q.log.1', 'q.log']);
  t.same(expandRotated([path.join(dir, 'q.log.2')]).map((f) => path.basename(f)), ['q.log.2'], 'a rotated file named alone is read alone');
});

t.test('passfile: libpq .pgpass rules', async (t) => {
  t.same(passfileFields('h:5432:db:u:pw'), ['h', '5432', 'db', 'u', 'pw']);
  t.same(passfileFields('h:5432:db:u:p\\:w\\\\x:y'), ['h', '5432', 'db', 'u', 'p:w\\x:y'], 'escaped colon and backslash; colons in the password field are kept');
  t.equal(passfileFields('too:few:fields'), null);
  t.equal(parsePassfile('# comment\n\nh:1:d:u:p\r\n').length, 1);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'replay-pass-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const f = path.join(dir, 'pass');
  fs.writeFileSync(f, 'other:*:*:*:nope\n127.0.0.1:6000:shop:app:secret\n*:*:*:app:fallback\n');
  const pw = new Passwords(f, undefined);
  t.equal(pw.lookup('127.0.0.1', 6000, 'shop', 'app'), 'secret', 'the first matching line');
  t.equal(pw.lookup('127.0.0.1', 6001, 'shop', 'app'), 'fallback', 'wildcards');
  t.equal(pw.lookup('127.0.0.1', 6000, 'shop', 'bob'), '', 'none: empty');
  t.equal(new Passwords(f, 'env-pw').lookup('127.0.0.1', 6000, 'shop', 'app'), 'env-pw', 'PGPASSWORD wins');
  t.throws(() => new Passwords(path.join(dir, 'missing'), undefined), /cannot read the passfile/, 'a named passfile that is missing is an error');
});

t.test('the safety check: addresses and the log\'s identity against the target\'s', async (t) => {
  const { addressesOf, sameServer, splitHostPort } = await import('../../src/replay/target-identity');
  t.same(splitHostPort('127.0.0.1:5432'), { host: '127.0.0.1', port: 5432 });
  t.same(splitHostPort('[::1]:6000'), { host: '::1', port: 6000 });
  t.equal(splitHostPort('nohost'), null);
  const local = await addressesOf('localhost', 5432);
  t.ok(local.has('127.0.0.1:5432'), 'localhost is 127.0.0.1 too');
  const target = { system: '7312', unknownWhy: null, addresses: await addressesOf('127.0.0.1', 5432) };
  t.match(await sameServer(target, { system: '7312', upstream: null }), /system identifier 7312/, 'the same identifier');
  t.equal(await sameServer(target, { system: '9999', upstream: '127.0.0.1:5432' }), null, 'another identifier wins over the address (a copy on the same port elsewhere)');
  t.match(await sameServer(target, { system: null, upstream: 'localhost:5432' }), /the target is localhost:5432/, 'no identifier: the address');
  t.equal(await sameServer(target, { system: null, upstream: '127.0.0.1:5433' }), null, 'another port');
  t.match(await sameServer({ system: null, unknownWhy: 'permission denied', addresses: new Set() }, { system: '7312', upstream: null }), /could not be read \(permission denied\)/, 'an unreadable target identifier is refused when the log has one');
});
