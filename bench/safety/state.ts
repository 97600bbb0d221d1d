/**
 * What a session is, as the checker knows it from what it did: the login role, the current role
 * (SET ROLE, also from inside a DO block), the tenant (app.tenant), search_path,
 * extra_float_digits and bytea_output, whichever way each was set (role default, startup option,
 * SET, set_config in a function, DO). PostgreSQL answers every statement under exactly these; so
 * must pgscribe.
 *
 * Also: which rows such a session may see, and how it formats floats and bytea.
 */
import type { Family, ModelRow } from './model';
import { SUPERUSER } from './schema';

export interface SessionState {
  login: string;
  role: string;
  tenant: number | null;
  /** As PostgreSQL shows it (current_setting): e.g. `s1, public`, `"$user", public`. */
  searchPath: string;
  efd: number;
  bytea: 'hex' | 'escape';
  /** The session made a temp table `shelf` (TEMP_SHELF): it shadows s1.shelf and s2.shelf. */
  tempShelf: boolean;
}

export const SERVER_DEFAULTS = { searchPath: '"$user", public', efd: 1, bytea: 'hex' as const };

/** The state a new session of `login` starts in, from its role defaults and startup options. */
export function initialState(login: string, defaults: Record<string, string>, options: Record<string, string>): SessionState {
  const d = { ...defaults, ...options };
  const tenant = d['app.tenant'];
  return {
    login,
    role: login,
    tenant: tenant === undefined || tenant === '' ? null : Number(tenant),
    searchPath: d['search_path'] ?? SERVER_DEFAULTS.searchPath,
    efd: d['extra_float_digits'] === undefined ? SERVER_DEFAULTS.efd : Number(d['extra_float_digits']),
    bytea: d['bytea_output'] === 'escape' ? 'escape' : 'hex',
    tempShelf: false,
  };
}

export function describeState(s: SessionState): string {
  return `login=${s.login} role=${s.role} tenant=${s.tenant ?? 'unset'} search_path='${s.searchPath}' efd=${s.efd} bytea_output=${s.bytea}${s.tempShelf ? ' temp-shelf' : ''}`;
}

/** Schemas that exist, in search_path order ("$user" names no schema here). */
function schemas(s: SessionState): string[] {
  return s.searchPath
    .split(',')
    .map((x) => x.trim().replace(/^"(.*)"$/, '$1'))
    .filter((x) => x === 's1' || x === 's2' || x === 'public');
}

/** What current_schema() gives. */
export function currentSchema(s: SessionState): string | null {
  return schemas(s)[0] ?? null;
}

/** The family an unqualified `shelf` means (null: none, the statement fails with 42P01). */
export function shelfFamily(s: SessionState): Family | null {
  if (s.tempShelf) return 'shelftmp'; // the temp schema comes first, listed or not
  for (const x of schemas(s)) {
    if (x === 's1') return 'shelf1';
    if (x === 's2') return 'shelf2';
  }
  return null;
}

/** Row-level security of each family: by app.tenant, by current_user, or none. */
export const VISIBILITY: Record<Family, 'tenant' | 'owner' | 'all'> = {
  items: 'tenant',
  totals: 'tenant',
  touches: 'all',
  parents: 'tenant',
  children: 'tenant',
  links: 'tenant',
  meas: 'tenant',
  animals: 'tenant',
  docs: 'owner',
  shelf1: 'all',
  shelf2: 'all',
  shelftmp: 'all',
  mv: 'all',
};

export function isSuperuser(s: SessionState): boolean {
  return s.role === SUPERUSER;
}

/** Whether a session in state s may see a row of family fam with this tenant / owner. */
export function maySee(s: SessionState, fam: Family, tenant: number, owner: string): boolean {
  if (isSuperuser(s)) return true;
  switch (VISIBILITY[fam]) {
    case 'tenant':
      return s.tenant !== null && tenant === s.tenant;
    case 'owner':
      return owner === s.role;
    case 'all':
      return true;
  }
}

export function maySeeRow(s: SessionState, r: ModelRow): boolean {
  return maySee(s, r.fam, r.tenant, r.attr);
}

/**
 * float8 output of id/3 under extra_float_digits: shortest exact above 0, else %.{15+efd}g.
 * (Values stay between 1/3 and ~10^5: no exponent notation on either side.)
 * @see https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-EXTRA-FLOAT-DIGITS
 */
export function floatText(id: number, efd: number): string {
  const v = id / 3;
  if (efd > 0) return String(v);
  return String(Number(v.toPrecision(Math.max(1, 15 + efd))));
}

/**
 * bytea output of int4send(id) under bytea_output.
 * @see https://www.postgresql.org/docs/current/datatype-binary.html
 */
export function byteaText(id: number, mode: 'hex' | 'escape'): string {
  const b = Buffer.alloc(4);
  b.writeInt32BE(id);
  if (mode === 'hex') return '\\x' + b.toString('hex');
  let out = '';
  for (const c of b) {
    if (c === 0x5c) out += '\\\\';
    else if (c >= 0x20 && c <= 0x7e) out += String.fromCharCode(c);
    else out += '\\' + c.toString(8).padStart(3, '0');
  }
  return out;
}
