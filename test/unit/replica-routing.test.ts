// The read-only listener's choice (src/upstreams/upstream-set.ts pickStandby, replay-lag.ts): a
// standby's lag measured against the primary's WAL position at its checks, the lag bound, the
// fewest sessions first with ties taking turns, and no choice before the standbys are known.
import t from 'tap';
import { UpstreamSet } from '../../src/upstreams/upstream-set';
import { PrimaryWalHistory, lsnValue } from '../../src/upstreams/replay-lag';
import type { HostPort } from '../../src/config';
import type { NodeReport } from '../../src/upstreams/health-check';

t.test('lsnValue reads PostgreSQL LSNs', async (t) => {
  t.equal(lsnValue('0/0'), 0);
  t.equal(lsnValue('0/3000060'), 0x3000060);
  t.equal(lsnValue('16/B374D848'), 0x16 * 2 ** 32 + 0xb374d848);
  t.ok(lsnValue('16/B374D848') > lsnValue('15/FFFFFFFF'), 'the high word counts first');
  t.ok(Number.isNaN(lsnValue('nonsense')));
});

t.test('PrimaryWalHistory: caught up is 0; behind is bounded by the last reading the standby had reached', async (t) => {
  const h = new PrimaryWalHistory();
  t.equal(h.lagOf('0/100', 777, 10_000), 777, 'before any reading: the timestamp lag as PostgreSQL gives it');
  h.record('0/100', 1000);
  h.record('0/100', 2000); // a quiet primary: the same position
  h.record('0/200', 3000); // writes between 2000 and 3000
  h.record('0/300', 4000);
  t.equal(h.lagOf('0/300', 99_999, 4500), 0, 'replayed the newest reading: caught up, however long ago the last commit was');
  t.equal(h.lagOf('0/350', 99_999, 4500), 0, 'past it (the primary wrote since): caught up as far as pgscribe can know');
  t.equal(h.lagOf('0/200', 5, 4500), 1500, 'has what was written before 3000: at most 1500 ms behind');
  t.equal(h.lagOf('0/150', 5, 4500), 2500, 'has what was written before 2000 (the newest reading at 0/100)');
  t.equal(h.lagOf('0/50', 5, 4500), 3500, 'behind every reading: at least since the oldest one');
  t.equal(h.lagOf('0/50', 9000, 4500), 9000, '... or the timestamp lag when larger');
  t.equal(h.lagOf('0/50', null, 4500), null, 'behind everything, no transaction replayed: unknown');
  t.equal(h.lagOf(null, 5, 4500), null, 'no replay position: unknown');
  h.reset();
  t.ok(h.empty, 'a new primary starts a new history');
  for (let i = 0; i < 100; i++) h.record(`0/${(i + 1).toString(16)}`, i);
  t.equal(h.lagOf('0/1', 1, 1000), 1000 - 36, 'only the last 64 readings are kept: behind all of them');
});

const P: HostPort = { host: '127.0.0.1', port: 6001 };
const S1: HostPort = { host: '127.0.0.1', port: 6002 };
const S2: HostPort = { host: '127.0.0.1', port: 6003 };
const name = (n: HostPort | null) => (n === null ? null : String(n.port));

/** A primary and two standbys answering as scripted; maxLag: the read-only bound. */
function fixture(maxLag: number | null = 1000) {
  const wal = { primary: '0/1000', s1: '0/1000', s2: '0/1000', s1Down: false, primaryTimeline: 1, s2Timeline: 1 as number | null, s2Receiver: true };
  const lines: string[] = [];
  let checks = 0;
  const log = (level: string) => (m: string, f?: Record<string, unknown>) => lines.push(`${level} ${m}${f ? ' ' + JSON.stringify(f) : ''}`);
  const set = new UpstreamSet(
    [P, S1, S2],
    { intervalMs: 3_600_000, timeoutMs: 100, failures: 1, maxReplicaLagMs: maxLag },
    async (node): Promise<NodeReport> => {
      checks++;
      if (node.port === 6001) return { inRecovery: false, replayLsn: null, replayLagMs: null, walLsn: wal.primary, timeline: wal.primaryTimeline, walReceiver: null };
      if (node.port === 6002 && wal.s1Down) throw new Error('connection refused');
      if (node.port === 6002) return { inRecovery: true, replayLsn: wal.s1, replayLagMs: 60_000, walLsn: null, timeline: wal.primaryTimeline, walReceiver: true };
      return { inRecovery: true, replayLsn: wal.s2, replayLagMs: 60_000, walLsn: null, timeline: wal.s2Timeline, walReceiver: wal.s2Receiver };
    },
    { info: log('INFO'), warn: log('WARN'), error: log('ERROR') },
    { primaryChanged: () => {}, demoted: () => {} },
  );
  const settle = async () => {
    for (let i = 0; i < 6; i++) await new Promise((r) => setImmediate(r));
  };
  const round = async () => {
    set.checkAll();
    await settle();
  };
  return { set, wal, lines, round, settle, checks: () => checks };
}

t.test('no read-only choice before the standbys are known; then the fewest sessions, ties taking turns', async (t) => {
  const f = fixture();
  let known = false;
  const waiting = f.set.whenChecked(5000).then(() => (known = true));
  const before = f.checks();
  await f.round();
  await waiting;
  t.ok(known, 'known once every node answered and the standbys were measured against the primary');
  t.ok(f.checks() >= before + 5, "the primary's first WAL reading had the standbys checked again at once (their first lag had nothing to compare with)");
  t.match(f.set.views(), [{ readOnlyCandidate: false }, { replayLagMs: 0, readOnlyCandidate: true }, { replayLagMs: 0, readOnlyCandidate: true }], 'both standbys caught up: lag 0, though their last commit replayed was a minute ago');
  const picks = [0, 1, 2, 3].map(() => name(f.set.pickStandby(new Map())));
  t.same(picks.sort(), ['6002', '6002', '6003', '6003'], 'equal loads: they take turns');
  t.equal(name(f.set.pickStandby(new Map([['127.0.0.1:6002', 3], ['127.0.0.1:6003', 1]]))), '6003', 'the one with fewer sessions');
  t.equal(name(f.set.pickStandby(new Map([['127.0.0.1:6002', 0], ['127.0.0.1:6003', 1]]))), '6002');
  t.notOk(f.lines.some((l) => l.startsWith('WARN upstream standby is behind')), 'no standby said behind');
  f.set.stop();
});

t.test('a standby behind the lag bound gets no read-only session, and is back once it catches up', async (t) => {
  const f = fixture(1000);
  await f.round();
  await f.round();
  // The primary writes; standby 2 stops replaying (pg_wal_replay_pause()).
  f.wal.primary = '0/2000';
  f.wal.s1 = '0/2000';
  await f.round();
  t.equal(f.set.views()[2]!.replayLagMs !== null && f.set.views()[2]!.replayLagMs! < 1000, true, 'just behind: within the bound still');
  await new Promise((r) => setTimeout(r, 1100));
  await f.round();
  t.ok(f.set.views()[2]!.replayLagMs! >= 1000, `over a second behind the first reading it lacks (${f.set.views()[2]!.replayLagMs} ms)`);
  t.match(f.set.views(), [{}, { readOnlyCandidate: true }, { readOnlyCandidate: false }]);
  for (let i = 0; i < 4; i++) t.equal(name(f.set.pickStandby(new Map([['127.0.0.1:6002', 50]]))), '6002', 'only the caught-up standby, however loaded');
  t.ok(f.lines.some((l) => l.startsWith('WARN upstream standby is behind its primary by more than max-replica-lag-ms') && l.includes('6003')), 'said, naming it');
  f.wal.s2 = '0/2000';
  await f.round();
  t.equal(name(f.set.pickStandby(new Map([['127.0.0.1:6002', 50]]))), '6003', 'caught up: it takes sessions again');
  t.ok(f.lines.some((l) => l.startsWith('INFO upstream standby is within max-replica-lag-ms') && l.includes('6003')), 'said');
  // A standby that fails its check is no candidate either.
  f.wal.s1Down = true;
  await f.round();
  for (let i = 0; i < 3; i++) t.equal(name(f.set.pickStandby(new Map())), '6003', 'a standby whose check failed gets none');
  f.wal.s2 = '0/1000'; // impossible in practice, but: behind every reading, with a minute-old last commit
  f.wal.primary = '0/3000';
  await f.round();
  await f.round();
  t.equal(f.set.pickStandby(new Map()), null, 'none qualifies: null (the caller falls back or refuses)');
  f.set.stop();
});

t.test("a standby on another timeline (left behind by a failover) or streaming from nobody is not caught up, whatever its LSN", async (t) => {
  const f = fixture(1000);
  await f.round();
  await f.round();
  t.match(f.set.views(), [{}, { readOnlyCandidate: true }, { readOnlyCandidate: true }], 'both candidates on the same timeline');
  // The promoted node is on timeline 2; standby 2 still replays timeline 1, ahead of it by LSN.
  f.wal.primaryTimeline = 2;
  f.wal.s2 = '0/9000';
  await f.round();
  await f.round();
  t.match(f.set.views()[2], { replayLagMs: null, readOnlyCandidate: false }, 'another timeline: no lag that means anything, no read-only session');
  t.equal(f.set.views()[1]!.readOnlyCandidate, true, 'the standby on the primary timeline still is');
  f.wal.s2Timeline = null; // a catalog-user without pg_read_all_stats sees no received_tli: the LSN alone decides
  await f.round();
  t.match(f.set.views()[2], { replayLagMs: 0, readOnlyCandidate: true }, 'timeline unknown: judged by its position');
  f.wal.s2Receiver = false; // streams from nobody: only the time since its last replayed transaction tells
  await f.round();
  t.match(f.set.views()[2], { replayLagMs: 60_000, readOnlyCandidate: false }, 'no WAL receiver: the replay timestamp lag (a minute) decides');
  f.set.stop();
});

t.test('without a read-only listener nothing is a candidate and nothing is said about lag', async (t) => {
  const f = fixture(null);
  await f.round();
  await f.round();
  t.equal(f.set.pickStandby(new Map()), null);
  t.notOk(f.lines.some((l) => l.includes('max-replica-lag-ms')), 'no lag lines');
  f.set.stop();
});
