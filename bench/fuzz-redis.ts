/**
 * `make fuzz-redis`: the hostile-Redis fuzzer (bench/fuzz/redis.ts) for DURATION seconds (default
 * 600) from SEED (default: the time) with SESSIONS valid sessions (6). Prints the result as JSON
 * and exits 1 on a wrong answer, a hang, a stack trace, pgscribe exiting, or RSS past the bound
 * (RSS_BOUND_MB, 256 over the start). FUZZ_ONLY=<case seed> gives every Redis connection that
 * case's plan; FUZZ_KIND=<kind> gives every one that kind of trouble.
 */
import { runRedisFuzz } from './fuzz/redis';
import { envNumber, runKnobs, writeFuzzResult } from './fuzz/shared';
import { MITM_KINDS, type MitmKind } from './fuzz/redis-cases';

async function main(): Promise<void> {
  const { seed, only, rssBoundBytes, args } = runKnobs();
  const kind = process.env['FUZZ_KIND'];
  if (kind !== undefined && !(MITM_KINDS as readonly string[]).includes(kind)) throw new Error(`FUZZ_KIND must be one of ${MITM_KINDS.join(', ')}`);
  const r = await runRedisFuzz({
    durationS: envNumber('DURATION', 600),
    seed,
    sessions: envNumber('SESSIONS', 6),
    args,
    ...(only === undefined ? {} : { only }),
    ...(kind === undefined ? {} : { onlyKind: kind as MitmKind }),
    log: (s) => console.error(s),
  });
  const rssGrowth = r.rssMaxBytes - r.rssStartBytes;
  const ok = r.wrongAnswers.length === 0 && r.hangs.length === 0 && r.stackTraces.length === 0 && r.pgscribeExited === null && rssGrowth <= rssBoundBytes;
  const out = { ok, rssBoundBytes, rssGrowthBytes: rssGrowth, ...r, wrongAnswers: r.wrongAnswers.slice(0, 50), hangs: r.hangs.slice(0, 50) };
  const file = writeFuzzResult('fuzz-redis', out);
  const mib = (b: number): number => +(b / 2 ** 20).toFixed(1);
  console.log(
    JSON.stringify({ ok, seed: r.seed, durationS: r.durationS, cases: r.cases, replies: r.replies, mutated: r.mutated, garbagePushes: r.garbagePushes, forgedEntries: r.forgedEntries, queries: r.queries, wrongAnswers: r.wrongAnswers.length, hangs: r.hangs.length, maxLatencyMs: r.maxLatencyMs, stackTraces: r.stackTraces.length, pgscribeExited: r.pgscribeExited, l2Hits: r.counters['cache_l2_hits'], l2Refused: r.counters['cache_l2_refused'], rssStartMiB: mib(r.rssStartBytes), rssMaxMiB: mib(r.rssMaxBytes), rssEndMiB: mib(r.rssEndBytes), file }),
  );
  process.exit(ok ? 0 : 1);
}

void main();
