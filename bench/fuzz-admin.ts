/**
 * `make fuzz-admin`: the admin HTTP server's fuzzer (bench/fuzz/admin-http.ts) for DURATION
 * seconds (600) from SEED, CONCURRENCY connections at once (8). Prints the result as JSON and
 * exits 1 on a hang, a failed /health, pgscribe exiting, or RSS past start + RSS_BOUND_MB (256).
 */
import { runAdminFuzz } from './fuzz/admin-http';
import { envNumber, runKnobs, writeFuzzResult } from './fuzz/shared';

async function main(): Promise<void> {
  const { seed, rssBoundBytes } = runKnobs();
  const r = await runAdminFuzz({ durationS: envNumber('DURATION', 600), seed, concurrency: envNumber('CONCURRENCY', 8), log: (s) => console.error(s) });
  const ok = r.hangs.length === 0 && r.healthFailures.length === 0 && r.pgscribeExited === null && r.rssMaxBytes - r.rssStartBytes <= rssBoundBytes;
  const file = writeFuzzResult('fuzz-admin', { ok, rssBoundBytes, ...r, hangs: r.hangs.slice(0, 50), healthFailures: r.healthFailures.slice(0, 50) });
  console.log(JSON.stringify({ ok, seed: r.seed, durationS: r.durationS, cases: r.cases, hangs: r.hangs.length, healthChecks: r.healthChecks, healthFailures: r.healthFailures.length, pgscribeExited: r.pgscribeExited, rssStartMiB: +(r.rssStartBytes / 2 ** 20).toFixed(1), rssMaxMiB: +(r.rssMaxBytes / 2 ** 20).toFixed(1), file }));
  process.exit(ok ? 0 : 1);
}

void main();
