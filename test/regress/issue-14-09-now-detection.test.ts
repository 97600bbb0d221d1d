// Issue 14, finding 9: the 'now' detection. pgscribe refuses to cache a text whose string literal
// is exactly 'now' (or today, tomorrow, yesterday, up to 16 characters) and a text parameter
// that is exactly one of them (up to 12 bytes, text format). Every other way of handing
// PostgreSQL the input 'now' is cached, and later executions get an old clock reading:
// ('n'||'ow')::timestamptz, E'n\x6fw', adjacent literals, padded values, '[now,)'::tstzrange,
// '{now}'::timestamptz[], a binary-format text parameter.
//
// What PostgreSQL does: the date/time input 'now' (any case, surrounded by any white space,
// however the string was built: an expression, an escape, a literal continued on the next line,
// a range or array element, a value read from a table or bound as a parameter in either format)
// is the transaction's start time, so each execution in its own transaction reads the clock
// anew. Each scenario runs the same text in two sessions, the second a few milliseconds later:
// straight to PostgreSQL the two answers differ, and through pgscribe they must too.
import t from 'tap';
import { issue14Suite, tick, type Answer, type Scenario, type Sess } from '../helpers/safe-cache';
import type { UnitOptions } from '../helpers/cache';

function twice(name: string, send: (s: Sess) => Promise<Answer>, setup: string[] = []): Scenario {
  return {
    name,
    setup,
    async run(x) {
      const one = await send(await x.session());
      await tick();
      const two = await send(await x.session({ via: 1 }));
      return {
        'first execution: rows': String(one.rows.length),
        'the second execution reads the clock again (its answer differs from the first)': String(one.data !== two.data),
      };
    },
  };
}

const simple = (sql: string): Scenario => twice(`simple Query: ${JSON.stringify(sql)}`, (s) => s.q(sql));
const extended = (what: string, u: UnitOptions): Scenario => twice(`Parse/Bind/Execute: ${what}`, (s) => s.ext(u));

const scenarios: Scenario[] = [
  simple("SELECT ('n'||'ow')::timestamptz"),
  simple("SELECT concat('n', 'ow')::timestamptz"),
  simple("SELECT reverse('won')::timestamptz"),
  simple("SELECT E'n\\x6fw'::timestamptz"),
  simple("SELECT E'\\156ow'::timestamptz"),
  simple("SELECT 'n'\n'ow'::timestamptz"),
  simple(`SELECT '${'now'.padEnd(20)}'::timestamptz`),
  simple(`SELECT '${' \t now \t '.padEnd(18)}'::timestamptz`),
  simple("SELECT '[now,)'::tstzrange"),
  simple("SELECT '{now}'::timestamptz[]"),
  simple(`SELECT ('{"t": "now"}'::jsonb ->> 't')::timestamptz`),
  twice('a value read from a table: `SELECT s::timestamptz FROM words9`', (s) => s.q('SELECT s::timestamptz FROM words9'), [
    'DROP TABLE IF EXISTS words9',
    'CREATE TABLE words9 (s text)',
    "INSERT INTO words9 VALUES ('now')",
    'GRANT SELECT ON words9 TO PUBLIC',
  ]),
  extended("'now' padded to 15 bytes as a text-format parameter of $1::timestamptz", { sql: 'SELECT $1::timestamptz', params: ['now'.padEnd(15)] }),
  extended("'now' as a binary-format parameter of type text, cast to timestamptz", { sql: 'SELECT $1::text::timestamptz', params: [Buffer.from('now')], paramFormats: [1] }),
];

issue14Suite(t, { scenarios });
