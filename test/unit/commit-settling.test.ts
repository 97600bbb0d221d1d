// Commit settling (cache/commit-settling.ts): a commit the change stream hands over before other
// sessions can see it (a synchronous-replication wait, or the instant between the WAL flush and
// the end of the transaction) is invalidated again once a snapshot taken after it arrived shows
// it finished; whenSettled() waits only for the commits added before it; a failed question is
// reported once each way; synchronous_standby_names comes with every answer.
import t from 'tap';
import { CommitSettling, finished, parseSnapshot, type SnapshotAnswer } from '../../src/cache/commit-settling';
import { namesStandby, standbyNames } from '../../src/wal/sync-standby';

/** Questions answered when the test says. */
class FakeServer {
  readonly questions: { resolve: (a: SnapshotAnswer) => void; reject: (e: Error) => void }[] = [];
  ask = (): Promise<SnapshotAnswer> => new Promise((resolve, reject) => this.questions.push({ resolve, reject }));
  /** Answer the oldest question with these running xids (xmax above all of them). */
  answer(running: number[], sync = ''): void {
    const q = this.questions.shift();
    if (q === undefined) throw new Error('no question out');
    q.resolve({ snapshot: `100:${2 ** 32 + 5000}:${running.map((x) => 2 ** 32 + x).join(',')}`, syncStandbyNames: sync });
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const later = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function setUp() {
  const server = new FakeServer();
  const settled: string[][] = [];
  const failures: (string | null)[] = [];
  const syncs: string[] = [];
  const s = new CommitSettling({
    ask: server.ask,
    onSettled: (n) => settled.push([...n]),
    onFailed: (r) => failures.push(r),
    onSyncStandbyNames: (v) => syncs.push(v),
  });
  return { server, settled, failures, syncs, s };
}

t.test('snapshots: 64-bit ids folded to the 32 bits pgoutput gives; finished means before xmax and not running', async (t) => {
  const r = parseSnapshot(`${2 ** 32 + 10}:${2 ** 32 + 20}:${2 ** 32 + 12},${2 ** 32 + 15}`)!;
  t.same([r.xmax, [...r.xip]], [20, [12, 15]]);
  t.ok(finished(11, r));
  t.notOk(finished(12, r), 'running');
  t.notOk(finished(20, r), 'at xmax: not finished when the snapshot was taken');
  t.notOk(finished(25, r), 'past xmax');
  // Around the wrap: xmax 3 after 2^32 - 2; 2^32 - 3 is before it, 4 is not.
  const w = parseSnapshot(`${2 ** 32 - 10}:${2 ** 32 + 3}:`)!;
  t.ok(finished(2 ** 32 - 3, w));
  t.notOk(finished(4, w));
  t.equal(parseSnapshot('garbage'), null);
});

t.test('a commit still running when streamed is invalidated again once a later snapshot shows it finished', async (t) => {
  const { server, settled, s } = setUp();
  s.add(1000, ['"a"']);
  t.equal(server.questions.length, 1, 'asked at once');
  let done: boolean | null = null;
  s.whenSettled((ok) => (done = ok));
  server.answer([1000]);
  await tick();
  t.same(settled, [], 'still running: nothing yet');
  t.equal(done, null);
  await later(5);
  t.equal(server.questions.length, 1, 'asked again after a pause');
  server.answer([]);
  await tick();
  t.same(settled, [['"a"']], 'invalidated again once finished');
  t.equal(done, true);
  t.equal(s.pending, 0);
});

t.test('whenSettled waits only for the commits added before it, not for later ones', async (t) => {
  const { server, settled, s } = setUp();
  s.add(1, ['"a"']);
  const order: string[] = [];
  s.whenSettled(() => order.push('first'));
  s.add(2, ['"b"']); // arrives while the first question is out
  s.whenSettled(() => order.push('second'));
  server.answer([]);
  await tick();
  t.same(order, ['first'], 'the first question covered commit 1 only');
  t.same(settled, [['"a"']]);
  t.equal(server.questions.length, 1, 'commit 2 asked about at once');
  s.add(3, ['"c"']);
  server.answer([3]);
  await tick();
  t.same(order, ['first', 'second'], 'commit 2 settled; commit 3, still running, does not hold the second waiter');
  t.same(settled, [['"a"'], ['"b"']]);
  t.equal(s.pending, 1);
  s.close();
});

t.test('a failed question holds (reported once), the next answer releases; synchronous_standby_names comes with each answer', async (t) => {
  const { server, settled, failures, syncs, s } = setUp();
  s.add(7, ['"t"']);
  server.questions.shift()!.reject(new Error('connection lost'));
  await tick();
  t.same(failures, ['connection lost']);
  await later(250);
  t.equal(server.questions.length, 1, 'asked again after a pause');
  server.questions.shift()!.reject(new Error('still lost'));
  await tick();
  t.same(failures, ['connection lost'], 'said once');
  await later(250);
  server.answer([], '*');
  await tick();
  t.same(failures, ['connection lost', null], 'released');
  t.same(settled, [['"t"']]);
  t.same(syncs, ['*']);
  s.close();
});

t.test('close() releases the waiters with false and asks nothing more', async (t) => {
  const { server, s } = setUp();
  s.add(9, ['"x"']);
  let done: boolean | null = null;
  s.whenSettled((ok) => (done = ok));
  s.close();
  t.equal(done, false);
  server.answer([]);
  await tick();
  s.add(10, ['"y"']);
  t.equal(server.questions.length, 0);
});

t.test('synchronous_standby_names: which settings would let PostgreSQL pick pgscribe as a synchronous standby', async (t) => {
  t.same(standbyNames(''), []);
  t.same(standbyNames('s1, s2'), ['s1', 's2']);
  t.same(standbyNames('FIRST 2 (s1, "Big ""One""", s3)'), ['s1', 'Big "One"', 's3']);
  t.same(standbyNames('ANY 1 (*)'), ['*']);
  t.same(standbyNames('2 (a,b)'), ['a', 'b']);
  t.ok(namesStandby('*', 'pgscribe changes'));
  t.ok(namesStandby('ANY 1 (s1, *)', 'pgscribe changes'));
  t.ok(namesStandby('s1, "PGSCRIBE CHANGES"', 'pgscribe changes'), 'case-insensitive, as PostgreSQL compares');
  t.notOk(namesStandby('s1, s2', 'pgscribe changes'));
  t.notOk(namesStandby('', 'pgscribe changes'));
  t.notOk(namesStandby('FIRST 1 (pgscribe)', 'pgscribe changes'));
});
