// Issue 14, finding 2: role and database defaults are not in the cache key. After `ALTER ROLE r
// SET search_path = s2, public` (also extra_float_digits, role), a new session of r is served
// answers computed under the old settings, and an old session answers computed under the new
// ones. The same for ALTER DATABASE ... SET; for a search_path that starts with pg_temp (a plain
// CREATE TABLE then makes a temp table the classifier does not see as one), whether it comes
// from a role default or from the startup packet's options; and for ALTER SYSTEM followed by
// pg_reload_conf(), which changes the settings of sessions already open.
//
// What PostgreSQL does: role and database defaults apply to sessions that start after the ALTER
// (sessions already open keep their settings); pg_temp first in search_path makes CREATE TABLE
// create a temp table, private to its session; a reloaded setting applies to every session once
// it has processed the reload.
import t from 'tap';
import { sleep } from '../harness/time';
import { issue14Suite, type Observations, type Scenario, type Sess, type Target } from '../helpers/safe-cache';

const R = 'role_r';

/** Schema s2 with its own `items`, public.items, and the float and RLS tables. */
const OBJECTS = [
  `ALTER ROLE ${R} RESET ALL`,
  'DROP SCHEMA IF EXISTS s2 CASCADE',
  'DROP TABLE IF EXISTS items, floats, owned',
  'CREATE SCHEMA s2',
  'CREATE TABLE s2.items (body text)',
  "INSERT INTO s2.items VALUES ('s2 row')",
  'CREATE TABLE public.items (body text)',
  "INSERT INTO public.items VALUES ('public row')",
  'CREATE TABLE floats (x float8)',
  'INSERT INTO floats VALUES (0.1::float8 + 0.2::float8)',
  'CREATE TABLE owned (owner name, body text)',
  "INSERT INTO owned VALUES ('alice', 'alice row'), ('role_r', 'role_r row')",
  'ALTER TABLE owned ENABLE ROW LEVEL SECURITY',
  'CREATE POLICY mine ON owned USING (owner = current_user)',
  'GRANT USAGE ON SCHEMA s2 TO PUBLIC',
  'GRANT SELECT ON s2.items, public.items, floats, owned TO PUBLIC',
];

/**
 * An old session of r reads; `alter` runs (straight to PostgreSQL, or through pgscribe as the
 * superuser); a new session of r reads; the old one reads again.
 */
function roleDefault(name: string, alter: string, read: string, through: 'PostgreSQL' | 'pgscribe'): Scenario {
  return {
    name: `${name} (the ALTER sent ${through === 'pgscribe' ? 'through pgscribe' : 'straight to PostgreSQL'})`,
    setup: OBJECTS,
    teardown: [`ALTER ROLE ${R} RESET ALL`],
    distinct: [['old session, before', 'new session, after']],
    async run(x) {
      const old = await x.session({ user: R });
      const before = (await old.q(read)).data;
      if (through === 'pgscribe' || x.kind === 'direct') await (await x.session({ user: 'postgres' })).q(alter);
      else await x.truth(alter);
      const fresh = await x.session({ user: R, via: 1 });
      return {
        'old session, before': before,
        'new session, after': (await fresh.q(read)).data,
        'old session, after': (await old.q(read)).data,
      };
    },
  };
}

/** The same, with a database default: sessions of the trust user in database `dbdef`. */
function databaseDefault(through: 'PostgreSQL' | 'pgscribe'): Scenario {
  const read = 'SELECT body FROM items';
  const alter = 'ALTER DATABASE dbdef SET search_path = s2, public';
  return {
    name: `ALTER DATABASE SET search_path (sent ${through === 'pgscribe' ? 'through pgscribe' : 'straight to PostgreSQL'})`,
    setup: ['ALTER DATABASE dbdef RESET ALL', ...OBJECTS.slice(1)],
    setupDb: 'dbdef',
    teardown: ['ALTER DATABASE dbdef RESET ALL'],
    distinct: [['old session, before', 'new session, after']],
    async run(x) {
      const old = await x.session({ database: 'dbdef' });
      const before = (await old.q(read)).data;
      if (through === 'pgscribe' || x.kind === 'direct') await (await x.session({ user: 'postgres', database: 'dbdef' })).q(alter);
      else await x.truth(alter, 'dbdef');
      const fresh = await x.session({ database: 'dbdef', via: 1 });
      return {
        'old session, before': before,
        'new session, after': (await fresh.q(read)).data,
        'old session, after': (await old.q(read)).data,
      };
    },
  };
}

/**
 * search_path starts with pg_temp: S1's plain CREATE TABLE makes a temp table that shadows
 * public.scratch in S1 only; S2 (same settings, no temp table) reads the shared one.
 */
function pgTempFirst(name: string, setup: string[], params: Record<string, string>): Scenario {
  return {
    name,
    setup: ['DROP TABLE IF EXISTS scratch', 'CREATE TABLE scratch (body text)', "INSERT INTO scratch VALUES ('shared row')", 'GRANT SELECT ON scratch TO PUBLIC', ...setup],
    teardown: [`ALTER ROLE ${R} RESET ALL`],
    distinct: [['S1 reads scratch (its temp table)', 'S2 reads scratch (the shared table)']],
    async run(x) {
      const s1 = await x.session({ user: R, params });
      const s2 = await x.session({ user: R, params, via: 1 });
      await s1.q('CREATE TABLE scratch (body text)');
      await s1.q("INSERT INTO scratch VALUES ('S1 private row')");
      return {
        'S1 reads scratch (its temp table)': (await s1.q('SELECT body FROM scratch')).data,
        'S2 reads scratch (the shared table)': (await s2.q('SELECT body FROM scratch')).data,
      };
    },
  };
}

/** Wait until the session reports `value` for `setting` (it has processed the reload). */
async function waitSetting(s: Sess, setting: string, value: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if ((await s.q(`SHOW ${setting}`)).value === value) return;
    await sleep(10);
  }
  throw new Error(`${setting} never became ${value}`);
}

/**
 * ALTER SYSTEM and the reload, straight to PostgreSQL (pgscribe notices by polling the
 * catalog, which watches pg_conf_load_time()) or through pgscribe (it drops the cached answers
 * when they commit).
 */
const alterSystem = (through: 'PostgreSQL' | 'pgscribe'): Scenario => ({
  name: `ALTER SYSTEM SET bytea_output + pg_reload_conf() through ${through}: sessions open and new`,
  setup: ['ALTER SYSTEM RESET bytea_output', 'SELECT pg_reload_conf()', 'DROP TABLE IF EXISTS sysblobs', 'CREATE TABLE sysblobs (b bytea)', "INSERT INTO sysblobs VALUES ('\\x00ff41'::bytea)", 'GRANT SELECT ON sysblobs TO PUBLIC'],
  teardown: ['ALTER SYSTEM RESET bytea_output', 'SELECT pg_reload_conf()'],
  distinct: [['old session, before', 'old session, after the reload']],
  async run(x: Target): Promise<Observations> {
    const read = 'SELECT b FROM sysblobs';
    const old = await x.session();
    await waitSetting(old, 'bytea_output', 'hex');
    const before = (await old.q(read)).data;
    if (through === 'PostgreSQL') {
      await x.catalogChange(async () => {
        await x.truth("ALTER SYSTEM SET bytea_output = 'escape'");
        await x.truth('SELECT pg_reload_conf()');
      });
    } else {
      const su = await x.session({ user: 'postgres' });
      await su.q("ALTER SYSTEM SET bytea_output = 'escape'");
      await su.q('SELECT pg_reload_conf()');
    }
    await waitSetting(old, 'bytea_output', 'escape');
    const fresh = await x.session({ via: 1 });
    await waitSetting(fresh, 'bytea_output', 'escape');
    return {
      'old session, before': before,
      'old session, after the reload': (await old.q(read)).data,
      'new session, after the reload': (await fresh.q(read)).data,
    };
  },
});

const scenarios: Scenario[] = [];
for (const through of ['PostgreSQL', 'pgscribe'] as const) {
  scenarios.push(
    roleDefault('ALTER ROLE r SET search_path = s2, public', `ALTER ROLE ${R} SET search_path = s2, public`, 'SELECT body FROM items', through),
    roleDefault('ALTER ROLE r SET extra_float_digits = 0', `ALTER ROLE ${R} SET extra_float_digits = 0`, 'SELECT x FROM floats', through),
    roleDefault('ALTER ROLE r SET role = alice (RLS on current_user)', `ALTER ROLE ${R} SET role = alice`, 'SELECT body FROM owned ORDER BY body', through),
    databaseDefault(through),
  );
}
scenarios.push(
  pgTempFirst('search_path starting with pg_temp, from ALTER ROLE r SET search_path = pg_temp, public', [`ALTER ROLE ${R} SET search_path = pg_temp, public`], {}),
  pgTempFirst('search_path starting with pg_temp, from the startup options', [], { options: '-c search_path=pg_temp,public' }),
  alterSystem('PostgreSQL'),
  alterSystem('pgscribe'),
);

issue14Suite(t, {
  once: [`CREATE ROLE ${R} LOGIN`, 'CREATE ROLE alice LOGIN', `GRANT alice TO ${R}`, `GRANT CREATE ON SCHEMA public TO ${R}`, 'CREATE DATABASE dbdef'],
  scenarios,
});
