// Issue 16, modes and faults: cache-invalidation auto picks wal where the server allows it and
// ttl with one line naming the missing piece where it does not; the walsender killed
// (pg_terminate_backend) and the server restarted: once pgscribe noticed, no stale answer is
// served, and the cache answers again by itself.
import t, { type Test as Tap } from 'tap';
import { startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import type { Proxy } from '../harness/proxy';
import { waitFor } from '../harness/time';
import { queryValue, type RawClient } from '../harness/wire';
import { proxyFixture } from '../helpers/fixture';
import { admin } from '../helpers/safe-cache';

let pg: PgCluster;
const fx = proxyFixture({ upstreamPort: () => pg.port, user: 'postgres' });
const HOUR = '3600000';
const WAL = ['--cache', '--cache-ttl', HOUR, '--cache-invalidation', 'wal', '--catalog-user', 'postgres'];

t.before(async () => {
  pg = await startCluster();
  await admin(pg, ["CREATE TABLE kv (id int PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'v0')"]);
});

t.teardown(async () => {
  await fx.cleanup();
  await pg?.stop();
});

const session = (p: Proxy): Promise<RawClient> => fx.session(p.port);

const value = (c: RawClient, sql: string): Promise<string | null> => queryValue(c, sql);

const READ = 'SELECT v FROM kv WHERE id = 1';
const direct = async (): Promise<string | null> => (await admin(pg, [READ]))[0]!.value;

/** Read until an answer comes from the cache; it must be PostgreSQL's. */
async function cachedAgain(tt: Tap, p: Proxy, what: string): Promise<void> {
  let c = await session(p);
  await waitFor(
    async () => {
      const before = (await p.stats())['cache_hits'] ?? 0;
      let v: string | null;
      try {
        v = await value(c, READ);
      } catch {
        c = await session(p); // the server restart ended the upstream session
        return undefined;
      }
      return ((await p.stats())['cache_hits'] ?? 0) > before ? v : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 100, timeout: () => `${what}: never answered from the cache again` },
  ).then(async (v) => tt.equal(v, await direct(), `${what}: the cache answers again, as PostgreSQL`));
  c.sock.destroy();
}

const stat = async (p: Proxy, k: string): Promise<number> => (await p.stats())[k] ?? 0;

t.test('auto: wal where the server allows it, ttl with the missing piece where it does not', async (tt) => {
  const ok = await fx.launch(['--cache', '--cache-invalidation', 'auto', '--catalog-user', 'postgres']);
  await waitFor(() => (/listening/.test(ok.stderr()) ? true : undefined), { timeoutMs: 10_000, timeout: () => ok.stderr() });
  tt.match(ok.stderr(), /INFO cache invalidation: auto chose wal/);
  tt.match(ok.stderr(), /listening .*cache_invalidation="?wal/);
  await fx.stopProxy(ok);
  // trust_user has neither REPLICATION nor superuser.
  const weak = await fx.launch(['--cache', '--cache-invalidation', 'auto', '--catalog-user', USERS.trust.user]);
  await waitFor(() => (/listening/.test(weak.stderr()) ? true : undefined), { timeoutMs: 10_000, timeout: () => weak.stderr() });
  const lines = weak.stderr().split('\n').filter((l) => /cache invalidation: auto chose/.test(l));
  tt.equal(lines.length, 1, 'one line');
  tt.match(lines[0], /WARN cache invalidation: auto chose ttl.*Missing: the REPLICATION attribute: trust_user has neither it nor superuser/);
  tt.match(weak.stderr(), /listening .*cache_invalidation="?ttl/);
  tt.equal(await stat(weak, 'wal_streams'), 0, 'no change stream');
  await fx.stopProxy(weak);
});

t.test('the walsender terminated: nothing stale once pgscribe noticed, and the cache recovers', async (tt) => {
  const p = await fx.launch(WAL);
  await cachedAgain(tt, p, 'at start');
  const gaps = await stat(p, 'wal_gaps');
  const pid = await admin(pg, ["SELECT active_pid FROM pg_replication_slots WHERE slot_name LIKE 'pgscribe_%' AND active"]);
  tt.ok(pid[0]!.value !== null, 'the stream holds an active slot');
  await admin(pg, [`SELECT pg_terminate_backend(${pid[0]!.value})`]);
  // Noticed: the stream is down (held) or already back on a new slot (a gap dropped everything).
  await waitFor(async () => ((await stat(p, 'wal_streams_up')) === 0 || (await stat(p, 'wal_gaps')) > gaps ? true : undefined), {
    timeoutMs: 30_000,
    timeout: () => 'pgscribe never noticed the terminated walsender',
  });
  await admin(pg, ["UPDATE kv SET v = 'after terminate' WHERE id = 1"]);
  const c = await session(p);
  tt.equal(await value(c, READ), 'after terminate', 'the next read is fresh');
  c.sock.destroy();
  await cachedAgain(tt, p, 'after the terminate');
  tt.ok((await stat(p, 'wal_gaps')) > gaps, 'the new slot counted as a gap');
  await fx.stopProxy(p);
});

t.test('the server restarted: nothing stale once pgscribe noticed, and the cache recovers', async (tt) => {
  const p = await fx.launch(WAL);
  await cachedAgain(tt, p, 'at start');
  const gaps = await stat(p, 'wal_gaps');
  await pg.restart();
  await waitFor(async () => ((await stat(p, 'wal_streams_up')) === 0 || (await stat(p, 'wal_gaps')) > gaps ? true : undefined), {
    timeoutMs: 30_000,
    timeout: () => 'pgscribe never noticed the restart',
  });
  await admin(pg, ["UPDATE kv SET v = 'after restart' WHERE id = 1"]);
  const c = await session(p);
  tt.equal(await value(c, READ), 'after restart', 'the next read is fresh');
  c.sock.destroy();
  await cachedAgain(tt, p, 'after the restart');
  await fx.stopProxy(p);
});

t.test('read-your-writes: the answer to a commit through pgscribe waits for the stream to apply it', async (tt) => {
  const p = await fx.launch(WAL);
  await cachedAgain(tt, p, 'at start');
  const c = await session(p);
  for (let i = 0; i < 5; i++) {
    const commits = await stat(p, 'wal_commits');
    const waits = await stat(p, 'wal_commit_waits');
    await value(c, `UPDATE kv SET v = 'ryw ${i}' WHERE id = 1 RETURNING v`);
    // Read after the answer: the stream had delivered the commit before pgscribe answered it.
    tt.ok((await stat(p, 'wal_commits')) > commits, `commit ${i}: the stream had applied it when the client got its answer`);
    tt.equal(await stat(p, 'wal_commit_waits'), waits + 1, `commit ${i}: one wait`);
  }
  tt.equal(await stat(p, 'wal_commit_wait_timeouts'), 0, 'none past the bound');
  c.sock.destroy();
  await fx.stopProxy(p);
});

t.test('read-your-writes past its bound (the walsender stopped): the database is dropped and held until the stream catches up', async (tt) => {
  const p = await fx.launch([...WAL, '--cache-wal-wait-ms', '300']);
  await cachedAgain(tt, p, 'at start');
  const pid = Number((await admin(pg, ["SELECT active_pid FROM pg_replication_slots WHERE slot_name LIKE 'pgscribe_%' AND active"]))[0]!.value);
  tt.ok(pid > 0, 'the walsender');
  const c = await session(p);
  process.kill(pid, 'SIGSTOP');
  try {
    await value(c, "UPDATE kv SET v = 'stopped' WHERE id = 1 RETURNING v");
    tt.equal(await stat(p, 'wal_commit_wait_timeouts'), 1, 'the wait ran past its bound');
    const before = await stat(p, 'cache_hits');
    tt.equal(await value(c, READ), 'stopped', 'fresh');
    tt.equal(await value(c, READ), 'stopped');
    tt.equal(await stat(p, 'cache_hits'), before, 'held: nothing answered from the cache');
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  await cachedAgain(tt, p, 'after the stream caught up');
  const err = p.stderr();
  tt.equal((err.match(/was not applied within cache-wal-wait-ms/g) ?? []).length, 1, 'said once going');
  tt.equal((err.match(/caught up with the commits made through pgscribe/g) ?? []).length, 1, 'and once coming back');
  c.sock.destroy();
  await fx.stopProxy(p);
});

// What the hold is for: a write whose side effects pgscribe cannot name. A trigger created straight
// on PostgreSQL, behind the catalog pgscribe read (polls turned off), copies each write of src into
// dst; the write goes through pgscribe, which invalidates only src by itself. The very next read of
// dst through pgscribe must show the trigger's row: the commit's answer waited for the stream.
t.test('read-your-writes: a trigger pgscribe does not know of still cannot leave its own commit stale', async (tt) => {
  await admin(pg, [
    'CREATE TABLE ryw_src (id int PRIMARY KEY, v text)',
    'CREATE TABLE ryw_dst (id int PRIMARY KEY, v text)',
    "INSERT INTO ryw_dst VALUES (1, 'before')",
  ]);
  const p = await fx.launch([...WAL, '--catalog-poll-ms', HOUR]);
  const c = await session(p);
  const readDst = 'SELECT v FROM ryw_dst WHERE id = 1';
  // Until the stream is up and pgscribe has added the new tables to its publication, dst is relayed.
  const cached = await waitFor(
    async () => {
      const before = await stat(p, 'cache_hits');
      const v = await value(c, readDst);
      return (await stat(p, 'cache_hits')) > before ? v : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 50, timeout: () => 'dst was never answered from the cache' },
  );
  tt.equal(cached, 'before', 'dst is answered from the cache: a stale answer would show');
  await admin(pg, [
    "CREATE FUNCTION ryw_copy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE ryw_dst SET v = NEW.v WHERE id = NEW.id; RETURN NEW; END $$",
    'CREATE TRIGGER ryw_copy AFTER INSERT OR UPDATE ON ryw_src FOR EACH ROW EXECUTE FUNCTION ryw_copy()',
  ]);
  for (let i = 0; i < 5; i++) {
    await value(c, `INSERT INTO ryw_src VALUES (1, 'after ${i}') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v`);
    tt.equal(await value(c, readDst), `after ${i}`, `write ${i}: the next read shows what the trigger wrote`);
  }
  tt.equal(await stat(p, 'wal_commit_wait_timeouts'), 0, 'no wait past its bound');
  c.sock.destroy();
  await fx.stopProxy(p);
});
