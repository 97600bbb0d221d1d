// Issue 16 review: read-your-writes holds a commit's ReadyForQuery until the stream applied it, but
// the session is idle for the cache as soon as PostgreSQL's ReadyForQuery arrived (cache-driver.ts
// intake: state Idle, no pending group). A read the client sends without waiting for that
// ReadyForQuery (pipelining: PostgreSQL runs it after the commit) is answered from the cache during
// the hold, before the stream dropped what the commit's trigger changed, and queued behind the
// held ReadyForQuery: the client gets its COMMIT and then the state from before it.
//
// Setup as cache-wal-faults' "a trigger pgscribe does not know of": a trigger created straight on
// PostgreSQL behind pgscribe's catalog (polls off) copies src into dst; the walsender is stopped
// so that the hold lasts cache-wal-wait-ms (it would otherwise last the stream's lag).
import t from 'tap';
import { startCluster, type PgCluster } from '../harness/pg-cluster';
import type { Proxy } from '../harness/proxy';
import { sleep, waitFor } from '../harness/time';
import { describeMessages, enc, errorsIn, RawClient } from '../harness/wire';
import { proxyFixture } from '../helpers/fixture';
import { admin } from '../helpers/safe-cache';

let pg: PgCluster;
const fx = proxyFixture({ upstreamPort: () => pg.port, user: 'postgres' });

t.before(async () => {
  pg = await startCluster();
});
t.teardown(async () => {
  await fx.cleanup();
  await pg?.stop();
});

async function value(c: RawClient, sql: string): Promise<string | null> {
  const r = await c.query(sql, 30_000);
  if (errorsIn(r).length > 0) throw new Error(`${sql}: ${describeMessages(r)}`);
  const d = r.find((m) => m.type === 'D');
  if (d === undefined) return null;
  const len = d.body.readInt32BE(2);
  return len < 0 ? null : d.body.toString('utf8', 6, 6 + len);
}

const stat = async (p: Proxy, k: string): Promise<number> => (await p.stats())[k] ?? 0;

t.test('a read pipelined behind a commit is not answered from the cache while the commit is held', async (tt) => {
  await admin(pg, [
    'CREATE TABLE src (id int PRIMARY KEY, v text)',
    'CREATE TABLE dst (id int PRIMARY KEY, v text)',
    "INSERT INTO dst VALUES (1, 'before')",
  ]);
  const p = await fx.launch(['--cache', '--cache-ttl', '3600000', '--cache-invalidation', 'wal', '--catalog-user', 'postgres',
    '--catalog-poll-ms', '3600000', '--cache-wal-wait-ms', '3000']);
  const c = await fx.connect(p.port);
  await c.startup('postgres', 'postgres');
  const readDst = 'SELECT v FROM dst WHERE id = 1';
  await waitFor(async () => {
    const before = await stat(p, 'cache_hits');
    const v = await value(c, readDst);
    return (await stat(p, 'cache_hits')) > before ? v : undefined;
  }, { timeoutMs: 30_000, intervalMs: 50, timeout: () => 'dst was never answered from the cache' });
  await admin(pg, [
    'CREATE FUNCTION copy_it() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE dst SET v = NEW.v WHERE id = NEW.id; RETURN NEW; END $$',
    'CREATE TRIGGER copy_it AFTER INSERT ON src FOR EACH ROW EXECUTE FUNCTION copy_it()',
  ]);
  const pid = Number((await admin(pg, ["SELECT active_pid FROM pg_replication_slots WHERE slot_name LIKE 'pgscribe_%' AND active"]))[0]!.value);
  process.kill(pid, 'SIGSTOP');
  try {
    c.write(enc.query("INSERT INTO src VALUES (1, 'after')"));
    await sleep(300); // PostgreSQL has answered the INSERT; pgscribe holds its ReadyForQuery
    c.write(enc.query(readDst)); // pipelined: PostgreSQL would run it after the commit
    const msgs = await c.readZ(2, 20_000);
    const d = msgs.filter((m) => m.type === 'D').map((m) => m.body.toString('utf8', 6, 6 + m.body.readInt32BE(2)));
    tt.same(d, ['after'], 'the pipelined read shows what the committed trigger wrote');
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  tt.equal((await admin(pg, [readDst]))[0]!.value, 'after', 'PostgreSQL');
  c.sock.destroy();
  await fx.stopProxy(p);
});
