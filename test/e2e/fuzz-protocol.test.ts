// A short run of the protocol fuzzer (bench/fuzz/, `make fuzz` for the long one): startup packets,
// frontend message pipelines and garbage, mutated and cut at random offsets, against pgscribe with
// the log and the cache on, while valid sessions keep checking their answers. A failing case
// replays with `FUZZ_ONLY=<case seed> make fuzz`.
import t from 'tap';
import { runProtocolFuzz } from '../../bench/fuzz/protocol';

const SEED = 15;
const RSS_BOUND = 256 * 2 ** 20;

t.test(`protocol fuzzer, 20 s from seed ${SEED}: pgscribe stays up, answers right, never hangs, RSS bounded`, async (t) => {
  const r = await runProtocolFuzz({ durationS: 20, seed: SEED, concurrency: 6, validSessions: 3, args: [], log: (s) => t.comment(s) });
  t.equal(r.pgscribeExited, null, 'pgscribe did not exit');
  t.same(r.hangs.slice(0, 5), [], `no fuzzed connection left hanging (${r.hangs.length})`);
  t.same(r.wrongAnswers.slice(0, 5), [], `no wrong answer to the valid sessions (${r.wrongAnswers.length})`);
  t.ok(r.cases >= 500, `${r.cases} cases run (${JSON.stringify(r.byKind)})`);
  t.ok(r.byKind.startup > 0 && r.byKind.session > 0 && r.byKind.garbage > 0, 'every kind of case ran');
  t.ok(r.validQueries >= 100, `${r.validQueries} valid queries checked`);
  t.ok(r.rssMaxBytes - r.rssStartBytes <= RSS_BOUND, `RSS ${(r.rssStartBytes / 2 ** 20).toFixed(0)} -> ${(r.rssMaxBytes / 2 ** 20).toFixed(0)} MiB (bound: +${RSS_BOUND / 2 ** 20} MiB)`);
});
