// Commit settling (cache/commit-settling.ts): a commit the change stream hands over before other
// sessions can see it (a synchronous-replication wait, or the instant between the WAL flush and
// the end of the transaction) is invalidated again once a snapshot taken after it arrived shows
// it finished; a snapshot from another question (the read-your-writes fence's) settles what
// arrived before it was sent; a failed question is reported once each way;
// synchronous_standby_names comes with every answer.
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
  s.add(1001, ['"b"']);
  t.equal(server.questions.length, 0, 'not at once: a burst shares one question');
  await later(30);
  t.equal(server.questions.length, 1, 'one question for both');
  server.answer([1000]);
  await tick();
  t.same(settled, [['"b"']], '1001 finished: invalidated again; 1000 still running');
  t.equal(s.pending, 1);
  await later(30);
  t.equal(server.questions.length, 1, 'asked again after a pause');
  server.answer([]);
  await tick();
  t.same(settled, [['"b"'], ['"a"']], 'invalidated again once finished');
  t.equal(s.pending, 0);
  s.close();
});

t.test("a question covers only the commits that arrived before it was sent", async (t) => {
  const { server, settled, s } = setUp();
  s.add(1, ['"a"']);
  await later(30);
  s.add(2, ['"b"']); // arrives while the question is out
  server.answer([]);
  await tick();
  t.same(settled, [['"a"']], 'commit 2 arrived after the question: not settled by its snapshot');
  await later(30);
  server.answer([]);
  await tick();
  t.same(settled, [['"a"'], ['"b"']]);
  s.close();
});

t.test("settleWith: another question's snapshot settles what arrived before it was sent", async (t) => {
  const { server, settled, s } = setUp();
  s.add(5, ['"x"']);
  s.add(6, ['"y"']);
  const upTo = s.lastSeq;
  s.add(7, ['"z"']); // after the fence's question was sent
  s.settleWith(`100:${2 ** 32 + 5000}:${2 ** 32 + 6}`, upTo);
  t.same(settled, [['"x"']], '5 settled; 6 still running; 7 not covered');
  t.equal(s.pending, 2);
  s.settleWith('not a snapshot', s.lastSeq);
  t.equal(s.pending, 2, 'an unreadable snapshot settles nothing');
  await later(30);
  server.answer([]);
  await tick();
  t.same(settled, [['"x"'], ['"y"', '"z"']], 'the rest by its own question, in one invalidation');
  s.close();
});

t.test('a failed question holds (reported once), the next answer releases; synchronous_standby_names comes with each answer', async (t) => {
  const { server, settled, failures, syncs, s } = setUp();
  s.add(7, ['"t"']);
  await later(30);
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

t.test('close() asks nothing more', async (t) => {
  const { server, s } = setUp();
  s.add(9, ['"x"']);
  s.close();
  await later(30);
  s.add(10, ['"y"']);
  await later(30);
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
