// Issue 14, finding 11 (the lesser ones): a sequence's last_value after a serial (or identity)
// default used it or TRUNCATE ... RESTART IDENTITY reset it; 't'::regclass after DROP and CREATE
// of t; information_schema views read through search_path under names that do not look like
// catalogs; and an RLS policy that reads application_name, which the key leaves out on purpose.
//
// What PostgreSQL does: a column default's nextval() advances the sequence, RESTART IDENTITY
// resets it; a regclass literal is resolved at each execution (a new table, a new OID);
// information_schema.tables lists the tables that exist now; current_setting('application_name')
// is the session's own, so a policy on it shows each application its own rows.
import t from 'tap';
import { issue14Suite, readsAroundWrites, type Scenario } from '../helpers/safe-cache';

const scenarios: Scenario[] = [
  readsAroundWrites(
    "a serial column's default advances its sequence: last_value of t11_id_seq",
    ['DROP TABLE IF EXISTS t11', 'CREATE TABLE t11 (id serial, v text)', "INSERT INTO t11 (v) VALUES ('a')", 'GRANT ALL ON t11, t11_id_seq TO PUBLIC'],
    'SELECT last_value, is_called FROM t11_id_seq',
    ["INSERT INTO t11 (v) VALUES ('b')"],
  ),
  readsAroundWrites(
    "an identity column's default advances its sequence: last_value of t11i_id_seq",
    ['DROP TABLE IF EXISTS t11i', 'CREATE TABLE t11i (id int GENERATED ALWAYS AS IDENTITY, v text)', "INSERT INTO t11i (v) VALUES ('a')", 'GRANT ALL ON t11i, t11i_id_seq TO PUBLIC'],
    'SELECT last_value, is_called FROM t11i_id_seq',
    ["INSERT INTO t11i (v) VALUES ('b')"],
  ),
  readsAroundWrites(
    'TRUNCATE ... RESTART IDENTITY resets the sequence: last_value of t11r_id_seq',
    ['DROP TABLE IF EXISTS t11r', 'CREATE TABLE t11r (id serial, v text)', "INSERT INTO t11r (v) VALUES ('a'), ('b'), ('c')", 'GRANT ALL ON t11r, t11r_id_seq TO PUBLIC'],
    'SELECT last_value, is_called FROM t11r_id_seq',
    ['TRUNCATE t11r RESTART IDENTITY'],
    {},
    { user: 'postgres' },
  ),
  {
    // OIDs differ from run to run: what is compared is whether each answer is the OID r11 has now.
    name: "'r11'::regclass after DROP TABLE r11 and CREATE TABLE r11",
    setup: ['DROP TABLE IF EXISTS r11', 'CREATE TABLE r11 (id int)'],
    async run(x) {
      const read = "SELECT 'r11'::regclass::oid";
      const r = await x.session();
      const before = (await r.q(read)).value;
      const w = await x.session({ user: 'postgres', via: 1 });
      await w.q('DROP TABLE r11');
      await w.q('CREATE TABLE r11 (id int)');
      const now = (await x.truth(read)).value;
      const after = (await r.q(read)).value;
      const fresh = (await (await x.session({ via: 1 })).q(read)).value;
      return {
        'the new r11 has another OID than the old one': String(now !== before),
        "R reads, after: the new r11's OID": String(after === now),
        "a new session reads, after: the new r11's OID": String(fresh === now),
      };
    },
  },
  readsAroundWrites(
    'information_schema.tables read as `tables` through search_path information_schema, public',
    ['DROP TABLE IF EXISTS new11, old11', 'CREATE TABLE old11 (id int)', 'GRANT SELECT ON old11 TO PUBLIC'],
    "SELECT table_name FROM tables WHERE table_schema = 'public' AND table_name IN ('old11', 'new11') ORDER BY 1",
    ['CREATE TABLE new11 (id int)'],
    { params: { options: '-c search_path=information_schema,public' } },
  ),
  {
    name: 'an RLS policy that reads application_name: each application sees its own rows',
    setup: [
      'DROP TABLE IF EXISTS apps11',
      'CREATE TABLE apps11 (app text, body text)',
      "INSERT INTO apps11 VALUES ('app_one', 'app_one row'), ('app_two', 'app_two row')",
      'ALTER TABLE apps11 ENABLE ROW LEVEL SECURITY',
      "CREATE POLICY by_app ON apps11 USING (app = current_setting('application_name'))",
      'GRANT SELECT ON apps11 TO PUBLIC',
    ],
    distinct: [['app_one reads apps11', 'app_two reads apps11']],
    async run(x) {
      const one = await x.session({ params: { application_name: 'app_one' } });
      const two = await x.session({ params: { application_name: 'app_two' }, via: 1 });
      return {
        'app_one reads apps11': (await one.q('SELECT body FROM apps11')).data,
        'app_two reads apps11': (await two.q('SELECT body FROM apps11')).data,
      };
    },
  },
];

issue14Suite(t, { scenarios });
