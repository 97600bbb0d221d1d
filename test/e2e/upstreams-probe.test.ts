// Several upstream nodes without credentials (issue 18, item 1): no catalog-user, so the health
// checks are a StartupMessage that stops at the password request (here a role that does not
// exist: PostgreSQL answers 28000, which says it runs), and which node is primary comes from the
// sessions' in_hot_standby, as libpq's target_session_attrs=read-write finds it. Against real
// streaming replication (a primary and a standby made with pg_basebackup -R):
// - the standby listed first is tried, and the session that reaches it is closed with 57P01
//   before it can send anything; the next session finds the primary, and then every one goes there;
// - a probe that trust lets in (health-user postgres) knows the roles without any session;
// - after a crash and a promote, new sessions (pgbench -C) reach the new primary; no write ever
//   reaches a node in recovery (no 25006).
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startReplicaSet, type ReplicaSet } from '../harness/pg-replication';
import { PG_BIN } from '../harness/pg-cluster';
import { proxyFixture } from '../helpers/fixture';
import { enc, errorsIn, value } from '../harness/wire';
import { run } from '../harness/run';
import type { Proxy } from '../harness/proxy';

const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';

let rs: ReplicaSet;
const fx = proxyFixture({ upstreamPort: () => rs.primary.port, user: 'postgres' });

t.before(async () => {
  rs = await startReplicaSet({ standbys: 1 });
  await rs.primary.psql('create table pr (id serial primary key, at timestamptz default now(), who text)');
  await rs.standbys[0]!.catchUpWith(rs.primary);
});

t.teardown(async () => {
  await fx.cleanup('SIGKILL');
  await rs?.stopAll();
});

const node = (port: number) => `127.0.0.1:${port}`;

async function adminBase(p: Proxy): Promise<string> {
  const line = await p.waitStderr(/admin server listening admin=http:\/\/127\.0\.0\.1:(\d+)\//);
  return `http://127.0.0.1:${/admin=http:\/\/127\.0\.0\.1:(\d+)\//.exec(line)![1]}`;
}

interface View {
  node: string;
  state: string;
  primary: boolean;
  roleFrom: string | null;
  tried: boolean;
}

async function views(admin: string): Promise<View[]> {
  const r = await fetch(`${admin}/upstreams`);
  return ((await r.json()) as { upstreams: View[] }).upstreams.map(({ node, state, primary, roleFrom, tried }) => ({ node, state, primary, roleFrom, tried }));
}

function launch(nodes: number[], healthUser: string): Promise<Proxy> {
  return fx.launch([
    '--upstream', nodes.map(node).join(','),
    '--health-user', healthUser,
    '--health-interval-ms', '300',
    '--health-timeout-ms', '1000',
    '--health-failures', '2',
    '--primary-wait-ms', '20000',
    '--admin', '127.0.0.1:0',
  ]);
}

/** A new session's server port and recovery state, or its error. */
async function whereIs(port: number): Promise<{ port: string; inRecovery: string } | { error: Record<string, string> }> {
  const c = await fx.connect(port);
  c.write(enc.startup({ user: 'postgres', database: 'postgres' }));
  const start = await c.readUntilReady(25_000);
  const failed = errorsIn(start);
  if (failed.length > 0) return { error: failed[0]! };
  c.write(enc.query("select inet_server_port()::text || ' ' || pg_is_in_recovery()::text"));
  const [port_, inRecovery] = (value(await c.readUntilReady()) ?? '').split(' ');
  c.end();
  return { port: port_ ?? '', inRecovery: inRecovery ?? '' };
}

t.test('without credentials: a session finds the primary; one that reaches the standby is closed before it can send anything', async (t) => {
  const [primary, standby] = [rs.primary, rs.standbys[0]!];
  const p = await launch([standby.port, primary.port], 'no_such_prober');
  const admin = await adminBase(p);
  await p.waitStderr(new RegExp(`no upstream node is known to be primary: new sessions try this one .*node=${node(standby.port)}`), 10_000);
  t.same(await views(admin), [
    { node: node(standby.port), state: 'unknown', primary: false, roleFrom: null, tried: true },
    { node: node(primary.port), state: 'unknown', primary: false, roleFrom: null, tried: false },
  ], 'the probes say both nodes are up, not their roles; the first listed is tried');
  t.equal((await fetch(`${admin}/ready`)).status, 200, '/ready: new sessions have a node to try');

  const first = await whereIs(p.port);
  t.match(first, { error: { C: '57P01', M: `pgscribe: terminating connection because upstream server ${node(standby.port)} is in recovery (not the primary)` } }, 'the session that reached the standby: 57P01, before its first query');
  const second = await whereIs(p.port);
  t.same(second, { port: String(primary.port), inRecovery: 'false' }, 'the next session tries the next node: the primary');
  await p.waitStderr(new RegExp(`upstream primary chosen: new sessions go to it primary=${node(primary.port)}`), 5000);
  t.same(await views(admin), [
    { node: node(standby.port), state: 'standby', primary: false, roleFrom: 'session', tried: false },
    { node: node(primary.port), state: 'primary', primary: true, roleFrom: 'session', tried: false },
  ], "the roles the sessions' in_hot_standby said");
  for (let i = 0; i < 5; i++) t.same(await whereIs(p.port), { port: String(primary.port), inRecovery: 'false' }, `session ${i + 3}: the primary`);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-probe-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'w.sql'), "insert into pr (who) values ('first');\n");
  const r = await run(PGBENCH, ['-n', '-C', '-M', 'prepared', '-c', '2', '-j', '1', '-t', '20', '-f', path.join(dir, 'w.sql'), '-h', '127.0.0.1', '-p', String(p.port), '-U', 'postgres', 'postgres'], { timeoutMs: 60_000 });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /number of transactions actually processed: 40\/40/, 'pgbench -C -M prepared: 40 new sessions, 40 writes');
  t.equal(await primary.psql("select count(*) from pr where who = 'first'"), '40', 'on the primary');
  await fx.stopProxy(p);
});

t.test('a probe that trust lets in (health-user postgres) knows the roles before any session', async (t) => {
  const [primary, standby] = [rs.primary, rs.standbys[0]!];
  const p = await launch([standby.port, primary.port], 'postgres');
  const admin = await adminBase(p);
  await p.waitStderr(new RegExp(`upstream primary chosen: new sessions go to it primary=${node(primary.port)}`), 10_000);
  t.same(await views(admin), [
    { node: node(standby.port), state: 'standby', primary: false, roleFrom: 'check', tried: false },
    { node: node(primary.port), state: 'primary', primary: true, roleFrom: 'check', tried: false },
  ]);
  t.same(await whereIs(p.port), { port: String(primary.port), inRecovery: 'false' }, 'the first session goes to the primary');
  t.notMatch(p.stderr(), /is in recovery/, 'no session was closed');
  await fx.stopProxy(p);
});

t.test('failover without credentials: the primary crashes, the standby is promoted, new sessions reach it', async (t) => {
  const [oldPrimary, standby] = [rs.primary, rs.standbys[0]!];
  const p = await launch([standby.port, oldPrimary.port], 'no_such_prober');
  const admin = await adminBase(p);
  // The standby is listed first: its first session says it is a standby. That word must not
  // outlive the primary: once it is down, the standby (promoted by then) is tried again.
  t.match(await whereIs(p.port), { error: { C: '57P01' } }, 'the standby said so through a session');
  t.same(await whereIs(p.port), { port: String(oldPrimary.port), inRecovery: 'false' });

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-probe-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'w.sql'), "insert into pr (who) values ('bench');\n");
  const pgbench = (args: string[]) =>
    run(PGBENCH, ['-n', '-M', 'prepared', '-f', path.join(dir, 'w.sql'), '-h', '127.0.0.1', '-p', String(p.port), '-U', 'postgres', ...args, 'postgres'], { timeoutMs: 120_000 });
  const before = pgbench(['-c', '2', '-j', '1', '-T', '30']);
  await new Promise((r) => setTimeout(r, 1500));
  await oldPrimary.stopImmediate();
  const r = await before;
  const aborted = new Set([...r.stderr.matchAll(/client (\d+) (?:script \d+ )?aborted/g)].map((m) => m[1])).size;
  t.equal(aborted, 2, 'each session on the crashed primary got its error');
  await standby.promote();
  const promotedAt = Date.now();
  const r2 = await pgbench(['-C', '-c', '2', '-j', '1', '-t', '25']);
  t.equal(r2.code, 0, `pgbench -C after the failover: every new session succeeded (${r2.stderr.trim().split('\n')[0] ?? ''})`);
  t.match(r2.stdout, /number of transactions actually processed: 50\/50/);
  t.notMatch(r.stderr + r.stdout + r2.stderr + r2.stdout, /25006|read-only transaction/, 'no write reached a node in recovery (no 25006)');
  t.equal(await standby.psql(`select count(*) from pr where who = 'bench' and at >= to_timestamp(${(promotedAt / 1000).toFixed(3)})`), '50', 'their rows are on the new primary');
  await p.waitStderr(new RegExp(`upstream primary chosen: new sessions go to it primary=${node(standby.port)} previous=${node(oldPrimary.port)}`), 5000);
  t.match(await views(admin), [
    { node: node(standby.port), state: 'primary', primary: true, roleFrom: 'session' },
    { node: node(oldPrimary.port), state: 'down', primary: false },
  ], '/upstreams after the failover');
});
