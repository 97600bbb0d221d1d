// The read-only listener (--listen-replicas, issue 18) in front of real streaming replication: a
// primary and two hot standbys made with pg_basebackup -R. Its sessions go to the standby with the
// fewest sessions (20 sessions: 10 on each); a standby whose replay is paused falls behind
// max-replica-lag-ms and gets none until it catches up; with no standby within the bound, a
// session goes to the primary (replica-fallback primary) or gets 08001 (refuse). Every query log
// line names the node that served its session; /upstreams and /metrics count the sessions.
import t from 'tap';
import { startReplicaSet, type ReplicaNode, type ReplicaSet } from '../harness/pg-replication';
import { proxyFixture } from '../helpers/fixture';
import { errorsIn, firstRow, value, type RawClient } from '../harness/wire';
import { waitFor } from '../harness/time';
import type { Proxy } from '../harness/proxy';
import { parseProm, value as promValue } from '../helpers/prom';

let rs: ReplicaSet;
const fx = proxyFixture({ upstreamPort: () => rs.primary.port, user: 'postgres' });

t.before(async () => {
  rs = await startReplicaSet({ standbys: 2 });
  await rs.primary.psql('create table ro (id int primary key); insert into ro values (1); create table ro_fb (id int primary key); insert into ro_fb values (1)');
  for (const s of rs.standbys) await s.catchUpWith(rs.primary);
});

t.teardown(async () => {
  await fx.cleanup('SIGKILL');
  await rs?.stopAll();
});

const node = (n: ReplicaNode) => `127.0.0.1:${n.port}`;
/** The query every read-only session runs: which server it is on, and whether it is in recovery. */
const WHERE = "select current_setting('port'), pg_is_in_recovery()::text /* where-am-i */";

interface Launched {
  p: Proxy;
  /** The read-only listener's port. */
  ro: number;
  admin: string;
}

async function launch(extra: string[] = []): Promise<Launched> {
  const [s1, s2] = rs.standbys as [ReplicaNode, ReplicaNode];
  const p = await fx.launch([
    '--upstream', `${node(rs.primary)},${node(s1)},${node(s2)}`,
    '--catalog-user', 'postgres',
    '--health-interval-ms', '200',
    '--health-timeout-ms', '1000',
    '--health-failures', '2',
    '--listen-replicas', '127.0.0.1:0',
    '--max-replica-lag-ms', '1500',
    '--admin', '127.0.0.1:0',
    '--cache',
    ...extra,
  ]);
  const roLine = await p.waitStderr(/read-only listener: .*listen_replicas=127\.0\.0\.1:(\d+)/);
  const adminLine = await p.waitStderr(/admin server listening admin=http:\/\/127\.0\.0\.1:(\d+)\//);
  return {
    p,
    ro: Number(/listen_replicas=127\.0\.0\.1:(\d+)/.exec(roLine)![1]),
    admin: `http://127.0.0.1:${/admin=http:\/\/127\.0\.0\.1:(\d+)\//.exec(adminLine)![1]}`,
  };
}

/** Where a session is: its server's port and whether that server is in recovery. */
async function whereIs(c: RawClient): Promise<{ port: number; inRecovery: boolean }> {
  const msgs = await c.query(WHERE);
  const row = firstRow(msgs);
  if (row[0] === null || row[0] === undefined) throw new Error(`no row: ${JSON.stringify(errorsIn(msgs))}`);
  return { port: Number(row[0]), inRecovery: row[1] === 'true' };
}

/** n new read-only sessions, opened one after the other and kept open; the ports they landed on. */
async function openReadOnly(l: Launched, n: number): Promise<{ clients: RawClient[]; ports: number[] }> {
  const clients: RawClient[] = [];
  const ports: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = await fx.session(l.ro);
    clients.push(c);
    const w = await whereIs(c);
    if (!w.inRecovery) throw new Error(`a read-only session landed on a node not in recovery (port ${w.port})`);
    ports.push(w.port);
  }
  return { clients, ports };
}

const countOf = (ports: number[], port: number) => ports.filter((p) => p === port).length;

async function metrics(admin: string) {
  return parseProm(await (await fetch(`${admin}/metrics`)).text());
}

/** Some writes on the primary, through nobody (the standbys' replay position is what matters). */
async function writeOnPrimary(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await rs.primary.psql(`insert into ro values (${Date.now() % 1_000_000_000 + i}) on conflict do nothing`);
}

t.test('20 read-only sessions spread over both standbys, least connections first; every log line names its node', async (t) => {
  const [s1, s2] = rs.standbys as [ReplicaNode, ReplicaNode];
  const l = await launch();
  const { clients, ports } = await openReadOnly(l, 20);
  t.equal(countOf(ports, s1.port), 10, '10 sessions on standby1');
  t.equal(countOf(ports, s2.port), 10, '10 sessions on standby2');

  // The node is PostgreSQL's own standby: a write there gets its 25006, relayed as is.
  const write = errorsIn(await clients[0]!.query('insert into ro values (-1)'));
  t.equal(write[0]?.['C'], '25006', "a write on the read-only listener gets PostgreSQL's read-only error");
  // The primary listener still goes to the primary.
  const rw = await fx.session(l.p.port);
  t.same(await whereIs(rw), { port: rs.primary.port, inRecovery: false }, 'the primary listener: the primary');

  const ups = (await (await fetch(`${l.admin}/upstreams`)).json()) as { upstreams: { node: string; sessions: number; readOnlyCandidate: boolean }[] };
  t.match(
    ups.upstreams,
    [
      { node: node(rs.primary), sessions: 1, readOnlyCandidate: false },
      { node: node(s1), sessions: 10, readOnlyCandidate: true },
      { node: node(s2), sessions: 10, readOnlyCandidate: true },
    ],
    '/upstreams: sessions per node, which standbys take read-only sessions',
  );
  const m = await metrics(l.admin);
  t.equal(promValue(m, 'pgscribe_read_only_to_standby_total'), 20, 'metrics: 20 read-only sessions sent to a standby');
  t.equal(promValue(m, 'pgscribe_upstream_sessions', { node: node(s2) }), 10, 'metrics: sessions per node');

  // Each where-am-i line of the log names the node its session was on, and it is the port the
  // server itself reported. Read-only sessions are never answered from the cache.
  const lines = await waitFor(() => {
    const got = l.p.logLines().filter((x) => x.includes('where-am-i'));
    return got.length >= 21 ? got : undefined;
  }, { timeoutMs: 10_000, timeout: () => `log lines: ${l.p.logLines().length}` });
  const byNode = new Map<string, number>();
  for (const line of lines) {
    const m = / node=(\S+) Q /.exec(line);
    byNode.set(m?.[1] ?? `none: ${line}`, (byNode.get(m?.[1] ?? `none: ${line}`) ?? 0) + 1);
  }
  t.same(Object.fromEntries(byNode), { [node(s1)]: 10, [node(s2)]: 10, [node(rs.primary)]: 1 }, 'log lines per node match where the sessions were');
  // /queries: the digest says which nodes ran it, as many times as the log says.
  const q = await waitFor(async () => {
    const body = (await (await fetch(`${l.admin}/queries?limit=100`)).json()) as { queries: { query: string; calls: number; nodes?: Record<string, number> }[] };
    const d = body.queries.find((x) => x.query.includes('pg_is_in_recovery'));
    return d !== undefined && d.calls >= 21 ? d : undefined;
  }, { timeoutMs: 10_000, timeout: () => 'the where-am-i digest never reached 21 calls' });
  t.same(q.nodes, Object.fromEntries(byNode), '/queries: the executions of the digest by node');

  // A cacheable read: the primary listener's session goes through the cache; read-only sessions
  // never do (a standby's answer is not the primary's, nor the other way round).
  const READ = 'select count(*) from ro /* ro-read */';
  const readLines = () => l.p.logLines().filter((x) => x.includes('ro-read'));
  // A fresh primary session (rw ran a VOLATILE function: it reads past the cache for a while);
  // the first reads of a database wait for its catalog, relayed meanwhile: read until a hit.
  const reader = await fx.session(l.p.port);
  await waitFor(async () => {
    await reader.query(READ);
    return readLines().some((x) => x.includes(`node=${node(rs.primary)} `) && / Q cache=hit /.test(x)) ? true : undefined;
  }, { timeoutMs: 10_000, intervalMs: 50, timeout: () => `no cache hit on the primary listener: ${readLines().slice(-3).join('\n')}` });
  t.pass('the primary listener: a read answered from the cache');
  // Fresh read-only sessions too (where-am-i called a VOLATILE function, which bypasses a cache).
  const fresh = [await fx.session(l.ro), await fx.session(l.ro)];
  for (const c of fresh) for (let i = 0; i < 3; i++) await c.query(READ);
  const readOnlyReads = await waitFor(() => {
    const got = readLines().filter((x) => !x.includes(`node=${node(rs.primary)} `));
    return got.length >= 6 ? got : undefined;
  }, { timeoutMs: 10_000, timeout: () => `log lines: ${readLines().length}` });
  t.same(readOnlyReads.map((x) => / cache=/.test(x)), Array(6).fill(false), 'read-only sessions never go through the cache: each read relayed');
  for (const c of [reader, ...fresh]) c.sock.destroy();

  for (const c of [...clients, rw]) c.sock.destroy();
  await fx.stopProxy(l.p);
});

t.test('a standby whose replay is paused falls behind max-replica-lag-ms: new read-only sessions avoid it, and return once it catches up', async (t) => {
  const [s1, s2] = rs.standbys as [ReplicaNode, ReplicaNode];
  const l = await launch();
  await waitFor(async () => ((await fetch(`${l.admin}/ready`)).status === 200 ? true : undefined), { timeoutMs: 10_000, timeout: () => `no primary: ${l.p.stderr().slice(-2000)}` });
  await s2.pauseReplay();
  t.teardown(() => s2.resumeReplay().catch(() => {}));
  await writeOnPrimary(3);
  const behind = await l.p.waitStderr(new RegExp(`upstream standby is behind its primary by more than max-replica-lag-ms.* node=${node(s2).replace(/\./g, '\\.')}`), 15_000);
  const behindLine = l.p.stderr().split('\n').find((x) => x.includes(behind)) ?? '';
  t.match(behindLine, /replay_lag_ms=\d+ max_replica_lag_ms=1500/, 'the operational line gives the lag and the bound');
  t.notMatch(l.p.stderr(), new RegExp(`behind its primary.* node=${node(s1).replace(/\./g, '\\.')}`), 'the standby that replays was never said behind');
  const m = await metrics(l.admin);
  t.equal(promValue(m, 'pgscribe_upstream_read_only_candidate', { node: node(s2) }), 0, 'metrics: the paused standby takes no read-only session');
  t.equal(promValue(m, 'pgscribe_upstream_read_only_candidate', { node: node(s1) }), 1);

  const first = await openReadOnly(l, 6);
  t.same(first.ports, Array(6).fill(s1.port), 'all 6 new sessions on the standby that keeps up');

  await s2.resumeReplay();
  await waitFor(() => (new RegExp(`standby is within max-replica-lag-ms.* node=${node(s2).replace(/\./g, '\\.')}`).test(l.p.stderr().slice(l.p.stderr().indexOf(behind))) ? true : undefined), {
    timeoutMs: 15_000,
    timeout: () => `standby2 never said caught up: ${l.p.stderr().slice(-2000)}`,
  });
  const second = await openReadOnly(l, 6);
  t.same(second.ports, Array(6).fill(s2.port), 'caught up again: the next 6 go to it (it holds the fewest sessions)');
  for (const c of [...first.clients, ...second.clients]) c.sock.destroy();
  await fx.stopProxy(l.p);
});

t.test('no standby within the bound: the session goes to the primary (replica-fallback primary) or gets 08001 (refuse)', async (t) => {
  const standbys = rs.standbys as [ReplicaNode, ReplicaNode];
  const fallback = await launch();
  const refusing = await launch(['--replica-fallback', 'refuse']);
  for (const s of standbys) await s.pauseReplay();
  t.teardown(async () => {
    for (const s of standbys) await s.resumeReplay().catch(() => {});
  });
  await writeOnPrimary(3);
  for (const l of [fallback, refusing]) {
    for (const s of standbys) await l.p.waitStderr(new RegExp(`behind its primary by more than max-replica-lag-ms.* node=${node(s).replace(/\./g, '\\.')}`), 15_000);
  }

  // A read cached through the primary listener of the fallback proxy.
  const COUNT = 'select count(*)::text from ro_fb';
  const cachedLines = () => fallback.p.logLines().filter((x) => x.includes(COUNT) && / Q cache=hit /.test(x));
  await waitFor(async () => {
    const r = await fx.session(fallback.p.port);
    t.equal(value(await r.query(COUNT)), '1');
    r.sock.destroy();
    return cachedLines().length > 0 ? true : undefined;
  }, { timeoutMs: 10_000, intervalMs: 50, timeout: () => 'ro_fb never came from the cache' });

  const c = await fx.session(fallback.ro);
  t.same(await whereIs(c), { port: rs.primary.port, inRecovery: false }, 'fallback primary: the session is on the primary');
  t.equal(promValue(await metrics(fallback.admin), 'pgscribe_read_only_to_primary_total'), 1, 'counted');
  // On the primary a read-only listener's session can write: its write drops what it changes.
  t.same(errorsIn(await c.query('insert into ro_fb values (2)')), [], 'a write through the read-only listener, on the primary');
  const after = await fx.session(fallback.p.port);
  t.equal(value(await after.query(COUNT)), '2', "the primary listener's next read sees it: the cached count was dropped");
  after.sock.destroy();

  const r = await fx.connect(refusing.ro);
  const msgs = await r.startup('postgres', 'postgres');
  const err = errorsIn(msgs)[0];
  t.equal(err?.['C'], '08001', 'refuse: 08001');
  t.match(err?.['M'], /no upstream standby is up and within max-replica-lag-ms: .*standby/, 'the message names the nodes and their states');
  t.equal(promValue(await metrics(refusing.admin), 'pgscribe_read_only_refused_total'), 1, 'counted');
  t.match(refusing.p.stderr(), /no upstream standby qualifies for a read-only session/, 'an operational line says it');
  c.sock.destroy();
});
