// A 20-second `make stress`: sysbench oltp_read_write (extended protocol, prepared statements,
// deadlocks and retries) and pgbench through pgscribe at once, with the harness's checks: the
// proxy survives, causes no client error, and its query log agrees with pg_stat_statements.
// The RSS check needs a run of two minutes or more and is reported as SKIP here. A second run does
// the same with --cache --singleflight and sysbench in autocommit mode (cacheable reads, writes
// invalidating), where the statement count subtracts what the proxy answered itself.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from '../harness/run';

const STRESS = path.resolve(__dirname, '../../bench/stress.js');
const ROOT = path.resolve(__dirname, '../../..');

const RUNS: [string, Record<string, string>][] = [
  ['make stress DURATION=20 passes its checks', {}],
  [
    "make stress DURATION=20 PGSCRIBE_ARGS='--cache --singleflight --catalog-user postgres --log-completions --admin 127.0.0.1:0' SYSBENCH_ARGS=--skip_trx=on passes its checks",
    { PGSCRIBE_ARGS: '--cache --singleflight --catalog-user postgres --log-completions --admin 127.0.0.1:0', SYSBENCH_ARGS: '--skip_trx=on' },
  ],
];

for (const [name, extra] of RUNS) t.test(name, async (t) => {
  const r = await run(process.execPath, [STRESS], {
    cwd: ROOT,
    env: { ...process.env, DURATION: '20', THREADS: '16', PGBENCH_CLIENTS: '4', ...extra },
    timeoutMs: 240_000,
  });
  const out = r.stdout + r.stderr;
  t.equal(r.code, 0, 'exit 0');
  if (r.code !== 0) t.comment(out.slice(-4000));
  t.match(out, /verdict: PASS/, 'verdict PASS');
  for (const check of [
    'proxy alive',
    'sysbench errors only from PostgreSQL',
    'pgbench failures only from PostgreSQL',
    'no pgscribe: errors at clients',
    'statement count',
    'log lines == proxy log_lines',
  ]) {
    t.match(out, new RegExp(`\\n  PASS  ${check.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), `${check}: PASS`);
  }
  t.match(out, /\n {2}SKIP {2}RSS stable/, 'RSS is reported, not judged, for a 20 s run');
  if (extra['PGSCRIBE_ARGS'] !== undefined) {
    t.match(out, /answered by the proxy \(cache hits, flight waiters\) [1-9]/, 'the cache answered some of sysbench\'s reads');
    const m = /; ([\d,]+) done lines for ([\d,]+) Q\/E lines/.exec(out);
    t.ok(m && m[1] === m[2] && m[1] !== '0', `every Q and E line has its done line (${m?.[0]})`);
  }
  // Its output files land in logs/; remove this run's so tests leave no litter.
  const m = /files: (\S+\.csv)\s+(\S+\.svg)\s+(\S+\.json)/.exec(out);
  t.ok(m, 'names its CSV, SVG and JSON');
  for (const f of m ? m.slice(1) : []) {
    t.ok(fs.existsSync(path.resolve(ROOT, f!)), `${f} written`);
    fs.rmSync(path.resolve(ROOT, f!), { force: true });
  }
});
