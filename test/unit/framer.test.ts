// Framer: every way of cutting a realistic client stream into socket chunks must deliver the
// same messages, byte for byte, in order. Input is built with the independent test encoder.
import t from 'tap';
import { Framer, describeType, type FrameHandler, type FramerOptions } from '../../src/protocol/framer';
import { enc } from '../harness/wire';
import { prng } from '../harness/prng';

const code = (c: string): number => c.charCodeAt(0);
/** What the real client inspects: Query, Parse, Bind, Execute, Close. */
const INSPECT = ['Q', 'P', 'B', 'E', 'C'].map(code);
const PROTOCOL_V3 = 0x00030000;

const i32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

/** A typed header with any declared length (the body is not included). */
function typedHeader(type: string, length: number): Buffer {
  const b = Buffer.alloc(5);
  b.write(type, 0, 'latin1');
  b.writeUInt32BE(length, 1);
  return b;
}

interface Expected {
  /** 0 for untyped startup packets. */
  type: number;
  offset: number;
  length: number;
  startup: boolean;
}

interface Stream {
  input: Buffer;
  messages: Expected[];
}

/** Concatenate messages, remembering where each one starts; the first `startupCount` are untyped. */
function stream(parts: Buffer[], startupCount: number): Stream {
  const messages: Expected[] = [];
  let offset = 0;
  parts.forEach((p, i) => {
    const startup = i < startupCount;
    messages.push({ type: startup ? 0 : p[0]!, offset, length: p.length, startup });
    offset += p.length;
  });
  return { input: Buffer.concat(parts), messages };
}

const bigCopy = Buffer.alloc(100 * 1024);
for (let i = 0; i < bigCopy.length; i++) bigCopy[i] = (i * 7 + (i >> 8)) & 0xff;
const bigParam = 'x'.repeat(70 * 1024 - 3) + 'end';

/** SSLRequest, StartupMessage, then a pipelined extended batch, a Query, ~100 KB CopyData and a 70 KB Bind. */
const REALISTIC = stream(
  [
    enc.sslRequest(),
    enc.startup({ user: 'alice', database: 'shop', application_name: 'framer-test' }),
    enc.parse('s1', 'SELECT $1::int, $2::text', [23, 25]),
    enc.bind('', 's1', ['42', null], [0], [1]),
    enc.describe('P', ''),
    enc.execute('', 0),
    enc.sync(),
    enc.query('SELECT 1; SELECT 2'),
    enc.copyData(bigCopy),
    enc.bind('p2', 's1', ['7', bigParam]),
    enc.flush(),
    enc.execute('p2', 100),
    enc.close('P', 'p2'),
    enc.copyDone(),
    enc.sync(),
  ],
  2,
);

interface RunResult {
  /** First problem found, or null when every byte arrived where it should. */
  problem: string | null;
  viewMessages: number;
  copiedMessages: number;
  passthroughPieces: number;
  passthroughMessages: number;
}

interface Piece {
  kind: 'message' | 'passthrough';
  type: number;
  buf: Buffer;
  start: number;
  end: number;
}

/**
 * Feed `s.input` to a framer in chunks of the given sizes and check every delivery against the
 * expected message list. Views are checked after push() returns: the client queues them in an
 * Outbox and only flushes after push(), so they must still hold the right bytes then.
 */
function runChunks(s: Stream, sizes: number[], opts: Partial<FramerOptions> = {}): RunResult {
  const res: RunResult = { problem: null, viewMessages: 0, copiedMessages: 0, passthroughPieces: 0, passthroughMessages: 0 };
  const inspect = new Set(opts.inspect ?? INSPECT);
  let pieces: Piece[] = [];
  const errors: string[] = [];
  const handler: FrameHandler = {
    onMessage(type, buf, start, end) {
      pieces.push({ kind: 'message', type, buf, start, end });
      // Like the real client: after the StartupMessage (not after SSLRequest), typed messages follow.
      if (type === 0 && end - start >= 8 && buf.readUInt32BE(start + 4) === PROTOCOL_V3) framer.setStartup(false);
    },
    onPassthrough(type, buf, start, end) {
      pieces.push({ kind: 'passthrough', type, buf, start, end });
    },
    onFramingError(reason) {
      errors.push(reason);
    },
  };
  const framer = new Framer(handler, { maxLength: 1 << 20, inspect: INSPECT, startup: true, ...opts });

  let cursor = 0; // input offset of the next byte expected
  let idx = 0; // index of the message the next byte belongs to
  let chunkStart = 0;
  const fail = (msg: string): RunResult => {
    res.problem = `${msg} (chunk sizes ${sizes.length <= 8 ? JSON.stringify(sizes) : `${sizes.length} chunks`})`;
    return res;
  };
  for (const size of sizes) {
    const chunk = Buffer.from(s.input.subarray(chunkStart, chunkStart + size)); // a fresh socket chunk
    pieces = [];
    framer.push(chunk);
    if (errors.length > 0) return fail(`unexpected framing error: ${errors[0]}`);
    for (const p of pieces) {
      const len = p.end - p.start;
      // An empty push mid-stream yields an empty passthrough piece: harmless (sockets never
      // deliver empty chunks), so only non-empty chunks must give non-empty pieces.
      if (len === 0 && size === 0 && p.kind === 'passthrough') continue;
      if (p.start < 0 || p.end > p.buf.length || len <= 0) return fail(`bad range [${p.start}, ${p.end}) of a ${p.buf.length}-byte buffer`);
      const m = s.messages[idx];
      if (m === undefined) return fail(`delivery after the last message at offset ${cursor}`);
      if (p.type !== m.type) return fail(`message ${idx}: type ${p.type} delivered, ${m.type} expected`);
      if (s.input.compare(p.buf, p.start, p.end, cursor, cursor + len) !== 0) return fail(`bytes at input offset ${cursor} (+${len}) differ`);
      if (p.kind === 'message') {
        if (cursor !== m.offset || len !== m.length) return fail(`message ${idx}: onMessage got [${cursor}, +${len}), expected [${m.offset}, +${m.length})`);
        const wholeInChunk = m.offset >= chunkStart && m.offset + m.length <= chunkStart + size;
        if (wholeInChunk) {
          if (p.buf !== chunk || p.start !== m.offset - chunkStart) return fail(`message ${idx} lies whole in the chunk but was not handed over as a view of it`);
          res.viewMessages++;
        } else {
          if (p.buf === chunk) return fail(`message ${idx} straddles chunks but was delivered as a view of one chunk`);
          res.copiedMessages++;
        }
        idx++;
      } else {
        if (m.startup || inspect.has(m.type)) return fail(`message ${idx} (type ${describeType(m.type)}) must arrive whole but was passed through`);
        if (cursor === m.offset && len < 5) return fail(`message ${idx}: first passthrough piece of ${len} bytes does not hold the whole header`);
        if (cursor + len > m.offset + m.length) return fail(`message ${idx}: passthrough piece runs past the end of the message`);
        res.passthroughPieces++;
        if (cursor === m.offset) res.passthroughMessages++;
        if (cursor + len === m.offset + m.length) idx++;
      }
      cursor += len;
    }
    if (cursor > chunkStart + size) return fail('more bytes delivered than pushed');
    chunkStart += size;
  }
  if (chunkStart !== s.input.length) return fail(`test bug: chunks cover ${chunkStart} of ${s.input.length} bytes`);
  if (cursor !== s.input.length) return fail(`only ${cursor} of ${s.input.length} bytes delivered`);
  if (idx !== s.messages.length) return fail(`only ${idx} of ${s.messages.length} messages completed`);
  if (!framer.atBoundary || framer.midPassthrough || framer.bufferedBytes !== 0) return fail('framer not at a boundary after the whole input');
  return res;
}

/** The one assertion sweep() makes (structural, so any tap Test fits). */
interface Asserter {
  strictSame(found: unknown, wanted: unknown, msg: string): unknown;
}

/** Runs many chunkings, keeps the first few problems and totals, and asserts once. */
function sweep(tt: Asserter, s: Stream, chunkings: Iterable<number[]>, opts: Partial<FramerOptions> = {}) {
  const problems: string[] = [];
  let runs = 0;
  const total = { viewMessages: 0, copiedMessages: 0, passthroughPieces: 0, passthroughMessages: 0 };
  for (const sizes of chunkings) {
    runs++;
    const r = runChunks(s, sizes, opts);
    if (r.problem !== null) {
      if (problems.length < 5) problems.push(r.problem);
      continue;
    }
    total.viewMessages += r.viewMessages;
    total.copiedMessages += r.copiedMessages;
    total.passthroughPieces += r.passthroughPieces;
    total.passthroughMessages += r.passthroughMessages;
  }
  tt.strictSame(problems, [], `all ${runs} chunkings deliver the input exactly`);
  return total;
}

function* everySplit(n: number): Generator<number[]> {
  for (let k = 0; k <= n; k++) yield [k, n - k];
}

function* randomChunkings(n: number, seeds: number[]): Generator<number[]> {
  for (const seed of seeds) {
    const rnd = prng(seed);
    const sizes: number[] = [];
    let left = n;
    while (left > 0) {
      // Mix tiny (header-splitting), medium and large chunks.
      const r = rnd();
      const max = r < 0.4 ? 8 : r < 0.8 ? 2000 : 90000;
      const size = Math.min(left, 1 + Math.floor(rnd() * max));
      sizes.push(size);
      left -= size;
    }
    yield sizes;
  }
}

t.test('realistic stream: the test input is what it claims to be', async (tt) => {
  tt.equal(REALISTIC.messages.length, 15);
  tt.equal(REALISTIC.messages[8]!.type, code('d'));
  tt.ok(REALISTIC.messages[8]!.length > 100 * 1024, 'CopyData is ~100 KB');
  tt.equal(REALISTIC.messages[9]!.type, code('B'));
  tt.ok(REALISTIC.messages[9]!.length > 70 * 1024, 'Bind carries a 70 KB parameter');
});

t.test('realistic stream in one chunk', async (tt) => {
  const total = sweep(tt, REALISTIC, [[REALISTIC.input.length]]);
  tt.equal(total.viewMessages, REALISTIC.messages.length, 'every message is a view of the single chunk');
  tt.equal(total.copiedMessages, 0);
  tt.equal(total.passthroughPieces, 0);
});

t.test('realistic stream split into two chunks at every byte offset', async (tt) => {
  const n = REALISTIC.input.length;
  const total = sweep(tt, REALISTIC, everySplit(n));
  tt.ok(total.copiedMessages > 0, 'some inspected messages were assembled across chunks');
  tt.ok(total.passthroughMessages > 0, 'some uninspected messages were streamed through');
});

t.test('realistic stream one byte at a time', async (tt) => {
  const n = REALISTIC.input.length;
  const total = sweep(tt, REALISTIC, [new Array<number>(n).fill(1)]);
  // With 1-byte chunks every message longer than one byte straddles: inspected ones are
  // assembled, the others streamed, each of their bytes after the header in its own piece.
  tt.equal(total.viewMessages, 0);
  tt.equal(total.copiedMessages, 2 + REALISTIC.messages.filter((m) => INSPECT.includes(m.type)).length);
  tt.equal(total.passthroughMessages, REALISTIC.messages.filter((m) => !m.startup && !INSPECT.includes(m.type)).length);
});

t.test('realistic stream in seeded random chunk sizes', async (tt) => {
  const seeds = Array.from({ length: 300 }, (_, i) => i + 1);
  const total = sweep(tt, REALISTIC, randomChunkings(REALISTIC.input.length, seeds));
  tt.ok(total.copiedMessages > 0 && total.passthroughMessages > 0 && total.viewMessages > 0, 'all three delivery paths exercised');
});

/** Small messages only, so that every pair of cut points can be tried. */
const SMALL = stream(
  [
    enc.sslRequest(),
    enc.startup({ user: 'u', database: 'd' }),
    enc.parse('', 'SELECT $1', [23]),
    enc.bind('', '', ['1']),
    enc.describe('P', ''),
    enc.execute('', 0),
    enc.sync(),
    enc.copyData('ab'),
    enc.query('SELECT 1'),
    enc.flush(),
    enc.copyDone(),
    enc.close('S', ''),
    enc.sync(),
  ],
  2,
);

function* everyThreeWaySplit(n: number): Generator<number[]> {
  for (let i = 0; i <= n; i++) for (let j = i; j <= n; j++) yield [i, j - i, n - j];
}

t.test('small stream split into three chunks at every pair of offsets', async (tt) => {
  // Three chunks reach cases two cannot: a header completed at the start of a chunk that then
  // ends inside the next header (the framer's header buffer is reused while pieces are queued).
  const total = sweep(tt, SMALL, everyThreeWaySplit(SMALL.input.length));
  tt.ok(total.passthroughMessages > 0 && total.copiedMessages > 0);
});

t.test('with nothing inspected, a straddling typed message streams but startup packets are still whole', async (tt) => {
  const s = stream([enc.startup({ user: 'u' }), enc.query('SELECT 1'), enc.bind('', '', ['abc']), enc.sync()], 1);
  sweep(tt, s, everySplit(s.input.length), { inspect: [] });
  sweep(tt, s, [new Array<number>(s.input.length).fill(1)], { inspect: [] });
});

t.test('header-only messages (length 4) at every split, inspected and not', async (tt) => {
  const s = stream([enc.sync(), enc.flush(), enc.raw('Q', Buffer.alloc(0)), enc.sync(), enc.copyDone()], 0);
  sweep(tt, s, everySplit(s.input.length), { startup: false });
  sweep(tt, s, [new Array<number>(s.input.length).fill(1)], { startup: false });
});

// ---- limits ------------------------------------------------------------------------------------

interface ErrorCase {
  name: string;
  /** Messages that must be delivered before the error (complete messages). */
  before: Buffer[];
  /** The offending header (and whatever follows it: never delivered). */
  bad: Buffer;
  opts: Partial<FramerOptions>;
  type: number;
  declared: number;
  reason: string | RegExp;
}

const ERROR_CASES: ErrorCase[] = [
  {
    name: 'typed length 3 (< 4)',
    before: [enc.query('SELECT 1')],
    bad: Buffer.concat([typedHeader('X', 3), enc.sync()]),
    opts: { startup: false },
    type: code('X'),
    declared: 3,
    reason: "invalid message length 3 for message type 'X' (0x58)",
  },
  {
    name: 'typed length 0',
    before: [],
    bad: Buffer.concat([typedHeader('d', 0), enc.sync()]),
    opts: { startup: false },
    type: code('d'),
    declared: 0,
    reason: "invalid message length 0 for message type 'd' (0x64)",
  },
  {
    name: 'uninspected type over maxLength',
    before: [enc.copyData(Buffer.alloc(995))], // length 999: under the limit
    bad: Buffer.concat([typedHeader('d', 1001), Buffer.alloc(1000)]),
    opts: { startup: false, maxLength: 1000 },
    type: code('d'),
    declared: 1001,
    reason: "message type 'd' (0x64) of 1001 bytes exceeds the limit of 1000 bytes",
  },
  {
    name: 'length 0xffffffff',
    before: [enc.sync()],
    bad: typedHeader('d', 0xffffffff),
    opts: { startup: false, maxLength: 1000 },
    type: code('d'),
    declared: 0xffffffff,
    reason: /exceeds the limit of 1000 bytes/,
  },
  {
    name: 'inspected type over maxInspectLength (but under maxLength)',
    before: [enc.copyData(Buffer.alloc(500))], // uninspected, over maxInspectLength: fine
    bad: Buffer.concat([typedHeader('Q', 101), Buffer.alloc(100)]),
    opts: { startup: false, maxLength: 1000, maxInspectLength: 100 },
    type: code('Q'),
    declared: 101,
    reason: "message type 'Q' (0x51) of 101 bytes exceeds the limit of 100 bytes",
  },
  {
    name: 'maxInspectLength above maxLength is capped at maxLength',
    before: [enc.raw('Q', Buffer.alloc(996))], // length exactly 1000
    bad: Buffer.concat([typedHeader('Q', 1001), Buffer.alloc(1000)]),
    opts: { startup: false, maxLength: 1000, maxInspectLength: 5000 },
    type: code('Q'),
    declared: 1001,
    reason: "message type 'Q' (0x51) of 1001 bytes exceeds the limit of 1000 bytes",
  },
  {
    name: 'startup packet length 7 (< 8)',
    before: [enc.sslRequest()],
    bad: Buffer.concat([i32(7), Buffer.alloc(3), enc.startup({ user: 'u' })]),
    opts: { startup: true },
    type: 0,
    declared: 7,
    reason: 'invalid startup packet length 7',
  },
  {
    name: 'startup packet length over maxStartupLength',
    before: [enc.gssencRequest(), Buffer.concat([i32(100), Buffer.alloc(96)])], // exactly the limit
    bad: Buffer.concat([i32(101), Buffer.alloc(97)]),
    opts: { startup: true, maxStartupLength: 100 },
    type: 0,
    declared: 101,
    reason: 'startup packet length 101 exceeds 100',
  },
  {
    // PostgreSQL's MAX_STARTUP_PACKET_LENGTH bounds what follows the length word: 10000 + 4.
    name: 'startup packet over the default maxStartupLength of 10004',
    before: [Buffer.concat([i32(10004), Buffer.alloc(10000)])],
    bad: Buffer.concat([i32(10005), Buffer.alloc(10001)]),
    opts: { startup: true },
    type: 0,
    declared: 10005,
    reason: 'startup packet length 10005 exceeds 10004',
  },
];

t.test('framing errors: reported once, nothing delivered afterwards, at every split', async (tt) => {
  for (const c of ERROR_CASES) {
    const beforeLen = c.before.reduce((n, b) => n + b.length, 0);
    const input = Buffer.concat([...c.before, c.bad]);
    const problems: string[] = [];
    for (const sizes of [...everySplit(input.length), new Array<number>(input.length).fill(1)]) {
      const errors: { reason: string; type: number; declared: number }[] = [];
      let delivered = 0;
      let deliveredAfterError = 0;
      const framer = new Framer(
        {
          onMessage(_type, _buf, start, end) {
            if (errors.length > 0) deliveredAfterError++;
            delivered += end - start;
          },
          onPassthrough(_type, _buf, start, end) {
            if (errors.length > 0) deliveredAfterError++;
            delivered += end - start;
          },
          onFramingError(reason, type, declared) {
            errors.push({ reason, type, declared });
          },
        },
        { maxLength: 1 << 20, inspect: INSPECT, ...c.opts },
      );
      let off = 0;
      for (const size of sizes) {
        framer.push(input.subarray(off, off + size));
        off += size;
      }
      framer.push(enc.sync()); // after the error: ignored too
      const where = sizes.length === 2 ? `split at ${sizes[0]}` : 'one byte at a time';
      if (errors.length !== 1) problems.push(`${where}: ${errors.length} framing errors`);
      else {
        const e = errors[0]!;
        const reasonOk = typeof c.reason === 'string' ? e.reason === c.reason : c.reason.test(e.reason);
        if (!reasonOk || e.type !== c.type || e.declared !== c.declared) problems.push(`${where}: got ${JSON.stringify(e)}`);
      }
      if (deliveredAfterError !== 0) problems.push(`${where}: ${deliveredAfterError} deliveries after the error`);
      if (delivered !== beforeLen) problems.push(`${where}: ${delivered} bytes delivered, expected ${beforeLen}`);
      if (!framer.isFailed) problems.push(`${where}: isFailed is false`);
      if (problems.length >= 5) break;
    }
    tt.strictSame(problems, [], c.name);
  }
});

t.test('limits are inclusive: a message of exactly the limit passes', async (tt) => {
  const s = stream([enc.copyData(Buffer.alloc(996)), enc.raw('Q', Buffer.alloc(96)), enc.sync()], 0);
  tt.equal(s.messages[0]!.length, 1001, 'CopyData declares exactly 1000');
  tt.equal(s.messages[1]!.length, 101, 'Query declares exactly 100');
  sweep(tt, s, everySplit(s.input.length), { startup: false, maxLength: 1000, maxInspectLength: 100 });
});

t.test('an uninspected type may exceed maxInspectLength', async (tt) => {
  const s = stream([enc.copyData(Buffer.alloc(5000)), enc.describe('S', 'x'.repeat(3000))], 0);
  sweep(tt, s, everySplit(s.input.length), { startup: false, maxLength: 10000, maxInspectLength: 100 });
});

// ---- state getters ---------------------------------------------------------------------------

t.test('atBoundary, midPassthrough and bufferedBytes', async (tt) => {
  const seen: string[] = [];
  const framer = new Framer(
    {
      onMessage: (type, _b, s, e) => seen.push(`M ${String.fromCharCode(type)} ${e - s}`),
      onPassthrough: (type, _b, s, e) => seen.push(`P ${String.fromCharCode(type)} ${e - s}`),
      onFramingError: (r) => seen.push(`ERR ${r}`),
    },
    { maxLength: 1 << 20, inspect: INSPECT },
  );
  const state = () => ({ atBoundary: framer.atBoundary, midPassthrough: framer.midPassthrough, bufferedBytes: framer.bufferedBytes });
  tt.strictSame(state(), { atBoundary: true, midPassthrough: false, bufferedBytes: 0 }, 'fresh');

  const q = enc.query('SELECT 12345678901234'); // inspected, 27 bytes
  framer.push(q.subarray(0, 3));
  tt.strictSame(state(), { atBoundary: false, midPassthrough: false, bufferedBytes: 3 }, 'partial header held');
  framer.push(q.subarray(3, 10));
  tt.strictSame(state(), { atBoundary: false, midPassthrough: false, bufferedBytes: 10 }, 'partial inspected message held');
  framer.push(q.subarray(10, 20));
  tt.strictSame(state(), { atBoundary: false, midPassthrough: false, bufferedBytes: 20 });
  framer.push(q.subarray(20));
  tt.strictSame(state(), { atBoundary: true, midPassthrough: false, bufferedBytes: 0 }, 'message complete');
  tt.strictSame(seen, [`M Q ${q.length}`]);

  const d = enc.copyData(Buffer.alloc(1000)); // uninspected, 1005 bytes
  framer.push(d.subarray(0, 100));
  tt.strictSame(state(), { atBoundary: false, midPassthrough: true, bufferedBytes: 0 }, 'streaming: nothing held');
  framer.push(d.subarray(100, 1004));
  tt.strictSame(state(), { atBoundary: false, midPassthrough: true, bufferedBytes: 0 }, 'one byte still to pass');
  framer.push(Buffer.concat([d.subarray(1004), enc.sync().subarray(0, 2)]));
  tt.strictSame(state(), { atBoundary: false, midPassthrough: false, bufferedBytes: 2 }, 'stream done, next header partial');
  framer.push(enc.sync().subarray(2));
  tt.strictSame(state(), { atBoundary: true, midPassthrough: false, bufferedBytes: 0 });
  tt.strictSame(seen, [`M Q ${q.length}`, 'P d 100', 'P d 904', 'P d 1', 'P S 5']);
  tt.equal(framer.isFailed, false);
});

t.test('stop() inside onMessage: nothing more is delivered, from this chunk or later ones', async (tt) => {
  const seen: number[] = [];
  const framer = new Framer(
    {
      onMessage(type) {
        seen.push(type);
        if (type === code('P')) framer.stop();
      },
      onPassthrough: (type) => seen.push(type),
      onFramingError: () => seen.push(-1),
    },
    { maxLength: 1 << 20, inspect: INSPECT },
  );
  framer.push(Buffer.concat([enc.query('SELECT 1'), enc.parse('', 'SELECT 2'), enc.sync(), enc.query('SELECT 3')]));
  framer.push(enc.query('SELECT 4'));
  tt.strictSame(seen, [code('Q'), code('P')]);
  tt.equal(framer.isFailed, true);
});

t.test('stop() inside an assembled onMessage that completes mid-chunk', async (tt) => {
  const seen: number[] = [];
  const framer = new Framer(
    {
      onMessage(type) {
        seen.push(type);
        framer.stop();
      },
      onPassthrough: (type) => seen.push(type),
      onFramingError: () => seen.push(-1),
    },
    { maxLength: 1 << 20, inspect: INSPECT },
  );
  const q = enc.query('SELECT 1');
  framer.push(q.subarray(0, 7));
  framer.push(Buffer.concat([q.subarray(7), enc.sync(), enc.query('SELECT 2')]));
  tt.strictSame(seen, [code('Q')]);
});

t.test('stop() inside onPassthrough: the rest of the chunk is not delivered', async (tt) => {
  const seen: string[] = [];
  const framer = new Framer(
    {
      onMessage: (type) => seen.push(`M ${String.fromCharCode(type)}`),
      onPassthrough(type, _b, s, e) {
        seen.push(`P ${String.fromCharCode(type)} ${e - s}`);
        if (seen.length === 2) framer.stop();
      },
      onFramingError: () => seen.push('ERR'),
    },
    { maxLength: 1 << 20, inspect: INSPECT },
  );
  const d = enc.copyData(Buffer.alloc(100)); // 105 bytes
  framer.push(d.subarray(0, 50));
  framer.push(Buffer.concat([d.subarray(50), enc.query('SELECT 1'), enc.sync()]));
  framer.push(enc.query('SELECT 2'));
  tt.strictSame(seen, ['P d 50', 'P d 55']);
});

t.test('describeType', async (tt) => {
  tt.equal(describeType(0x51), "'Q' (0x51)");
  tt.equal(describeType(0x20), "' ' (0x20)");
  tt.equal(describeType(0x7e), "'~' (0x7e)");
  tt.equal(describeType(0), '0x00');
  tt.equal(describeType(0x1f), '0x1f');
  tt.equal(describeType(0x7f), '0x7f');
  tt.equal(describeType(0xff), '0xff');
});

/**
 * Feed chunks to a framer that is held after every whole message (as the query log holds it when
 * it is behind) and released until nothing more comes. Returns the bytes delivered, in order, the
 * whole messages, and the most whole messages one push() or release() delivered.
 */
function runHeld(s: Stream, sizes: number[]): { bytes: Buffer; messages: number; mostPerCall: number } {
  const out: Buffer[] = [];
  let messages = 0;
  let inCall = 0;
  let mostPerCall = 0;
  const framer: Framer = new Framer(
    {
      onMessage(type, buf, start, end) {
        out.push(Buffer.from(buf.subarray(start, end)));
        messages++;
        mostPerCall = Math.max(mostPerCall, ++inCall);
        if (type === 0 && end - start >= 8 && buf.readUInt32BE(start + 4) === PROTOCOL_V3) framer.setStartup(false);
        framer.hold();
      },
      onPassthrough(_type, buf, start, end) {
        out.push(Buffer.from(buf.subarray(start, end)));
      },
      onFramingError(reason) {
        throw new Error(reason);
      },
    },
    { maxLength: 1 << 20, inspect: INSPECT, startup: true },
  );
  let at = 0;
  for (const size of sizes) {
    inCall = 0;
    framer.push(Buffer.from(s.input.subarray(at, at + size)));
    at += size;
    for (let before = -1; before !== messages; ) {
      before = messages;
      inCall = 0;
      framer.release();
    }
  }
  return { bytes: Buffer.concat(out), messages, mostPerCall };
}

t.test('hold() after every message, release() until it delivers nothing: the same bytes and messages, one per call, at every split in three', async (tt) => {
  const problems: string[] = [];
  let runs = 0;
  // Every split of the small stream; the realistic one (170 KB) in random chunkings.
  const cases: [Stream, number[]][] = [
    ...[...everyThreeWaySplit(SMALL.input.length)].map((sizes): [Stream, number[]] => [SMALL, sizes]),
    ...[...randomChunkings(REALISTIC.input.length, [1, 2, 3])].map((sizes): [Stream, number[]] => [REALISTIC, sizes]),
  ];
  for (const [s, sizes] of cases) {
    runs++;
    const whole = s.messages.filter((m) => m.startup || INSPECT.includes(m.type)).length;
    const r = runHeld(s, sizes);
    const where = sizes.length <= 8 ? JSON.stringify(sizes) : `${sizes.length} chunks`;
    if (!r.bytes.equals(s.input)) problems.push(`${where}: ${r.bytes.length} of ${s.input.length} bytes delivered, or out of order`);
    else if (r.messages < whole) problems.push(`${where}: ${r.messages} whole messages, expected at least ${whole}`);
    else if (r.mostPerCall > 1) problems.push(`${where}: ${r.mostPerCall} messages delivered by one call while held`);
    if (problems.length >= 5) break;
  }
  tt.strictSame(problems, [], `all ${runs} chunkings`);
});

t.test('stop() while held: what was kept back is never delivered', async (tt) => {
  let delivered = 0;
  const framer: Framer = new Framer(
    {
      onMessage() {
        delivered++;
        framer.hold();
      },
      onPassthrough() {},
      onFramingError() {},
    },
    { maxLength: 1 << 20, inspect: INSPECT },
  );
  const q = Buffer.concat([typedHeader('Q', 4), typedHeader('Q', 4), typedHeader('Q', 4)]);
  framer.push(q);
  tt.equal(delivered, 1, 'held after the first');
  tt.equal(framer.bufferedBytes, 10, 'the other two kept back');
  framer.stop();
  framer.release();
  tt.equal(delivered, 1, 'nothing after stop()');
});
