// Date/time inputs resolved at execution ('now', 'today', 'tomorrow', 'yesterday') wherever
// PostgreSQL could read them as a date/time (issue 14, finding 9): inside any string literal
// (ranges, arrays, composites, escapes, continued literals, padding, any case), in a cast to a
// date/time type of anything but a plain literal or parameter, and in parameter values of either
// format.
import t from 'tap';
import { analyzeSql } from '../../src/sql/classify';
import { decodeEscapes, hasClockWord } from '../../src/sql/clock-words';
import { isVolatileInput } from '../../src/sql/volatile-input';

const VOLATILE = [
  "select 'now'::timestamptz",
  "select ('n'||'ow')::timestamptz",
  "select ('n' || 'ow')::pg_catalog.timestamptz",
  "select E'n\\x6fw'::timestamptz",
  "select E'\\156ow'::timestamptz",
  "select e'n\\u006Fw'::date",
  "select 'no''w'::text, 'n'\n'ow'::timestamptz",
  "select 'n' -- c\r'ow'::timestamptz",
  "select ' now '::timestamptz",
  "select '  NoW'::timestamptz",
  "select 'TODAY'::date",
  "select '[now,)'::tstzrange",
  "select '{now}'::timestamptz[]",
  "select '{\"tomorrow\"}'::date[]",
  "select '(now,1)'::my_row",
  "select 'today 10:00'::timestamp",
  "select $$yesterday$$::date",
  "select date 'today'",
  "select timestamptz 'now'",
  'select x::date from t',
  'select x::timestamp with time zone from t',
  'select x::time without time zone from t',
  'select cast(x as timestamptz) from t',
  'select cast(x as time with time zone) from t',
  "select cast('a' || 'b' as date)",
  "select 'x'::text::date",
  'select $1::text::timestamptz',
  'select f(x)::date from t',
  'select a[1]::date from t',
  'select date(x) from t',
  'select pg_catalog.timestamptz(x) from t',
  'select x::tstzrange from t',
  'select x::daterange[] from t',
];

const CACHEABLE = [
  "select 'snow', 'nowhere', 'known', 'twonow3x'::text from t",
  "select '2020-01-01'::date, '2020-01-01 10:00'::timestamptz",
  'select $1::timestamptz, $2::date',
  'select cast($1 as date), cast(null as timestamptz), null::date',
  "select ('2020-01-01')::date",
  "select date '2020-01-01', timestamp '2020-01-01 00:00'",
  "select x::text, y::int, z::interval from t",
  "select date('2020-01-01')",
];

t.test('volatile: a clock word in a literal, a cast of an expression to a date/time type', async (t) => {
  for (const sql of VOLATILE) {
    const a = analyzeSql(sql);
    t.equal(a.cls.cacheable, false, JSON.stringify(sql));
    t.equal(a.facts.readBlocker, 'volatile', `${JSON.stringify(sql)}: whatever the catalog says`);
  }
});

t.test('not volatile: no clock word, or a plain literal or parameter cast', async (t) => {
  for (const sql of CACHEABLE) {
    const a = analyzeSql(sql);
    t.equal(a.facts.readBlocker, null, JSON.stringify(sql));
  }
});

t.test('hasClockWord: a maximal run of ASCII letters, any case', async (t) => {
  for (const s of ['now', 'NOW', ' now ', '[now,)', '{now}', '(now,1)', 'today 10:00', '1now', 'now1', 'x,Tomorrow', '"yesterday"']) {
    t.equal(hasClockWord(s), true, s);
  }
  for (const s of ['', 'no', 'snow', 'nowhere', 'known', 'todays', 'n o w', 'nowx']) t.equal(hasClockWord(s), false, s);
  t.equal(decodeEscapes('n\\x6fw'), 'now');
  t.equal(decodeEscapes('\\156\\157\\167'), 'now');
  t.equal(decodeEscapes('\\u006eow'), 'now');
  t.equal(decodeEscapes('\\U0000006eow'), 'now');
  t.equal(decodeEscapes("a''b\\'c\\\\"), "a'b'c\\");
});

t.test('isVolatileInput: parameter values in text and binary format', async (t) => {
  const yes = ['now', ' Now ', 'TODAY', '[now,)', '{today}', 'yesterday', '(1,tomorrow)'];
  for (const v of yes) t.equal(isVolatileInput(Buffer.from(v), 0, v.length), true, v);
  // A binary text[]: header, then each element's length and bytes.
  const arr = Buffer.concat([Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 25, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 3]), Buffer.from('now')]);
  t.equal(isVolatileInput(arr, 0, arr.length), true, 'a binary text[] holding now');
  const within = Buffer.from('xx now yy');
  t.equal(isVolatileInput(within, 3, 6), true, 'the range only');
  t.equal(isVolatileInput(within, 0, 2), false);
  for (const v of ['', 'no', '123', 'nowhere', 'snow', 'tomorrows']) t.equal(isVolatileInput(Buffer.from(v), 0, v.length), false, v);
  t.equal(isVolatileInput(Buffer.from([0, 0, 0, 0, 0, 0, 0, 42]), 0, 8), false, 'a binary int8');
});
