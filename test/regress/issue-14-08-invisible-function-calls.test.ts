// Issue 14, finding 8: functions called without a call in the text. Attribute notation
// `SELECT x.f FROM t x` calls f(t); a user-defined operator calls its function; a cast to a
// domain evaluates its CHECK, which may call a function that writes. The classifier sees no call,
// caches the answer, and later executions neither run the function nor see its effect.
//
// What PostgreSQL does: every execution calls the function: a volatile one gives a new value each
// time, one with side effects has them each time. The class covered here: attribute notation
// with a volatile function and with one that writes, an operator backed by random(), a domain
// CHECK that inserts into an audit table (and a cached count of that table), a user-defined cast,
// and a view that hides random().
import t from 'tap';
import { issue14Suite, type Scenario } from '../helpers/safe-cache';

const SETUP = [
  'DROP TABLE IF EXISTS t8, ctr8, audit8 CASCADE',
  'DROP DOMAIN IF EXISTS checked8',
  'DROP TYPE IF EXISTS pair8 CASCADE',
  'DROP VIEW IF EXISTS rv8',
  'CREATE TABLE t8 (id int)',
  'INSERT INTO t8 VALUES (1)',
  'CREATE TABLE ctr8 (n int)',
  'INSERT INTO ctr8 VALUES (0)',
  'CREATE TABLE audit8 (v int)',
  'GRANT ALL ON t8, ctr8, audit8 TO PUBLIC',
  'CREATE OR REPLACE FUNCTION rnd8(t8) RETURNS float8 LANGUAGE sql VOLATILE AS $$ SELECT random() $$',
  'CREATE OR REPLACE FUNCTION bump8(t8) RETURNS int LANGUAGE sql VOLATILE AS $$ UPDATE ctr8 SET n = n + 1 RETURNING n $$',
  'CREATE OR REPLACE FUNCTION rnd_add8(int, int) RETURNS float8 LANGUAGE sql VOLATILE AS $$ SELECT $1 + $2 + random() $$',
  'DROP OPERATOR IF EXISTS %+% (int, int)',
  'CREATE OPERATOR %+% (LEFTARG = int, RIGHTARG = int, FUNCTION = rnd_add8)',
  'CREATE OR REPLACE FUNCTION audited8(v int) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$ BEGIN INSERT INTO audit8 VALUES (v); RETURN true; END $$',
  'CREATE DOMAIN checked8 AS int CHECK (audited8(VALUE))',
  'CREATE TYPE pair8 AS (a int, b int)',
  'CREATE OR REPLACE FUNCTION pair8_float(pair8) RETURNS float8 LANGUAGE sql VOLATILE AS $$ SELECT random() $$',
  'CREATE CAST (pair8 AS float8) WITH FUNCTION pair8_float(pair8)',
  'CREATE VIEW rv8 AS SELECT random() AS r',
  'GRANT SELECT ON rv8 TO PUBLIC',
];

/** Two sessions run the same text: a volatile function gives each its own value. */
function fresh(name: string, sql: string): Scenario {
  return {
    name,
    setup: SETUP,
    async run(x) {
      const one = await (await x.session()).q(sql);
      const two = await (await x.session({ via: 1 })).q(sql);
      return {
        'first execution: a row': String(one.rows.length),
        'second execution gets its own value': String(one.value !== two.value),
      };
    },
  };
}

const scenarios: Scenario[] = [
  fresh('attribute notation `SELECT x.rnd8 FROM t8 x` calls the volatile rnd8(t8) each time', 'SELECT x.rnd8 FROM t8 x'),
  {
    name: 'attribute notation `SELECT x.bump8 FROM t8 x` runs the writing bump8(t8) each time',
    setup: SETUP,
    async run(x) {
      const sql = 'SELECT x.bump8 FROM t8 x';
      return {
        'first session gets': (await (await x.session()).q(sql)).data,
        'second session gets': (await (await x.session({ via: 1 })).q(sql)).data,
        'ctr8 in PostgreSQL': (await x.truth('SELECT n FROM ctr8')).data,
      };
    },
  },
  fresh('an operator backed by random(): `SELECT 1 %+% 2`', 'SELECT 1 %+% 2'),
  {
    name: 'a domain CHECK that writes: `SELECT 5::checked8` inserts into audit8 each time, and a read of audit8 sees it',
    setup: SETUP,
    async run(x) {
      const r = await x.session();
      const count = 'SELECT count(*) FROM audit8';
      const before = (await r.q(count)).data;
      const one = (await (await x.session()).q('SELECT 5::checked8')).data;
      const two = (await (await x.session({ via: 1 })).q('SELECT 5::checked8')).data;
      return {
        'R counts audit8, before': before,
        'first cast': one,
        'second cast': two,
        'R counts audit8, after': (await r.q(count)).data,
        'audit8 in PostgreSQL': (await x.truth(count)).data,
      };
    },
  },
  fresh('a user-defined cast backed by random(): `SELECT ROW(1, 2)::pair8::float8`', 'SELECT ROW(1, 2)::pair8::float8'),
  fresh('a view that hides random(): `SELECT r FROM rv8`', 'SELECT r FROM rv8'),
];

issue14Suite(t, { scenarios });
