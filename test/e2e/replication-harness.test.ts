// Issue 18's replication harness (harness/pg-replication.ts) does what the failover tests will
// rely on: two standbys stream from the primary; a paused standby falls behind while the other
// keeps up, and catches up on resume; after the primary crashes, a promoted standby takes writes,
// the other standby re-pointed at it receives them, and the old primary starts as a second
// primary (split brain), then rejoins as a standby through pg_rewind. The steps run in order,
// each on the state the previous one left.
import t, { type Test as Tap } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startReplicaSet, type ReplicaNode, type ReplicaSet } from '../harness/pg-replication';
import { waitFor } from '../harness/time';

let set: ReplicaSet;
let primary: ReplicaNode;
let standby1: ReplicaNode;
let standby2: ReplicaNode;

/** Run `step` and say how long it took, so the report of a slow run shows where the time went. */
async function timed<T>(tt: Tap, what: string, step: () => Promise<T>): Promise<T> {
  const started = performance.now();
  const v = await step();
  tt.comment(`${what}: ${Math.round(performance.now() - started)} ms`);
  return v;
}

/**
 * Wait (up to 10 s) until `node`'s walsenders are `expected` ("name:state,..."), then check them:
 * a walsender reports 'catchup' for a moment before 'streaming'.
 */
async function expectWalsenders(tt: Tap, node: ReplicaNode, expected: string, what: string): Promise<void> {
  const sql = "select coalesce(string_agg(application_name || ':' || state, ',' order by application_name), '') from pg_stat_replication";
  let last = '';
  await waitFor(async () => ((last = await node.psql(sql)) === expected ? true : undefined), {
    timeoutMs: 10_000,
    intervalMs: 100,
    timeout: () => `walsenders of ${node.name}: ${last}`,
  }).catch(() => undefined);
  tt.equal(last, expected, what);
}

const ids = (n: ReplicaNode): Promise<string> => n.psql('select coalesce(string_agg(id::text, \',\' order by id), \'\') from events');

t.before(async () => {
  set = await timed(t, 'startReplicaSet({ standbys: 2 })', () => startReplicaSet({ standbys: 2 }));
  [primary, standby1, standby2] = set.nodes as [ReplicaNode, ReplicaNode, ReplicaNode];
});

t.teardown(() => set?.stopAll());

t.test('two standbys stream from the primary', async (t) => {
  t.equal(await primary.isInRecovery(), false, 'primary is not in recovery');
  t.equal(await standby1.isInRecovery(), true, 'standby1 is in recovery');
  t.equal(await standby2.isInRecovery(), true, 'standby2 is in recovery');
  await expectWalsenders(t, primary, 'standby1:streaming,standby2:streaming', 'the primary sees both walsenders streaming');
  await primary.psql("create table events (id int primary key, origin text); insert into events values (1, 'primary')");
  await timed(t, 'both standbys replay a row', () => Promise.all([standby1.catchUpWith(primary), standby2.catchUpWith(primary)]));
  t.equal(await ids(standby1), '1', 'the row is on standby1');
  t.equal(await ids(standby2), '1', 'the row is on standby2');
  await t.rejects(standby1.psql("insert into events values (9, 'standby')"), { message: /read-only transaction/ }, 'a standby refuses writes');
});

t.test('a paused standby falls behind while the other keeps up, and catches up on resume', async (t) => {
  await standby1.pauseReplay();
  await primary.psql("insert into events select g, 'primary' from generate_series(2, 100) g");
  await standby2.catchUpWith(primary);
  const lagBefore = await set.replayLagBytes(standby1);
  t.ok(lagBefore > 0, `standby1 is behind (${lagBefore} bytes)`);
  await primary.psql("insert into events select g, 'primary' from generate_series(101, 1000) g");
  await standby2.catchUpWith(primary);
  t.pass('standby2 keeps up');
  const lagAfter = await set.replayLagBytes(standby1);
  t.ok(lagAfter > lagBefore, `its lag grows with the primary's writes (${lagAfter} bytes)`);
  t.equal(await standby1.psql('select count(*) from events'), '1', 'standby1 shows no row written while paused');
  t.equal(await standby2.psql('select count(*) from events'), '1000', 'standby2 shows every row');

  await standby1.resumeReplay();
  await timed(t, 'catch-up after resume', () => standby1.catchUpWith(primary));
  t.pass('standby1 catches up');
  t.equal(await standby1.psql('select count(*) from events'), '1000', 'standby1 shows every row');
});

t.test('a standby stopped immediately streams again once started', async (t) => {
  await standby2.stopImmediate();
  await t.rejects(standby2.psql('select 1'), 'it is down');
  await primary.psql("insert into events values (1001, 'primary')");
  await timed(t, 'standby restart to streaming', async () => {
    await standby2.start();
    await standby2.waitForStreamingFrom(primary);
    await standby2.catchUpWith(primary);
  });
  t.equal(await standby2.psql('select count(*) from events'), '1001', 'it received the row written while it was down');
});

t.test('failover: the primary crashes, standby1 is promoted and takes writes', async (t) => {
  // Both standbys have everything: neither is past the point where standby1's new timeline forks.
  await Promise.all([standby1.catchUpWith(primary), standby2.catchUpWith(primary)]);
  await primary.stopImmediate();
  await t.rejects(primary.psql('select 1'), 'the primary is down');
  await timed(t, 'promote', () => standby1.promote());
  t.equal(await standby1.isInRecovery(), false, 'standby1 is out of recovery');
  await standby1.psql("insert into events values (2001, 'standby1')");
  t.equal(await standby1.psql('select count(*) from events'), '1002', 'the write succeeded on the new primary');
});

t.test('standby2 re-pointed at the new primary receives its rows', async (t) => {
  await timed(t, 'demoteToStandbyOf (re-point a standby)', () => standby2.demoteToStandbyOf(standby1));
  t.equal(await standby2.isInRecovery(), true, 'standby2 is a standby');
  await expectWalsenders(t, standby1, 'standby2:streaming', 'the new primary sees standby2 streaming');
  await standby1.psql("insert into events values (2002, 'standby1')");
  await standby2.catchUpWith(standby1);
  t.equal(await standby2.psql('select count(*) from events where id > 2000'), '2', 'standby2 has both rows written after the failover');
});

t.test('split brain: the old primary starts as a second primary, then rejoins as a standby', async (t) => {
  await timed(t, 'startAsPrimaryAgain (crash recovery)', () => primary.startAsPrimaryAgain());
  t.equal(await primary.isInRecovery(), false, 'the old primary is a primary');
  await primary.psql("insert into events values (3001, 'old primary')");
  t.equal(await primary.psql('select count(*) from events where id > 2000'), '1', "it has its own write and not the new primary's");
  t.equal(await standby1.psql('select count(*) from events where id = 3001'), '0', "the new primary does not have the old primary's write");

  await timed(t, 'demoteToStandbyOf (pg_rewind of a diverged primary)', () => primary.demoteToStandbyOf(standby1));
  t.equal(await primary.isInRecovery(), true, 'the old primary is a standby now');
  await expectWalsenders(t, standby1, 'primary:streaming,standby2:streaming', 'the new primary sees both standbys streaming');
  await standby1.psql("insert into events values (2003, 'standby1')");
  await primary.catchUpWith(standby1);
  t.equal(await ids(primary).then((s) => s.split(',').filter((id) => Number(id) > 2000).join(',')), '2001,2002,2003', "it has the new primary's rows and lost its own");
});

t.test('stopAll stops every node and removes its temp dir, and can be called again', async (t) => {
  await set.stopAll();
  await set.stopAll();
  for (const n of set.nodes) t.notOk(fs.existsSync(path.dirname(n.dataDir)), `${n.name}'s temp dir is gone`);
});
