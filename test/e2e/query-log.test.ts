// The query log as an operator sees it: the real proxy (dist/main.js) in front of a real
// PostgreSQL 15, driven with raw sockets so that every Q/P/B/E message is known exactly.
import t from 'tap';
import * as fs from 'node:fs';
import { startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { proxyFixture } from '../helpers/fixture';
import { type Proxy } from '../harness/proxy';
import { enc, errorsIn, type BackendMessage, type RawClient } from '../harness/wire';
import { sleep } from '../harness/time';

const USER = USERS.trust.user;
const TS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

let pg: PgCluster;
const { launch, stopProxy, session, cleanup } = proxyFixture({ upstreamPort: () => pg.port, user: USER });

t.before(async () => {
  pg = await startCluster();
});

t.teardown(async () => {
  await cleanup();
  await pg?.stop();
});

// ---- helpers --------------------------------------------------------------------------------

function errorsOf(msgs: BackendMessage[]): string[] {
  return errorsIn(msgs).map((f) => `${f['C']} ${f['M']}`);
}

/** Send bytes that end in Sync/Query messages and read `z` ReadyForQuery; the answer must hold no error. */
async function roundTrip(tt: Tap, c: RawClient, bytes: Buffer, z = 1): Promise<BackendMessage[]> {
  c.write(bytes);
  const msgs = await c.readZ(z);
  tt.same(errorsOf(msgs), [], 'no error from the server');
  return msgs;
}

/**
 * Waits until the file holds `n` lines, then a little longer, and returns them: the count is
 * exact, not a lower bound.
 */
async function exactLines(p: Proxy, n: number): Promise<string[]> {
  await p.waitLogLines(n, 15000);
  await sleep(300);
  return p.logLines();
}

/** The part of a text line after the client address: "Q sql=...". Checks the common prefix. */
function textRest(tt: Tap, line: string, conn: number | null, port: number): { conn: number; rest: string } {
  const m = /^(\S+) conn=(\d+) (\S+)@(\S+) (\S+) (.*)$/.exec(line);
  tt.ok(m, `text line shape: ${line}`);
  if (!m) return { conn: -1, rest: '' };
  tt.match(m[1], TS, 'ISO timestamp');
  if (conn !== null) tt.equal(Number(m[2]), conn, 'same conn id');
  tt.equal(m[3], USER, 'user');
  tt.equal(m[4], 'postgres', 'database');
  tt.equal(m[5], `127.0.0.1:${port}`, 'client address is the client socket');
  return { conn: Number(m[2]), rest: m[6]! };
}

type Tap = Pick<typeof t, 'equal' | 'ok' | 'match' | 'same' | 'notMatch' | 'has'>;

/** Lines of a log file that may not exist yet. */
function fileLines(f: string): string[] {
  if (!fs.existsSync(f)) return [];
  const s = fs.readFileSync(f, 'utf8');
  return s === '' ? [] : s.replace(/\n$/, '').split('\n');
}

/** sqls must equal want; when it does not, also name (up to 10) queries missing or duplicated. */
function eachOnceInOrder(tt: Tap, sqls: (string | undefined)[], want: string[], what: string): void {
  tt.ok(JSON.stringify(sqls) === JSON.stringify(want), what);
  if (JSON.stringify(sqls) !== JSON.stringify(want)) {
    const seen = new Map<string, number>();
    for (const s of sqls) seen.set(String(s), (seen.get(String(s)) ?? 0) + 1);
    tt.same(want.filter((w) => seen.get(w) !== 1).slice(0, 10), [], 'queries missing or duplicated');
  }
}

// ---- tests ------------------------------------------------------------------------------------

t.test('exact lines for a known workload, in order', async (t) => {
  const p = await launch();
  const c = await session(p.port);
  const port = c.sock.localPort!;

  // 1: named statement, unnamed portal and a named portal bound to it; Describe/Flush/Sync: no line.
  await roundTrip(
    t,
    c,
    Buffer.concat([
      enc.parse('s1', 'select $1::int + 1 AS a'),
      enc.describe('S', 's1'),
      enc.bind('', 's1', ['41']),
      enc.execute(''),
      enc.bind('p1', 's1', ['1']),
      enc.describe('P', 'p1'),
      enc.flush(),
      enc.execute('p1'),
      enc.sync(),
    ]),
  );
  // 2: simple query.
  await roundTrip(t, c, enc.query('select 1'));
  // 3: unnamed statement, unnamed portal.
  await roundTrip(t, c, Buffer.concat([enc.parse('', 'select 2'), enc.bind('', '', []), enc.execute(''), enc.sync()]));
  // 4: Close statement and a portal: no lines.
  await roundTrip(t, c, Buffer.concat([enc.close('S', 's1'), enc.close('P', 'p1'), enc.sync()]));
  // 5: s1 re-parsed with new SQL; a named portal on it.
  await roundTrip(
    t,
    c,
    Buffer.concat([enc.parse('s1', 'select $1::text AS c'), enc.bind('p2', 's1', ['x']), enc.execute('p2'), enc.sync()]),
  );
  // 6: two simple queries in one write.
  await roundTrip(t, c, Buffer.concat([enc.query('select 3'), enc.query('select 4')]), 2);
  // 7: Sync and Flush alone: no lines.
  await roundTrip(t, c, Buffer.concat([enc.flush(), enc.sync()]));

  const expected = [
    'P stmt=s1 sql=select $1::int + 1 AS a',
    "B stmt=s1 params=('41') sql=select $1::int + 1 AS a",
    'E stmt=s1 sql=select $1::int + 1 AS a',
    "B stmt=s1 portal=p1 params=('1') sql=select $1::int + 1 AS a",
    'E stmt=s1 portal=p1 sql=select $1::int + 1 AS a',
    'Q sql=select 1',
    'P sql=select 2',
    'B params=() sql=select 2',
    'E sql=select 2',
    'P stmt=s1 sql=select $1::text AS c',
    "B stmt=s1 portal=p2 params=('x') sql=select $1::text AS c",
    'E stmt=s1 portal=p2 sql=select $1::text AS c',
    'Q sql=select 3',
    'Q sql=select 4',
  ];
  const lines = await exactLines(p, expected.length);
  t.equal(lines.length, expected.length, `exactly ${expected.length} lines (3 Q + 3 P + 4 B + 4 E)`);
  let conn: number | null = null;
  const rests: string[] = [];
  for (const line of lines) {
    const r = textRest(t, line, conn, port);
    conn = r.conn;
    rests.push(r.rest);
  }
  t.same(rests, expected, 'types, names, parameters and SQL, in order');

  // A second connection gets its own conn id.
  const c2 = await session(p.port);
  await roundTrip(t, c2, enc.query('select 5'));
  const more = await exactLines(p, expected.length + 1);
  t.equal(more.length, expected.length + 1);
  const r2 = textRest(t, more[more.length - 1]!, null, c2.sock.localPort!);
  t.not(r2.conn, conn, 'different conn id for a different connection');
  t.equal(r2.rest, 'Q sql=select 5');
  c.end();
  c2.end();
  await stopProxy(p);
});

t.test('escaping keeps one query on one line', async (t) => {
  const p = await launch();
  const c = await session(p.port);
  const sql = "select 'a\nb\tc\\d\x1be\rf\x7fg' as s, 'é' as u";
  const msgs = await roundTrip(t, c, enc.query(sql));
  const d = msgs.find((m) => m.type === 'D')!;
  t.equal(d.body.toString('utf8', 6, 6 + d.body.readInt32BE(2)), 'a\nb\tc\\d\x1be\rf\x7fg', 'the server got the raw text');
  await roundTrip(
    t,
    c,
    Buffer.concat([enc.parse('', 'select\n$1::text\n-- comment\n'), enc.bind('', '', ["l1\nl2\\'q"]), enc.execute(''), enc.sync()]),
  );
  const lines = await exactLines(p, 4);
  t.equal(lines.length, 4, 'four messages, four lines');
  const port = c.sock.localPort!;
  t.same(
    lines.map((l) => textRest(t, l, null, port).rest),
    [
      "Q sql=select 'a\\nb\\tc\\\\d\\x1be\\rf\\x7fg' as s, 'é' as u",
      'P sql=select\\n$1::text\\n-- comment\\n',
      "B params=('l1\\nl2\\\\''q') sql=select\\n$1::text\\n-- comment\\n",
      'E sql=select\\n$1::text\\n-- comment\\n',
    ],
  );
  c.end();
  await stopProxy(p);
});

const PARAM_SQL = 'select $1::text, $2::text, $3::bytea, $4::text';
const SHORT_PARAMS = ['hello', null, Buffer.from([0xde, 0xad, 0xbe, 0xef]), "it's"];
const BIN20 = Buffer.from(Array.from({ length: 20 }, (_, i) => i));
const INT7 = Buffer.from([0, 0, 0, 7]);

function paramWorkload(): Buffer {
  return Buffer.concat([
    enc.parse('ps', PARAM_SQL),
    enc.bind('', 'ps', SHORT_PARAMS, [0, 0, 1, 0]),
    enc.execute(''),
    enc.parse('', 'select $1::text'),
    enc.bind('', '', ['abcdefghijklmnopqrstuvwxyz']),
    enc.execute(''),
    enc.parse('', 'select $1::bytea, $2::int4'),
    enc.bind('', '', [BIN20, INT7], [1]),
    enc.execute(''),
    enc.sync(),
  ]);
}

t.test('Bind parameters: text, NULL, binary, cut, hidden', async (t) => {
  await t.test('values shown and cut at --log-param-max-bytes', async (t) => {
    const p = await launch(['--log-param-max-bytes', '16']);
    const c = await session(p.port);
    await roundTrip(t, c, paramWorkload());
    const lines = await exactLines(p, 9);
    t.equal(lines.length, 9);
    const bind = lines.map((l) => textRest(t, l, null, c.sock.localPort!).rest).filter((r) => r.startsWith('B '));
    t.same(bind, [
      `B stmt=ps params=('hello', NULL, x'deadbeef', 'it''s') sql=${PARAM_SQL}`,
      "B params=('abcdefghijklmnop'...(+10 bytes)) sql=select $1::text",
      "B params=(x'000102030405060708090a0b0c0d0e0f'...(+4 bytes), x'00000007') sql=select $1::bytea, $2::int4",
    ]);
    c.end();
    await stopProxy(p);
  });

  await t.test('--log-params false hides the values', async (t) => {
    const p = await launch(['--log-params', 'false']);
    const c = await session(p.port);
    await roundTrip(t, c, paramWorkload());
    const lines = await exactLines(p, 9);
    t.equal(lines.length, 9);
    const bind = lines.map((l) => textRest(t, l, null, c.sock.localPort!).rest).filter((r) => r.startsWith('B '));
    t.same(bind, [
      `B stmt=ps params=4:hidden sql=${PARAM_SQL}`,
      'B params=1:hidden sql=select $1::text',
      'B params=2:hidden sql=select $1::bytea, $2::int4',
    ]);
    const all = lines.join('\n');
    t.notMatch(all, /hello|abcdef|deadbeef|00000007/, 'no value anywhere in the log');
    c.end();
    await stopProxy(p);
  });
});

t.test('--log-format json', async (t) => {
  const p = await launch(['--log-format', 'json', '--log-param-max-bytes', '16']);
  const c = await session(p.port);
  const port = c.sock.localPort!;
  const ctl = "select 'x\ty\n\"q\"\\' as s";
  await roundTrip(t, c, enc.query(ctl));
  await roundTrip(
    t,
    c,
    Buffer.concat([
      enc.parse('s1', PARAM_SQL),
      enc.bind('p1', 's1', SHORT_PARAMS, [0, 0, 1, 0]),
      enc.execute('p1'),
      enc.parse('', 'select $1::text, $2::bytea'),
      enc.bind('', '', ['abcdefghijklmnopqrstuvwxyz', BIN20], [0, 1]),
      enc.execute(''),
      enc.sync(),
    ]),
  );
  // Execute of a portal the proxy never saw: the server errors, the line has sql null.
  c.write(Buffer.concat([enc.execute('nope'), enc.sync()]));
  const err = await c.readZ(1);
  t.match(errorsOf(err)[0], /^34000 /, 'server: portal does not exist');

  const lines = await exactLines(p, 8);
  t.equal(lines.length, 8);
  const objs = lines.map((l) => {
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch (e) {
      t.fail(`not JSON: ${l}`);
      return {};
    }
  });
  const conn = objs[0]!['conn'];
  t.type(conn, 'number', 'conn is a number');
  for (const o of objs) {
    t.match(o['ts'], TS, 'ts');
    t.equal(o['conn'], conn, 'conn');
    t.equal(o['user'], USER, 'user');
    t.equal(o['db'], 'postgres', 'db');
    t.equal(o['client'], `127.0.0.1:${port}`, 'client');
  }
  const strip = (o: Record<string, unknown>) => {
    const { ts: _ts, conn: _c, user: _u, db: _d, client: _cl, ...rest } = o;
    return rest;
  };
  t.same(objs.map((o) => Object.keys(o)), [
    ['ts', 'conn', 'user', 'db', 'client', 'type', 'sql'],
    ['ts', 'conn', 'user', 'db', 'client', 'type', 'stmt', 'sql'],
    ['ts', 'conn', 'user', 'db', 'client', 'type', 'stmt', 'portal', 'params', 'sql'],
    ['ts', 'conn', 'user', 'db', 'client', 'type', 'stmt', 'portal', 'sql'],
    ['ts', 'conn', 'user', 'db', 'client', 'type', 'stmt', 'sql'],
    ['ts', 'conn', 'user', 'db', 'client', 'type', 'stmt', 'portal', 'params', 'sql'],
    ['ts', 'conn', 'user', 'db', 'client', 'type', 'stmt', 'portal', 'sql'],
    ['ts', 'conn', 'user', 'db', 'client', 'type', 'portal', 'sql'],
  ], 'field order and presence');
  t.strictSame(objs.map(strip), [
    { type: 'Q', sql: ctl },
    { type: 'P', stmt: 's1', sql: PARAM_SQL },
    { type: 'B', stmt: 's1', portal: 'p1', params: ['hello', null, { hex: 'deadbeef' }, "it's"], sql: PARAM_SQL },
    { type: 'E', stmt: 's1', portal: 'p1', sql: PARAM_SQL },
    { type: 'P', stmt: '', sql: 'select $1::text, $2::bytea' },
    {
      type: 'B',
      stmt: '',
      portal: '',
      params: [
        { text: 'abcdefghijklmnop', truncatedBytes: 10 },
        { hex: '000102030405060708090a0b0c0d0e0f', truncatedBytes: 4 },
      ],
      sql: 'select $1::text, $2::bytea',
    },
    { type: 'E', stmt: '', portal: '', sql: 'select $1::text, $2::bytea' },
    { type: 'E', portal: 'nope', sql: null },
  ]);
  c.end();
  await stopProxy(p);

  await t.test('json with --log-params false: paramCount only', async (t) => {
    const p = await launch(['--log-format', 'json', '--log-params', 'false']);
    const c = await session(p.port);
    await roundTrip(t, c, Buffer.concat([enc.parse('', PARAM_SQL), enc.bind('', '', SHORT_PARAMS, [0, 0, 1, 0]), enc.execute(''), enc.sync()]));
    const lines = await exactLines(p, 3);
    const b = JSON.parse(lines[1]!) as Record<string, unknown>;
    t.equal(b['type'], 'B');
    t.equal(b['paramCount'], 4);
    t.notOk('params' in b, 'no params field');
    t.notMatch(lines[1]!, /hello/);
    c.end();
    await stopProxy(p);
  });
});

t.test('the log file is created with mode 0600', async (t) => {
  const p = await launch();
  t.ok(fs.existsSync(p.logPath), 'created at startup');
  t.equal((fs.statSync(p.logPath).mode & 0o777).toString(8), '600');
  await stopProxy(p);
});

t.test('--log - writes the lines to stdout', async (t) => {
  const p = (await launch(['--log', '-'])) as Proxy & { readonly stdout: string };
  t.equal(p.logPath, '');
  const c = await session(p.port);
  await roundTrip(t, c, enc.query("select 'to stdout'"));
  await roundTrip(t, c, Buffer.concat([enc.parse('', 'select 1'), enc.bind('', '', []), enc.execute(''), enc.sync()]));
  const deadline = Date.now() + 10000;
  while (p.stdout.split('\n').length < 5 && Date.now() < deadline) await sleep(20);
  await sleep(200);
  const lines = p.stdout.replace(/\n$/, '').split('\n');
  t.equal(lines.length, 4, 'four lines on stdout');
  t.same(
    lines.map((l) => textRest(t, l, null, c.sock.localPort!).rest),
    ["Q sql=select 'to stdout'", 'P sql=select 1', 'B params=() sql=select 1', 'E sql=select 1'],
  );
  t.notMatch(p.stderr(), /conn=\d+ trust_user/, 'query lines do not go to stderr');
  c.end();
  await stopProxy(p);
});

t.test('SIGHUP reopen loses no line', async (t) => {
  const N = 3000;
  const p = await launch();
  const rotated = p.logPath + '.1';
  const c = await session(p.port);
  const bad: string[] = [];
  for (let i = 0; i < N; i++) {
    if (i === 1000) {
      fs.renameSync(p.logPath, rotated);
      p.proc.kill('SIGHUP');
    }
    if (i === 2000) await p.waitStderr(/SIGHUP: reopening/);
    const msgs = await c.query(`select ${i}`);
    if (msgs.some((m) => m.type === 'E') && bad.length < 5) bad.push(`query ${i}: ${errorsOf(msgs).join()}`);
  }
  t.same(bad, [], 'every query answered');

  const deadline = Date.now() + 15000;
  while (fileLines(rotated).length + fileLines(p.logPath).length < N && Date.now() < deadline) await sleep(50);
  await sleep(300);
  const oldLines = fileLines(rotated);
  const newLines = fileLines(p.logPath);
  t.equal(oldLines.length + newLines.length, N, `old (${oldLines.length}) + new (${newLines.length}) = ${N} lines`);
  t.ok(oldLines.length > 0, 'the old file holds what was written before the rename');
  t.ok(newLines.length > 0, 'the new file is not empty');
  t.ok(fs.existsSync(p.logPath) && (fs.statSync(p.logPath).mode & 0o777) === 0o600, 'new file has mode 0600');

  const sqls = [...oldLines, ...newLines].map((l) => /sql=(.*)$/.exec(l)?.[1]);
  const want = Array.from({ length: N }, (_, i) => `select ${i}`);
  eachOnceInOrder(t, sqls, want, 'each query exactly once, old file a prefix, new file the rest, in order');
  t.ok(
    [...oldLines, ...newLines].every((l) => / Q sql=select \d+$/.test(l)),
    'no torn line',
  );
  c.end();
  await stopProxy(p);
});

t.test('SIGHUP twice while pipelined lines are queued', async (t) => {
  const BATCH = 250;
  const BATCHES = 40;
  const N = BATCH * BATCHES;
  const p = await launch();
  const files = [p.logPath + '.a', p.logPath + '.b'];
  const c = await session(p.port);
  let errorsSeen = 0;
  let hups = 0;
  for (let b = 0; b < BATCHES; b++) {
    const qs: Buffer[] = [];
    for (let i = 0; i < BATCH; i++) qs.push(enc.query(`select ${b * BATCH + i}`));
    c.write(Buffer.concat(qs));
    if (b === 10 || b === 25) {
      // Rotate while this batch is being relayed and logged.
      await sleep(2);
      fs.renameSync(p.logPath, files[hups]!);
      p.proc.kill('SIGHUP');
      hups++;
    }
    const msgs = await c.readZ(BATCH, 20000);
    errorsSeen += msgs.filter((m) => m.type === 'E').length;
    if (b === 20) await p.waitStderr(/SIGHUP: reopening/);
  }
  t.equal(errorsSeen, 0, 'every query answered');
  const all = () => [...fileLines(files[0]!), ...fileLines(files[1]!), ...fileLines(p.logPath)];
  const deadline = Date.now() + 15000;
  while (all().length < N && Date.now() < deadline) await sleep(50);
  await sleep(300);
  const counts = [fileLines(files[0]!).length, fileLines(files[1]!).length, fileLines(p.logPath).length];
  const lines = all();
  t.equal(lines.length, N, `${counts.join(' + ')} = ${N} lines`);
  t.ok(counts[0]! > 0 && counts[2]! > 0, 'first and last file non-empty');
  const sqls = lines.map((l) => /sql=(.*)$/.exec(l)?.[1]);
  const want = Array.from({ length: N }, (_, i) => `select ${i}`);
  eachOnceInOrder(t, sqls, want, 'each query exactly once, files in rotation order, in order');
  c.end();
  await stopProxy(p);
});
