// Issue 14, finding 6: partitions and inheritance. A write invalidates the relation it names
// only: `INSERT INTO part1` leaves `SELECT count(*) FROM parent` stale, `UPDATE parent` leaves a
// read of part1 stale, and the same for inheritance children.
//
// What PostgreSQL does: a partitioned table's rows are its partitions' rows (at every level), an
// inheritance parent's rows include its children's unless ONLY is said; a write through either
// name is seen through the other at once. The class covered here: a write to a partition seen
// through the parent, to the parent seen through a partition (UPDATE, routed INSERT, TRUNCATE),
// through two levels of partitioning, and the same for a three-level inheritance tree.
import t from 'tap';
import { issue14Suite, type Scenario } from '../helpers/safe-cache';

const SETUP = [
  'DROP TABLE IF EXISTS parent6, iparent6 CASCADE',
  'CREATE TABLE parent6 (id int, v int) PARTITION BY RANGE (id)',
  'CREATE TABLE part6a PARTITION OF parent6 FOR VALUES FROM (0) TO (100)',
  'CREATE TABLE part6b PARTITION OF parent6 FOR VALUES FROM (100) TO (200) PARTITION BY RANGE (id)',
  'CREATE TABLE part6b1 PARTITION OF part6b FOR VALUES FROM (100) TO (150)',
  'CREATE TABLE part6b2 PARTITION OF part6b FOR VALUES FROM (150) TO (200)',
  'INSERT INTO parent6 VALUES (1, 10), (2, 20), (120, 30), (170, 40)',
  'CREATE TABLE iparent6 (id int, v int)',
  'CREATE TABLE ichild6 () INHERITS (iparent6)',
  'CREATE TABLE igrand6 () INHERITS (ichild6)',
  'INSERT INTO iparent6 VALUES (1, 1)',
  'INSERT INTO ichild6 VALUES (2, 2)',
  'INSERT INTO igrand6 VALUES (3, 3)',
  'GRANT ALL ON parent6, part6a, part6b, part6b1, part6b2, iparent6, ichild6, igrand6 TO PUBLIC',
];

/** R reads; W writes (through the other instance); R and W read again. */
function staleAfter(read: string, write: string): Scenario {
  return {
    name: `${write} is seen by ${read}`,
    setup: SETUP,
    distinct: [['R reads, before the write', 'R reads, after the write']],
    async run(x) {
      const r = await x.session();
      const w = await x.session({ via: 1 });
      const before = (await r.q(read)).data;
      const wrote = (await w.q(write)).data;
      return {
        'R reads, before the write': before,
        'the write': wrote,
        'R reads, after the write': (await r.q(read)).data,
        'W reads, after the write': (await w.q(read)).data,
      };
    },
  };
}

const scenarios: Scenario[] = [
  staleAfter('SELECT count(*), sum(v) FROM parent6', 'INSERT INTO part6a VALUES (3, 5)'),
  staleAfter('SELECT count(*), sum(v) FROM part6a', 'UPDATE parent6 SET v = v + 1'),
  staleAfter('SELECT count(*), sum(v) FROM part6a', 'INSERT INTO parent6 VALUES (4, 7)'),
  staleAfter('SELECT count(*), sum(v) FROM part6a', 'TRUNCATE parent6'),
  staleAfter('SELECT count(*), sum(v) FROM parent6', 'DELETE FROM part6b1'),
  staleAfter('SELECT count(*), sum(v) FROM part6b2', 'UPDATE parent6 SET v = v * 2 WHERE id > 100'),
  staleAfter('SELECT count(*), sum(v) FROM iparent6', 'INSERT INTO ichild6 VALUES (4, 4)'),
  staleAfter('SELECT count(*), sum(v) FROM ichild6', 'UPDATE iparent6 SET v = v + 1'),
  staleAfter('SELECT count(*), sum(v) FROM igrand6', 'DELETE FROM iparent6'),
  staleAfter('SELECT count(*), sum(v) FROM iparent6', 'INSERT INTO igrand6 VALUES (5, 5)'),
];

issue14Suite(t, { scenarios });
