// Issue 15, security finding 1 (second half): the query log pushed back per socket read, not per
// message. When the writer fell behind, the client was paused only after the whole read was
// handled: one 64 KiB read of Executes is thousands of log lines past the writer's bound (with the
// statement's SQL repeated in each, 211 MB of log from 528 KB sent). Now delivery stops after the
// message whose line found the writer behind, and the rest of the read waits until it drains.
//
// A logger in the test process reports itself behind from its second line on, and counts the
// lines it is still handed before it signals the drain.
import t from 'tap';
import { startInProcess } from '../harness/in-process';
import { startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { RecordingLogger } from '../harness/recording-logger';
import { RawClient, enc } from '../harness/wire';
import type { CompletionRecord, QueryRecord, SessionInfo } from '../../src/log/format';
import { sleep } from '../harness/time';

let pg: PgCluster;
t.before(async () => {
  pg = await startCluster();
});
t.teardown(async () => {
  await pg?.stop();
});

/** Behind from its second line until release() (once); counts the lines handed to it while behind. */
class StallingLogger extends RecordingLogger {
  behind = false;
  private tripped = false;
  whileBehind = 0;
  private drained: (() => void)[] = [];

  override log(session: SessionInfo, record: QueryRecord): boolean {
    return this.take(super.log(session, record));
  }

  override logCompletion(session: SessionInfo, record: CompletionRecord): boolean {
    return this.take(super.logCompletion(session, record));
  }

  private take(_accepted: boolean): boolean {
    if (this.behind) {
      this.whileBehind++;
      return false;
    }
    if (!this.tripped && this.lines >= 2) this.tripped = this.behind = true;
    return !this.behind;
  }

  override onDrain(cb: () => void): void {
    if (this.behind) this.drained.push(cb);
    else cb();
  }

  release(): void {
    this.behind = false;
    const cbs = this.drained;
    this.drained = [];
    for (const cb of cbs) cb();
  }
}

const EXECUTES = 3000;

t.test(`${EXECUTES} Executes in one write while the log is behind: no line past the one that found it behind, until it drains`, async (t) => {
  const logger = new StallingLogger();
  const ip = await startInProcess({ upstreamPort: pg.port, logger });
  t.teardown(() => ip.stop(0));
  const c = await RawClient.connect(ip.port);
  c.sock.setNoDelay(true);
  c.write(enc.startup({ user: USERS.trust.user, database: 'postgres' }));
  await c.readUntilReady();
  // One write of about 40 KB: the proxy reads it in one or two reads.
  c.write(Buffer.concat([enc.parse('', 'select 1'), enc.bind('', '', []), ...Array.from({ length: EXECUTES }, () => enc.execute('')), enc.sync()]));
  for (let i = 0; i < 50 && !logger.behind; i++) await sleep(20);
  t.ok(logger.behind, 'the logger fell behind at its second line');
  await sleep(500);
  t.equal(logger.whileBehind, 0, 'no line was handed to the logger after the one that found it behind');
  t.equal(logger.queries.length, 2, 'P and B logged; the Executes wait');
  logger.release();
  const answer = await c.readUntilReady(20_000);
  t.equal(answer.filter((m) => m.type === 'C').length, EXECUTES, 'every Execute answered once the log drained');
  t.equal(logger.queries.filter((q) => q.type === 'E').length, EXECUTES, 'and every one logged, in order');
  t.same(
    logger.queries.slice(0, 3).map((q) => q.type),
    ['P', 'B', 'E'],
    'P, B, then the Executes',
  );
  c.write(enc.terminate());
});
