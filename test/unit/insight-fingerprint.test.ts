// The query normaliser and fingerprint ids: a table of exact normal forms (pgbench's statements
// as pg_stat_statements shows them, comments, strings, dollar quotes, E'' escapes, minus signs,
// IN lists, quoted identifiers, placeholders mixed with literals), properties that must hold for
// every case (idempotent; keyword case, whitespace and comments do not matter), and FNV-1a 64
// reference vectors. insight-pgss.test.ts checks the pgbench forms against a real server.
import t from 'tap';
import { fingerprintId, normalizeSql, normalizeSqlCounting } from '../../src/insight/fingerprint';

const CASES: Array<[string, string]> = [
  // pgbench's built-in scripts (tpcb-like, simple-update, select-only) as -M simple sends them
  ['BEGIN;', 'begin'],
  ['UPDATE pgbench_accounts SET abalance = abalance + 123 WHERE aid = 456;',
    'update pgbench_accounts set abalance = abalance + $1 where aid = $2'],
  ['UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 99999;',
    'update pgbench_accounts set abalance = abalance + $1 where aid = $2'],
  ['SELECT abalance FROM pgbench_accounts WHERE aid = 456;', 'select abalance from pgbench_accounts where aid = $1'],
  ['UPDATE pgbench_tellers SET tbalance = tbalance + -17 WHERE tid = 3;',
    'update pgbench_tellers set tbalance = tbalance + $1 where tid = $2'],
  ['UPDATE pgbench_branches SET bbalance = bbalance + 5000 WHERE bid = 1;',
    'update pgbench_branches set bbalance = bbalance + $1 where bid = $2'],
  ['INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 456, -5000, CURRENT_TIMESTAMP);',
    'insert into pgbench_history (tid, bid, aid, delta, mtime) values ($1, $2, $3, $4, current_timestamp)'],
  ['END;', 'end'],
  // the same statements as -M extended / prepared send them: already shapes
  ['UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;',
    'update pgbench_accounts set abalance = abalance + $1 where aid = $2'],
  ['INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);',
    'insert into pgbench_history (tid, bid, aid, delta, mtime) values ($1, $2, $3, $4, current_timestamp)'],

  // numbers
  ['select 1.5e-3, .5, 1e10, 0x1F, 1_000, 42::bigint', 'select $1, $2, $3, $4, $5, $6::bigint'],
  ['select a1, t2.b3 from t4', 'select a1, t2.b3 from t4'],
  // minus signs: unary minus before a number is part of it (doNegate), binary minus is not
  ['select -5', 'select $1'],
  ['select a - 5, a -5, a-5 from t', 'select a - $1, a -$2, a-$3 from t'],
  ['select * from t where a = -5 and b = - 6 and c=-7', 'select * from t where a = $1 and b = $2 and c=$3'],
  ['select 2*-3, 5 - -3, 4 + +2', 'select $1*$2, $3 - $4, $5 + +$6'],
  ['select a from t where a between -1 and -2.5 limit -1', 'select a from t where a between $1 and $2 limit $3'],
  ['select -5::int, (-6), array[-7], f(-8), a[1:-2]', 'select -$1::int, ($2), array[$3], f($4), a[$5:$6]'],
  ['select case when a then -1 else -2 end - 3 from t', 'select case when a then $1 else $2 end - $3 from t'],
  ['select a <-> -1 from t', 'select a <-> $1 from t'],
  ['select a @- 1 from t', 'select a @- $1 from t'],
  // strings and escapes (standard_conforming_strings on)
  ["select 'a''b', 'it''s', ''", 'select $1, $2, $3'],
  ["select E'x\\'y', e'\\\\', 'c:\\'", 'select $1, $2, $3'],
  ["select B'101', X'1F', N'abc', b'0', x'ff', n'x'", 'select $1, $2, $3, $4, $5, $6'],
  ["select U&'d\\0061t', U&\"d\\0061t\" from t", 'select $1, U&"d\\0061t" from t'],
  ["select date '2020-01-01', interval '1 day', 'x'::text", 'select date $1, interval $2, $3::text'],
  ["select 'a -- not a comment', '/* nor this */' from t", 'select $1, $2 from t'],
  // dollar quotes
  ['select $$a \'b\' $1 5$$, $q$ $$ $q$, $tag_1$x$tag_1$', 'select $1, $2, $3'],
  ["DO $$BEGIN PERFORM 1; END$$", 'do $1'],
  // comments
  ['/* leading */ SELECT 1 -- trailing', 'select $1'],
  ['select/*x*/a/* nested /* deeper */ still */from t', 'select a from t'],
  ['select a -- one\n, b -- two\nfrom t', 'select a, b from t'],
  // whitespace, case, punctuation
  ['  SELECT  A ,\n\tB  FROM   T  ;  ', 'select a, b from t'],
  ['select ( 1 , 2 ) , f( a ) from t ;;', 'select ($1, $2), f(a) from t'],
  ['SELECT count (*) FROM t', 'select count (*) from t'],
  ['select a=1,b<>2 from t', 'select a=$1,b<>$2 from t'],
  ['select x::Numeric, "Mixed Case"."Col" from "S".T', 'select x::numeric, "Mixed Case"."Col" from "S".t'],
  ['select "a""b", "" from t', 'select "a""b", "" from t'],
  ['SELECT ÄBC FROM Tä', 'select Äbc from tä'],
  ['select én(1, 2), és null, ïn (3) from t', 'select én($1, $2), és $3, ïn ($4) from t'], // not IN / IS
  // IN lists
  ['select * from t where id in (1, 2, 3)', 'select * from t where id in (...)'],
  ['select * from t where id IN (1) and b = 4', 'select * from t where id in (...) and b = $1'],
  ["select * from t where id in ( 'a' , -1, $2, true, null ) and b = 4", 'select * from t where id in (...) and b = $3'],
  ['select * from t where id not in (1,2) or c in ($1)', 'select * from t where id not in (...) or c in (...)'],
  ['select * from t where id in (select 1) and c in (a, 1) and d in ((1), 2) and e in ()',
    'select * from t where id in (select $1) and c in (a, $2) and d in (($3), $4) and e in ()'],
  ['select * from t where (a, b) in ((1, 2), (3, 4))', 'select * from t where (a, b) in (($1, $2), ($3, $4))'],
  ["select * from t where id in (1, 'x'::text)", 'select * from t where id in ($1, $2::text)'],
  // placeholders mixed with literals: literals are numbered after the highest placeholder
  ['select $1, 5, $3', 'select $1, $4, $3'],
  ['select 5, $2, 6 from t where a in (7, 8) and b = $10', 'select $11, $2, $12 from t where a in (...) and b = $10'],
  ['select * from t where a in ($1, $2) and b = 7', 'select * from t where a in (...) and b = $3'],
  ['select $1::int', 'select $1::int'],
  ['select $99999999999999999999, 1', 'select $99999999999999999999, $1000000000'],
  // TRUE / FALSE / NULL: literals, except what IS tests (and NOT NULL)
  ['select true, FALSE, null from t where a = true', 'select $1, $2, $3 from t where a = $4'],
  ['select a is null, b is not null, c is true, d is not false, e is distinct from null, f is not distinct from true from t',
    'select a is null, b is not null, c is true, d is not false, e is distinct from null, f is not distinct from true from t'],
  ['create table t (a int not null default null, b bool default false)', 'create table t (a int not null default $1, b bool default $2)'],
  ['insert into t values (default, null)', 'insert into t values (default, $1)'],
  // type modifiers and ORDER BY / GROUP BY positions are kept (as pg_stat_statements keeps them)
  ["select cast(5 as numeric(10,2)), 'x'::varchar(3), 1::float(24), timestamp(3) '2020-01-01'",
    'select cast($1 as numeric(10,2)), $2::varchar(3), $3::float(24), timestamp(3) $4'],
  ['select x::character varying(20), y::public.vector(3), z::time(6) with time zone from t',
    'select x::character varying(20), y::public.vector(3), z::time(6) with time zone from t'],
  ['select a, count(*) from t group by 1 order by 2 desc, a, 1 limit 10 offset 5',
    'select a, count(*) from t group by 1 order by 2 desc, a, 1 limit $1 offset $2'],
  ['select a from t order by 1 + a, 2', 'select a from t order by $1 + a, 2'],
  // kept numbers are lower-cased too, so that a glued `$1` + `1F` reads back the same
  ["select x::vector(1E3), x::t('a'1F)", 'select x::vector(1e3), x::t($11f)'],
  ['select a, rank() over (order by 1), array_agg(b order by 2) from t order by 1',
    'select a, rank() over (order by $1), array_agg(b order by $2) from t order by 1'],
  ['select * from (select a from t order by 1 limit 3) s order by 1',
    'select * from (select a from t order by 1 limit $1) s order by 1'],
  ['select a from t where b = 1 group by a having count(*) > 2 order by 1',
    'select a from t where b = $1 group by a having count(*) > $2 order by 1'],
  // several statements: one text, numbered across them; trailing ; removed
  ['begin; select 1; select 2; commit;', 'begin; select $1; select $2; commit'],
  ['SET work_mem = \'64MB\'', 'set work_mem = $1'],
  ['select 1 ; select 2', 'select $1; select $2'],
  // empty, odd and unterminated texts: never throw
  ['', ''],
  [';', ''],
  ['  -- only a comment', ''],
  ["select 'unterminated", 'select $1'],
  ['select "unterminated', 'select "unterminated'],
  ['select 1 /* unterminated', 'select $1'],
  ['select $q$ unterminated', 'select $1'],
  ['select $a from t', 'select $a from t'],
  ['select a \\ b {c}', 'select a \\ b {c}'],
];

t.test('cases', async (t) => {
  for (const [sql, want] of CASES) t.equal(normalizeSql(sql), want, JSON.stringify(sql));
});

t.test('a normal form is its own normal form', async (t) => {
  for (const [, want] of CASES) {
    if (want.includes('"unterminated')) continue; // a quote left open swallows whatever follows
    t.equal(normalizeSql(want), want, JSON.stringify(want));
  }
});

/** The same text with keywords upper-cased, extra whitespace and comments, a trailing ';'. */
function variants(sql: string): string[] {
  const upper = sql.replace(/\b(select|from|where|and|or|in|not|is|null|true|false|order|group|by|limit|update|set|insert|into|values)\b/g,
    (w) => w.toUpperCase());
  const spaced = sql.replace(/ /g, '  \n\t ');
  const commented = sql.replace(/ /g, ' /* c */ ');
  const dashed = sql.replace(/ /g, ' -- c\n');
  return [upper, spaced, commented, dashed, `${sql};`, `  ${sql}  ;  `];
}

t.test('keyword case, whitespace, comments and a trailing semicolon do not change the normal form', async (t) => {
  let n = 0;
  for (const [sql, want] of CASES) {
    // Quotes and comments in the text would be split or swallowed by the inserted ones.
    if (/['"$\\/-]/.test(sql.replace(/\$\d+/g, '').replace(/ -\d/g, '').replace(/[-+*]\d/g, ''))) continue;
    for (const v of variants(sql)) {
      t.equal(normalizeSql(v), want, JSON.stringify(v));
      n++;
    }
  }
  t.ok(n > 150, `${n} variants`);
});

t.test('literal counts, and the second pass when placeholders and literals mix', async (t) => {
  t.equal(normalizeSqlCounting('select 1, 2 from t where a in (3, 4)').literals, 2, 'collapsed lists count nothing');
  t.equal(normalizeSqlCounting('select $1 from t').literals, 0);
  t.equal(normalizeSqlCounting('select a from t order by 1').literals, 0, 'a kept position is no literal');
  const r = normalizeSqlCounting('select 7, $3');
  t.same({ ...r }, { text: 'select $4, $3', literals: 1 });
});

t.test('long texts and many literals', async (t) => {
  const ids = Array.from({ length: 20000 }, (_, i) => String(i)).join(', ');
  t.equal(normalizeSql(`select * from t where id in (${ids}) and b = 1`), 'select * from t where id in (...) and b = $1');
  // 20000 literals written as $1 .. $20000: the output outgrows the input.
  const ones = Array.from({ length: 20000 }, () => '1').join(',');
  const got = normalizeSql(`select ${ones}`);
  t.equal(got, 'select ' + Array.from({ length: 20000 }, (_, i) => `$${i + 1}`).join(','));
  const deep = 'select ' + '('.repeat(5000) + '1' + ')'.repeat(5000);
  t.equal(normalizeSql(deep), 'select ' + '('.repeat(5000) + '$1' + ')'.repeat(5000));
  const big = "select '" + 'x'.repeat(3 << 20) + "', A FROM T";
  t.equal(normalizeSql(big), 'select $1, a from t', 'a 3 MiB string');
  t.equal(normalizeSql('SELECT 1'), 'select $1', 'a small text after a big one');
  const wide = 'select \u4e2d\u6587 from "\u{1F600}" where a = 1';
  t.equal(normalizeSql(wide), 'select \u4e2d\u6587 from "\u{1F600}" where a = $1', 'non-latin1 characters survive');
});

t.test('random token soup: never throws, and the normal form is its own normal form', async (t) => {
  const TOK = ['select', 'SELECT', 'from', 't', 'in', 'IN', 'is', 'not', 'null', 'true', 'order', 'by', 'group',
    'numeric', '::', 'int', '(', ')', ',', ';', '-', '+', '*', '=', '<>', '1', '2.5', '-3', "'x'", "E'a\\'b'",
    "'it''s'", '$1', '$2', '$$d$$', '$q$x$q$', '"Q d"', '/* c */', '-- c\n', ' ', '\n', 'a', 'B', '.', '[', ']',
    'as', 'with', 'limit', "'", '"', '$', '/*', 'é', '::varchar', '1E5', '.5', "x'1F'", 'between', 'and', 'desc'];
  let seed = 7;
  const r = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  let bad = 0;
  for (let k = 0; k < 30000; k++) {
    let s = '';
    for (let i = 1 + r(20); i > 0; i--) s += TOK[r(TOK.length)]! + (r(2) === 1 ? ' ' : '');
    const once = normalizeSql(s);
    const twice = normalizeSql(once);
    if (once !== twice && bad++ < 5) t.equal(twice, once, JSON.stringify(s));
  }
  t.equal(bad, 0, '30000 random texts');
});

t.test('fingerprintId: FNV-1a 64, 16 hex chars', async (t) => {
  // Reference vectors of FNV-1a 64 (http://www.isthe.com/chongo/tech/comp/fnv/).
  t.equal(fingerprintId(''), 'cbf29ce484222325');
  t.equal(fingerprintId('a'), 'af63dc4c8601ec8c');
  t.equal(fingerprintId('foobar'), '85944171f73967e8');
  const a = fingerprintId(normalizeSql('SELECT abalance FROM pgbench_accounts WHERE aid = 1'));
  t.equal(a, fingerprintId(normalizeSql('select abalance from pgbench_accounts where aid = 2')), 'same shape, same id');
  t.not(a, fingerprintId(normalizeSql('select bbalance from pgbench_branches where bid = 2')));
  t.match(a, /^[0-9a-f]{16}$/);
  // No collisions among a few thousand distinct shapes.
  const ids = new Set<string>();
  for (let i = 0; i < 5000; i++) ids.add(fingerprintId(`select c${i} from t`));
  t.equal(ids.size, 5000);
});

// Issue 15, security finding 3: a run of `+-` (or any run of operator characters ending in + or
// -) was scanned again from each of its one-character operators, so 28 KB of `+-` stalled every
// session for 7 s and 80 KB for a minute. The normal forms of long runs are checked here; the
// timeout is a guard a thousand times wider than the linear scan needs (80 KB: under 10 ms here),
// which the quadratic one missed by minutes.
t.test('long operator runs: the normal form, in linear time', async (t) => {
  t.setTimeout(10_000);
  const n = 40_000;
  t.equal(normalizeSql('select ' + '+-'.repeat(n) + '1'), 'select ' + '+-'.repeat(n - 1) + '+$1', '+-+-...1: the last minus negates the number');
  t.equal(normalizeSql('select 1 ' + '+-'.repeat(n) + ' a'), 'select $1 ' + '+-'.repeat(n) + ' a', 'a run before a name stays as written');
  t.equal(normalizeSql('select a ' + '=-'.repeat(n) + '~ 1'), 'select a ' + '=-'.repeat(n) + '~ $1', 'a run with ~ is one operator');
  t.equal(normalizeSql('select ' + '- '.repeat(n) + '1'), 'select ' + '- '.repeat(n - 1) + '$1', 'minus signs apart');
  t.equal(normalizeSql('select ' + '*-'.repeat(n) + '1'), 'select ' + '*-'.repeat(n - 1) + '*$1', '*-*-...1');
});
