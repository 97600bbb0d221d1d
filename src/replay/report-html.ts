/**
 * The replay report as one self-contained HTML page (`pgscribe replay --report FILE.html`): inline
 * CSS, charts as inline SVG drawn here (svg-chart.ts), no script and nothing fetched, so the file
 * can be mailed, attached to a ticket or opened from disk and shows the same everywhere.
 *
 * The page's strings come from users' logs (SQL, error messages, file names, the target): each
 * goes through esc() (html-escape.ts), and visible() first, so that a bidi control cannot reorder
 * what a reader sees. The Content-Security-Policy forbids every script and fetch as a second
 * line: were an escape ever missed, an injected <script> or onerror= would still not run.
 */

import { esc } from './html-escape';
import {
  changedCount,
  changedDigests,
  changesInOrder,
  cut,
  fmtCount,
  fmtDuration,
  fmtRate,
  fmtRatio,
  fmtSpeed,
  latencyMs,
  notReplayableInOrder,
  regressions,
  topByCount,
  visible,
} from './report-format';
import type { DigestReport, ReplayReport } from './report-types';
import { CHART_TOP_DIGESTS, latencyBars, throughputChart } from './svg-chart';

/** How many digests the page's count table lists (the chart shows the first CHART_TOP_DIGESTS). */
export const HTML_TOP_DIGESTS = 100;
/** SQL in a table cell: one line of about this many characters; the whole text is on hover. */
const SQL_CELL = 160;

/** Escaped and with controls made visible: for every string that came from the report. */
function t(s: string): string {
  return esc(visible(s));
}

const CSS = `
:root { --fg: #111827; --muted: #6b7280; --line: #e5e7eb; --bad: #dc2626; --warn: #b45309; --bg: #f9fafb; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 0 0 10px; }
.sub, .none, .note { color: var(--muted); }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; margin-top: 18px; overflow-x: auto; }
#summary { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; margin: 16px 0 0; }
#summary .stat { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
#summary dt { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
#summary dd { margin: 2px 0 0; font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
#summary dd small { display: block; font-size: 12px; font-weight: 400; color: var(--muted); }
#summary .bad dd { color: var(--bad); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.digest, td.example { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; white-space: nowrap; }
td.sql { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; word-break: break-all; min-width: 280px; }
td.before, td.after { white-space: nowrap; }
td.after { color: var(--bad); }
td.message { color: var(--warn); }
tr.regression td.ratio, tr.regression td.digest { color: var(--bad); font-weight: 600; }
svg.chart { max-width: 100%; height: auto; font: 11px system-ui, sans-serif; }
svg .tick, svg .axis-label, svg .note { fill: var(--muted); }
svg .digest-label { font: 11px ui-monospace, Menlo, monospace; fill: var(--fg); }
svg .value { fill: var(--fg); }
svg .value.missing { fill: var(--muted); }
svg .ratio.regression { fill: var(--bad); font-weight: 700; }
`;

export function renderHtmlReport(r: ReplayReport): string {
  const body = [header(r), summary(r), throughputSection(r), latencySection(r), regressionsSection(r), changesSection(r), digestsSection(r)];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="pgscribe replay">
<title>pgscribe replay report: ${t(r.target)}</title>
<style>${CSS}</style>
</head>
<body>
${body.join('\n')}
</body>
</html>
`;
}

function header(r: ReplayReport): string {
  const logs = r.logs.length === 0 ? 'no log' : r.logs.map((l) => `<code class="log">${t(l)}</code>`).join(', ');
  return `<header>
<h1>Replay against <span id="target">${t(r.target)}</span></h1>
<p class="sub">${logs} · speed ${t(fmtSpeed(r.speed))} · <time>${t(r.startedAt)}</time> to <time>${t(r.finishedAt)}</time></p>
</header>`;
}

function stat(key: string, label: string, value: string, small = '', bad = false): string {
  return `<div class="stat${bad ? ' bad' : ''}" data-key="${key}"><dt>${label}</dt><dd>${value}${small === '' ? '' : `<small>${small}</small>`}</dd></div>`;
}

function summary(r: ReplayReport): string {
  const s = r.sessions;
  const st = r.statements;
  const reasons = notReplayableInOrder(st.notReplayable);
  const notReplayable = reasons.reduce((a, [, c]) => a + c, 0);
  const reasonList =
    reasons.length === 0 ? '' : reasons.map(([why, c]) => `<span class="reason">${fmtCount(c)} ${t(why)}</span>`).join('<br>');
  const failure = s.failed > 0 && s.firstFailure !== undefined ? `first: ${t(cut(s.firstFailure, 160))}` : '';
  return `<dl id="summary">
${stat('duration', 'duration', fmtDuration(r.durationMs), `speed ${t(fmtSpeed(r.speed))}`)}
${stat('sessions', 'sessions replayed', `${fmtCount(s.replayed)}`, `of ${fmtCount(s.total)} in the log`)}
${stat('failed', 'sessions failed', fmtCount(s.failed), failure, s.failed > 0)}
${stat('cut', 'sessions cut', fmtCount(s.cut))}
${stat('statements', 'statements replayed', fmtCount(st.replayed), `${fmtRate(st.rate)} statements/s`)}
${stat('errors', 'errors', fmtCount(st.errors), '', st.errors > 0)}
${stat('changed', 'changed outcomes', fmtCount(st.changed), '', st.changed > 0)}
${stat('regressions', 'latency regressions', fmtCount(r.digests.filter((d) => d.regression).length), `p50 ≥ ${t(String(r.slowerThreshold))}× and +1 ms`, r.digests.some((d) => d.regression))}
${stat('not-replayable', 'not replayable', fmtCount(notReplayable), reasonList)}
${stat('skipped-writes', 'skipped writes', fmtCount(st.skippedWrites), st.skippedWrites > 0 ? '--read-only' : '')}
</dl>`;
}

function none(what: string): string {
  return `<p class="none">none${what === '' ? '' : `: ${what}`}</p>`;
}

function throughputSection(r: ReplayReport): string {
  const chart = r.timeline.length === 0 ? none('no timeline') : throughputChart(r.timeline);
  return `<section id="throughput">
<h2>Throughput</h2>
${chart}
</section>`;
}

function latencySection(r: ReplayReport): string {
  const ds = topByCount(r.digests, CHART_TOP_DIGESTS);
  const title = r.digests.length > ds.length ? `top ${ds.length} of ${fmtCount(r.digests.length)} digests by count` : 'digests by count';
  return `<section id="latency">
<h2>p50 latency before and after: ${title}</h2>
${ds.length === 0 ? none('no digests') : latencyBars(ds)}
</section>`;
}

/** A table cell for a digest's SQL: one line, the whole statement in the title (on hover). */
function sqlCell(d: DigestReport, attrs = ''): string {
  return `<td class="sql"${attrs} title="${t(d.sql)}">${t(cut(d.sql, SQL_CELL))}</td>`;
}

function regressionsSection(r: ReplayReport): string {
  const ds = regressions(r.digests);
  const rows = ds.map(
    (d) => `<tr class="regression" data-digest="${t(d.id)}">
<td class="digest">${t(d.id)}</td>${sqlCell(d)}<td class="num p50">${latencyMs(d.before, 'p50')} → ${latencyMs(d.after, 'p50')}</td><td class="num p99">${latencyMs(d.before, 'p99')} → ${latencyMs(d.after, 'p99')}</td><td class="num ratio">${fmtRatio(d.ratioP50)}</td><td class="num ratio99">${fmtRatio(d.ratioP99)}</td>
</tr>`,
  );
  return `<section id="regressions-section">
<h2>Latency regressions <span class="note">(p50 at least ${t(String(r.slowerThreshold))}× and 1 ms slower; the largest ratio first)</span></h2>
${
  rows.length === 0
    ? none('')
    : `<table id="regressions">
<thead><tr><th>digest</th><th>statement</th><th class="num">p50 before → after</th><th class="num">p99 before → after</th><th class="num">p50 ratio</th><th class="num">p99 ratio</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>`
}
</section>`;
}

function changesSection(r: ReplayReport): string {
  const ds = changedDigests(r.digests);
  const rows: string[] = [];
  for (const d of ds) {
    const changes = changesInOrder(d);
    // The digest and its statement once per group (rowspan), the changes one per row below.
    const span = changes.length > 1 ? ` rowspan="${changes.length}"` : '';
    changes.forEach((c, i) => {
      const head = i === 0 ? `<td class="digest"${span}>${t(d.id)}<br><span class="note">×${fmtCount(changedCount(d))}</span></td>${sqlCell(d, span)}` : '';
      rows.push(`<tr class="change" data-digest="${t(d.id)}">${head}<td class="before">${t(c.before)}</td><td class="after">${t(c.after)}</td><td class="num count">${fmtCount(c.count)}</td><td class="example">conn=${t(String(c.example.conn))} seq=${t(String(c.example.seq))}</td><td class="message">${c.message === undefined ? '' : t(c.message)}</td></tr>`);
    });
  }
  const total = ds.reduce((a, d) => a + changedCount(d), 0);
  return `<section id="changes-section">
<h2>Changed outcomes${ds.length === 0 ? '' : ` <span class="note">(${fmtCount(total)} statements in ${fmtCount(ds.length)} ${ds.length === 1 ? 'digest' : 'digests'})</span>`}</h2>
${
  rows.length === 0
    ? none('')
    : `<table id="changes">
<thead><tr><th>digest</th><th>statement</th><th>before</th><th>after</th><th class="num">count</th><th>example</th><th>message on the target</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>`
}
</section>`;
}

function digestsSection(r: ReplayReport): string {
  const ds = topByCount(r.digests, HTML_TOP_DIGESTS);
  const rows = ds.map(
    (d) => `<tr class="digest-row${d.regression ? ' regression' : ''}" data-digest="${t(d.id)}"><td class="digest">${t(d.id)}</td>${sqlCell(d)}<td class="num original">${fmtCount(d.original)}</td><td class="num replayed">${fmtCount(d.replayed)}</td><td class="num p50-before">${latencyMs(d.before, 'p50')}</td><td class="num p50-after">${latencyMs(d.after, 'p50')}</td><td class="num ratio">${fmtRatio(d.ratioP50)}</td><td class="num changed">${fmtCount(changedCount(d))}</td></tr>`,
  );
  const title = r.digests.length > ds.length ? `top ${ds.length} of ${fmtCount(r.digests.length)}` : '';
  return `<section id="digests-section">
<h2>Digests by count${title === '' ? '' : ` <span class="note">(${title})</span>`}</h2>
${
  rows.length === 0
    ? none('')
    : `<table id="digests">
<thead><tr><th>digest</th><th>statement</th><th class="num">in log</th><th class="num">replayed</th><th class="num">p50 before</th><th class="num">p50 after</th><th class="num">ratio</th><th class="num">changed</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>`
}
</section>`;
}
