// A short run of the hostile-Redis fuzzer (bench/fuzz/, `make fuzz-redis` for the long one):
// pgscribe's Redis connections go through a man in the middle that flips bytes, lies about
// lengths, nests, speaks RESP3, stalls, reorders, drops and invents replies, resets, and swaps
// cache entries, while valid sessions read known rows and write their own through pgscribe and
// judge every answer. A failing case replays with `FUZZ_ONLY=<case seed> make fuzz-redis`.
import t from 'tap';
import { runRedisFuzz, QUERY_BOUND_MS } from '../../bench/fuzz/redis';

const SEED = 15;
const RSS_BOUND = 256 * 2 ** 20;

t.test(`Redis fuzzer, 20 s from seed ${SEED}: pgscribe stays up, answers right, never hangs, RSS bounded`, async (t) => {
  const r = await runRedisFuzz({ durationS: 20, seed: SEED, sessions: 4, log: (s) => t.comment(s) });
  t.equal(r.pgscribeExited, null, 'pgscribe did not exit');
  t.same(r.stackTraces.slice(0, 5), [], 'no stack trace on stderr');
  t.same(r.wrongAnswers.slice(0, 5), [], `no wrong answer, error or lost session (${r.wrongAnswers.length})`);
  t.same(r.hangs.slice(0, 5), [], `every query answered within ${QUERY_BOUND_MS} ms (${r.hangs.length} not; slowest ${r.maxLatencyMs} ms)`);
  t.ok(r.cases >= 20, `${r.cases} Redis connections, each a case (${JSON.stringify(r.byKind)})`);
  t.ok(r.mutated >= 100, `${r.mutated} of ${r.replies} replies mutated, ${r.garbagePushes} forged pushes`);
  t.ok(r.queries >= 500, `${r.queries} queries checked (${r.reads} reads, ${r.writes} writes)`);
  t.ok((r.counters['cache_l2_hits'] ?? 0) > 0, `Redis answered some reads all the same (${r.counters['cache_l2_hits']} L2 hits, ${r.counters['cache_l2_refused']} entries refused)`);
  t.ok(r.rssMaxBytes - r.rssStartBytes <= RSS_BOUND, `RSS ${(r.rssStartBytes / 2 ** 20).toFixed(0)} -> ${(r.rssMaxBytes / 2 ** 20).toFixed(0)} MiB (bound: +${RSS_BOUND / 2 ** 20} MiB)`);
});
