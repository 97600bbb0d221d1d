// Issue 15, fault injection (the chaos test): PostgreSQL terminated an idle backend
// (pg_terminate_backend, FATAL 57P01) while its client was sending a read the cache held. pgscribe
// relayed the FATAL and then answered the read from the cache, so the client got 57P01 followed by
// RowDescription, DataRow, CommandComplete and ReadyForQuery on a session PostgreSQL had ended;
// pgbench reported "perhaps the backend died while processing". A FATAL is PostgreSQL's last word:
// nothing follows it but the close. A chaos relay holds the server's FIN back, so that the read
// deterministically arrives between the FATAL and the close.
import t from 'tap';
import { startCluster, type PgCluster } from '../harness/pg-cluster';
import { proxyFixture } from '../helpers/fixture';
import { startChaosRelay, type ChaosRelay } from '../helpers/chaos-relay';
import { CATALOG_ARGS, WORKER_MODES, waitLines, workerArgs } from '../helpers/cache';
import { describeMessages, enc, errorsIn, value } from '../harness/wire';

let pg: PgCluster;
let relay: ChaosRelay;
const fx = proxyFixture({ upstreamPort: () => relay.port, user: 'postgres' });

t.before(async () => {
  pg = await startCluster();
  relay = await startChaosRelay(pg.port);
  await pg.psql('CREATE TABLE known (id int PRIMARY KEY, v int); INSERT INTO known VALUES (1, 10)');
});

t.teardown(async () => {
  await fx.cleanup();
  await relay?.close();
  await pg?.stop();
});

const SQL = 'SELECT v FROM known WHERE id = 1';

for (const workers of WORKER_MODES) {
  t.test(`workers=${workers}: after the server's FATAL the client gets nothing but the close`, async (t) => {
    const p = await fx.launch(['--cache', '--cache-ttl', '3600000', ...CATALOG_ARGS, ...workerArgs(workers)]);
    const s = await fx.sessionWithKey(p.port);
    t.equal(value(await s.c.query(SQL)), '10', 'the read');
    t.equal(value(await s.c.query(SQL)), '10', 'again, now from the cache');
    t.match(await waitLines(p, 'cache=hit', 1), [/ Q cache=hit /], 'the second read was a cache hit');

    relay.holdEnds(true);
    try {
      t.equal(await pg.psql(`SELECT pg_terminate_backend(${s.pid})`), 't', 'PostgreSQL terminates the backend');
      const fatal = await s.c.read(10_000);
      t.equal(errorsIn([fatal])[0]?.['C'], '57P01', "PostgreSQL's FATAL 57P01 reaches the client");
      s.c.write(enc.query(SQL));
      const rest = await s.c.readUntilClosed(10_000);
      t.ok(rest.closed, 'the session closes');
      t.equal(describeMessages(rest.msgs), '', 'with nothing after the FATAL: no answer from the cache');
    } finally {
      relay.holdEnds(false);
    }
    t.ok(p.alive, 'pgscribe is still running');
    const c = await fx.session(p.port);
    t.equal(value(await c.query(SQL)), '10', 'a new session reads the row');
  });
}
