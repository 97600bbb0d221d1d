// The SQL classifier of the cache layer: table-driven cases with exact answers, plus properties
// that must hold for every case (trailing ';', leading comments, keyword case).
import t from 'tap';
import { classifySql, type SqlClass, type SqlReason, type TxControl } from '../../src/sql/classify';
import { SAFE_FUNCTIONS, UNCACHEABLE_FUNCTIONS, UNCACHEABLE_FUNCTION_PREFIXES, isUncacheableFunction } from '../../src/sql/functions';
import { shapeOf } from '../../src/sql/shape';

/** A cacheable read of these tables. */
const R = (...tables: string[]): SqlClass =>
  ({ cacheable: true, reason: null, taintsSession: false, tables, writes: false, txControl: null });
/** Not cacheable, not a write. */
const N = (reason: SqlReason, tables: string[] | null, taintsSession = false): SqlClass =>
  ({ cacheable: false, reason, taintsSession, tables, writes: false, txControl: null });
/** A write (reason 'write' unless given). */
const W = (tables: string[] | null, reason: SqlReason = 'write', taintsSession = false): SqlClass =>
  ({ cacheable: false, reason, taintsSession, tables, writes: true, txControl: null });
/** Transaction control. */
const TX = (txControl: TxControl): SqlClass =>
  ({ cacheable: false, reason: 'transaction-control', taintsSession: false, tables: [], writes: false, txControl });
/** Session state. */
const S = (taintsSession: boolean): SqlClass => N('session-state', [], taintsSession);
/** SET and RESET: not a taint; the cache asks the session for its settings again. */
const SET: SqlClass = { ...S(false), changesSettings: true };
/** A volatile read that may write (unknown function): tables null. */
const MAYWRITE = W(null, 'volatile');
const UNKNOWN = W(null, 'unknown', true);
const TEMP = (tables: string[] | null): SqlClass => W(tables, 'temp-table', true);

const CASES: Array<[string, SqlClass]> = [
  // pgbench (tpcb-like, select-only)
  ['SELECT abalance FROM pgbench_accounts WHERE aid = $1;', R('pgbench_accounts')],
  ['UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;', W(['pgbench_accounts'])],
  ['UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;', W(['pgbench_tellers'])],
  ['UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;', W(['pgbench_branches'])],
  ['INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);', W(['pgbench_history'])],
  ['BEGIN;', TX('begin')],
  ['END;', TX('commit')],
  ['SELECT abalance FROM pgbench_accounts WHERE aid = 42', R('pgbench_accounts')],
  // sysbench oltp
  ['SELECT c FROM sbtest1 WHERE id=$1', R('sbtest1')],
  ['SELECT c FROM sbtest2 WHERE id BETWEEN $1 AND $2', R('sbtest2')],
  ['SELECT SUM(k) FROM sbtest3 WHERE id BETWEEN $1 AND $2', R('sbtest3')],
  ['SELECT c FROM sbtest1 WHERE id BETWEEN $1 AND $2 ORDER BY c', R('sbtest1')],
  ['SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN $1 AND $2 ORDER BY c', R('sbtest1')],
  ['UPDATE sbtest1 SET k=k+1 WHERE id=$1', W(['sbtest1'])],
  ['UPDATE sbtest1 SET c=$1 WHERE id=$2', W(['sbtest1'])],
  ['DELETE FROM sbtest1 WHERE id=$1', W(['sbtest1'])],
  ['INSERT INTO sbtest1 (id, k, c, pad) VALUES ($1, $2, $3, $4)', W(['sbtest1'])],

  // plain reads
  ['select 1', R()],
  ["values (1, 'a'), (2, 'b')", R()],
  ['TABLE t', R('t')],
  ['table only public.t', R('public.t')],
  ['(select a from t) union (select a from u)', R('t', 'u')],
  ['select * from t *', R('t')],
  ['select * from only t where a = 1', R('t')],
  ['SELECT * FROM Public.Accounts', R('public.accounts')],
  ['select * from "Accounts"', R('"Accounts"')],
  ['select * from "accounts"', R('accounts')],
  ['select * from "my schema"."My.Table" x', R('"my schema"."My.Table"')],
  ['select * from public."a.b" as q', R('public."a.b"')],
  ['select * from "a""b"', R('"a""b"')],
  ['select a$b from t', R('t')],
  ['select * from t where x = $1 and y = $2', R('t')],
  ['select * from t where ts > $1::timestamptz', R('t')],
  ['select a, count(*) from t group by a having count(*) > 1', R('t')],
  ['select * from t order by a limit 10 offset 5', R('t')],
  ['select * from t fetch first 5 rows only', R('t')],
  ['select row_number() over w from t window w as (order by a)', R('t')],
  ['select count(*) filter (where x > 0), sum(y) over (partition by z order by w) from t', R('t')],
  ["select percentile_cont(0.5) within group (order by a), string_agg(a, ',' order by a) from t", R('t')],
  ['select x::int, cast(y as numeric(10, 2)), z::character varying(5), \'1\'::pg_catalog.int4 from t', R('t')],
  ["select case when a in (1, 2) then 'x' else 'y' end from t where b = any($1) and c = all(array[1, 2])", R('t')],
  ['select extract(epoch from ts), substring(s from 2 for 3), trim(both \'x\' from s) from t', R('t')],
  ['select * from t where a is distinct from b', R('t')],
  ['select * from t where a is not distinct from b', R('t')],
  ['select coalesce(a, b), lower(c), upper(d), length(e), abs(f), round(g, 2) from t', R('t')],
  ['select pg_catalog.lower(name) from t', R('t')],
  ['select version()', R()],
  ['select current_user, session_user, current_database()', R()],
  ["select x from t where s like 'a%' escape '!'", R('t')],
  ["select b'101', x'ff', n'abc' from t", R('t')],
  ['select array(select id from t)', R('t')],
  ['select exists (select 1 from t where id = $1)', R('t')],

  // joins, FROM lists, subqueries
  ['select a.x, b.y from t1 a join t2 b on a.id = b.id', R('t1', 't2')],
  ['select * from t1 as a left outer join public.t2 as b using (id) natural join t3 cross join t4', R('t1', 'public.t2', 't3', 't4')],
  ['select * from a join b on a.x = b.x, c', R('a', 'b', 'c')],
  ['select * from a, (b join c on b.id = c.id) left join d on true', R('a', 'b', 'c', 'd')],
  ['select * from ((a join b on a.id = b.id) join c on true)', R('a', 'b', 'c')],
  ['select * from a full join b on a.id = b.id and left(a.s, 1) = b.s right join c on true', R('a', 'b', 'c')],
  ['select s.n from (select count(*) as n from t) s', R('t')],
  ['select * from t where id in (select tid from u where u.x = any (select x from v))', R('t', 'u', 'v')],
  ['select * from t, lateral (select * from u where u.t_id = t.id limit 1) x', R('t', 'u')],
  ['select g.i from generate_series(1, 10) as g(i)', R()],
  ['select * from generate_series(1, 3) g(i) join t on t.id = g.i', R('t')],
  ['select * from unnest(array[1, 2]) with ordinality as u(x, n)', R()],
  ['select * from rows from (generate_series(1, 2), unnest(array[1, 2])) as x(a, b)', R()],
  ['select * from t where x = (select max(x) from u) order by (select 1 from v limit 1)', R('t', 'u', 'v')],
  ['select * from t tablesample system (10)', N('volatile', ['t'])],
  ['select * from a, b c, d as e(x, y)', R('a', 'b', 'd')],
  ['select * from t where x in (table u)', R('t', 'u')],
  ['select a from t union all table u except table v', R('t', 'u', 'v')],
  ['with x as (table u) table x', R('u', 'x')],
  ['select * from t left join lateral my_fn(t.id) x on true', MAYWRITE],
  ['select 1 from t group by rollup(a, b), cube(c), grouping sets ((a), ())', R('t')],
  ['select *, (select count(*) from u where u.t = t.id) from t', R('u', 't')],
  ['select * from (values (1), (2)) v(a) join t on t.id = v.a', R('t')],
  ['SELECT 1 FROM t1 INNER JOIN t2 ON t1.a=t2.a LEFT JOIN t3 USING (b) WHERE 1=1', R('t1', 't2', 't3')],
  ['with x as (select 1) (select * from x)', W(null, 'unknown')],

  // CTEs
  ['with x as (select * from t) select * from x', R('t', 'x')],
  ['with recursive r(n) as (select 1 union all select n + 1 from r where n < 10) select * from r', R('r')],
  ['with x as materialized (select 1), y(a) as not materialized (select 2) select * from x, y', R('x', 'y')],
  ['with d as (delete from t where id = $1 returning *) select * from d', W(['t'])],
  ['with i as (insert into log (a) values (1) returning id) select id from i', W(['log'])],
  ['with u as (update t set a = 1 returning *) insert into audit select * from u', W(['t', 'audit'])],
  ['with x as (select 1) update t set a = 1 from x', W(['t'])],
  ['WITH m AS (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE) SELECT 1', W(['t'])],

  // SELECT INTO
  ['select * into new_t from t', W(['new_t'])],
  ['select * into table public.new_t from t', W(['public.new_t'])],
  ['select * into temp tmp from t', TEMP(['tmp'])],
  ["select 'into' from t", R('t')],

  // locking
  ['select * from t where id = $1 for update', N('locking', ['t'])],
  ['SELECT * FROM t FOR NO KEY UPDATE', N('locking', ['t'])],
  ['select * from t for share', N('locking', ['t'])],
  ['select * from t for key share nowait', N('locking', ['t'])],
  ['select * from t for update of t skip locked', N('locking', ['t'])],
  ['select * from (select * from t for update) s', N('locking', ['t'])],
  ["select * from t where note = 'for update'", R('t')],

  // volatile functions and keywords
  ['select now()', N('volatile', [])],
  ['SELECT NOW()', N('volatile', [])],
  ['select pg_catalog.now()', N('volatile', [])],
  ['select CURRENT_TIMESTAMP', N('volatile', [])],
  ['select current_date', N('volatile', [])],
  ['select localtimestamp(3), localtime', N('volatile', [])],
  ['select current_time', N('volatile', [])],
  ['select random()', N('volatile', [])],
  ['select gen_random_uuid()', N('volatile', [])],
  ['select clock_timestamp(), statement_timestamp(), timeofday()', N('volatile', [])],
  ["select * from t where created > now() - interval '1 day'", N('volatile', ['t'])],
  ["select 'now'::timestamptz", N('volatile', [])],
  ["select date 'today', 'Tomorrow '::date", N('volatile', [])],
  ['select pg_sleep(1)', N('volatile', [])],
  ['select pg_try_advisory_lock(1)', N('volatile', [])],
  ['select pg_advisory_unlock_all()', N('volatile', [])],
  ['select txid_current()', N('volatile', [])],
  ['select uuid_generate_v4()', N('volatile', [])],
  ['select pg_backend_pid(), inet_client_addr()', N('volatile', [])],
  ["select current_setting('work_mem')", N('volatile', [])],
  ['select * from t where id = (select max(id) from u where ts < now())', N('volatile', ['t', 'u'])],
  ['select random() from t for update', N('locking', ['t'])],

  // functions with side effects, user-defined functions
  ["select nextval('orders_id_seq')", W(['orders_id_seq'], 'volatile')],
  ["select setval('Public.S', 10)", W(['public.s'], 'volatile')],
  ["select nextval('s'::regclass)", W(['s'], 'volatile')],
  ['select nextval($1)', MAYWRITE],
  ["select set_config('search_path', 'x', false)", N('volatile', [], true)],
  ['select lo_unlink(42)', MAYWRITE],
  ['select my_func($1)', MAYWRITE],
  ['select * from my_srf(1)', MAYWRITE],
  ['select public.lower(x) from t', MAYWRITE],
  ['select "lower"(x) from t', MAYWRITE],
  ['select * from t where f(t.x)', MAYWRITE],
  ['insert into t (a) values (my_func())', W(null)],
  ["insert into t (a) values (nextval('t_seq'))", W(['t', 't_seq'])],
  ['delete from t where id in (select f(x) from u)', W(null)],
  ['update t set ts = now()', W(['t'])],

  // tricky tokenisation
  ["select 'a;b' from t", R('t')],
  ["select 'x'';delete from t;' from u", R('u')],
  ['select 1 -- ; delete from t', R()],
  ['/* nested /* */ still comment */ select 1', R()],
  ['select $$ ; random() for update $$ from t', R('t')],
  ["select $tag$ it's $$ ; $tag$ from t", R('t')],
  ["select E'\\'; delete from t; --' from u", R('u')],
  ["select e'\\\\', 'a\\' from t", R('t')],
  ['select \'it\'\'s\' as "a;b" from t', R('t')],
  ["select * from t where x = 'random()'", R('t')],
  ['select /* now() */ 1', R()],
  ['select 1 /* unterminated', UNKNOWN],
  ["select 'unterminated", UNKNOWN],
  ['select "unterminated', UNKNOWN],
  ['select $q$ unterminated', UNKNOWN],
  ["select U&'\\0041'", UNKNOWN],
  ['select (1', UNKNOWN],
  ['select 1.5e-3, .5, 1_000 from t', R('t')],

  // empty
  ['', N('empty', [])],
  [';', N('empty', [])],
  ['-- just a comment', N('empty', [])],
  ['  ;  ; ', N('empty', [])],

  // several statements
  ['select 1; select 2', N('multi-statement', [])],
  ['select * from a; select * from b', N('multi-statement', ['a', 'b'])],
  ['select 1; delete from t where id = 1', W(['t'], 'multi-statement')],
  ['begin; update t set a = 1; commit;', W(['t'], 'multi-statement')],
  ['set x = 1; select 1', { ...N('multi-statement', [], false), changesSettings: true }],
  ['select 1; call p()', W(null, 'multi-statement')],
  ['create procedure p() begin atomic insert into t values (1); end', W(null, 'multi-statement')],

  // transaction control
  ['BEGIN', TX('begin')],
  ['begin transaction isolation level serializable', TX('begin')],
  ['START TRANSACTION READ ONLY', TX('begin')],
  ['COMMIT', TX('commit')],
  ['commit and chain', TX('commit')],
  ['END TRANSACTION', TX('commit')],
  ['ROLLBACK', TX('rollback')],
  ['abort', TX('rollback')],
  ['rollback work', TX('rollback')],
  ['SAVEPOINT sp1', TX('savepoint')],
  ['release savepoint sp1', TX('release')],
  ['RELEASE sp1', TX('release')],
  ['ROLLBACK TO SAVEPOINT sp1', TX('rollback-to')],
  ['rollback transaction to sp1', TX('rollback-to')],
  ["PREPARE TRANSACTION 'x'", TX('prepare-transaction')],
  ["COMMIT PREPARED 'x'", { ...W(null, 'transaction-control'), txControl: 'commit-prepared' }],
  ["ROLLBACK PREPARED 'x'", TX('rollback-prepared')],

  // session state
  ['SET search_path = x', SET],
  ['set statement_timeout to 0', SET],
  ["SET SESSION timezone = 'UTC'", SET],
  ['SET ROLE app', SET],
  ['SET SESSION AUTHORIZATION bob', SET],
  ['set session characteristics as transaction read only', SET],
  ["SET LOCAL work_mem = '1MB'", S(false)],
  ['set transaction isolation level read committed', S(false)],
  ['SET CONSTRAINTS ALL DEFERRED', S(false)],
  ['RESET ALL', SET],
  // custom settings: pg_settings does not list them, so the probe is told their names
  ["SET app.tenant = '3'", { ...SET, customSettings: ['app.tenant'] }],
  ['set session App.Tenant to 3', { ...SET, customSettings: ['app.tenant'] }],
  ['RESET app.tenant', { ...SET, customSettings: ['app.tenant'] }],
  ['SET "app.tenant" = 3', S(true)],
  ['SET app."Tenant" = 3', S(true)],
  ["SET LOCAL app.tenant = '3'", S(false)],
  ["set app.tenant = 1; set search_path = a; select 1", { ...N('multi-statement', [], false), changesSettings: true, customSettings: ['app.tenant'] }],
  ['reset role', SET],
  ['DISCARD ALL', S(true)],
  ['LISTEN chan', S(true)],
  ['UNLISTEN *', S(false)],
  ["LOAD 'auto_explain'", S(true)],
  ['PREPARE p(int) AS SELECT * FROM t WHERE id = $1', S(false)],
  ['prepare p as select * into temp x from t', S(true)],
  ['EXECUTE p(1)', { ...W(null, 'unknown'), taintsSession: false }],
  ['DEALLOCATE p', N('deallocate', [])],
  ['deallocate all', N('deallocate', [])],

  // temporary tables
  ['CREATE TEMP TABLE tmp (id int)', TEMP(['tmp'])],
  ['create temporary table tmp as select 1', TEMP(['tmp'])],
  ['CREATE LOCAL TEMPORARY TABLE IF NOT EXISTS tmp (a int)', TEMP(['tmp'])],
  ['create global temp table tmp (a int)', TEMP(['tmp'])],
  ['create table pg_temp.tmp (a int)', TEMP(['pg_temp.tmp'])],
  ['create temp view v as select 1', TEMP(['v'])],
  ['create temp sequence s', TEMP(['s'])],
  ['select * from pg_temp.t', N('temp-table', ['pg_temp.t'])],
  ['select * from t join pg_temp_3.u on true', N('temp-table', ['t', 'pg_temp_3.u'])],

  // system catalogs: live or per-session state, never cached
  ['select * from pg_stat_activity', N('catalog', ['pg_stat_activity'])],
  ['select name from pg_catalog.pg_prepared_statements', N('catalog', ['pg_catalog.pg_prepared_statements'])],
  ['select relname from pg_class c join t on true', N('catalog', ['pg_class', 't'])],
  ['select * from information_schema.tables', N('catalog', ['information_schema.tables'])],

  // DDL: every statement a write of the whole database (issue 14, finding 10: a DDL naming one
  // table changes what other names mean, e.g. ALTER TABLE s.x RENAME TO t)
  ['alter table s.x rename to t', W(null, 'ddl')],
  ['CREATE TABLE t (id int primary key, ts timestamptz default now())', W(null, 'ddl')],
  ['create table if not exists public.t (a int)', W(null, 'ddl')],
  ['create unlogged table t (a int)', W(null, 'ddl')],
  ['CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)', W(null, 'ddl')],
  ['create index on only public.t using btree (lower(a))', W(null, 'ddl')],
  ['ALTER TABLE t ADD COLUMN b int', W(null, 'ddl')],
  ['alter table if exists only "T" rename to u', W(null, 'ddl')],
  ['alter table all in tablespace a set tablespace b', W(null, 'ddl')],
  ['DROP TABLE a, b', W(null, 'ddl')],
  ['drop table if exists a cascade', W(null, 'ddl')],
  ['drop view v', W(null, 'ddl')],
  ['create view v as select * from t', W(null, 'ddl')],
  ['create or replace function f() returns int language sql as $$ select 1; $$', W(null, 'ddl')],
  ['GRANT SELECT ON t TO bob', W(null, 'ddl')],
  ['revoke all on t from bob', W(null, 'ddl')],
  ["comment on table t is 'x'", W(null, 'ddl')],
  ['ALTER ROLE bob SET search_path = x', W(null, 'ddl')],
  ['create policy p on t using (true)', W(null, 'ddl')],
  ['refresh materialized view concurrently mv', W(['mv'])],

  // other writes
  ['TRUNCATE t', W(['t'])],
  ['truncate table only a, b * restart identity', W(['a', 'b'])],
  ['truncate a cascade', W(null)],
  ['COPY t FROM STDIN', W(['t'])],
  ["copy public.t (a, b) from '/tmp/x' with (format csv)", W(['public.t'])],
  ['COPY t TO STDOUT', N('utility', ['t'])],
  ['copy (select * from t) to stdout', N('utility', ['t'])],
  ['copy (delete from t returning *) to stdout', W(['t'])],
  ['CALL p(1)', W(null)],
  ['DO $$ begin perform 1; end $$', W(null)],
  ['MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a WHEN NOT MATCHED THEN INSERT (id, a) VALUES (s.id, s.a)', W(['t'])],
  ['update only t set a = 1 from u where u.id = t.id', W(['t'])],
  ['delete from t using u where u.id = t.id', W(['t'])],
  ['insert into t as x (a) values (1) on conflict (a) do update set a = excluded.a + 1', W(['t'])],
  ['insert into t select * from u', W(['t'])],
  ['update "T" set a = 1', W(['"T"'])],

  // EXPLAIN
  ['EXPLAIN SELECT * FROM t', N('utility', ['t'])],
  ['explain analyze select * from t', N('utility', ['t'])],
  ['EXPLAIN ANALYZE UPDATE t SET a = 1', W(['t'])],
  ['explain (analyze, buffers) delete from t', W(['t'])],
  ['explain (analyze false) delete from t', N('utility', ['t'])],
  ['explain (format json) insert into t values (1)', N('utility', ['t'])],
  ['explain verbose select 1', N('utility', [])],

  // utility
  ['SHOW search_path', N('utility', [])],
  ['VACUUM ANALYZE t', N('utility', [])],
  ['analyze t', N('utility', [])],
  ['checkpoint', N('utility', [])],
  ["NOTIFY chan, 'x'", N('utility', [])],
  ['DECLARE c CURSOR FOR SELECT * FROM t', N('utility', ['t'])],
  ['FETCH 10 FROM c', N('utility', [])],
  ['close c', N('utility', [])],
  ['LOCK TABLE t IN ACCESS EXCLUSIVE MODE', N('locking', ['t'])],
  ['lock a, only b', N('locking', ['a', 'b'])],

  // not recognised
  ['frobnicate the database', UNKNOWN],
  ['(insert into t values (1))', UNKNOWN],
];

t.test('cases', async (t) => {
  t.ok(CASES.length >= 120, `${CASES.length} cases`);
  for (const [sql, want] of CASES) t.strictSame(classifySql(sql), want, sql);
});

t.test('numbers do not change the answer: the policy memo classifies shapeOf(text) once for all', async (t) => {
  let changed = 0;
  for (const [sql, want] of CASES) {
    const shape = shapeOf(sql);
    if (shape !== sql) changed++;
    const got = classifySql(shape);
    // EXPLAIN (ANALYZE 0) of a write becomes ANALYZE 1: a write, the safe side.
    if (/analyze 0/i.test(sql) && want.reason === 'utility') t.equal(got.writes || !want.writes, true, `${sql}: at worst a write`);
    else t.strictSame(got, want, `${JSON.stringify(sql)} as ${JSON.stringify(shape)}`);
  }
  t.ok(changed >= 10, `${changed} cases had numbers to replace`);
  t.equal(shapeOf("SELECT 'x1', \"y2\" FROM t3 WHERE a = 42 AND b = 1.5e-3 LIMIT 10"), "SELECT 'x1', \"y2\" FROM t3 WHERE a = 1 AND b = 1 LIMIT 1");
  t.equal(shapeOf('SELECT $1, 7 FROM t -- 8'), 'SELECT $1, 7 FROM t -- 8', 'a comment: left alone');
  t.equal(shapeOf("SELECT E'\\'' || 5"), "SELECT E'\\'' || 5", 'a backslash: left alone');
  t.equal(shapeOf('SELECT $$5$$, 6'), 'SELECT $$5$$, 6', 'a dollar quote: left alone');
  t.equal(shapeOf("SELECT nextval('seq1'), 2"), "SELECT nextval('seq1'), 1", 'names in strings stay');
});

/** Variants that must not change the answer. */
function variants(sql: string): string[] {
  const out = [sql + ';', sql + ' ;\n\t ', '/* comment; now() */ ' + sql, '-- comment\n' + sql, '\n  ' + sql + '\n'];
  if (!sql.includes('"')) out.push(sql.toUpperCase(), sql.toLowerCase()); // quoted names keep their case
  return out;
}

t.test('trailing semicolon, leading comment and keyword case do not matter', async (t) => {
  let n = 0;
  for (const [sql, want] of CASES) {
    // An unterminated comment or string swallows what is appended: still unknown, but skip.
    if (want.reason === 'unknown' && sql.startsWith('select')) continue;
    for (const v of variants(sql)) {
      const got = classifySql(v);
      if (!t.strictSame(got, want, JSON.stringify(v))) t.comment(got);
      n++;
    }
  }
  t.ok(n > 800, `${n} variants`);
});

t.test('the function lists', async (t) => {
  for (const f of SAFE_FUNCTIONS) {
    t.notOk(isUncacheableFunction(f), `${f} is not both safe and uncacheable`);
    t.strictSame(classifySql(`select ${f}(x) from t`), R('t'), `${f}() is cacheable`);
  }
  for (const f of UNCACHEABLE_FUNCTIONS) {
    t.ok(isUncacheableFunction(f));
    const c = classifySql(`select ${f}(1) from t`);
    t.equal(c.cacheable, false, `${f}() is not cacheable`);
    t.equal(c.reason, 'volatile', f);
    const q = classifySql(`SELECT PG_CATALOG.${f.toUpperCase()}(1)`);
    t.equal(q.cacheable, false, `pg_catalog.${f}() is not cacheable`);
  }
  for (const p of UNCACHEABLE_FUNCTION_PREFIXES) {
    t.ok(isUncacheableFunction(p + 'anything'), p);
    t.equal(classifySql(`select ${p}anything()`).cacheable, false, p);
  }
  t.notOk(isUncacheableFunction('lower'));
});

t.test('standard_conforming_strings off: backslash escapes in plain strings', async (t) => {
  const sql = "select 'a\\'; delete from t; --' from u";
  t.strictSame(classifySql(sql, { standardConformingStrings: false }), R('u'));
  // With the default (on), the backslash is a plain character and the text holds two statements.
  t.equal(classifySql(sql).reason, 'multi-statement');
  t.equal(classifySql(sql).writes, true);
});

t.test('results are fresh objects', async (t) => {
  const a = classifySql('select * from t');
  a.tables!.push('x');
  t.strictSame(classifySql('select * from t').tables, ['t']);
});

t.test('long and deeply nested texts', async (t) => {
  const ids = Array.from({ length: 20000 }, (_, i) => String(i)).join(', ');
  t.strictSame(classifySql(`select * from t where id in (${ids})`), R('t'));
  const deep = 'select ' + '('.repeat(5000) + '1' + ')'.repeat(5000) + ' from t';
  t.strictSame(classifySql(deep), R('t'));
  const many = Array.from({ length: 2000 }, (_, i) => `select * from t${i}`).join('; ');
  const c = classifySql(many);
  t.equal(c.reason, 'multi-statement');
  t.equal(c.tables!.length, 2000);
  const str = "select '" + 'x'.repeat(1 << 20) + "' from t";
  t.strictSame(classifySql(str), R('t'));
});

// Issue 15, security finding 8: a 1 MiB quoted name was kept whole in the digests and the table
// heat (120 such queries: 516 MB of RSS, a 126 MB GET /tables). PostgreSQL's scanner keeps 63
// bytes of any identifier (NAMEDATALEN - 1), cut at a character boundary; so does the lexer now.
t.test('identifiers are cut to 63 bytes, as PostgreSQL cuts them', async (t) => {
  const a63 = 'a'.repeat(63);
  t.same(classifySql(`select * from "${'a'.repeat(1 << 20)}"`).tables, [a63], 'a quoted name of 1 MiB');
  t.same(classifySql(`select * from ${'b'.repeat(200)}`).tables, ['b'.repeat(63)], 'an unquoted name');
  t.same(classifySql(`select * from s${'s'.repeat(99)}.${'T'.repeat(99)}`).tables, [`${'s'.repeat(63)}.${'t'.repeat(63)}`], 'each part of a qualified name');
  // é is 2 bytes: 31 of them are 62 bytes, a 32nd would make 64.
  t.same(classifySql(`select * from "${'é'.repeat(40)}"`).tables, [`"${'é'.repeat(31)}"`], 'a multi-byte name, cut at a character boundary');
  // 𝔸 is 4 bytes (a surrogate pair): 15 of them are 60 bytes.
  t.same(classifySql(`select * from "${'𝔸'.repeat(20)}"`).tables, [`"${'𝔸'.repeat(15)}"`], 'never half a surrogate pair');
  t.same(classifySql(`select * from "${'a'.repeat(63)}"`).tables, [a63], 'exactly 63 bytes: kept');
});
