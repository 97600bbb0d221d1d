// The cache speaks the protocol byte for byte: answers served from the cache are the bytes
// PostgreSQL sent, in the requesting client's shape; pipelined batches mixing hits, misses and
// writes come back as PostgreSQL would send them; prepared statements behave as if every request
// had reached the server (the statement ledger), and whatever the cache cannot answer is relayed.
import t from 'tap';
import { USERS } from '../harness/pg-cluster';
import { clusterAndProxies } from '../helpers/fixture';
import type { Proxy } from '../harness/proxy';
import { WORKER_MODES, extUnit, runUnit, wireBytes, cacheArgs, type UnitOptions } from '../helpers/cache';
import { RawClient, describeMessages, enc, errorsIn, i32, value } from '../harness/wire';

const { pg, fx } = clusterAndProxies(t);
const USER = USERS.trust.user;

t.before(async () => {
  await pg().psql(
    [
      'CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), tags text[], blob bytea, note text)',
      "INSERT INTO items SELECT g, 'item ' || g, g * 1.25, ARRAY['t' || g, 'x'], decode(md5(g::text), 'hex'), CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, 200) g",
      'CREATE TABLE big (id int, payload text)',
      "INSERT INTO big SELECT g, repeat('x', 1000) FROM generate_series(1, 300) g",
      `GRANT ALL ON items, big TO ${USER}`,
    ].join('; '),
  );
});

/** A direct session (no proxy) as the reference. */
async function direct(): Promise<RawClient> {
  const c = await RawClient.connect(pg().port);
  await c.startup(USER);
  return c;
}

async function cachedProxy(workers: number, extra: string[] = []): Promise<Proxy> {
  return fx.launch(['--cache', '--singleflight', '--cache-ttl', '3600000', ...cacheArgs(workers), ...extra]);
}

const SIMPLE = [
  'SELECT * FROM items WHERE id <= 20 ORDER BY id',
  'SELECT * FROM items WHERE id < 0',
  "SELECT name, price * 2 AS double, tags[1] FROM items WHERE name LIKE 'item 1%' ORDER BY id",
  'SELECT count(*), sum(price), max(name), min(blob::text) FROM items',
  'VALUES (1, NULL::text), (2, $$two$$)',
];

const EXTENDED: UnitOptions[] = [
  { sql: 'SELECT * FROM items WHERE id = $1', params: ['7'] },
  { sql: 'SELECT * FROM items WHERE id = $1', params: ['7'], describe: false },
  { sql: 'SELECT id, blob, price FROM items WHERE id BETWEEN $1 AND $2 ORDER BY id', params: ['10', '40'], resultFormats: [1] },
  { sql: 'SELECT id, name FROM items WHERE id = $1', params: [i32(12)], paramFormats: [1], resultFormats: [1, 0] },
  { sql: 'SELECT note FROM items WHERE id = $1 OR $2::text IS NULL', params: ['3', null] },
  { sql: 'SELECT * FROM items WHERE id < $1', params: ['-5'] },
];

for (const workers of WORKER_MODES) {
  const mode = `workers=${workers}`;

  t.test(`${mode}: answers from the cache are PostgreSQL's bytes`, async (t) => {
    const p = await cachedProxy(workers);
    const d = await direct();
    const a = await fx.session(p.port);
    const b = await fx.session(p.port);
    for (const q of SIMPLE) {
      const want = wireBytes(await d.query(q));
      t.ok(wireBytes(await a.query(q)).equals(want), `${q}: miss, relayed`);
      t.ok(wireBytes(await b.query(q)).equals(want), `${q}: hit, same bytes`);
    }
    for (const u of EXTENDED) {
      const what = `${u.sql} ${JSON.stringify(u.params)} describe=${u.describe !== false} formats=${JSON.stringify(u.resultFormats ?? [])}`;
      const want = wireBytes(await runUnit(d, u));
      t.ok(wireBytes(await runUnit(a, u)).equals(want), `${what}: miss`);
      t.ok(wireBytes(await runUnit(b, u)).equals(want), `${what}: hit`);
    }
    const s = await p.stats();
    t.equal(s['cache_hits'], SIMPLE.length + EXTENDED.length, 'every second read was a hit');
    d.sock.destroy();
  });

  t.test(`${mode}: a named prepared statement is answered in its own shape, also from an unnamed Parse's entry`, async (t) => {
    const p = await cachedProxy(workers);
    const d = await direct();
    const a = await fx.session(p.port);
    const sql = 'SELECT id, name FROM items WHERE id = $1';
    for (const c of [d, a]) {
      c.write(Buffer.concat([enc.parse('byid', sql), enc.sync()]));
      await c.readZ(1);
    }
    const viaParse = await fx.session(p.port);
    await runUnit(viaParse, { sql, params: ['9'] }); // stores the entry with ParseComplete first
    const want = wireBytes(await runUnit(d, { sql: null, statement: 'byid', params: ['9'] }));
    const got = await runUnit(a, { sql: null, statement: 'byid', params: ['9'] });
    t.equal(describeMessages(got), '2 T D C Z', 'no ParseComplete for a request without Parse');
    t.ok(wireBytes(got).equals(want), 'byte for byte');
    t.equal((await p.stats())['cache_hits'], 1, 'it was a hit');
  });

  t.test(`${mode}: pipelined hits, misses and writes come back in order, as PostgreSQL sends them`, async (t) => {
    const p = await cachedProxy(workers);
    const d = await direct();
    const warm = await fx.session(p.port);
    await warm.query(SIMPLE[0]!);
    await runUnit(warm, EXTENDED[0]!);
    const batch = Buffer.concat([
      enc.query(SIMPLE[0]!), // hit
      extUnit(EXTENDED[0]!), // hit
      enc.query('SELECT name FROM items WHERE id = 77'), // miss
      extUnit({ sql: 'UPDATE items SET note = $1 WHERE id = 150', params: ['pipelined'] }), // write
      enc.query('SELECT note FROM items WHERE id = 150'), // after the write
      extUnit(EXTENDED[2]!), // miss
      enc.query(SIMPLE[0]!), // hit again
    ]);
    const a = await fx.session(p.port);
    a.write(batch);
    const got = await a.readZ(7);
    d.write(batch);
    const want = await d.readZ(7);
    t.equal(describeMessages(got), describeMessages(want), 'same message sequence');
    t.ok(wireBytes(got).equals(wireBytes(want)), 'same bytes');
    t.ok(((await p.stats())['cache_hits'] ?? 0) >= 2, 'the batch did contain hits');
    d.sock.destroy();
  });

  t.test(`${mode}: the unnamed statement after a cached answer is what the client defined`, async (t) => {
    const p = await cachedProxy(workers);
    const d = await direct();
    const x = await fx.session(p.port);
    const y = await fx.session(p.port);
    const sql = 'SELECT name FROM items WHERE id = $1';
    await runUnit(x, { sql, params: ['5'] }); // x stores it
    // y's Parse is answered from the cache: PostgreSQL never saw it on y's connection.
    t.equal(value(await runUnit(y, { sql, params: ['5'] })), 'item 5', 'hit');
    // Bind to the unnamed statement without Parse, params not cached: goes upstream, where the
    // proxy first re-creates the statement; the client sees no extra ParseComplete.
    await runUnit(d, { sql, params: ['5'] });
    const want = await runUnit(d, { sql: null, statement: '', params: ['6'] });
    const got = await runUnit(y, { sql: null, statement: '', params: ['6'] });
    t.equal(describeMessages(got), describeMessages(want), `shape ${describeMessages(want)}`);
    t.ok(wireBytes(got).equals(wireBytes(want)), 'same bytes as PostgreSQL');
    t.equal(value(got), 'item 6');

    // A simple Query destroys the unnamed statement; after a cached one, Bind must fail as in PostgreSQL.
    await x.query('SELECT 1 AS one');
    t.equal(value(await y.query('SELECT 1 AS one')), '1', 'simple query answered from the cache');
    await d.query('SELECT 1 AS one');
    const wantErr = errorsIn(await runUnit(d, { sql: null, statement: '', params: ['6'] }))[0]?.['C'];
    const gotErr = errorsIn(await runUnit(y, { sql: null, statement: '', params: ['6'] }))[0]?.['C'];
    t.equal(wantErr, '26000', 'PostgreSQL: the unnamed statement is gone');
    t.equal(gotErr, wantErr, 'through the cache: the same error');
    t.equal(value(await y.query('SELECT 2')), '2', 'the session goes on');
    d.sock.destroy();
  });

  t.test(`${mode}: statements PostgreSQL does not have are never answered from the cache`, async (t) => {
    const p = await cachedProxy(workers);
    const a = await fx.session(p.port);
    const sql = 'SELECT name FROM items WHERE id = $1';
    const prep = async (name: string, text: string) => {
      a.write(Buffer.concat([enc.parse(name, text), enc.sync()]));
      return a.readZ(1);
    };
    await prep('s', sql);
    t.equal(value(await runUnit(a, { sql: null, statement: 's', params: ['4'] })), 'item 4', 'miss, stored');
    t.equal(value(await runUnit(a, { sql: null, statement: 's', params: ['4'] })), 'item 4', 'hit');
    await a.query('DEALLOCATE s');
    t.equal(errorsIn(await runUnit(a, { sql: null, statement: 's', params: ['4'] }))[0]?.['C'], '26000', 'after DEALLOCATE: does not exist');
    await prep('s', sql);
    a.write(Buffer.concat([enc.close('S', 's'), enc.sync()]));
    await a.readZ(1);
    t.equal(errorsIn(await runUnit(a, { sql: null, statement: 's', params: ['4'] }))[0]?.['C'], '26000', 'after Close: does not exist');
    // A Parse that failed leaves no statement, even if the same text works elsewhere later.
    const later = `later_${workers}`;
    t.equal(errorsIn(await prep('late', `SELECT v FROM ${later} WHERE id = $1`))[0]?.['C'], '42P01', 'Parse fails: no table yet');
    await pg().psql(`CREATE TABLE ${later} (id int, v text); INSERT INTO ${later} VALUES (1, 'one'); GRANT SELECT ON ${later} TO ${USER}`);
    const other = await fx.session(p.port);
    await runUnit(other, { sql: `SELECT v FROM ${later} WHERE id = $1`, params: ['1'] }); // now cached
    t.equal(errorsIn(await runUnit(a, { sql: null, statement: 'late', params: ['1'] }))[0]?.['C'], '26000', 'Bind of the failed statement: does not exist');
    await prep('dup', sql);
    t.equal(errorsIn(await prep('dup', 'SELECT 2'))[0]?.['C'], '42P05', 'a second Parse of a name fails...');
    t.equal(value(await runUnit(a, { sql: null, statement: 'dup', params: ['8'] })), 'item 8', '...and the first definition is still what runs');
  });

  t.test(`${mode}: requests the cache does not take are relayed untouched`, async (t) => {
    const p = await cachedProxy(workers);
    const d = await direct();
    const a = await fx.session(p.port);
    const sql = 'SELECT id FROM items WHERE id <= $1 ORDER BY id';
    const cases: [string, Buffer, number][] = [
      ['Execute with a row limit', Buffer.concat([enc.parse('', sql), enc.bind('', '', ['5']), enc.execute('', 2), enc.sync()]), 1],
      ['Describe of the statement', Buffer.concat([enc.parse('', sql), enc.describe('S', ''), enc.bind('', '', ['3']), enc.execute(''), enc.sync()]), 1],
      ['named Parse and Bind in one unit', Buffer.concat([enc.parse('n1', sql), enc.bind('', 'n1', ['3']), enc.execute(''), enc.sync()]), 1],
      ['Flush before Sync', Buffer.concat([enc.parse('', sql), enc.bind('', '', ['2']), enc.execute(''), enc.flush(), enc.sync()]), 1],
      ['two Executes', Buffer.concat([enc.parse('', sql), enc.bind('', '', ['2']), enc.execute('', 1), enc.execute('', 1), enc.sync()]), 1],
      ['multi-statement Query', enc.query('SELECT 1; SELECT 2'), 1],
      ['empty Query', enc.query(''), 1],
      ['Query with a syntax error', enc.query('SELEC 1'), 1],
    ];
    for (const [what, bytes, z] of cases) {
      for (let i = 0; i < 2; i++) {
        d.write(bytes);
        const want = await d.readZ(z);
        a.write(bytes);
        const got = await a.readZ(z);
        t.ok(wireBytes(got).equals(wireBytes(want)), `${what} (${i + 1}): ${describeMessages(want)}`);
      }
    }
    t.equal((await p.stats())['cache_hits'], 0, 'none of them was answered from the cache');
    d.sock.destroy();
  });

  t.test(`${mode}: answers over --cache-max-entry-bytes are neither stored nor shared, and still right`, async (t) => {
    const p = await cachedProxy(workers, ['--cache-max-entry-bytes', '65536']);
    const a = await fx.session(p.port);
    const q = 'SELECT * FROM big ORDER BY id';
    for (let i = 0; i < 3; i++) {
      const r = await a.query(q);
      t.equal(r.filter((m) => m.type === 'D').length, 300, `read ${i + 1}: all rows`);
    }
    const s = await p.stats();
    t.equal(s['cache_hits'], 0, 'no hit');
    t.equal(s['cache_stores'], 0, 'nothing stored');
    t.ok((s['cache_bypasses'] ?? 0) >= 1, 'later reads bypass the layer');
  });

  t.test(`${mode}: counters are printed on SIGUSR2 and at exit`, async (t) => {
    const p = await cachedProxy(workers);
    const a = await fx.session(p.port);
    await a.query('SELECT 1');
    await a.query('SELECT 1');
    const s = await p.stats();
    for (const k of ['cache_hits', 'cache_misses', 'cache_waiters', 'cache_stores', 'cache_evictions', 'cache_invalidations']) {
      t.ok(k in s, `SIGUSR2 stats has ${k}`);
    }
    t.equal(s['cache_hits'], 1);
    t.equal(s['cache_misses'], 1);
    a.sock.destroy();
    await fx.stopProxy(p);
    t.match(p.stderr(), /INFO shutdown complete .*cache_hits=1 cache_misses=1 .*cache_stores=1/, 'at exit');
  });
}
