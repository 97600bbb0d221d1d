// The catalog's verdicts (src/catalog/judge.ts) on a statement's facts, over canned catalogs:
// what a read depends on and whether it may be cached, what a write may change, whether a
// statement calls only STABLE / IMMUTABLE code. One test per rule of the issue (14, point 2).
import t from 'tap';
import { CatalogSnapshot } from '../../src/catalog/snapshot';
import { callsOnlyStable, judgeRead, writeTargets } from '../../src/catalog/judge';
import { analyzeSql } from '../../src/sql/classify';
import { FakeCatalog } from '../helpers/fake-catalog';

const PATH = ['pg_catalog', 'public'];
const facts = (sql: string) => analyzeSql(sql).facts;
const load = (c: FakeCatalog) => CatalogSnapshot.load(c);

t.test('a plain table: cacheable, depends on itself', async (t) => {
  const c = new FakeCatalog();
  c.relation('public', 't');
  const s = await load(c);
  t.strictSame(judgeRead(s, facts('select count(*) from t where a = $1'), PATH), { cacheable: true, reason: '', dependsOn: ['t'] });
  t.strictSame(judgeRead(s, facts('select * from public.t'), PATH).dependsOn, ['t']);
  t.strictSame(writeTargets(s, facts('update t set a = 1'), PATH), ['t']);
  t.equal(callsOnlyStable(s, facts('select lower(b) from t'), PATH), true);
});

t.test('views, transitively: dependsOn is every relation under them; what they reach must be safe', async (t) => {
  const c = new FakeCatalog();
  const base = c.relation('public', 'base');
  const other = c.relation('public', 'other');
  const v1 = c.relation('public', 'v1', { kind: 'v' });
  const v2 = c.relation('public', 'v2', { kind: 'v' });
  c.dep('v', v1, { rel: base });
  c.dep('v', v1, { rel: other });
  c.dep('v', v2, { rel: v1 });
  const fv = c.relation('public', 'fv', { kind: 'v' });
  const ft = c.relation('public', 'ft', { kind: 'f' });
  c.dep('v', fv, { rel: ft });
  const rv = c.relation('public', 'rv', { kind: 'v' });
  c.dep('v', rv, { fn: ['v', 'pg_catalog', 'random'] });
  const nv = c.relation('public', 'nv', { kind: 'v' });
  c.dep('v', nv, 'clock');
  const cv = c.relation('public', 'cv', { kind: 'v' });
  c.dep('v', cv, { rel: 9 }); // a relation the snapshot does not hold
  const pv = c.relation('public', 'pv', { kind: 'v' });
  c.dep('v', pv, { fn: ['s', 'pg_catalog', 'pg_backend_pid'] });
  const mv = c.relation('public', 'mv', { kind: 'm' });
  c.dep('v', mv, { rel: ft });
  c.dep('v', mv, { fn: ['v', 'public', 'audit'] });
  const s = await load(c);
  const v = judgeRead(s, facts('select * from v2'), PATH);
  t.equal(v.cacheable, true);
  t.strictSame(v.dependsOn.sort(), ['base', 'other', 'v1', 'v2']);
  t.match(judgeRead(s, facts('select * from fv'), PATH), { cacheable: false, reason: /public\.ft is a foreign table/ });
  t.match(judgeRead(s, facts('select * from rv'), PATH), { cacheable: false, reason: /volatile function pg_catalog\.random/ });
  t.equal(callsOnlyStable(s, facts('select * from rv'), PATH), false, 'a view calling random()');
  t.match(judgeRead(s, facts('select * from nv'), PATH), { cacheable: false, reason: /reads the clock/ });
  t.equal(callsOnlyStable(s, facts('select * from nv'), PATH), true, 'the clock is stable');
  t.match(judgeRead(s, facts('select * from cv'), PATH), { cacheable: false, reason: /not in the catalog snapshot/ });
  t.match(judgeRead(s, facts('select * from pv'), PATH), { cacheable: false, reason: /pg_backend_pid/ });
  // A materialized view is its stored data: what its query reads matters on REFRESH only.
  t.strictSame(judgeRead(s, facts('select * from mv'), PATH), { cacheable: true, reason: '', dependsOn: ['mv'] });
  t.equal(writeTargets(s, facts('refresh materialized view mv'), PATH), null, 'REFRESH runs audit(), which may write');
  t.equal(callsOnlyStable(s, facts('refresh materialized view mv'), PATH), false);
});

t.test('partitions and inheritance, both ways', async (t) => {
  const c = new FakeCatalog();
  const p = c.relation('public', 'parent', { kind: 'p' });
  const p1 = c.relation('public', 'part1', { kind: 'p' });
  const p1a = c.relation('public', 'part1a');
  const p2 = c.relation('public', 'part2');
  c.inherit(p1, p);
  c.inherit(p1a, p1);
  c.inherit(p2, p);
  const fp = c.relation('public', 'fparent');
  c.inherit(c.relation('public', 'fchild', { kind: 'f' }), fp);
  const s = await load(c);
  t.strictSame(judgeRead(s, facts('select count(*) from parent'), PATH).dependsOn.sort(), ['parent', 'part1', 'part1a', 'part2']);
  t.strictSame(judgeRead(s, facts('select * from part1'), PATH).dependsOn.sort(), ['part1', 'part1a']);
  t.strictSame(writeTargets(s, facts('insert into part1a values (1)'), PATH)!.sort(), ['parent', 'part1', 'part1a']);
  t.strictSame(writeTargets(s, facts('update parent set a = 1'), PATH)!.sort(), ['parent', 'part1', 'part1a', 'part2']);
  t.strictSame(writeTargets(s, facts('delete from part2'), PATH)!.sort(), ['parent', 'part2'], 'not the siblings');
  t.match(judgeRead(s, facts('select * from fparent'), PATH), { cacheable: false, reason: /fchild is a foreign table/ });
});

t.test('row-level security: the policies\' reads are depended on, their calls judged', async (t) => {
  const c = new FakeCatalog();
  const docs = c.relation('public', 'docs', { rls: true });
  const tenants = c.relation('public', 'tenants');
  c.dep('p', docs, { rel: tenants });
  c.dep('p', docs, { fn: ['s', 'pg_catalog', 'current_setting'] });
  const bad = c.relation('public', 'bad', { rls: true });
  c.dep('p', bad, { fn: ['v', 'public', 'set_tenant'] });
  const off = c.relation('public', 'off');
  c.dep('p', off, { fn: ['v', 'public', 'set_tenant'] }); // policies exist, row security is off
  c.fn('public', 'set_tenant', 'v');
  const s = await load(c);
  t.strictSame(judgeRead(s, facts('select body from docs'), PATH), { cacheable: true, reason: '', dependsOn: ['docs', 'tenants'] });
  t.match(judgeRead(s, facts('select * from bad'), PATH), { cacheable: false, reason: /a policy of public\.bad may call volatile function public\.set_tenant/ });
  t.equal(callsOnlyStable(s, facts('select * from bad'), PATH), false);
  t.equal(writeTargets(s, facts('update bad set a = 1'), PATH), null);
  t.equal(judgeRead(s, facts('select * from off'), PATH).cacheable, true);
});

t.test('functions: every overload, unknown names, the clock and session built-ins', async (t) => {
  const c = new FakeCatalog();
  c.relation('public', 't');
  c.fn('public', 'mixed', 'v'); // one of its overloads is volatile
  c.fn('public', 'pure', 'i');
  c.fn('s2', 'pure', 'v');
  c.fn('public', 'getid', 'v');
  c.relation('public', 's', { kind: 'S' });
  const s = await load(c);
  t.equal(callsOnlyStable(s, facts('select mixed(1) from t'), PATH), false);
  t.match(judgeRead(s, facts('select mixed(1) from t'), PATH), { cacheable: false, reason: /volatile function public\.mixed/ });
  t.equal(judgeRead(s, facts('select pure(1) from t'), PATH).cacheable, true);
  t.equal(callsOnlyStable(s, facts('select pure(1) from t'), [...PATH, 's2']), false, 's2.pure is in the path too');
  t.equal(callsOnlyStable(s, facts('select s2.pure(1)'), PATH), false);
  t.match(judgeRead(s, facts('select nope(1) from t'), PATH), { cacheable: false, reason: /unknown function nope/ });
  t.equal(callsOnlyStable(s, facts('select nope(1)'), PATH), false);
  t.equal(writeTargets(s, facts('update t set a = getid()'), PATH), null, 'a volatile call may write anything');
  t.strictSame(writeTargets(s, facts("update t set a = nextval('s') + random()"), PATH)!.sort(), ['s', 't'], 'built-ins that write no relation');
  t.match(judgeRead(s, facts('select "now"()'), PATH), { cacheable: false, reason: /clock or session/ }, 'quoted, still the clock');
  t.equal(judgeRead(s, facts("select current_setting('app.tenant')"), PATH).cacheable, true, 'settings are in the key');
  t.equal(callsOnlyStable(s, facts("select nextval('s')"), PATH), false);
  t.equal(callsOnlyStable(s, facts("select nextval('s')"), PATH, { harmless: true }), true);
  t.equal(callsOnlyStable(s, facts("select set_config('a.b', 'c', false)"), PATH, { harmless: true }), false);
});

t.test('STABLE functions outside pg_catalog: what their sql bodies read', async (t) => {
  const c = new FakeCatalog();
  c.relation('public', 'docs');
  c.relation('public', 'ft', { kind: 'f' });
  c.fn('public', 'doc_count', 's');
  c.body('public', 'doc_count', 'select count(*) from docs');
  c.fn('public', 'remote', 's');
  c.body('public', 'remote', 'select count(*) from ft');
  c.fn('public', 'plpg', 's', '', true);
  c.fn('public', 'tenant_setter', 's');
  c.body('public', 'tenant_setter', "select set_config('app.tenant', '1', false)");
  c.fn('public', 'loop1', 's');
  c.body('public', 'loop1', 'select loop2()');
  c.fn('public', 'loop2', 's');
  c.body('public', 'loop2', 'select loop1()');
  const s = await load(c);
  t.strictSame(judgeRead(s, facts('select doc_count()'), PATH), { cacheable: true, reason: '', dependsOn: ['docs'] });
  t.match(judgeRead(s, facts('select remote()'), PATH), { cacheable: false, reason: /foreign table/ });
  t.match(judgeRead(s, facts('select plpg()'), PATH), { cacheable: false, reason: /cannot name/ });
  // PostgreSQL does not hold a STABLE function to its word: its body may call set_config().
  t.equal(callsOnlyStable(s, facts('select plpg()'), PATH), false, 'a STABLE body the catalog cannot read may change the session');
  t.equal(callsOnlyStable(s, facts('select doc_count()'), PATH), true, 'a STABLE sql body that calls nothing volatile does not');
  t.equal(callsOnlyStable(s, facts('select tenant_setter()'), PATH, { harmless: true }), false, 'a STABLE sql body that calls set_config() does');
  t.equal(judgeRead(s, facts('select loop1()'), PATH).cacheable, true, 'recursion ends');
});

t.test('attribute notation: x.f calls f(x)', async (t) => {
  const c = new FakeCatalog();
  c.relation('public', 't');
  c.fn('public', 'f', 'v', 'v');
  c.fn('public', 'g', 'v', ''); // volatile, but not callable with one row
  c.fn('public', 'h', 'i', 'i');
  const s = await load(c);
  t.equal(callsOnlyStable(s, facts('select x.f from t x'), PATH), false);
  t.match(judgeRead(s, facts('select x.f from t x'), PATH), { cacheable: false, reason: /attribute notation/ });
  t.equal(callsOnlyStable(s, facts('select x.g, x.h, x.a from t x'), PATH), true);
});

t.test('operators: user ones by symbol and search path, implied comparisons, OPERATOR()', async (t) => {
  const c = new FakeCatalog();
  c.relation('public', 't');
  c.op('public', '###', 'v');
  c.op('public', '<->', 's');
  c.op('s2', '=', 'v');
  const s = await load(c);
  t.equal(callsOnlyStable(s, facts('select a ### b from t'), PATH), false);
  t.match(judgeRead(s, facts('select a ### b from t'), PATH), { cacheable: false, reason: /operator public\.###/ });
  t.equal(callsOnlyStable(s, facts('select a <-> b, a + b from t'), PATH), true);
  t.equal(callsOnlyStable(s, facts('select * from t order by a'), [...PATH, 's2']), false, 'a volatile = in the path');
  t.equal(callsOnlyStable(s, facts('select a operator(s2.=) b from t'), PATH), false);
  t.equal(callsOnlyStable(s, facts('select * from t'), PATH), true);
});

t.test('types: domains and their checks, casts, user types holding a date/time', async (t) => {
  const c = new FakeCatalog();
  c.relation('public', 't');
  const pos = c.type('public', 'posint', { kind: 'd' });
  c.dep('d', pos, { fn: ['i', 'public', 'is_pos'] });
  const bad = c.type('public', 'baddom', { kind: 'd' });
  c.dep('d', bad, { fn: ['v', 'public', 'log_value'] });
  c.type('public', 'onbad', { kind: 'd', base: bad });
  c.type('public', 'moment', { kind: 'd', clock: true });
  c.type('public', 'volcast', { castVol: 'v' });
  c.relation('public', 'ev', { clock: true });
  const s = await load(c);
  t.equal(judgeRead(s, facts("select '1'::posint"), PATH).cacheable, true);
  t.equal(callsOnlyStable(s, facts("select '1'::baddom"), PATH), false);
  t.equal(callsOnlyStable(s, facts('select cast(a as onbad) from t'), PATH), false, 'a domain over that domain');
  t.match(judgeRead(s, facts("select '2020-01-01'::moment"), PATH), { cacheable: false, reason: /may read 'now'/ });
  t.equal(callsOnlyStable(s, facts("select a::volcast from t"), PATH), false);
  t.match(judgeRead(s, facts("select '(x)'::ev"), PATH), { cacheable: false, reason: /may read 'now'/ }, 'a row type');
  t.equal(judgeRead(s, facts("select '1'::int4, 2::numeric, date '2020-01-01'"), PATH).cacheable, true);
  t.match(judgeRead(s, facts("select '1'::nosuchtype"), PATH), { cacheable: false, reason: /unknown type/ });
});

t.test('relation kinds: foreign, sequence, temporary, unlogged, system, not a table', async (t) => {
  const c = new FakeCatalog();
  c.relation('public', 'ft', { kind: 'f' });
  c.relation('public', 'sq', { kind: 'S' });
  c.relation('pg_temp_3', 'tmp', { persistence: 't' });
  c.relation('public', 'ul', { persistence: 'u' });
  c.relation('pg_catalog', 'pg_class');
  c.relation('information_schema', 'tables', { kind: 'v' });
  const s = await load(c);
  const reason = (sql: string, schemas = PATH) => judgeRead(s, facts(sql), schemas).reason;
  t.match(reason('select * from ft'), /foreign table/);
  t.match(reason('select * from sq'), /sequence/);
  t.match(reason('select * from tmp', ['pg_temp_3', ...PATH]), /temporary/);
  t.match(reason('select * from pg_temp.tmp', ['pg_temp_3', ...PATH]), /temp/);
  t.match(reason('select * from tmp'), /unknown relation/, 'another session\'s temp table is not ours');
  t.match(reason('select * from ul'), /unlogged/);
  t.match(reason('select * from information_schema.tables'), /the text: catalog|system relation/);
  t.match(reason('select * from tables', ['information_schema', ...PATH]), /system relation/);
});

t.test('search path: first schema wins for relations, pg_temp first, pg_catalog implicit', async (t) => {
  const c = new FakeCatalog();
  c.relation('public', 't');
  c.relation('s2', 't', { kind: 'f' });
  c.relation('pg_temp_7', 't', { persistence: 't' });
  c.fn('pg_temp_7', 'tf', 's');
  const s = await load(c);
  t.equal(judgeRead(s, facts('select * from t'), PATH).cacheable, true);
  t.match(judgeRead(s, facts('select * from t'), ['pg_catalog', 's2', 'public']).reason, /foreign/);
  t.match(judgeRead(s, facts('select * from t'), ['pg_temp_7', 'pg_catalog', 'public']).reason, /temporary/);
  t.equal(judgeRead(s, facts('select * from public.t'), ['pg_temp_7', 'pg_catalog', 'public']).cacheable, true);
  t.match(judgeRead(s, facts('select * from t'), ['pg_catalog']).reason, /unknown relation t/);
  t.match(judgeRead(s, facts('select tf()'), ['pg_temp_7', 'pg_catalog']).reason, /unknown function tf/,
    'functions are never looked up in the temporary schema');
  t.equal(callsOnlyStable(s, facts('select pg_temp.tf()'), ['pg_temp_7', 'pg_catalog']), true, 'unless named there');
});

t.test('unknown names and CTEs', async (t) => {
  const c = new FakeCatalog();
  c.relation('public', 't');
  const s = await load(c);
  t.strictSame(judgeRead(s, facts('with x as (select * from t) select * from x'), PATH), { cacheable: true, reason: '', dependsOn: ['t'] });
  t.match(judgeRead(s, facts('select * from nope'), PATH).reason, /unknown relation nope/);
  t.equal(writeTargets(s, facts('insert into nope values (1)'), PATH), null);
  t.equal(callsOnlyStable(s, facts('select * from nope'), PATH), false);
  t.match(judgeRead(s, facts('select * from t for update'), PATH).reason, /the text: locking/);
  t.match(judgeRead(s, facts('update t set a = 1'), PATH).reason, /the text: write/);
});

t.test('writes: triggers, rules, views, cascades, defaults', async (t) => {
  const c = new FakeCatalog();
  const parent = c.relation('public', 'parent');
  const child = c.relation('public', 'child');
  const grandchild = c.relation('public', 'grandchild');
  c.cascade(child, parent);
  c.cascade(grandchild, child);
  c.relation('public', 'trig', { triggers: true });
  c.relation('public', 'ruled', { rules: true });
  c.relation('public', 'v', { kind: 'v' });
  const serial = c.relation('public', 'serial');
  c.dep('w', serial, { fn: ['v', 'pg_catalog', 'nextval'] });
  const logged = c.relation('public', 'logged');
  c.dep('w', logged, { fn: ['v', 'public', 'audit'] });
  const trigChild = c.relation('public', 'tc', { triggers: true });
  const p2 = c.relation('public', 'p2');
  c.cascade(trigChild, p2);
  const s = await load(c);
  t.strictSame(writeTargets(s, facts('delete from parent'), PATH)!.sort(), ['child', 'grandchild', 'parent']);
  t.strictSame(writeTargets(s, facts('delete from grandchild'), PATH), ['grandchild']);
  t.equal(writeTargets(s, facts('insert into trig values (1)'), PATH), null);
  t.equal(callsOnlyStable(s, facts('insert into trig values (1)'), PATH), false, 'a trigger runs code');
  t.equal(writeTargets(s, facts('insert into ruled values (1)'), PATH), null);
  t.equal(writeTargets(s, facts('update v set a = 1'), PATH), null);
  t.strictSame(writeTargets(s, facts('insert into serial (a) values (1)'), PATH), ['serial']);
  t.equal(callsOnlyStable(s, facts('insert into serial (a) values (1)'), PATH, { harmless: true }), true);
  t.equal(writeTargets(s, facts('insert into logged (a) values (1)'), PATH), null);
  t.equal(writeTargets(s, facts('delete from p2'), PATH), null, 'a cascade reaches a table with triggers');
  t.equal(writeTargets(s, facts('alter table s.x rename to t'), PATH), null, 'DDL');
  t.equal(writeTargets(s, facts('do $$ begin end $$'), PATH), null);
  t.strictSame(writeTargets(s, facts('select 1'), PATH), [], 'a read writes nothing');
});

t.test('wal mode: a read of a table the publication does not stream is relayed; views through their base tables, parents through their children', async (t) => {
  const c = new FakeCatalog();
  const keyed = c.relation('public', 'keyed');
  const nokey = c.relation('public', 'nokey');
  const v = c.relation('public', 'v', { kind: 'v' });
  c.dep('v', v, { rel: nokey });
  const vk = c.relation('public', 'vk', { kind: 'v' });
  c.dep('v', vk, { rel: keyed });
  const part = c.relation('public', 'part', { kind: 'p' });
  const leafA = c.relation('public', 'leaf_a');
  const leafB = c.relation('public', 'leaf_b');
  c.inherit(leafA, part);
  c.inherit(leafB, part);
  const ih = c.relation('public', 'ih');
  const ihChild = c.relation('public', 'ih_child');
  c.inherit(ihChild, ih);
  c.relation('public', 'mv', { kind: 'm' });
  c.published.set('pub', [keyed, leafA, leafB, ih]);
  const s = await CatalogSnapshot.load(c, 'pub');
  const ttl = await CatalogSnapshot.load(c);
  const no = (sql: string, table: string, snap = s) =>
    t.match(judgeRead(snap, facts(sql), PATH), { cacheable: false, reason: `public.${table} is not in publication pub: its changes are not streamed` }, sql);
  t.strictSame(judgeRead(s, facts('select * from keyed'), PATH), { cacheable: true, reason: '', dependsOn: ['keyed'] });
  no('select * from nokey', 'nokey');
  t.equal(judgeRead(ttl, facts('select * from nokey'), PATH).cacheable, true, 'ttl mode (no publication): cacheable as before');
  no('select * from v', 'nokey');
  t.strictSame(judgeRead(s, facts('select * from vk'), PATH).dependsOn.sort(), ['keyed', 'vk'], 'a view over published tables is cacheable');
  t.strictSame(judgeRead(s, facts('select * from part'), PATH).dependsOn.sort(), ['leaf_a', 'leaf_b', 'part'], 'a partitioned parent through its published leaves');
  no('select * from ih', 'ih_child');
  t.equal(judgeRead(s, facts('select * from keyed join nokey on true'), PATH).cacheable, false, 'one unpublished table in a join is enough');
  no('select * from mv', 'mv');
  c.published.set('pub', [keyed, leafA, ih, ihChild]);
  const s2 = await CatalogSnapshot.load(c, 'pub');
  t.not(s2.fingerprint, s.fingerprint, 'what the publication streams is part of the fingerprint');
  no('select * from part', 'leaf_b', s2);
  t.equal(judgeRead(s2, facts('select * from ih'), PATH).cacheable, true, 'an inheritance parent once its child is published');
});
