// The change stream (src/wal/change-stream.ts) against a real cluster: what pgoutput reports for
// plain writes, triggers, cascades, TRUNCATE, rolled-back work, partitions and two-phase commit;
// waitFor(); and each way the stream is lost (walsender terminated, a stall, a server restart),
// the publication missing or refused, and close() leaving no slot, timer or socket behind.
import t from 'tap';
import { startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { waitFor } from '../harness/time';
import { startChaosRelay } from '../helpers/chaos-relay';
import type { OpsFields, OpsLog } from '../../src/log/ops';
import { ChangeStream, type ChangeStreamOptions, type CommitInfo, type ReadyInfo } from '../../src/wal/change-stream';
import { parseLsn } from '../../src/wal/lsn';
import { ReplicationConnection } from '../../src/wal/replication-connection';
import { addTablesSql, tablesToAddSql } from '../../src/wal/publication';
import { DEFAULT_PUBLICATION } from '../../src/wal/setup';

let pg: PgCluster;
const streams = new Set<ChangeStream>();

t.before(async () => {
  pg = await startCluster({ conf: { max_prepared_transactions: '10' } });
  await pg.psql('CREATE DATABASE other');
  await pg.psql('CREATE DATABASE third');
});

t.teardown(async () => {
  for (const s of streams) s.close();
  await pg?.stop();
});

interface Seen {
  commits: CommitInfo[];
  readies: ReadyInfo[];
  downs: string[];
  ops: { level: string; msg: string; fields: OpsFields }[];
}

function open(o: Partial<ChangeStreamOptions> = {}): { stream: ChangeStream; seen: Seen } {
  const seen: Seen = { commits: [], readies: [], downs: [], ops: [] };
  const log = (level: string) => (msg: string, fields: OpsFields = {}) => void seen.ops.push({ level, msg, fields });
  const ops: OpsLog = { info: log('INFO'), warn: log('WARN'), error: log('ERROR') };
  const stream = new ChangeStream({
    host: pg.host,
    port: pg.port,
    user: 'postgres',
    password: '',
    database: 'postgres',
    tls: null,
    backoffMaxMs: 1000,
    ops,
    onCommit: (c) => seen.commits.push(c),
    onReady: (r) => seen.readies.push(r),
    onDown: (reason) => seen.downs.push(reason),
    ...o,
  });
  streams.add(stream);
  stream.start();
  return { stream, seen };
}

/** Probe until it gives something; fail with what was seen. */
function until<T>(probe: () => T | undefined | Promise<T | undefined>, what: string, seen?: Seen, timeoutMs = 30_000): Promise<T> {
  return waitFor(probe, {
    timeoutMs,
    timeout: () => `timed out waiting for ${what}${seen === undefined ? '' : `; seen: ${JSON.stringify({ downs: seen.downs, readies: seen.readies.length, ops: seen.ops.map((l) => `${l.level} ${l.msg} ${JSON.stringify(l.fields)}`) })}`}`,
  });
}

const names = (c: CommitInfo): string[] => c.relations.map((r) => `${r.schema}.${r.name}`).sort();
/** The first commit that changed `table` (schema public). */
const commitOf = (seen: Seen, table: string): CommitInfo | undefined => seen.commits.find((c) => c.relations.some((r) => r.schema === 'public' && r.name === table));
/**
 * What pgscribe's manager (src/cache/change-streams.ts) does when the catalog changes: add every
 * table with a replica identity to pgscribe_all, which the stream creates empty.
 */
async function publish(db = 'postgres'): Promise<void> {
  const tables = (await pg.psql(tablesToAddSql(DEFAULT_PUBLICATION), { db })).split('\n').filter((x) => x !== '');
  for (const sql of addTablesSql(DEFAULT_PUBLICATION, tables)) await pg.psql(sql, { db });
}
const lsnNow = async (): Promise<bigint> => parseLsn(await pg.psql('SELECT pg_current_wal_insert_lsn()'))!;

t.test('the replication connection: IDENTIFY_SYSTEM, and SQL on a walsender', async (tt) => {
  const conn = await ReplicationConnection.connect({ host: pg.host, port: pg.port, user: 'postgres', password: '', database: 'postgres', applicationName: 'pgscribe test', connectTimeoutMs: 20_000, tls: null });
  tt.teardown(() => conn.close());
  const id = await conn.identifySystem(20_000);
  tt.equal(id.database, 'postgres');
  tt.match(id.systemId, /^\d+$/);
  tt.equal(id.timeline, 1);
  tt.ok(id.xlogPos > 0n);
  tt.equal(conn.serverMajor, Number((await pg.psql('SHOW server_version_num')).slice(0, -4)));
  tt.equal(await pg.psql(`SELECT backend_type FROM pg_stat_activity WHERE pid = ${conn.backendPid}`), 'walsender');
  tt.strictSame((await conn.query('SELECT 1 AS one', 20_000)).rows, [['1']], 'a replication=database connection takes SQL');
});

// The stream most tests share: pgscribe's own publication, created by it.
let main: { stream: ChangeStream; seen: Seen };

t.test('the publication is created if missing, and a write by psql is reported', async (tt) => {
  tt.equal(await pg.psql("SELECT count(*) FROM pg_publication WHERE pubname = 'pgscribe_all'"), '0', 'no publication before');
  await pg.psql('CREATE TABLE plain (id int PRIMARY KEY, v text)');
  main = open();
  const { stream, seen } = main;
  tt.equal(stream.healthy, false, 'not healthy before the slot streams');
  await until(() => (seen.readies.length > 0 ? true : undefined), 'onReady', seen);
  tt.ok(stream.healthy);
  tt.equal(await pg.psql("SELECT puballtables, pubinsert AND pubupdate AND pubdelete AND pubtruncate FROM pg_publication WHERE pubname = 'pgscribe_all'"), 'f|t', 'pgscribe_all was created, not FOR ALL TABLES, publishing every kind of change');
  tt.equal(await pg.psql("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgscribe_all'"), '0', 'and empty: tables are added by the cache');
  tt.ok(seen.ops.some((l) => l.level === 'INFO' && /created pgscribe's publication/.test(l.msg)), 'and the operator is told');
  await publish();
  tt.equal(await pg.psql("SELECT tablename FROM pg_publication_tables WHERE pubname = 'pgscribe_all'"), 'plain', 'the keyed table is added');
  const ready = seen.readies[0]!;
  tt.match(ready.slot, /^pgscribe_\d+_\d+$/);
  tt.equal(ready.publication, 'pgscribe_all');
  tt.equal(stream.slotName, ready.slot);
  tt.equal(
    await pg.psql(`SELECT temporary, plugin, slot_type, database, active FROM pg_replication_slots WHERE slot_name = '${ready.slot}'`),
    't|pgoutput|logical|postgres|t',
    'a temporary pgoutput slot, active',
  );
  tt.ok(stream.position >= ready.startLsn);

  await pg.psql("INSERT INTO plain VALUES (1, 'a')");
  const c = await until(() => commitOf(seen, 'plain'), 'the insert', seen);
  tt.strictSame(names(c), ['public.plain']);
  tt.equal(c.truncate, false);
  tt.ok(c.commitLsn > ready.startLsn && c.endLsn > c.commitLsn, 'commit LSN after the start, end after the commit');
  tt.ok(Number.isFinite(c.lagMs) && c.receivedAtMs >= c.commitTimeMs - 5_000, 'a lag figure per commit');
  tt.ok(stream.position >= c.endLsn, 'the position passed the commit');
  await pg.psql("UPDATE plain SET v = 'b'; DELETE FROM plain");
  await until(() => (seen.commits.filter((x) => names(x).includes('public.plain')).length >= 2 ? true : undefined), 'the update and delete (one transaction)', seen);
});

t.test('a trigger writing another table, and ON DELETE CASCADE, report every relation changed', async (tt) => {
  const { seen } = main;
  await pg.psql(`CREATE TABLE src (id int PRIMARY KEY); CREATE TABLE audit (id int PRIMARY KEY, at timestamptz);
    CREATE FUNCTION audit_it() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit VALUES (NEW.id, now()); RETURN NEW; END $$;
    CREATE TRIGGER audit_src AFTER INSERT ON src FOR EACH ROW EXECUTE FUNCTION audit_it();
    CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent ON DELETE CASCADE);
    INSERT INTO parent VALUES (1), (2); INSERT INTO child VALUES (10, 1), (20, 2)`);
  await publish();
  await pg.psql('INSERT INTO src VALUES (1)');
  const trig = await until(() => commitOf(seen, 'src'), 'the insert into src', seen);
  tt.strictSame(names(trig), ['public.audit', 'public.src'], "the trigger's table is in the same commit");
  await pg.psql('DELETE FROM parent WHERE id = 1');
  const del = await until(() => seen.commits.find((c) => c.relations.some((r) => r.name === 'parent') && !c.relations.some((r) => r.name === 'src')), 'the delete', seen);
  tt.strictSame(names(del), ['public.child', 'public.parent'], 'the cascaded child is reported with the parent');
});

t.test('TRUNCATE reports truncate and its relations, CASCADE included', async (tt) => {
  const { seen } = main;
  await pg.psql('CREATE TABLE trunc_me (id int PRIMARY KEY); CREATE TABLE trunc_ref (id int PRIMARY KEY REFERENCES trunc_me); INSERT INTO trunc_me VALUES (1)');
  await publish();
  const before = seen.commits.length;
  await pg.psql('TRUNCATE trunc_me CASCADE');
  const c = await until(() => seen.commits.slice(before).find((x) => x.truncate), 'the truncate', seen);
  tt.strictSame(names(c), ['public.trunc_me', 'public.trunc_ref']);
});

t.test('rolled-back work never appears', async (tt) => {
  const { seen } = main;
  await pg.psql('CREATE TABLE rolled (id int PRIMARY KEY); CREATE TABLE marker (id int PRIMARY KEY); CREATE TABLE kept (id int PRIMARY KEY)');
  await publish();
  await pg.psql('BEGIN; INSERT INTO rolled VALUES (1); ROLLBACK');
  await pg.psql('BEGIN; INSERT INTO kept VALUES (1); SAVEPOINT s; INSERT INTO rolled VALUES (2); ROLLBACK TO s; COMMIT');
  await pg.psql('INSERT INTO marker VALUES (1)');
  await until(() => commitOf(seen, 'marker'), 'the marker commit after them', seen);
  const kept = commitOf(seen, 'kept');
  tt.ok(kept !== undefined, 'the committed transaction with a rolled-back savepoint is reported');
  tt.strictSame(kept === undefined ? null : names(kept), ['public.kept'], 'without the savepoint that was rolled back');
  tt.equal(commitOf(seen, 'rolled'), undefined, 'nothing of the rolled-back writes');
});

t.test('a partitioned table: pgoutput reports the leaf partition, not the parent', async (tt) => {
  const { seen } = main;
  await pg.psql('CREATE TABLE part (k int PRIMARY KEY) PARTITION BY RANGE (k); CREATE TABLE part_low PARTITION OF part FOR VALUES FROM (0) TO (100); CREATE TABLE part_high PARTITION OF part FOR VALUES FROM (100) TO (200)');
  await publish();
  await pg.psql('INSERT INTO part VALUES (5)');
  const c = await until(() => commitOf(seen, 'part_low'), 'the insert into part', seen);
  tt.strictSame(names(c), ['public.part_low'], 'the leaf only (publish_via_partition_root is off): the caller maps it to its parent');
  await pg.psql('UPDATE part SET k = 150 WHERE k = 5');
  const moved = await until(() => commitOf(seen, 'part_high'), 'the row moved across partitions', seen);
  tt.strictSame(names(moved), ['public.part_high', 'public.part_low'], 'a row moving partitions: both leaves');
});

t.test('two-phase commit is reported at COMMIT PREPARED, a ROLLBACK PREPARED never', async (tt) => {
  const { seen } = main;
  await pg.psql('CREATE TABLE twophase (id int PRIMARY KEY); CREATE TABLE twophase_no (id int PRIMARY KEY); CREATE TABLE marker2 (id int PRIMARY KEY)');
  await publish();
  await pg.psql("BEGIN; INSERT INTO twophase VALUES (1); PREPARE TRANSACTION 'pgscribe_gid_1'");
  await pg.psql("BEGIN; INSERT INTO twophase_no VALUES (1); PREPARE TRANSACTION 'pgscribe_gid_2'");
  try {
    await pg.psql('INSERT INTO marker2 VALUES (1)');
    await until(() => commitOf(seen, 'marker2'), 'a commit after the PREPAREs', seen);
    tt.equal(commitOf(seen, 'twophase'), undefined, 'nothing at PREPARE TRANSACTION');
    await pg.psql("COMMIT PREPARED 'pgscribe_gid_1'");
    const c = await until(() => commitOf(seen, 'twophase'), 'the COMMIT PREPARED', seen);
    tt.strictSame(names(c), ['public.twophase']);
    await pg.psql("ROLLBACK PREPARED 'pgscribe_gid_2'");
  } finally {
    // A prepared transaction left behind would hold up every later slot creation (each fails
    // harmlessly when the test got that far).
    await pg.psql("ROLLBACK PREPARED 'pgscribe_gid_2'").catch(() => {});
    await pg.psql("COMMIT PREPARED 'pgscribe_gid_1'").catch(() => {});
  }
  await pg.psql('INSERT INTO marker2 VALUES (2)');
  await until(() => (seen.commits.filter((c) => names(c).includes('public.marker2')).length >= 2 ? true : undefined), 'a commit after the ROLLBACK PREPARED', seen);
  tt.equal(commitOf(seen, 'twophase_no'), undefined, 'the rolled-back prepared transaction never appears');
});

t.test('waitFor(): true soon after a commit, false on timeout', async (tt) => {
  const { stream, seen } = main;
  await pg.psql('CREATE TABLE waited (id int PRIMARY KEY)');
  await publish();
  await pg.psql('INSERT INTO waited VALUES (1)');
  const lsn = await lsnNow();
  tt.equal(await stream.waitFor(lsn, 20_000), true, 'the position reaches pg_current_wal_insert_lsn() after the commit');
  tt.ok(commitOf(seen, 'waited') !== undefined, 'and the commit was handed over by then');
  tt.ok(stream.position >= lsn);
  tt.equal(await stream.waitFor(lsn, 1), true, 'at once for a position already passed');
  // Idle: no traffic comes by itself; the ping must learn the position.
  const idle = await lsnNow();
  tt.equal(await stream.waitFor(idle, 20_000), true, 'an idle stream answers through a ping');
  tt.equal(await stream.waitFor(idle + (1n << 40n), 300), false, 'a position the server has not reached: false after the timeout');
  tt.ok(stream.healthy, 'and the stream stays healthy');
});

t.test('pg_terminate_backend of the walsender: onDown, then onReady on a new slot', async (tt) => {
  const { stream, seen } = main;
  const slot = stream.slotName!;
  const pid = await pg.psql(`SELECT active_pid FROM pg_replication_slots WHERE slot_name = '${slot}'`);
  tt.equal(await pg.psql(`SELECT backend_type, application_name FROM pg_stat_activity WHERE pid = ${pid}`), 'walsender|pgscribe changes');
  const downs = seen.downs.length;
  const readies = seen.readies.length;
  await pg.psql(`SELECT pg_terminate_backend(${pid})`);
  await until(() => (seen.downs.length > downs ? true : undefined), 'onDown', seen);
  tt.match(seen.downs.at(-1), /57P01|terminating connection/, 'the reason says why');
  await until(() => (seen.readies.length > readies ? true : undefined), 'onReady again', seen);
  tt.not(seen.readies.at(-1)!.slot, slot, 'on a new slot');
  await until(async () => ((await pg.psql(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = '${slot}'`)) === '0' ? true : undefined), 'the old temporary slot gone');
  await pg.psql('INSERT INTO plain VALUES (100)');
  await until(() => seen.commits.find((c) => names(c).includes('public.plain') && c.commitLsn > seen.readies.at(-1)!.startLsn), 'a write after the reconnect', seen);
  tt.ok(seen.ops.some((l) => l.level === 'WARN' && /change stream: down/.test(l.msg)), 'a warning for the outage');
  tt.ok(seen.ops.some((l) => l.level === 'INFO' && /back, on a new slot/.test(l.msg)), 'and a line when it is back');
});

t.test('a server restart is survived', async (tt) => {
  const { stream, seen } = main;
  const downs = seen.downs.length;
  const readies = seen.readies.length;
  await pg.restart();
  await until(() => (seen.downs.length > downs ? true : undefined), 'onDown', seen);
  await until(() => (seen.readies.length > readies ? true : undefined), 'onReady after the restart', seen);
  tt.ok(stream.healthy);
  await pg.psql('INSERT INTO plain VALUES (200)');
  const lsn = await lsnNow();
  tt.equal(await stream.waitFor(lsn, 20_000), true);
  tt.ok(seen.commits.some((c) => names(c).includes('public.plain') && c.commitLsn > seen.readies.at(-1)!.startLsn), 'a write after the restart is reported');
});

t.test('a stall: waitFor() false, then the stall detector reconnects', async (tt) => {
  const relay = await startChaosRelay(pg.port);
  tt.teardown(() => relay.close());
  const { stream, seen } = open({ port: relay.port, stallTimeoutMs: 1500, statusIntervalMs: 500, connectTimeoutMs: 2000, setupTimeoutMs: 5000 });
  await until(() => (seen.readies.length > 0 ? true : undefined), 'onReady through the relay', seen);
  relay.stall('both');
  await pg.psql('INSERT INTO plain VALUES (300)');
  tt.equal(await stream.waitFor(await lsnNow(), 400), false, 'nothing can arrive: false after the timeout');
  await until(() => (seen.downs.length > 0 ? true : undefined), 'the stall detected', seen);
  tt.match(seen.downs[0], /nothing arrived for \d+ ms/);
  tt.equal(stream.healthy, false);
  tt.equal(await stream.waitFor(0n, 1000), false, 'waitFor() on a stream that is down: false at once');
  relay.heal();
  await until(() => (seen.readies.length > 1 ? true : undefined), 'onReady after the stall', seen);
  await pg.psql('INSERT INTO plain VALUES (301)');
  tt.equal(await stream.waitFor(await lsnNow(), 20_000), true, 'streaming again');
  stream.close();
});

t.test("an operator's publication: never created, a clear warning, used once it exists (quoted as it must be)", async (tt) => {
  const pub = `we"ird 'pub`;
  const { stream, seen } = open({ publication: pub, backoffMaxMs: 300 });
  await until(() => seen.ops.find((l) => l.level === 'WARN' && /does not exist/.test(l.msg + JSON.stringify(l.fields))), 'the warning', seen);
  const warn = seen.ops.find((l) => l.level === 'WARN')!;
  tt.match(warn.fields.reason, /publication "we\\"ird 'pub" does not exist/, 'the reason names it');
  tt.match(warn.msg, /CREATE PUBLICATION "we""ird 'pub" FOR TABLE/, 'and says what to do');
  tt.equal(stream.healthy, false);
  tt.equal(seen.readies.length, 0, 'the stream stays down');
  tt.equal(await pg.psql(`SELECT count(*) FROM pg_publication WHERE pubname = 'we"ird ''pub'`), '0', 'pgscribe did not create it');
  await pg.psql(`CREATE TABLE op_in (id int); CREATE TABLE op_out (id int); CREATE PUBLICATION "we""ird 'pub" FOR TABLE op_in`);
  await until(() => (seen.readies.length > 0 ? true : undefined), 'onReady once it exists', seen);
  tt.equal(seen.readies[0]!.publication, pub, 'retried until it exists');
  tt.equal(seen.downs.length, 1, 'onDown once for the outage, whatever the retries');
  tt.notOk(seen.ops.some((l) => l.level === 'WARN' && /leaves out/.test(l.msg)), 'a table list is the operator\'s choice, not a gap (the cache relays what it leaves out)');
  await pg.psql('INSERT INTO op_out VALUES (1)');
  await pg.psql('INSERT INTO op_in VALUES (1)');
  await until(() => commitOf(seen, 'op_in'), 'a change to a published table', seen);
  tt.equal(commitOf(seen, 'op_out'), undefined, 'a table outside the publication is not seen');
  stream.close();
});

t.test('a table without a replica identity stays out of pgscribe_all, and its writes keep working', async (tt) => {
  await pg.psql('CREATE TABLE no_key (v text); CREATE TABLE keyed (id int PRIMARY KEY)', { db: 'third' });
  const { stream, seen } = open({ database: 'third', backoffMaxMs: 300 });
  await until(() => (seen.readies.length > 0 ? true : undefined), 'onReady', seen);
  await publish('third');
  tt.equal(await pg.psql("SELECT tablename FROM pg_publication_tables WHERE pubname = 'pgscribe_all'", { db: 'third' }), 'keyed', 'only the keyed table is published');
  await tt.resolves(pg.psql("INSERT INTO no_key VALUES ('x'); UPDATE no_key SET v = 'y'; DELETE FROM no_key", { db: 'third' }), "the keyless table's UPDATE and DELETE still work");
  await pg.psql("INSERT INTO no_key VALUES ('q'); INSERT INTO keyed VALUES (1)", { db: 'third' });
  await until(() => commitOf(seen, 'keyed'), 'the keyed write', seen);
  tt.equal(commitOf(seen, 'no_key'), undefined, 'the keyless table is not streamed');
  await pg.psql('ALTER TABLE no_key REPLICA IDENTITY FULL', { db: 'third' });
  await publish('third');
  await pg.psql("INSERT INTO no_key VALUES ('a'); UPDATE no_key SET v = 'b'", { db: 'third' });
  const c = await until(() => commitOf(seen, 'no_key'), 'the write once it has an identity', seen);
  tt.strictSame(names(c), ['public.no_key']);
  stream.close();
});

t.test('setup refused: pgscribe_all publishing less, a role without REPLICATION', async (tt) => {
  await pg.psql("CREATE TABLE only_this (id int); CREATE PUBLICATION pgscribe_all FOR TABLE only_this WITH (publish = 'insert, update')", { db: 'other' });
  const narrow = open({ database: 'other' });
  await until(() => (narrow.seen.downs.length > 0 ? true : undefined), 'onDown', narrow.seen);
  tt.match(narrow.seen.downs[0], /publication pgscribe_all leaves out the delete, truncate changes/);
  tt.match(narrow.seen.ops.find((l) => l.level === 'WARN')?.msg, /DROP PUBLICATION pgscribe_all/);
  tt.equal(narrow.stream.healthy, false);
  narrow.stream.close();

  // The operator's own publication is refused the same way: the UPDATEs it does not carry would
  // leave its tables' cached answers stale for their whole TTL.
  await pg.psql("CREATE TABLE ins_only (id int PRIMARY KEY); CREATE PUBLICATION inserts_only FOR TABLE ins_only WITH (publish = 'insert')", { db: 'other' });
  const partial = open({ database: 'other', publication: 'inserts_only' });
  await until(() => (partial.seen.downs.length > 0 ? true : undefined), 'onDown', partial.seen);
  tt.match(partial.seen.downs[0], /publication inserts_only leaves out the update, delete, truncate changes/);
  tt.match(partial.seen.ops.find((l) => l.level === 'WARN')?.msg, /ALTER PUBLICATION "inserts_only" SET \(publish = 'insert, update, delete, truncate'\)/);
  tt.equal(partial.stream.healthy, false, 'the stream stays down: nothing of the database is served from the cache');
  tt.equal(partial.seen.readies.length, 0);
  partial.stream.close();

  const weak = open({ user: USERS.trust.user });
  await until(() => (weak.seen.downs.length > 0 ? true : undefined), 'onDown', weak.seen);
  tt.match(weak.seen.ops.find((l) => l.level === 'WARN')?.msg, /REPLICATION attribute/);
  tt.equal(weak.stream.healthy, false);
  weak.stream.close();
});

t.test('close(): no slot, no timer, no socket left; waiters get false', async (tt) => {
  main.stream.close();
  for (const s of streams) s.close();
  const resources = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout' || r === 'TCPSocketWrap').length;
  await until(async () => ((await pg.psql("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgscribe\\_%'")) === '0' ? true : undefined), 'no slot left by the earlier streams');
  // The baseline is what is left when the earlier streams' sockets have gone (a closed
  // connection lingers up to 2 s for the server's FIN); whatever else the process holds stays.
  await until(() => (resources() === 0 ? true : undefined), 'the earlier streams gone', undefined, 5_000).catch(() => undefined);
  const baseline = resources();
  const { stream, seen } = open();
  await until(() => (seen.readies.length > 0 ? true : undefined), 'onReady', seen);
  const pending = stream.waitFor((await lsnNow()) + (1n << 40n), 60_000);
  tt.ok(resources() > baseline, 'a stream holds a socket and timers');
  stream.close();
  tt.equal(await pending, false, 'a waiter pending at close() gets false');
  tt.equal(stream.healthy, false);
  tt.equal(await stream.waitFor(0n, 1000), false);
  tt.equal(seen.downs.length, 0, 'close() is not an outage');
  await until(async () => ((await pg.psql("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgscribe\\_%'")) === '0' ? true : undefined), 'the slot dropped with the connection');
  await until(() => (resources() <= baseline ? true : undefined), `resources back to ${baseline} (now ${resources()})`, undefined, 10_000);
});
