// Several upstream nodes (issue 18) in front of real streaming replication (a primary and a standby
// made with pg_basebackup -R): sessions go to the primary only; when it crashes and the standby
// is promoted, new sessions (pgbench -C, a new connection per transaction) reach the new primary,
// no write ever reaches a node in recovery (no 25006), and the cache is dropped; a node that
// turns into a standby between two checks has its sessions closed with 57P01 naming the primary;
// an old primary started again without standby.signal (two primaries) gets no session, nor does
// the other, until one steps down; /upstreams, /ready and /metrics say what is going on.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startReplicaSet, type ReplicaSet } from '../harness/pg-replication';
import { PG_BIN } from '../harness/pg-cluster';
import { proxyFixture } from '../helpers/fixture';
import { enc, errorsIn, value, type RawClient } from '../harness/wire';
import { run } from '../harness/run';
import { sleep, waitFor } from '../harness/time';
import type { Proxy } from '../harness/proxy';
import { parseProm, value as promValue } from '../helpers/prom';

const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';

let rs: ReplicaSet;
const fx = proxyFixture({ upstreamPort: () => rs.primary.port, user: 'postgres' });

t.before(async () => {
  rs = await startReplicaSet({ standbys: 1 });
  await rs.primary.psql('create table fo (id serial primary key, at timestamptz default now(), who text)');
  // A table nothing writes during the tests: only a flush can drop its cached answers.
  await rs.primary.psql("create table fo_static (id int primary key); insert into fo_static values (1), (2)");
  await rs.standbys[0]!.catchUpWith(rs.primary);
});

t.teardown(async () => {
  await fx.cleanup('SIGKILL');
  await rs?.stopAll();
});

const node = (port: number) => `127.0.0.1:${port}`;

/** A startup that may wait for a primary: the messages through ReadyForQuery, or to the close. */
function startupWaiting(c: RawClient, timeoutMs: number) {
  c.write(enc.startup({ user: 'postgres', database: 'postgres' }));
  return c.readUntilReady(timeoutMs);
}

/** The proxy's admin base URL, from its listening line. */
async function adminBase(p: Proxy): Promise<string> {
  const line = await p.waitStderr(/admin server listening admin=http:\/\/127\.0\.0\.1:(\d+)\//);
  return `http://127.0.0.1:${/admin=http:\/\/127\.0\.0\.1:(\d+)\//.exec(line)![1]}`;
}

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(url);
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

function launch(extra: string[] = []): Promise<Proxy> {
  const [p, s] = [rs.primary, rs.standbys[0]!];
  return fx.launch([
    '--upstream', `${node(p.port)},${node(s.port)}`,
    '--catalog-user', 'postgres',
    '--health-interval-ms', '300',
    '--health-timeout-ms', '1000',
    '--health-failures', '2',
    '--primary-wait-ms', '20000',
    '--admin', '127.0.0.1:0',
    ...extra,
  ]);
}

t.test('failover: the primary crashes, the standby is promoted, new sessions reach it; no write reaches a standby', async (t) => {
  const [oldPrimary, standby] = [rs.primary, rs.standbys[0]!];
  const p = await launch(['--cache', '--cache-ttl', '3600000']);
  const admin = await adminBase(p);
  await p.waitStderr(new RegExp(`upstream primary chosen: new sessions go to it primary=${node(oldPrimary.port)}`), 10_000);
  const ready = await getJson(`${admin}/ready`);
  t.equal(ready.status, 200, '/ready: a primary is known');
  const ups = (await getJson(`${admin}/upstreams`)).body['upstreams'] as { node: string; state: string; primary: boolean }[];
  t.match(ups, [{ node: node(oldPrimary.port), state: 'primary', primary: true }, { node: node(standby.port), state: 'standby', primary: false }], '/upstreams');

  const c = await fx.session(p.port);
  t.same(errorsIn(await c.query("insert into fo (who) values ('before')")), [], 'a write through pgscribe goes to the primary');
  t.equal(value(await c.query('select pg_is_in_recovery()::text')), 'false', 'the session is on the node not in recovery');
  // Cached on the old primary: must not be served once the new one takes over (it may lack
  // commits the old one had; nothing here tells pgscribe, so the whole cache goes).
  const staticRead = 'select count(*)::text from fo_static';
  // A session of its own: one that wrote reads past the cache for a while (its own writes).
  const reader = await fx.session(p.port);
  const staticLines = () => p.logLines().filter((l) => l.includes(staticRead));
  // The first reads of a database wait for its catalog (relayed meanwhile): read until one is a hit.
  await waitFor(
    async () => {
      t.equal(value(await reader.query(staticRead)), '2');
      await sleep(50);
      return staticLines().some((l) => / Q cache=hit /.test(l)) ? true : undefined;
    },
    { timeoutMs: 10_000, timeout: () => `no read of fo_static came from the cache (${staticLines().length} reads, the last: ${staticLines().pop()}); pgscribe said: ${p.stderr().slice(-3000)}` },
  );
  const readsBefore = staticLines().length;
  t.pass('a read of fo_static came from the cache');

  // pgbench -M prepared on the primary: 4 sessions writing when it crashes.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-failover-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'w.sql'), "insert into fo (who) values ('bench');\n");
  const pgbench = (args: string[]) =>
    run(PGBENCH, ['-n', '-M', 'prepared', '-f', path.join(dir, 'w.sql'), '-h', '127.0.0.1', '-p', String(p.port), '-U', 'postgres', ...args, 'postgres'], { timeoutMs: 120_000 });
  const before = pgbench(['-c', '4', '-j', '1', '-T', '30']);
  await sleep(1500);
  const crashAt = Date.now();
  await oldPrimary.stopImmediate();
  const r = await before;
  // pgbench says "client N aborted ..." or "client N script 0 aborted ...", once per client.
  const aborted = new Set([...r.stderr.matchAll(/client (\d+) (?:script \d+ )?aborted/g)].map((m) => m[1])).size;
  t.equal(aborted, 4, 'each of the 4 sessions on the crashed primary got its error (pgbench aborts a client at its first)');
  t.match(r.stderr, /upstream server closed the connection unexpectedly|terminating connection/, "the error PostgreSQL's own loss gives");
  await standby.promote();
  const promotedAt = Date.now();
  // New sessions right away: each transaction a new connection (-C); they wait for the new primary.
  const afterRun = pgbench(['-C', '-c', '2', '-j', '1', '-t', '25']);
  await p.waitStderr(new RegExp(`upstream primary chosen: new sessions go to it primary=${node(standby.port)} previous=${node(oldPrimary.port)}`), 15_000);
  const chosenAt = Date.now();
  const r2 = await afterRun;
  t.comment(`crash at 0 ms, promote done at ${promotedAt - crashAt} ms, new primary chosen at ${chosenAt - crashAt} ms (health interval 300 ms, 2 failures)`);
  t.equal(r2.code, 0, `pgbench -C after the failover: every new session succeeded (${r2.stderr.trim().split('\n')[0] ?? ''})`);
  t.match(r2.stdout, /number of transactions actually processed: 50\/50/, 'all 50 transactions');
  t.notMatch(r.stderr + r.stdout + r2.stderr + r2.stdout, /25006|read-only transaction/, 'no write ever reached a node in recovery (no 25006)');
  t.equal(await standby.psql("select count(*) from fo where who = 'bench' and at >= to_timestamp(" + (promotedAt / 1000).toFixed(3) + ')'), '50', 'their rows are on the new primary');

  // New sessions, the cache, the admin view after the failover.
  const after = await fx.session(p.port);
  t.equal(value(await after.query('select pg_is_in_recovery()::text')), 'false', 'a new session is on the new primary');
  // Until pgscribe has the new primary's catalog, reads are relayed (no cache= in the log): read
  // until one goes through the cache. The first that does must not be a hit.
  // A fresh session: one that called a volatile function (pg_is_in_recovery()) reads past the cache.
  const reader2 = await fx.session(p.port);
  const firstCached = await waitFor(
    async () => {
      t.equal(value(await reader2.query(staticRead)), '2');
      await sleep(50);
      return staticLines().slice(readsBefore).find((l) => / Q cache=/.test(l));
    },
    { timeoutMs: 10_000, timeout: () => `no read after the failover went through the cache; pgscribe said: ${p.stderr().slice(-2500)}` },
  );
  t.match(firstCached, / Q cache=miss /, "the old primary's cached answer is not served: the read after the failover ran on the new primary");
  t.match(p.stderr(), /upstream primary changed: every cached answer dropped/, 'and said so');
  t.match(p.stderr(), new RegExp(`upstream node is down: .*node=${node(oldPrimary.port)}`), 'the crashed node is reported down');
  const m = parseProm(await (await fetch(`${admin}/metrics`)).text());
  t.equal(promValue(m, 'pgscribe_upstream_primary', { node: node(standby.port) }), 1, '/metrics: the new primary');
  t.equal(promValue(m, 'pgscribe_upstream_up', { node: node(oldPrimary.port) }), 0, '/metrics: the old one down');
  t.equal((await getJson(`${admin}/ready`)).status, 200, '/ready again');
  const exit = await p.stop('SIGTERM');
  t.same(exit, { code: 0, signal: null });
});

t.test('no primary: new sessions wait, then get 08001 naming the nodes; /ready fails', async (t) => {
  // After the first test: the old primary is down and the standby promoted. Stop that one too.
  const [oldPrimary, current] = [rs.primary, rs.standbys[0]!];
  const p = await launch(['--primary-wait-ms', '1500']);
  const admin = await adminBase(p);
  await p.waitStderr(new RegExp(`upstream primary chosen: new sessions go to it primary=${node(current.port)}`), 10_000);
  await current.stopClean();
  await waitFor(async () => ((await getJson(`${admin}/ready`)).status === 503 ? true : undefined), { timeoutMs: 10_000, timeout: () => '/ready never failed' });
  const c = await fx.connect(p.port);
  const t0 = Date.now();
  const msgs = await startupWaiting(c, 10_000);
  const waited = Date.now() - t0;
  const e = errorsIn(msgs)[0];
  t.equal(e?.C, '08001', 'FATAL 08001');
  t.match(e?.M, new RegExp(`no upstream server is primary \\(waited 1500 ms\\): ${node(oldPrimary.port)} down, ${node(current.port)} down$`), 'naming each node and its state');
  t.ok(waited >= 1400, `after waiting primary-wait-ms (${waited} ms)`);
  // It comes back: a waiting session gets through.
  const c2 = await fx.connect(p.port);
  const pending = startupWaiting(c2, 20_000);
  await current.start();
  const ok = await pending;
  t.equal(ok[ok.length - 1]?.type, 'Z', 'a session waiting for a primary connects once there is one again');
  await p.stop('SIGTERM');
});

t.test('two primaries (the old one started without standby.signal): no new session goes to either until one steps down', async (t) => {
  const [oldPrimary, current] = [rs.primary, rs.standbys[0]!];
  // A long interval, so that the role change happens between two checks.
  const p = await launch(['--health-interval-ms', '4000']);
  await p.waitStderr(new RegExp(`upstream primary chosen: new sessions go to it primary=${node(current.port)}`), 15_000);
  // The crashed old primary comes back as a second primary (no standby.signal): split brain.
  await oldPrimary.startAsPrimaryAgain();
  await p.waitStderr(/ERROR two upstream nodes claim to be primary; no new session goes to either/, 15_000);
  const c = await fx.connect(p.port);
  const pending = startupWaiting(c, 30_000);
  let settled = false;
  void pending.then(() => (settled = true), () => (settled = true));
  await sleep(1000);
  t.notOk(settled, 'while two claim the role, a new session waits');
  // The operator resolves it: the old primary becomes a standby of the current one.
  await oldPrimary.demoteToStandbyOf(current);
  const startup = await pending;
  t.equal(startup[startup.length - 1]?.type, 'Z', 'then it connects');
  t.equal(value(await c.query('select pg_is_in_recovery()::text')), 'false', 'to the primary');
  await p.stop('SIGTERM');
});

t.test('switchover between two health checks: a session that reaches the node now in recovery is closed with 57P01 before any write; the next goes to the new primary', async (t) => {
  // After the tests above: standby1 is the primary, the node created as primary streams from it.
  const [current, other] = [rs.standbys[0]!, rs.primary];
  // No periodic check during the switchover: only what sessions see can tell pgscribe.
  const p = await launch(['--health-interval-ms', '600000']);
  await p.waitStderr(new RegExp(`upstream primary chosen: new sessions go to it primary=${node(current.port)}`), 15_000);
  await other.catchUpWith(current);
  // The clean switchover: stop the primary, promote the standby, the old primary follows it.
  await current.stopClean();
  await other.promote();
  await current.demoteToStandbyOf(other);
  const before = p.stderr().length;
  const c = await fx.connect(p.port);
  const msgs = await c.startup('postgres', 'postgres');
  const e = errorsIn(msgs)[0];
  t.equal(e?.C, '57P01', 'the session that reached the old primary, now in recovery, gets 57P01');
  t.match(e?.M, new RegExp(`upstream server ${node(current.port)} is no longer the primary`), 'saying why');
  t.notOk(msgs.some((m) => m.type === 'Z'), 'before it could send anything');
  const next = await fx.session(p.port);
  t.equal(value(await next.query('select pg_is_in_recovery()::text')), 'false', 'the next session is on the new primary');
  t.same(errorsIn(await next.query("insert into fo (who) values ('after switchover')")), [], 'and writes there');
  const lines = p.stderr().slice(before);
  t.match(lines, /WARN a session reached an upstream node in recovery/, 'said');
  t.match(lines, new RegExp(`upstream primary chosen: new sessions go to it primary=${node(other.port)} previous=${node(current.port)}`), 'the new primary found at once, not at the next interval');
  t.notMatch(p.stderr(), /25006/, 'no 25006 anywhere');
  await p.stop('SIGTERM');
});

t.test('a primary that refuses the connection before any check saw it die: the session waits for the next primary instead of failing', async (t) => {
  // After the tests above: the node created as primary is the primary again, standby1 follows it.
  const [current, other] = [rs.primary, rs.standbys[0]!];
  await other.catchUpWith(current);
  // No periodic check for a minute: only the session's own failure tells pgscribe.
  const p = await launch(['--health-interval-ms', '60000']);
  await p.waitStderr(new RegExp(`upstream primary chosen: new sessions go to it primary=${node(current.port)}`), 15_000);
  await current.stopImmediate();
  await other.promote();
  const t0 = Date.now();
  const c = await fx.connect(p.port);
  const startup = await startupWaiting(c, 15_000);
  const took = Date.now() - t0;
  t.equal(startup[startup.length - 1]?.type, 'Z', `the session connects (after ${took} ms), no 08001`);
  t.same(errorsIn(startup), [], 'no error');
  t.equal(value(await c.query('select pg_is_in_recovery()::text')), 'false', 'to the new primary');
  t.match(p.stderr(), new RegExp(`upstream primary did not take the session; it waits for a primary .*upstream=${node(current.port)}`), 'said');
  t.ok(took < 10_000, 'well before primary-wait-ms and the one-minute interval: every node is checked each second while there is no primary');
  await p.stop('SIGTERM');
});
