/**
 * The reads the clients make, each with what the oracle needs to judge its answer: the family of
 * rows it returns (first three columns: id, tenant or owner, version; then any of f, b, tag), the
 * predicate that says which rows of the family it covers, or a special kind (settings, identity,
 * a volatile function called in attribute notation).
 *
 * The parameter spaces are small on purpose (tenants 1..4, a few ids): sessions repeat the same
 * statements, so pgscribe has answers to share.
 */
import type { Family, Model, ModelRow } from './model';
import { TENANTS } from './schema';
import type { SessionState } from './state';

export type ReadCheck =
  /** fam 'shelf': the family an unqualified `shelf` means for the session (state.ts shelfFamily). */
  | { type: 'rows'; fam: Family | 'shelf'; pred: (r: ModelRow) => boolean }
  | { type: 'settings' }
  | { type: 'tenant' }
  | { type: 'identity' }
  | { type: 'touch' };

export interface ReadSpec {
  name: string;
  /** With $n placeholders (extended protocol). */
  sql: string;
  params: string[];
  check: ReadCheck;
}

/** The statement as a simple query: the parameters inlined (integers bare, the rest quoted). */
export function inlineParams(sql: string, params: readonly string[]): string {
  return sql.replace(/\$(\d+)/g, (_, n: string) => {
    const v = params[Number(n) - 1];
    if (v === undefined) return 'NULL';
    return /^-?\d+$/.test(v) ? v : `'${v.replace(/'/g, "''")}'`;
  });
}

type Rng = () => number;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;

function tenantParam(rng: Rng, s: SessionState): number {
  if (s.tenant !== null && rng() < 0.7) return s.tenant;
  return 1 + Math.floor(rng() * TENANTS);
}

/** An id of the family, the seed ids more often (a hot set), sometimes one deleted since. */
function idParam(rng: Rng, model: Model, fam: Family): number {
  const ids = [...model.family(fam).keys()];
  const hot = ids.filter((i) => i < 10_000).slice(0, 12);
  return pick(rng, hot.length > 0 && rng() < 0.7 ? hot : ids);
}

const all = (): boolean => true;
const byTenant = (t: number) => (r: ModelRow) => r.tenant === t;

type Template = (rng: Rng, s: SessionState, m: Model) => ReadSpec;

function rowsRead(name: string, sql: string, params: (string | number)[], fam: Family | 'shelf', pred: (r: ModelRow) => boolean): ReadSpec {
  return { name, sql, params: params.map(String), check: { type: 'rows', fam, pred } };
}

const TEMPLATES: [number, Template][] = [
  [10, (r, s) => {
    const t = tenantParam(r, s);
    return rowsRead('items-by-tenant', 'SELECT id, tenant, ver, f, b FROM items WHERE tenant = $1 ORDER BY id', [t], 'items', byTenant(t));
  }],
  [6, (r, _s, m) => {
    const id = idParam(r, m, 'items');
    return rowsRead('items-by-id', 'SELECT id, tenant, ver FROM items WHERE id = $1', [id], 'items', (x) => x.id === id);
  }],
  [4, () => rowsRead('items-all', 'SELECT id, tenant, ver FROM items ORDER BY id', [], 'items', all)],
  [5, (r, s) => {
    const t = tenantParam(r, s);
    return rowsRead('view-by-tenant', 'SELECT id, tenant, ver FROM v_items WHERE tenant = $1 ORDER BY id', [t], 'items', byTenant(t));
  }],
  [0.3, (r, s) => {
    const t = tenantParam(r, s);
    return rowsRead('stable-function', 'SELECT id, tenant, ver FROM items_of($1) ORDER BY id', [t], 'items', byTenant(t));
  }],
  [6, () => rowsRead('trigger-totals', 'SELECT tenant AS id, tenant, ver FROM tenant_totals ORDER BY 1', [], 'totals', all)],
  [2, () => rowsRead('touches', 'SELECT tenant AS id, tenant, ver FROM touches ORDER BY 1', [], 'touches', all)],
  [3, () => rowsRead('partitioned-all', 'SELECT id, tenant, ver FROM meas ORDER BY id', [], 'meas', all)],
  [2, (r, s) => {
    const t = tenantParam(r, s);
    return rowsRead('partitioned-by-tenant', 'SELECT id, tenant, ver FROM meas WHERE tenant = $1 ORDER BY id', [t], 'meas', byTenant(t));
  }],
  [2, () => rowsRead('partition-1', 'SELECT id, tenant, ver FROM meas_p1 ORDER BY id', [], 'meas', (x) => x.tenant <= 2)],
  [2, () => rowsRead('partition-2', 'SELECT id, tenant, ver FROM meas_p2 ORDER BY id', [], 'meas', (x) => x.tenant > 2)],
  [2, () => rowsRead('partitioned-view', 'SELECT id, tenant, ver FROM v_meas ORDER BY id', [], 'meas', all)],
  [3, () => rowsRead('inheritance-parent', 'SELECT id, tenant, ver FROM animals ORDER BY id', [], 'animals', all)],
  [2, () => rowsRead('inheritance-only', 'SELECT id, tenant, ver FROM ONLY animals ORDER BY id', [], 'animals', (x) => x.attr === 'animal')],
  [2, () => rowsRead('inheritance-child', 'SELECT id, tenant, ver FROM dogs ORDER BY id', [], 'animals', (x) => x.attr === 'dog')],
  [2, (r, s) => {
    const t = tenantParam(r, s);
    return rowsRead('fk-parents', 'SELECT id, tenant, ver FROM parents WHERE tenant = $1 ORDER BY id', [t], 'parents', byTenant(t));
  }],
  [3, (r, s) => {
    const t = tenantParam(r, s);
    return rowsRead('fk-cascade-children', 'SELECT id, tenant, ver FROM children WHERE tenant = $1 ORDER BY id', [t], 'children', byTenant(t));
  }],
  [2, () => rowsRead('fk-set-null-links', 'SELECT id, tenant, ver FROM links ORDER BY id', [], 'links', all)],
  [4, () => rowsRead('rls-current-user', 'SELECT id, owner, ver FROM docs ORDER BY id', [], 'docs', all)],
  [4, () => rowsRead('search-path', 'SELECT id, tenant, ver, tag FROM shelf ORDER BY id', [], 'shelf', all)],
  [2, () => rowsRead('search-path-star', 'SELECT * FROM shelf ORDER BY id', [], 'shelf', all)],
  [1, () => rowsRead('qualified-s1', 'SELECT id, tenant, ver, tag, f FROM s1.shelf ORDER BY id', [], 'shelf1', all)],
  [1, () => rowsRead('qualified-s2', 'SELECT id, tenant, ver, tag FROM s2.shelf ORDER BY id', [], 'shelf2', all)],
  [3, () => rowsRead('matview', 'SELECT id, tenant, ver FROM mv_items ORDER BY id', [], 'mv', all)],
  [3, () => ({ name: 'identity', sql: 'SELECT current_schema(), current_user, session_user', params: [], check: { type: 'identity' } })],
  [2, () => ({
    name: 'settings',
    sql: "SELECT current_setting('app.tenant', true), current_setting('search_path'), current_setting('extra_float_digits'), current_setting('bytea_output')",
    params: [],
    check: { type: 'settings' },
  })],
  [0.3, () => ({ name: 'stable-setting-function', sql: 'SELECT current_tenant()', params: [], check: { type: 'tenant' } })],
  // A volatile function in attribute notation: it taints the session and drops the database's answers.
  [0.5, (r, _s, m) => ({ name: 'attribute-call', sql: 'SELECT i.id, i.touch FROM items i WHERE i.id = $1', params: [String(idParam(r, m, 'items'))], check: { type: 'touch' } })],
];

const TOTAL = TEMPLATES.reduce((a, [w]) => a + w, 0);

/** A random read for a session in state s. */
export function randomRead(rng: Rng, s: SessionState, m: Model): ReadSpec {
  let x = rng() * TOTAL;
  for (const [w, t] of TEMPLATES) {
    x -= w;
    if (x < 0) return t(rng, s, m);
  }
  return TEMPLATES[0]![1](rng, s, m);
}
