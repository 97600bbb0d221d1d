// --log none: nothing is decoded for the log, yet every mode of pgbench still works and a
// shutdown still finds sessions idle (the ReadyForQuery bookkeeping does not depend on the log).
import t from 'tap';
import { run } from '../harness/run';
import { startCluster, type PgCluster } from '../harness/pg-cluster';
import { startProxy } from '../harness/proxy';

let pg: PgCluster;
t.before(async () => {
  pg = await startCluster();
  const init = await run('pgbench', ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', 'postgres']);
  if (init.code !== 0) throw new Error(init.stderr);
});
t.teardown(async () => {
  await pg?.stop();
});

t.test('pgbench in every mode through --log none, then a clean shutdown', async (t) => {
  const p = await startProxy({ upstreamPort: pg.port, args: ['--log', 'none'] });
  for (const mode of ['simple', 'extended', 'prepared']) {
    const r = await run('pgbench', ['-n', '-c', '4', '-j', '2', '-t', '100', '-M', mode, '-h', '127.0.0.1', '-p', String(p.port), '-U', 'postgres', 'postgres'], {
      timeoutMs: 120_000,
    });
    t.equal(r.code, 0, `${mode}: exit 0 (${r.stderr.trim()})`);
    t.match(r.stdout, /number of transactions actually processed: 400\/400/, `${mode}: 400 transactions`);
    t.match(r.stdout, /number of failed transactions: 0 /, `${mode}: none failed`);
  }
  const exit = await p.stop('SIGTERM');
  t.same(exit, { code: 0, signal: null }, 'exits 0');
  t.match(p.stderr(), /shutdown complete query_log_lines=0\b/, 'no query lines recorded');
});
