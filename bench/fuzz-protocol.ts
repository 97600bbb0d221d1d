/**
 * `make fuzz`: the protocol fuzzer (bench/fuzz/) for DURATION seconds (default 600) from SEED
 * (default: the time), CONCURRENCY fuzz connections at once (8) and VALID sessions (4). Prints the
 * result as JSON and exits 1 on a hang, a wrong answer, pgscribe exiting, or RSS past the bound
 * (RSS_BOUND_MB, 256 over the start). FUZZ_ONLY=<case seed> replays one case.
 */
import { runProtocolFuzz } from './fuzz/protocol';
import { envNumber, runKnobs, writeFuzzResult } from './fuzz/shared';

async function main(): Promise<void> {
  const { seed, only, rssBoundBytes, args } = runKnobs();
  const r = await runProtocolFuzz({
    durationS: envNumber('DURATION', 600),
    seed,
    concurrency: envNumber('CONCURRENCY', 8),
    validSessions: envNumber('VALID', 4),
    args,
    ...(only === undefined ? {} : { only }),
    log: (s) => console.error(s),
  });
  const rssGrowth = r.rssMaxBytes - r.rssStartBytes;
  const ok = r.hangs.length === 0 && r.wrongAnswers.length === 0 && r.pgscribeExited === null && rssGrowth <= rssBoundBytes;
  const out = { ok, rssBoundBytes, rssGrowthBytes: rssGrowth, ...r, hangs: r.hangs.slice(0, 50), wrongAnswers: r.wrongAnswers.slice(0, 50) };
  const file = writeFuzzResult('fuzz-protocol', out);
  console.log(JSON.stringify({ ok, seed: r.seed, durationS: r.durationS, cases: r.cases, byKind: r.byKind, hangs: r.hangs.length, wrongAnswers: r.wrongAnswers.length, validQueries: r.validQueries, pgscribeExited: r.pgscribeExited, rssStartMiB: +(r.rssStartBytes / 2 ** 20).toFixed(1), rssMaxMiB: +(r.rssMaxBytes / 2 ** 20).toFixed(1), rssEndMiB: +(r.rssEndBytes / 2 ** 20).toFixed(1), file }));
  process.exit(ok ? 0 : 1);
}

void main();
