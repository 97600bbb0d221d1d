// The safety checker's oracle (bench/safety/oracle.ts) on crafted answers: it must flag each kind
// of wrong answer and accept a right one, or the e2e run's "0 violations" would mean nothing.
import t from 'tap';
import type { Answer } from '../../bench/safety/conn';
import { decodeBinary } from '../../bench/safety/conn';
import { DELETED, Model } from '../../bench/safety/model';
import { judge } from '../../bench/safety/oracle';
import type { ReadSpec } from '../../bench/safety/reads';
import { byteaText, floatText, initialState, shelfFamily, type SessionState } from '../../bench/safety/state';

function answer(rows: (string | null)[][], cols: string[] = ['id', 'tenant', 'ver']): Answer {
  return { cols: cols.map((name) => ({ name, oid: 25 })), rows, tag: `SELECT ${rows.length}`, error: null, binary: false, binaryErrors: [] };
}

const itemsOfTenant = (tenant: number): ReadSpec => ({
  name: 'items-by-tenant',
  sql: 'SELECT id, tenant, ver FROM items WHERE tenant = $1 ORDER BY id',
  params: [String(tenant)],
  check: { type: 'rows', fam: 'items', pred: (r) => r.tenant === tenant },
});

function model(): Model {
  const m = new Model();
  m.seed('items', 1, 1, '', 10);
  m.seed('items', 2, 1, '', 11);
  m.seed('items', 3, 2, '', 12);
  return m;
}

const tenant1: SessionState = { ...initialState('app_c', {}, {}), tenant: 1 };
const kinds = (m: Model, spec: ReadSpec, a: Answer, start: number, s = tenant1): string[] =>
  judge(spec, s, a, start, start + 1, m).findings.map((f) => f.kind);

t.test('a right answer has no findings', async (t) => {
  const m = model();
  t.same(kinds(m, itemsOfTenant(1), answer([['1', '1', '10'], ['2', '1', '11']]), m.clock), []);
  t.same(kinds(m, itemsOfTenant(2), answer([]), m.clock), [], 'RLS hides tenant 2 from a tenant-1 session');
});

t.test('rows of another tenant are a leak', async (t) => {
  const m = model();
  t.same(kinds(m, itemsOfTenant(2), answer([['3', '2', '12']]), m.clock), ['leak-tenant']);
  const unset = { ...tenant1, tenant: null };
  t.ok(kinds(m, itemsOfTenant(1), answer([['1', '1', '10'], ['2', '1', '11']]), m.clock, unset).includes('leak-tenant'), 'any row, with app.tenant unset');
  const su = { ...tenant1, role: 'postgres' };
  t.same(kinds(m, itemsOfTenant(2), answer([['3', '2', '12']]), m.clock, su), [], 'the superuser sees every tenant');
});

t.test('versions older than an acknowledged commit are stale; reads sent before it are not judged by it', async (t) => {
  const m = model();
  const before = m.tick();
  m.ack([{ fam: 'items', id: 1, ver: 20 }]);
  const after = m.tick();
  const old = answer([['1', '1', '10'], ['2', '1', '11']]);
  t.same(kinds(m, itemsOfTenant(1), old, before), [], 'sent before the acknowledgement');
  t.same(kinds(m, itemsOfTenant(1), old, after), ['stale-version']);
  t.same(kinds(m, itemsOfTenant(1), answer([['1', '1', '21'], ['2', '1', '11']]), after), [], 'a later version');
});

t.test('deleted rows and missing rows', async (t) => {
  const m = model();
  m.ack([{ fam: 'items', id: 2, ver: DELETED }]);
  const s = m.tick();
  t.same(kinds(m, itemsOfTenant(1), answer([['1', '1', '10'], ['2', '1', '11']]), s), ['stale-deleted']);
  t.same(kinds(m, itemsOfTenant(1), answer([]), s), ['stale-missing'], 'item 1 exists');
  m.mayDelete([m.get('items', 1)!]);
  t.same(kinds(m, itemsOfTenant(1), answer([]), s), [], 'unless a delete of it was sent before the answer');
});

t.test('rows outside the statement, and rows of an insert that rolled back', async (t) => {
  const m = model();
  m.row('items', 99, 1, '').aborted = true;
  const byId: ReadSpec = { name: 'items-by-id', sql: 'SELECT id, tenant, ver FROM items WHERE id = $1', params: ['1'], check: { type: 'rows', fam: 'items', pred: (r) => r.id === 1 } };
  t.same(kinds(m, byId, answer([['1', '1', '10'], ['2', '1', '11']]), m.clock), ['wrong-rows']);
  t.same(kinds(m, itemsOfTenant(1), answer([['1', '1', '10'], ['2', '1', '11'], ['99', '1', '50']]), m.clock), ['dirty-read']);
});

t.test('search_path decides the schema; formats follow the session', async (t) => {
  const m = new Model();
  m.seed('shelf2', 800, 1, '', 5);
  const s2 = { ...tenant1, searchPath: 's2, public' };
  t.equal(shelfFamily(s2), 'shelf2');
  t.equal(shelfFamily({ ...tenant1, searchPath: 'public' }), null);
  const spec: ReadSpec = { name: 'search-path', sql: 'SELECT id, tenant, ver, tag FROM shelf', params: [], check: { type: 'rows', fam: 'shelf2', pred: () => true } };
  t.same(kinds(m, spec, answer([['800', '1', '5', 's2']], ['id', 'tenant', 'ver', 'tag']), m.clock, s2), []);
  t.ok(kinds(m, spec, answer([['700', '1', '5', 's1']], ['id', 'tenant', 'ver', 'tag']), m.clock, s2).includes('wrong-schema'));
  const unqualified: ReadSpec = { ...spec, check: { type: 'rows', fam: 'shelf', pred: () => true } };
  t.same(kinds(m, unqualified, answer([['800', '1', '5', 's2']], ['id', 'tenant', 'ver', 'tag']), m.clock, s2), [], 'shelf is s2.shelf under s2, public');
  t.same(kinds(m, unqualified, answer([]), m.clock, { ...tenant1, searchPath: 'public' }), ['wrong-schema'], 'rows where PostgreSQL says 42P01');

  t.equal(floatText(1, 0), '0.333333333333333');
  t.equal(floatText(1, 1), '0.3333333333333333');
  t.equal(floatText(2, -1), '0.66666666666667');
  t.equal(floatText(3, 0), '1');
  t.equal(byteaText(12, 'hex'), '\\x0000000c');
  t.equal(byteaText(0x5c41, 'escape'), '\\000\\000\\\\A');
  const m2 = model();
  const fspec: ReadSpec = { ...itemsOfTenant(1), check: { type: 'rows', fam: 'items', pred: (r) => r.id === 1 } };
  const row = (f: string, b: string): Answer => answer([['1', '1', '10', f, b]], ['id', 'tenant', 'ver', 'f', 'b']);
  t.same(kinds(m2, fspec, row('0.3333333333333333', '\\x00000001'), m2.clock), []);
  t.same(kinds(m2, fspec, row('0.333333333333333', '\\x00000001'), m2.clock), ['format-float'], 'efd 0 output for an efd 1 session');
  t.same(kinds(m2, fspec, row('0.3333333333333333', '\\000\\000\\000\\001'), m2.clock), ['format-bytea']);
});

t.test('identity and settings are the session own', async (t) => {
  const m = model();
  const s = { ...tenant1, role: 'viewer_x', searchPath: 's1, public' };
  const id: ReadSpec = { name: 'identity', sql: '', params: [], check: { type: 'identity' } };
  t.same(kinds(m, id, answer([['s1', 'viewer_x', 'app_c']]), m.clock, s), []);
  t.same(kinds(m, id, answer([['s1', 'app_c', 'app_c']]), m.clock, s), ['wrong-identity']);
  const set: ReadSpec = { name: 'settings', sql: '', params: [], check: { type: 'settings' } };
  t.same(kinds(m, set, answer([['1', 's1,public', '1', 'hex']]), m.clock, s), []);
  t.same(kinds(m, set, answer([['2', 's1, public', '1', 'hex']]), m.clock, s), ['wrong-setting']);
});

t.test('a volatile call answered without running is stale', async (t) => {
  const m = model();
  m.seed('touches', 1, 1, '', 30);
  const touch: ReadSpec = { name: 'attribute-call', sql: '', params: [], check: { type: 'touch' } };
  const ok = judge(touch, tenant1, answer([['1', '31']]), m.clock, m.clock + 1, m);
  t.same(ok.findings, []);
  t.same(ok.floors, [{ fam: 'touches', id: 1, ver: 31 }], 'its own write becomes a floor');
  t.same(kinds(m, touch, answer([['1', '30']]), m.clock), ['stale-call']);
});

t.test('binary values are decoded by type; a text value where binary was asked is flagged', async (t) => {
  const b8 = Buffer.alloc(8);
  b8.writeBigInt64BE(42n);
  t.equal(decodeBinary(20, b8), '42');
  t.equal(decodeBinary(23, Buffer.from('42')), null, 'two bytes are no int4');
  const d = Buffer.alloc(8);
  d.writeDoubleBE(1 / 3);
  t.equal(decodeBinary(701, d), String(1 / 3));
  t.equal(decodeBinary(17, Buffer.from([0, 1])), '\\x0001');
});
