// The admin dashboard page (src/admin/dashboard.html) in headless Chromium, against a node:http
// server in this process that serves the page as dashboardHtml() returns it and canned JSON for
// /stats, /queries and /tables. The page's DOM is read after its polls ran (dumpDom), with
// regexes over Chromium's serialization (double-quoted attributes, escaped text).
//
// Chromium missing: the browser tests are skipped on a developer machine, and fail in CI (CI=true),
// where .ci/run installs it.
import t from 'tap';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { dashboardHtml } from '../../src/admin/dashboard';
import { dumpDom, findChromium, screenshot } from '../harness/chromium';

// --- canned answers -------------------------------------------------------------------------

const XSS_SCRIPT = `select '<script>document.body.dataset.pwned = "script"</script>' as x`;
const XSS_IMG = `select * from notes where body = '<img src=x onerror="document.body.dataset.pwned = 1">'`;
const LONG_SQL =
  'select o.id, o.created_at, c.name, c.email, sum(l.quantity * l.unit_price) as total from orders o join customers c on c.id = o.customer_id join order_lines l on l.order_id = o.id where o.created_at >= $1 and o.status = any($2) group by o.id, o.created_at, c.name, c.email order by total desc limit 50';

interface CannedQuery {
  id: string;
  query: string;
  kind: string;
  calls: number;
  errors: number;
  rows: number;
  totalMs: number;
  meanMs: number;
  p99Ms: number;
  cacheHits: number;
  cacheMisses: number;
}

function q(id: string, query: string, kind: string, calls: number, totalMs: number, p99Ms: number, cacheHits = 0, cacheMisses = 0, errors = 0): CannedQuery {
  return { id, query, kind, calls, errors, rows: kind === 'read' ? calls : 0, totalMs, meanMs: totalMs / calls, p99Ms, cacheHits, cacheMisses };
}

/** Ordered by totalMs, the page's default sort. */
const QUERIES: CannedQuery[] = [
  q('a1b2c3d4e5f60718', 'UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2', 'write', 1200, 842.5, 2.1),
  q('b2c3d4e5f6071829', 'SELECT abalance FROM pgbench_accounts WHERE aid = $1', 'read', 5400, 612.25, 0.9, 4320, 1080),
  q('c3d4e5f60718293a', LONG_SQL, 'read', 310, 402.8, 7.5, 0, 310),
  q('d4e5f60718293a4b', XSS_SCRIPT, 'read', 40, 12.5, 0.8, 30, 10),
  q('e5f60718293a4b5c', XSS_IMG, 'read', 12, 3.25, 0.5, 0, 0, 2),
  q('f60718293a4b5c6d', 'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)', 'write', 1200, 2.75, 0.2),
];

const WEIRD_TABLE = '"<i>quoted</i>"';
const TABLES = [
  { table: 'pgbench_accounts', reads: 5400, writes: 1200, cacheHits: 4320, cacheMisses: 1080, hitRatio: 0.8, savedMs: 540.2, totalMs: 1454.75, temperature: 'hot' },
  { table: 'orders', reads: 310, writes: 0, cacheHits: 0, cacheMisses: 310, hitRatio: 0, savedMs: 0, totalMs: 402.8, temperature: 'warm' },
  { table: 'pgbench_history', reads: 0, writes: 1200, cacheHits: 0, cacheMisses: 0, hitRatio: 0, savedMs: 0, totalMs: 2.75, temperature: 'cold' },
  { table: WEIRD_TABLE, reads: 1, writes: 0, cacheHits: 0, cacheMisses: 1, hitRatio: 0, savedMs: 0, totalMs: 0.1, temperature: 'frozen' },
];
const RECOMMENDATIONS = [
  { table: 'pgbench_accounts', priority: 'high', issue: 'writes invalidate 1,200 cached reads', advice: 'batch the updates or shorten the TTL' },
  { table: 'orders', priority: 'medium', issue: 'every read misses the cache', advice: 'add a cache rule for the report query' },
  { table: WEIRD_TABLE, priority: 'low', issue: 'read once <b>in an hour</b>', advice: 'nothing to do' },
];

const BASE_MS = Date.parse('2026-11-30T06:00:00.000Z');
/** Each /stats answer is 1 s later and 50 queries further than the one before: 50.0 queries/s. */
const RATE = 50;

/** Queries completed by the n-th /stats answer: 50/s, or (wavy, for a screenshot) 20 to 80/s. */
function completed(n: number, wavy: boolean): number {
  return 100_000 + RATE * n + (wavy ? Math.round(30 * Math.sin(n / 6) * 6) : 0);
}

function statsAnswer(n: number, cache: boolean, wavy: boolean): object {
  return {
    now: new Date(BASE_MS + n * 1000).toISOString(),
    uptime_s: 3723 + n,
    version: '0.1.0',
    connections: { clients: 12, sessions: 11, total: 340 },
    queries: { Q: 100, P: 50, B: 50, E: 50 },
    completed: completed(n, wavy),
    errors: 3,
    bytes: { from_clients: 123_456, from_servers: 9_876_543 },
    log: { lines: 100_000, queued_bytes: 0 },
    upstream_errors: 0,
    latency_ms: cache ? { p50: 0.125, p95: 0.48, p99: 1.2 } : null,
    cache: cache
      ? { hits: 240, misses: 60, leaders: 60, waiters: 0, stores: 60, stale_skips: 0, evictions: 5, expirations: 0, invalidations: 7, invalidated_entries: 9, bypasses: 0 }
      : null,
    // Several upstreams (with the cache in this canned set): absent with one node.
    ...(cache
      ? {
          upstreams: [
            { node: 'pg1:5432', state: 'primary', primary: true, failures: 0, lastError: null, checkedAt: new Date(BASE_MS + n * 1000 - 2000).toISOString(), replayLsn: null, replayLagMs: null, readOnlyCandidate: false, sessions: 9 },
            { node: 'pg2:5432', state: 'standby', primary: false, failures: 0, lastError: null, checkedAt: new Date(BASE_MS + n * 1000 - 1000).toISOString(), replayLsn: '0/3000060', replayLagMs: 1250, readOnlyCandidate: true, sessions: 2 },
            { node: '<b>pg3</b>:5432', state: 'down', primary: false, failures: 4, lastError: 'connection refused', checkedAt: null, replayLsn: null, replayLagMs: null, readOnlyCandidate: false, sessions: 0 },
          ],
        }
      : {}),
    // cache-invalidation wal: absent otherwise.
    ...(cache ? { wal: { streams: 2, streams_up: 1, commits: 90, invalidations: 80, gaps: 2, tables_added: 4, commit_waits: 0, commit_wait_timeouts: 0, lag_p50_ms: 1.5, lag_p99_ms: 12.25, lag_max_ms: 140 } } : {}),
  };
}

// --- the canned server ----------------------------------------------------------------------

interface Canned {
  url: string;
  /** JSON requests, with the Authorization header each carried. */
  requests: { path: string; auth: string | undefined }[];
  close(): Promise<void>;
}

/**
 * Serves the page at / and the canned JSON. With `token`, the JSON endpoints need
 * `Authorization: Bearer <token>` (the header, not ?token=, so the test sees that the page sends it).
 * `empty`: no cache, no latency, no queries, no tables. `wavy`: a throughput that varies.
 * `failQueries`: /queries answers 500.
 */
async function startCanned(opts: { token?: string; empty?: boolean; wavy?: boolean; failQueries?: boolean } = {}): Promise<Canned> {
  const requests: Canned['requests'] = [];
  let n = 0;
  const json = (res: http.ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(dashboardHtml());
      return;
    }
    requests.push({ path: u.pathname + u.search, auth: req.headers.authorization });
    if (opts.token !== undefined && req.headers.authorization !== `Bearer ${opts.token}`) {
      json(res, 401, { error: 'unauthorized' });
      return;
    }
    switch (u.pathname) {
      case '/stats':
        json(res, 200, statsAnswer(n++, !opts.empty, opts.wavy === true));
        return;
      case '/queries': {
        if (opts.failQueries) {
          json(res, 500, { error: 'query stats unavailable' });
          return;
        }
        const sort = u.searchParams.get('sort') ?? 'total';
        const key = sort === 'calls' ? 'calls' : sort === 'mean' ? 'meanMs' : 'totalMs';
        const list = opts.empty ? [] : [...QUERIES].sort((a, b) => b[key] - a[key]);
        json(res, 200, {
          sort,
          queries: list.map((x) => ({ ...x, tables: [], p50Ms: x.meanMs, p95Ms: x.p99Ms, minMs: 0.01, maxMs: x.p99Ms * 2, firstSeen: new Date(BASE_MS - 3600_000).toISOString(), lastSeen: new Date(BASE_MS).toISOString() })),
        });
        return;
      }
      case '/tables':
        json(res, 200, {
          tables: opts.empty ? [] : TABLES.map((x) => ({ ...x, lastAccess: new Date(BASE_MS - 5000).toISOString() })),
          recommendations: opts.empty ? [] : RECOMMENDATIONS,
        });
        return;
      default:
        json(res, 404, { error: 'not found' });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// --- reading the dumped DOM -----------------------------------------------------------------

function decode(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&nbsp;/g, '\u00a0')
    .replace(/&amp;/g, '&');
}

/** Text of an element's content: tags dropped, entities decoded. */
function text(inner: string): string {
  return decode(inner.replace(/<[^>]*>/g, ''));
}

function attrs(tag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of tag.matchAll(/([\w-]+)="([^"]*)"/g)) out[m[1]!] = decode(m[2]!);
  return out;
}

/** Text of the element with this id (whose content holds no element of its own tag). */
function byId(html: string, id: string): string | null {
  const m = new RegExp(`<(\\w+)[^>]*\\sid="${id}"[^>]*>([\\s\\S]*?)</\\1>`).exec(html);
  return m ? text(m[2]!) : null;
}

/** Rows of a tbody as {attributes of the tr, cells by class (first class word)}. */
function rows(html: string, tableId: string): { attrs: Record<string, string>; cells: Record<string, string>; raw: string }[] {
  const table = new RegExp(`<table id="${tableId}"[\\s\\S]*?<tbody>([\\s\\S]*?)</tbody>`).exec(html);
  if (!table) return [];
  return [...table[1]!.matchAll(/<tr\b([^>]*)>([\s\S]*?)<\/tr>/g)].map((m) => {
    const cells: Record<string, string> = {};
    for (const c of m[2]!.matchAll(/<td\b([^>]*)>([\s\S]*?)<\/td>/g)) {
      const cls = (attrs(c[1]!).class ?? '').split(' ').filter((w) => w !== 'num')[0] ?? '';
      cells[cls] = text(c[2]!);
    }
    return { attrs: attrs(m[1]!), cells, raw: m[2]! };
  });
}

/** The markup with every attribute value emptied: what is left are real elements and text. */
function withoutAttributeValues(html: string): string {
  return html.replace(/="[^"]*"/g, '=""');
}

function bodyAttrs(html: string): Record<string, string> {
  const m = /<body\b([^>]*)>/.exec(html);
  return m ? attrs(m[1]!) : {};
}

// --- tests ----------------------------------------------------------------------------------

t.test('dashboardHtml() reads the page once and keeps it', async (t) => {
  const a = dashboardHtml();
  t.ok(Buffer.isBuffer(a), 'a Buffer');
  t.match(a.toString('utf8', 0, 20), /^<!doctype html>/i, 'an HTML document');
  t.equal(dashboardHtml(), a, 'the same buffer on the second call');
});

t.test('the page is self-contained: no external scripts, styles, images or fonts', async (t) => {
  const html = dashboardHtml().toString('utf8');
  t.notMatch(html, /\s(src|href)\s*=/i, 'no src= or href= attributes');
  t.notMatch(html, /@import|url\(/i, 'no CSS imports or url()');
  const urls = [...html.matchAll(/[a-z]+:\/\/[^\s'"<>]+/gi)].map((m) => m[0]);
  t.same(urls, ['http://www.w3.org/2000/svg'], 'the only absolute URL is the SVG namespace');
  t.notMatch(html, /\.innerHTML|outerHTML|insertAdjacentHTML|document\.write/, 'no HTML parsing of data');
});

t.test('dashboardHtml() says how to fix a missing page', async (t) => {
  // The compiled module alone in a directory, without its dashboard.html.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-dash-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.copyFileSync(require.resolve('../../src/admin/dashboard'), path.join(dir, 'dashboard.js'));
  const script = `try { require(${JSON.stringify(path.join(dir, 'dashboard.js'))}).dashboardHtml(); console.log('no error'); } catch (e) { console.log(e.message); }`;
  const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }).trim();
  t.equal(out, `dashboard.html missing next to ${path.join(dir, 'dashboard.js')}: run make build`);
});

const inCi = process.env.CI === 'true';
const haveChromium = findChromium() !== null;

t.test('in headless chromium', { skip: haveChromium || inCi ? false : 'chromium not installed (apt-get install chromium)' }, async (t) => {
  t.ok(haveChromium, 'chromium is installed (CI installs it in .ci/run)');
  if (!haveChromium) return;

  t.test('shows the canned numbers, queries in order, tables by temperature, recommendations', async (t) => {
    const srv = await startCanned({ token: 's3cret' });
    t.teardown(() => srv.close());
    const html = await dumpDom(`${srv.url}?token=s3cret`);

    t.equal(bodyAttrs(html)['data-ready'], '1', 'the data arrived (body[data-ready])');
    t.equal(byId(html, 'status'), 'ok', '#status says ok');
    t.ok(srv.requests.length >= 6, `the page polled more than once (${srv.requests.length} requests)`);
    t.same(
      srv.requests.filter((r) => r.auth !== 'Bearer s3cret'),
      [],
      'every JSON request carried the token as a Bearer header',
    );
    t.ok(srv.requests.some((r) => r.path === '/queries?sort=total&limit=25'), 'queries asked for by total time');
    t.notOk(html.includes('s3cret'), 'the token appears nowhere in the DOM');

    t.equal(byId(html, 'throughput'), '50.0', 'throughput from the deltas of completed between polls');
    t.match(html, /<svg id="sparkline"[^>]*>\s*<polygon[^>]*points="[^"]+"[^>]*><\/polygon><polyline[^>]*points="[^"]+"/, 'a sparkline is drawn');
    t.equal(byId(html, 'hit-ratio'), '80.0%', 'cache hit ratio 240 / (240 + 60)');
    t.equal(byId(html, 'wal-sub'), 'change stream lag p50 1.50 · p99 12.3 · max 140 ms · 1/2 streams up', 'the change stream lag (wal mode)');
    t.equal(byId(html, 'connections'), '12', 'clients');
    t.equal(byId(html, 'connections-sub'), '11 upstream sessions · 340 since start', 'sessions and total connections');
    for (const [k, v] of [['p50', '0.125'], ['p95', '0.480'], ['p99', '1.20']]) {
      const m = new RegExp(`data-q="${k}">([^<]*)<`).exec(html);
      t.equal(m?.[1], v, `latency ${k}`);
    }
    t.equal(byId(html, 'errors'), '3', 'errors');

    const qrows = rows(html, 'top-queries');
    t.same(qrows.map((r) => r.attrs.class), QUERIES.map(() => 'query'), 'one tr.query per query');
    t.same(qrows.map((r) => r.cells.sql), QUERIES.map((x) => x.query), 'query texts in the order served');
    t.same(qrows.map((r) => r.attrs['data-id']), QUERIES.map((x) => x.id), 'data-id');
    t.same(qrows[0]?.cells, { sql: QUERIES[0]!.query, 'kind-col': 'write', calls: '1,200', errors: '0', total: '843', mean: '0.702', p99: '2.10', rows: '0', cache: '–' }, 'first row, formatted');
    t.equal(qrows[1]?.cells.cache, '4,320 / 1,080', 'cache hits / misses');
    t.equal(qrows[4]?.cells.errors, '2', 'errors per query');
    const longRow = /<td class="sql" title="([^"]*)"/.exec(qrows[2]?.raw ?? '');
    t.equal(longRow && decode(longRow[1]!), LONG_SQL, 'the full text of a long query is in the title');

    // Query text is text: escaped in the markup, no element made from it, no handler run.
    t.match(qrows[3]?.raw ?? '', /&lt;script&gt;document\.body\.dataset\.pwned = "script"&lt;\/script&gt;/, '<script> in a query shows as text');
    t.match(qrows[4]?.raw ?? '', /&lt;img src=x onerror="document\.body\.dataset\.pwned = 1"&gt;/, '<img onerror> in a query shows as text');
    const bare = withoutAttributeValues(html);
    t.equal((bare.match(/<script\b/gi) ?? []).length, 1, 'no <script> element but the page\'s own');
    t.notMatch(bare, /<img\b/i, 'no <img> element');
    t.notMatch(bare, /<i>|<b>/, 'no <i> or <b> from table names or recommendations');
    t.equal(bodyAttrs(html)['data-pwned'], undefined, 'no injected handler ran');

    const trows = rows(html, 'tables');
    t.same(
      trows.map((r) => [r.attrs['data-table'], r.attrs['data-temperature']]),
      TABLES.map((x) => [x.table, x.temperature]),
      'one row per table with data-table and data-temperature',
    );
    t.same(trows.map((r) => r.cells.temperature), ['hot', 'warm', 'cold', 'frozen'], 'temperature shown');
    // lastAccess is 5 s before the first /stats answer's `now`; the page counts from the latest one.
    t.match(trows[0]?.cells.last, /^([5-9]|1\d)s ago$/, 'last access, relative to the server clock');
    t.same({ ...trows[0]?.cells, last: '' }, { name: 'pgbench_accounts', temperature: 'hot', reads: '5,400', writes: '1,200', 'hit-ratio': '80.0%', saved: '540', last: '' }, 'first table, formatted');
    t.equal(trows[2]?.cells['hit-ratio'], '–', 'no hit ratio for a table the cache never saw');

    const nodes = rows(html, 'upstreams');
    t.same(nodes.map((r) => [r.attrs['data-node'], r.attrs['data-state']]), [['pg1:5432', 'primary'], ['pg2:5432', 'standby'], ['<b>pg3</b>:5432', 'down']], 'one row per upstream node, with its state (a name is text: no <b> element, checked above)');
    t.same({ ...nodes[1]?.cells, checked: '' }, { name: 'pg2:5432', state: 'standby', sessions: '2', lag: '1,250', failures: '0', 'read-only': 'yes', checked: '' }, 'a standby: sessions, replay lag, read-only candidate');
    t.match(nodes[1]?.cells.checked, /^[1-9]\d*s ago$/, 'last check, relative to the server clock');
    t.same({ ...nodes[0]?.cells }, { name: 'pg1:5432', state: 'primary ★', sessions: '9', lag: '–', failures: '0', 'read-only': '–', checked: nodes[0]?.cells.checked }, 'the primary, starred');
    t.match(nodes[2]?.raw ?? '', /title="connection refused"/, "a down node's last error on hover");
    t.equal(byId(html, 'upstreams-hint'), 'new sessions go to pg1:5432', 'the hint names the primary');

    const recs = [...html.matchAll(/<li class="recommendation"([^>]*)>([\s\S]*?)<\/li>/g)];
    t.same(recs.map((m) => attrs(m[1]!)['data-priority']), ['high', 'medium', 'low'], 'recommendations by priority');
    t.same(recs.map((m) => attrs(m[1]!)['data-table']), RECOMMENDATIONS.map((r) => r.table), 'recommendation tables');
    t.match(text(recs[2]?.[2] ?? ''), /read once <b>in an hour<\/b>/, 'recommendation text as text');
  });

  t.test('no cache, no latency, nothing seen yet', async (t) => {
    const srv = await startCanned({ empty: true });
    t.teardown(() => srv.close());
    const html = await dumpDom(srv.url);
    t.equal(bodyAttrs(html)['data-ready'], '1', 'the data arrived');
    t.equal(byId(html, 'hit-ratio'), 'cache off', 'cache off when /stats has cache: null');
    t.equal(byId(html, 'wal-sub'), '', 'no change stream line without wal');
    t.match(html, /<section id="upstreams-section" hidden/, 'one upstream: no nodes section');
    t.match(html, /data-q="p99">–</, 'no latency yet');
    t.same(rows(html, 'top-queries').map((r) => r.cells['']), ['No queries yet'], 'empty queries table');
    t.same(rows(html, 'tables').map((r) => r.cells['']), ['No tables seen yet'], 'empty tables table');
    t.equal(srv.requests.filter((r) => r.auth !== undefined).length, 0, 'no Authorization header without a token');
  });

  t.test('a 401 or another failure shows in #status', async (t) => {
    const srv = await startCanned({ token: 's3cret' });
    t.teardown(() => srv.close());

    const none = await dumpDom(srv.url);
    t.match(byId(none, 'status'), /^401: token required/, 'no token in the URL');
    t.match(none, /<span id="status" class="error"/, 'shown as an error');
    t.equal(bodyAttrs(none)['data-ready'], undefined, 'not ready');
    t.equal(rows(none, 'top-queries').length, 0, 'no rows');

    const wrong = await dumpDom(`${srv.url}?token=wrong`);
    t.equal(byId(wrong, 'status'), '401: token rejected', 'a wrong token');
    t.ok(srv.requests.some((r) => r.auth === 'Bearer wrong'), 'the wrong token was sent as a Bearer header');

    const failing = await startCanned({ failQueries: true });
    t.teardown(() => failing.close());
    const e500 = await dumpDom(failing.url);
    t.equal(byId(e500, 'status'), '500: query stats unavailable', 'the error message of the answer');
    t.match(e500, /<span id="status" class="error"[^>]* data-code="500"/, 'its status code in data-code');
  });

  t.test('a screenshot of the canned dashboard', async (t) => {
    const srv = await startCanned({ wavy: true });
    t.teardown(() => srv.close());
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-shot-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const png = path.join(dir, 'dashboard.png');
    // 70 s of virtual time: over 60 polls, a full sparkline. Virtual time runs as fast as the
    // machine lets it: a busy one needs more than the default 30 s of real time.
    await screenshot(srv.url, png, { width: 1440, height: 1000, budgetMs: 70_000, timeoutMs: 150_000 });
    const b = fs.readFileSync(png);
    t.same([...b.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
    t.same([b.readUInt32BE(16), b.readUInt32BE(20)], [1440, 1000], 'the requested size (IHDR)');
    t.ok(b.length > 20_000, `more than a blank page (${b.length} bytes)`);
    // DASHBOARD_SHOT=/tmp/x.png keeps a copy to look at.
    if (process.env.DASHBOARD_SHOT) fs.copyFileSync(png, process.env.DASHBOARD_SHOT);
  });
});
