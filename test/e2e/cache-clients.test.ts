// Real clients through --cache --singleflight: pgbench in every protocol mode (hot reads plus a
// read-your-writes check written in pgbench's own script language) and its TPC-B-like
// transactions (whose balances must still add up), and sysbench oltp_read_write.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PG_BIN } from '../harness/pg-cluster';
import { run, type RunResult } from '../harness/run';
import { waitFor } from '../harness/time';
import { clusterAndProxies } from '../helpers/fixture';
import { CATALOG_ARGS, WORKER_MODES, cacheArgs } from '../helpers/cache';

const { pg, fx } = clusterAndProxies(t);
const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-cache-clients-'));
fs.chmodSync(dir, 0o755);
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

/**
 * Each client bumps a counter and reads it back: a read may see other clients' later bumps, never
 * a value below its own committed write (a stale cached answer). On a violation the script
 * divides by zero, which aborts the pgbench client (exit status 2).
 */
const RYW = `\\set id random(1, 4)
UPDATE ctr SET v = v + 1 WHERE id = :id RETURNING v AS w \\gset
SELECT v AS r FROM ctr WHERE id = :id \\gset
\\if :r < :w
SELECT 1 / 0 AS stale_read;
\\endif
SELECT abalance FROM pgbench_accounts WHERE aid = :id;
`;
const HOT = `\\set aid random(1, 50)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
`;

t.before(async () => {
  const init = await run(PGBENCH, ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(pg().port), '-U', 'postgres', 'postgres'], { timeoutMs: 120_000 });
  if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`);
  await pg().psql('CREATE TABLE ctr (id int PRIMARY KEY, v bigint); INSERT INTO ctr SELECT g, 0 FROM generate_series(1, 4) g');
  fs.writeFileSync(path.join(dir, 'ryw.sql'), RYW);
  fs.writeFileSync(path.join(dir, 'hot.sql'), HOT);
});

function pgbench(port: number, args: string[]): Promise<RunResult> {
  return run(PGBENCH, ['-n', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', ...args, 'postgres'], { timeoutMs: 120_000, cwd: dir });
}

function failed(r: RunResult): number {
  const m = /number of failed transactions: (\d+)/.exec(r.stdout);
  return m ? Number(m[1]) : -1;
}

for (const workers of WORKER_MODES) {
  const mode = `workers=${workers}`;
  for (const protocol of ['simple', 'extended', 'prepared']) {
    t.test(`${mode}: pgbench -M ${protocol}: hot reads and read-your-writes, no failure, no stale read`, async (t) => {
      const p = await fx.launch(['--cache', '--singleflight', '--cache-ttl', '60000', '--log', 'none', ...cacheArgs(workers)]);
      const r = await pgbench(p.port, ['-c', '8', '-j', '2', '-T', '3', '-M', protocol, '-f', 'ryw.sql@1', '-f', 'hot.sql@4']);
      t.equal(r.code, 0, `pgbench exits 0: ${r.stderr.slice(-600)}`);
      t.notMatch(r.stderr, /aborted|stale_read|division by zero|pgscribe/, 'no client aborted, no stale read');
      t.equal(failed(r), 0, 'no failed transaction');
      const s = await p.stats();
      t.ok((s['cache_hits'] ?? 0) > 100, `hot reads were served from the cache (${s['cache_hits']} hits)`);
      t.ok((s['cache_invalidations'] ?? 0) > 100, `the writes invalidated (${s['cache_invalidations']} invalidations)`);
    });
  }

  t.test(`${mode}: pgbench TPC-B-like through the cache: no failure, the balances still add up`, async (t) => {
    const p = await fx.launch(['--cache', '--singleflight', '--log', 'none', ...cacheArgs(workers)]);
    const r = await pgbench(p.port, ['-c', '8', '-j', '2', '-T', '3', '-M', 'prepared']);
    t.equal(r.code, 0, `pgbench exits 0: ${r.stderr.slice(-600)}`);
    t.equal(failed(r), 0, 'no failed transaction');
    const sums = await pg().psql(
      'SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(delta) FROM pgbench_history)',
    );
    const [a, b, tl, h] = sums.split('|');
    t.ok(a === b && b === tl && tl === h, `accounts = branches = tellers = history (${sums})`);
  });
}

t.test('sysbench oltp_read_write (autocommit) through --cache --singleflight: no error', async (t) => {
  const sysbench = await run('sh', ['-c', 'command -v sysbench']);
  if (sysbench.code !== 0) {
    t.fail('sysbench is not installed (.ci/run installs it)');
    return;
  }
  await pg().psql('CREATE DATABASE sbtest');
  const p = await fx.launch(['--cache', '--singleflight', '--log', 'none', ...CATALOG_ARGS]);
  const common = [
    'oltp_read_write', '--db-driver=pgsql', '--pgsql-host=127.0.0.1', `--pgsql-port=${p.port}`, '--pgsql-user=postgres',
    '--pgsql-db=sbtest', '--tables=2', '--table-size=1000',
  ];
  const prep = await run('sysbench', [...common, 'prepare'], { timeoutMs: 120_000 });
  t.equal(prep.code, 0, `sysbench prepare: ${prep.stderr.slice(-400)}`);
  // prepare's DDL made pgscribe read sbtest's catalog again; until that load is over its tables
  // are unknown and their reads relayed outside the cache (on a loaded machine, seconds).
  const psql = path.join(PG_BIN, 'psql');
  await waitFor(async () => {
    await run(fs.existsSync(psql) ? psql : 'psql', ['-h', '127.0.0.1', '-p', String(p.port), '-U', 'postgres', '-d', 'sbtest', '-Atc', 'SELECT c FROM sbtest1 WHERE id = 1']);
    const s = await p.stats();
    return (s['cache_misses'] ?? 0) + (s['cache_hits'] ?? 0) > 0 ? true : undefined;
  }, { timeoutMs: 30_000, intervalMs: 200, timeout: () => `a read of sbtest1 never went through the cache layer: ${p.stderr().slice(-1500)}` });
  // --skip_trx: autocommit reads and writes, so the reads are cacheable (inside BEGIN they are not).
  const r = await run('sysbench', [...common, '--threads=8', '--time=4', '--skip_trx=on', 'run'], { timeoutMs: 120_000 });
  t.equal(r.code, 0, `sysbench run exits 0: ${r.stderr.slice(-400)}`);
  t.notMatch(r.stdout + r.stderr, /FATAL|pgscribe/, 'no fatal error, nothing from pgscribe');
  t.match(r.stdout, /transactions:\s+[1-9]\d*/, 'transactions ran');
  const s = await p.stats();
  t.ok((s['cache_misses'] ?? 0) > 100, `sysbench's reads went through the layer (${s['cache_misses']} misses, ${s['cache_hits']} hits): ${p.stderr().slice(-1500)}`);
  t.ok((s['cache_invalidations'] ?? 0) > 100, `its writes invalidated (${s['cache_invalidations']})`);
});
