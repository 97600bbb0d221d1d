/**
 * The writes the clients make, as plans: which rows to lock first (so that the versions read back
 * later are this transaction's own), the write itself (through a table, a view, a partition or its
 * parent, an inheritance parent or child, a function, a DO block, a cascading delete), which
 * locked rows it may delete, which rows it inserts, and which rows a trigger changes as a side
 * effect. writes.ts runs a plan in a transaction and acknowledges what it read back.
 */
import type { Family, Model, ModelRow } from './model';
import { DELETED } from './model';
import { TENANTS, VERSION_BUMP } from './schema';
import { isSuperuser, maySeeRow, shelfFamily, type SessionState } from './state';

/** Where each family's rows are read back: relation and key column. */
export const FAMILY_TABLE: Record<Family, [string, string]> = {
  items: ['items', 'id'],
  totals: ['tenant_totals', 'tenant'],
  touches: ['touches', 'tenant'],
  parents: ['parents', 'id'],
  children: ['children', 'id'],
  links: ['links', 'id'],
  meas: ['meas', 'id'],
  animals: ['animals', 'id'],
  docs: ['docs', 'id'],
  shelf1: ['s1.shelf', 'id'],
  shelf2: ['s2.shelf', 'id'],
  shelftmp: ['pg_temp.shelf', 'id'],
  mv: ['mv_items', 'id'],
};

export interface NewRow {
  fam: Family;
  id: number;
  tenant: number;
  attr: string;
}

export interface Plan {
  name: string;
  /** Statements run first, each returning (family, id, tenant, attr) of the rows it locked FOR UPDATE. */
  locks: string[];
  /** The write; `$n` placeholders unless simpleOnly. */
  sql: string;
  params: string[];
  /** DO blocks and the like: sent as a simple query. */
  simpleOnly?: boolean;
  /** Families whose locked rows the write may delete. */
  deletes: Family[];
  inserts: NewRow[];
  /** Rows a trigger changes when the write changes anything: read back too. */
  sideEffects: { fam: Family; id: number }[];
  /** Every row of this family is read back (a REFRESH): those not there were deleted. */
  whole?: Family;
  /** The write is a plain UPDATE of one family: may run outside a transaction, with RETURNING id, ver. */
  autocommit?: Family;
}

type Rng = () => number;
const pick = <T>(rng: Rng, xs: readonly T[]): T | undefined => xs[Math.floor(rng() * xs.length)];

function live(model: Model, s: SessionState, fam: Family, filter: (r: ModelRow) => boolean = () => true): ModelRow[] {
  const out: ModelRow[] = [];
  for (const r of model.family(fam).values()) {
    const f = model.floor(r, model.clock);
    if (f === null || f === DELETED || r.firstDeleteSend !== null || r.aborted) continue;
    if (maySeeRow(s, r) && filter(r)) out.push(r);
  }
  return out;
}

/** Locks rows FOR UPDATE; returns family, id, tenant and attr (model.ts) of each. */
function lockSql(fam: Family, where: string): string {
  const [table, key] = FAMILY_TABLE[fam];
  const tenant = fam === 'docs' ? '0' : 'tenant';
  const attr = fam === 'docs' ? 'owner::text' : fam === 'animals' ? 'kind' : "''";
  return `SELECT '${fam}', ${key}, ${tenant}, ${attr} FROM ${table} WHERE ${where} FOR UPDATE`;
}

/** The tenant a new row gets: the session's own (any for the superuser). */
function newTenant(rng: Rng, s: SessionState): number | null {
  if (isSuperuser(s)) return 1 + Math.floor(rng() * TENANTS);
  return s.tenant;
}

function plan(p: Partial<Plan> & Pick<Plan, 'name' | 'sql'>): Plan {
  return { locks: [], params: [], deletes: [], inserts: [], sideEffects: [], ...p };
}

type Maker = (rng: Rng, s: SessionState, m: Model) => Plan | null;

const itemWrite = (name: string, sql: (id: number) => string, opts: { simpleOnly?: boolean; autocommit?: boolean; deletes?: boolean } = {}): Maker => (rng, s, m) => {
  const r = pick(rng, live(m, s, 'items'));
  if (r === undefined) return null;
  return plan({
    name,
    locks: [lockSql('items', `id = ${r.id}`)],
    sql: sql(r.id),
    params: opts.simpleOnly ? [] : [String(r.id)],
    ...(opts.simpleOnly ? { simpleOnly: true } : {}),
    ...(opts.autocommit ? { autocommit: 'items' as const } : {}),
    deletes: opts.deletes ? ['items'] : [],
    sideEffects: [{ fam: 'totals', id: r.tenant }],
  });
};

// Writes of items (and whatever else has a trigger) drop the whole database's answers (pgscribe
// cannot see what a trigger does): they are a fifth of the writes, not more, or few answers would
// live long enough to be judged.
const MAKERS: [number, Maker][] = [
  [2, itemWrite('item-update', () => 'UPDATE items SET qty = qty + 1 WHERE id = $1', { autocommit: true })],
  [2, itemWrite('item-update-view', () => 'UPDATE v_items SET qty = qty + 1 WHERE id = $1')],
  [0.5, itemWrite('item-update-function', () => 'SELECT bump_item($1)')],
  [0.5, itemWrite('item-update-do', (id) => `DO $$BEGIN UPDATE items SET qty = qty + 1 WHERE id = ${id}; END$$`, { simpleOnly: true })],
  [1.5, itemWrite('item-delete', () => 'DELETE FROM items WHERE id = $1', { deletes: true })],
  [2, (rng, s, m) => {
    const t = newTenant(rng, s);
    if (t === null) return null;
    const id = m.newId();
    const via = rng() < 0.5 ? 'items' : 'v_items';
    return plan({ name: `item-insert-${via}`, sql: `INSERT INTO ${via} (id, tenant) VALUES ($1, $2)`, params: [String(id), String(t)], inserts: [{ fam: 'items', id, tenant: t, attr: '' }], sideEffects: [{ fam: 'totals', id: t }] });
  }],
  [3, (rng, s, m) => {
    const t = newTenant(rng, s);
    if (t === null) return null;
    const id = m.newId();
    const via = rng() < 0.5 ? 'meas' : t <= 2 ? 'meas_p1' : 'meas_p2';
    return plan({ name: `partition-insert-${via === 'meas' ? 'parent' : 'partition'}`, sql: `INSERT INTO ${via} (id, tenant) VALUES ($1, $2)`, params: [String(id), String(t)], inserts: [{ fam: 'meas', id, tenant: t, attr: '' }] });
  }],
  [5, (rng, s, m) => {
    const r = pick(rng, live(m, s, 'meas'));
    if (r === undefined) return null;
    const part = r.tenant <= 2 ? 'meas_p1' : 'meas_p2';
    const how = rng() < 0.05 ? 2 : rng() < 0.5 ? 0 : 1;
    const base = { locks: [lockSql('meas', `id = ${r.id}`)], params: [String(r.id)] };
    if (how === 0) return plan({ ...base, name: 'partition-update-partition', sql: `UPDATE ${part} SET val = val + 1, ${VERSION_BUMP} WHERE id = $1`, autocommit: 'meas' });
    if (how === 1) return plan({ ...base, name: 'partition-update-parent', sql: `UPDATE meas SET val = val + 1, ${VERSION_BUMP} WHERE id = $1`, autocommit: 'meas' });
    return plan({ ...base, name: 'partition-update-do', params: [], simpleOnly: true, sql: `DO $$BEGIN UPDATE ${part} SET val = val + 1, ${VERSION_BUMP} WHERE id = ${r.id}; END$$` });
  }],
  [2, (rng, s, m) => {
    const r = pick(rng, live(m, s, 'meas'));
    if (r === undefined) return null;
    const via = rng() < 0.5 ? 'meas' : r.tenant <= 2 ? 'meas_p1' : 'meas_p2';
    return plan({ name: `partition-delete-${via === 'meas' ? 'parent' : 'partition'}`, locks: [lockSql('meas', `id = ${r.id}`)], sql: `DELETE FROM ${via} WHERE id = $1`, params: [String(r.id)], deletes: ['meas'] });
  }],
  [5, (rng, s, m) => {
    const r = pick(rng, live(m, s, 'animals'));
    if (r === undefined) return null;
    const viaChild = r.attr === 'dog' && rng() < 0.5;
    const sql = viaChild ? `UPDATE dogs SET breed = 'b' || ver, ${VERSION_BUMP} WHERE id = $1` : `UPDATE animals SET legs = legs + 1, ${VERSION_BUMP} WHERE id = $1`;
    return plan({ name: viaChild ? 'inheritance-update-child' : `inheritance-update-parent-${r.attr}`, locks: [lockSql('animals', `id = ${r.id}`)], sql, params: [String(r.id)], autocommit: 'animals' });
  }],
  [2, (rng, s, m) => {
    const t = newTenant(rng, s);
    if (t === null) return null;
    const id = m.newId();
    const dog = rng() < 0.5;
    return plan({ name: `inheritance-insert-${dog ? 'child' : 'parent'}`, sql: `INSERT INTO ${dog ? 'dogs' : 'animals'} (id, tenant) VALUES ($1, $2)`, params: [String(id), String(t)], inserts: [{ fam: 'animals', id, tenant: t, attr: dog ? 'dog' : 'animal' }] });
  }],
  [2, (rng, s, m) => {
    const r = pick(rng, live(m, s, 'animals'));
    if (r === undefined) return null;
    return plan({ name: 'inheritance-delete-parent', locks: [lockSql('animals', `id = ${r.id}`)], sql: 'DELETE FROM animals WHERE id = $1', params: [String(r.id)], deletes: ['animals'] });
  }],
  [3, (rng, s, m) => {
    const p = pick(rng, live(m, s, 'parents'));
    if (p === undefined) return null;
    return plan({
      name: 'fk-delete-cascade',
      // The parent first: children and links of it cannot be added meanwhile (their FK check waits).
      locks: [lockSql('parents', `id = ${p.id}`), lockSql('children', `parent_id = ${p.id}`), lockSql('links', `parent_id = ${p.id}`)],
      sql: 'DELETE FROM parents WHERE id = $1',
      params: [String(p.id)],
      deletes: ['parents', 'children'],
    });
  }],
  [4, (rng, s, m) => {
    const t = newTenant(rng, s);
    if (t === null) return null;
    const id = m.newId();
    const what = Math.floor(rng() * 3);
    if (what === 0) return plan({ name: 'fk-insert-parent', sql: 'INSERT INTO parents (id, tenant) VALUES ($1, $2)', params: [String(id), String(t)], inserts: [{ fam: 'parents', id, tenant: t, attr: '' }] });
    const p = pick(rng, live(m, s, 'parents', (x) => x.tenant === t));
    if (p === undefined) return null;
    const fam: Family = what === 1 ? 'children' : 'links';
    return plan({ name: `fk-insert-${fam}`, sql: `INSERT INTO ${fam} (id, tenant, parent_id) VALUES ($1, $2, $3)`, params: [String(id), String(t), String(p.id)], inserts: [{ fam, id, tenant: t, attr: '' }] });
  }],
  [2, (rng, s, m) => {
    const fam: Family = rng() < 0.5 ? 'children' : 'links';
    const r = pick(rng, live(m, s, fam));
    if (r === undefined) return null;
    return plan({ name: `fk-update-${fam}`, locks: [lockSql(fam, `id = ${r.id}`)], sql: `UPDATE ${fam} SET tenant = tenant, ${VERSION_BUMP} WHERE id = $1`, params: [String(r.id)], autocommit: fam });
  }],
  [3, (rng, s, m) => {
    const r = pick(rng, live(m, s, 'docs'));
    if (r === undefined) return null;
    return plan({ name: 'rls-owner-update', locks: [lockSql('docs', `id = ${r.id}`)], sql: `UPDATE docs SET body = 'x', ${VERSION_BUMP} WHERE id = $1`, params: [String(r.id)], autocommit: 'docs' });
  }],
  [4, (rng, s, m) => {
    const sf = shelfFamily(s);
    const unq = sf === 'shelftmp' ? null : sf; // the session's own temp table is not written
    const qualified = unq === null || rng() < 0.4;
    const fam: Family = unq === null || qualified ? (rng() < 0.5 ? 'shelf1' : 'shelf2') : unq;
    const r = pick(rng, live(m, s, fam));
    if (r === undefined) return null;
    const table = qualified ? FAMILY_TABLE[fam][0] : 'shelf';
    return plan({ name: qualified ? 'schema-update-qualified' : 'schema-update-search-path', locks: [lockSql(fam, `id = ${r.id}`)], sql: `UPDATE ${table} SET tenant = tenant, ${VERSION_BUMP} WHERE id = $1`, params: [String(r.id)], autocommit: fam });
  }],
  [0.5, () => plan({ name: 'matview-refresh-function', sql: 'SELECT refresh_mv()', whole: 'mv' })],
];

const TOTAL = MAKERS.reduce((a, [w]) => a + w, 0);

/** A random write a session in state s can make (null: none fits its state now). */
export function randomPlan(rng: Rng, s: SessionState, m: Model): Plan | null {
  let x = rng() * TOTAL;
  for (const [w, make] of MAKERS) {
    x -= w;
    if (x < 0) return make(rng, s, m);
  }
  return null;
}

/** The admin's REFRESH, as a plan (run as the table owner). */
export const REFRESH_PLAN: Plan = plan({ name: 'matview-refresh', sql: 'REFRESH MATERIALIZED VIEW mv_items', simpleOnly: true, whole: 'mv' });
