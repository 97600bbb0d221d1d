// The cache layer's pure parts without a database: the request-unit assembler and its Bind
// walker, the response capture (fed split at every byte offset), the answer judge and replay,
// relation names, and the shard's LRU, TTL and invalidation rules.
import t from 'tap';
import { Outbox } from '../../src/outbox';
import { MAX_RULE_SQL, CachePolicy } from '../../src/cache/policy';
import { relationName } from '../../src/sql/names';
import { isVolatileInput } from '../../src/sql/volatile-input';
import { PARSE_COMPLETE, ResponseCapture, judgeResponse, replayAnswer } from '../../src/cache/response';
import { CacheShard } from '../../src/cache/shard';
import { COMPLETE, MORE, REJECT, Unit, hasVolatileInput } from '../../src/cache/unit';
import { BindMessage, decodeClientMessage } from '../../src/protocol/client-messages';
import { ProtocolError } from '../../src/protocol/messages';
import { enc, i32 } from '../harness/wire';

/** Feed whole messages (as the framer would) to a fresh unit; the verdict of each. */
function feed(...msgs: Buffer[]): { unit: Unit; verdicts: number[] } {
  const unit = new Unit();
  const verdicts = msgs.map((m) => unit.add(m[0]!, m, 0, m.length, decodeClientMessage(m[0]!, m, 0, m.length)));
  return { unit, verdicts };
}

t.test('unit: the shapes the cache takes', async (t) => {
  let r = feed(enc.query('SELECT 1'));
  t.strictSame(r.verdicts, [COMPLETE], 'Q alone');
  t.equal(r.unit.kind, 'Q');
  t.equal(r.unit.sql, 'SELECT 1');

  r = feed(enc.parse('', 'SELECT $1::int'), enc.bind('', '', ['5']), enc.describe('P', ''), enc.execute(''), enc.sync());
  t.strictSame(r.verdicts, [MORE, MORE, MORE, MORE, COMPLETE], 'P B D E S');
  t.ok(r.unit.hasParse && r.unit.hasDescribe);
  t.equal(r.unit.parseIdent.slice(0, r.unit.parseSqlLength), 'SELECT $1::int');
  t.equal(r.unit.parseIdent, 'SELECT $1::int\0\0\0', 'ident = SQL, NUL, zero parameter types');

  r = feed(enc.bind('p1', 'stmt', ['a', null], [0], [1]), enc.execute('p1'), enc.sync());
  t.strictSame(r.verdicts, [MORE, MORE, COMPLETE], 'B E S with a named statement and portal');
  t.equal(r.unit.bindStatement, 'stmt');
  t.equal(r.unit.bindPortal, 'p1');
  t.notOk(r.unit.hasParse || r.unit.hasDescribe);
  t.equal(r.unit.held.length, 3, 'all held');
});

t.test('unit: what it releases', async (t) => {
  const P = enc.parse('', 'SELECT 1');
  const B = enc.bind('', '', []);
  const E = enc.execute('');
  const S = enc.sync();
  const cases: [string, Buffer[]][] = [
    ['named Parse', [enc.parse('n', 'SELECT 1')]],
    ['Bind of another statement after an unnamed Parse', [P, enc.bind('', 'other', [])]],
    ['Sync without Execute', [P, B, S]],
    ['Execute with a row limit', [P, B, enc.execute('', 10)]],
    ['Execute of another portal', [P, B, enc.execute('x')]],
    ['two Executes', [P, B, E, E]],
    ['two Binds', [P, B, B]],
    ['Describe of a statement', [P, enc.describe('S', '')]],
    ['Describe of another portal', [P, B, enc.describe('P', 'x')]],
    ['Flush', [P, B, E, enc.flush()]],
    ['Close', [enc.close('S', 'x')]],
    ['Query after extended messages', [P, enc.query('SELECT 1')]],
    ['Parse after Bind', [B, P]],
  ];
  for (const [what, msgs] of cases) {
    const r = feed(...msgs);
    t.equal(r.verdicts[r.verdicts.length - 1], REJECT, what);
    t.ok(r.verdicts.slice(0, -1).every((v) => v === MORE), `${what}: undecided before`);
    t.equal(r.unit.held.length, msgs.length, `${what}: every message held for release, in order`);
  }
});

t.test('unit: keep() copies the held messages out of the chunk', async (t) => {
  const chunk = Buffer.concat([enc.parse('', 'SELECT 1'), enc.bind('', '', [])]);
  const u = new Unit();
  const p = chunk.readUInt32BE(1) + 1;
  u.add(chunk[0]!, chunk, 0, p, decodeClientMessage(chunk[0]!, chunk, 0, p));
  u.add(chunk[p]!, chunk, p, chunk.length, decodeClientMessage(chunk[p]!, chunk, p, chunk.length));
  u.keep();
  chunk.fill(0);
  t.equal(u.held[0]!.buf.toString('latin1', 6, 14), 'SELECT 1', 'the copy survives the chunk');
  t.equal(u.held[1]!.start, 0);
  t.equal(u.held[1]!.buf[0], 0x42, "Bind's type byte");
});

t.test('Bind parts and volatile inputs; malformed Binds are ProtocolErrors', async (t) => {
  const b = enc.bind('portal', 'st', ['now', Buffer.from('x'), null], [0], []);
  const l = new BindMessage(b, 0, b.length);
  t.equal(l.portal, 'portal');
  t.equal(l.statement, 'st');
  t.equal(b[l.paramsAt - 1], 0, 'params start right after the statement name');
  t.equal(hasVolatileInput(l), true, "'now' as text is volatile");
  const bin = enc.bind('', '', ['now'], [1]);
  t.equal(hasVolatileInput(new BindMessage(bin, 0, bin.length)), true, "'now' in binary format: a binary text parameter is its bytes (issue 14, finding 9)");
  const perParam = enc.bind('', '', [i32(1), ' Today '], [1, 0]);
  t.equal(hasVolatileInput(new BindMessage(perParam, 0, perParam.length)), true, 'per-parameter formats; trimmed, any case');
  // Every truncation of a valid Bind is rejected, never read past its end.
  const full = enc.bind('p', 's', ['abc', null, 'de'], [0, 0, 0], [1]);
  for (let cut = 6; cut < full.length; cut++) {
    const m = Buffer.from(full.subarray(0, cut));
    m.writeUInt32BE(cut - 1, 1);
    let thrown: unknown = null;
    try {
      new BindMessage(m, 0, m.length);
    } catch (e) {
      thrown = e;
    }
    t.ok(thrown instanceof ProtocolError, `cut at ${cut}: ProtocolError (${String(thrown)})`);
  }
  t.equal(isVolatileInput(Buffer.from('yesterday'), 0, 9), true);
  t.equal(isVolatileInput(Buffer.from('nowhere'), 0, 7), false);
});

/** A backend message. */
function msg(type: string, body: Buffer | string = Buffer.alloc(0)): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  const h = Buffer.alloc(5);
  h.write(type, 0, 'latin1');
  h.writeUInt32BE(b.length + 4, 1);
  return Buffer.concat([h, b]);
}
const T = msg('T', Buffer.concat([Buffer.from([0, 1]), Buffer.from('a\0'), Buffer.alloc(18)]));
const D = (v: string) => msg('D', Buffer.concat([Buffer.from([0, 1]), i32(v.length), Buffer.from(v)]));
const C = msg('C', 'SELECT 2\0');
const Z = (s: string) => msg('Z', s);
const err = (code: string, severity = 'ERROR') => msg('E', `S${severity}\0V${severity}\0C${code}\0Mboom\0\0`);
const ONE = msg('1');
const TWO = msg('2');

t.test('ResponseCapture: the same bytes whatever the split, a copy, bounded', async (t) => {
  const answer = Buffer.concat([ONE, TWO, T, D('x'), D('yy'), C, Z('I')]);
  for (let cut = 0; cut <= answer.length; cut++) {
    const c = new ResponseCapture(1 << 20);
    const chunkA = Buffer.from(answer.subarray(0, cut));
    const chunkB = Buffer.from(answer.subarray(cut));
    // Relayed as several ranges of each chunk, as the framer hands messages out.
    const mid = cut >> 1;
    c.add(chunkA, 0, mid);
    c.add(chunkA, mid, cut);
    c.settle();
    chunkA.fill(0); // the socket chunk is gone
    c.add(chunkB, 0, chunkB.length);
    const got = c.finish();
    chunkB.fill(0);
    if (!got.equals(answer)) {
      t.fail(`split at ${cut}: ${got.toString('hex')}`);
      return;
    }
  }
  t.pass('every split gives the answer back');
  const small = new ResponseCapture(10);
  small.add(answer, 0, 6);
  t.equal(small.overflow, false);
  small.add(answer, 6, 11);
  t.equal(small.overflow, true, 'over the limit');
});

t.test('judgeResponse: storable, shareable or neither', async (t) => {
  const cases: [string, Buffer, 'Q' | 'X', boolean, boolean, { storable: boolean; shareable: boolean }][] = [
    ['Q rows', Buffer.concat([T, D('a'), C, Z('I')]), 'Q', false, false, { storable: true, shareable: true }],
    ['Q no rows', Buffer.concat([T, C, Z('I')]), 'Q', false, false, { storable: true, shareable: true }],
    ['X P B D E S', Buffer.concat([ONE, TWO, T, D('a'), C, Z('I')]), 'X', true, true, { storable: true, shareable: true }],
    ['X B E S', Buffer.concat([TWO, D('a'), C, Z('I')]), 'X', false, false, { storable: true, shareable: true }],
    ['X NoData', Buffer.concat([TWO, msg('n'), C, Z('I')]), 'X', false, true, { storable: true, shareable: true }],
    ['Q division by zero after rows', Buffer.concat([T, D('a'), err('22012'), Z('I')]), 'Q', false, false, { storable: false, shareable: true }],
    ['X syntax error at execute', Buffer.concat([TWO, T, err('42703'), Z('I')]), 'X', false, true, { storable: false, shareable: true }],
    ['X error at Bind', Buffer.concat([ONE, err('22P02'), Z('I')]), 'X', true, true, { storable: false, shareable: false }],
    ['Q cancelled', Buffer.concat([T, err('57014'), Z('I')]), 'Q', false, false, { storable: false, shareable: false }],
    ['Q FATAL', Buffer.concat([err('22012', 'FATAL'), Z('I')]), 'Q', false, false, { storable: false, shareable: false }],
    ['Q with a notice', Buffer.concat([msg('N', 'SNOTICE\0\0'), T, D('a'), C, Z('I')]), 'Q', false, false, { storable: false, shareable: false }],
    ['Q with a ParameterStatus', Buffer.concat([T, D('a'), msg('S', 'a\0b\0'), C, Z('I')]), 'Q', false, false, { storable: false, shareable: false }],
    ['Q ending in a transaction', Buffer.concat([T, D('a'), C, Z('T')]), 'Q', false, false, { storable: false, shareable: false }],
    ['Q two results', Buffer.concat([T, C, T, C, Z('I')]), 'Q', false, false, { storable: false, shareable: false }],
    ['X missing ParseComplete', Buffer.concat([TWO, T, C, Z('I')]), 'X', true, true, { storable: false, shareable: false }],
    ['truncated', Buffer.concat([T, D('a'), C]), 'Q', false, false, { storable: false, shareable: false }],
  ];
  for (const [what, b, kind, p, d, want] of cases) t.strictSame(judgeResponse(b, kind, p, d), want, what);
});

t.test('replayAnswer: the requester\'s shape', async (t) => {
  const withP = Buffer.concat([ONE, TWO, D('a'), C, Z('I')]);
  const withoutP = withP.subarray(5);
  const flat = (o: Outbox) => {
    const parts: Buffer[] = [];
    o.flush({ destroyed: false, writable: true, write: (b: Buffer) => parts.push(Buffer.from(b)) } as never);
    return Buffer.concat(parts);
  };
  for (const [stored, has] of [[withP, true], [Buffer.from(withoutP), false]] as [Buffer, boolean][]) {
    for (const want of [true, false]) {
      const o = new Outbox();
      replayAnswer(o, { bytes: stored, hasParse: has }, want);
      t.ok(flat(o).equals(want ? withP : withoutP), `stored ${has ? 'with' : 'without'} Parse, wanted ${want ? 'with' : 'without'}`);
    }
  }
  t.equal(PARSE_COMPLETE.toString('hex'), '3100000004');
});

t.test('relationName: the last component, quotes respected', async (t) => {
  for (const [n, want] of [
    ['t', 't'],
    ['public.t', 't'],
    ['db.s.t', 't'],
    ['"a.b"', '"a.b"'],
    ['s."a.b"', '"a.b"'],
    ['"x"".y".z', 'z'],
    ['"My Table"', '"My Table"'],
  ]) t.equal(relationName(n!), want, n!);
});

t.test('CachePolicy: classifier, rules, memo', async (t) => {
  const pol = new CachePolicy({ rules: [{ pattern: /^select \* from never/i, ttlMs: null }, { pattern: /short/, ttlMs: 5 }], ttlMs: 1000, rulesOnly: false });
  const a = pol.forSql('SELECT * FROM public.t JOIN s.u ON true');
  t.equal(a.cacheable, true);
  t.strictSame(a.reads, ['t', 'u'], 'relation names');
  t.equal(a.ttlMs, 1000, 'default TTL');
  t.equal(pol.forSql('SELECT * FROM public.t JOIN s.u ON true'), a, 'memoised');
  t.equal(pol.forSql('select * from never_cached').cacheable, false, 'rule: never');
  t.equal(pol.forSql('select * from short').ttlMs, 5, 'rule: TTL');
  const w = pol.forSql('UPDATE public.t SET a = 1');
  t.strictSame([w.cacheable, w.writeTables], [false, ['t']], 'a write names its table');
  t.equal(pol.forSql('DELETE FROM t USING u WHERE f(t.a)').writeTables, null, 'unknown function: the whole database');
  t.equal(pol.forSql('DEALLOCATE ALL').dropsStatements, true);
  t.equal(pol.forSql("SELECT 'a\\' FROM t", false).cacheable, false, 'standard_conforming_strings off: the backslash escapes the quote');
});

// Issue 15, security finding 17: an operator's pattern may backtrack, and it ran on every distinct
// text up to 64 KiB. Rules now see texts up to MAX_RULE_SQL; a longer one is relayed.
t.test('cache-rules see texts up to MAX_RULE_SQL; with rules, a longer read is relayed', async (t) => {
  const pol = new CachePolicy({ rules: [{ pattern: /select .* from never/i, ttlMs: null }, { pattern: /from t where/i, ttlMs: 5 }], ttlMs: 1000, rulesOnly: false });
  const pad = (n: number, head: string) => head + ' '.repeat(n - head.length - 8) + ' and 1=1';
  const fits = pol.forSql(pad(MAX_RULE_SQL, 'select a from t where a = 1'));
  t.strictSame([fits.cacheable, fits.ttlMs], [true, 5], 'at the limit: the rule decides');
  t.equal(pol.forSql(pad(MAX_RULE_SQL + 1, 'select a from t where a = 1')).cacheable, false, 'one byte over: relayed');
  t.equal(pol.forSql(pad(MAX_RULE_SQL + 1, 'select a from never_cached where a = 1')).cacheable, false, 'a text a never rule would match: relayed, not cached');
  const none = new CachePolicy({ rules: [], ttlMs: 1000, rulesOnly: false });
  t.equal(none.forSql(pad(MAX_RULE_SQL + 1, 'select a from t where a = 1')).cacheable, true, 'without rules the limit does not apply');
});

// Issue 15, security finding 12: 2,000 distinct 65 KB SELECTs left a 152 MB heap with a 1 MiB
// cache bound: the classification memo was bounded in texts only.
t.test('the classification memo holds at most 16 Mi characters of text', async (t) => {
  const pol = new CachePolicy({ rules: [], ttlMs: 1000, rulesOnly: false });
  for (let i = 0; i < 600; i++) pol.forSql(`select a as c${i.toString(36)}, '${'x'.repeat(60_000)}' as pad from t`);
  const f = pol.memoFootprint();
  t.ok(f.chars <= 16 * 2 ** 20, `${f.chars} characters held (bound ${16 * 2 ** 20})`);
  t.ok(f.texts > 0 && f.texts < 600, `${f.texts} texts held: started again when full`);
  const again = pol.forSql('select 1 from t');
  t.equal(pol.forSql('select 1 from t'), again, 'still a memo');
});

t.test('CachePolicy without the catalog: only what a rule allows, with its TTL', async (t) => {
  const pol = new CachePolicy({ rules: [{ pattern: /^select \* from never/i, ttlMs: null }, { pattern: /from allowed/i, ttlMs: 5 }], ttlMs: 1000, rulesOnly: true });
  t.equal(pol.forSql('SELECT * FROM t').cacheable, false, 'a read no rule names: relayed');
  const a = pol.forSql('SELECT * FROM allowed');
  t.strictSame([a.cacheable, a.ttlMs], [true, 5], 'a read a rule allows: cached with the rule\'s TTL');
  t.equal(pol.forSql('SELECT * FROM never').cacheable, false, 'a rule saying never');
  t.equal(pol.forSql('UPDATE allowed SET a = 1').cacheable, false, 'a rule cannot make a write cacheable');
  t.equal(pol.forSql('SELECT * FROM allowed FOR UPDATE').cacheable, false, 'nor a locking read');
});

t.test('CacheShard: hits, TTL, LRU bounds, invalidation, flights', async (t) => {
  const now = 1_000_000;
  const b = (n: number) => Buffer.alloc(n, 1);
  const sh = new CacheShard({ cache: true, singleflight: true, maxBytes: 10_000, maxEntries: 3 });
  t.strictSame(sh.lookup('k1', 'db', ['t'], 1, 100, now), { kind: 'lead' }, 'first: lead');
  t.strictSame(sh.lookup('k1', 'db', ['t'], 2, 101, now), { kind: 'wait', flightId: 1 }, 'second: joins flight 1');
  t.strictSame(sh.complete(1, { bytes: b(10), hasParse: false, ttlMs: 100 }, 0, now), [101], 'the waiter is handed back');
  const hit = sh.lookup('k1', 'db', ['t'], 3, 102, now + 99);
  t.equal(hit.kind, 'hit', 'stored');
  t.equal(sh.lookup('k1', 'db', ['t'], 4, 103, now + 100).kind, 'lead', 'expired at its TTL');
  t.equal(sh.counters.expirations, 1);

  // LRU by entries: k2, k3, k4 stored; k5 evicts the least recently used.
  for (const [i, k] of ['k2', 'k3', 'k4'].entries()) {
    sh.lookup(k, 'db', [], 10 + i, 0, now);
    sh.complete(10 + i, { bytes: b(10), hasParse: false, ttlMs: 1000 }, 0, now);
  }
  sh.complete(4, null, 0, now);
  sh.lookup('k2', 'db', [], 20, 0, now); // touch k2
  sh.lookup('k5', 'db', [], 21, 0, now);
  sh.complete(21, { bytes: b(10), hasParse: false, ttlMs: 1000 }, 0, now);
  t.equal(sh.size, 3, 'bounded by entries');
  t.equal(sh.lookup('k3', 'db', [], 22, 0, now).kind, 'lead', 'k3 (least recently used) evicted');
  sh.complete(22, null, 0, now);
  t.equal(sh.lookup('k2', 'db', [], 23, 0, now).kind, 'hit', 'k2 was touched: kept');
  t.equal(sh.counters.evictions, 1);

  // By bytes: one big entry pushes the rest out; an entry over the bound is not stored.
  sh.lookup('big', 'db', [], 30, 0, now);
  sh.complete(30, { bytes: b(9000), hasParse: false, ttlMs: 1000 }, 0, now);
  t.ok(sh.byteSize <= 10_000, `bytes bounded (${sh.byteSize})`);
  sh.lookup('huge', 'db', [], 31, 0, now);
  sh.complete(31, { bytes: b(20_000), hasParse: false, ttlMs: 1000 }, 0, now);
  t.equal(sh.lookup('huge', 'db', [], 32, 0, now).kind, 'lead', 'over maxBytes: not stored');
  sh.complete(32, null, 0, now);

  // Invalidation (lazy) by table and by database; a flight begun before a write stores nothing and takes no newcomers.
  const s2 = new CacheShard({ cache: true, singleflight: true, maxBytes: 1 << 20, maxEntries: 100 });
  const store = (k: string, db: string, tables: string[], id: number) => {
    s2.lookup(k, db, tables, id, 0, now);
    s2.complete(id, { bytes: b(1), hasParse: false, ttlMs: 1000 }, 0, now);
  };
  store('a', 'db1', ['t'], 1);
  store('b', 'db1', ['u'], 2);
  store('c', 'db2', ['t'], 3);
  store('d', 'db1', [], 4);
  s2.invalidate('db1', ['t']);
  t.equal(s2.lookup('a', 'db1', ['t'], 5, 0, now).kind, 'lead', 'a is gone');
  t.equal(s2.counters.invalidated_entries, 1, 'counted when found stale');
  t.equal(s2.lookup('c', 'db2', ['t'], 6, 0, now).kind, 'hit', 'the same table in another database stays');
  t.equal(s2.lookup('b', 'db1', ['u'], 60, 0, now).kind, 'hit', 'another table of db1 stays');
  s2.invalidate('db1', null);
  t.equal(s2.lookup('b', 'db1', ['u'], 61, 0, now).kind, 'lead', 'db1 entirely: b...');
  t.equal(s2.lookup('d', 'db1', [], 62, 0, now).kind, 'lead', '...and d, which read no table');
  s2.complete(61, null, 0, now);
  s2.complete(62, null, 0, now);
  t.equal(s2.lookup('c', 'db2', ['t'], 7, 0, now).kind, 'hit', 'db2 untouched');
  t.equal(s2.counters.invalidated_entries, 3);
  s2.complete(5, null, 0, now); // the flight for 'a' begun above ends without an answer
  t.equal(s2.lookup('a', 'db1', ['t'], 8, 0, now).kind, 'lead', 'a new flight');
  t.strictSame(s2.lookup('a', 'db1', ['t'], 9, 50, now), { kind: 'wait', flightId: 8 }, 'joins it');
  s2.invalidate('db1', ['t']); // a write commits while flight 8 runs
  t.equal(s2.lookup('a', 'db1', ['t'], 10, 51, now).kind, 'lead', 'a newcomer does not join the stale flight');
  t.strictSame(s2.complete(8, { bytes: b(1), hasParse: false, ttlMs: 1000 }, 0, now), [50], 'the old flight answers its own waiters');
  t.equal(s2.counters.stale_skips, 1, 'but stores nothing');
  t.strictSame(s2.complete(10, { bytes: b(1), hasParse: false, ttlMs: 1000 }, 0, now), [], 'the new flight completes');
  t.equal(s2.lookup('a', 'db1', ['t'], 11, 0, now).kind, 'hit', 'and its answer is stored');
  t.equal(s2.leave(10, 1), false, 'leave of a finished flight');
  // bypass
  s2.lookup('x', 'db1', [], 12, 0, now);
  s2.complete(12, null, 500, now);
  t.equal(s2.lookup('x', 'db1', [], 13, 0, now + 499).kind, 'bypass', 'too large: bypass');
  t.equal(s2.lookup('x', 'db1', [], 14, 0, now + 500).kind, 'lead', 'until the bypass expires');
});
