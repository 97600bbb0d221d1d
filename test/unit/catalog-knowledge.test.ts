// CatalogKnowledge over a canned catalog: not ready means every verdict is unknown; loads bump
// the generation and call the listeners; a poll reloads only when the fingerprint moved; a load
// during which the catalog changed starts over; a lost connection makes it not ready until a
// load succeeds; role and database defaults in precedence order.
import t from 'tap';
import { CatalogKnowledge } from '../../src/catalog/knowledge';
import { FINGERPRINT } from '../../src/catalog/queries';
import { analyzeSql } from '../../src/sql/classify';
import { FakeCatalog } from '../helpers/fake-catalog';

const PATH = ['pg_catalog', 'public'];
const read = analyzeSql('select * from t').facts;
const write = analyzeSql('update t set a = 1').facts;

t.test('not ready: every verdict unknown', async (t) => {
  const c = new FakeCatalog();
  c.relation('public', 't');
  c.failing = true;
  const k = new CatalogKnowledge(c, { pollMs: 0, onError: () => {} });
  t.equal(k.ready, false);
  t.strictSame(k.judgeRead(read, PATH), { cacheable: false, reason: 'catalog knowledge not ready', dependsOn: [] });
  t.equal(k.writeTargets(write, PATH), null);
  t.equal(k.callsOnlyStable(read, PATH), false);
  t.equal(k.defaultSettings('alice'), null);
  await k.start();
  t.equal(k.ready, false, 'the load failed');
  t.equal(k.generation, 0);
  k.stop();
});

t.test('loads, polls, refreshes, listeners', async (t) => {
  const c = new FakeCatalog();
  c.relation('public', 't');
  const k = new CatalogKnowledge(c, { pollMs: 0 });
  const seen: number[] = [];
  const off = k.onChange((g) => seen.push(g));
  await k.start();
  t.equal(k.ready, true);
  t.equal(k.generation, 1);
  t.strictSame(k.judgeRead(read, PATH), { cacheable: true, reason: '', dependsOn: ['t'] });
  t.strictSame(k.writeTargets(write, PATH), ['t']);
  t.equal(k.callsOnlyStable(read, PATH), true);

  const before = c.queries;
  await k.poll();
  t.equal(k.generation, 1, 'same fingerprint: no reload');
  t.equal(c.queries, before + 1, 'one fingerprint query');

  // Another connection adds a partition of t: the fingerprint moves, the poll reloads.
  c.inherit(c.relation('public', 't1'), k.snapshot!.relationsByName.get('t')![0]!.oid);
  c.fingerprint = 'fp-2';
  await k.poll();
  t.equal(k.generation, 2);
  t.strictSame(k.judgeRead(read, PATH).dependsOn.sort(), ['t', 't1']);

  await k.refresh();
  t.equal(k.generation, 3, 'refresh reloads whatever the fingerprint');
  t.strictSame(seen, [1, 2, 3]);
  off();
  await k.refresh();
  t.strictSame(seen, [1, 2, 3], 'unsubscribed');
  k.stop();
});

t.test('refreshes asked for while a load runs share one reload that begins after it', async (t) => {
  const c = new FakeCatalog();
  c.relation('public', 't');
  const k = new CatalogKnowledge(c, { pollMs: 0 });
  await k.start();
  let open!: () => void;
  c.gate = new Promise((resolve) => { open = resolve; });
  const first = k.refresh();
  const before = c.queries;
  while (c.queries === before) await new Promise((resolve) => setImmediate(resolve));
  c.relation('public', 'u'); // a DDL commits while that load reads the catalog
  const second = k.refresh();
  const third = k.refresh();
  t.equal(second, third, 'the refreshes queued behind the running load are one');
  t.not(first, second, 'the running load is not joined: it may have read the catalog before the DDL');
  c.gate = null;
  open();
  await Promise.all([first, second, third]);
  t.equal(k.generation, 3, 'two loads after the start, not three');
  t.equal(k.judgeRead(analyzeSql('select * from u').facts, PATH).cacheable, true, 'the last load saw the DDL');
  await k.refresh();
  t.equal(k.generation, 4, 'a refresh after they are over loads again');
  k.stop();
});

t.test('the timer polls until stopped', async (t) => {
  const c = new FakeCatalog();
  const k = new CatalogKnowledge(c, { pollMs: 5 });
  const bumped = new Promise<number>((resolve) => k.onChange((g) => { if (g === 2) resolve(g); }));
  // The poll timer is unref'd (it must not keep pgscribe alive): keep this test's loop alive.
  const alive = setInterval(() => {}, 1000);
  await k.start();
  c.fingerprint = 'fp-2';
  t.equal(await bumped, 2);
  k.stop();
  clearInterval(alive);
  const n = c.queries;
  await new Promise((r) => setTimeout(r, 30));
  t.equal(c.queries, n, 'no query after stop');
});

t.test('a load during which the catalog changed starts over', async (t) => {
  const c = new FakeCatalog();
  let fingerprints = 0;
  const query = c.query.bind(c);
  c.query = async (sql: string) => {
    if (sql === FINGERPRINT && ++fingerprints === 2) c.fingerprint = 'fp-moved'; // the second read, at the end of the first load
    return query(sql);
  };
  const k = new CatalogKnowledge(c, { pollMs: 0 });
  await k.start();
  t.equal(k.ready, true);
  t.equal(fingerprints, 4, 'two loads, each bracketed by the fingerprint');
  t.equal(k.snapshot!.fingerprint, 'pg_class:1:fp-moved');
  const always = new FakeCatalog();
  const q2 = always.query.bind(always);
  let n = 0;
  always.query = async (sql: string) => {
    if (sql === FINGERPRINT) always.fingerprint = `fp-${++n}`;
    return q2(sql);
  };
  const errors: Error[] = [];
  const k2 = new CatalogKnowledge(always, { pollMs: 0, onError: (e) => errors.push(e) });
  await k2.start();
  t.equal(k2.ready, false, 'never still: not ready');
  t.match(errors[0]?.message, /changed during each of 3 loads/);
});

t.test('a lost connection: not ready, the generation bumps, a later poll recovers', async (t) => {
  const c = new FakeCatalog();
  c.relation('public', 't');
  const errors: Error[] = [];
  const k = new CatalogKnowledge(c, { pollMs: 0, onError: (e) => errors.push(e) });
  await k.start();
  c.failing = true;
  await k.poll();
  t.equal(k.ready, false);
  t.equal(k.generation, 2, 'answers cached under the old knowledge can no longer be kept current');
  t.equal(k.judgeRead(read, PATH).cacheable, false);
  t.match(errors[0]?.message, /connection lost/);
  await k.poll();
  t.equal(k.generation, 2, 'still lost: no second bump');
  c.failing = false;
  await k.poll();
  t.equal(k.ready, true);
  t.equal(k.generation, 3);
  t.equal(k.judgeRead(read, PATH).cacheable, true);
});

t.test('role and database defaults, lowest precedence first', async (t) => {
  const c = new FakeCatalog();
  c.setting('', 'work_mem=8MB'); // the database's (or ALTER ROLE ALL)
  c.setting('alice', 'search_path=s2, public');
  c.setting('alice', 'extra_float_digits=0'); // alice in this database
  c.setting('bob', 'role=admin');
  const k = new CatalogKnowledge(c, { pollMs: 0 });
  await k.start();
  t.strictSame(k.defaultSettings('alice'), ['work_mem=8MB', 'search_path=s2, public', 'extra_float_digits=0']);
  t.strictSame(k.defaultSettings('carol'), ['work_mem=8MB']);
});
