// The classification memo shares an entry between texts that differ only in numbers when, and
// only when, no number can change their verdict: queries and plain DML. Issue 14, finding 7:
// keyed by shape, `EXPLAIN (ANALYZE 0) UPDATE ...` seen first made `EXPLAIN (ANALYZE 1) UPDATE
// ...` count as no write.
import t from 'tap';
import { CachePolicy } from '../../src/cache/policy';
import { memoKeyOf, shapeOf } from '../../src/sql/shape';

/** Pairs of texts that differ in numbers only, and whose verdicts differ. */
const DIFFERENT: Array<[string, string]> = [
  ['EXPLAIN (ANALYZE 0) UPDATE t SET a = 1', 'EXPLAIN (ANALYZE 1) UPDATE t SET a = 1'],
  ['explain (analyze 0, buffers 1) delete from t', 'explain (analyze 1, buffers 0) delete from t'],
  ['select 1; explain (analyze 0) update t set a = 2', 'select 1; explain (analyze 1) update t set a = 2'],
];

/** Texts that must be memoised by their full text (a number may matter to their kind). */
const OWN_KEY = [
  'EXPLAIN (ANALYZE 0) UPDATE t SET a = 5',
  'COPY t TO STDOUT (FORMAT csv, HEADER 0)',
  "COPY (SELECT 2) TO STDOUT WITH (FORMAT csv, HEADER 0)",
  'DECLARE c CURSOR FOR SELECT 3',
  'FETCH 10 FROM c',
  'PREPARE p AS SELECT 7',
  'SET statement_timeout = 5',
  'VACUUM (PARALLEL 2) t',
  'CREATE TABLE t2 (a numeric(10, 2))',
  'select 5; create table t (a int)',
  ' ( select 5 ); copy t to stdout (header 0)',
];

/** Pairs that must share one entry (ids inlined by pgbench and ORMs). */
const SHARED: Array<[string, string]> = [
  ['SELECT abalance FROM pgbench_accounts WHERE aid = 42', 'SELECT abalance FROM pgbench_accounts WHERE aid = 7'],
  ['UPDATE pgbench_accounts SET abalance = abalance + 5 WHERE aid = 9', 'UPDATE pgbench_accounts SET abalance = abalance + 3 WHERE aid = 1'],
  ['insert into t values (1, 2.5)', 'insert into t values (3, 4e5)'],
  ['delete from t where id = 3', 'delete from t where id = 4'],
  ["merge into t using s on t.id = s.id + 1 when matched then delete", "merge into t using s on t.id = s.id + 2 when matched then delete"],
  ['with x as (select 1) select * from x limit 5', 'with x as (select 2) select * from x limit 6'],
  ['(select 1) union (select 2)', '(select 3) union (select 4)'],
  ['values (1), (2)', 'values (3), (4)'],
  ['table t; select 1', 'table t; select 2'],
];

t.test('memoKeyOf: shape only for queries and plain DML', async (t) => {
  for (const [a, b] of DIFFERENT) t.not(memoKeyOf(a), memoKeyOf(b), `${a} / ${b}`);
  for (const sql of OWN_KEY) {
    t.not(shapeOf(sql), sql, `${sql}: has numbers to fold`);
    t.equal(memoKeyOf(sql), sql, sql);
  }
  for (const [a, b] of SHARED) {
    t.equal(memoKeyOf(a), memoKeyOf(b), `${a} / ${b}`);
    t.equal(memoKeyOf(a), shapeOf(a), `${a}: keyed by its shape`);
  }
});

t.test('the policy memo: whichever text comes first, each gets its own verdict', async (t) => {
  for (const [a, b] of DIFFERENT) {
    for (const [first, second] of [[a, b], [b, a]] as const) {
      const p = new CachePolicy({ rules: [], ttlMs: 1000, rulesOnly: false });
      const want = new CachePolicy({ rules: [], ttlMs: 1000, rulesOnly: false }).forSql(second);
      p.forSql(first);
      const got = p.forSql(second);
      t.strictSame(got.cls, want.cls, `${second} after ${first}`);
      t.strictSame(got.writeTables, want.writeTables, `${second} after ${first}: write tables`);
    }
  }
  // The finding's pair: the ANALYZE 1 one writes t whatever came first.
  const p = new CachePolicy({ rules: [], ttlMs: 1000, rulesOnly: false });
  t.equal(p.forSql('EXPLAIN (ANALYZE 0) UPDATE t SET a = 1').cls.writes, false);
  t.equal(p.forSql('EXPLAIN (ANALYZE 1) UPDATE t SET a = 1').cls.writes, true);
  // DML still shares: the second text is the first one's entry.
  const q = new CachePolicy({ rules: [], ttlMs: 1000, rulesOnly: false });
  t.equal(q.forSql(SHARED[1]![0]), q.forSql(SHARED[1]![1]), 'one entry for both');
});
