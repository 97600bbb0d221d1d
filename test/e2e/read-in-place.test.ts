// Reading in place (issue 21): a session reads each leg into one reused buffer and must move to a
// fresh one whenever a view of the last read is still queued (src/net/reused-reads.ts). Corking a
// socket makes every write to it queue while write() still returns true, so the session keeps
// reading: the case where a session that wrongly answered "nothing held" would let its next read
// overwrite bytes not yet sent. Each test sends several messages, each its own read, while the
// other side is corked, then uncorks and checks every answer.
import t, { type Test } from 'tap';
import type { Client } from '../../src/client/session';
import { startInProcess, type InProcessProxy } from '../harness/in-process';
import { USERS, startCluster, type PgCluster } from '../harness/pg-cluster';
import type { RecordingLogger } from '../harness/recording-logger';
import { sleep } from '../harness/time';
import { RawClient, column, describeMessages, enc } from '../harness/wire';

let pg: PgCluster;
t.before(async () => {
  pg = await startCluster();
});
t.teardown(async () => {
  await pg?.stop();
});

async function proxy(tt: Test): Promise<InProcessProxy<RecordingLogger>> {
  const ip = await startInProcess({ upstreamPort: pg.port });
  tt.teardown(() => ip.stop());
  return ip;
}

/** A raw session and the Server's Client object serving it. */
async function session(tt: Test, ip: InProcessProxy<RecordingLogger>): Promise<{ c: RawClient; client: Client }> {
  const c = await RawClient.connect(ip.port);
  tt.teardown(() => c.sock.destroy());
  const startup = await c.startup(USERS.trust.user);
  if (startup[startup.length - 1]?.type !== 'Z') throw new Error(`startup failed: ${describeMessages(startup)}`);
  const clients = [...ip.server.clients] as unknown as Client[];
  if (clients.length !== 1) throw new Error(`expected one session, found ${clients.length}`);
  return { c, client: clients[0]! };
}

/** A distinct value per query, as long as the buffer positions the reads land on overlap. */
const marker = (i: number): string => `${i}-`.repeat(40) + i;
const ROUNDS = 6;

t.test('client reads queued for a corked upstream reach it intact', async (t) => {
  const ip = await proxy(t);
  const { c, client } = await session(t, ip);
  const up = client.upstream.socket!;
  up.cork();
  for (let i = 1; i <= ROUNDS; i++) {
    c.write(enc.query(`select '${marker(i)}' as v`));
    // Its own read on pgscribe's side: the queued bytes of the last one must stay as they were.
    await sleep(40);
  }
  t.ok(up.writableLength > 0, 'the writes upstream were queued, not sent');
  up.uncork();
  const answers = await c.readZ(ROUNDS);
  t.same(column(answers), Array.from({ length: ROUNDS }, (_, k) => marker(k + 1)), 'every query ran as sent');
  t.same(ip.logger.queries.map((q) => q.sql), Array.from({ length: ROUNDS }, (_, k) => `select '${marker(k + 1)}' as v`), 'and was logged as sent');
});

t.test('server reads queued for a corked client reach it intact', async (t) => {
  const ip = await proxy(t);
  const { c, client } = await session(t, ip);
  const down = client.clientLeg.socket;
  down.cork();
  for (let i = 1; i <= ROUNDS; i++) {
    c.write(enc.query(`select '${marker(i)}' as v`));
    // The answer arrives as its own read of the server, and its relayed bytes queue for the client.
    await sleep(40);
  }
  t.ok(down.writableLength > 0, 'the answers were queued, not sent');
  down.uncork();
  const answers = await c.readZ(ROUNDS);
  t.same(column(answers), Array.from({ length: ROUNDS }, (_, k) => marker(k + 1)), 'every answer arrived as the server sent it');
});
