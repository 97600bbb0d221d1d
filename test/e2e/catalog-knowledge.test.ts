// The catalog knowledge against a real PostgreSQL (issue 14, point 2): the loader's queries run
// on the server the harness starts (15), the snapshot they build gives the verdicts the unit
// tests give on canned rows (views, partitions, inheritance, policies, functions, operators,
// domains, composite types holding a date/time, relation kinds, search path, triggers, cascades,
// role defaults, a temporary table held by another session), and a DDL by another connection
// bumps the generation within a few polls. The CatalogSource here is psql: one process per query.
import t from 'tap';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startCluster, PG_BIN, type PgCluster } from '../harness/pg-cluster';
import { run } from '../harness/run';
import { waitFor } from '../harness/time';
import { CatalogKnowledge } from '../../src/catalog/knowledge';
import type { CatalogSource } from '../../src/catalog/source';
import { analyzeSql } from '../../src/sql/classify';

const PSQL = fs.existsSync(path.join(PG_BIN, 'psql')) ? path.join(PG_BIN, 'psql') : 'psql';
const PATH = ['pg_catalog', 'public'];
const facts = (sql: string) => analyzeSql(sql).facts;

/** psql -c per query; unit and record separators that no catalog text holds, NULL as \x01. */
function psqlSource(pg: PgCluster): CatalogSource {
  return {
    async query(sql) {
      const r = await run(PSQL, ['-X', '-A', '-t', '-w', '-v', 'ON_ERROR_STOP=1', '-F', '\x1f', '-R', '\x1e', '-P', 'null=\x01', '-c', sql],
        { env: pg.env(), timeoutMs: 60_000 });
      if (r.code !== 0) throw new Error(`psql: ${r.stderr}`);
      const out = r.stdout.endsWith('\n') ? r.stdout.slice(0, -1) : r.stdout;
      if (out === '') return { fields: [], rows: [] };
      return { fields: [], rows: out.split('\x1e').map((rec) => rec.split('\x1f').map((v) => (v === '\x01' ? null : v))) };
    },
  };
}

const SETUP = String.raw`
CREATE SCHEMA s2;
CREATE FOREIGN DATA WRAPPER dummy_fdw;
CREATE SERVER fsrv FOREIGN DATA WRAPPER dummy_fdw;
CREATE FOREIGN TABLE s2.t (a int) SERVER fsrv;
CREATE FOREIGN TABLE ft (a int) SERVER fsrv;
CREATE TABLE t (id int PRIMARY KEY, a int, body text);
CREATE TABLE parent (id int, k int) PARTITION BY RANGE (k);
CREATE TABLE part1 PARTITION OF parent FOR VALUES FROM (0) TO (10) PARTITION BY RANGE (k);
CREATE TABLE part1a PARTITION OF part1 FOR VALUES FROM (0) TO (5);
CREATE TABLE part2 PARTITION OF parent FOR VALUES FROM (10) TO (20);
CREATE TABLE inh_parent (a int);
CREATE TABLE inh_child () INHERITS (inh_parent);
CREATE VIEW v1 AS SELECT t.id, p.k FROM t JOIN parent p ON p.id = t.id;
CREATE VIEW v2 AS SELECT * FROM v1 WHERE k > 0;
CREATE VIEW vr AS SELECT random() AS r FROM t;
CREATE VIEW vnow AS SELECT now() AS n;
CREATE VIEW vts AS SELECT CURRENT_TIMESTAMP AS n;
CREATE VIEW vio AS SELECT body::timestamptz AS n FROM t;
CREATE VIEW vcat AS SELECT relname FROM pg_class;
CREATE VIEW vft AS SELECT * FROM ft;
CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n FROM t;
CREATE TABLE tenants (id int, name text);
CREATE TABLE docs (tenant int, body text);
ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON docs USING (tenant = current_setting('app.tenant')::int AND EXISTS (SELECT 1 FROM tenants WHERE id = tenant));
CREATE FUNCTION set_tenant(int) RETURNS text LANGUAGE sql AS $$ SELECT set_config('app.tenant', $1::text, false) $$;
CREATE FUNCTION f_stable(t) RETURNS int LANGUAGE sql STABLE AS $$ SELECT $1.a $$;
CREATE FUNCTION f_vol(t) RETURNS float8 LANGUAGE sql VOLATILE AS $$ SELECT random() $$;
CREATE FUNCTION rnd_op(int, int) RETURNS int LANGUAGE sql VOLATILE AS $$ SELECT $1 + (random() * 0)::int $$;
CREATE OPERATOR ### (LEFTARG = int, RIGHTARG = int, FUNCTION = rnd_op);
CREATE FUNCTION log_value(int) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$ BEGIN RETURN true; END $$;
CREATE DOMAIN logged_int AS int CHECK (log_value(VALUE));
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TYPE moment AS (at timestamptz, label text);
CREATE FUNCTION doc_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM docs $$;
CREATE FUNCTION plpg_count() RETURNS bigint LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN (SELECT count(*) FROM docs); END $$;
CREATE SEQUENCE sq;
CREATE UNLOGGED TABLE ul (a int);
CREATE TABLE trig (a int);
CREATE FUNCTION trig_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER tr BEFORE INSERT ON trig FOR EACH ROW EXECUTE FUNCTION trig_fn();
CREATE TABLE fk_parent (id int PRIMARY KEY);
CREATE TABLE fk_child (pid int REFERENCES fk_parent (id) ON DELETE CASCADE);
CREATE TABLE fk_plain (pid int REFERENCES fk_parent (id));
CREATE TABLE serial_t (id serial, a int);
CREATE TABLE audited (a int DEFAULT log_value(1)::int);
CREATE ROLE alice;
ALTER ROLE alice SET search_path = s2, public;
ALTER ROLE alice IN DATABASE postgres SET extra_float_digits = 0;
ALTER DATABASE postgres SET work_mem = '8MB';
`;

let pg: PgCluster;
let holder: ChildProcessWithoutNullStreams | null = null;
let held = '';

/** Writes to the session held open by `holder` and waits for the marker it prints after. */
async function inHeldSession(sql: string, marker: string): Promise<void> {
  holder!.stdin.write(`${sql}\nSELECT '${marker}';\n`);
  await waitFor(() => (held.includes(marker) ? true : undefined), { timeoutMs: 30_000, timeout: () => `no ${marker}: ${held}` });
}

t.before(async () => {
  pg = await startCluster();
  await pg.psql(SETUP);
});
t.teardown(async () => {
  if (holder !== null) {
    holder.stdin.end();
    await new Promise((r) => holder!.once('close', r));
  }
  if (pg) await pg.stop();
});

t.test('the snapshot of a real catalog gives the rules\' verdicts', async (t) => {
  const k = new CatalogKnowledge(psqlSource(pg), { pollMs: 0, onError: (e) => t.fail(e.message) });
  await k.start();
  t.equal(k.ready, true, 'every loader query ran');
  const read = (sql: string, schemas = PATH) => k.judgeRead(facts(sql), schemas);

  const v2 = read('select * from v2');
  t.equal(v2.cacheable, true, v2.reason);
  t.strictSame(v2.dependsOn.sort(), ['parent', 'part1', 'part1a', 'part2', 't', 'v1', 'v2']);
  t.strictSame(read('select count(*) from parent').dependsOn.sort(), ['parent', 'part1', 'part1a', 'part2']);
  t.strictSame(read('select * from inh_parent').dependsOn.sort(), ['inh_child', 'inh_parent']);
  t.strictSame(k.writeTargets(facts('insert into part1a values (1, 1)'), PATH)!.sort(), ['parent', 'part1', 'part1a']);
  t.strictSame(k.writeTargets(facts('update inh_parent set a = 1'), PATH)!.sort(), ['inh_child', 'inh_parent']);

  t.match(read('select * from vr'), { cacheable: false, reason: /volatile function pg_catalog\.random/ });
  t.match(read('select * from vnow'), { cacheable: false, reason: /pg_catalog\.now/ });
  t.match(read('select * from vts'), { cacheable: false, reason: /reads the clock/ });
  t.match(read('select * from vio'), { cacheable: false, reason: /reads the clock/ }, 'a text coerced to timestamptz');
  t.match(read('select * from vcat'), { cacheable: false, reason: /pg_catalog\.pg_class is a system relation/ });
  t.match(read('select * from vft'), { cacheable: false, reason: /public\.ft is a foreign table/ });
  t.strictSame(read('select * from mv'), { cacheable: true, reason: '', dependsOn: ['mv'] });

  const docs = read('select body from docs');
  t.equal(docs.cacheable, true, docs.reason);
  t.strictSame(docs.dependsOn.sort(), ['docs', 'tenants'], 'what the policy reads');
  t.equal(k.callsOnlyStable(facts('select set_tenant(1)'), PATH), false);
  t.strictSame(read('select x.f_stable from t x'), { cacheable: true, reason: '', dependsOn: ['t'] });
  t.equal(k.callsOnlyStable(facts('select x.f_vol from t x'), PATH), false, 'attribute notation');
  t.equal(k.callsOnlyStable(facts('select a ### 1 from t'), PATH), false, 'a user operator');
  t.equal(k.callsOnlyStable(facts('select 5::logged_int'), PATH), false, 'a domain check');
  t.equal(read('select 5::posint').cacheable, true);
  t.match(read("select '(2020-01-01,x)'::moment"), { cacheable: false, reason: /may read 'now'/ });
  t.strictSame(read('select doc_count()').dependsOn.sort(), ['docs', 'tenants']);
  t.match(read('select plpg_count()'), { cacheable: false, reason: /cannot name/ });

  t.match(read('select * from sq').reason, /sequence/);
  t.match(read('select * from ul').reason, /unlogged/);
  t.match(read('select * from ft').reason, /foreign table/);
  t.equal(read('select * from t').cacheable, true);
  t.match(read('select * from t', ['pg_catalog', 's2', 'public']).reason, /s2\.t is a foreign table/);

  t.equal(k.writeTargets(facts('insert into trig values (1)'), PATH), null, 'a user trigger');
  t.strictSame(k.writeTargets(facts('delete from fk_parent'), PATH)!.sort(), ['fk_child', 'fk_parent'], 'ON DELETE CASCADE only');
  t.strictSame(k.writeTargets(facts('insert into serial_t (a) values (1)'), PATH), ['serial_t'], 'a nextval default');
  t.equal(k.writeTargets(facts('insert into audited values (default)'), PATH), null, 'a volatile default');
  t.equal(k.writeTargets(facts('alter table t rename to t9'), PATH), null);

  t.strictSame(k.defaultSettings('alice'), ['work_mem=8MB', 'search_path=s2, public', 'extra_float_digits=0']);
  t.strictSame(k.defaultSettings('bob'), ['work_mem=8MB']);
  k.stop();
});

t.test('PostgreSQL reads the clock words where the classifier says it may (issue 14, finding 9)', async (t) => {
  // Each of these literals is the current time or date to the server, so each text is volatile.
  const texts = [
    "'now()'::timestamptz = now()",
    "lower('[ now ,)'::tstzrange) = now()",
    "('{today}'::date[])[1] = current_date",
    "('{\"Tomorrow \"}'::date[])[1] = current_date + 1",
    "('(now,x)'::moment).at = now()",
    "E'n\\x6fw'::timestamptz = now()",
    "'n'\n'ow'::timestamptz = now()",
    "'  YESTERDAY'::date = current_date - 1",
    "'today 10:00'::timestamp = current_date + time '10:00'",
  ];
  const got = await pg.psql(`SELECT ${texts.map((x) => `(${x})::text`).join(" || ',' || ")}`);
  t.equal(got, texts.map(() => 'true').join(','));
  for (const x of texts) t.equal(analyzeSql(`SELECT ${x}`).facts.readBlocker, 'volatile', x);
});

t.test('a temporary table: its session sees it first; it changes no fingerprint', async (t) => {
  holder = spawn(PSQL, ['-X', '-A', '-t', '-q'], { env: pg.env() });
  holder.stdout.on('data', (b: Buffer) => { held += b.toString(); });
  await inHeldSession('CREATE TEMP TABLE t (a int); SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema();', 'ready-1');
  const temp = /pg_temp_\d+/.exec(held)?.[0];
  t.ok(temp, `the temp schema: ${temp}`);
  const k = new CatalogKnowledge(psqlSource(pg), { pollMs: 0 });
  await k.start();
  t.match(k.judgeRead(facts('select * from t'), [temp!, ...PATH]).reason, /is temporary/);
  t.equal(k.judgeRead(facts('select * from t'), PATH).cacheable, true, 'other sessions read public.t');
  await inHeldSession('CREATE TEMP TABLE t2 (a int DEFAULT 1 CHECK (a > 0));', 'ready-2');
  await k.poll();
  t.equal(k.generation, 1, 'temporary objects are left out of the fingerprint');
  k.stop();
});

t.test('a DDL by another connection bumps the generation within a few polls', async (t) => {
  const k = new CatalogKnowledge(psqlSource(pg), { pollMs: 0 });
  await k.start();
  t.equal(k.generation, 1);
  await k.poll();
  t.equal(k.generation, 1, 'nothing changed');
  t.match(k.judgeRead(facts('select * from newt'), PATH).reason, /unknown relation newt/);

  for (const [ddl, check] of [
    ['CREATE TABLE newt (a int)', () => k.judgeRead(facts('select * from newt'), PATH).cacheable],
    ['ALTER FUNCTION f_stable(t) VOLATILE', () => !k.callsOnlyStable(facts('select x.f_stable from t x'), PATH)],
    ['CREATE TABLE newt_1 PARTITION OF parent FOR VALUES FROM (20) TO (30)',
      () => k.judgeRead(facts('select * from parent'), PATH).dependsOn.includes('newt_1')],
    ['CREATE OR REPLACE VIEW v2 AS SELECT * FROM v1 WHERE k > random()', () => !k.judgeRead(facts('select * from v2'), PATH).cacheable],
    ['ALTER ROLE alice SET statement_timeout = 5', () => k.defaultSettings('alice')!.includes('statement_timeout=5')],
    ['CREATE POLICY p2 ON docs USING (set_tenant(1) IS NOT NULL)', () => !k.callsOnlyStable(facts('select * from docs'), PATH)],
  ] as const) {
    const before = k.generation;
    await pg.psql(ddl);
    for (let i = 0; i < 3 && k.generation === before; i++) await k.poll();
    t.equal(k.generation, before + 1, `${ddl}: one reload`);
    t.equal(check(), true, `${ddl}: seen`);
  }

  // The timer does the same on its own.
  const timed = new CatalogKnowledge(psqlSource(pg), { pollMs: 50 });
  await timed.start();
  const g = timed.generation;
  await pg.psql('ALTER TABLE newt ADD COLUMN b int');
  await waitFor(() => (timed.generation > g ? true : undefined), { timeoutMs: 30_000, timeout: () => 'no reload' });
  timed.stop();
  k.stop();
});
