// --log-replay's capture side without processes (docs/replay.md, "The replayable log"): the JSON
// lines of every new line type and field, exact; what the formatter writes without replay is
// unchanged; the session lines through SinkLogger (sampling by the session's draw); the start
// line from a StartupMessage; the rows digest fed whole and split at every byte offset; the
// Parse's parameter types; the system identifiers' background reads; the config checks; the
// recorder's order of held lines, start and end.
import { createHash } from 'node:crypto';
import t from 'tap';
import { jsonCompletionFormatter, jsonFormatter, jsonSessionFormatter, lineFormatterOf, type LogRecord, type SessionInfo, type SessionLine, type WireRecord } from '../../src/log/format';
import type { OpsLog } from '../../src/log/ops';
import { Recorder } from '../../src/client/recorder';
import { SessionLedger } from '../../src/client/ledger';
import { Frontend } from '../../src/protocol/codes';
import { ParseMessage, decodeClientMessage, type ClientMessage } from '../../src/protocol/client-messages';
import { SinkLogger } from '../../src/log/client-logger';
import { Sampler } from '../../src/log/sampling';
import type { LineSink } from '../../src/log/file-sink';
import { RowsDigest } from '../../src/client/rows-digest';
import { reached, sessionStart } from '../../src/client/session-start';
import { SystemIds } from '../../src/upstreams/system-ids';
import { ConfigError, checkEnvironment, parseCommandLine, type Config } from '../../src/config';
import { enc, msg, i32 } from '../harness/wire';

const S: SessionInfo = { id: 17, user: 'app', database: 'shop', client: '127.0.0.1:53422' };
const NOW = Date.UTC(2026, 10, 23, 10, 15, 2, 345);
const HEAD = { ts: '2026-11-23T10:15:02.345Z', conn: 17, user: 'app', db: 'shop', client: '127.0.0.1:53422' };

const replay = jsonFormatter({ params: true, paramMaxBytes: 256, seq: true, replay: true });
const plain = jsonFormatter({ params: true, paramMaxBytes: 256, seq: true });

/** A record of the shape recorder.ts makes, every field present. */
function rec(over: Partial<LogRecord> & { type: LogRecord['type'] }): LogRecord {
  return {
    statement: null,
    portal: null,
    sql: null,
    params: null,
    cache: undefined,
    flight: undefined,
    refused: undefined,
    seq: 1,
    wire: undefined,
    ...over,
  } as LogRecord;
}

/** The line as parsed JSON, checking it is one line ending in a newline. */
function parsed(line: string): Record<string, unknown> {
  if (!line.endsWith('\n') || line.indexOf('\n') !== line.length - 1) throw new Error(`not one line: ${JSON.stringify(line)}`);
  return JSON.parse(line) as Record<string, unknown>;
}

t.test('json with replay: exact P, B, E lines with their wire details', async (tt) => {
  tt.same(parsed(replay(S, rec({ type: 'P', statement: 's1', sql: 'select $1, $2', wire: { paramTypes: [23, 0] }, seq: 3 }), NOW)), { ...HEAD, type: 'P', seq: 3, paramTypes: [23, 0], stmt: 's1', sql: 'select $1, $2' });
  tt.same(parsed(replay(S, rec({ type: 'P', statement: '', sql: 'select 1', wire: { paramTypes: [] } }), NOW))['paramTypes'], [], 'P without types: []');
  tt.same(parsed(replay(S, rec({ type: 'P', statement: '', sql: 'select 1', wire: { paramTypes: [4294967295] } }), NOW))['paramTypes'], [4294967295], 'OIDs are unsigned');
  const params = { formats: [1, 0], values: [Buffer.from([0, 0, 0, 42]), Buffer.from('x')] };
  tt.same(parsed(replay(S, rec({ type: 'B', statement: 's1', portal: 'p', sql: 'select $1, $2', params, wire: { resultFormats: [1] }, seq: 4 }), NOW)), {
    ...HEAD,
    type: 'B',
    seq: 4,
    paramFormats: [1, 0],
    resultFormats: [1],
    stmt: 's1',
    portal: 'p',
    params: [{ hex: '0000002a' }, 'x'],
    sql: 'select $1, $2',
  });
  const none = parsed(replay(S, rec({ type: 'B', statement: '', portal: '', sql: 'select 1', params: { formats: [], values: [] }, wire: { resultFormats: [] } }), NOW));
  tt.same([none['paramFormats'], none['resultFormats']], [[], []], 'B without codes: [] and []');
  const one = parsed(replay(S, rec({ type: 'B', statement: '', portal: '', sql: 'select $1, $2', params: { formats: [1], values: [Buffer.from([1]), Buffer.from([2])] }, wire: { resultFormats: [1] } }), NOW));
  tt.same([one['paramFormats'], one['resultFormats']], [[1], [1]], 'one code for all, as sent');
  tt.same(parsed(replay(S, rec({ type: 'E', statement: 's1', portal: 'p', sql: 'select 1', wire: { maxRows: 100 }, seq: 5 }), NOW)), { ...HEAD, type: 'E', seq: 5, maxRows: 100, stmt: 's1', portal: 'p', sql: 'select 1' });
  tt.equal(parsed(replay(S, rec({ type: 'E', statement: '', portal: '', sql: 'select 1', wire: { maxRows: 0 } }), NOW))['maxRows'], 0, 'maxRows 0: all rows');
  tt.same(parsed(replay(S, rec({ type: 'Q', sql: 'select 1', seq: 6 }), NOW)), { ...HEAD, type: 'Q', seq: 6, sql: 'select 1' }, 'Q: nothing added but seq');
});

t.test('json with replay: D, C, S, H lines carry their target and nothing else', async (tt) => {
  const wire = (over: Partial<WireRecord> & { type: WireRecord['type'] }) => parsed(replay(S, rec(over), NOW));
  tt.same(wire({ type: 'D', statement: 's1', wire: { kind: 'S' }, seq: 7 }), { ...HEAD, type: 'D', seq: 7, kind: 'S', name: 's1' });
  tt.same(wire({ type: 'D', statement: '', wire: { kind: 'P' }, seq: 8 }), { ...HEAD, type: 'D', seq: 8, kind: 'P', name: '' }, 'the unnamed portal: ""');
  tt.same(wire({ type: 'C', statement: 'p\n1', wire: { kind: 'P' }, seq: 9 }), { ...HEAD, type: 'C', seq: 9, kind: 'P', name: 'p\n1' }, 'a name with a newline round-trips');
  tt.same(wire({ type: 'C', statement: 's1', wire: { kind: 'S' }, seq: 10 }), { ...HEAD, type: 'C', seq: 10, kind: 'S', name: 's1' });
  tt.same(wire({ type: 'S', seq: 11 }), { ...HEAD, type: 'S', seq: 11 });
  tt.same(wire({ type: 'H', seq: 12 }), { ...HEAD, type: 'H', seq: 12 });
  const node = parsed(replay({ ...S, node: '10.0.0.5:5432' }, rec({ type: 'S', seq: 1 }), NOW));
  tt.equal(node['node'], '10.0.0.5:5432', 'the head as on every line');
});

t.test('without replay the query lines are as before: no wire details, even when the record has them', async (tt) => {
  const r = rec({ type: 'B', statement: 's1', portal: '', sql: 'select $1', params: { formats: [0], values: [Buffer.from('1')] }, wire: { resultFormats: [1] }, seq: 2 });
  tt.same(parsed(plain(S, r, NOW)), { ...HEAD, type: 'B', seq: 2, stmt: 's1', portal: '', params: ['1'], sql: 'select $1' });
  tt.same(parsed(plain(S, rec({ type: 'E', statement: '', portal: '', sql: 'x', wire: { maxRows: 3 } }), NOW)), { ...HEAD, type: 'E', seq: 1, stmt: '', portal: '', sql: 'x' });
  tt.same(parsed(plain(S, rec({ type: 'P', statement: '', sql: 'x', wire: { paramTypes: [23] } }), NOW)), { ...HEAD, type: 'P', seq: 1, stmt: '', sql: 'x' });
});

t.test('lineFormatterOf: replay turns seq on and keeps the wire details through redaction', async (tt) => {
  const f = lineFormatterOf({ format: 'json', params: true, paramMaxBytes: 256, repeatedSqlMaxChars: 0, completions: false, replay: true, redact: ['cards'], sqlForm: 'text' });
  const line = parsed(f(S, rec({ type: 'B', statement: '', portal: '', sql: "select * from cards where n = '4111'", params: { formats: [1], values: [Buffer.from([1])] }, wire: { resultFormats: [0] }, seq: 9 }), NOW));
  tt.equal(line['seq'], 9, 'seq without log-completions');
  tt.same([line['paramFormats'], line['resultFormats'], line['paramCount'], line['redacted']], [[1], [0], 1, true], 'formats survive redaction; values do not');
  tt.notMatch(JSON.stringify(line), /4111/);
  const p = parsed(f(S, rec({ type: 'P', statement: '', sql: 'select * from cards where n = $1', wire: { paramTypes: [25] } }), NOW));
  tt.same(p['paramTypes'], [25], 'paramTypes of a redacted Parse');
  const e = parsed(f(S, rec({ type: 'E', statement: '', portal: '', sql: 'select * from cards', wire: { maxRows: 5 } }), NOW));
  tt.equal(e['maxRows'], 5);
});

t.test('session lines: start (with and without system) and end', async (tt) => {
  const f = jsonSessionFormatter();
  const start = { startup: { application_name: 'pgbench', options: '-c geqo=off' }, protocol: '3.0', upstream: '127.0.0.1:5432', system: '7301234567890123456' };
  tt.same(parsed(f(S, { type: 'start', start }, NOW)), { ...HEAD, type: 'start', startup: { application_name: 'pgbench', options: '-c geqo=off' }, protocol: '3.0', upstream: '127.0.0.1:5432', system: '7301234567890123456' });
  const noSys = parsed(f(S, { type: 'start', start: { ...start, system: undefined, startup: {} } }, NOW));
  tt.notOk('system' in noSys, 'no system when unknown');
  tt.same(noSys['startup'], {});
  const evil = parsed(f(S, { type: 'start', start: { ...start, startup: { application_name: 'a\nb\u2028c' } } }, NOW));
  tt.same(evil['startup'], { application_name: 'a\nb\u2028c' }, 'a client-chosen value stays on one line and round-trips');
  for (const reason of ['terminate', 'client', 'server', 'proxy'] as const) {
    tt.same(parsed(f(S, { type: 'end', reason }, NOW)), { ...HEAD, type: 'end', reason });
  }
});

t.test('done lines: rowsDigest when set, absent otherwise', async (tt) => {
  const f = jsonCompletionFormatter();
  const base = { seq: 4, of: 'E' as const, ms: 0.5, rows: 1, status: 'ok' as const, sqlstate: null };
  tt.equal(parsed(f(S, { ...base, rowsDigest: '0123456789abcdef' }, NOW))['rowsDigest'], '0123456789abcdef');
  tt.notOk('rowsDigest' in parsed(f(S, { ...base, rowsDigest: undefined }, NOW)));
  tt.notOk('rowsDigest' in parsed(f(S, base, NOW)));
});

/** A sink that keeps lines. */
function memorySink(): { sink: LineSink; lines: string[] } {
  const lines: string[] = [];
  const sink = {
    write(text: string) {
      lines.push(text);
      return true;
    },
    bufferedBytes: 0,
    onDrain: (cb: () => void) => cb(),
    reopen() {},
    flush: () => Promise.resolve(),
    flushSync() {},
    close: () => Promise.resolve(),
  };
  return { sink: sink as unknown as LineSink, lines };
}

t.test('SinkLogger: session and wire lines follow the session draw; without a session formatter no session line', async (tt) => {
  const { sink, lines } = memorySink();
  const sampler = new Sampler([{ application_name: 'batch', rate: 0.5 }], () => 0.7);
  const logger = new SinkLogger(sink, replay, jsonCompletionFormatter(), { sampler }, jsonSessionFormatter());
  const out: SessionInfo = { ...S, id: 1, application: 'batch' };
  const kept: SessionInfo = { ...S, id: 2, application: 'web' };
  const start = { startup: {}, protocol: '3.0', upstream: 'h:1', system: undefined };
  for (const s of [out, kept]) {
    logger.logSession(s, { type: 'start', start });
    logger.log(s, rec({ type: 'Q', sql: 'select 1', seq: 1 }) as never);
    logger.logWire(s, rec({ type: 'S', seq: 2 }) as WireRecord);
    logger.logCompletion(s, { seq: 1, of: 'Q', ms: 1, rows: 1, status: 'ok', sqlstate: null });
    logger.logSession(s, { type: 'end', reason: 'client' });
  }
  tt.same(
    lines.map((l) => [parsed(l)['conn'], parsed(l)['type']]),
    [
      [2, 'start'],
      [2, 'Q'],
      [2, 'S'],
      [2, 'done'],
      [2, 'end'],
    ],
    'the sampled-out session has no line at all; the kept one all five',
  );
  tt.equal(logger.sampledOut, 5);
  tt.equal(logger.lines, 5);
  const { sink: s2, lines: l2 } = memorySink();
  const noSessions = new SinkLogger(s2, replay, null);
  tt.equal(noSessions.logSession(S, { type: 'end', reason: 'proxy' }), true);
  tt.same(l2, [], 'no session formatter: nothing written');
});

t.test('sessionStart: every startup parameter but user and database; the protocol; then the node and its system', async (tt) => {
  const packet = enc.startup({ user: 'app', database: 'shop', application_name: 'pgbench', options: '-c geqo=off', __proto__: 'x', client_encoding: 'UTF8' });
  const s = sessionStart(packet);
  tt.same({ ...s.startup }, { application_name: 'pgbench', options: '-c geqo=off', __proto__: 'x', client_encoding: 'UTF8' });
  tt.equal(Object.getPrototypeOf(s.startup), null, 'a parameter named __proto__ is a key, not a prototype');
  tt.same(JSON.parse(JSON.stringify(s.startup)), { application_name: 'pgbench', options: '-c geqo=off', __proto__: 'x', client_encoding: 'UTF8' });
  tt.equal(s.protocol, '3.0');
  tt.equal(sessionStart(enc.startup({ user: 'u' }, 0x00030002)).protocol, '3.2', 'the minor version as asked');
  tt.same({ ...sessionStart(enc.startup({ user: 'u' })).startup }, {}, 'nothing but user: {}');
  const ids = { get: (n: string) => (n === '10.0.0.5:5432' ? '123' : undefined) };
  tt.same([reached(sessionStart(packet), '10.0.0.5:5432', ids).upstream, reached(sessionStart(packet), '10.0.0.5:5432', ids).system], ['10.0.0.5:5432', '123']);
  tt.equal(reached(sessionStart(packet), '10.0.0.6:5432', ids).system, undefined, 'not known yet');
  tt.equal(reached(sessionStart(packet), '10.0.0.5:5432', null).system, undefined, 'no source: no system');
});

/** DataRow messages of these rows (text values). */
function dataRows(rows: string[][]): Buffer {
  return Buffer.concat(
    rows.map((r) =>
      msg(
        'D',
        Buffer.concat([Buffer.from([r.length >> 8, r.length & 0xff]), ...r.flatMap((v) => [i32(Buffer.byteLength(v)), Buffer.from(v)])]),
      ),
    ),
  );
}

/** The digest by the contract: SHA-1 over the bodies, first 16 hex. */
function expectedDigest(rows: string[][]): string {
  const h = createHash('sha1');
  const all = dataRows(rows);
  let off = 0;
  while (off < all.length) {
    const end = off + 1 + all.readUInt32BE(off + 1);
    h.update(all.subarray(off + 5, end));
    off = end;
  }
  return h.digest('hex').slice(0, 16);
}

/** Feed messages the way the server framer hands them to the session: whole, or header first then pieces. */
function feed(d: RowsDigest, bytes: Buffer, cut: number): void {
  let off = 0;
  while (off < bytes.length) {
    const end = off + 1 + bytes.readUInt32BE(off + 1);
    if (cut <= off || cut >= end) d.whole(bytes, off, end);
    else if (cut - off < 5) {
      // The header straddles: the framer assembles it and hands it alone, then the body.
      d.piece(Buffer.from(bytes.subarray(off, off + 5)), 0, 5);
      d.piece(bytes, off + 5, end);
    } else {
      d.piece(bytes, off, cut);
      d.piece(bytes, cut, end);
    }
    off = end;
  }
}

t.test('RowsDigest: whole, split at every byte offset, in pieces of every size, and from a cached answer agree', async (tt) => {
  const rows = [['1', 'alice'], ['2', ''], ['3', 'x'.repeat(40)]];
  const want = expectedDigest(rows);
  const bytes = dataRows(rows);
  const got = new Set<string | undefined>();
  for (let cut = 0; cut <= bytes.length; cut++) {
    const d = new RowsDigest();
    feed(d, bytes, cut);
    got.add(d.take());
  }
  tt.same([...got], [want], `every split gives ${want}`);
  for (const size of [1, 2, 3, 7]) {
    // One streamed message in pieces of `size` bytes after its header.
    const d = new RowsDigest();
    let off = 0;
    while (off < bytes.length) {
      const end = off + 1 + bytes.readUInt32BE(off + 1);
      d.piece(bytes, off, off + 5);
      for (let p = off + 5; p < end; p += size) d.piece(bytes, p, Math.min(end, p + size));
      off = end;
    }
    tt.equal(d.take(), want, `pieces of ${size} bytes`);
  }
  const answer = Buffer.concat([msg('T', Buffer.from([0, 0])), bytes, msg('C', Buffer.from('SELECT 3\0')), msg('Z', Buffer.from('I'))]);
  const c = new RowsDigest();
  c.answer(answer);
  tt.equal(c.take(), want, 'a cached answer: only its DataRows');
  tt.equal(c.take(), undefined, 'take resets: the next query starts afresh');
  const none = new RowsDigest();
  none.answer(Buffer.concat([msg('C', Buffer.from('INSERT 0 1\0')), msg('Z', Buffer.from('I'))]));
  tt.equal(none.take(), undefined, 'no rows: no digest');
  tt.not(expectedDigest([['1', 'alice']]), want, 'other rows, another digest');
  tt.equal(want.length, 16);
});

t.test('ParseMessage.paramTypes: the OIDs as sent, unsigned', async (tt) => {
  const types = [23, 0, 25, 4294967295];
  // The harness writes signed 32-bit words: -1 is the bytes ff ff ff ff, OID 4294967295.
  const b = enc.parse('s', 'select $1', [23, 0, 25, -1]);
  tt.same(new ParseMessage(b, 0, b.length).paramTypes(), types);
  const framed = Buffer.concat([Buffer.from('junk'), b]);
  tt.same(new ParseMessage(framed, 4, framed.length).paramTypes(), types, 'at an offset in its chunk');
  const none = enc.parse('', 'select 1');
  tt.same(new ParseMessage(none, 0, none.length).paramTypes(), []);
  const kept = new ParseMessage(framed, 4, framed.length);
  kept.keep();
  tt.same(kept.paramTypes(), types, 'after keep()');
});

t.test('SystemIds: read once per node in the background; a failure is said once and retried later', async (tt) => {
  let now = 0;
  const asked: string[] = [];
  const answers = new Map<string, () => Promise<string>>([
    ['a:1', () => Promise.resolve('111')],
    ['[::1]:2', () => Promise.reject(new Error('permission denied for function pg_control_system'))],
  ]);
  const warned: string[] = [];
  const ops = { warn: (m: string) => warned.push(m), info: (m: string) => warned.push('info ' + m) } as never;
  const ids = new SystemIds(
    (n) => {
      const name = n.host.includes(':') ? `[${n.host}]:${n.port}` : `${n.host}:${n.port}`;
      asked.push(name);
      return answers.get(name)!();
    },
    ops,
    () => now,
  );
  ids.learn([
    { host: 'a', port: 1 },
    { host: '::1', port: 2 },
  ]);
  tt.same(asked, ['a:1', '[::1]:2'], 'both asked at once');
  tt.equal(ids.get('a:1'), undefined, 'not known before the answer: the session does not wait');
  await new Promise((r) => setImmediate(r));
  tt.equal(ids.get('a:1'), '111');
  tt.equal(ids.get('[::1]:2'), undefined);
  tt.equal(warned.length, 1, 'the failure said once');
  tt.match(warned[0], /system identifier/);
  ids.get('[::1]:2');
  tt.same(asked, ['a:1', '[::1]:2'], 'not asked again before the backoff');
  now = 1000;
  answers.set('[::1]:2', () => Promise.resolve('222'));
  tt.equal(ids.get('[::1]:2'), undefined, 'asked again, answer pending');
  await new Promise((r) => setImmediate(r));
  tt.equal(ids.get('[::1]:2'), '222');
  tt.same(asked, ['a:1', '[::1]:2', '[::1]:2'], 'one retry; a known node never again');
  tt.equal(warned.length, 2, 'and one line when it is read at last');
  answers.set('c:3', () => Promise.resolve('333'));
  tt.equal(ids.get('c:3'), undefined, 'a node added later (a reload) is asked when a session names it');
  await new Promise((r) => setImmediate(r));
  tt.equal(ids.get('c:3'), '333');
  tt.equal(ids.get('nonsense'), undefined, 'a name without a port is never asked');
  tt.same(asked.length, 4);
});

/** Parsed and checked as --check does; the Config, or the ConfigError. */
function checked(argv: string[]): Config | ConfigError {
  const cmd = parseCommandLine([...argv, '--log', 'none']);
  if (cmd.kind !== 'run') throw new Error('not a run');
  try {
    checkEnvironment(cmd.config);
    return cmd.config;
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
}

t.test('config: log-replay needs json, turns log-completions on, refuses log-sample rules with sql', async (tt) => {
  const off = checked([]);
  tt.ok(!(off instanceof ConfigError) && off.log.replay === false && off.log.completions === false, 'off by default, completions untouched');
  const text = checked(['--log-replay']);
  tt.ok(text instanceof ConfigError);
  tt.match((text as ConfigError).message, /log-format json/);
  tt.equal((text as ConfigError).key, 'log-replay');
  const on = checked(['--log-replay', '--log-format', 'json']);
  tt.ok(!(on instanceof ConfigError) && on.log.replay && on.log.completions, 'log-completions turned on');
  const explicit = checked(['--log-replay', '--log-format', 'json', '--log-completions']);
  tt.ok(!(explicit instanceof ConfigError) && explicit.log.completions, 'both asked: fine');
  const sql = checked(['--log-replay', '--log-format', 'json', '--log-sample', 'application_name=a,rate=0.5;sql=^select,rate=0.1']);
  tt.ok(sql instanceof ConfigError);
  tt.equal((sql as ConfigError).key, 'log-sample');
  tt.match((sql as ConfigError).message, /rule 2 has sql/);
  const session = checked(['--log-replay', '--log-format', 'json', '--log-sample', 'application_name=a,rate=0.5']);
  tt.notOk(session instanceof ConfigError, 'rules on the session only: fine');
  const noReplay = checked(['--log-sample', 'sql=^select,rate=0.1']);
  tt.notOk(noReplay instanceof ConfigError, 'sql rules without replay: as before');
});

/** A logger that keeps every call, in order. */
function callLogger() {
  const calls: string[] = [];
  const logger = {
    enabled: true,
    lines: 0,
    queuedBytes: 0,
    log: (_s: SessionInfo, r: LogRecord) => (calls.push(`${r.type}${r.seq}`), true),
    logWire: (_s: SessionInfo, r: LogRecord) => (calls.push(`${r.type}${r.seq}`), true),
    logSession: (_s: SessionInfo, l: SessionLine) => (calls.push(l.type === 'start' ? `start ${l.start.upstream} ${l.start.system} ${JSON.stringify(l.start.startup)}` : `end ${l.reason}`), true),
    logCompletion: (_s: SessionInfo, c: { seq: number; status: string }) => (calls.push(`done${c.seq} ${c.status}`), true),
    onDrain: (cb: () => void) => cb(),
    reopen() {},
    flush: () => Promise.resolve(),
    flushSync() {},
    close: () => Promise.resolve(),
  };
  return { logger, calls };
}

function recorderWith(replayOn: boolean) {
  const { logger, calls } = callLogger();
  const warned: string[] = [];
  const ops = { warn: (m: string) => warned.push(m) } as unknown as OpsLog;
  const host = { logger, digests: null, settings: { logCompletions: true, logReplay: replayOn }, tracksCompletions: true, systemIds: { get: (n: string) => (n === 'h:1' ? '42' : undefined) } };
  const r = new Recorder(host as never, new SessionLedger(), () => {});
  r.begin({ id: 1, user: 'u', database: 'd', client: 'c:1' }, enc.startup({ user: 'u', database: 'd', application_name: 'app' }));
  return { r, calls, warned, ops };
}

const decoded = (b: Buffer): ClientMessage => decodeClientMessage(b[0]!, b, 0, b.length)!;

t.test('Recorder with replay: records held before the session is accepted follow its start line; end after the last', async (tt) => {
  const { r, calls, ops } = recorderWith(true);
  r.record(decoded(enc.parse('s', 'select 1')), null);
  r.record(decoded(enc.describe('S', 's')), null);
  r.bare(Frontend.Sync);
  tt.same(calls, [], 'nothing before PostgreSQL accepts the session');
  r.accepted({ address: 'h:1' });
  tt.same(calls, ['start h:1 42 {"application_name":"app"}', 'P1', 'D2', 'S3'], 'start first, then the held lines in order');
  r.record(decoded(enc.bind('', 's', [])), null);
  r.record(decoded(enc.close('P', '')), null);
  r.bare(Frontend.Flush);
  r.bare(Frontend.Terminate);
  r.record(decoded(enc.query('select 2')), null);
  r.close('client', ops, 1, 'c:1');
  tt.same(calls.slice(4), ['B4', 'C5', 'H6', 'Q7', 'end client'], 'seq goes on over every recorded message; Terminate is none');
});

t.test('Recorder with replay: a session never accepted has no start or end line, and says so', async (tt) => {
  const { r, calls, warned, ops } = recorderWith(true);
  r.bare(Frontend.Sync);
  r.close('server', ops, 1, 'c:1');
  tt.same(calls, []);
  tt.equal(warned.length, 1);
});

t.test('Recorder without replay: no D/C/S/H, no session lines, seq as before', async (tt) => {
  const { r, calls, ops } = recorderWith(false);
  r.accepted({ address: 'h:1' });
  r.record(decoded(enc.parse('s', 'select 1')), null);
  r.record(decoded(enc.describe('S', 's')), null);
  tt.equal(r.bare(Frontend.Sync), null);
  r.record(decoded(enc.close('S', 's')), null);
  r.record(decoded(enc.query('select 2')), null);
  r.close('terminate', ops, 1, 'c:1');
  tt.same(calls, ['P1', 'Q2']);
});
