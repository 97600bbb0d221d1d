// `--` comments end at a carriage return as well as a line feed (PostgreSQL's lexer: newline is
// \n or \r). Issue 14, finding 3: `SELECT 1 --<CR>; DELETE FROM t` hid the DELETE from
// invalidation and `SELECT 1 AS a --<CR>, random()` was cached. The classifier's tokeniser and
// insight's normaliser share the scanner (lineCommentEnd), so they must agree: a comment, wherever
// it ends and whatever ends it, reads as the whitespace that ends it.
import t from 'tap';
import { analyzeSql } from '../../src/sql/classify';
import { lineCommentEnd } from '../../src/sql/lexer';
import { normalizeSql } from '../../src/insight/fingerprint';

/** Texts with {c} where a comment goes: before, between and after every kind of token. */
const PLACES = [
  '{c}select 1',
  'select{c} 1',
  'select 1{c}, random()',
  'select 1 as a{c}, random()',
  'select 1{c}; delete from t',
  'select 1;{c} delete from t',
  'select 1 +{c} 2 from t',
  'select 1 +{c}-2 from t',
  "select 'x'{c}, now() from t",
  "select 'n'{c}'ow'::timestamptz",
  'select "a"{c}, b from t',
  'select $$x$${c}, f() from t',
  'select x::{c}int from t',
  'select ({c}1) from t',
  'select * from t{c} where a = $1{c}',
  'select * from t where a = 1.5{c}for update',
  'select 1 --a{c}; update t set a = 1',
  "select 1 -- it's{c}; delete from t",
  'select 1 -- /* {c}; delete from t',
  'select 1 -- $$ {c}; delete from t',
  'select 1{c}{c}; delete from u',
  'select 1 {c}',
];

const ENDS = ['\r', '\n', '\r\n'];

t.test('a comment reads as the newline that ends it, for the classifier and the normaliser', async (t) => {
  let n = 0;
  for (const place of PLACES) {
    for (const end of ENDS) {
      const withComment = place.split('{c}').join('-- c ; delete from x' + end);
      const without = place.split('{c}').join(end);
      const a = analyzeSql(withComment);
      const b = analyzeSql(without);
      t.strictSame(a.cls, b.cls, JSON.stringify(withComment));
      t.strictSame(a.facts, b.facts, `${JSON.stringify(withComment)}: facts`);
      t.equal(normalizeSql(withComment), normalizeSql(without), `${JSON.stringify(withComment)}: normal form`);
      n++;
    }
  }
  t.equal(n, PLACES.length * ENDS.length);
});

t.test('the shown texts', async (t) => {
  for (const end of ENDS) {
    const del = analyzeSql(`SELECT 1 --${end}; DELETE FROM t`).cls;
    t.equal(del.writes, true, `${JSON.stringify(end)}: the DELETE is seen`);
    t.strictSame(del.tables, ['t']);
    const rnd = analyzeSql(`SELECT 1 AS a --${end}, random()`).cls;
    t.equal(rnd.cacheable, false, `${JSON.stringify(end)}: random() is seen`);
    t.equal(rnd.reason, 'volatile');
    t.equal(normalizeSql(`SELECT 1 --${end}, 2`), 'select $1, $2');
  }
  t.equal(normalizeSql('SELECT 1 -- to the end'), 'select $1');
});

t.test('lineCommentEnd: the first \\r or \\n after the dashes, or the end', async (t) => {
  t.equal(lineCommentEnd('--abc', 0), 5);
  t.equal(lineCommentEnd('x --a\rb', 2), 5);
  t.equal(lineCommentEnd('x --a\nb', 2), 5);
  t.equal(lineCommentEnd('--\r\n', 0), 2);
  t.equal(lineCommentEnd('--', 0), 2);
});
