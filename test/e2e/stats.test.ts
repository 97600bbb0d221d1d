// The stats line on stderr: periodic with --stats-interval, and on SIGUSR2.
import t from 'tap';
import { startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { parseStatsLine, startProxy } from '../harness/proxy';
import { RawClient, enc } from '../harness/wire';

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
  await t.resolves(p.waitStderr(/INFO stats clients=0 sessions=0 /), 'a periodic stats line while idle');
  const c = await RawClient.connect(p.port);
  t.teardown(() => c.sock.destroy());
  await c.startup(USERS.trust.user);
  c.write(enc.query('select 1'));
  await c.readUntilReady();
  // The first periodic line printed after the query was logged.
  const line = await p.waitStderr(/INFO stats clients=1 [^\n]*log_lines=1 [^\n]*/);
  t.match(line, /^INFO stats clients=\d+ sessions=\d+ connections_total=\d+ \S+ \S+ log_lines=\d+ log_sampled_out=\d+ log_dropped=\d+ rss=\d+ heap_used=\d+ external=\d+/, 'fields in their documented order');
  const fields = parseStatsLine(` ${line}`)!;
  t.match(fields, { clients: 1, sessions: 1, connections_total: 1, log_lines: 1 }, `periodic stats line: ${line}`);
  t.ok(fields['rss']! > 0 && fields['heap_used']! > 0, `memory: rss=${fields['rss']} heap_used=${fields['heap_used']}`);

  const q = await startProxy({ upstreamPort: pg.port });
  t.teardown(() => q.stop('SIGKILL'));
  t.notMatch(q.stderr(), /INFO stats/, 'no stats line without --stats-interval');
  // stats() sends SIGUSR2 and waits for the line it prints.
  t.match(await q.stats(), { clients: 0, sessions: 0, connections_total: 0, log_lines: 0 }, 'SIGUSR2 prints one');
  t.equal((q.stderr().match(/ INFO stats /g) ?? []).length, 1, 'one line per SIGUSR2');
});
