// Several upstream nodes without credentials (src/upstreams/upstream-set.ts, rolesFromSessions):
// the checks say only whether a node takes sessions; its role comes from what sessions see
// (in_hot_standby). Which node new sessions try, what a session's word does, how long a standby's
// word lasts while no primary is known, and that a node back from down is asked again.
import t from 'tap';
import { UpstreamSet, type NodeView } from '../../src/upstreams/upstream-set';
import type { HostPort } from '../../src/config';
import type { NodeReport } from '../../src/upstreams/health-check';

const A: HostPort = { host: '127.0.0.1', port: 5001 };
const B: HostPort = { host: '127.0.0.1', port: 5002 };

/** Probes that say up or down only (inRecovery null), or, with `trust`, the role too. */
function fixture(opts: { intervalMs?: number; failures?: number; roles?: Map<number, boolean> } = {}) {
  const down = new Set<number>();
  const lines: string[] = [];
  const events: string[] = [];
  const log = (level: string) => (m: string, f?: Record<string, unknown>) => lines.push(`${level} ${m}${f ? ' ' + JSON.stringify(f) : ''}`);
  const set = new UpstreamSet(
    [A, B],
    { intervalMs: opts.intervalMs ?? 3_600_000, timeoutMs: 100, failures: opts.failures ?? 2, rolesFromSessions: true },
    async (node): Promise<NodeReport> => {
      if (down.has(node.port)) throw new Error('connection refused');
      return { inRecovery: opts.roles?.get(node.port) ?? null, replayLsn: null, replayLagMs: null, walLsn: null };
    },
    { info: log('INFO'), warn: log('WARN'), error: log('ERROR') },
    {
      primaryChanged: (from, to) => events.push(`primary ${from?.port ?? '-'} -> ${to.port}`),
      demoted: (node, primary) => events.push(`demoted ${node.port} (primary ${primary?.port ?? '-'})`),
    },
  );
  const round = async () => {
    set.checkAll();
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  };
  return { set, down, lines, events, round };
}

const state = (v: NodeView[]) => v.map((x) => `${x.node} ${x.state}${x.roleFrom ? `/${x.roleFrom}` : ''}${x.primary ? ' *' : ''}${x.tried ? ' tried' : ''}`).join(', ');

t.test('no role known: sessions try the first node; a standby session moves them on; a primary session settles it', async (t) => {
  const f = fixture();
  const waiting = f.set.whenTarget(5000);
  t.equal(f.set.target, null, 'nothing before every node answered once');
  await f.round();
  t.equal(f.set.primary, null, 'a probe does not make a primary');
  t.same(f.set.target, A, 'the first node in list order is tried');
  t.same(await waiting, A, 'a session waiting from the start tries it');
  t.equal(state(f.set.views()), '127.0.0.1:5001 unknown tried, 127.0.0.1:5002 unknown');
  t.ok(f.lines.some((l) => l.startsWith('INFO no upstream node is known to be primary: new sessions try this one') && l.includes('5001')), 'the try is said');

  f.set.sawInRecovery(A);
  t.same(f.set.target, B, 'A said standby through a session: the next node is tried');
  t.equal(f.set.primary, null);
  f.set.sawPrimary(B);
  t.same(f.set.primary, B, "B's session said in_hot_standby off: B is the primary");
  t.same(f.set.target, B);
  t.equal(state(f.set.views()), '127.0.0.1:5001 standby/session, 127.0.0.1:5002 primary/session *');
  t.same(f.events, ['primary - -> 5002']);
  await f.round();
  t.equal(state(f.set.views()), '127.0.0.1:5001 standby/session, 127.0.0.1:5002 primary/session *', 'probes that cannot tell roles keep what the sessions said');
  f.set.stop();
});

t.test("failover: the primary goes down; the standby's word expires after an interval and it is tried again; a promoted node takes over", async (t) => {
  const f = fixture({ intervalMs: 200, failures: 2 });
  await f.round();
  f.set.sawPrimary(A);
  f.set.sawInRecovery(B);
  t.same(f.set.primary, A);
  f.down.add(5001);
  await f.round();
  t.equal(f.set.primary, null, 'one failed check: no primary');
  t.equal(f.set.target, null, 'and nothing tried while A still claims the role: sessions wait');
  const waiting = f.set.whenTarget(5000);
  await f.round();
  t.equal(state(f.set.views()), '127.0.0.1:5001 down, 127.0.0.1:5002 standby/session', 'A down after 2 failures; its role forgotten');
  t.equal(f.set.target, null, "B said standby less than an interval ago: not tried yet");
  await new Promise((r) => setTimeout(r, 220));
  await f.round();
  t.same(f.set.target, B, 'an interval later B may have been promoted: it is tried');
  t.same(await waiting, B, 'the waiting session goes there');
  f.set.sawInRecovery(B);
  t.equal(f.set.target, null, 'still a standby: the next sessions wait again');
  await new Promise((r) => setTimeout(r, 220));
  await f.round();
  t.same(f.set.target, B);
  f.set.sawPrimary(B);
  t.same(f.set.primary, B, 'promoted');
  t.same(f.events, ['primary - -> 5001', 'primary 5001 -> 5002']);

  f.down.delete(5001);
  await f.round();
  t.equal(state(f.set.views()), '127.0.0.1:5001 unknown, 127.0.0.1:5002 primary/session *', 'A is back, role unknown; B keeps the sessions (A is not tried while a primary is known)');
  f.set.stop();
});

t.test('the last primary is tried first when it comes back', async (t) => {
  const f = fixture({ failures: 1 });
  await f.round();
  f.set.sawPrimary(B);
  f.down.add(5002);
  await f.round();
  t.same(f.set.target, A, 'B down: A, role unknown, is tried');
  f.set.sawInRecovery(A);
  f.down.delete(5002);
  await f.round();
  t.same(f.set.target, B, 'B back with its role unknown: the last primary is tried before anything else');
  f.set.stop();
});

t.test('a session that reaches the known primary and finds it in recovery demotes it', async (t) => {
  const f = fixture();
  await f.round();
  f.set.sawPrimary(A);
  f.set.sawInRecovery(A);
  t.same(f.events, ['primary - -> 5001', 'demoted 5001 (primary -)']);
  t.same(f.set.target, B, 'the other node is tried');
  f.set.stop();
});

t.test('a probe that trust let in says the role: sessions need not', async (t) => {
  const f = fixture({ roles: new Map([[5001, true], [5002, false]]) });
  await f.round();
  t.same(f.set.primary, B);
  t.equal(state(f.set.views()), '127.0.0.1:5001 standby/check, 127.0.0.1:5002 primary/check *');
  f.set.stop();
});

t.test('with credentials, a session saying in_hot_standby off changes nothing: the checks decide', async (t) => {
  const set = new UpstreamSet(
    [A, B],
    { intervalMs: 3_600_000, timeoutMs: 100, failures: 2 },
    async (node): Promise<NodeReport> => ({ inRecovery: node.port === 5001, replayLsn: null, replayLagMs: null, walLsn: null }),
    { info: () => {}, warn: () => {}, error: () => {} },
    { primaryChanged: () => {}, demoted: () => {} },
  );
  set.checkAll();
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  set.sawPrimary(A);
  t.same(set.primary, B);
  t.equal(set.views().filter((v) => v.tried).length, 0, 'nothing is tried');
  set.stop();
});

t.test('a node being tried gets one session at a time: the others wait for what it finds', async (t) => {
  const f = fixture();
  await f.round();
  t.same(f.set.route(), A, 'the first session tries A');
  t.equal(f.set.route(), null, 'the next one waits');
  const second = f.set.whenTarget(5000);
  const third = f.set.whenTarget(5000);
  let settled = 0;
  void second.then(() => settled++);
  void third.then(() => settled++);
  await new Promise((r) => setImmediate(r));
  t.equal(settled, 0, 'both wait while A is tried');
  f.set.sawInRecovery(A);
  t.same(await second, B, 'A is a standby: one waiting session tries B');
  await new Promise((r) => setImmediate(r));
  t.equal(settled, 1, 'the other still waits');
  f.set.sawPrimary(B);
  t.same(await third, B, 'B is the primary: every waiting session goes there');
  t.same(f.set.route(), B);
  t.same(f.set.route(), B, 'and every new one');
  f.set.stop();
});

t.test('a try that tells nothing: the next session tries after health-timeout-ms; a startup without in_hot_standby lets every one through', async (t) => {
  const f = fixture();
  await f.round();
  t.same(f.set.route(), A);
  const next = f.set.whenTarget(5000);
  const began = Date.now();
  t.same(await next, A, 'the first try told nothing (its login failed, say): the next session tries');
  t.ok(Date.now() - began >= 90, `after health-timeout-ms (100): ${Date.now() - began} ms`);
  const a = f.set.whenTarget(5000);
  const b = f.set.whenTarget(5000);
  f.set.startupDone(A);
  t.same(await Promise.all([a, b]), [A, A], 'a startup that ended without in_hot_standby (PostgreSQL 13): the waiting sessions go too');
  t.equal(f.set.primary, null, 'A is still not known to be primary');
  f.set.stop();
});
