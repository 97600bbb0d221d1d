// RESP2 codec: every way of cutting a reply stream into socket chunks must give the same replies,
// in order; limits and malformed input are protocol errors, never allocations or exceptions of
// another kind. Expected values come from the test helper's slow, obvious parser.
import t from 'tap';
import { RespError, RespParser, RespProtocolError, encodeCommand, type RespValue } from '../../src/redis/resp';
import { encodeRequest, parseReply, type Reply } from '../helpers/resp-client';

/** The same value in the shape of the test helper's parser (errors as { error }). */
function normal(v: RespValue): Reply {
  if (v instanceof RespError) return { error: v.message };
  if (Array.isArray(v)) return v.map(normal);
  return v;
}

/** Every reply of a whole stream, by the helper's parser. */
function expected(stream: Buffer): Reply[] {
  const out: Reply[] = [];
  let off = 0;
  while (off < stream.length) {
    const r = parseReply(stream, off);
    if (r === null) throw new Error('incomplete stream');
    out.push(r.value);
    off = r.end;
  }
  return out;
}

/** The replies of the chunks in order, and '(partial)' at the end when something was left half-parsed. */
function parseChunks(chunks: Buffer[]): Reply[] {
  const got: Reply[] = [];
  const p = new RespParser((v) => got.push(normal(v)));
  for (const c of chunks) p.push(c);
  if (!p.atBoundary) got.push('(partial)');
  return got;
}

const binary = Buffer.from([0, 13, 10, 36, 42, 43, 45, 58, 255, 13, 10, 13]);
const large = Buffer.alloc(3000, 7);
large.write('\r\n$5\r\n', 100);
/** A stream of every reply type, nested and null forms included. */
const STREAM = Buffer.concat([
  Buffer.from('+OK\r\n'),
  Buffer.from('+\r\n'),
  Buffer.from('-WRONGPASS invalid username-password pair or user is disabled.\r\n'),
  Buffer.from(':0\r\n:-1\r\n:9007199254740991\r\n'),
  Buffer.from('$-1\r\n$0\r\n\r\n'),
  Buffer.from(`$${binary.length}\r\n`),
  binary,
  Buffer.from('\r\n'),
  Buffer.from(`$${large.length}\r\n`),
  large,
  Buffer.from('\r\n'),
  Buffer.from('*0\r\n*-1\r\n'),
  Buffer.from('*3\r\n$7\r\nmessage\r\n$17\r\npgscribe:events@0\r\n$5\r\ni\0a\0b\r\n'),
  Buffer.from('*4\r\n$3\r\nabc\r\n$-1\r\n:5\r\n*2\r\n*1\r\n+deep\r\n-ERR inner\r\n'),
  Buffer.from('*2\r\n$2\r\n12\r\n$-1\r\n'),
]);

t.test('the stream parses as the slow parser says, whole and cut at every offset', async (t) => {
  const want = expected(STREAM);
  t.equal(want.length, 15, 'the stream holds 15 replies');
  t.same(parseChunks([STREAM]), want, 'one chunk');
  let mismatches = 0;
  for (let cut = 1; cut < STREAM.length; cut++) {
    const got = parseChunks([STREAM.subarray(0, cut), STREAM.subarray(cut)]);
    if (JSON.stringify(got) !== JSON.stringify(want)) mismatches++;
  }
  t.equal(mismatches, 0, `all ${STREAM.length - 1} two-chunk cuts give the same replies`);
  let two = 0;
  for (let a = 1; a < STREAM.length; a += 37) {
    for (let b = a + 1; b < STREAM.length; b += 11) {
      const got = parseChunks([STREAM.subarray(0, a), STREAM.subarray(a, b), STREAM.subarray(b)]);
      if (JSON.stringify(got) !== JSON.stringify(want)) two++;
    }
  }
  t.equal(two, 0, 'three-chunk cuts give the same replies');
  const bytes: Buffer[] = [];
  for (let i = 0; i < STREAM.length; i++) bytes.push(STREAM.subarray(i, i + 1));
  t.same(parseChunks(bytes), want, 'one byte at a time');
});

t.test('bulk strings are copies: changing the chunk afterwards changes no reply', async (t) => {
  const chunk = Buffer.from('$5\r\nhello\r\n*1\r\n$3\r\nabc\r\n');
  const got: RespValue[] = [];
  new RespParser((v) => got.push(v)).push(chunk);
  chunk.fill(0x78);
  t.same(got.map(normal), [Buffer.from('hello'), [Buffer.from('abc')]]);
  const big = Buffer.concat([Buffer.from('$2000\r\n'), Buffer.alloc(2000, 1), Buffer.from('\r\n')]);
  const one: RespValue[] = [];
  new RespParser((v) => one.push(v)).push(big);
  const b = one[0] as Buffer;
  t.equal(b.length, 2000);
  t.equal(b.buffer.byteLength, 2000, 'a large bulk has a backing store of its own (not a pool slice)');
});

t.test('encodeCommand is what the slow encoder writes', async (t) => {
  const cases: (string | Buffer)[][] = [
    ['PING'],
    ['SET', 'k', ''],
    ['SET', 'clé', 'välue', 'PX', '1000'],
    ['SET', 'bin', binary],
    ['MGET', ...Array.from({ length: 12 }, (_, i) => `key:${i}`)],
    [],
  ];
  for (const c of cases) t.same(encodeCommand(c), encodeRequest(c), JSON.stringify(c.map(String)));
});

t.test('malformed replies and broken limits are protocol errors', async (t) => {
  const bad: [string, Buffer, object?][] = [
    ['an unknown type byte', Buffer.from('!oops\r\n')],
    ['a line without CR', Buffer.from('+OK\n')],
    ['an empty line', Buffer.from('\r\n')],
    ['a bad integer', Buffer.from(':12a\r\n')],
    ['an integer with no digits', Buffer.from(':-\r\n')],
    ['an integer of 20 digits', Buffer.from(':12345678901234567890\r\n')],
    ['a bulk length of -2', Buffer.from('$-2\r\n')],
    ['a bulk without its CRLF', Buffer.from('$3\r\nabcXY')],
    ['a bulk followed by CR and garbage', Buffer.from('$3\r\nabc\rX')],
    ['an array length of -5', Buffer.from('*-5\r\n')],
    ['a bulk over maxBulkBytes', Buffer.from('$11\r\n'), { maxBulkBytes: 10 }],
    ['an array over maxArrayLength', Buffer.from('*5\r\n'), { maxArrayLength: 4 }],
    ['arrays nested over maxDepth', Buffer.from('*1\r\n*1\r\n*1\r\n'), { maxDepth: 2 }],
    ['a header line over maxLineBytes', Buffer.from('+' + 'x'.repeat(100) + '\r\n'), { maxLineBytes: 64 }],
    // Issue 15, security finding 5: each part within its limit, the whole too big.
    ['an array of bulks over maxReplyBytes', Buffer.from('*3\r\n' + '$10\r\n0123456789\r\n'.repeat(3)), { maxReplyBytes: 40 }],
    ['nested arrays over maxReplyBytes', Buffer.from('*2\r\n*2\r\n:1\r\n:2\r\n*2\r\n:3\r\n:4\r\n'), { maxReplyBytes: 20 }],
  ];
  for (const [what, input, limits] of bad) {
    // Whole, and one byte at a time: the same verdict either way.
    for (const split of [false, true]) {
      const p = new RespParser(() => {}, limits);
      let err: unknown = null;
      try {
        if (split) for (let i = 0; i < input.length; i++) p.push(input.subarray(i, i + 1));
        else p.push(input);
      } catch (e) {
        err = e;
      }
      t.ok(err instanceof RespProtocolError, `${what}${split ? ', byte by byte' : ''}: RespProtocolError (${(err as Error)?.message})`);
    }
  }
});

t.test('maxReplyBytes counts one reply at a time: many replies, each under it, all parse', async (t) => {
  const one = '*3\r\n' + '$10\r\n0123456789\r\n'.repeat(3); // 55 bytes
  const got: unknown[] = [];
  const p = new RespParser((v) => got.push(v), { maxReplyBytes: one.length });
  p.push(Buffer.from(one.repeat(20)));
  t.equal(got.length, 20);
  t.throws(() => new RespParser(() => {}, { maxReplyBytes: one.length - 1 }).push(Buffer.from(one)), { message: /reply of more than 54 bytes/ }, 'one byte less: refused');
});

t.test('a long line is refused while it is still arriving, not after it is buffered', async (t) => {
  const p = new RespParser(() => {}, { maxLineBytes: 1024 });
  let thrownAt = -1;
  for (let i = 0; i < 100 && thrownAt < 0; i++) {
    try {
      p.push(Buffer.alloc(100, 0x61));
    } catch (e) {
      if (e instanceof RespProtocolError) thrownAt = i;
      else throw e;
    }
  }
  t.equal(thrownAt, 10, 'the 11th 100-byte piece of a line without LF passes 1024 bytes and is refused');
});

t.test('after an error the parser ignores input until reset()', async (t) => {
  const got: RespValue[] = [];
  const p = new RespParser((v) => got.push(v));
  t.throws(() => p.push(Buffer.from('?\r\n')), { code: 'PGSCRIBE_RESP_PROTOCOL' });
  p.push(Buffer.from('+OK\r\n'));
  t.same(got, [], 'nothing parsed after the error');
  p.reset();
  p.push(Buffer.from('+OK\r\n'));
  t.same(got, ['OK'], 'parses again after reset()');
});
