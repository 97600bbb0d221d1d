/**
 * How sessions change what they are, in ways pgscribe can see (SET, RESET, set_config in the
 * statement text, startup options) and ways it cannot (a SQL function calling set_config, a DO
 * block running SET or set_config, SET ROLE inside DO), and how the admin changes role defaults
 * (ALTER ROLE ... SET / RESET) under live sessions. Each op says how the session's state changes
 * once PostgreSQL has said yes.
 */
import { alterRoleSet, APP_ROLES, GROUP_ROLES, SUPERUSER, TEMP_SHELF, TENANTS } from './schema';
import type { SessionState } from './state';

export interface SettingOp {
  name: string;
  sql: string;
  params: string[];
  /** Sent as a simple query (DO blocks, SET). */
  simpleOnly: boolean;
  apply(s: SessionState): void;
}

type Rng = () => number;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;

const PATHS = ['s1, public', 's2, public', 'public', 's2, s1, public'];
const EFDS = [-1, 0, 1, 2];

const doBlock = (body: string): string => `DO $$BEGIN ${body}; END$$`;

function tenantOp(rng: Rng): SettingOp {
  const t = rng() < 0.1 ? null : 1 + Math.floor(rng() * TENANTS);
  const v = t === null ? '' : String(t);
  const apply = (s: SessionState): void => {
    s.tenant = t;
  };
  // Mostly SET, as applications do; the other ways are what pgscribe cannot see through (each
  // taints the session and drops the database's answers), so they are the rarer ones.
  const x = rng();
  if (x < 0.7) return { name: 'tenant-set', sql: `SET app.tenant = '${v}'`, params: [], simpleOnly: true, apply };
  if (x < 0.8) return { name: 'tenant-set-config', sql: `SELECT set_config('app.tenant', '${v}', false)`, params: [], simpleOnly: false, apply };
  if (x < 0.9 && t !== null) return { name: 'tenant-function', sql: 'SELECT app_set_tenant($1)', params: [v], simpleOnly: false, apply };
  return { name: 'tenant-do', sql: doBlock(`PERFORM set_config('app.tenant', '${v}', false)`), params: [], simpleOnly: true, apply };
}

function pathOp(rng: Rng): SettingOp {
  const p = pick(rng, PATHS);
  const apply = (s: SessionState): void => {
    s.searchPath = p;
  };
  const how = Math.floor(rng() * 3);
  if (how === 0) return { name: 'search-path-set', sql: `SET search_path = ${p}`, params: [], simpleOnly: true, apply };
  if (how === 1) return { name: 'search-path-function', sql: 'SELECT app_set_path($1)', params: [p], simpleOnly: false, apply };
  return { name: 'search-path-do', sql: doBlock(`PERFORM set_config('search_path', '${p}', false)`), params: [], simpleOnly: true, apply };
}

function formatOp(rng: Rng): SettingOp {
  if (rng() < 0.5) {
    const v = pick(rng, EFDS);
    const apply = (s: SessionState): void => {
      s.efd = v;
    };
    if (rng() < 0.4) return { name: 'float-digits-set', sql: `SET extra_float_digits = ${v}`, params: [], simpleOnly: true, apply };
    return { name: 'float-digits-do', sql: doBlock(`SET extra_float_digits = ${v}`), params: [], simpleOnly: true, apply };
  }
  const v = rng() < 0.5 ? ('escape' as const) : ('hex' as const);
  const apply = (s: SessionState): void => {
    s.bytea = v;
  };
  if (rng() < 0.4) return { name: 'bytea-output-set', sql: `SET bytea_output = ${v}`, params: [], simpleOnly: true, apply };
  return { name: 'bytea-output-do', sql: doBlock(`SET bytea_output = ${v}`), params: [], simpleOnly: true, apply };
}

function roleOp(rng: Rng, s: SessionState): SettingOp {
  const targets: string[] = s.login === SUPERUSER ? [...APP_ROLES, ...GROUP_ROLES] : [...GROUP_ROLES];
  const reset = s.role !== s.login && rng() < 0.4;
  const target = reset ? s.login : pick(rng, targets);
  const apply = (x: SessionState): void => {
    x.role = target;
  };
  const stmt = reset ? 'RESET ROLE' : `SET ROLE ${target}`;
  if (rng() < 0.4) return { name: reset ? 'role-reset' : 'role-set', sql: stmt, params: [], simpleOnly: true, apply };
  return { name: reset ? 'role-reset-do' : 'role-set-do', sql: doBlock(stmt), params: [], simpleOnly: true, apply };
}

function tempOp(rng: Rng): SettingOp {
  const apply = (s: SessionState): void => {
    s.tempShelf = true;
  };
  if (rng() < 0.4) return { name: 'temp-table', sql: TEMP_SHELF, params: [], simpleOnly: true, apply };
  return { name: 'temp-table-do', sql: doBlock(TEMP_SHELF), params: [], simpleOnly: true, apply };
}

/** A random change of the session's state (only: of its tenant). */
export function randomSettingOp(rng: Rng, s: SessionState, only?: 'tenant'): SettingOp {
  if (only === 'tenant') return tenantOp(rng);
  const x = rng();
  if (x < 0.42) return tenantOp(rng);
  if (x < 0.62) return pathOp(rng);
  if (x < 0.8) return formatOp(rng);
  if (x < 0.95) return roleOp(rng, s);
  return tempOp(rng);
}

/** Startup options a new session may bring (they are in pgscribe's sight: the startup packet). */
export function randomStartupOptions(rng: Rng): Record<string, string> {
  const x = rng();
  if (x < 0.85) return {};
  const opt = pick(rng, ['app.tenant=3', 'extra_float_digits=0', 'search_path=s2,public', 'bytea_output=escape']);
  return { [opt.split('=')[0]!]: opt.split('=')[1]! };
}

/** What the admin may change under live sessions: role defaults of app_b and app_c. */
export interface RoleDefaultChange {
  role: string;
  key: string;
  /** null: RESET. */
  value: string | null;
  sql: string;
}

export function randomRoleDefaultChange(rng: Rng): RoleDefaultChange {
  const role = rng() < 0.7 ? 'app_c' : 'app_b';
  const key = pick(rng, ['search_path', 'app.tenant', 'extra_float_digits', 'bytea_output']);
  const values: Record<string, (string | null)[]> = {
    search_path: [...PATHS, null],
    'app.tenant': ['1', '2', '3', '4', null],
    extra_float_digits: ['-1', '0', '2', null],
    bytea_output: ['escape', null],
  };
  const value = pick(rng, values[key]!);
  const sql = value === null ? `ALTER ROLE ${role} RESET ${key}` : alterRoleSet(role, key, value);
  return { role, key, value, sql };
}

/** Mutual exclusion per role: a login and an ALTER ROLE of the same role never overlap. */
export class RoleLocks {
  private readonly tails = new Map<string, Promise<void>>();
  async with<T>(role: string, f: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(role) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    this.tails.set(role, prev.then(() => mine));
    await prev;
    try {
      return await f();
    } finally {
      release();
    }
  }
}
