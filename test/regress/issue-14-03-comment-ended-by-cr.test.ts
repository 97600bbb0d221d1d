// Issue 14, finding 3: pgscribe's SQL scanner ends a `--` comment only at \n; PostgreSQL's also
// ends it at \r. So text after `--<CR>` is SQL to PostgreSQL and a comment to the classifier:
// `SELECT 1 --<CR>; DELETE FROM t` hides the DELETE from invalidation, and `SELECT 1 AS a
// --<CR>, random()` is cached.
//
// What PostgreSQL does (scan.l: comment = "--" followed by characters other than \n and \r): the
// comment ends at the \r and the rest of the text runs. The class covered here, each time with
// the text after `--<CR>` doing something the classifier must see: a second statement that
// writes (DELETE) and one that changes session state (SET bytea_output), a volatile call in a
// simple Query and in a Parse, and a table read whose writes must invalidate the answer.
import t from 'tap';
import { issue14Suite, type Scenario } from '../helpers/safe-cache';

const CR = '\r';

const ROWS = ['DROP TABLE IF EXISTS c3', 'CREATE TABLE c3 (id int PRIMARY KEY, v int)', 'INSERT INTO c3 SELECT g, g * 10 FROM generate_series(1, 3) g', 'GRANT ALL ON c3 TO PUBLIC'];

const scenarios: Scenario[] = [
  {
    name: '`SELECT 1 --<CR>; DELETE FROM c3 ...`: the DELETE runs, and a cached read of c3 does not outlive it',
    setup: ROWS,
    distinct: [['R reads c3, before', 'R reads c3, after']],
    async run(x) {
      const read = 'SELECT id FROM c3 ORDER BY id';
      const r = await x.session();
      const w = await x.session({ via: 1 });
      const before = (await r.q(read)).data;
      const del = await w.q(`SELECT 1 --${CR}; DELETE FROM c3 WHERE id = 1`);
      return {
        'R reads c3, before': before,
        'W sends the text with the hidden DELETE': del.text,
        'R reads c3, after': (await r.q(read)).data,
        'W reads c3, after': (await w.q(read)).data,
        'c3 in PostgreSQL': (await x.truth(read)).data,
      };
    },
  },
  {
    name: 'the same with psql: `psql -c "SELECT 1 --<CR>; DELETE FROM c3 ..."` between two reads',
    setup: ROWS,
    distinct: [['psql reads c3, before', 'psql reads c3, after']],
    async run(x) {
      const read = 'SELECT id FROM c3 ORDER BY id';
      const before = await x.psql([read]);
      const del = await x.psql([`SELECT 1 --${CR}; DELETE FROM c3 WHERE id = 1`], { via: 1 });
      return {
        'psql reads c3, before': before,
        'psql sends the text with the hidden DELETE': del,
        'psql reads c3, after': await x.psql([read]),
      };
    },
  },
  {
    name: '`SELECT 1 --<CR>; SET bytea_output = ...`: the session changed its own state, others keep theirs',
    setup: ['DROP TABLE IF EXISTS c3blobs', 'CREATE TABLE c3blobs (b bytea)', "INSERT INTO c3blobs VALUES ('\\x00ff41'::bytea)", 'GRANT SELECT ON c3blobs TO PUBLIC'],
    distinct: [['S1 reads c3blobs', 'S2 reads c3blobs']],
    async run(x) {
      const s1 = await x.session();
      const s2 = await x.session({ via: 1 });
      await s1.q(`SELECT 1 --${CR}; SET bytea_output = 'escape'`);
      return {
        'S1 reads c3blobs': (await s1.q('SELECT b FROM c3blobs')).data,
        'S2 reads c3blobs': (await s2.q('SELECT b FROM c3blobs')).data,
      };
    },
  },
  {
    name: '`SELECT 1 AS a --<CR>, random()` (simple Query): each execution draws its own number',
    async run(x) {
      const sql = `SELECT 1 AS a --${CR}, random() AS r`;
      const one = await (await x.session()).q(sql);
      const two = await (await x.session({ via: 1 })).q(sql);
      return {
        'first execution: columns': String(one.rows[0]?.length),
        'second execution draws another random() than the first': String(one.rows[0]?.[1] !== two.rows[0]?.[1]),
      };
    },
  },
  {
    name: '`SELECT $1::int AS a --<CR>, random()` (Parse/Bind/Execute): each execution draws its own number',
    async run(x) {
      const u = { sql: `SELECT $1::int AS a --${CR}, random() AS r`, params: ['1'] };
      const one = await (await x.session()).ext(u);
      const two = await (await x.session({ via: 1 })).ext(u);
      return {
        'first execution: columns': String(one.rows[0]?.length),
        'second execution draws another random() than the first': String(one.rows[0]?.[1] !== two.rows[0]?.[1]),
      };
    },
  },
  {
    name: '`SELECT \'x\' AS tag --<CR>, v FROM c3 ...`: the read depends on c3, an UPDATE of c3 invalidates it',
    setup: ROWS,
    distinct: [['R reads, before', 'R reads, after']],
    async run(x) {
      const read = `SELECT 'x' AS tag --${CR}, v FROM c3 WHERE id = 2`;
      const r = await x.session();
      const w = await x.session({ via: 1 });
      const before = (await r.q(read)).data;
      await w.q('UPDATE c3 SET v = v + 1 WHERE id = 2');
      return {
        'R reads, before': before,
        'R reads, after': (await r.q(read)).data,
        'W reads, after': (await w.q(read)).data,
      };
    },
  },
];

issue14Suite(t, { scenarios });
