// --processes N (issue 17) with the real proxy (dist/main.js) in front of a real PostgreSQL 15:
// connections spread over the processes, one max-connections, cancel requests reaching the
// process that holds the key, a write through one process dropping what another cached before
// its ReadyForQuery, one line-whole query log across SIGHUP rotations under load, a process
// killed under load (own sessions, and pgbench) while the others' sessions carry on, and one
// admin view summed over the processes.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PG_BIN, startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { proxyFixture } from '../helpers/fixture';
import { enc, errorsIn, value, type RawClient } from '../harness/wire';
import { run } from '../harness/run';
import { sleep, waitFor } from '../harness/time';
import { admin } from '../helpers/safe-cache';
import type { Proxy } from '../harness/proxy';
import { parseProm, value as promValue } from '../helpers/prom';

const USER = USERS.trust.user;
const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';
/** A query log line (text format): timestamp, conn id, who, from where, the message. */
const LOG_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z conn=(\d+) \S+@\S+ 127\.0\.0\.1:\d+ [QPBE] /;

let pg: PgCluster;
const fx = proxyFixture({ upstreamPort: () => pg.port, user: USER });

t.before(async () => {
  pg = await startCluster();
  await pg.psql(`create table pr_rw (id int primary key, v text); insert into pr_rw values (1, 'v0'); grant all on pr_rw to ${USER}`);
  await run(PGBENCH, ['-i', '-s', '1', '-q'], { env: pg.env(), timeoutMs: 60_000 });
  await pg.psql(`grant select, update, insert on all tables in schema public to ${USER}`);
});

t.teardown(async () => {
  await fx.cleanup('SIGKILL');
  await pg?.stop();
});

/** The pid of serving process `index`, from its ready line. */
async function servingPid(p: Proxy, index: number): Promise<number> {
  const line = await p.waitStderr(new RegExp(`serving process ready: .*process=${index} pid=(\\d+)`));
  return Number(/pid=(\d+)/.exec(line)![1]);
}

/** SIGUSR2 at the primary: each process's sessions gauge, by process index, and the total line. */
async function sessionsByProcess(p: Proxy, n: number): Promise<{ each: number[]; total: number }> {
  const before = p.stderr().length;
  p.proc.kill('SIGUSR2');
  await p.waitStderr(/INFO stats total processes=\d+ .*/, 5000);
  await sleep(50);
  const text = p.stderr().slice(before);
  const each: number[] = [];
  for (let i = 0; i < n; i++) each.push(Number(new RegExp(`INFO stats process=${i} .*?\\bsessions=(\\d+)`).exec(text)?.[1] ?? NaN));
  const total = Number(/INFO stats total processes=\d+ .*?\bsessions=(\d+)/.exec(text)?.[1] ?? NaN);
  return { each, total };
}

async function expectValue(t: tap.Test, c: RawClient, sql: string, want: string, what: string): Promise<void> {
  const msgs = await c.query(sql);
  t.same(errorsIn(msgs), [], `${what}: no error`);
  t.equal(value(msgs), want, what);
}

t.test('sessions spread over the processes; SIGUSR2 prints each one and the total', async (t) => {
  const p = await fx.launch(['--processes', '2']);
  const a = await fx.session(p.port);
  const b = await fx.session(p.port);
  await expectValue(t, a, 'select 1', '1', 'first session answers');
  await expectValue(t, b, 'select 2', '2', 'second session answers');
  t.same(await sessionsByProcess(p, 2), { each: [1, 1], total: 2 }, 'one session in each process: the primary hands a connection to the one holding fewest');
  t.equal((await p.stats()).sessions, 2, "the proxy's stats line is the primary's total (the harness skips the processes' own)");
  a.write(enc.terminate());
  b.write(enc.terminate());
  const exit = await p.stop('SIGTERM');
  t.same(exit, { code: 0, signal: null }, 'SIGTERM: every process drains and the primary exits 0');
  const ids = p.logLines().map((l) => Number(LOG_LINE.exec(l)?.[1]));
  t.same([...new Set(ids)].sort(), [1, 2], 'conn ids are unique across the processes');
  t.match(p.stderr(), /shutdown complete query_log_lines=2 query_log_lines_written=2\b/, 'the processes\' counts, summed, equal the lines written');
});

t.test('max-connections is one limit over all processes: 53300 past it, a slot freed anywhere is free', async (t) => {
  const p = await fx.launch(['--processes', '2', '--max-connections', '2']);
  const a = await fx.session(p.port);
  await fx.session(p.port);
  const c = await fx.connect(p.port);
  const refused = await c.startup(USER);
  t.equal(errorsIn(refused)[0]?.C, '53300', 'the third session is refused, although each process holds only one');
  t.match(errorsIn(refused)[0]?.M, /too many clients/);
  a.sock.destroy();
  let d: RawClient | null = null;
  for (let i = 0; i < 50 && d === null; i++) {
    try {
      d = await fx.session(p.port);
    } catch {
      await sleep(50);
    }
  }
  t.ok(d !== null, 'once a session in either process ends, a new one is admitted');
  t.match(p.stderr(), /WARN connection limit reached; refusing client with 53300 process=\d conn=3 .*max_connections=2/, 'the refusal is said by the process that held the client');
});

t.test('a cancel request reaches the process holding the key, whichever process accepts it', async (t) => {
  const p = await fx.launch(['--processes', '2']);
  const s = await fx.sessionWithKey(p.port);
  s.c.write(enc.query('select pg_sleep(30)'));
  await sleep(300);
  // The primary hands the cancel's connection to the process with fewer connections: the other one.
  const cancel = await fx.connect(p.port);
  cancel.write(enc.cancel(s.pid, s.secret));
  const msgs = await s.c.readZ(1, 10_000);
  t.equal(errorsIn(msgs)[0]?.C, '57014', 'the sleeping query is cancelled (57014)');
  t.same(await sessionsByProcess(p, 2), { each: [1, 0], total: 1 }, 'the session lives in process 0, the cancel came through process 1');
  const unknown = await fx.connect(p.port);
  unknown.write(enc.cancel(12345, 67890));
  await p.waitStderr(/WARN cancel request for an unknown session ignored .*pid=12345/, 5000);
  t.pass('a key no process holds is said once, by the primary');
});

t.test('a write through one process drops what another process cached, before its ReadyForQuery', async (t) => {
  const p = await fx.launch(['--processes', '2', '--cache', '--cache-ttl', '3600000', '--catalog-user', 'postgres']);
  const reader = await fx.session(p.port);
  const writer = await fx.session(p.port);
  t.same(await sessionsByProcess(p, 2), { each: [1, 1], total: 2 }, 'reader and writer are in different processes');
  const read = 'select v from pr_rw where id = 1';
  let stale = 0;
  for (let i = 1; i <= 20; i++) {
    await expectValue(t, reader, read, `v${i - 1}`, `read ${i} before the write`);
    await expectValue(t, reader, read, `v${i - 1}`, `read ${i} again (from the cache)`);
    const w = await writer.query(`update pr_rw set v = 'v${i}' where id = 1`);
    t.same(errorsIn(w), [], `write ${i}`);
    if (value(await reader.query(read)) !== `v${i}`) stale++;
  }
  t.equal(stale, 0, 'no read after a write\'s ReadyForQuery sees the old row, in the other process');
  const hits = p.logLines().filter((l) => / Q cache=hit /.test(l)).length;
  t.ok(hits >= 20, `the reader's process answered from its cache (${hits} hits), so the drop was needed`);
});

// wal mode: the writer's process learns what a commit's trigger wrote from its own stream; so must
// every other process before the commit's ReadyForQuery. The reader's process has its walsender
// stopped: without the wait for its stream, its cached row of the trigger's table stays; with it,
// the wait runs past cache-wal-wait-ms there, and that process drops the database and holds it.
// The trigger is created behind pgscribe's catalog (polls off), so no process can name its table.
t.test("wal mode: what a commit's trigger wrote is gone from every process before its ReadyForQuery", async (t) => {
  await admin(pg, ['CREATE TABLE pr_src (id int PRIMARY KEY, v text)', 'CREATE TABLE pr_dst (id int PRIMARY KEY, v text)', "INSERT INTO pr_dst VALUES (1, 'before')", `GRANT ALL ON pr_src, pr_dst TO ${USER}`]);
  const p = await fx.launch(['--processes', '2', '--cache', '--cache-ttl', '3600000', '--cache-invalidation', 'wal', '--catalog-user', 'postgres', '--catalog-poll-ms', '3600000', '--cache-wal-wait-ms', '300']);
  const pid0 = await servingPid(p, 0);
  const reader = await fx.session(p.port);
  const writer = await fx.session(p.port);
  t.same(await sessionsByProcess(p, 2), { each: [1, 1], total: 2 }, 'reader in process 0, writer in process 1');
  const readDst = 'select v from pr_dst where id = 1';
  const hits = () => p.logLines().filter((l) => / Q cache=hit .*pr_dst/.test(l)).length;
  // The log reaches the file through the primary, some ms later: a hit shows there after a pause.
  await waitFor(
    async () => {
      t.equal(value(await reader.query(readDst)), 'before');
      await sleep(100);
      return hits() > 0 ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 50, timeout: () => 'the reader never got pr_dst from the cache' },
  );
  await admin(pg, [
    'CREATE FUNCTION pr_copy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE pr_dst SET v = NEW.v WHERE id = NEW.id; RETURN NEW; END $$',
    'CREATE TRIGGER pr_copy AFTER INSERT OR UPDATE ON pr_src FOR EACH ROW EXECUTE FUNCTION pr_copy()',
  ]);
  const sender = Number((await admin(pg, [`SELECT active_pid FROM pg_replication_slots WHERE slot_name LIKE 'pgscribe_${pid0}_%' AND active`]))[0]!.value);
  t.ok(sender > 0, "process 0's walsender");
  process.kill(sender, 'SIGSTOP');
  try {
    const w = await writer.query("insert into pr_src values (1, 'after') on conflict (id) do update set v = excluded.v");
    t.same(errorsIn(w), [], 'the write through process 1');
    t.equal(value(await reader.query(readDst)), 'after', "the very next read, through process 0, shows what the trigger wrote");
  } finally {
    process.kill(sender, 'SIGCONT');
  }
  await p.waitStderr(/WARN change stream: a commit through pgscribe was not applied within cache-wal-wait-ms.* process=0|process=0 .*was not applied within cache-wal-wait-ms/, 5000);
  t.pass("process 0 said its stream was behind a commit made through process 1");
});

t.test('SIGHUP reopens the one log in the primary: 4 processes, rotations under load, no line lost or split', async (t) => {
  const p = await fx.launch(['--processes', '4']);
  const bench = run(PGBENCH, ['-n', '-c', '8', '-j', '2', '-T', '4', '-S', '-M', 'prepared'], { env: { ...pg.env(USER), PGHOST: p.host, PGPORT: String(p.port) }, timeoutMs: 60_000 });
  const rotated: string[] = [];
  for (let i = 1; i <= 3; i++) {
    await sleep(900);
    const to = `${p.logPath}.${i}`;
    fs.renameSync(p.logPath, to);
    rotated.push(to);
    p.proc.kill('SIGHUP');
    for (let w = 0; w < 100 && (p.stderr().match(/INFO SIGHUP: reopening the query log/g) ?? []).length < i; w++) await sleep(20);
  }
  const r = await bench;
  t.equal(r.code, 0, `pgbench exits 0: ${r.stderr}`);
  t.match(r.stdout, /number of failed transactions: 0 /);
  const exit = await p.stop('SIGTERM');
  t.same(exit, { code: 0, signal: null });
  const files = [...rotated, p.logPath];
  const lines = files.flatMap((f) => fs.readFileSync(f, 'utf8').split('\n').filter((l) => l !== ''));
  const m = /shutdown complete query_log_lines=(\d+) query_log_lines_written=(\d+)/.exec(p.stderr());
  t.ok(m, 'the primary reports both counts');
  t.equal(Number(m?.[1]), lines.length, `the processes' counts sum to the lines in all ${files.length} files`);
  t.equal(Number(m?.[2]), lines.length, 'and so does what the primary wrote');
  t.ok(files.every((f) => fs.statSync(f).size > 0), 'every file got lines');
  t.same(lines.filter((l) => !LOG_LINE.test(l)).slice(0, 3), [], 'every line is whole');
  // Within a session, lines keep their order across files: timestamps never go back.
  const last = new Map<string, string>();
  let backwards = 0;
  for (const l of lines) {
    const conn = LOG_LINE.exec(l)![1]!;
    const ts = l.slice(0, 24);
    if ((last.get(conn) ?? '') > ts) backwards++;
    last.set(conn, ts);
  }
  t.equal(backwards, 0, "each session's lines are in order");
  t.ok(new Set(lines.map((l) => LOG_LINE.exec(l)![1])).size >= 8, 'lines of every session are there');
});

t.test('a process killed under load: its sessions close, the others carry on, a new process takes over', async (t) => {
  const p = await fx.launch(['--processes', '2']);
  const pid0 = await servingPid(p, 0);
  const sessions: RawClient[] = [];
  for (let i = 0; i < 4; i++) sessions.push(await fx.session(p.port));
  t.same(await sessionsByProcess(p, 2), { each: [2, 2], total: 4 }, 'sessions 0 and 2 in process 0, 1 and 3 in process 1');
  // Load on every session while the kill lands.
  let failures = 0;
  const survivors = [sessions[1]!, sessions[3]!];
  const load = survivors.map(async (c) => {
    for (let i = 0; i < 200; i++) {
      const msgs = await c.query(`select ${i}`);
      if (errorsIn(msgs).length > 0 || value(msgs) !== String(i)) failures++;
    }
  });
  await sleep(50);
  process.kill(pid0, 'SIGKILL');
  await Promise.all(load);
  t.equal(failures, 0, "the other process's sessions ran 400 queries without an error while process 0 died");
  for (const c of [sessions[0]!, sessions[2]!]) {
    const r = await c.readUntilClosed(5000);
    t.ok(r.closed, "the dead process's sessions see their connection close (an error, not a hang)");
  }
  await p.waitStderr(/ERROR a serving process died; .* process=0 .*signal=SIGKILL sessions_lost=2/, 5000);
  await p.waitStderr(/INFO serving process ready again process=0/, 10_000);
  for (let i = 0; i < 4; i++) await expectValue(t, await fx.session(p.port), 'select 7', '7', `new session ${i} after the restart`);
  const bad = p.logLines().filter((l) => !LOG_LINE.test(l));
  t.same(bad, [], 'the log stays line-whole');
  const exit = await p.stop('SIGTERM');
  t.same(exit, { code: 0, signal: null }, 'and the proxy still shuts down cleanly');
});

/** The admin server of a proxy started with --admin 127.0.0.1:0: its address from the listening line. */
async function adminOf(p: Proxy): Promise<{ line: string; get(path: string, method?: string): Promise<{ status: number; text: string }>; json<T = Record<string, unknown>>(path: string): Promise<T> }> {
  const line = await p.waitStderr(/admin server listening admin=http:\/\/127\.0\.0\.1:(\d+)\//);
  const base = `http://127.0.0.1:${/:(\d+)\//.exec(line.slice(line.indexOf('admin=')))![1]}`;
  const get = async (path: string, method = 'GET') => {
    const r = await fetch(base + path, { method });
    return { status: r.status, text: await r.text() };
  };
  return {
    line,
    get,
    async json<T>(path: string) {
      const r = await get(path);
      if (r.status !== 200) throw new Error(`${path}: ${r.status} ${r.text}`);
      return JSON.parse(r.text) as T;
    },
  };
}

t.test('one admin view: /metrics, /stats, /queries and /tables sum the processes; /health fails while one is down; a flush reaches all', async (t) => {
  const p = await fx.launch(['--processes', '2', '--admin', '127.0.0.1:0', '--cache', '--cache-ttl', '3600000', '--catalog-user', 'postgres']);
  const admin = await adminOf(p);
  t.notMatch(admin.line, /process=/, 'the primary serves the admin server (the processes answer it over IPC)');
  const m0 = parseProm((await admin.get('/metrics')).text);
  const a = await fx.session(p.port);
  const b = await fx.session(p.port);
  t.same(await sessionsByProcess(p, 2), { each: [1, 1], total: 2 }, 'one session in each process');
  const read = 'select id from pr_rw where id = 1';
  for (let i = 0; i < 10; i++) {
    await expectValue(t, a, read, '1', `a read ${i}`);
    await expectValue(t, b, read, '1', `b read ${i}`);
  }
  const m1 = parseProm((await admin.get('/metrics')).text);
  const d = (name: string, labels: Record<string, string> = {}) => promValue(m1, name, labels) - promValue(m0, name, labels);
  t.equal(d('pgscribe_messages_total', { type: 'Q' }), 20, "20 Q messages: both processes' counters");
  t.equal(d('pgscribe_cache_misses_total'), 2, 'one miss in each process (each has its own L1)');
  t.equal(d('pgscribe_cache_hits_total'), 18, 'and nine hits in each');
  t.equal(d('pgscribe_query_duration_seconds_count'), 20, 'the latency histograms merged');
  t.equal(promValue(m1, 'pgscribe_sessions'), 2, 'sessions of both processes');
  t.equal(promValue(m1, 'pgscribe_processes'), 2);
  t.equal(promValue(m1, 'pgscribe_processes_up'), 2);
  t.equal(promValue(m1, 'pgscribe_up'), 1, "up: the primary's listener");

  const stats = await admin.json<{ connections: { sessions: number }; processes: unknown; completed: number; latency_ms: unknown }>('/stats');
  t.equal(stats.connections.sessions, 2);
  t.same(stats.processes, { configured: 2, up: 2 }, '/stats says how many processes serve');
  t.ok(stats.completed >= 20 && stats.latency_ms !== null, '/stats: completions and latency percentiles of both');
  const queries = await admin.json<{ queries: { query: string; calls: number; cacheHits: number }[] }>('/queries?sort=calls&limit=10');
  const digest = queries.queries.find((q) => q.query === 'select id from pr_rw where id = $1');
  t.match(digest, { calls: 20, cacheHits: 18 }, "/queries: one digest, the two processes' calls and hits added");
  const tables = await admin.json<{ tables: { table: string; reads: number; cacheHits: number }[] }>('/tables');
  t.match(tables.tables.find((x) => x.table === 'pr_rw'), { reads: 20, cacheHits: 18 }, '/tables: the table read in both processes, summed');
  t.equal((await admin.get('/health')).status, 200, '/health: every process up');

  const flush = await admin.get('/cache/flush', 'POST');
  t.equal(flush.status, 200, 'POST /cache/flush');
  await expectValue(t, a, read, '1', 'a after the flush');
  await expectValue(t, b, read, '1', 'b after the flush');
  const m2 = parseProm((await admin.get('/metrics')).text);
  t.equal(promValue(m2, 'pgscribe_cache_misses_total') - promValue(m1, 'pgscribe_cache_misses_total'), 2, "the flush emptied both processes' caches: two misses");

  // A stuck process: the admin answer says which one rather than a partial sum.
  const pid1 = await servingPid(p, 1);
  process.kill(pid1, 'SIGSTOP');
  try {
    const stuck = await admin.get('/metrics');
    t.equal(stuck.status, 500, 'a process that does not answer fails the request');
    t.match(stuck.text, /serving process 1 did not answer within 2000 ms/, 'and names it');
    const health = await admin.get('/health');
    t.equal(health.status, 503, '/health fails too: the process takes connections it cannot serve');
    t.match(JSON.parse(health.text), { reason: /serving process 1 did not answer/ }, 'naming it');
  } finally {
    process.kill(pid1, 'SIGCONT');
  }
  t.equal((await admin.get('/metrics')).status, 200, 'it answers again once it runs');

  // A dead process: /health fails (naming it) until its replacement is ready.
  const pid0 = await servingPid(p, 0);
  process.kill(pid0, 'SIGKILL');
  const down = await waitFor(
    async () => {
      const h = await admin.get('/health');
      return h.status === 503 ? h : undefined;
    },
    { timeoutMs: 5000, intervalMs: 5, timeout: () => '/health never failed while process 0 was down' },
  );
  t.match(JSON.parse(down.text), { status: 'unavailable', reason: /serving process 0 of 2 is not ready/ }, '/health: 503 naming the process');
  await p.waitStderr(/INFO serving process ready again process=0/, 10_000);
  t.equal((await admin.get('/health')).status, 200, '/health: 200 again once the new process is ready');
  const m3 = parseProm((await admin.get('/metrics')).text);
  t.equal(promValue(m3, 'pgscribe_processes_up'), 2);
  const exit = await p.stop('SIGTERM');
  t.same(exit, { code: 0, signal: null }, 'the admin server closes with the primary');
});

t.test('a process killed under pgbench: the clients in the other process finish with no failed transaction, new sessions succeed, the log stays whole', async (t) => {
  const p = await fx.launch(['--processes', '2']);
  const pid0 = await servingPid(p, 0);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-kill-pgbench-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const started = Date.now();
  const bench = run(
    PGBENCH,
    ['-n', '-S', '-M', 'extended', '-c', '4', '-j', '1', '-T', '6', '-l', '--log-prefix', path.join(dir, 'tx'), '-h', '127.0.0.1', '-p', String(p.port), '-U', 'postgres', 'postgres'],
    { timeoutMs: 60_000 },
  );
  const spread = await waitFor(
    async () => {
      const s = await sessionsByProcess(p, 2);
      return s.total === 4 ? s : undefined;
    },
    { timeoutMs: 10_000, intervalMs: 100, timeout: () => 'pgbench did not connect its 4 clients' },
  );
  t.same(spread.each, [2, 2], "two of pgbench's clients in each process");
  await sleep(1500);
  const killedAt = Date.now();
  process.kill(pid0, 'SIGKILL');
  const r = await bench;
  const aborted = [...r.stderr.matchAll(/client (\d+) aborted/g)].map((m) => Number(m[1]));
  t.equal(aborted.length, 2, `the two clients of the killed process abort, no other (${r.stderr.trim().split('\n').slice(0, 4).join(' | ')})`);
  t.match(r.stdout, /number of failed transactions: 0 \(0\.000%\)/, 'pgbench counts no failed transaction');
  // pgbench's transaction log: client, transaction number, latency in µs (or failed/skipped), script, epoch s, µs.
  const times = new Map<number, number[]>();
  let failed = 0;
  for (const f of fs.readdirSync(dir)) {
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      const m = /^(\d+) \d+ (\S+) \d+ (\d+) (\d+)/.exec(line);
      if (m === null) continue;
      if (!/^\d+$/.test(m[2]!)) failed++;
      const client = Number(m[1]);
      if (!times.has(client)) times.set(client, []);
      times.get(client)!.push(Number(m[3]) * 1000 + Number(m[4]) / 1000);
    }
  }
  t.equal(failed, 0, 'no transaction in the log failed');
  const survivors = [0, 1, 2, 3].filter((c) => !aborted.includes(c));
  t.equal(survivors.length, 2);
  for (const c of survivors) {
    const mine = times.get(c) ?? [];
    const after = mine.filter((x) => x > killedAt + 500).length;
    t.ok(after > 50, `client ${c}, in the other process, ran on after the kill (${after} transactions from 0.5 s after it)`);
    t.ok(Math.max(...mine) > started + 5000, `client ${c} ran to the end of the 6 s run`);
  }
  for (const c of aborted) t.ok(Math.max(...(times.get(c) ?? [0])) < killedAt + 500, `client ${c} stopped at the kill`);
  await p.waitStderr(/INFO serving process ready again process=0/, 10_000);
  for (let i = 0; i < 4; i++) await expectValue(t, await fx.session(p.port), 'select 8', '8', `new session ${i} after the restart`);
  const bad = p.logLines().filter((l) => !LOG_LINE.test(l));
  t.same(bad, [], 'the query log stays line-whole');
  const exit = await p.stop('SIGTERM');
  t.same(exit, { code: 0, signal: null });
});
