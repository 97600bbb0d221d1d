// The commit fence (cache/commit-fence.ts, issue 16 part 2): a commit's ReadyForQuery waits
// until the change stream has passed the server's WAL position read after the commit, never
// longer than the hold bound; a lapse (bound, stream down, failed question) is reported so that
// the caller drops the database's answers.
import t from 'tap';
import { CommitFence, type FenceStream } from '../../src/cache/commit-fence';

/** A stream whose position the test moves. */
class FakeStream implements FenceStream {
  healthy = true;
  position = 0n;
  private waiters: { lsn: bigint; resolve: (ok: boolean) => void; timer: NodeJS.Timeout }[] = [];

  waitFor(lsn: bigint, timeoutMs: number): Promise<boolean> {
    if (this.position >= lsn) return Promise.resolve(true);
    return new Promise((resolve) => {
      const w = { lsn, resolve, timer: setTimeout(() => resolve(false), timeoutMs) };
      this.waiters.push(w);
    });
  }

  advance(to: bigint): void {
    this.position = to;
    const left = [];
    for (const w of this.waiters) {
      if (w.lsn <= to) {
        clearTimeout(w.timer);
        w.resolve(true);
      } else left.push(w);
    }
    this.waiters = left;
  }
}

/** The server's WAL position, answered when the test says (each question recorded). */
class FakeServer {
  lsn = 100n;
  readonly questions: { resolve: (l: bigint) => void; reject: (e: Error) => void }[] = [];
  ask = (): Promise<bigint> => new Promise((resolve, reject) => this.questions.push({ resolve, reject }));
  answer(i: number): void {
    this.questions[i]!.resolve(this.lsn);
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

function setup(holdMs = 5000) {
  const stream = new FakeStream();
  const server = new FakeServer();
  const lapses: { reason: string; lsn: bigint | null }[] = [];
  const fence = new CommitFence({ currentLsn: server.ask, stream: () => stream, holdMs, onLapse: (reason, lsn) => lapses.push({ reason, lsn }) });
  return { stream, server, lapses, fence };
}

t.test('a commit is released once the stream passes the position read after it, not before', async (t) => {
  const { stream, server, lapses, fence } = setup();
  let released = false;
  t.equal(fence.hold(() => (released = true)), true, 'held');
  t.equal(server.questions.length, 1, 'the position is asked at once');
  server.lsn = 500n;
  server.answer(0);
  await tick();
  t.equal(released, false, 'the stream is still at 0');
  stream.advance(499n);
  await tick();
  t.equal(released, false, 'one byte short');
  stream.advance(500n);
  await tick();
  t.equal(released, true);
  t.same(lapses, []);
  t.equal(fence.holding, 0);
});

t.test('commits arriving while a question is out wait for the next question, and share it', async (t) => {
  const { stream, server, fence } = setup();
  const released: number[] = [];
  fence.hold(() => released.push(1));
  server.lsn = 200n;
  fence.hold(() => released.push(2));
  fence.hold(() => released.push(3));
  t.equal(server.questions.length, 1, 'no second question while one is out');
  server.answer(0); // 200: covers commit 1 only, since 2 and 3 may have committed after it was read
  await tick();
  t.equal(server.questions.length, 2, 'one more question, for commits 2 and 3 together');
  stream.advance(200n);
  await tick();
  t.same(released, [1], 'commit 1 released at 200; 2 and 3 wait for their own position');
  server.lsn = 300n;
  server.answer(1);
  await tick();
  t.same(released, [1], 'the stream is not at 300 yet');
  stream.advance(300n);
  await tick();
  t.same(released, [1, 2, 3]);
});

t.test('the hold is bounded: at the bound the commit is released and the lapse reported with the position', async (t) => {
  const { server, lapses, fence } = setup(50);
  let released = false;
  fence.hold(() => (released = true));
  server.lsn = 700n;
  server.answer(0);
  await new Promise((r) => setTimeout(r, 120));
  t.equal(released, true);
  t.equal(lapses.length, 1, 'reported once');
  t.match(lapses[0]!.reason, /did not|in time/);
  t.equal(fence.holding, 0);
});

t.test('a question never answered still releases at the bound', async (t) => {
  const { lapses, fence } = setup(40);
  let released = false;
  fence.hold(() => (released = true));
  await new Promise((r) => setTimeout(r, 100));
  t.equal(released, true);
  t.equal(lapses.length, 1);
  t.equal(lapses[0]!.lsn, null, 'the position is unknown');
});

t.test('a failed question releases at once, as a lapse', async (t) => {
  const { server, lapses, fence } = setup();
  let released = false;
  fence.hold(() => (released = true));
  server.questions[0]!.reject(new Error('connection lost'));
  await tick();
  t.equal(released, true);
  t.match(lapses[0]!.reason, /connection lost/);
});

t.test('with the stream down nothing is held, and the lapse is reported', async (t) => {
  const { stream, server, lapses, fence } = setup();
  stream.healthy = false;
  t.equal(fence.hold(() => t.fail('not held, so never called')), false);
  t.equal(server.questions.length, 0, 'no question asked');
  t.equal(lapses.length, 1);
  t.match(lapses[0]!.reason, /down/);
});

t.test('the stream going down while a commit waits releases it as a lapse', async (t) => {
  const { stream, server, lapses, fence } = setup();
  let released = false;
  fence.hold(() => (released = true));
  stream.healthy = false;
  server.answer(0);
  await tick();
  t.equal(released, true);
  t.equal(lapses.length, 1);
});

t.test('close() releases what is held; done runs once per commit', async (t) => {
  const { server, stream, fence } = setup();
  let n = 0;
  fence.hold(() => n++);
  fence.hold(() => n++);
  fence.close();
  t.equal(n, 2);
  server.answer(0);
  stream.advance(10_000n);
  await tick();
  t.equal(n, 2, 'nothing released twice');
  t.equal(fence.hold(() => n++), false, 'a closed fence holds nothing');
});

t.test('past maxHeld, a commit is not held and the lapse is reported', async (t) => {
  const stream = new FakeStream();
  const server = new FakeServer();
  const lapses: string[] = [];
  const fence = new CommitFence({ currentLsn: server.ask, stream: () => stream, holdMs: 5000, maxHeld: 2, onLapse: (r) => lapses.push(r) });
  t.equal(fence.hold(() => {}), true);
  t.equal(fence.hold(() => {}), true);
  t.equal(fence.hold(() => {}), false);
  t.equal(lapses.length, 1);
  fence.close();
});
