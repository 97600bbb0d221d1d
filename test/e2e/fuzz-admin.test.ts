// A short run of the admin HTTP server's fuzzer (bench/fuzz/admin-http.ts, `make fuzz-admin` for
// the long one): malformed requests, slowloris, huge headers and bodies, while /health is asked
// every 200 ms. Against the admin server of before issue 15's fix it finds slow sockets held
// past every timeout (16 in 40 s from seed 1).
import t from 'tap';
import { runAdminFuzz } from '../../bench/fuzz/admin-http';

const SEED = 15;
const RSS_BOUND = 256 * 2 ** 20;

t.test(`admin HTTP fuzzer, 20 s from seed ${SEED}: /health always answers, no socket held, RSS bounded`, async (t) => {
  const r = await runAdminFuzz({ durationS: 20, seed: SEED, concurrency: 6, log: (s) => t.comment(s) });
  t.equal(r.pgscribeExited, null, 'pgscribe did not exit');
  t.same(r.hangs.slice(0, 5), [], `no connection held past its timeouts (${r.hangs.length})`);
  t.same(r.healthFailures.slice(0, 5), [], `/health answered 200 every time (${r.healthChecks} checks)`);
  t.ok(r.cases >= 100, `${r.cases} cases run`);
  t.ok(r.healthChecks >= 20, `${r.healthChecks} health checks`);
  t.ok(r.rssMaxBytes - r.rssStartBytes <= RSS_BOUND, `RSS ${(r.rssStartBytes / 2 ** 20).toFixed(0)} -> ${(r.rssMaxBytes / 2 ** 20).toFixed(0)} MiB (bound: +${RSS_BOUND / 2 ** 20} MiB)`);
});
