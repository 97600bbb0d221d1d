// The randomized safety checker (bench/safety-check.ts, `make safety-check`) for a short run with a
// fixed seed, in each worker mode: no answer through pgscribe that PostgreSQL would not have
// given. It cannot pass vacuously: the run must have judged many reads, committed writes, and had
// pgscribe answer some reads from its cache. Those counts depend on the machine's speed (a 30 s
// run here answers about 180-350 reads from the cache), so the run goes past 30 s, up to 90 s,
// until it has them, rather than failing on a slower machine.
import t from 'tap';
import { formatViolation, runSafetyCheck } from '../../bench/safety/run';
import { WORKER_MODES } from '../helpers/cache';

const SEED = 14;
const DURATION_S = 30;
const ENOUGH = { reads: 1000, writes: 100, cacheAnswers: 100, maxDurationS: 90 };

for (const workers of WORKER_MODES) {
  t.test(`safety check, ${DURATION_S} s, seed ${SEED}, --workers ${workers}`, async (t) => {
    const lines: string[] = [];
    const r = await runSafetyCheck({
      durationS: DURATION_S,
      enough: ENOUGH,
      clients: 16,
      seed: SEED,
      extraArgs: [],
      workers,
      redis: false,
      catalog: true,
      direct: false,
      elsewhere: false,
      elsewhereLagMs: 0,
      printLimit: 0,
      log: (s) => lines.push(s),
    });
    const tally = r.tally;
    const hits = (r.proxyStats?.['cache_hits'] ?? 0) + (r.proxyStats?.['cache_waiters'] ?? 0);
    t.equal(tally.totalViolations, 0, `no violations; found ${JSON.stringify(tally.violations)}:\n${r.examples.slice(0, 5).map(formatViolation).join('\n')}`);
    t.ok(tally.reads >= ENOUGH.reads, `judged ${tally.reads} reads in ${r.durationS} s (at least ${ENOUGH.reads})`);
    t.ok(tally.writesCommitted >= ENOUGH.writes, `${tally.writesCommitted} writes committed (at least ${ENOUGH.writes})`);
    t.ok(hits >= ENOUGH.cacheAnswers, `pgscribe answered ${hits} reads from its cache or a flight (at least ${ENOUGH.cacheAnswers}): ${JSON.stringify(r.proxyStats)}`);
    t.ok(Object.keys(tally.readsByTemplate).length >= 20, `reads of ${Object.keys(tally.readsByTemplate).length} kinds`);
  });
}
