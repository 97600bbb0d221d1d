/**
 * A dependency-free SVG line chart: panels stacked on top of each other that share one x axis
 * (time), each with its own y axis, grid, tick labels and legend. Used by bench/stress.ts.
 *
 * Points with a null y (or a non-finite one) break the line instead of being drawn as zero.
 */

export interface Series {
  name: string;
  color: string;
  points: ReadonlyArray<readonly [number, number | null]>;
  /** Dashed line (e.g. a reference level). */
  dashed?: boolean;
}

/** A shaded x range inside one panel (e.g. the windows a check compares). */
export interface Band {
  x0: number;
  x1: number;
  label: string;
  color: string;
}

export interface Panel {
  title: string;
  series: Series[];
  bands?: Band[];
  /** Lowest y shown (default 0; use undefined data range with `fitMin`). */
  yMin?: number;
  /** Fit the y range to the data instead of starting at yMin/0. */
  fitMin?: boolean;
}

export interface ChartSpec {
  title: string;
  subtitle?: string;
  xLabel: string;
  xMin: number;
  xMax: number;
  panels: Panel[];
  width?: number;
  panelHeight?: number;
}

/** Round step (1, 2 or 5 times a power of ten) giving about `count` ticks over [min, max]. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (max < min) [min, max] = [max, min];
  if (max === min) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  let step = mag;
  for (const m of [1, 2, 5, 10]) {
    step = m * mag;
    if (step >= raw) break;
  }
  const start = Math.floor(min / step + 1e-9) * step;
  const end = Math.ceil(max / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let v = start, i = 0; v <= end + step * 1e-6 && i < 100; v = start + ++i * step) ticks.push(roundTo(v, step));
  return ticks;
}

function roundTo(v: number, step: number): number {
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  return Number(v.toFixed(Math.min(decimals, 10)));
}

function fmtTick(v: number, ticks: number[]): string {
  const step = ticks.length > 1 ? Math.abs(ticks[1]! - ticks[0]!) : 1;
  const decimals = step >= 1 ? 0 : Math.min(6, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
  const s = v.toFixed(decimals);
  return s === '-0' ? '0' : s;
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

const n2 = (v: number) => (Math.round(v * 10) / 10).toString();

/** Render the chart as a complete, standalone SVG document. */
export function renderStackedChart(spec: ChartSpec): string {
  const width = spec.width ?? 1000;
  const panelH = spec.panelHeight ?? 140;
  const left = 72;
  const right = 190;
  const top = spec.subtitle ? 74 : 54;
  const gap = 34;
  const bottom = 56;
  const plotW = width - left - right;
  const height = top + spec.panels.length * panelH + (spec.panels.length - 1) * gap + bottom;
  const xTicks = niceTicks(spec.xMin, spec.xMax, 10).filter((t) => t >= spec.xMin - 1e-9 && t <= spec.xMax + 1e-9);
  const xRange = spec.xMax - spec.xMin || 1;
  const sx = (x: number) => left + ((x - spec.xMin) / xRange) * plotW;

  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
  );
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${left}" y="26" font-size="17" font-weight="bold" fill="#111">${escapeXml(spec.title)}</text>`);
  if (spec.subtitle) out.push(`<text x="${left}" y="48" font-size="12" fill="#444">${escapeXml(spec.subtitle)}</text>`);

  spec.panels.forEach((panel, pi) => {
    const y0 = top + pi * (panelH + gap);
    const values: number[] = [];
    for (const s of panel.series) for (const [, y] of s.points) if (y !== null && Number.isFinite(y)) values.push(y);
    let lo = panel.fitMin && values.length ? Math.min(...values) : (panel.yMin ?? 0);
    let hi = values.length ? Math.max(...values) : 1;
    if (!panel.fitMin) lo = Math.min(lo, values.length ? Math.min(...values) : lo);
    if (hi <= lo) hi = lo + 1;
    const yTicks = niceTicks(lo, hi, 4);
    const yLo = yTicks[0]!;
    const yHi = yTicks[yTicks.length - 1]!;
    const sy = (y: number) => y0 + panelH - ((y - yLo) / (yHi - yLo || 1)) * panelH;

    out.push(`<g>`);
    out.push(`<text x="${left}" y="${y0 - 8}" font-size="13" font-weight="bold" fill="#222">${escapeXml(panel.title)}</text>`);
    out.push(`<rect x="${left}" y="${y0}" width="${plotW}" height="${panelH}" fill="#fbfbfb" stroke="#999" stroke-width="1"/>`);
    for (const b of panel.bands ?? []) {
      const bx0 = sx(Math.max(spec.xMin, b.x0));
      const bx1 = sx(Math.min(spec.xMax, b.x1));
      if (bx1 <= bx0) continue;
      out.push(`<rect x="${n2(bx0)}" y="${y0}" width="${n2(bx1 - bx0)}" height="${panelH}" fill="${b.color}" fill-opacity="0.13"/>`);
      out.push(
        `<text x="${n2((bx0 + bx1) / 2)}" y="${y0 + 13}" text-anchor="middle" font-size="10" fill="#555">${escapeXml(b.label)}</text>`,
      );
    }
    for (const t of yTicks) {
      const y = sy(t);
      out.push(`<line x1="${left}" y1="${n2(y)}" x2="${left + plotW}" y2="${n2(y)}" stroke="#e2e2e2" stroke-width="1"/>`);
      out.push(`<line x1="${left - 4}" y1="${n2(y)}" x2="${left}" y2="${n2(y)}" stroke="#666"/>`);
      out.push(`<text x="${left - 7}" y="${n2(y + 4)}" text-anchor="end" fill="#333">${escapeXml(fmtTick(t, yTicks))}</text>`);
    }
    for (const t of xTicks) {
      const x = sx(t);
      out.push(`<line x1="${n2(x)}" y1="${y0}" x2="${n2(x)}" y2="${y0 + panelH}" stroke="#eeeeee" stroke-width="1"/>`);
      out.push(`<line x1="${n2(x)}" y1="${y0 + panelH}" x2="${n2(x)}" y2="${y0 + panelH + 4}" stroke="#666"/>`);
      if (pi === spec.panels.length - 1) {
        out.push(`<text x="${n2(x)}" y="${y0 + panelH + 18}" text-anchor="middle" fill="#333">${escapeXml(fmtTick(t, xTicks))}</text>`);
      }
    }
    panel.series.forEach((s, si) => {
      const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
      let seg: string[] = [];
      const flush = () => {
        if (seg.length === 1) {
          const [px, py] = seg[0]!.split(',');
          out.push(`<circle cx="${px}" cy="${py}" r="2" fill="${s.color}"/>`);
        } else if (seg.length > 1) {
          out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.8"${dash} stroke-linejoin="round" points="${seg.join(' ')}"/>`);
        }
        seg = [];
      };
      for (const [x, y] of s.points) {
        if (y === null || !Number.isFinite(y) || x < spec.xMin || x > spec.xMax) {
          flush();
          continue;
        }
        seg.push(`${n2(sx(x))},${n2(sy(y))}`);
      }
      flush();
      const ly = y0 + 14 + si * 18;
      const lx = left + plotW + 14;
      out.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 22}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2.5"${dash}/>`);
      out.push(`<text x="${lx + 28}" y="${ly}" fill="#222">${escapeXml(s.name)}</text>`);
    });
    out.push(`</g>`);
  });

  const last = top + spec.panels.length * panelH + (spec.panels.length - 1) * gap;
  out.push(`<text x="${left + plotW / 2}" y="${last + 42}" text-anchor="middle" fill="#222">${escapeXml(spec.xLabel)}</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
