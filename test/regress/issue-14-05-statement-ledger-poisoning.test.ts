// Issue 14, finding 5: poisoning through the statement ledger. A prepares the named statement
// s9 = SELECT 'first' (Parse); `DO $$BEGIN EXECUTE 'DEALLOCATE s9'; END$$` drops it on the server
// where pgscribe cannot see; `PREPARE s9 AS SELECT 'second'` makes a new s9; A executes s9. pgscribe
// still believes s9 is SELECT 'first': it stores "second" under that statement's key and serves
// it to other sessions that run SELECT 'first'.
//
// What PostgreSQL does: protocol-level and SQL-level prepared statements share one namespace, and
// DEALLOCATE inside DO or a function drops the session's statement; A's Execute runs the new
// s9 ('second'), and any other session running SELECT 'first' gets 'first'. The class covered
// here: DEALLOCATE s9 and DEALLOCATE ALL run by EXECUTE inside DO, and by a plpgsql function.
import t from 'tap';
import { issue14Suite, type Scenario } from '../helpers/safe-cache';
import { enc } from '../harness/wire';

const FIRST = "SELECT 'first' AS answer";

function poison(name: string, drop: string): Scenario {
  return {
    name,
    setup: ["CREATE OR REPLACE FUNCTION dealloc(stmt text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'DEALLOCATE ' || quote_ident(stmt); END $$"],
    distinct: [['A executes s9', 'C runs SELECT \'first\'']],
    async run(x) {
      const a = await x.session();
      await a.raw(Buffer.concat([enc.parse('s9', FIRST), enc.sync()]));
      await a.q(drop);
      await a.q("PREPARE s9 AS SELECT 'second' AS answer");
      const aGot = await a.raw(Buffer.concat([enc.bind('', 's9', []), enc.execute(''), enc.sync()]));
      const c = await x.session({ via: 1 });
      const d = await x.session();
      return {
        'A executes s9': aGot.data,
        "C runs SELECT 'first'": (await c.ext({ sql: FIRST, describe: false })).data,
        "D runs SELECT 'first'": (await d.ext({ sql: FIRST, describe: false })).data,
      };
    },
  };
}

const scenarios: Scenario[] = [
  poison("DEALLOCATE s9 by EXECUTE inside DO (the issue's example)", "DO $$ BEGIN EXECUTE 'DEALLOCATE s9'; END $$"),
  poison('DEALLOCATE ALL by EXECUTE inside DO', "DO $$ BEGIN EXECUTE 'DEALLOCATE ALL'; END $$"),
  poison('DEALLOCATE by a plpgsql function', "SELECT dealloc('s9')"),
];

issue14Suite(t, { scenarios });
