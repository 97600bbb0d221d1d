// Insight digests: exact aggregates per fingerprint, kind and tables per statement, ordering,
// time saved by the cache, bounded memory (batch eviction keeps the top by total time, the
// text memo stays bounded and never points at an evicted digest), long texts, reset.
import t from 'tap';
import { Insight, fingerprintId, type CompletionSample } from '../../src/insight';
import { DigestTable, cteNames } from '../../src/insight/digests';
import { kthSmallest } from '../../src/insight/select';

const NOW = Date.UTC(2026, 11, 1, 12, 0, 0);

/** A completion sample: a plain upstream execution unless told otherwise. */
function S(sql: string, ms: number, o: Partial<CompletionSample> = {}): CompletionSample {
  return { sql, ms, rows: 0, error: false, cache: undefined, flight: undefined, now: NOW, ...o };
}

t.test('aggregates of one digest, fed by literal and placeholder texts alike', async (t) => {
  const ins = new Insight({ cacheEnabled: true });
  ins.record(S('SELECT abalance FROM pgbench_accounts WHERE aid = 1', 2, { rows: 1, now: NOW, cache: 'miss' }));
  ins.record(S('select abalance from pgbench_accounts where aid = 2;', 4, { rows: 1, now: NOW + 1000, cache: 'hit' }));
  ins.record(S('SELECT abalance FROM pgbench_accounts WHERE aid = $1', 6, { rows: 0, error: true, now: NOW + 2000 }));
  ins.record(S('BEGIN', 0.5, { now: NOW + 3000 }));
  t.equal(ins.digestCount, 2);
  t.equal(ins.completed, 4);
  t.equal(ins.errors, 1);
  t.equal(ins.latency.count, 4);
  const [d, b] = ins.queries('total', 10);
  t.strictSame({ ...d!, p50Ms: 0, p95Ms: 0, p99Ms: 0 }, {
    id: fingerprintId('select abalance from pgbench_accounts where aid = $1'),
    query: 'select abalance from pgbench_accounts where aid = $1',
    kind: 'read',
    tables: ['pgbench_accounts'],
    calls: 3,
    errors: 1,
    rows: 2,
    totalMs: 12,
    minMs: 2,
    maxMs: 6,
    meanMs: 4,
    p50Ms: 0, p95Ms: 0, p99Ms: 0,
    firstSeen: '2026-12-01T12:00:00.000Z',
    lastSeen: '2026-12-01T12:00:02.000Z',
    cacheHits: 1,
    cacheMisses: 1,
    savedMs: 0, // the hit took 4 ms, the upstream mean is 2 ms: nothing saved
  });
  t.ok(Math.abs(d!.p50Ms - 4) / 4 < 0.032, `p50 ${d!.p50Ms}`);
  t.equal(d!.p99Ms, 6, 'p99 of three: the maximum');
  t.equal(b!.query, 'begin');
  t.equal(b!.kind, 'other');
  t.strictSame(b!.tables, []);
});

t.test('kind and tables per statement', async (t) => {
  const CASES: Array<[string, 'read' | 'write' | 'other', string[]]> = [
    ['SELECT * FROM public.Accounts a JOIN orders o ON o.aid = a.id', 'read', ['accounts', 'orders']],
    ['select * from "My Table"', 'read', ['"My Table"']],
    ['select * from t for update', 'read', ['t']],
    ['select now(), random() from t', 'read', ['t']],
    ['select * from pg_class', 'read', ['pg_class']],
    ['select my_func(a) from t', 'read', []], // may write anything: the classifier names nothing
    ['with x as (select 1), "Y" as (select 2) select * from x, "Y", t', 'read', ['t']],
    ['with recursive r(n) as (select 1 union all select n + 1 from r) select * from r join u on true', 'read', ['u']],
    ['select 1; select * from v', 'read', ['v']],
    ['UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 2', 'write', ['pgbench_accounts']],
    ['insert into s.t select * from u', 'write', ['t']],
    ['with d as (delete from t returning *) insert into log select * from d', 'write', ['t', 'log']],
    ['truncate a, b', 'write', ['a', 'b']],
    ["select nextval('seq')", 'write', ['seq']],
    ['create table t (a int)', 'write', []], // DDL writes the whole database (issue 14, finding 10): no one table
    ['do $$ begin perform 1; end $$', 'write', []], // what it writes is unknown: no heat
    ['begin; update t set a = 1; commit', 'write', ['t']],
    ['BEGIN', 'other', []],
    ['commit', 'other', []],
    ['set work_mem = 1000', 'other', []],
    ['show all', 'other', []],
    ['explain select * from t', 'other', []],
    ['copy t to stdout', 'other', []],
    ['lock table t', 'other', []],
    ['deallocate all', 'other', []],
    ['', 'other', []],
  ];
  for (const [sql, kind, tables] of CASES) {
    const ins = new Insight({ cacheEnabled: false });
    ins.record(S(sql, 1));
    const [d] = ins.queries('total', 1);
    t.strictSame([d!.kind, d!.tables], [kind, tables], sql);
    t.equal(ins.tableCount, tables.length, `${sql}: heat for its tables only`);
  }
});

t.test('cteNames', async (t) => {
  t.strictSame(cteNames('with a as (select $1), b (x, y) as not materialized (select ")(" from t), "C d" as materialized (select $2) select * from a'),
    ['a', 'b', '"C d"']);
  t.strictSame(cteNames('with "lower" as (select $1) select $2'), ['lower'], 'a plain quoted name is written bare');
  t.strictSame(cteNames('select * from with_t'), []);
  t.strictSame(cteNames('with a as (select'), [], 'unterminated');
});

t.test('ordering and limits', async (t) => {
  const ins = new Insight({ cacheEnabled: false });
  // a: 10 calls x 1 ms = 10 ms; b: 2 calls x 20 ms = 40 ms; c: 1 call x 30 ms = 30 ms
  for (let i = 0; i < 10; i++) ins.record(S(`select a from ta where x = ${i}`, 1));
  for (let i = 0; i < 2; i++) ins.record(S('select b from tb', 20));
  ins.record(S('select c from tc', 30));
  const names = (sort: 'total' | 'calls' | 'mean', n: number): string[] => ins.queries(sort, n).map((d) => d.tables[0]!);
  t.strictSame(names('total', 10), ['tb', 'tc', 'ta']);
  t.strictSame(names('calls', 10), ['ta', 'tb', 'tc']);
  t.strictSame(names('mean', 10), ['tc', 'tb', 'ta']);
  t.strictSame(names('total', 2), ['tb', 'tc']);
  t.strictSame(names('total', 0), []);
});

t.test('time saved: the upstream mean minus the hit, never below 0; waiters count as hits', async (t) => {
  const ins = new Insight({ cacheEnabled: true });
  const q = 'select * from t where id = 1';
  ins.record(S(q, 1, { cache: 'hit' })); // no upstream execution yet: nothing to compare with
  ins.record(S(q, 10, { cache: 'miss', flight: 'leader' }));
  ins.record(S(q, 20, { cache: 'miss' }));
  ins.record(S(q, 500, { cache: 'miss', error: true })); // errors are not part of the mean
  ins.record(S(q, 3, { cache: 'hit' })); // saves 15 - 3 = 12
  ins.record(S(q, 14, { flight: 'waiter' })); // a waiter, cache off: saves 15 - 14 = 1
  ins.record(S(q, 16, { cache: 'miss', flight: 'waiter' })); // a waiter whose wait took longer: 0
  ins.record(S(q, 2, { cache: 'bypass' })); // ran upstream: the mean becomes (10 + 20 + 2) / 3
  ins.record(S(q, 0.5, { cache: 'hit' })); // saves 32/3 - 0.5
  const [d] = ins.queries('total', 1);
  t.equal(d!.cacheHits, 5);
  t.equal(d!.cacheMisses, 3, 'the waiter with cache: miss is a hit, not a miss');
  t.equal(d!.savedMs, Math.round((12 + 1 + 32 / 3 - 0.5) * 1000) / 1000, "shown to the microsecond");
  const { tables } = ins.tables(NOW);
  t.equal(tables[0]!.savedMs, d!.savedMs, 'the table gets the same saving');
  t.equal(tables[0]!.cacheHits, 5);
  t.equal(tables[0]!.cacheMisses, 3);
  t.equal(tables[0]!.hitRatio, 5 / 8);
});

t.test('eviction: 100k distinct fingerprints with maxDigests 100 keep the heaviest, in bounded memory', async (t) => {
  const ins = new Insight({ cacheEnabled: false, maxDigests: 100 });
  // 30 heavy shapes recorded early, then a flood of light distinct shapes, the heavy ones now and then.
  for (let h = 0; h < 30; h++) ins.record(S(`select heavy${h} from t where a = ${h}`, 100 + h));
  let maxSize = 0;
  for (let i = 0; i < 100_000; i++) {
    ins.record(S(`select light${i} from t where a = ${i}`, (i % 7) * 0.01));
    if (i % 5000 === 0) ins.record(S(`select heavy${i % 30} from t where a = ${i}`, 1));
    maxSize = Math.max(maxSize, ins.digestCount);
  }
  t.ok(maxSize <= 100, `at most 100 digests at any time (${maxSize})`);
  t.equal(ins.digestEvictions, 100_030 - ins.digestCount, 'every digest not held was counted as evicted');
  const top = ins.queries('total', 30);
  t.strictSame(top.map((d) => d.query).sort(), Array.from({ length: 30 }, (_, h) => `select heavy${h} from t where a = $1`).sort(),
    'the 30 heaviest survived');
  t.ok(top.every((d) => d.totalMs >= 100), 'with their totals intact');
  t.equal(ins.completed, 100_050);
});

t.test('the text memo: bounded, cleared on eviction, never pointing at an evicted digest', async (t) => {
  const dt = new DigestTable({ maxDigests: 50, memoSize: 100, maxQueryChars: 8192 });
  // Placeholder texts (no literals) are memoised; repeated, they resolve to the same entry.
  const a = dt.entryFor('select a from t where x = $1', NOW);
  t.equal(dt.entryFor('select a from t where x = $1', NOW), a);
  t.equal(dt.memoCount, 1);
  // Texts with literals are not memoised (pgbench -M simple: each is new).
  dt.entryFor('select a from t where x = 5', NOW);
  t.equal(dt.memoCount, 1, 'a text with literals is not remembered');
  let maxMemo = 0;
  for (let i = 0; i < 10_000; i++) {
    const e = dt.entryFor(`select c${i % 400} from t where x = $1`, NOW);
    e.totalMs += i % 400; // later shapes weigh more
    maxMemo = Math.max(maxMemo, dt.memoCount);
    for (const m of dt.memoDigests()) if (m.evicted) t.fail(`the memo holds an evicted digest (${m.query})`);
  }
  t.ok(maxMemo <= 100, `memo at most 100 texts (${maxMemo})`);
  t.ok(dt.size <= 50);
  t.ok(dt.evictions > 0);
  t.ok(a.evicted, 'the first digest was evicted (least total time)');
  const again = dt.entryFor('select a from t where x = $1', NOW);
  t.not(again, a, 'an evicted digest is created afresh');
  t.equal(again.calls, 0);
});

t.test('long texts are keyed by id and shown cut', async (t) => {
  const ins = new Insight({ cacheEnabled: false, maxQueryChars: 100 });
  const cols = Array.from({ length: 50 }, (_, i) => `col${i}`).join(', ');
  ins.record(S(`select ${cols} from t where a = 1`, 1));
  ins.record(S(`select ${cols} from t where a = 2`, 1));
  ins.record(S(`select ${cols} from u where a = 1`, 1));
  t.equal(ins.digestCount, 2, 'texts equal in the first 100 chars but not after: two digests');
  const [d] = ins.queries('calls', 1);
  t.equal(d!.calls, 2);
  t.equal(d!.query.length, 104);
  t.ok(d!.query.endsWith(' ...'));
  t.equal(d!.id, fingerprintId(`select ${cols} from t where a = $1`), 'the id is of the whole normal form');
});

t.test('reset forgets everything', async (t) => {
  const ins = new Insight({ cacheEnabled: true, maxDigests: 2 });
  for (let i = 0; i < 5; i++) ins.record(S(`select ${'x' + i} from t`, 1, { error: true }));
  t.ok(ins.digestEvictions > 0);
  ins.reset();
  t.equal(ins.digestCount, 0);
  t.equal(ins.digestEvictions, 0);
  t.equal(ins.completed, 0);
  t.equal(ins.errors, 0);
  t.equal(ins.latency.count, 0);
  t.equal(ins.tableCount, 0);
  t.strictSame(ins.queries('total', 10), []);
  t.strictSame(ins.tables(NOW), { tables: [], recommendations: [] });
  ins.record(S('select x0 from t', 1));
  t.equal(ins.queries('total', 1)[0]!.calls, 1);
  t.equal(ins.tables(NOW).tables[0]!.reads, 1);
});

t.test('kthSmallest', async (t) => {
  for (const n of [1, 2, 3, 10, 101, 1000]) {
    const xs = Array.from({ length: n }, (_, i) => (i * 7919) % 37); // many ties
    const sorted = xs.slice().sort((a, b) => a - b);
    for (const k of [0, n >> 1, n - 1]) t.equal(kthSmallest(Float64Array.from(xs), k), sorted[k], `n=${n} k=${k}`);
  }
});

t.test('--processes N: digests and tables merged from two processes equal one process that saw everything', async (t) => {
  const texts = ['select a from t where id = $1', 'select * from u join t on u.id = t.uid', 'update t set a = 1 where id = 2', 'begin', 'select 1', 'insert into u values (3)'];
  const outcomes: Array<CompletionSample['cache']> = [undefined, 'miss', 'hit', 'bypass'];
  const one = new Insight({ cacheEnabled: true, minAccesses: 5 });
  const parts = [new Insight({ cacheEnabled: true, minAccesses: 5 }), new Insight({ cacheEnabled: true, minAccesses: 5 })];
  for (let i = 0; i < 600; i++) {
    // Durations in eighths of a millisecond: every sum is exact in binary, whatever its order.
    const s: CompletionSample = { sql: texts[(i * 7) % texts.length]!, ms: ((i * 37) % 400) / 8, rows: i % 3, error: i % 17 === 0, cache: outcomes[i % 4], flight: undefined, now: NOW - 1000 + i, node: i % 5 === 0 ? undefined : `pg${i % 3}:5432` };
    one.record(s);
    parts[(i * 13) % 5 < 2 ? 0 : 1]!.record(s);
  }
  const merged = new Insight({ cacheEnabled: true, minAccesses: 5 });
  // Through JSON, as over the IPC channel.
  for (const p of parts) merged.absorbDigests(JSON.parse(JSON.stringify(p.digestPart())));
  for (const p of parts) merged.absorbTables(JSON.parse(JSON.stringify(p.tablePart())));
  for (const sort of ['total', 'calls', 'mean'] as const) {
    // Time saved is estimated per process (from that process's own upstream runs): it adds up, but differs from one process's estimate.
    const strip = (v: ReturnType<Insight['queries']>) => v.map(({ savedMs: _, ...rest }) => rest);
    t.strictSame(strip(merged.queries(sort, 50)), strip(one.queries(sort, 50)), `/queries sorted by ${sort}: every figure of every digest, percentiles included`);
  }
  const saved = (ins: Insight) => ins.queries('total', 50).reduce((a, d) => a + d.savedMs, 0);
  const sumOfParts = saved(parts[0]!) + saved(parts[1]!);
  // Each view rounds to the µs: the sums may differ by that much per digest.
  t.ok(sumOfParts > 0 && Math.abs(saved(merged) - sumOfParts) <= 0.001 * texts.length, `time saved is the sum of the processes' estimates (${saved(merged)} vs ${sumOfParts} ms)`);
  const noSaved = (r: ReturnType<Insight['tables']>) => ({ ...r, tables: r.tables.map(({ savedMs: _, ...rest }) => rest) });
  t.strictSame(noSaved(merged.tables(NOW)), noSaved(one.tables(NOW)), '/tables: counters, temperatures and recommendations of the sum');
  t.ok(one.tables(NOW).recommendations.length > 0, 'the comparison covers recommendations');
});
