// Issue 14, finding 4: a prepared statement whose result shape changed between its Parse and its
// Execute. Session A prepares and describes `s` = `SELECT v FROM pt4` (int4, binary results);
// `ALTER TABLE pt4 ALTER v TYPE text` runs; session B prepares the same `s` and executes it. A's
// next Bind/Execute is answered from the cache with B's text bytes, under the int4 description A
// holds. The unnamed statement does the same: when A's Parse was answered from the cache, the
// server never parsed it, and the ledger's repair re-Parses it after the ALTER.
//
// What PostgreSQL does: A's statement was planned for an int4 result; revalidating it after the
// ALTER finds another result type and fails with 0A000 "cached plan must not change result type"
// (plancache.c), for named and unnamed statements alike. These tests expect that error, as the
// direct run shows it, wherever PostgreSQL raises it.
import t from 'tap';
import { issue14Suite, type Scenario } from '../helpers/safe-cache';
import { enc } from '../harness/wire';

const SQL = 'SELECT v FROM pt4 ORDER BY v';
const SETUP = ['DROP TABLE IF EXISTS pt4', 'CREATE TABLE pt4 (v int)', 'INSERT INTO pt4 VALUES (1), (2)', 'GRANT SELECT ON pt4 TO PUBLIC'];
const ALTER = 'ALTER TABLE pt4 ALTER v TYPE text';
/** Bind of statement `stmt` to the unnamed portal, binary results, then Execute and Sync. */
const bindExec = (stmt: string): Buffer => Buffer.concat([enc.bind('', stmt, [], [], [1]), enc.execute(''), enc.sync()]);

const scenarios: Scenario[] = [
  {
    name: 'named statement: A prepares and describes s, the ALTER, B prepares s and executes it, A executes s',
    setup: SETUP,
    errorsExpected: true,
    async run(x) {
      const a = await x.session();
      const b = await x.session({ via: 1 });
      const described = await a.raw(Buffer.concat([enc.parse('s', SQL), enc.describe('S', 's'), enc.sync()]));
      await (await x.session({ user: 'postgres' })).q(ALTER);
      await b.raw(Buffer.concat([enc.parse('s', SQL), enc.sync()]));
      const bGot = await b.raw(bindExec('s'));
      return {
        'A describes s': described.text,
        'B executes s (binary results)': bGot.text,
        'A executes s (binary results) after the ALTER': (await a.raw(bindExec('s'))).text,
      };
    },
  },
  {
    name: 'unnamed statement answered from the cache, then executed after the ALTER (the ledger re-Parses it)',
    setup: SETUP,
    errorsExpected: true,
    async run(x) {
      const w = await x.session({ via: 1 });
      const a = await x.session();
      const unit = { sql: SQL, resultFormats: [1] };
      const warm = await w.ext(unit);
      const first = await a.ext(unit);
      await (await x.session({ user: 'postgres' })).q(ALTER);
      return {
        'W: Parse/Bind/Describe/Execute': warm.text,
        'A: the same request': first.text,
        'A: Bind/Execute of the unnamed statement after the ALTER': (await a.raw(bindExec(''))).text,
      };
    },
  },
  {
    name: 'unnamed statement: A parses and describes it, the ALTER, B runs the same text, A executes its statement',
    setup: SETUP,
    errorsExpected: true,
    async run(x) {
      const a = await x.session();
      const b = await x.session({ via: 1 });
      const described = await a.raw(Buffer.concat([enc.parse('', SQL), enc.describe('S', ''), enc.sync()]));
      await (await x.session({ user: 'postgres' })).q(ALTER);
      const bGot = await b.raw(Buffer.concat([enc.parse('', SQL), bindExec('')]));
      return {
        'A describes the unnamed statement': described.text,
        'B: Parse/Bind/Execute (binary results)': bGot.text,
        'A: Bind/Execute of its unnamed statement after the ALTER': (await a.raw(bindExec(''))).text,
      };
    },
  },
];

issue14Suite(t, { scenarios });
