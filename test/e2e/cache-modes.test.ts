// The two modes of the cache (issue 14): with pgscribe's own catalog connection (catalog-user),
// what statements touch comes from the catalog; without it only what a cache-rules entry allows
// is cached. The start-up lines say which mode runs, and whether pgscribe's own login works.
import t, { type Test as Tap } from 'tap';
import type { Proxy } from '../harness/proxy';
import { USERS } from '../harness/pg-cluster';
import { clusterAndProxies } from '../helpers/fixture';
import { CATALOG_ARGS, waitLines } from '../helpers/cache';
import { value } from '../harness/wire';

const { pg, fx } = clusterAndProxies(t);
const USER = USERS.trust.user;
const READ = 'SELECT v FROM modes WHERE id = 1';

t.before(async () => {
  await pg().psql(`CREATE TABLE modes (id int PRIMARY KEY, v text); INSERT INTO modes VALUES (1, 'one'); GRANT SELECT ON modes TO ${USER}`);
});

/** Two reads of READ in two sessions; the log line of the second. */
async function readTwice(tt: Tap, p: Proxy): Promise<string> {
  for (let i = 0; i < 2; i++) {
    const c = await fx.session(p.port);
    tt.equal(value(await c.query(READ)), 'one', `read ${i + 1}: the row`);
  }
  const lines = await waitLines(p, `sql=${READ}`, 2);
  return lines[1]!;
}

t.test('without catalog-user: only what a rule allows; the start-up line says so', async (t) => {
  const p = await fx.launch(['--cache', '--cache-ttl', '60000']);
  t.match(p.stderr(), /INFO listening .* cache_mode="rules-only: no catalog-user, so only statements a cache-rules entry allows are cached or shared"/);
  t.notMatch(await readTwice(t, p), / cache=/, 'a read no rule names is relayed, outside the cache');
  const ruled = await fx.launch(['--cache', '--cache-ttl', '60000', '--cache-rules', '[{"pattern": "FROM modes", "ttl": 60000}]']);
  t.match(await readTwice(t, ruled), / Q cache=hit /, 'a read a rule allows is cached');
});

t.test('with catalog-user: the catalog decides; the start-up lines say the mode and that the login works', async (t) => {
  const p = await fx.launch(['--cache', '--cache-ttl', '60000', ...CATALOG_ARGS]);
  t.match(p.stderr(), /INFO listening .* cache_mode="catalog: what statements touch comes from PostgreSQL's catalog \(catalog-user postgres\)"/);
  const ok = await p.waitStderr(/INFO catalog: pgscribe's own connection works; the cache reads each database's catalog through it .*/);
  t.match(ok, /user=postgres database=postgres server="PostgreSQL 15/, 'who, where, and the server');
  t.match(await readTwice(t, p), / Q cache=hit /, 'the catalog clears the read: the second is a hit');
});

t.test('a catalog login that fails: said at start, and nothing is served from the cache', async (t) => {
  const p = await fx.launch(['--cache', '--cache-ttl', '60000', '--catalog-user', 'no_such_role']);
  const warn = await p.waitStderr(/WARN catalog: pgscribe's own connection fails; .*/);
  t.match(warn, /Check catalog-user and catalog-password user=no_such_role database=postgres reason=".*no_such_role.*"/, 'what, who, and the server\'s reason');
  t.notMatch(await readTwice(t, p), / cache=hit /, 'no answer from the cache without the catalog');
  await p.waitStderr(/WARN catalog: cannot read the catalog; answers of this database are not served from the cache until it can db=postgres user=no_such_role/);
});
