/**
 * `make fuzz-upstream`: the hostile-upstream fuzzer (bench/fuzz/upstream.ts) for DURATION seconds
 * (default 600) from SEED (default: the time), CONCURRENCY fuzzed connections at once (8) and
 * VALID sessions (4). Prints the result as JSON and exits 1 on a hang, a wrong answer, pgscribe
 * exiting, writing a stack trace or an "internal error", or RSS past the bound (RSS_BOUND_MB, 256
 * over the start). FUZZ_ONLY=<case seed> replays one case; PGSCRIBE_ARGS adds flags to the main
 * pgscribe.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runUpstreamFuzz } from './fuzz/upstream';

const env = (k: string, d: number): number => (process.env[k] === undefined ? d : Number(process.env[k]));
const mib = (b: number): number => +(b / 2 ** 20).toFixed(1);

async function main(): Promise<void> {
  const seed = env('SEED', Date.now() % 1_000_000);
  const only = process.env['FUZZ_ONLY'] === undefined ? undefined : Number(process.env['FUZZ_ONLY']);
  const rssBoundBytes = env('RSS_BOUND_MB', 256) * 2 ** 20;
  const r = await runUpstreamFuzz({
    durationS: env('DURATION', 600),
    seed,
    concurrency: env('CONCURRENCY', 8),
    validSessions: env('VALID', 4),
    args: (process.env['PGSCRIBE_ARGS'] ?? '').split(' ').filter((a) => a !== ''),
    ...(only === undefined ? {} : { only }),
    log: (s) => console.error(s),
  });
  const rssGrowth = Math.max(r.rssMaxBytes - r.rssStartBytes, r.sslRssMaxBytes - r.sslRssStartBytes);
  const ok = r.hangs.length === 0 && r.wrongAnswers.length === 0 && r.pgscribeExited === null && r.stderrTraces.length === 0 && r.internalErrors.length === 0 && rssGrowth <= rssBoundBytes;
  const out = { ok, rssBoundBytes, rssGrowthBytes: rssGrowth, ...r, hangs: r.hangs.slice(0, 50), wrongAnswers: r.wrongAnswers.slice(0, 50) };
  const file = path.join('logs', `fuzz-upstream-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.mkdirSync('logs', { recursive: true });
  fs.writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  console.log(
    JSON.stringify({
      ok,
      seed: r.seed,
      durationS: r.durationS,
      cases: r.cases,
      byKind: r.byKind,
      mustDetect: r.mustDetect,
      hangs: r.hangs.length,
      wrongAnswers: r.wrongAnswers.length,
      validQueries: r.validQueries,
      pgscribeExited: r.pgscribeExited,
      stderrTraces: r.stderrTraces.length,
      internalErrors: r.internalErrors.length,
      rssStartMiB: mib(r.rssStartBytes),
      rssMaxMiB: mib(r.rssMaxBytes),
      rssEndMiB: mib(r.rssEndBytes),
      file,
    }),
  );
  process.exit(ok ? 0 : 1);
}

void main();
