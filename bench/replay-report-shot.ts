/**
 * The README's screenshot of a replay report: renders a report JSON (what `pgscribe replay`
 * compares into, src/replay/report-types.ts) to HTML with renderHtmlReport() and screenshots it in
 * headless Chromium.
 *
 *   node build/bench/replay-report-shot.js REPORT.json [OUT.png]
 *
 * OUT defaults to bench/results/replay-report.png. HEIGHT (default 2200) sets the viewport's
 * height: Chromium's --screenshot takes the viewport, not the whole page, and the report is
 * taller than a screen. The HTML is kept next to the PNG (OUT with .html) to open in a browser.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { renderHtmlReport } from '../src/replay/report-html';
import type { ReplayReport } from '../src/replay/report-types';
import { screenshot } from '../test/harness/chromium';
import { envInt, repoRoot } from './lib/common';

async function main(): Promise<void> {
  const [input, outArg] = process.argv.slice(2);
  if (input === undefined) throw new Error('usage: node build/bench/replay-report-shot.js REPORT.json [OUT.png]');
  const out = path.resolve(outArg ?? path.join(repoRoot(), 'bench/results/replay-report.png'));
  const report = JSON.parse(fs.readFileSync(input, 'utf8')) as ReplayReport;
  const html = renderHtmlReport(report);
  // The page is loaded from a temp file, not from OUT's .html: Chromium gets a path with no
  // other files next to it, and a failed run leaves no half-written copy beside the PNG.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-replay-shot-'));
  try {
    const page = path.join(dir, 'report.html');
    fs.writeFileSync(page, html);
    await screenshot(pathToFileURL(page).href, out, { width: 1100, height: envInt('HEIGHT', 2200), budgetMs: 500 });
    fs.writeFileSync(out.replace(/\.png$/i, '') + '.html', html);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`${out}\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
