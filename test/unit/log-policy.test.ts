// What the query log leaves out or hides (src/log/sampling.ts, src/log/redaction.ts, SinkLogger's
// policy): sampling decided once per session (a session is written whole or not at all), `done`
// lines following their query, drops counted and reported while the writer is behind, and lines
// of redacted statements holding no data value in text or JSON.
import t from 'tap';
import { Sampler } from '../../src/log/sampling';
import { SinkLogger } from '../../src/log/client-logger';
import { lineFormatterOf, textCompletionFormatter, type QueryRecord, type SessionInfo } from '../../src/log/format';
import type { LineSink } from '../../src/log/file-sink';

const session = (id: number, over: Partial<SessionInfo> = {}): SessionInfo => ({ id, user: 'app', database: 'shop', client: '127.0.0.1:5000', application: 'web', ...over });
const q = (sql: string | null, seq: number, type: QueryRecord['type'] = 'Q', params: QueryRecord['params'] = null): QueryRecord => ({ type, statement: type === 'Q' ? null : 's1', portal: type === 'B' || type === 'E' ? '' : null, sql, params, seq });

/** A sink that keeps lines; `behind` bytes are reported queued. */
function memorySink() {
  const lines: string[] = [];
  const sink = {
    behind: 0,
    write(text: string) {
      lines.push(text);
      return true;
    },
    get bufferedBytes() {
      return sink.behind;
    },
    onDrain: (cb: () => void) => cb(),
    reopen() {},
    flush: () => Promise.resolve(),
    flushSync() {},
    close: () => Promise.resolve(),
  };
  return { sink: sink as unknown as LineSink & { behind: number }, lines };
}

const fmt = (over: Partial<Parameters<typeof lineFormatterOf>[0]> = {}) =>
  lineFormatterOf({ format: 'text', params: true, paramMaxBytes: 256, repeatedSqlMaxChars: 0, completions: true, redact: [], sqlForm: 'text', ...over });

t.test('sampling: first matching rule, one draw per session; no rule matched: written', async (t) => {
  const draws = [0.05, 0.5, 0.95];
  let i = 0;
  const s = new Sampler([{ application_name: 'batch', rate: 0.1 }, { user: 'etl', sql: '^select', rate: 0.6 }, { database: 'shop', rate: 1 }], () => draws[i++ % draws.length]!);
  const batch = [session(1, { application: 'batch' }), session(2, { application: 'batch' }), session(3, { application: 'batch' })];
  t.same(batch.map((b) => s.keeps(b, 'select 1')), [true, false, false], 'rate 0.1: only the session that drew 0.05');
  t.same(batch.map((b) => [s.keeps(b, 'select 2'), s.keeps(b, 'insert')]), [[true, true], [false, false], [false, false]], 'the same draw for every later line: whole sessions');
  const etl = session(4, { user: 'etl', database: 'other', application: '' });
  t.equal(s.keeps(etl, 'SELECT * from t'), true, 'draw 0.05 < 0.6 (the pattern is case-insensitive)');
  t.equal(s.keeps(etl, 'update t set a = 1'), true, 'a statement no rule matches: written');
  t.equal(s.keeps(session(5, { database: 'elsewhere' }), null), true, 'no rule matches the session');
});

t.test('the logger: sampled-out lines and their done lines are counted, not written', async (t) => {
  const { sink, lines } = memorySink();
  const out = session(1, { application: 'batch' });
  const kept = session(2);
  const logger = new SinkLogger(sink, fmt(), textCompletionFormatter(), { sampler: new Sampler([{ application_name: 'batch', rate: 0 }]) });
  logger.log(out, q('select 1', 1));
  logger.logCompletion(out, { seq: 1, of: 'Q', ms: 1, rows: 1, status: 'ok', sqlstate: null });
  logger.log(kept, q('select 1', 1));
  logger.logCompletion(kept, { seq: 1, of: 'Q', ms: 1, rows: 1, status: 'ok', sqlstate: null });
  t.equal(lines.length, 2, 'the kept session: its Q and its done line');
  t.ok(lines.every((l) => l.includes('conn=2 ')));
  t.equal(logger.lines, 2);
  t.equal(logger.sampledOut, 2, 'the Q and its done line');
  t.equal(logger.dropped, 0);
});

t.test('log-overflow drop: lines that find the writer behind are dropped, counted, reported once a second; clients never pause', async (t) => {
  const { sink, lines } = memorySink();
  const reports: [number, number][] = [];
  const logger = new SinkLogger(sink, fmt(), null, { dropAboveBytes: 1000, reportDropped: (n, total) => reports.push([n, total]) });
  t.equal(logger.log(session(1), q('select 1', 1)), true);
  sink.behind = 1000;
  for (let i = 0; i < 5; i++) t.equal(logger.log(session(1), q('select 2', 2 + i)), true, 'never asks to pause');
  sink.behind = 10;
  logger.log(session(1), q('select 3', 7));
  t.equal(lines.length, 2);
  t.equal(logger.lines, 2);
  t.equal(logger.dropped, 5);
  await new Promise((r) => setTimeout(r, 1100));
  t.same(reports, [[5, 5]], 'one report for that second');
  sink.behind = 5000;
  logger.log(session(1), q('select 4', 8));
  await logger.close();
  t.same(reports, [[5, 5], [1, 6]], 'the last drops are reported at close, not lost');
});

t.test('redaction: matching statements hold no data value; others are untouched', async (t) => {
  const card = Buffer.from('4111111111111111');
  const params = { formats: [0, 1], values: [card, Buffer.from([0x12, 0x34])] };
  const sql = "insert into cards (number, note) values ($1, '4111-1111-1111-1111')";
  for (const format of ['text', 'json'] as const) {
    const f = fmt({ format, redact: ['into cards'] });
    const lines = [f(session(1), q(sql, 1, 'P'), 0), f(session(1), q(sql, 2, 'B', params), 0), f(session(1), q(sql, 3, 'E'), 0)];
    for (const l of lines) t.notMatch(l, /4111|1234/, `${format}: no card number, no value: ${l.trim()}`);
    t.match(lines[1], format === 'text' ? / params=2:redacted / : /"paramCount":2,"redacted":true/, `${format}: the count of the values`);
    t.match(lines[0], /values \(\$1, \$2\)/, `${format}: the SQL in the normal form`);
    const other = f(session(1), q('select * from t where id = $1', 4, 'B', { formats: [0], values: [Buffer.from('42')] }), 0);
    t.match(other, /42/, `${format}: a statement no pattern matches keeps its values`);
    const unknown = f(session(1), q(null, 5, 'B', { formats: [0], values: [card] }), 0);
    t.notMatch(unknown, /4111/, `${format}: a Bind of a statement never seen cannot be matched: hidden`);
  }
  const all = fmt({ sqlForm: 'normalized' });
  const line = all(session(1), q("select * from t where name = 'Alice' and id = $1", 1, 'B', { formats: [0], values: [Buffer.from('7')] }), 0);
  t.notMatch(line, /Alice|'7'/, 'log-sql normalized: no literal, no value');
  t.match(line, /params=1:redacted sql=select \* from t where name = \$2 and id = \$1/);
});
