// Several upstream nodes (src/upstreams/upstream-set.ts) with a scripted health check: which node
// new sessions go to, waiting for one during a failover, down after health-failures failures, a
// demoted primary, two nodes claiming the role, and the operational lines each change gives.
import t from 'tap';
import { UpstreamSet, type NodeView } from '../../src/upstreams/upstream-set';
import type { HostPort } from '../../src/config';
import type { NodeReport } from '../../src/upstreams/health-check';

const A: HostPort = { host: '127.0.0.1', port: 5001 };
const B: HostPort = { host: '127.0.0.1', port: 5002 };

/** Nodes whose next check answers as scripted; checks run when the test says (suspect()). */
function fixture(failures = 2) {
  const says = new Map<number, 'primary' | 'standby' | 'down'>([[5001, 'primary'], [5002, 'standby']]);
  const lines: string[] = [];
  const events: string[] = [];
  const log = (level: string) => (m: string, f?: Record<string, unknown>) => lines.push(`${level} ${m}${f ? ' ' + JSON.stringify(f) : ''}`);
  const set = new UpstreamSet(
    [A, B],
    { intervalMs: 3_600_000, timeoutMs: 100, failures },
    async (node): Promise<NodeReport> => {
      const s = says.get(node.port)!;
      if (s === 'down') throw new Error('connection refused');
      return { inRecovery: s === 'standby', replayLsn: s === 'standby' ? '0/3000060' : null, replayLagMs: s === 'standby' ? 12 : null, walLsn: null };
    },
    { info: log('INFO'), warn: log('WARN'), error: log('ERROR') },
    {
      primaryChanged: (from, to) => events.push(`primary ${from?.port ?? '-'} -> ${to.port}`),
      demoted: (node, primary) => events.push(`demoted ${node.port} (primary ${primary?.port ?? '-'})`),
    },
  );
  /** One check of each node, and the results settled. */
  const round = async () => {
    set.checkAll();
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  };
  return { set, says, lines, events, round };
}

const state = (v: NodeView[]) => v.map((x) => `${x.node} ${x.state}${x.primary ? ' *' : ''}`).join(', ');

t.test('the node not in recovery gets the sessions; a standby never does', async (t) => {
  const f = fixture();
  t.equal(f.set.primary, null, 'nothing known before the first checks');
  const waiting = f.set.whenTarget(5000);
  await f.round();
  t.same(f.set.primary, A);
  t.same(await waiting, A, 'a session waiting from the start is sent to it');
  t.equal(state(f.set.views()), '127.0.0.1:5001 primary *, 127.0.0.1:5002 standby');
  t.match(f.set.views()[1], { replayLsn: '0/3000060', replayLagMs: 12 }, "a standby's replay position and lag");
  t.same(f.events, ['primary - -> 5001'], 'the first choice');
  t.ok(f.lines.some((l) => l.startsWith('INFO upstream primary chosen')), 'said');
  f.set.stop();
});

t.test('failover: a failing primary gets no new session at once, is down after health-failures, a promoted standby takes over', async (t) => {
  const f = fixture(2);
  await f.round();
  f.says.set(5001, 'down');
  await f.round();
  t.equal(f.set.primary, null, 'after one failed check, new sessions wait rather than go to a node that may be gone');
  t.equal(state(f.set.views()), '127.0.0.1:5001 primary, 127.0.0.1:5002 standby', 'not down yet (1 of 2 failures)');
  const waiting = f.set.whenTarget(5000);
  const gaveUp = f.set.whenTarget(20);
  await f.round();
  t.equal(state(f.set.views()), '127.0.0.1:5001 down, 127.0.0.1:5002 standby', 'down after 2 failures');
  t.ok(f.lines.some((l) => l.startsWith('WARN upstream node is down') && l.includes('connection refused')), 'one line says so, with the error');
  t.equal(await gaveUp, null, 'a session that waits longer than primary-wait-ms gets none (08001)');
  t.match(f.set.describe(), /127\.0\.0\.1:5001 down \(connection refused\), 127\.0\.0\.1:5002 standby/, 'what the 08001 message names');
  f.says.set(5002, 'primary');
  await f.round();
  t.same(await waiting, B, 'the waiting session goes to the promoted node');
  t.same(f.events, ['primary - -> 5001', 'primary 5001 -> 5002'], 'one failover event (the cache drops on it)');
  f.says.set(5001, 'standby');
  await f.round();
  t.equal(state(f.set.views()), '127.0.0.1:5001 standby, 127.0.0.1:5002 primary *', 'the old primary back as a standby gets no sessions');
  t.same(f.events.slice(2), ['demoted 5001 (primary 5002)'], 'and is reported demoted (its sessions are closed)');
  f.set.stop();
});

t.test('switchover seen in one check: the old primary is in recovery, its sessions are closed', async (t) => {
  const f = fixture();
  await f.round();
  f.says.set(5001, 'standby');
  f.says.set(5002, 'primary');
  await f.round();
  t.same(f.set.primary, B);
  // The old primary's check came back first: it is demoted before the new one is seen.
  t.same(f.events, ['primary - -> 5001', 'demoted 5001 (primary -)', 'primary 5001 -> 5002']);
  f.set.stop();
});

t.test('two nodes claiming primary: no new session goes to either until one steps down', async (t) => {
  const f = fixture();
  await f.round();
  f.says.set(5002, 'primary');
  await f.round();
  t.equal(f.set.primary, null, 'neither');
  const errors = () => f.lines.filter((l) => l.startsWith('ERROR two upstream nodes claim to be primary')).length;
  t.equal(errors(), 1, 'said once');
  await f.round();
  t.equal(errors(), 1, 'not again while it lasts');
  const waiting = f.set.whenTarget(5000);
  f.says.set(5001, 'standby');
  await f.round();
  t.same(await waiting, B, 'once the old one is in recovery, the other is the primary');
  t.ok(f.lines.some((l) => l.startsWith('INFO only one upstream node claims to be primary again')));
  t.same(f.events, ['primary - -> 5001', 'primary 5001 -> 5002', 'demoted 5001 (primary 5002)']);
  f.set.stop();
});

t.test('two primaries and a failed check of one: the other is not chosen (no flapping between them)', async (t) => {
  const f = fixture(3);
  await f.round();
  f.says.set(5002, 'primary');
  await f.round();
  t.equal(f.set.primary, null, 'split brain: neither');
  f.says.set(5002, 'down');
  await f.round();
  t.equal(f.set.primary, null, 'one failed check of B does not hand A the sessions: B may answer again');
  t.notOk(f.lines.some((l) => l.includes('only one upstream node claims')), 'nor is the split brain said to be over');
  f.says.set(5002, 'primary');
  await f.round();
  t.equal(f.lines.filter((l) => l.startsWith('ERROR two upstream nodes claim')).length, 1, 'still one ERROR line for the episode');
  t.same(f.events, ['primary - -> 5001'], 'no failover event either');
  f.set.stop();
});

t.test('a session that saw a node in recovery outranks a check begun before it', async (t) => {
  const f = fixture();
  await f.round();
  t.same(f.set.primary, A);
  f.says.set(5001, 'standby');
  f.set.sawInRecovery(A);
  t.equal(f.set.primary, null, 'no new session goes to A from that moment');
  t.same(f.events.slice(1), ['demoted 5001 (primary -)']);
  f.set.stop();
});

t.test('stop() answers the waiting sessions (none) and ignores checks still running', async (t) => {
  const f = fixture();
  const waiting = f.set.whenTarget(60_000);
  f.set.stop();
  t.equal(await waiting, null);
  await f.round();
  t.equal(f.set.primary, null, 'no check after stop');
});
