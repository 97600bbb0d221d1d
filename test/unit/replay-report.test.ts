// The replay report's two renderings (src/replay/report-text.ts, report-html.ts): what each
// section says for an empty report, a typical one and one with changes and regressions; the order
// of digests in each section; number formats; and that text from the log (SQL, messages, file
// names) can neither inject markup into the page nor control sequences into the terminal.
import t from 'tap';
import {
  cut,
  fmtCount,
  fmtDuration,
  fmtMs,
  fmtRate,
  fmtRatio,
  oneLine,
  regressions,
} from '../../src/replay/report-format';
import { renderHtmlReport } from '../../src/replay/report-html';
import { renderTextReport } from '../../src/replay/report-text';
import type { ReplayReport } from '../../src/replay/report-types';
import { bucketTimeline, MAX_TIMELINE_POINTS, niceTicks } from '../../src/replay/svg-chart';
import { digest, emptyReport, fullReport, lat, REGRESSION_IDS_BY_RATIO, timeline, XSS_IMG_MESSAGE, XSS_LOG, XSS_SQL } from '../helpers/replay-report';

/** A report with digests and a timeline but nothing changed and nothing slower. */
function typicalReport(): ReplayReport {
  const r = fullReport();
  r.digests = r.digests.map((d) => ({ ...d, changes: [], regression: false, after: d.before, ratioP50: d.before ? 1 : null, ratioP99: d.before ? 1 : null }));
  r.statements = { ...r.statements, changed: 0, notReplayable: {} };
  r.sessions = { total: 120, replayed: 120, failed: 0, cut: 0 };
  return r;
}

/** The lines of a text section, from its heading to the next blank line. */
function section(text: string, heading: string): string[] {
  const lines = text.split('\n');
  const i = lines.findIndex((l) => l.startsWith(heading));
  if (i < 0) return [];
  const end = lines.indexOf('', i);
  return lines.slice(i, end < 0 ? undefined : end);
}

/** Inner HTML of the element with this id (the first closing tag of its name ends it). */
function byId(html: string, id: string): string | null {
  const m = new RegExp(`<(\\w+)[^>]*\\sid="${id}"[^>]*>([\\s\\S]*?)</\\1>`).exec(html);
  return m ? m[2]! : null;
}

function decode(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
}

function textOf(inner: string): string {
  return decode(inner.replace(/<[^>]*>/g, ''));
}

/** The tbody rows of a table: [the tr's attributes, its cells by class (first word)]. */
function rows(html: string, tableId: string): { attrs: Record<string, string>; cells: Record<string, string> }[] {
  const tb = new RegExp(`<table id="${tableId}"[\\s\\S]*?<tbody>([\\s\\S]*?)</tbody>`).exec(html);
  if (!tb) return [];
  return [...tb[1]!.matchAll(/<tr\b([^>]*)>([\s\S]*?)<\/tr>/g)].map((m) => {
    const attrs: Record<string, string> = {};
    for (const a of m[1]!.matchAll(/([\w-]+)="([^"]*)"/g)) attrs[a[1]!] = decode(a[2]!);
    const cells: Record<string, string> = {};
    for (const c of m[2]!.matchAll(/<td\b[^>]*class="([^"]*)"[^>]*>([\s\S]*?)<\/td>/g)) cells[c[1]!.split(' ').filter((w) => w !== 'num')[0]!] = textOf(c[2]!);
    return { attrs, cells };
  });
}

function points(svg: string, cls: string): number {
  const m = new RegExp(`<polyline class="series ${cls}"[^>]*points="([^"]*)"`).exec(svg);
  return m ? m[1]!.trim().split(/\s+/).filter((p) => p !== '').length : -1;
}

t.test('numbers for people', async (t) => {
  t.same(
    [0, 0.0004, 0.125, 0.048, 1.2, 9.999, 12.34, 99.96, 843.4, 999.4, 999.6, 1204.5, 65_432.1, -1, NaN].map(fmtMs),
    ['0', '<0.001', '0.125', '0.0480', '1.20', '10.0', '12.3', '100', '843', '999', '1,000', '1,205', '65,432', '–', '–'],
    'ms to about three significant digits',
  );
  t.same([0, 7, 1234, 1_234_567, 999.6].map(fmtCount), ['0', '7', '1,234', '1,234,567', '1,000'], 'counts grouped by thousands');
  t.same([250, 1500, 12_345, 65_000, 3_599_000, 7_500_000].map(fmtDuration), ['250 ms', '1.50 s', '12.3 s', '1 min 5 s', '59 min 59 s', '2 h 5 min'], 'durations');
  t.same([0, 0.25, 12.5, 408.53, 12_345.6].map(fmtRate), ['0.0', '0.3', '12.5', '409', '12,346'], 'rates');
  t.same([null, 1, 2.345, 12.44, 150.2].map(fmtRatio), ['–', '1.00×', '2.35×', '12.4×', '150×'], 'ratios');
  t.same(niceTicks(83), [0, 20, 40, 60, 80, 100], 'axis ticks: round steps up past the maximum');
  t.same(niceTicks(0.3), [0, 0.1, 0.2, 0.3], 'no float noise (0.30000000000000004) in ticks');
});

t.test('oneLine and cut: one line, nothing a terminal would act on', async (t) => {
  t.equal(oneLine('SELECT 1\n  FROM\tt\r\n'), 'SELECT 1 FROM t', 'whitespace runs become one space');
  t.equal(oneLine('a\x1b[2Jb\x07c\x9bd'), 'a\\x1b[2Jb\\x07c\\x9bd', 'ESC, BEL and C1 shown escaped');
  t.equal(oneLine("SELECT 'x\u202e' -- \\"), "SELECT 'x\\u202e' -- \\", 'a bidi override shown escaped; backslashes as they are');
  t.equal(cut('x'.repeat(100), 100), 'x'.repeat(100), 'not cut at the limit');
  t.equal(cut('x'.repeat(101), 100), 'x'.repeat(99) + '…', 'cut to the limit with …');
  t.equal(cut('😀'.repeat(5), 3), '😀😀…', 'a surrogate pair is never split');
});

t.test('text: an empty report says none in every section', async (t) => {
  const text = renderTextReport(emptyReport());
  t.match(text, /^pgscribe replay report\n/, 'the heading first');
  t.match(text, /^ {2}logs {12}none$/m, 'no logs');
  t.match(text, /^ {2}duration {8}250 ms \(2026-12-05T20:00:00.000Z to 2026-12-05T20:00:00.250Z\)$/m, 'duration and the window');
  t.match(text, /^ {2}sessions {8}0 in the log: 0 replayed, 0 failed, 0 cut$/m, 'sessions');
  t.match(text, /^ {2}rate {12}0\.0 statements\/s$/m, 'rate');
  t.match(text, /^ {2}not replayable {2}none$/m, 'not replayable: none');
  t.match(text, /^ {2}skipped writes {2}0$/m, 'skipped writes');
  t.match(text, /^Changed outcomes: none$/m);
  t.match(text, /^Latency regressions \(p50 at least 2× and 1 ms slower\): none$/m);
  t.match(text, /^Digests by count: none$/m);
  t.notMatch(text, /NaN|undefined|Infinity/, 'no NaN, undefined or Infinity');
});

t.test('text: a typical report, nothing changed or slower', async (t) => {
  const text = renderTextReport(typicalReport());
  t.match(text, /^ {2}logs {12}\/var\/log\/pgscribe\/q\.log\.1, \/var\/log\/<b>pgscribe<\/b>\/q\.log$/m, 'the logs in the order read');
  t.match(text, /^ {2}target {10}127\.0\.0\.1:5433$/m);
  t.match(text, /^ {2}speed {11}2×$/m, 'the speed factor');
  t.match(text, /^ {2}duration {8}1 min 0 s /m);
  t.match(text, /^ {2}statements {6}24,512 replayed, 187 errors, 0 changed$/m);
  t.match(text, /^ {2}rate {12}409 statements\/s$/m);
  t.notMatch(text, /first failure/, 'no failure line without failures');
  t.match(text, /^Changed outcomes: none$/m);
  t.match(text, /^Latency regressions .*: none$/m);
  const top = section(text, 'Digests by count');
  t.equal(top[0], 'Digests by count: top 10 of 25');
  t.match(top[1], /^ {2}digest +original +replayed +p50 before +p50 after +sql$/, 'the table head');
  t.equal(top.length, 12, 'head line, column heads and ten rows');
  t.same(
    top.slice(2).map((l) => l.trim().split(/\s+/)[0]),
    ['00000000000000a2', '00000000000000b3', '00000000000000e6', '00000000000000d5', '00000000000000c4', '0000000000000f00', '0000000000000f01', '0000000000000f02', '0000000000000f03', '0000000000000f04'],
    'the most frequent first',
  );
  t.match(top[2], /^ {2}00000000000000a2 +5,400 +5,400 +0\.420 ms +0\.420 ms +SELECT abalance FROM pgbench_accounts WHERE aid = \$1$/, 'a row, formatted');
  t.match(top[7], /^ {2}0000000000000f00 +100 +100 +0\.100 ms +0\.100 ms +SELECT \* FROM t0 WHERE id = \$1$/, 'a fast one');
});

t.test('text: changes grouped by digest, regressions by ratio', async (t) => {
  const text = renderTextReport(fullReport());
  t.match(text, /^ {2}sessions {8}120 in the log: 117 replayed, 1 failed, 2 cut$/m);
  t.match(text, /^ {2}first failure {3}password authentication failed for user "app"$/m, 'the first failure');
  t.match(text, /^ {2}not replayable {2}3 parameter cut at log-param-max-bytes\n {18}2 redacted statement$/m, 'reasons, most frequent first');

  const ch = section(text, 'Changed outcomes');
  t.equal(ch[0], 'Changed outcomes: 12 statements in 2 digests');
  t.match(ch[1], /^ {2}00000000000000e6 {2}×10 {2}SELECT o\.id, o\.created_at, .*…$/, 'the digest with most changes first, SQL on one line, cut');
  const sqlPart = ch[1]!.split('×10  ')[1]!;
  t.equal(Array.from(sqlPart).length, 100, 'SQL cut to 100 characters');
  t.same(ch.slice(2, 5), [
    '    ok rows 50 -> ok rows 49 ×7 (example conn=5 seq=19)',
    '    ok -> error 42703 ×3 (example conn=3 seq=7)',
    '      column c.email does not exist',
  ], 'its changes, most frequent first, with the message');
  t.same(ch.slice(5), [
    `  00000000000000d5  ×2  ${XSS_SQL}`,
    '    ok rows 1 -> error 22P02 ×2 (example conn=12 seq=40)',
    `      ${XSS_IMG_MESSAGE}`,
  ], 'the second digest: in a terminal, markup is just text');

  const reg = section(text, 'Latency regressions');
  t.equal(reg[0], 'Latency regressions (p50 at least 2× and 1 ms slower): 3');
  t.same(reg.slice(2).map((l) => l.trim().split(/\s+/)[0]), REGRESSION_IDS_BY_RATIO, 'sorted by p50 ratio, largest first');
  t.match(reg[2], /^ {2}00000000000000c4 +12\.5 → 140 ms +40\.1 → 421 ms +11\.2× +SELECT count/, 'p50 and p99 before → after, and the ratio');
  t.match(reg[3], /0\.420 → 3\.10 ms +1\.20 → 9\.80 ms +7\.38×/);
  const top = section(text, 'Digests by count');
  t.match(top[2], /^ {2}00000000000000a2 ! /, 'a regression is marked in the count table');
  t.equal(top[top.length - 1], '  (! a latency regression)', 'and the mark explained');
  t.notMatch(text, /NaN|undefined|Infinity/);
});

t.test('text: control characters from the log are shown, not sent', async (t) => {
  const r = fullReport();
  r.digests[0]!.changes = [{ before: 'ok', after: 'error 42P01', count: 1, example: { conn: 1, seq: 2 }, message: 'relation "\x1b[31mred\x1b[0m" does not exist\nHINT: x' }];
  r.digests[0]!.sql = 'SELECT 1\n-- \x1b]0;title\x07 \u202e';
  r.logs = ['/tmp/a\nb.log'];
  r.target = 'host\x1b[2J:5432';
  r.digests[3]!.changes[0]!.example.conn = '\x1b[2J' as unknown as number; // a report JSON with a string where a number is typed
  r.digests[3]!.id = 'id\x1b[1m';
  const text = renderTextReport(r);
  t.notMatch(text, /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/, 'no control character but the line ends');
  t.match(text, /SELECT 1 -- \\x1b\]0;title\\x07 \\u202e/, 'escaped where they were');
  t.match(text, /relation "\\x1b\[31mred\\x1b\[0m" does not exist HINT: x/, 'the message on one line');
  t.match(text, /^ {2}logs {12}\/tmp\/a b\.log$/m, 'a file name on one line');
  t.match(text, /^ {2}target {10}host\\x1b\[2J:5432$/m);
});

t.test('regressions: by ratio, then by growth, then by id', async (t) => {
  const ds = [
    digest('aaaa', 'a', 10, lat(10, 1, 2), lat(10, 3, 6)), // 3×, +2 ms
    digest('bbbb', 'b', 10, lat(10, 2, 2), lat(10, 6, 6)), // 3×, +4 ms
    digest('cccc', 'c', 10, lat(10, 1, 2), lat(10, 5, 6)), // 5×
    digest('dddd', 'd', 10, lat(10, 1, 2), lat(10, 1.5, 6)), // not a regression
    digest('0000', 'e', 10, lat(10, 2, 2), lat(10, 6, 6)), // as bbbb: the id decides
  ];
  t.same(regressions(ds).map((d) => d.id), ['cccc', '0000', 'bbbb', 'aaaa']);
  const r = { ...emptyReport(), digests: ds };
  const html = renderHtmlReport(r);
  t.same(rows(html, 'regressions').map((x) => x.attrs['data-digest']), ['cccc', '0000', 'bbbb', 'aaaa'], 'the page in the same order');
  t.same(section(renderTextReport(r), 'Latency regressions').slice(2).map((l) => l.trim().split(/\s+/)[0]), ['cccc', '0000', 'bbbb', 'aaaa'], 'the text too');
});

t.test('html: an empty report', async (t) => {
  const html = renderHtmlReport(emptyReport());
  t.match(html, /^<!doctype html>\n<html lang="en">/, 'an HTML document');
  t.match(html, /<title>pgscribe replay report: 127\.0\.0\.1:5433<\/title>/);
  t.notMatch(html, /<svg\b/, 'no chart without data');
  t.match(byId(html, 'throughput'), /<p class="none">none: no timeline<\/p>/);
  t.match(byId(html, 'latency'), /<p class="none">none: no digests<\/p>/);
  for (const id of ['regressions-section', 'changes-section', 'digests-section']) t.match(byId(html, id), /<p class="none">none<\/p>/, `${id}: none`);
  t.notMatch(html, /NaN|undefined|Infinity/);
});

t.test('html: a typical report, nothing changed or slower', async (t) => {
  const html = renderHtmlReport(typicalReport());
  const lc = byId(html, 'latency')!;
  t.equal((lc.match(/<g class="digest-row"/g) ?? []).length, 20, 'the latency chart');
  t.equal((lc.match(/<rect class="bar after regression"/g) ?? []).length, 0, 'no red bar');
  t.notMatch(lc, /data-regression/, 'no row flagged');
  t.equal(points(byId(html, 'throughput')!, 'statements'), 60, 'the throughput chart');
  t.match(byId(html, 'regressions-section'), /<p class="none">none<\/p>/, 'regressions: none');
  t.match(byId(html, 'changes-section'), /<h2>Changed outcomes<\/h2>\n<p class="none">none<\/p>/, 'changes: none');
  t.equal(rows(html, 'digests').length, 25, 'the count table');
  t.notMatch(html, /class="stat bad" data-key="(failed|changed|regressions)"/, 'nothing flagged but the errors');
});

t.test('html: the summary, the charts and the tables of a full report', async (t) => {
  const r = fullReport();
  const html = renderHtmlReport(r);
  const stat = (key: string): string => textOf(new RegExp(`<div class="stat[^"]*" data-key="${key}">([\\s\\S]*?)</div>`).exec(html)?.[1] ?? '');
  t.equal(stat('statements'), 'statements replayed24,512409 statements/s', 'statements and rate');
  t.equal(stat('sessions'), 'sessions replayed117of 120 in the log');
  t.equal(stat('failed'), 'sessions failed1first: password authentication failed for user "app"');
  t.equal(stat('not-replayable'), 'not replayable53 parameter cut at log-param-max-bytes2 redacted statement');
  t.equal(stat('regressions'), 'latency regressions3p50 ≥ 2× and +1 ms');
  t.match(html, /<div class="stat bad" data-key="errors">/, 'errors flagged');

  const tp = byId(html, 'throughput')!;
  t.equal((tp.match(/<svg\b/g) ?? []).length, 1, 'one throughput chart');
  for (const cls of ['statements', 'errors', 'lag']) t.equal(points(tp, cls), 60, `${cls}: one point per second`);

  const lc = byId(html, 'latency')!;
  t.match(lc, /<h2>p50 latency before and after: top 20 of 25 digests by count<\/h2>/);
  const groups = [...lc.matchAll(/<g class="digest-row" data-digest="([^"]+)"( data-regression="1")?>/g)];
  t.equal(groups.length, 20, 'twenty rows');
  t.same(groups.slice(0, 5).map((g) => g[1]), ['00000000000000a2', '00000000000000b3', '00000000000000e6', '00000000000000d5', '00000000000000c4'], 'by count');
  t.same(groups.filter((g) => g[2]).map((g) => g[1]).sort(), [...REGRESSION_IDS_BY_RATIO].sort(), 'regressions flagged');
  t.equal((lc.match(/<rect class="bar before"/g) ?? []).length, 20, 'a before bar per row');
  t.equal((lc.match(/<rect class="bar after( regression)?"/g) ?? []).length, 19, 'an after bar per row that has one');
  t.equal((lc.match(/<rect class="bar after regression"/g) ?? []).length, 3, 'three red after bars');
  t.match(lc, /– \(no after\)/, 'the missing one said');
  const widths = [...lc.matchAll(/<rect class="bar (?:before|after)[^"]*" x="160" y="[^"]*" width="([^"]+)"/g)].map((m) => Number(m[1]));
  t.ok(widths.every((w) => w >= 1 && w <= 960 - 160 - 130), 'bars within the plot');
  t.equal(Math.max(...widths) <= 670 && Math.max(...widths) > 500, true, 'the longest bar spans most of the plot (140 ms of a 150 ms axis)');

  t.same(rows(html, 'regressions').map((x) => x.attrs['data-digest']), REGRESSION_IDS_BY_RATIO, 'regressions table by ratio');
  t.same(rows(html, 'regressions')[0]?.cells, {
    digest: '00000000000000c4',
    sql: 'SELECT count(*) FROM orders o JOIN order_lines l ON l.order_id = o.id WHERE o.created_at >= $1',
    p50: '12.5 ms → 140 ms',
    p99: '40.1 ms → 421 ms',
    ratio: '11.2×',
    ratio99: '10.5×',
  });

  const ch = rows(html, 'changes');
  t.same(ch.map((x) => x.attrs['data-digest']), ['00000000000000e6', '00000000000000e6', '00000000000000d5'], 'one row per change, grouped by digest');
  t.same(ch[0]?.cells, { digest: '00000000000000e6×10', sql: ch[0]?.cells.sql, before: 'ok rows 50', after: 'ok rows 49', count: '7', example: 'conn=5 seq=19', message: '' });
  t.same(ch[1]?.cells, { before: 'ok', after: 'error 42703', count: '3', example: 'conn=3 seq=7', message: 'column c.email does not exist' }, 'the digest once per group');
  t.match(html, /<td class="digest" rowspan="2">00000000000000e6/, 'spanning its rows');
  t.equal(ch[2]?.cells.message, XSS_IMG_MESSAGE, 'the message as text');

  const dg = rows(html, 'digests');
  t.equal(dg.length, 25, 'every digest in the count table');
  t.same(dg[0]?.cells, { digest: '00000000000000a2', sql: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1', original: '5,400', replayed: '5,400', 'p50-before': '0.420 ms', 'p50-after': '3.10 ms', ratio: '7.38×', changed: '0' });
  t.equal(dg[0]?.attrs.class, 'digest-row regression');
  t.notMatch(html, /NaN|undefined|Infinity/);
});

t.test('html: strings from the log are escaped everywhere', async (t) => {
  const r = fullReport();
  r.target = '"><script>document.title="t"</script>';
  r.speed = '<i>max</i>';
  r.startedAt = '<b>now</b>';
  r.sessions.firstFailure = '<iframe src=x>';
  r.statements.notReplayable = { '<u>why</u>': 1 };
  r.digests[0]!.id = 'x" onmouseover="alert(1)';
  // A report read from a JSON file (bench/replay-report-shot.ts) may hold a string where a number is typed.
  r.digests[0]!.changes = [{ before: '<b>ok</b>', after: '<i>error</i>', count: 1, example: { conn: '<s>1' as unknown as number, seq: '<s>2' as unknown as number }, message: '</td></tr></table><script>1</script>' }];
  r.slowerThreshold = '<s>2' as unknown as number;
  r.digests[0]!.sql = "SELECT '\u202e' || '</title><script>x</script>' & 1";
  const html = renderHtmlReport(r);
  // The page has no element of its own that these could be: every < from the report is &lt;.
  for (const tag of ['script', 'img', 'iframe', 'b', 'i', 'u', 's']) t.notMatch(html, new RegExp(`<${tag}[\\s>]`, 'i'), `no <${tag}> element`);
  t.notMatch(html, /onmouseover="/, 'no attribute broken out of');
  t.ok(html.includes('data-digest="x&quot; onmouseover=&quot;alert(1)"'), 'the quote escaped inside the attribute');
  t.match(html, /<title>pgscribe replay report: &quot;&gt;&lt;script&gt;document\.title=&quot;t&quot;&lt;\/script&gt;<\/title>/, 'the title');
  t.match(html, /&lt;script&gt;document\.title = &quot;pwned&quot;&lt;\/script&gt;/, 'the <script> in SQL, as text');
  t.match(html, /\\u202e/, 'a bidi control made visible');
  t.notMatch(html, /\u202e/, 'and not left raw');
  t.match(html, /&lt;img src=x onerror=&quot;document\.title = &#39;img pwned&#39;&quot;&gt;/, 'the message, as text');
  t.ok(html.includes('<code class="log">/var/log/&lt;b&gt;pgscribe&lt;/b&gt;/q.log</code>'), `the log file name ${XSS_LOG}, as text`);
});

t.test('html: self-contained, nothing fetched, no script', async (t) => {
  const html = renderHtmlReport(fullReport());
  // Every < from the report is escaped, so each tag in the markup is the page's own.
  t.notMatch(html, /<[a-z][^>]*\s(src|href)\s*=/i, 'no element with src= or href=');
  t.notMatch(html, /@import|url\(/i, 'no CSS import or url()');
  t.same([...html.matchAll(/[a-z]+:\/\/[^\s'"<>]+/gi)].map((m) => m[0]), Array(2).fill('http://www.w3.org/2000/svg'), 'the only URL is the SVG namespace of the two charts');
  t.notMatch(html, /<script/i, 'no script element');
  t.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">/, 'a CSP that forbids scripts and fetches');
});

t.test('a long timeline is merged into at most MAX_TIMELINE_POINTS points', async (t) => {
  const long = timeline(3000);
  const b = bucketTimeline(long);
  t.equal(b.length, MAX_TIMELINE_POINTS, '3000 seconds in buckets of three');
  t.same(b[0], {
    t: 0,
    statements: (long[0]!.statements + long[1]!.statements + long[2]!.statements) / 3,
    errors: (long[0]!.errors + long[1]!.errors + long[2]!.errors) / 3,
    lagMs: Math.max(long[0]!.lagMs, long[1]!.lagMs, long[2]!.lagMs),
  }, 'statements and errors per second as the mean, lag as the worst');
  t.equal(b[999]?.lagMs, long[2999]!.lagMs, 'the last bucket holds the worst lag');
  t.same(bucketTimeline([{ t: 2, statements: 1, errors: 0, lagMs: 0 }, { t: 1, statements: 2, errors: 0, lagMs: 0 }]).map((p) => p.t), [1, 2], 'sorted by t');
  const html = renderHtmlReport({ ...emptyReport(), timeline: long });
  const tp = byId(html, 'throughput')!;
  t.equal(points(tp, 'statements'), MAX_TIMELINE_POINTS);
  t.match(tp, /3,000 seconds in 1,000 points/, 'the chart says it merged');
});

t.test('edge cases draw without NaN', async (t) => {
  const one = { ...emptyReport(), timeline: [{ t: 0, statements: 0, errors: 0, lagMs: 0 }], digests: [digest('z', 'SELECT 1', 1, lat(1, 0, 0), lat(1, 0, 0)), digest('y', 'SELECT 2', 1, null, null)] };
  const html = renderHtmlReport(one);
  t.equal(points(byId(html, 'throughput')!, 'statements'), 1, 'a single point');
  t.notMatch(html, /NaN|Infinity|undefined/, 'a one-point timeline and zero latencies');
  const text = renderTextReport(one);
  t.notMatch(text, /NaN|Infinity|undefined/);
  t.match(text, /^ {2}y +1 +0 +– +– +SELECT 2$/m, 'a digest with no latency on either side shows –');
  t.match(text, /^ {2}z +1 +1 +0 ms +0 ms +SELECT 1$/m, 'zero is a number');
});
