// A short run of the hostile-upstream fuzzer (bench/fuzz/upstream.ts, `make fuzz-upstream` for the
// long one): a fake upstream between pgscribe and PostgreSQL corrupts marked sessions' backend
// streams (flipped bytes, bad lengths, messages out of order, storms, oversized messages, cuts,
// stalls, closes), plays a hostile authentication phase with no server behind, or answers the
// SSLRequest with garbage, while valid sessions keep checking their answers. A failing case
// replays with `FUZZ_ONLY=<case seed> make fuzz-upstream`.
import t from 'tap';
import { runUpstreamFuzz } from '../../bench/fuzz/upstream';

const SEED = 15;
const RSS_BOUND = 256 * 2 ** 20;
const mib = (b: number): string => (b / 2 ** 20).toFixed(0);

t.test(`hostile-upstream fuzzer, 20 s from seed ${SEED}: pgscribe stays up, answers right, never hangs, RSS bounded`, async (t) => {
  const r = await runUpstreamFuzz({ durationS: 20, seed: SEED, concurrency: 6, validSessions: 3, args: [], log: (s) => t.comment(s) });
  t.equal(r.pgscribeExited, null, 'pgscribe did not exit');
  t.same(r.stderrTraces.slice(0, 5), [], 'no stack trace or uncaught error on stderr');
  t.same(r.internalErrors.slice(0, 5), [], 'no internal error blamed on pgscribe for what the upstream did (issue-15-20)');
  t.same(r.hangs.slice(0, 5), [], `no fuzzed connection left hanging (${r.hangs.length})`);
  t.same(r.wrongAnswers.slice(0, 5), [], `no wrong answer to the valid sessions (${r.wrongAnswers.length})`);
  t.ok(r.cases >= 60, `${r.cases} cases run (${JSON.stringify(r.byKind)}), ${r.mustDetect} pgscribe had to refuse by itself`);
  t.ok(r.byKind.session > 0 && r.byKind.startup > 0 && r.byKind.ssl > 0, 'every kind of case ran');
  t.ok(r.mustDetect > 0, 'some faults were ones pgscribe must refuse by itself');
  t.ok(r.validQueries >= 100, `${r.validQueries} valid queries checked`);
  t.ok(r.rssMaxBytes - r.rssStartBytes <= RSS_BOUND, `RSS ${mib(r.rssStartBytes)} -> ${mib(r.rssMaxBytes)} MiB (bound: +${RSS_BOUND / 2 ** 20} MiB)`);
  t.ok(r.sslRssMaxBytes - r.sslRssStartBytes <= RSS_BOUND, `the ssl cases' pgscribe: RSS ${mib(r.sslRssStartBytes)} -> ${mib(r.sslRssMaxBytes)} MiB`);
});
