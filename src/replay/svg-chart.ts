/**
 * The HTML report's two charts as inline SVG, drawn here rather than in the browser: the page
 * carries no script, so it shows the same in a mail attachment, a CI artifact viewer with scripts
 * off, or a browser with a strict Content-Security-Policy.
 *
 * - throughputChart(): statements/s and errors/s over the replay, with the lag behind schedule
 *   as a second line on its own axis (a replay that cannot keep up shows as a rising lag while
 *   statements/s flattens).
 * - latencyBars(): p50 before and after for each digest, as paired horizontal bars.
 *
 * Class names and data- attributes are what the tests count (test/e2e/replay-report-page.test.ts).
 */

import { esc } from './html-escape';
import { cut, fmtCount, fmtMs, fmtRatio, oneLine } from './report-format';
import type { DigestReport, LatencySummary, TimelinePoint } from './report-types';

/**
 * At most this many points per line. A replay of a day's log has 86,400 one-second points: three
 * lines of those are megabytes of SVG for detail no screen shows (a chart is about 900 px wide).
 */
export const MAX_TIMELINE_POINTS = 1000;

const COLORS = {
  statements: '#2563eb',
  errors: '#dc2626',
  lag: '#6b7280',
  before: '#94a3b8',
  after: '#f59e0b',
  regression: '#dc2626',
  grid: '#e5e7eb',
  axis: '#374151',
};

/** A coordinate with one decimal, no trailing ".0": smaller markup, no sub-pixel noise. */
function n(v: number): string {
  const s = v.toFixed(1);
  return s.endsWith('.0') ? s.slice(0, -2) : s;
}

/** Round steps (1, 2 or 5 times a power of ten) from 0 to at least max, about `count` of them. */
export function niceTicks(max: number, count = 5): number[] {
  if (!Number.isFinite(max) || max <= 0) return [0, 1];
  const raw = max / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  let step = mag;
  for (const m of [1, 2, 5, 10]) {
    step = m * mag;
    if (step >= raw) break;
  }
  const ticks: number[] = [];
  // Rounded through toPrecision: 0.1 * 3 is 0.30000000000000004, which would print as such.
  for (let i = 0; i <= count + 1; i++) {
    const v = Number((i * step).toPrecision(12));
    ticks.push(v);
    if (v >= max) break;
  }
  return ticks;
}

function tickLabel(v: number): string {
  return v >= 1000 ? fmtCount(v) : String(v);
}

/**
 * The timeline cut to at most `max` points: consecutive seconds merged into buckets, statements
 * and errors as the mean per second (so the y axis stays "per second"), lag as the worst in the
 * bucket (a spike of lag is what the operator looks for). Sorted by t.
 */
export function bucketTimeline(points: readonly TimelinePoint[], max = MAX_TIMELINE_POINTS): TimelinePoint[] {
  const sorted = [...points].sort((a, b) => a.t - b.t);
  if (sorted.length <= max) return sorted;
  const size = Math.ceil(sorted.length / max);
  const out: TimelinePoint[] = [];
  for (let i = 0; i < sorted.length; i += size) {
    const b = sorted.slice(i, i + size);
    let st = 0;
    let er = 0;
    let lag = 0;
    for (const p of b) {
      st += p.statements;
      er += p.errors;
      lag = Math.max(lag, p.lagMs);
    }
    out.push({ t: b[0]!.t, statements: st / b.length, errors: er / b.length, lagMs: lag });
  }
  return out;
}

/** Statements/s and errors/s (left axis) and lag in ms (right axis) against seconds since the start. */
export function throughputChart(timeline: readonly TimelinePoint[]): string {
  const pts = bucketTimeline(timeline);
  const W = 960;
  const H = 280;
  const L = 64;
  const R = 72;
  const T = 34;
  const B = 40;
  const pw = W - L - R;
  const ph = H - T - B;
  const t0 = pts[0]?.t ?? 0;
  const t1 = Math.max(pts[pts.length - 1]?.t ?? 1, t0 + 1);
  const yTicks = niceTicks(Math.max(1, ...pts.map((p) => Math.max(p.statements, p.errors))));
  const lagTicks = niceTicks(Math.max(1, ...pts.map((p) => p.lagMs)));
  const yMax = yTicks[yTicks.length - 1]!;
  const lagMax = lagTicks[lagTicks.length - 1]!;
  const x = (t: number): number => L + ((t - t0) / (t1 - t0)) * pw;
  const y = (v: number): number => T + ph - (v / yMax) * ph;
  const yLag = (v: number): number => T + ph - (v / lagMax) * ph;

  const parts: string[] = [];
  parts.push(
    `<svg id="throughput-chart" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="Statements per second, errors per second and lag over the replay">`,
  );
  for (const v of yTicks) {
    parts.push(`<line class="grid" x1="${L}" x2="${L + pw}" y1="${n(y(v))}" y2="${n(y(v))}" stroke="${COLORS.grid}"/>`);
    parts.push(`<text class="tick" x="${L - 6}" y="${n(y(v) + 4)}" text-anchor="end">${tickLabel(v)}</text>`);
  }
  for (const v of lagTicks) parts.push(`<text class="tick lag-tick" x="${L + pw + 6}" y="${n(yLag(v) + 4)}">${tickLabel(v)}</text>`);
  for (const v of niceTicks(t1 - t0, 8)) {
    if (t0 + v > t1) break;
    parts.push(`<text class="tick" x="${n(x(t0 + v))}" y="${T + ph + 16}" text-anchor="middle">${tickLabel(t0 + v)}</text>`);
  }
  parts.push(`<line x1="${L}" x2="${L + pw}" y1="${T + ph}" y2="${T + ph}" stroke="${COLORS.axis}"/>`);
  parts.push(`<text class="axis-label" x="${L + pw / 2}" y="${H - 6}" text-anchor="middle">seconds since the replay started</text>`);
  parts.push(`<text class="axis-label" x="14" y="${T + ph / 2}" text-anchor="middle" transform="rotate(-90 14 ${T + ph / 2})">per second</text>`);
  parts.push(`<text class="axis-label" x="${W - 10}" y="${T + ph / 2}" text-anchor="middle" transform="rotate(90 ${W - 10} ${T + ph / 2})">lag (ms)</text>`);

  const line = (cls: string, color: string, f: (p: TimelinePoint) => [number, number], dash = ''): string =>
    `<polyline class="series ${cls}" fill="none" stroke="${color}" stroke-width="${cls === 'statements' ? 2 : 1.5}"${dash} points="${pts
      .map((p) => f(p).map(n).join(','))
      .join(' ')}"/>`;
  parts.push(line('lag', COLORS.lag, (p) => [x(p.t), yLag(p.lagMs)], ' stroke-dasharray="5 3"'));
  parts.push(line('statements', COLORS.statements, (p) => [x(p.t), y(p.statements)]));
  parts.push(line('errors', COLORS.errors, (p) => [x(p.t), y(p.errors)]));

  const legend: [string, string, string][] = [
    ['statements/s', COLORS.statements, ''],
    ['errors/s', COLORS.errors, ''],
    ['lag behind schedule (right axis)', COLORS.lag, ' stroke-dasharray="5 3"'],
  ];
  let lx = L;
  for (const [label, color, dash] of legend) {
    parts.push(`<line x1="${lx}" x2="${lx + 18}" y1="14" y2="14" stroke="${color}" stroke-width="2"${dash}/>`);
    parts.push(`<text class="legend" x="${lx + 24}" y="18">${esc(label)}</text>`);
    lx += 36 + label.length * 6.5;
  }
  if (pts.length < timeline.length) {
    parts.push(`<text class="note" x="${L + pw}" y="18" text-anchor="end">${fmtCount(timeline.length)} seconds in ${fmtCount(pts.length)} points</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n');
}

/** How many digests the latency chart shows: past about 20, the bars get too thin to compare. */
export const CHART_TOP_DIGESTS = 20;

function hasLatency(s: LatencySummary | null): s is LatencySummary {
  return s !== null && s.count > 0 && Number.isFinite(s.p50);
}

/**
 * p50 before and after per digest, in the order given, as two bars per row on one linear scale
 * (one scale for all rows: a log scale would make a 2× regression look like a few pixels).
 * The after bar of a regression is red, and the row's ratio bold red.
 */
export function latencyBars(digests: readonly DigestReport[]): string {
  const W = 960;
  const ROW = 30;
  const BAR = 10;
  const T = 40;
  const LABEL = 160;
  const RIGHT = 130;
  const H = T + digests.length * ROW + 30;
  const pw = W - LABEL - RIGHT;
  let max = 0;
  for (const d of digests) {
    if (hasLatency(d.before)) max = Math.max(max, d.before.p50);
    if (hasLatency(d.after)) max = Math.max(max, d.after.p50);
  }
  const ticks = niceTicks(max > 0 ? max : 1);
  const top = ticks[ticks.length - 1]!;
  const x = (v: number): number => LABEL + (v / top) * pw;

  const parts: string[] = [];
  parts.push(
    `<svg id="latency-chart" class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="p50 latency before and after, per digest">`,
  );
  const legend: [string, string][] = [
    ['p50 before (log)', COLORS.before],
    ['p50 after (target)', COLORS.after],
    ['after, a regression', COLORS.regression],
  ];
  let lx = LABEL;
  for (const [label, color] of legend) {
    parts.push(`<rect x="${lx}" y="8" width="12" height="12" fill="${color}"/>`);
    parts.push(`<text class="legend" x="${lx + 18}" y="18">${esc(label)}</text>`);
    lx += 40 + label.length * 6.5;
  }
  const bottom = T + digests.length * ROW;
  for (const v of ticks) {
    parts.push(`<line class="grid" x1="${n(x(v))}" x2="${n(x(v))}" y1="${T - 4}" y2="${bottom}" stroke="${COLORS.grid}"/>`);
    parts.push(`<text class="tick" x="${n(x(v))}" y="${bottom + 16}" text-anchor="middle">${tickLabel(v)}</text>`);
  }
  parts.push(`<text class="axis-label" x="${LABEL + pw}" y="${bottom + 28}" text-anchor="end">ms</text>`);

  digests.forEach((d, i) => {
    const y0 = T + i * ROW;
    const sql = esc(cut(d.sql, 200));
    parts.push(`<g class="digest-row" data-digest="${esc(oneLine(d.id))}"${d.regression ? ' data-regression="1"' : ''}>`);
    parts.push(`<title>${sql} (${fmtCount(d.original)} in the log, ${fmtCount(d.replayed)} replayed)</title>`);
    parts.push(`<text class="digest-label" x="${LABEL - 8}" y="${y0 + BAR + 4}" text-anchor="end">${esc(oneLine(d.id))}</text>`);
    const bar = (s: LatencySummary | null, cls: string, color: string, y: number, what: string): void => {
      if (!hasLatency(s)) {
        parts.push(`<text class="value missing" x="${LABEL + 4}" y="${y + BAR - 1}">– (no ${what})</text>`);
        return;
      }
      // At least a pixel: a 0.05 ms read next to a 2 s report still shows it has a value.
      const w = Math.max(1, x(s.p50) - LABEL);
      parts.push(
        `<rect class="bar ${cls}" x="${LABEL}" y="${y}" width="${n(w)}" height="${BAR}" fill="${color}"><title>${esc(what)} p50 ${fmtMs(s.p50)} ms, p99 ${fmtMs(s.p99)} ms, ${fmtCount(s.count)} statements</title></rect>`,
      );
      parts.push(`<text class="value" x="${n(LABEL + w + 4)}" y="${y + BAR - 1}">${fmtMs(s.p50)}</text>`);
    };
    bar(d.before, 'before', COLORS.before, y0 + 3, 'before');
    bar(d.after, d.regression ? 'after regression' : 'after', d.regression ? COLORS.regression : COLORS.after, y0 + 4 + BAR, 'after');
    parts.push(
      `<text class="ratio${d.regression ? ' regression' : ''}" x="${W - 8}" y="${y0 + BAR + 4}" text-anchor="end">${fmtRatio(d.ratioP50)}</text>`,
    );
    parts.push('</g>');
  });
  parts.push('</svg>');
  return parts.join('\n');
}
