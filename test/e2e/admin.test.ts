// The admin HTTP server (--admin) of the real proxy in front of a real PostgreSQL: Prometheus
// text that parses and moves with a known workload, /queries against pg_stat_statements after
// pgbench, /health both ways, the token, the cache flush.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { USERS } from '../harness/pg-cluster';
import { run } from '../harness/run';
import { clusterAndProxies } from '../helpers/fixture';
import { MAIN, type Proxy } from '../harness/proxy';
import { enc } from '../harness/wire';
import { dumpDom, findChromium, screenshot } from '../harness/chromium';
import { parseProm, value } from '../helpers/prom';
import { CATALOG_ARGS } from '../helpers/cache';

const USER = USERS.trust.user;

const { pg, fx } = clusterAndProxies(t);
const { launch, stopProxy, session } = fx;

interface Admin {
  p: Proxy;
  base: string;
  get(path: string, headers?: Record<string, string>): Promise<{ status: number; text: string; type: string | null }>;
  json<T = Record<string, unknown>>(path: string): Promise<T>;
}

async function withAdmin(args: string[] = [], token = '', upstreamPort?: number): Promise<Admin> {
  const p = await launch(['--admin', '127.0.0.1:0', ...(token ? ['--admin-token', token] : []), ...args], upstreamPort);
  const line = await p.waitStderr(/admin server listening admin=http:\/\/127\.0\.0\.1:(\d+)\//);
  const base = `http://127.0.0.1:${/:(\d+)\/$/.exec(line)![1]}`;
  const auth: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const get = async (path: string, headers: Record<string, string> = auth, method = 'GET') => {
    const r = await fetch(base + path, { method, headers });
    return { status: r.status, text: await r.text(), type: r.headers.get('content-type') };
  };
  return {
    p,
    base,
    get,
    async json<T>(path: string) {
      const r = await get(path);
      if (r.status !== 200) throw new Error(`${path}: ${r.status} ${r.text}`);
      return JSON.parse(r.text) as T;
    },
  };
}


t.test('the Prometheus parser of this test rejects what it must', async (tt) => {
  tt.throws(() => parseProm('x 1\n'), /before its TYPE/);
  tt.throws(() => parseProm('# HELP x h\n# TYPE x counter\nx -1\n'), /negative counter/);
  tt.throws(() => parseProm('# HELP x h\n# TYPE x counter\nx{a=b} 1\n'), /bad label/);
  tt.throws(() => parseProm('# HELP x h\n# TYPE x counter\nx 1'), /newline/);
  tt.throws(() => parseProm('# HELP h h\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'), /not cumulative/);
});

t.test('/metrics parses and its counters move with a known workload', async (tt) => {
  const a = await withAdmin(['--cache', ...CATALOG_ARGS]);
  const r0 = await a.get('/metrics');
  tt.equal(r0.status, 200);
  tt.match(r0.type, /^text\/plain; version=0\.0\.4/);
  const m0 = parseProm(r0.text);
  const c = await session(a.p.port);
  for (let i = 0; i < 10; i++) {
    c.write(enc.query('select 41 + 1'));
    await c.readZ(1);
  }
  c.write(enc.query('select 1/0'));
  await c.readZ(1);
  c.write(Buffer.concat([enc.parse('', 'select $1::int'), enc.bind('', '', ['5']), enc.execute(), enc.sync()]));
  await c.readZ(1);
  const m1 = parseProm((await a.get('/metrics')).text);
  const d = (name: string, labels: Record<string, string> = {}) => value(m1, name, labels) - value(m0, name, labels);
  tt.equal(d('pgscribe_messages_total', { type: 'Q' }), 11, '11 Q messages');
  tt.equal(d('pgscribe_messages_total', { type: 'P' }), 1);
  tt.equal(d('pgscribe_messages_total', { type: 'B' }), 1);
  tt.equal(d('pgscribe_messages_total', { type: 'E' }), 1);
  tt.equal(d('pgscribe_queries_completed_total'), 12, '11 Q + 1 E completed');
  tt.equal(d('pgscribe_query_errors_total'), 1, 'the division by zero');
  tt.equal(d('pgscribe_query_duration_seconds_count'), 12, 'each completion is in the latency histogram');
  tt.ok(d('pgscribe_query_duration_seconds_sum') > 0, 'durations add up to more than 0');
  tt.equal(d('pgscribe_cache_hits_total'), 9, 'the same read 10 times: 1 miss, 9 hits');
  tt.ok(d('pgscribe_cache_misses_total') >= 1);
  tt.equal(d('pgscribe_log_lines_total'), 14, 'one log line per Q/P/B/E');
  tt.ok(d('pgscribe_bytes_received_total', { from: 'client' }) > 0);
  tt.equal(value(m1, 'pgscribe_client_connections'), 1);
  tt.equal(value(m1, 'pgscribe_up'), 1);
  tt.equal(value(m1, 'pgscribe_upstream_errors_total'), 0);
  const stats = await a.json<{ queries: Record<string, number>; completed: number; errors: number; cache: Record<string, number>; latency_ms: Record<string, number> }>('/stats');
  tt.same(stats.queries, { Q: 11, P: 1, B: 1, E: 1 }, '/stats: the same counts as JSON');
  tt.equal(stats.completed, 12);
  tt.equal(stats.errors, 1);
  tt.equal(stats.cache['hits'], 9);
  tt.ok(stats.latency_ms['p50']! > 0 && stats.latency_ms['p50']! <= stats.latency_ms['p99']!, 'latency percentiles in order');
  await stopProxy(a.p);
});

t.test('/queries after pgbench matches pg_stat_statements call counts', async (tt) => {
  const init = await run('pgbench', ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(pg().port), '-U', USER, 'postgres']);
  tt.equal(init.code, 0, init.stderr);
  await pg().psql('select pg_stat_statements_reset()');
  const a = await withAdmin();
  for (const mode of ['simple', 'extended']) {
    const r = await run('pgbench', ['-n', '-c', '4', '-t', '40', '-M', mode, '-h', '127.0.0.1', '-p', String(a.p.port), '-U', USER, 'postgres']);
    tt.equal(r.code, 0, r.stderr);
  }
  const body = await a.json<{ sort: string; queries: { query: string; calls: number; errors: number; meanMs: number; totalMs: number; p99Ms: number; tables: string[] }[] }>('/queries?sort=calls&limit=100');
  tt.equal(body.sort, 'calls');
  const byText = new Map(body.queries.map((q) => [q.query, q]));
  const norm = (s: string) => s.toLowerCase().replace(/\s+/g, ' ').trim();
  const pgbenchStatements = [
    'UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2',
    'SELECT abalance FROM pgbench_accounts WHERE aid = $1',
    'UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2',
    'UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2',
    'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)',
  ];
  for (const sql of pgbenchStatements) {
    const q = byText.get(norm(sql));
    tt.ok(q, `digest of ${sql}`);
    if (!q) continue;
    // pg_stat_statements keeps the first text it saw for a statement (with or without the ;).
    const fromPg = Number(await pg().psql(`SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE lower(rtrim(query, ';')) = lower('${sql}')`));
    tt.equal(q.calls, 320, `${sql}: 2 runs x 4 clients x 40 transactions`);
    tt.equal(q.calls, fromPg, `${sql}: the same count as pg_stat_statements`);
    tt.equal(q.errors, 0);
    tt.ok(q.totalMs > 0 && q.meanMs > 0 && q.p99Ms >= 0, 'timings');
  }
  const upd = byText.get(norm(pgbenchStatements[0]!));
  tt.same(upd?.tables, ['pgbench_accounts'], 'the tables of a digest');
  const bySort = async (sort: string) => (await a.json<{ queries: { calls: number; totalMs: number; meanMs: number }[] }>(`/queries?sort=${sort}&limit=5`)).queries;
  const total = await bySort('total');
  tt.ok(total.length <= 5, 'limit');
  tt.same(total.map((q) => q.totalMs), [...total.map((q) => q.totalMs)].sort((x, y) => y - x), 'sort=total: descending total time');
  const mean = await bySort('mean');
  tt.same(mean.map((q) => q.meanMs), [...mean.map((q) => q.meanMs)].sort((x, y) => y - x), 'sort=mean: descending mean');
  tt.equal((await a.get('/queries?sort=bogus')).status, 400);
  tt.equal((await a.get('/queries?limit=0')).status, 400);
  const heat = await a.json<{ tables: { table: string; reads: number; writes: number; temperature: string }[] }>('/tables');
  const accounts = heat.tables.find((x) => x.table === 'pgbench_accounts');
  tt.ok(accounts, '/tables lists pgbench_accounts');
  tt.equal(accounts?.writes, 320, 'one UPDATE per transaction');
  tt.equal(accounts?.reads, 320, 'one SELECT per transaction');
  await stopProxy(a.p);
});

t.test('/health: 200 with a reachable upstream, 503 with the reason when it is not', async (tt) => {
  const a = await withAdmin();
  const ok = await a.get('/health');
  tt.equal(ok.status, 200);
  tt.match(JSON.parse(ok.text), { status: 'ok', listening: true });
  await stopProxy(a.p);
  const dead = await withAdmin([], '', 1); // nothing listens on port 1
  const bad = await dead.get('/health');
  tt.equal(bad.status, 503);
  tt.match(JSON.parse(bad.text), { status: 'unavailable', reason: /upstream 127\.0\.0\.1:1 refused the connection: ECONNREFUSED/ });
  await stopProxy(dead.p);
});

t.test('token: 401 without it or with a wrong one; header or query parameter', async (tt) => {
  const a = await withAdmin([], 's3cret-token');
  for (const path of ['/', '/metrics', '/stats', '/queries', '/tables', '/health']) {
    const r = await a.get(path, {});
    tt.equal(r.status, 401, `${path} without token`);
  }
  tt.equal((await a.get('/stats', { authorization: 'Bearer wrong' })).status, 401, 'wrong token');
  tt.equal((await a.get('/stats', { authorization: 'Bearer s3cret-token-and-more' })).status, 401, 'a longer token that starts with the right one');
  tt.equal((await a.get('/stats', { authorization: 'Bearer s3cret-token' })).status, 200, 'right token in the header');
  tt.equal((await a.get('/stats?token=s3cret-token', {})).status, 200, 'right token as ?token=');
  const page = await a.get('/?token=s3cret-token', {});
  tt.equal(page.status, 200);
  tt.match(page.type, /^text\/html/);
  tt.notMatch(page.text, /s3cret-token/, 'the page does not carry the token');
  await stopProxy(a.p);
  const r = spawnSync(process.execPath, [MAIN, '--upstream', `127.0.0.1:${pg().port}`, '--log', 'none', '--admin', '0.0.0.0:0'], { encoding: 'utf8', timeout: 10000 });
  tt.equal(r.status, 1, 'pgscribe refuses to start an admin server beyond loopback without a token');
  tt.match(r.stderr, /invalid setting admin: binding the admin server to 0\.0\.0\.0 .*--admin-token/);
});

t.test('POST /cache/flush, 404, 405', async (tt) => {
  const off = await withAdmin();
  tt.equal((await off.get('/cache/flush', {})).status, 405, 'GET on a POST endpoint');
  const post = await fetch(off.base + '/cache/flush', { method: 'POST' });
  tt.equal(post.status, 409, 'no cache to flush');
  tt.match(await post.text(), /--cache/);
  tt.equal((await off.get('/nope')).status, 404);
  await stopProxy(off.p);

  const a = await withAdmin(['--cache', '--cache-ttl', '60000', ...CATALOG_ARGS]);
  const c = await session(a.p.port);
  const ask = async () => {
    c.write(enc.query('select 7'));
    await c.readZ(1);
  };
  await ask();
  await ask();
  tt.equal((await a.json<{ cache: { hits: number } }>('/stats')).cache.hits, 1, 'the second read was a hit');
  const r = await fetch(a.base + '/cache/flush', { method: 'POST' });
  tt.equal(r.status, 200);
  await ask();
  const s = await a.json<{ cache: { hits: number; misses: number } }>('/stats');
  tt.equal(s.cache.hits, 1, 'after the flush the read is not a hit');
  tt.equal(s.cache.misses, 2);
  tt.match(a.p.stderr(), /INFO admin: cache flushed/);
  await stopProxy(a.p);
});

const haveChromium = findChromium() !== null;
t.test(
  'the dashboard in headless Chromium shows the top queries after a pgbench run',
  { skip: haveChromium || process.env.CI === 'true' ? false : 'chromium not installed (apt-get install chromium)' },
  async (tt) => {
    tt.ok(haveChromium, 'chromium is installed (CI installs it in .ci/run)');
    const a = await withAdmin(['--cache', ...CATALOG_ARGS], 'dash-token');
    const r = await run('pgbench', ['-n', '-c', '2', '-t', '30', '-M', 'prepared', '-h', '127.0.0.1', '-p', String(a.p.port), '-U', USER, 'postgres']);
    tt.equal(r.code, 0, r.stderr);
    const dom = await dumpDom(`${a.base}/?token=dash-token`, { budgetMs: 3000 });
    tt.match(dom, /<body[^>]*data-ready="1"/, 'the page got its data');
    tt.match(dom, /<[^>]*id="status"[^>]*>ok</, 'status ok');
    const sqlCells = [...dom.matchAll(/<td class="sql"[^>]*>([^<]*)</g)].map((m) => m[1]!);
    for (const sql of ['update pgbench_accounts set abalance = abalance + $1 where aid = $2', 'select abalance from pgbench_accounts where aid = $1']) {
      tt.ok(sqlCells.some((c) => c.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&').startsWith(sql.slice(0, 40))), `top queries show ${sql}`);
    }
    tt.match(dom, /<tr[^>]*data-table="pgbench_accounts"/, 'the table heat lists pgbench_accounts');
    tt.notMatch(dom, /dash-token/, 'the token is nowhere in the page');
    if (process.env.DASHBOARD_SHOT) await screenshot(`${a.base}/?token=dash-token`, process.env.DASHBOARD_SHOT, { width: 1440, height: 1000 });
    await stopProxy(a.p);
  },
);
