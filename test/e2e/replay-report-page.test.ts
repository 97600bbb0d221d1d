// The replay report page (src/replay/report-html.ts) in headless Chromium, loaded from a temp file
// (file:// URL), as an operator opens it: the DOM after parsing holds the two SVG charts with the
// expected points and bars, and the tables; a <script> in a statement's SQL stays text and never
// runs. The DOM is read with regexes over Chromium's serialization (double-quoted attributes,
// escaped text), as in dashboard.test.ts.
//
// The page's Content-Security-Policy would stop an injected script by itself, so "the title is
// unchanged" alone would not show that escaping works: the tests also load the page with the CSP
// taken out, and check that no element came from the report's strings; and a control page shows
// that a script that does run is seen in the dump.
//
// Chromium missing: skipped on a developer machine, a failure in CI (CI=true).
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { pathToFileURL } from 'url';
import { renderHtmlReport } from '../../src/replay/report-html';
import type { ReplayReport } from '../../src/replay/report-types';
import { dumpDom, findChromium, screenshot } from '../harness/chromium';
import { emptyReport, fullReport, REGRESSION_IDS_BY_RATIO, XSS_IMG_MESSAGE, XSS_SQL } from '../helpers/replay-report';

const TITLE = 'pgscribe replay report: 127.0.0.1:5433';

function decode(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&nbsp;/g, '\u00a0').replace(/&amp;/g, '&');
}

function text(inner: string): string {
  return decode(inner.replace(/<[^>]*>/g, ''));
}

function title(dom: string): string | null {
  const m = /<title>([\s\S]*?)<\/title>/.exec(dom);
  return m ? decode(m[1]!) : null;
}

/** The serialized element with this id (its content up to the first closing tag of its name). */
function element(dom: string, tag: string, id: string): string {
  return new RegExp(`<${tag}\\b[^>]*\\sid="${id}"[^>]*>[\\s\\S]*?</${tag}>`).exec(dom)?.[0] ?? '';
}

function count(s: string, re: RegExp): number {
  return (s.match(re) ?? []).length;
}

function polylinePoints(svg: string, cls: string): string[] {
  const m = new RegExp(`<polyline\\b[^>]*class="series ${cls}"[^>]*>`).exec(svg);
  const p = m && /points="([^"]*)"/.exec(m[0]);
  return p ? p[1]!.trim().split(/\s+/) : [];
}

/** tbody rows of a table: the tr's data-digest and its cells' text by class (first word). */
function rows(dom: string, tableId: string): { digest: string | undefined; cells: Record<string, string> }[] {
  const tb = new RegExp(`<table id="${tableId}"[\\s\\S]*?<tbody>([\\s\\S]*?)</tbody>`).exec(dom);
  if (!tb) return [];
  return [...tb[1]!.matchAll(/<tr\b([^>]*)>([\s\S]*?)<\/tr>/g)].map((m) => {
    const cells: Record<string, string> = {};
    for (const c of m[2]!.matchAll(/<td\b[^>]*class="([^"]*)"[^>]*>([\s\S]*?)<\/td>/g)) cells[c[1]!.split(' ').filter((w) => w !== 'num')[0]!] = text(c[2]!);
    const d = /data-digest="([^"]*)"/.exec(m[1]!);
    return { digest: d ? decode(d[1]!) : undefined, cells };
  });
}

/** The markup with attribute values emptied: the elements left are real ones, not text. */
function withoutAttributeValues(dom: string): string {
  return dom.replace(/="[^"]*"/g, '=""');
}

const inCi = process.env.CI === 'true';
const haveChromium = findChromium() !== null;

t.test('in headless chromium', { skip: haveChromium || inCi ? false : 'chromium not installed (apt-get install chromium)' }, async (t) => {
  t.ok(haveChromium, 'chromium is installed (CI installs it in .ci/run)');
  if (!haveChromium) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-replay-page-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  /** Write the page to a file and dump its DOM after a second of virtual time (nothing to wait for: no script). */
  const load = async (html: string): Promise<string> => {
    const file = path.join(dir, `report-${++n}.html`);
    fs.writeFileSync(file, html);
    return dumpDom(pathToFileURL(file).href, { budgetMs: 1000 });
  };

  t.test('a full report: charts, tables, and a <script> in the SQL that stays text', async (t) => {
    const r: ReplayReport = fullReport();
    const dom = await load(renderHtmlReport(r));
    t.equal(title(dom), TITLE, 'the title is unchanged: no script from the SQL ran');
    t.equal(count(withoutAttributeValues(dom), /<script\b/gi), 0, 'no <script> element in the DOM');
    t.equal(count(withoutAttributeValues(dom), /<img\b/gi), 0, 'no <img> element from the message');
    t.equal(count(withoutAttributeValues(dom), /<b>/g), 0, 'no <b> element from the log file name');

    const tp = element(dom, 'svg', 'throughput-chart');
    t.ok(tp !== '', 'the throughput chart is in the DOM as SVG');
    for (const cls of ['statements', 'errors', 'lag']) {
      const pts = polylinePoints(tp, cls);
      t.equal(pts.length, r.timeline.length, `${cls}: a point per second of the timeline`);
      t.ok(pts.every((p) => /^-?[\d.]+,-?[\d.]+$/.test(p)), `${cls}: every point is x,y`);
    }
    // The statements line is drawn against the same scale as its axis: the highest point is the smallest y.
    const ys = polylinePoints(tp, 'statements').map((p) => Number(p.split(',')[1]));
    const peak = r.timeline.reduce((best, p, i) => (p.statements > r.timeline[best]!.statements ? i : best), 0);
    t.equal(ys.indexOf(Math.min(...ys)), peak, 'the highest point of the line is the busiest second');

    const lc = element(dom, 'svg', 'latency-chart');
    t.equal(count(lc, /<g class="digest-row"/g), 20, 'the latency chart has the top 20 digests');
    t.equal(count(lc, /<rect class="bar before"/g), 20, '20 before bars');
    t.equal(count(lc, /<rect class="bar after"/g), 16, '16 plain after bars');
    t.equal(count(lc, /<rect class="bar after regression"/g), 3, '3 regression bars');
    const sqlTitle = /<g class="digest-row" data-digest="00000000000000d5">\s*<title>([\s\S]*?)<\/title>/.exec(lc);
    t.ok(sqlTitle && text(sqlTitle[1]!).startsWith(XSS_SQL), "the SQL with <script> is the row's tooltip, as text");

    t.same(rows(dom, 'regressions').map((x) => x.digest), REGRESSION_IDS_BY_RATIO, 'the regressions table, by ratio');
    const ch = rows(dom, 'changes');
    t.same(ch.map((x) => x.digest), ['00000000000000e6', '00000000000000e6', '00000000000000d5'], 'the changes table, grouped by digest');
    t.equal(ch[2]?.cells.sql, XSS_SQL, 'the <script> SQL shows as text in its cell');
    t.equal(ch[2]?.cells.message, XSS_IMG_MESSAGE, 'the <img onerror> message as text');
    t.equal(rows(dom, 'digests').length, 25, 'the count table');
  });

  t.test('escaping alone keeps the SQL inert (the page without its CSP)', async (t) => {
    const html = renderHtmlReport(fullReport());
    const noCsp = html.replace(/<meta http-equiv="Content-Security-Policy"[^>]*>\n/, '');
    t.not(noCsp, html, 'the CSP was taken out');
    const dom = await load(noCsp);
    t.equal(title(dom), TITLE, 'the title is unchanged');
    t.equal(count(withoutAttributeValues(dom), /<script\b/gi), 0, 'no <script> element');
  });

  t.test('control: a script that does run shows in the dump', async (t) => {
    const html = renderHtmlReport(emptyReport()).replace(/<meta http-equiv="Content-Security-Policy"[^>]*>\n/, '').replace('</body>', '<script>document.title = "pwned"</script></body>');
    t.equal(title(await load(html)), 'pwned', 'so an unchanged title above means no script ran');
  });

  t.test('an empty report: no chart, every section says none', async (t) => {
    const dom = await load(renderHtmlReport(emptyReport()));
    t.equal(title(dom), TITLE);
    t.equal(count(dom, /<svg\b/g), 0, 'no SVG');
    t.equal(count(dom, /<p class="none">/g), 5, 'five sections say none');
  });

  t.test('a screenshot is not blank', async (t) => {
    const file = path.join(dir, 'shot.html');
    fs.writeFileSync(file, renderHtmlReport(fullReport()));
    const png = path.join(dir, 'shot.png');
    await screenshot(pathToFileURL(file).href, png, { width: 1100, height: 1400, budgetMs: 500, timeoutMs: 60_000 });
    const b = fs.readFileSync(png);
    t.same([...b.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
    t.same([b.readUInt32BE(16), b.readUInt32BE(20)], [1100, 1400], 'the requested size (IHDR)');
    t.ok(b.length > 20_000, `more than a blank page (${b.length} bytes)`);
  });
});
