// Table heat: counters per table, temperature classes by percentile (ties, a single table,
// frozen tables), recommendations with cache on and off (each rule's trigger and its absence),
// that a suggested rule is valid cache-rules syntax matching the table, and table eviction.
import t from 'tap';
import { Insight, rule, suggestedTtl, type CompletionSample, type Recommendation } from '../../src/insight';
import { parseCommandLine } from '../../src/config';
import { compileRules } from '../../src/config';

const NOW = Date.UTC(2026, 11, 1, 12, 0, 0);

function S(sql: string, ms: number, o: Partial<CompletionSample> = {}): CompletionSample {
  return { sql, ms, rows: 0, error: false, cache: undefined, flight: undefined, now: NOW, ...o };
}

/** n reads of a table, each `cache` as given. */
function reads(ins: Insight, table: string, n: number, o: Partial<CompletionSample> = {}): void {
  for (let i = 0; i < n; i++) ins.record(S(`SELECT * FROM ${table} WHERE id = ${i}`, 1, o));
}
function writes(ins: Insight, table: string, n: number, o: Partial<CompletionSample> = {}): void {
  for (let i = 0; i < n; i++) ins.record(S(`UPDATE ${table} SET v = v + 1 WHERE id = ${i}`, 1, o));
}

function recsFor(recs: Recommendation[], table: string): Recommendation[] {
  return recs.filter((r) => r.table === table);
}

t.test('counters per table', async (t) => {
  const ins = new Insight({ cacheEnabled: true });
  ins.record(S('select * from a join b on a.id = b.id', 5, { cache: 'miss', now: NOW }));
  ins.record(S('select * from a join b on a.id = b.id', 1, { cache: 'hit', now: NOW + 10 }));
  ins.record(S('update a set x = 1', 2, { now: NOW + 20 }));
  ins.record(S('select * from b', 3, { cache: 'bypass', now: NOW + 30 }));
  ins.record(S('select now() from c', 7, { now: NOW + 40 }));
  const { tables } = ins.tables(NOW + 50);
  const by = Object.fromEntries(tables.map((x) => [x.table, x]));
  t.strictSame(by['a'], {
    table: 'a', reads: 2, writes: 1, cacheHits: 1, cacheMisses: 1, hitRatio: 0.5, savedMs: 4, totalMs: 8,
    temperature: 'hot', lastAccess: new Date(NOW + 20).toISOString(),
  });
  t.equal(by['b']!.reads, 3);
  t.equal(by['b']!.writes, 0);
  t.equal(by['b']!.hitRatio, 0.5, 'a bypass is no lookup');
  t.equal(by['b']!.totalMs, 9);
  t.equal(by['c']!.hitRatio, null, 'no lookups: null');
  t.strictSame(tables.map((x) => x.table), ['a', 'b', 'c'], 'busiest first (ties by name)');
});

t.test('temperature by percentile of accesses', async (t) => {
  const ins = new Insight({ cacheEnabled: false });
  // 20 tables with 1 .. 20 accesses
  for (let k = 1; k <= 20; k++) reads(ins, `t${k}`, k);
  const temp = (now: number): Record<string, string> =>
    Object.fromEntries(ins.tables(now).tables.map((x) => [x.table, x.temperature]));
  let got = temp(NOW);
  const count = (c: string): number => Object.values(got).filter((v) => v === c).length;
  t.equal(count('hot'), 2, 'top 10%: 2 of 20');
  t.equal(count('warm'), 8, 'up to 50%: 8 more');
  t.equal(count('cold'), 10);
  t.equal(got['t20'], 'hot');
  t.equal(got['t19'], 'hot');
  t.equal(got['t18'], 'warm');
  t.equal(got['t11'], 'warm');
  t.equal(got['t10'], 'cold');
  t.equal(got['t1'], 'cold');

  // Ties share the better class.
  reads(ins, 't18', 2); // 20 accesses, like t20
  got = temp(NOW);
  t.equal(got['t18'], 'hot');
  t.equal(got['t19'], 'warm', 'two tables above it now: 2/20 = 10%, not < 10%');

  // Frozen: no access for frozenAfterMs; the rest are ranked without them.
  got = temp(NOW + 300_001);
  t.ok(Object.values(got).every((v) => v === 'frozen'), 'all frozen after 5 minutes');
  reads(ins, 't1', 1, { now: NOW + 300_000 });
  got = temp(NOW + 300_001);
  t.equal(got['t1'], 'hot', 'the only table accessed lately is hot, even with 2 accesses');
  t.equal(got['t20'], 'frozen');
  t.equal(temp(NOW + 300_000)['t20'], 'hot', 'exactly frozenAfterMs: not yet frozen');
});

t.test('a single table, and frozenAfterMs', async (t) => {
  const ins = new Insight({ cacheEnabled: false, frozenAfterMs: 1000 });
  reads(ins, 'solo', 1);
  t.equal(ins.tables(NOW).tables[0]!.temperature, 'hot');
  t.equal(ins.tables(NOW + 1001).tables[0]!.temperature, 'frozen');
});

t.test('cache on: raise the TTL of a hot read-mostly table with a low hit ratio', async (t) => {
  const ins = new Insight({ cacheEnabled: true, cacheTtlMs: 2000 });
  reads(ins, 'pgbench_accounts', 160, { cache: 'miss' });
  reads(ins, 'pgbench_accounts', 40, { cache: 'hit' });
  writes(ins, 'pgbench_accounts', 5); // 2.4% writes
  reads(ins, 'quiet', 190, { cache: 'hit' }); // a high hit ratio (and warm: 2nd of 2)
  const { recommendations } = ins.tables(NOW);
  const r = recsFor(recommendations, 'pgbench_accounts');
  t.equal(r.length, 1, JSON.stringify(recommendations));
  t.equal(r[0]!.priority, 'high');
  t.match(r[0]!.issue, /hot read-mostly.*20% of 200 lookups/);
  t.match(r[0]!.advice, /Raise its TTL/);
  t.ok(r[0]!.advice.includes('{"pattern": "\\\\bpgbench_accounts\\\\b", "ttl": 10000}'), r[0]!.advice);
  t.strictSame(recsFor(recommendations, 'quiet'), [], 'a hit ratio of 100%: nothing to say');
  // With the busier table cached well, pgbench_accounts is second of two: warm, no advice.
  reads(ins, 'quiet', 100, { cache: 'hit' });
  t.strictSame(ins.tables(NOW).recommendations, [], 'warm: no TTL advice');
});

t.test('no recommendation below minAccesses, for non-cacheable reads, or when not hot', async (t) => {
  const few = new Insight({ cacheEnabled: true });
  reads(few, 'small', 99, { cache: 'miss' });
  t.strictSame(few.tables(NOW).recommendations, [], '99 accesses < 100');
  const more = new Insight({ cacheEnabled: true, minAccesses: 50 });
  reads(more, 'small', 99, { cache: 'miss' });
  t.equal(more.tables(NOW).recommendations.length, 1, 'minAccesses 50');

  const cat = new Insight({ cacheEnabled: false });
  for (let i = 0; i < 200; i++) cat.record(S(`select * from pg_class where oid = ${i}`, 1));
  t.strictSame(cat.tables(NOW).recommendations, [], 'catalog reads are never cacheable: no advice to cache them');

  const cold = new Insight({ cacheEnabled: true });
  for (let k = 0; k < 10; k++) reads(cold, `t${k}`, 1000 + k, { cache: 'miss' });
  const recs = cold.tables(NOW).recommendations;
  t.strictSame(recs.map((r) => r.table), ['t9'], 'only the hot one of 10');
});

t.test('cache on: stop caching a write-heavy table', async (t) => {
  const ins = new Insight({ cacheEnabled: true });
  reads(ins, 'sessions', 85, { cache: 'miss' });
  reads(ins, 'sessions', 15, { cache: 'hit' });
  writes(ins, 'sessions', 60); // 37.5% writes, hit ratio 15%
  reads(ins, 'orders', 60, { cache: 'hit' });
  reads(ins, 'orders', 40, { cache: 'miss' });
  writes(ins, 'orders', 50); // 33% writes, hit ratio 60%
  reads(ins, 'plain', 71, { cache: 'miss' });
  writes(ins, 'plain', 29); // 29% writes: not write-heavy
  const { recommendations } = ins.tables(NOW);
  const s = recsFor(recommendations, 'sessions');
  t.equal(s.length, 1);
  t.equal(s[0]!.priority, 'high', 'hit ratio under 20%');
  t.match(s[0]!.issue, /write-heavy table \(38% of 160 accesses are writes\) with a cache hit ratio of 15%/);
  t.ok(s[0]!.advice.includes('{"pattern": "\\\\bsessions\\\\b", "ttl": "never"}'), s[0]!.advice);
  const o = recsFor(recommendations, 'orders');
  t.equal(o.length, 1);
  t.equal(o[0]!.priority, 'medium');
  t.strictSame(recsFor(recommendations, 'plain'), []);
  t.strictSame(recommendations.map((r) => r.priority), ['high', 'medium'], 'high first');

  const noLookups = new Insight({ cacheEnabled: true });
  writes(noLookups, 'w', 100);
  reads(noLookups, 'w', 100);
  t.strictSame(noLookups.tables(NOW).recommendations, [], 'write-heavy but never looked up: nothing to stop');
});

t.test('cache on: reads that bypass the cache', async (t) => {
  const ins = new Insight({ cacheEnabled: true });
  reads(ins, 'config', 150, { cache: 'bypass' });
  reads(ins, 'config', 50, { cache: 'hit' });
  const r = recsFor(ins.tables(NOW).recommendations, 'config');
  t.equal(r.length, 1);
  t.equal(r[0]!.priority, 'medium');
  t.match(r[0]!.issue, /75% of its cacheable reads bypass the cache/);
  t.match(r[0]!.advice, /transaction block/);

  const fine = new Insight({ cacheEnabled: true });
  reads(fine, 'config', 100, { cache: 'bypass' });
  reads(fine, 'config', 100, { cache: 'hit' });
  t.strictSame(fine.tables(NOW).recommendations, [], 'half bypass, half looked up: no advice');
});

t.test('cache on: a frozen table whose answers were cached', async (t) => {
  const ins = new Insight({ cacheEnabled: true });
  reads(ins, 'archive', 3, { cache: 'miss' });
  reads(ins, 'nocache', 3);
  t.strictSame(ins.tables(NOW).recommendations, [], 'not frozen yet');
  const { recommendations } = ins.tables(NOW + 3_600_000);
  t.equal(recommendations.length, 1);
  t.strictSame({ ...recommendations[0]!, advice: '' },
    { table: 'archive', priority: 'low', issue: 'no access for 60 min, but its answers were cached', advice: '' });
});

t.test('cache off: enable it for hot read-mostly tables only', async (t) => {
  const ins = new Insight({ cacheEnabled: false });
  reads(ins, 'countries', 500);
  reads(ins, 'busy', 300);
  writes(ins, 'busy', 300); // hot but write-heavy
  for (let k = 0; k < 20; k++) reads(ins, `other${k}`, 10); // so that only two are hot
  const { recommendations } = ins.tables(NOW);
  t.equal(recommendations.length, 1, JSON.stringify(recommendations));
  t.equal(recommendations[0]!.table, 'countries');
  t.equal(recommendations[0]!.priority, 'high');
  t.match(recommendations[0]!.advice, /--cache/);
  t.ok(recommendations[0]!.advice.includes('{"pattern": "\\\\bcountries\\\\b", "ttl": 5000}'));
});

t.test('suggested rules are valid cache-rules entries that match the table as a word', async (t) => {
  t.equal(suggestedTtl(1000), 5000);
  t.equal(suggestedTtl(60_000), 300_000);
  t.equal(suggestedTtl(86_400_000), 86_400_000);
  const CASES: Array<[string, string[], string[]]> = [
    ['pgbench_accounts', ['SELECT * FROM PGBENCH_ACCOUNTS WHERE aid = 1', 'select 1 from public.pgbench_accounts'],
      ['select * from pgbench_accounts_old', 'select * from my_pgbench_accounts']],
    ['a$b$', ['select * from a$b$ where x = 1', 'select * from A$B$'], ['select * from a$b$c']],
    ['"My Table"', ['select * from "My Table"'], ['select * from "my table"', 'select * from My Table']],
    ['"a.b(c)"', ['select * from "a.b(c)"'], ['select * from "axb(c)"']],
  ];
  for (const [table, yes, no] of CASES) {
    for (const ttl of [5000, 'never'] as const) {
      const text = rule(table, ttl);
      const cmd = parseCommandLine(['--cache-rules', `[${text}]`]);
      if (cmd.kind !== 'run') throw new Error('expected a run command');
      const [compiled] = compileRules(cmd.config.cache.rules);
      t.equal(compiled!.ttlMs, ttl === 'never' ? null : ttl, `${text}: ttl`);
      for (const sql of yes) t.ok(compiled!.pattern.test(sql), `${text} matches ${sql}`);
      for (const sql of no) t.notOk(compiled!.pattern.test(sql), `${text} does not match ${sql}`);
    }
  }
});

t.test('table eviction: bounded, and digests find their table again', async (t) => {
  const ins = new Insight({ cacheEnabled: false, maxTables: 10 });
  reads(ins, 'keep', 50);
  for (let k = 0; k < 100; k++) reads(ins, `t${k}`, 1);
  t.ok(ins.tableCount <= 10, `${ins.tableCount} tables`);
  t.equal(ins.tableEvictions, 101 - ins.tableCount);
  const names = ins.tables(NOW).tables.map((x) => x.table);
  t.equal(names[0], 'keep', 'the busiest table stayed');
  t.notOk(names.includes('t0'), 't0 was evicted');
  // The digest of t0 still exists and holds a reference to the evicted record: it must look again.
  ins.record(S('SELECT * FROM t0 WHERE id = 1', 1));
  const t0 = ins.tables(NOW).tables.find((x) => x.table === 't0');
  t.ok(t0, 't0 is back');
  t.equal(t0!.reads, 1, 'with fresh counters');
  t.ok(ins.tableCount <= 10);
});
