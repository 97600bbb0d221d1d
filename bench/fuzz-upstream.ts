/**
 * `make fuzz-upstream`: the hostile-upstream fuzzer (bench/fuzz/upstream.ts) for DURATION seconds
 * (default 600) from SEED (default: the time), CONCURRENCY fuzzed connections at once (8) and
 * VALID sessions (4). Prints the result as JSON and exits 1 on a hang, a wrong answer, pgscribe
 * exiting, writing a stack trace or an "internal error", or RSS past the bound (RSS_BOUND_MB, 256
 * over the start). FUZZ_ONLY=<case seed> replays one case; PGSCRIBE_ARGS adds flags to the main
 * pgscribe.
 */
import { runUpstreamFuzz } from './fuzz/upstream';
import { envNumber, runKnobs, writeFuzzResult } from './fuzz/shared';

const mib = (b: number): number => +(b / 2 ** 20).toFixed(1);

async function main(): Promise<void> {
  const { seed, only, rssBoundBytes, args } = runKnobs();
  const r = await runUpstreamFuzz({
    durationS: envNumber('DURATION', 600),
    seed,
    concurrency: envNumber('CONCURRENCY', 8),
    validSessions: envNumber('VALID', 4),
    args,
    ...(only === undefined ? {} : { only }),
    log: (s) => console.error(s),
  });
  const rssGrowth = Math.max(r.rssMaxBytes - r.rssStartBytes, r.sslRssMaxBytes - r.sslRssStartBytes);
  const ok = r.hangs.length === 0 && r.wrongAnswers.length === 0 && r.pgscribeExited === null && r.stderrTraces.length === 0 && r.internalErrors.length === 0 && rssGrowth <= rssBoundBytes;
  const out = { ok, rssBoundBytes, rssGrowthBytes: rssGrowth, ...r, hangs: r.hangs.slice(0, 50), wrongAnswers: r.wrongAnswers.slice(0, 50) };
  const file = writeFuzzResult('fuzz-upstream', out);
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
