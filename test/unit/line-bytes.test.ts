// The text log's byte path (src/log/line-bytes.ts) against the string formatter it stands in for
// (textFormatter, format.ts): for random records, sessions, times and settings, a line the byte
// path writes must be byte for byte the formatter's line, and a line it declines must leave the
// sink untouched (the formatter writes it). Declining has to stay the exception for plain pgbench
// traffic, or the path would do nothing.
import t from 'tap';
import { textFormatter, type FormatOptions, type LogRecord, type SessionInfo } from '../../src/log/format';
import { textLineWriter, type ByteSink } from '../../src/log/line-bytes';
import { BindMessage } from '../../src/protocol/client-messages';
import { prng } from '../harness/prng';
import { enc } from '../harness/wire';

/** A sink that reserves at a random offset of a fresh buffer and remembers what was committed. */
class MemorySink implements ByteSink {
  buf = Buffer.alloc(0);
  reservedAt = 0;
  committed: Buffer | null = null;
  constructor(private readonly rnd: () => number) {}
  reserve(maxBytes: number): Buffer | null {
    this.reservedAt = Math.floor(this.rnd() * 50);
    // Garbage around the line: a writer that strays past its end or before its start shows up.
    this.buf = Buffer.alloc(this.reservedAt + maxBytes + 50, 0x7e);
    return this.buf;
  }
  commit(end: number): boolean {
    this.committed = Buffer.from(this.buf.subarray(this.reservedAt, end));
    return true;
  }
}

t.test('every line the byte path writes is the string formatter\'s line, byte for byte', async (t) => {
  const rnd = prng(21_2);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const names = ['', 's1', 'P0_1', 'stmt "x"', 'é', 'a\nb', 'x.y$z-1'];
  const sqls = ['SELECT 1', 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;', "SELECT 'é' -- ü", 'SELECT 1\n', 'a\\b', '', 'SELECT $1::text, $2::bytea'];
  const pieces = ['a', 'Z', '0', ' ', '~', "'", '\\', '\n', '\x7f', 'é', '漢', '\u2028'];
  const sessions: SessionInfo[] = [
    { id: 1, user: 'app', database: 'shop', client: '127.0.0.1:5000' },
    { id: 2, user: 'Zoë', database: 'a b', client: '[::1]:6000', node: '10.0.0.2:5432' },
    { id: 3, user: 'x"y', database: 'db', client: '127.0.0.1:5001' },
  ];
  const settings: FormatOptions[] = [
    { params: true, paramMaxBytes: 256, repeatedSqlMaxChars: 4096 },
    { params: true, paramMaxBytes: 5, repeatedSqlMaxChars: 12 },
    { params: false, paramMaxBytes: 256, repeatedSqlMaxChars: 0 },
  ];
  let written = 0;
  let declined = 0;
  for (const opts of settings) {
    const format = textFormatter(opts);
    let writer = textLineWriter(opts)!;
    let now = Date.UTC(2026, 11, 6, 3, 0, 0, 0);
    for (let round = 0; round < 1500; round++) {
      // A new writer now and then: its first lines meet the memos empty.
      if (round % 10 === 0) writer = textLineWriter(opts)!;
      now += Math.floor(rnd() * 3);
      const type = pick(['Q', 'P', 'B', 'E', 'B', 'E'] as const);
      const values: (Buffer | null)[] = [];
      for (let i = Math.floor(rnd() * 4); i > 0; i--) {
        if (rnd() < 0.15) values.push(null);
        // Mostly printable ASCII, as most parameters are; sometimes anything.
        else if (rnd() < 0.6) values.push(Buffer.from(String(Math.floor(rnd() * 1e6)), 'latin1'));
        else values.push(Buffer.from(Array.from({ length: Math.floor(rnd() * 8) }, () => pick(pieces)).join(''), 'utf8'));
      }
      const formats = pick([[], [0], [1], values.map(() => (rnd() < 0.3 ? 1 : 0))]);
      const bind = enc.bind('', 's1', values, formats);
      const at = Math.floor(rnd() * 30);
      const chunk = Buffer.concat([Buffer.alloc(at, 0x41), bind, Buffer.alloc(10, 0x41)]);
      const message = new BindMessage(chunk, at, at + bind.length);
      const params = type !== 'B' ? null : rnd() < 0.9 ? message : { formats, values };
      const r: LogRecord = {
        type,
        statement: type === 'Q' ? null : pick(names),
        portal: type === 'B' || type === 'E' ? pick(names) : null,
        sql: type === 'Q' || rnd() < 0.9 ? pick(sqls) : null,
        params,
        cache: rnd() < 0.05 ? 'hit' : undefined,
        flight: undefined,
        refused: undefined,
        seq: round,
        wire: undefined,
      };
      const s = pick(sessions);
      const sink = new MemorySink(rnd);
      const verdict = writer(s, r, now, sink);
      const want = Buffer.from(format(s, r, now), 'utf8');
      if (verdict === null) {
        declined++;
        if (sink.committed !== null) {
          t.fail(`round ${round}: declined, yet committed ${JSON.stringify(sink.committed.toString())}`);
          return;
        }
        continue;
      }
      written++;
      if (sink.committed === null || !sink.committed.equals(want)) {
        t.equal(sink.committed?.toString('utf8'), want.toString('utf8'), `round ${round}: the byte path's line`);
        return;
      }
    }
  }
  t.ok(written > 1500, `the byte path wrote ${written} lines`);
  t.ok(declined > 500, `and declined ${declined} it cannot write`);
});

t.test('a plain pgbench Bind and Execute go the byte path', async (t) => {
  const opts = { params: true, paramMaxBytes: 256, repeatedSqlMaxChars: 4096 };
  const writer = textLineWriter(opts)!;
  const s: SessionInfo = { id: 7, user: 'postgres', database: 'prof', client: '127.0.0.1:5555' };
  const bind = enc.bind('', 'P0_1', ['12345']);
  const sql = 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;';
  const now = Date.UTC(2026, 11, 6, 3, 0, 0, 123);
  const sink = new MemorySink(() => 0.5);
  t.equal(writer(s, { type: 'B', statement: 'P0_1', portal: '', sql, params: new BindMessage(bind, 0, bind.length) }, now, sink), true);
  t.equal(sink.committed?.toString(), `2026-12-06T03:00:00.123Z conn=7 postgres@prof 127.0.0.1:5555 B stmt=P0_1 params=('12345') sql=${sql}\n`);
  t.equal(writer(s, { type: 'E', statement: 'P0_1', portal: '', sql, params: null }, now, sink), true);
  t.equal(sink.committed?.toString(), `2026-12-06T03:00:00.123Z conn=7 postgres@prof 127.0.0.1:5555 E stmt=P0_1 sql=${sql}\n`);
});

t.test('a first Bind or Execute line of a statement the ledger does not know ends in sql=?', async (t) => {
  // The memo of the last B/E SQL field starts empty: a null SQL first must not be taken for it.
  const s: SessionInfo = { id: 1, user: 'u', database: 'd', client: '127.0.0.1:1' };
  const now = Date.UTC(2026, 11, 6, 3, 0, 0, 0);
  for (const type of ['B', 'E'] as const) {
    const writer = textLineWriter({ params: true, paramMaxBytes: 256, repeatedSqlMaxChars: 4096 })!;
    const bind = enc.bind('', 's9', []);
    const r: LogRecord = { type, statement: 's9', portal: '', sql: null, params: type === 'B' ? new BindMessage(bind, 0, bind.length) : null };
    const sink = new MemorySink(() => 0);
    t.equal(writer(s, r, now, sink), true, `${type} written`);
    t.equal(sink.committed?.toString(), textFormatter({ params: true, paramMaxBytes: 256, repeatedSqlMaxChars: 4096 })(s, r, now), `${type} as the formatter writes it`);
  }
});

t.test('settings whose lines carry a seq have no byte path', async (t) => {
  t.equal(textLineWriter({ params: true, paramMaxBytes: 256, seq: true }), null);
});
