// Issue 14, finding 1: session state changed by server-side code (a function, a DO block, CALL, a
// fastpath FunctionCall) is neither in the cache key nor taints the session, so one session's
// answer is served to another whose state differs. The issue's example leaks rows across
// tenants: an RLS policy reads current_setting('app.tenant'), which a SQL function set_tenant()
// sets with set_config(); S1 and S2 set tenants 1 and 2, S1 reads the table, then S2 does.
//
// What PostgreSQL does: each session's state is its own. S2 sees tenant 2's row, a session that
// never ran SET ROLE sees its own login's rows, a temp table shadows the shared one in its own
// session only, and search_path and bytea_output changed in one session leave the others alone.
// The class covered here: set_config in a SQL function, in a plpgsql function, in a DO block and
// a procedure (CALL); SET app.tenant and SET ROLE inside DO; a temp table created in DO that
// shadows a shared table; search_path and bytea_output changed inside DO; and a fastpath
// FunctionCall (F message) of set_config for app.tenant, search_path and bytea_output. And what
// does not taint, so must be in the key: a plain SET of a custom setting (pg_settings does not
// list those), and a role default of one that changed between two sessions of the same login.
import t from 'tap';
import { USERS } from '../harness/pg-cluster';
import { BLOBS, OWNED, SHARED_AND_TENANT_A, issue14Suite, type Scenario, type Sess, type Target } from '../helpers/safe-cache';

const TENANTS = [
  'DROP TABLE IF EXISTS docs CASCADE',
  'CREATE TABLE docs (tenant int, body text)',
  "INSERT INTO docs VALUES (1, 'tenant 1 secret'), (2, 'tenant 2 secret')",
  'ALTER TABLE docs ENABLE ROW LEVEL SECURITY',
  "CREATE POLICY by_tenant ON docs USING (tenant = current_setting('app.tenant')::int)",
  'GRANT SELECT ON docs TO PUBLIC',
  'CREATE OR REPLACE FUNCTION set_tenant(int) RETURNS text LANGUAGE sql AS $$ SELECT set_config(\'app.tenant\', $1::text, false) $$',
  "CREATE OR REPLACE FUNCTION set_tenant_pl(t int) RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('app.tenant', t::text, false); END $$",
  "CREATE OR REPLACE PROCEDURE set_tenant_proc(t int) LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('app.tenant', t::text, false); END $$",
];

const READ_DOCS = 'SELECT body FROM docs ORDER BY body';

/** S1 becomes tenant 1 and S2 tenant 2 (by `become`), S1 reads, then S2 (through the other instance). */
function tenants(name: string, become: (x: Target, s: Sess, tenant: number) => Promise<unknown>): Scenario {
  return {
    name,
    setup: TENANTS,
    distinct: [['S1 (tenant 1) reads docs', 'S2 (tenant 2) reads docs']],
    async run(x) {
      const s1 = await x.session();
      const s2 = await x.session({ via: 1 });
      await become(x, s1, 1);
      await become(x, s2, 2);
      return {
        'S1 (tenant 1) reads docs': (await s1.q(READ_DOCS)).data,
        'S2 (tenant 2) reads docs': (await s2.q(READ_DOCS)).data,
      };
    },
  };
}

/** set_config's OID, asked of PostgreSQL (the same in both runs). */
let setConfigOid = 0;
async function fastpathSetConfig(x: Target, s: Sess, name: string, value: string): Promise<void> {
  if (setConfigOid === 0) setConfigOid = Number((await x.truth("SELECT 'set_config(text,text,boolean)'::regprocedure::oid")).value);
  await s.fastpath(setConfigOid, [name, value, 'false']);
}


/** S1 changes its own state (`change`), reads `read`; then S2, untouched, reads the same. */
function ownState(name: string, setup: readonly string[], read: string, change: (x: Target, s: Sess) => Promise<unknown>, user?: string): Scenario {
  return {
    name,
    setup,
    distinct: [['S1 (changed its state) reads', 'S2 (untouched) reads']],
    async run(x) {
      const s1 = await x.session(user === undefined ? {} : { user });
      const s2 = await x.session(user === undefined ? { via: 1 } : { user, via: 1 });
      await change(x, s1);
      return {
        'S1 (changed its state) reads': (await s1.q(read)).data,
        'S2 (untouched) reads': (await s2.q(read)).data,
      };
    },
  };
}

const scenarios: Scenario[] = [
  {
    // Two psql runs one after the other: the second cannot set its tenant before the first reads
    // (set_tenant() would invalidate the first one's answer), so it sets none and has its role's
    // default tenant 0, which sees no row.
    name: 'with psql: set_tenant(1) and a read, then a read in a session that set no tenant (role default 0)',
    setup: [...TENANTS, `ALTER ROLE ${USERS.trust.user} SET app.tenant = '0'`],
    teardown: [`ALTER ROLE ${USERS.trust.user} RESET app.tenant`],
    distinct: [['psql as tenant 1', 'psql with no tenant set (0)']],
    async run(x) {
      return {
        'psql as tenant 1': await x.psql(['SELECT set_tenant(1)', READ_DOCS]),
        'psql with no tenant set (0)': await x.psql([READ_DOCS], { via: 1 }),
      };
    },
  },
  tenants('set_config in a SQL function (the issue\'s example): tenant 2 never gets tenant 1\'s rows', (_x, s, n) => s.q(`SELECT set_tenant(${n})`)),
  tenants('set_config in a plpgsql function', (_x, s, n) => s.q(`SELECT set_tenant_pl(${n})`)),
  tenants('set_config in a DO block', (_x, s, n) => s.q(`DO $$ BEGIN PERFORM set_config('app.tenant', '${n}', false); END $$`)),
  tenants('SET app.tenant inside a DO block', (_x, s, n) => s.q(`DO $$ BEGIN SET app.tenant = ${n}; END $$`)),
  // Plain SET does not taint (the probe asks the session again), but custom settings are
  // placeholders pg_settings does not list: the probe must ask for app.tenant by name.
  tenants('plain SET app.tenant: the custom setting is asked for by name', (_x, s, n) => s.q(`SET app.tenant = ${n}`)),
  tenants('SET SESSION app.tenant in the extended protocol', (_x, s, n) => s.ext({ sql: `SET SESSION app.tenant = '${n}'` })),
  tenants('SET app.tenant then RESET ALL and SET again', async (_x, s, n) => {
    await s.q('SET app.tenant = 3');
    await s.q('RESET ALL');
    await s.q(`SET app.tenant TO ${n}`);
  }),
  {
    // A role default of a custom setting changes between two sessions of the same login: each
    // keeps the value it started with, and pg_settings lists neither.
    name: 'a role default of app.tenant changed between two sessions of one login',
    setup: [...TENANTS, "ALTER ROLE bob SET app.tenant = '1'"],
    teardown: ['ALTER ROLE bob RESET app.tenant'],
    distinct: [['S1 (started as tenant 1) reads docs', 'S2 (started as tenant 2) reads docs']],
    async run(x) {
      const s1 = await x.session({ user: 'bob' });
      const first = (await s1.q(READ_DOCS)).data;
      await x.catalogChange(async () => { await x.truth("ALTER ROLE bob SET app.tenant = '2'"); });
      const s2 = await x.session({ user: 'bob', via: 1 });
      return {
        'S1 first read': first,
        'S1 (started as tenant 1) reads docs': (await s1.q(READ_DOCS)).data,
        'S2 (started as tenant 2) reads docs': (await s2.q(READ_DOCS)).data,
      };
    },
  },
  {
    // The same, with the default RESET: the session started under it still has app.tenant,
    // which no default names any more; the later one has none (its read fails, 42704).
    name: 'a role default of app.tenant RESET between two sessions of one login',
    setup: [...TENANTS, "ALTER ROLE bob SET app.tenant = '1'"],
    teardown: ['ALTER ROLE bob RESET app.tenant'],
    errorsExpected: true,
    distinct: [['S1 (started as tenant 1) reads docs', 'S2 (started with no tenant) reads docs']],
    async run(x) {
      const s1 = await x.session({ user: 'bob' });
      const first = (await s1.q(READ_DOCS)).data;
      await x.catalogChange(async () => { await x.truth('ALTER ROLE bob RESET app.tenant'); });
      const s2 = await x.session({ user: 'bob', via: 1 });
      return {
        'S1 first read': first,
        'S1 (started as tenant 1) reads docs': (await s1.q(READ_DOCS)).data,
        'S2 (started with no tenant) reads docs': (await s2.q(READ_DOCS)).data,
      };
    },
  },
  tenants('set_config in a procedure (CALL)', (_x, s, n) => s.q(`CALL set_tenant_proc(${n})`)),
  tenants('set_config through a fastpath FunctionCall (F message)', (x, s, n) => fastpathSetConfig(x, s, 'app.tenant', String(n))),
  ownState(
    'SET ROLE inside DO: a later session of the same login does not get the role\'s RLS rows',
    OWNED,
    'SELECT body FROM owned ORDER BY body',
    (_x, s) => s.q('DO $$ BEGIN SET ROLE alice; END $$'),
    'bob',
  ),
  ownState(
    'a temp table created inside DO shadows a shared table in its own session only',
    ['DROP TABLE IF EXISTS shared_notes', 'CREATE TABLE shared_notes (body text)', "INSERT INTO shared_notes VALUES ('shared row')", 'GRANT SELECT ON shared_notes TO PUBLIC'],
    'SELECT body FROM shared_notes',
    (_x, s) => s.q("DO $$ BEGIN CREATE TEMP TABLE shared_notes (body text); INSERT INTO shared_notes VALUES ('private temp row'); END $$"),
  ),
  ownState('search_path changed inside DO', SHARED_AND_TENANT_A, 'SELECT body FROM sp_items', (_x, s) => s.q('DO $$ BEGIN SET search_path = tenant_a, public; END $$')),
  ownState('bytea_output changed inside DO', BLOBS, 'SELECT b FROM blobs', (_x, s) => s.q("DO $$ BEGIN SET bytea_output = 'escape'; END $$")),
  ownState('search_path changed by a fastpath FunctionCall of set_config', SHARED_AND_TENANT_A, 'SELECT body FROM sp_items', (x, s) => fastpathSetConfig(x, s, 'search_path', 'tenant_a, public')),
  ownState('bytea_output changed by a fastpath FunctionCall of set_config', BLOBS, 'SELECT b FROM blobs', (x, s) => fastpathSetConfig(x, s, 'bytea_output', 'escape')),
];

issue14Suite(t, {
  once: ['CREATE ROLE alice LOGIN', 'CREATE ROLE bob LOGIN', 'GRANT alice TO bob'],
  scenarios,
});
