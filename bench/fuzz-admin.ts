/**
 * `make fuzz-admin`: the admin HTTP server's fuzzer (bench/fuzz/admin-http.ts) for DURATION
 * seconds (600) from SEED, CONCURRENCY connections at once (8). Prints the result as JSON and
 * exits 1 on a hang, a failed /health, pgscribe exiting, or RSS past start + RSS_BOUND_MB (256).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runAdminFuzz } from './fuzz/admin-http';

const env = (k: string, d: number): number => (process.env[k] === undefined ? d : Number(process.env[k]));

async function main(): Promise<void> {
  const rssBoundBytes = env('RSS_BOUND_MB', 256) * 2 ** 20;
  const r = await runAdminFuzz({ durationS: env('DURATION', 600), seed: env('SEED', Date.now() % 1_000_000), concurrency: env('CONCURRENCY', 8), log: (s) => console.error(s) });
  const ok = r.hangs.length === 0 && r.healthFailures.length === 0 && r.pgscribeExited === null && r.rssMaxBytes - r.rssStartBytes <= rssBoundBytes;
  const file = path.join('logs', `fuzz-admin-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.mkdirSync('logs', { recursive: true });
  fs.writeFileSync(file, JSON.stringify({ ok, rssBoundBytes, ...r, hangs: r.hangs.slice(0, 50), healthFailures: r.healthFailures.slice(0, 50) }, null, 2) + '\n');
  console.log(JSON.stringify({ ok, seed: r.seed, durationS: r.durationS, cases: r.cases, hangs: r.hangs.length, healthChecks: r.healthChecks, healthFailures: r.healthFailures.length, pgscribeExited: r.pgscribeExited, rssStartMiB: +(r.rssStartBytes / 2 ** 20).toFixed(1), rssMaxMiB: +(r.rssMaxBytes / 2 ** 20).toFixed(1), file }));
  process.exit(ok ? 0 : 1);
}

void main();
