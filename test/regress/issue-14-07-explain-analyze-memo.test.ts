// Issue 14, finding 7: the classification memo is keyed by the text's shape (numbers folded to 1).
// `EXPLAIN (ANALYZE 0) UPDATE ...` seen first is classified as no write, and a later
// `EXPLAIN (ANALYZE 1) UPDATE ...` has the same shape: it gets the memoised verdict, runs the
// UPDATE, and invalidates nothing.
//
// What PostgreSQL does: EXPLAIN (ANALYZE 0) only plans the statement; EXPLAIN (ANALYZE 1)
// executes it, so the UPDATE, DELETE or INSERT changes the table (at once, outside a transaction
// block) and every later read sees that. The class covered here: UPDATE, DELETE and INSERT under
// EXPLAIN, in a simple Query and through Parse/Bind/Execute. The EXPLAIN output itself (plans,
// timings) is not compared, only what the reads see.
import t from 'tap';
import { issue14Suite, type Scenario, type Sess } from '../helpers/safe-cache';

const SETUP = ['DROP TABLE IF EXISTS e7', 'CREATE TABLE e7 (id int PRIMARY KEY, v int)', 'INSERT INTO e7 VALUES (1, 10), (2, 20)', 'GRANT ALL ON e7 TO PUBLIC'];
const READ = 'SELECT id, v FROM e7 ORDER BY id';

function explained(stmt: string, how: 'simple Query' | 'Parse/Bind/Execute'): Scenario {
  const send = (s: Sess, sql: string) => (how === 'simple Query' ? s.q(sql) : s.ext({ sql }));
  return {
    name: `EXPLAIN (ANALYZE 0) ${stmt}, then EXPLAIN (ANALYZE 1) of it (${how})`,
    setup: SETUP,
    distinct: [['R reads, before', 'R reads, after EXPLAIN (ANALYZE 1)']],
    async run(x) {
      const r = await x.session();
      const w = await x.session({ via: 1 });
      const before = (await r.q(READ)).data;
      const planned = await send(w, `EXPLAIN (ANALYZE 0) ${stmt}`);
      const afterPlan = (await r.q(READ)).data;
      const ran = await send(w, `EXPLAIN (ANALYZE 1) ${stmt}`);
      return {
        'R reads, before': before,
        'EXPLAIN (ANALYZE 0) answers rows': String(planned.rows.length > 0),
        'R reads, after EXPLAIN (ANALYZE 0)': afterPlan,
        'EXPLAIN (ANALYZE 1) answers rows': String(ran.rows.length > 0),
        'R reads, after EXPLAIN (ANALYZE 1)': (await r.q(READ)).data,
        'W reads, after EXPLAIN (ANALYZE 1)': (await w.q(READ)).data,
      };
    },
  };
}

const scenarios: Scenario[] = [];
for (const how of ['simple Query', 'Parse/Bind/Execute'] as const) {
  scenarios.push(
    explained('UPDATE e7 SET v = v + 1 WHERE id = 1', how),
    explained('DELETE FROM e7 WHERE id = 2', how),
    explained('INSERT INTO e7 VALUES (3, 30)', how),
  );
}

issue14Suite(t, { scenarios });
