// --processes N, the parts that need no process (src/processes/): the log funnel's line
// reassembly (split at every byte offset, two pipes interleaved, a dead process's partial line,
// backpressure), the stats total, and the serving process's link over a fake IPC channel.
import t from 'tap';
import { PassThrough } from 'node:stream';
import { LogFunnel } from '../../src/processes/log-funnel';
import { WorkerLink, type Channel } from '../../src/processes/worker-link';
import type { ToPrimary } from '../../src/processes/ipc';
import { totalOf } from '../../src/metrics-sum';

/** A sink that keeps what it is given, and says "full" while `full` is true. */
class MemorySink {
  chunks: Buffer[] = [];
  full = false;
  private drains: (() => void)[] = [];
  writeBytes(b: Buffer): boolean {
    this.chunks.push(Buffer.from(b));
    return !this.full;
  }
  onDrain(cb: () => void): void {
    this.drains.push(cb);
  }
  drain(): void {
    this.full = false;
    const d = this.drains;
    this.drains = [];
    for (const f of d) f();
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

const tick = () => new Promise<void>((r) => setImmediate(r));

const linesA = ['A1 select 1', 'A2 sql=é ünïcode ✓', 'A3 ' + 'x'.repeat(300)];
const linesB = ['B1 insert', 'B2 update'];
const textA = linesA.map((l) => l + '\n').join('');
const textB = linesB.map((l) => l + '\n').join('');

t.test('log funnel: whole lines, each pipe in order, split at every byte offset', async (t) => {
  const a = Buffer.from(textA);
  const b = Buffer.from(textB);
  let failures = 0;
  for (let cut = 0; cut <= a.length; cut++) {
    const sink = new MemorySink();
    const partial: number[] = [];
    const f = new LogFunnel(sink, { onPartialLine: (_i, n) => partial.push(n) });
    const pa = new PassThrough();
    const pb = new PassThrough();
    f.add(0, pa);
    f.add(1, pb);
    // Pipe A in two pieces cut at `cut`, pipe B in pieces cut at the same offset (clamped), interleaved.
    const cb = Math.min(cut, b.length);
    pa.write(a.subarray(0, cut));
    pb.write(b.subarray(0, cb));
    await tick();
    pa.end(a.subarray(cut));
    pb.end(b.subarray(cb));
    await f.ended();
    const out = sink.text().split('\n');
    const last = out.pop();
    const ok =
      last === '' &&
      out.length === linesA.length + linesB.length &&
      out.filter((l) => l.startsWith('A')).join('|') === linesA.join('|') &&
      out.filter((l) => l.startsWith('B')).join('|') === linesB.join('|') &&
      partial.length === 0 &&
      f.lines === linesA.length + linesB.length;
    if (!ok) failures++;
  }
  t.equal(failures, 0, `every cut of ${a.length + 1} gives whole lines, in each pipe's order, all counted`);
});

t.test('log funnel: a process that dies mid-line leaves no partial line', async (t) => {
  const sink = new MemorySink();
  const partial: [number, number][] = [];
  const f = new LogFunnel(sink, { onPartialLine: (i, n) => partial.push([i, n]) });
  const p = new PassThrough();
  f.add(3, p);
  p.end(Buffer.from('whole line\nhalf a li'));
  await f.ended();
  t.equal(sink.text(), 'whole line\n', 'only the whole line is written');
  t.same(partial, [[3, 9]], 'the partial line is reported with its process and size');
  t.equal(f.lines, 1);
});

t.test('log funnel: a full sink pauses every pipe until it drains', async (t) => {
  const sink = new MemorySink();
  const f = new LogFunnel(sink, { onPartialLine: () => {} });
  const a = new PassThrough();
  const b = new PassThrough();
  f.add(0, a);
  f.add(1, b);
  sink.full = true;
  a.write('one\n');
  await tick();
  t.ok(a.isPaused() && b.isPaused(), 'both pipes paused after the sink said full');
  b.write('two\n');
  await tick();
  t.equal(sink.text(), 'one\n', 'nothing more is taken while paused');
  sink.drain();
  await tick();
  t.equal(sink.text(), 'one\ntwo\n', 'the rest follows the drain');
  t.notOk(a.isPaused() || b.isPaused(), 'both pipes flow again');
  a.end();
  b.end();
  await f.ended();
});

t.test('stats total: counters add, maxima and percentiles take the largest, availability the least', async (t) => {
  const total = totalOf([
    { sessions: 3, queries: 100, wal_lag_p99_ms: 4, latency_max_ms: 9, uptime_s: 10, cache_l2_available: 1 },
    { sessions: 2, queries: 50, wal_lag_p99_ms: 7, latency_max_ms: 3, uptime_s: 12, cache_l2_available: 0 },
  ]);
  t.same(total, { sessions: 5, queries: 150, wal_lag_p99_ms: 7, latency_max_ms: 9, uptime_s: 12, cache_l2_available: 0 });
});

/** An IPC channel the test drives: what the link sends, and messages to deliver to it. */
class FakeChannel implements Channel {
  sent: ToPrimary[] = [];
  connected = true;
  private listener: ((m: unknown, h?: unknown) => void) | null = null;
  private onDisconnect: (() => void) | null = null;
  send(m: ToPrimary, cb?: (err: Error | null) => void): boolean {
    this.sent.push(m);
    cb?.(null);
    return true;
  }
  on(e: 'message' | 'disconnect', l: ((m: unknown, h?: unknown) => void) | (() => void)): this {
    if (e === 'message') this.listener = l as (m: unknown, h?: unknown) => void;
    else this.onDisconnect = l as () => void;
    return this;
  }
  deliver(m: unknown, h?: unknown): void {
    this.listener!(m, h);
  }
  disconnect(): void {
    this.connected = false;
    this.onDisconnect?.();
  }
}

/** Handlers that record what they are asked; invalidations wait until the test calls `release`. */
function recordingHandlers() {
  const calls: string[] = [];
  const waiting: (() => void)[] = [];
  return {
    calls,
    release: () => waiting.splice(0).forEach((f) => f()),
    handlers: {
      connection: () => {},
      cancel: (pid: number) => {
        calls.push(`cancel ${pid}`);
        return pid === 42;
      },
      invalidate: (db: string, tables: readonly string[] | null, done: () => void) => {
        calls.push(`invalidate ${db}:${tables?.join(',') ?? '*'}`);
        waiting.push(done);
      },
      reload: () => calls.push('reload'),
      stats: () => ({ sessions: 1 }),
      admin: (q: string) => ({ answer: q }),
      stop: (signal: string) => calls.push(`stop ${signal}`),
    },
  };
}

t.test('worker link: admission, invalidation and cancel answers go to the right asker', async (t) => {
  const ch = new FakeChannel();
  const link = new WorkerLink(1, ch);
  const r = recordingHandlers();
  link.serve(r.handlers);
  t.same(ch.sent.shift(), { t: 'ready' });

  const first = link.admit();
  const second = link.admit();
  const [a1, a2] = ch.sent.splice(0) as { t: 'admit'; req: number }[];
  ch.deliver({ t: 'admitted', req: a2!.req, ok: false });
  ch.deliver({ t: 'admitted', req: a1!.req, ok: true });
  t.same([await first, await second], [true, false], 'each admission gets its own answer, whatever the order');

  let done = false;
  link.invalidateOthers('db1', ['public.t'], () => (done = true));
  const ask = ch.sent.shift() as { t: 'invalidate'; req: number; db: string; tables: string[] };
  t.match(ask, { t: 'invalidate', db: 'db1', tables: ['public.t'] });
  t.notOk(done, 'not done before the primary says every process has dropped it');
  ch.deliver({ t: 'invalidated', req: ask.req });
  t.ok(done, 'done once the primary says so');

  ch.deliver({ t: 'invalidate', req: 7, db: 'db2', tables: null });
  t.same(r.calls, ['invalidate db2:*'], "another process's write is dropped here");
  t.same(ch.sent, [], 'the ack waits until this process is done (in wal mode: its stream has caught up)');
  r.release();
  t.same(ch.sent.shift(), { t: 'invalidate-ack', req: 7 }, 'then it is acknowledged');

  ch.deliver({ t: 'cancel', req: 8, pid: 42, secret: 1, from: 'x' });
  ch.deliver({ t: 'cancel', req: 9, pid: 43, secret: 1, from: 'x' });
  t.same(r.calls.slice(1), ['cancel 42', 'cancel 43']);
  t.same(ch.sent.splice(0), [
    { t: 'cancel-answer', req: 8, found: true },
    { t: 'cancel-answer', req: 9, found: false },
  ]);
  ch.deliver({ t: 'admin', req: 10, q: 'digests' });
  t.same(ch.sent.splice(0), [{ t: 'admin-answer', req: 10, data: { answer: 'digests' } }], "the admin server's question is answered with its req");
  ch.deliver({ t: 'nonsense' });
  ch.deliver(null);
  t.equal(ch.sent.length, 0, 'unknown messages are ignored');
});

t.test('worker link: a stop or SIGHUP before the process is ready is acted on when it is', async (t) => {
  const ch = new FakeChannel();
  const link = new WorkerLink(0, ch);
  ch.deliver({ t: 'hup' });
  ch.deliver({ t: 'stop', signal: 'SIGTERM' });
  ch.deliver({ t: 'invalidate', req: 3, db: 'd', tables: ['t'] });
  t.same(ch.sent, [{ t: 'invalidate-ack', req: 3 }], 'an invalidation before anything is cached is acknowledged at once');
  const r = recordingHandlers();
  link.serve(r.handlers);
  t.same(r.calls, ['reload', 'stop SIGTERM'], 'the early SIGHUP and stop are not lost');
});

t.test('worker link: once the primary is gone, nothing waits on it and nothing is sent', async (t) => {
  const ch = new FakeChannel();
  const link = new WorkerLink(0, ch);
  link.serve(recordingHandlers().handlers);
  ch.sent.length = 0;
  const pending = link.admit();
  let invalidated = false;
  link.invalidateOthers('d', null, () => (invalidated = true));
  ch.disconnect();
  t.equal(await pending, false, 'a pending admission is refused');
  t.ok(invalidated, 'a pending invalidation has nobody else to reach: done');
  const sentBefore = ch.sent.length;
  t.equal(await link.admit(), false, 'a new admission is refused at once');
  link.gone(true);
  link.askCancel(1, 2, 'x');
  await link.bye(5);
  t.equal(ch.sent.length, sentBefore, 'nothing is sent on a closed channel (no EPIPE, no crash)');
});

t.test('worker link: a connection message without its socket is counted gone, not a crash', async (t) => {
  const ch = new FakeChannel();
  const link = new WorkerLink(0, ch);
  const got: number[] = [];
  link.serve({ ...recordingHandlers().handlers, connection: (_s, id) => got.push(id) });
  ch.sent.length = 0;
  t.doesNotThrow(() => ch.deliver({ t: 'conn', id: 5 }), 'no socket: no throw');
  t.same(got, [], 'nothing to serve');
  t.same(ch.sent, [{ t: 'gone', admitted: false }], "the primary's count of this process's connections stays right");
});

