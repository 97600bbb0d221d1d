// The stats line on stderr: periodic with --stats-interval, and on SIGUSR2.
import t from 'tap';
import { startCluster, USERS, type PgCluster } from './helpers/pg-cluster';
import { startProxy } from './helpers/proxy';
import { RawClient, enc } from './helpers/wire';

let pg: PgCluster;
t.before(async () => {
  pg = await startCluster();
});
t.teardown(async () => {
  await pg?.stop();
});

t.test('stats lines report sessions, log lines and memory', async (t) => {
  const p = await startProxy({ upstreamPort: pg.port, args: ['--stats-interval', '100'] });
  t.teardown(() => p.stop('SIGKILL'));
  await p.waitStderr(/INFO stats clients=0 sessions=0 /);
  const c = await RawClient.connect(p.port);
  t.teardown(() => c.sock.destroy());
  await c.startup(USERS.trust.user);
  c.write(enc.query('select 1'));
  await c.readUntilReady();
  const line = await p.waitStderr(/INFO stats clients=1 sessions=1 connections_total=1 \S+ \S+ log_lines=1 rss=\d+ heap_used=\d+ external=\d+/);
  t.ok(line, `periodic stats line: ${line}`);

  const q = await startProxy({ upstreamPort: pg.port });
  t.teardown(() => q.stop('SIGKILL'));
  t.notMatch(q.stderr(), /INFO stats/, 'no stats line without --stats-interval');
  q.proc.kill('SIGUSR2');
  t.ok(await q.waitStderr(/INFO stats clients=0 sessions=0 connections_total=0 /), 'SIGUSR2 prints one');
});
