// Issue 18 part 5 with the real proxy (dist/main.js) in front of a real PostgreSQL: per-user and
// per-database session limits (53300 in PostgreSQL's words, a slot freed is free, with
// --processes 2 one count over both processes), and query rate limits: a raw client sees its
// queries delayed in order and refused with 53400 (simple Query alone and pipelined, and an
// Execute, the session staying usable), pgbench of a limited user runs near the rate and is
// refused past the bound while another user's pgbench at the same time runs unlimited, and the
// /metrics counters move by exactly the refusals the clients saw.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PG_BIN, startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { proxyFixture } from '../helpers/fixture';
import { enc, errorsIn, type BackendMessage, type RawClient } from '../harness/wire';
import { run, type RunResult } from '../harness/run';
import { sleep } from '../harness/time';
import type { Proxy } from '../harness/proxy';
import { parseProm, value as promValue } from '../helpers/prom';

const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';
const DB = 'limdb';

let pg: PgCluster;
const fx = proxyFixture({ upstreamPort: () => pg.port, user: USERS.trust.user });
let script = '';

t.before(async () => {
  pg = await startCluster();
  for (const role of ['flood', 'calm', 'alice', 'bob']) await pg.psql(`create role ${role} login`);
  await pg.psql(`create database ${DB}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-limits-'));
  script = path.join(dir, 'select.sql');
  fs.writeFileSync(script, 'select 1;\n');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
});

t.teardown(async () => {
  await fx.cleanup('SIGKILL');
  await pg?.stop();
});

/** The admin server of a proxy started with --admin 127.0.0.1:0: its /metrics, parsed. */
async function metricsOf(p: Proxy): Promise<(name: string) => number> {
  const line = await p.waitStderr(/admin server listening admin=http:\/\/127\.0\.0\.1:(\d+)\//);
  const port = /:(\d+)\//.exec(line.slice(line.indexOf('admin=')))![1];
  const r = await fetch(`http://127.0.0.1:${port}/metrics`);
  const m = parseProm(await r.text());
  return (name) => promValue(m, name);
}

/** A session of `user` on `database`: its startup messages (through ReadyForQuery, or the error). */
async function start(p: Proxy, user: string, database = 'postgres', extra: Record<string, string> = {}): Promise<{ c: RawClient; msgs: BackendMessage[] }> {
  const c = await fx.connect(p.port);
  // Refused: the error comes and the connection closes, before any ReadyForQuery.
  return { c, msgs: await c.startup(user, database, extra) };
}

const ready = (msgs: BackendMessage[]) => msgs.length > 0 && msgs[msgs.length - 1]!.type === 'Z';

/** Retry a start while the slot a closed session held comes back (its close is asynchronous). */
async function startWhenFree(p: Proxy, user: string, database = 'postgres'): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    const s = await start(p, user, database);
    if (ready(s.msgs)) return true;
    s.c.sock.destroy();
    await sleep(50);
  }
  return false;
}

t.test('max-user-connections: the third session of a user gets 53300 naming the role; others still connect; a slot freed is free', async (t) => {
  const p = await fx.launch(['--max-user-connections', '2', '--admin', '127.0.0.1:0']);
  const a = await start(p, 'alice');
  const b = await start(p, 'alice', DB);
  t.ok(ready(a.msgs) && ready(b.msgs), 'two sessions of alice (in two databases)');
  const third = await start(p, 'alice');
  const err = errorsIn(third.msgs)[0];
  t.equal(err?.C, '53300', 'the third is refused with 53300');
  t.equal(err?.S, 'FATAL');
  t.equal(err?.M, 'pgscribe: too many connections for role "alice" (max-user-connections is 2)', 'in PostgreSQL\'s words, naming the limit');
  t.ok(ready((await start(p, 'bob')).msgs), 'bob still connects');
  t.ok(ready((await start(p, USERS.trust.user)).msgs), 'and another user too');
  a.c.sock.destroy();
  t.ok(await startWhenFree(p, 'alice'), 'once one of alice\'s sessions ends, a new one connects');
  t.notOk(ready((await start(p, 'alice')).msgs), 'and alice is at her limit again');
  const m = await metricsOf(p);
  t.equal(m('pgscribe_connections_refused_user_limit_total'), 2, 'both refusals are counted');
  t.equal(m('pgscribe_connections_refused_db_limit_total'), 0);
  t.match(p.stderr(), /WARN per-user connection limit reached; refusing client with 53300 conn=\d+ client=\S+ user=alice max_user_connections=2/);
});

t.test('max-db-connections: the third session of a database gets 53300 naming the database, whoever the user', async (t) => {
  const p = await fx.launch(['--max-db-connections', '2', '--admin', '127.0.0.1:0']);
  const a = await start(p, 'alice', DB);
  const b = await start(p, 'bob', DB);
  t.ok(ready(a.msgs) && ready(b.msgs), 'two sessions on limdb, of two users');
  const third = await start(p, 'calm', DB);
  t.equal(errorsIn(third.msgs)[0]?.C, '53300');
  t.equal(errorsIn(third.msgs)[0]?.M, `pgscribe: too many connections for database "${DB}" (max-db-connections is 2)`);
  t.ok(ready((await start(p, 'calm', 'postgres')).msgs), 'another database still takes sessions');
  // A StartupMessage without database: PostgreSQL's default, the user's name, is what counts.
  b.c.sock.destroy();
  t.ok(await startWhenFree(p, 'calm', DB), 'once one ends, a new one connects');
  const m = await metricsOf(p);
  t.equal(m('pgscribe_connections_refused_db_limit_total'), 1);
  t.equal(m('pgscribe_connections_refused_user_limit_total'), 0);
});

t.test('--processes 2: the per-user limit is one count over both processes', async (t) => {
  const p = await fx.launch(['--processes', '2', '--max-user-connections', '2', '--admin', '127.0.0.1:0']);
  const a = await start(p, 'alice');
  const b = await start(p, 'alice');
  t.ok(ready(a.msgs) && ready(b.msgs), 'two sessions of alice');
  // The primary hands each new connection to the process with fewer: one session in each.
  const third = await start(p, 'alice');
  t.equal(errorsIn(third.msgs)[0]?.C, '53300', 'the third is refused, although each process holds only one');
  t.match(errorsIn(third.msgs)[0]?.M, /too many connections for role "alice"/);
  t.ok(ready((await start(p, 'bob')).msgs), 'bob still connects');
  a.c.sock.destroy();
  t.ok(await startWhenFree(p, 'alice'), 'a slot freed in either process is free');
  t.notOk(ready((await start(p, 'alice')).msgs), 'and alice is at her limit again');
  const m = await metricsOf(p);
  t.equal(m('pgscribe_connections_refused_user_limit_total'), 2, 'the refusals, summed over the processes');
});

/** The query log lines matching re, once there are `want` of them (the log is written asynchronously), or what there is after 10 s. */
async function logLinesMatching(p: Proxy, re: RegExp, want: number): Promise<string[]> {
  let lines: string[] = [];
  for (let i = 0; i < 200; i++) {
    lines = p.logLines().filter((l) => re.test(l));
    if (lines.length >= want) break;
    await sleep(50);
  }
  await sleep(200); // none beyond `want` arrives late
  return p.logLines().filter((l) => re.test(l));
}

/** The messages up to the n-th ReadyForQuery, as type letters. */
function types(msgs: BackendMessage[]): string {
  return msgs.map((m) => m.type).join('');
}

/** pgbench of `user` through the proxy, select-only script. */
function pgbench(p: Proxy, user: string, args: string[]): Promise<RunResult> {
  const env = { ...pg.env(user), PGHOST: p.host, PGPORT: String(p.port), PGDATABASE: 'postgres' };
  return run(PGBENCH, ['-n', '-f', script, ...args], { env, timeoutMs: 60_000 });
}

/** Transactions pgbench says it processed. */
function processed(r: RunResult): number {
  const m = /number of transactions actually processed: (\d+)/.exec(r.stdout);
  return m === null ? NaN : Number(m[1]);
}

/** The 53400s pgbench saw: each client that gets one stops there (pgbench aborts a client on any other error than a serialization or deadlock failure). */
function refusalsIn(r: RunResult): number {
  return [...r.stderr.matchAll(/aborted in command \d+ query \d+: ERROR:\s+pgscribe: rate limit exceeded/g)].length;
}

t.test('rate limits: delayed in order, refused with 53400 past the bound, the session usable; pgbench bounded, another user unlimited; exact counters', async (t) => {
  const p = await fx.launch([
    '--admin', '127.0.0.1:0',
    '--rate-limits', 'user=flood,qps=20,burst=5;application_name=pacer,qps=1,burst=1',
    '--rate-limit-max-delay-ms', '300',
  ]);
  let refusedSeen = 0;

  // A raw client at 1 query a second, burst 1: a token every 1000 ms (wide margins around the 300 ms bound).
  const { c, msgs } = await start(p, USERS.trust.user, 'postgres', { application_name: 'pacer' });
  t.ok(ready(msgs), 'the paced session starts');
  const sentFirst = performance.now();
  t.same(errorsIn(await c.query('select 1')), [], 'the first query goes at once (the burst)');
  const refused = await c.query('select 2');
  const e = errorsIn(refused)[0];
  t.equal(e?.C, '53400', 'the next one would wait 1000 ms, past 300: 53400');
  t.equal(e?.S, 'ERROR', 'an ERROR, not FATAL');
  t.equal(e?.M, 'pgscribe: rate limit exceeded: rate-limits rule 1 (application_name=pacer) allows 1 queries per second; this query would have waited more than 300 ms (rate-limit-max-delay-ms)', 'naming the rule and the rate');
  t.equal(types(refused), 'EZ', 'answered ErrorResponse, ReadyForQuery');
  refusedSeen++;
  await sleep(750);
  const delayed = await c.query('select 3');
  const since = performance.now() - sentFirst;
  t.same(errorsIn(delayed), [], 'the session is usable: 750 ms later the next query is delayed (by about 250 ms), not refused');
  t.ok(since >= 950, `it ran once its token was earned, 1000 ms after the first query's (timers may fire a little early) (${since.toFixed(0)} ms)`);

  // An Execute over the rate (its token is 1000 ms away again): Parse and Bind ran, the Execute
  // is refused, the Sync answers.
  c.write(Buffer.concat([enc.parse('', 'select 4'), enc.bind('', '', []), enc.execute(), enc.sync()]));
  const ext = await c.readZ(1);
  t.equal(types(ext), '12EZ', 'ParseComplete, BindComplete, the 53400, ReadyForQuery');
  t.equal(errorsIn(ext)[0]?.C, '53400');
  refusedSeen++;

  // Pipelined: three Queries in one write after the bucket is full again; the first goes, the
  // two others are refused in order, each answered in its place.
  await sleep(1100);
  c.write(Buffer.concat([enc.query('select 5'), enc.query('select 6'), enc.query('select 7')]));
  const piped = await c.readZ(3);
  t.equal(types(piped).replace(/[T]/g, ''), 'DCZEZEZ', 'the first answered, then two 53400s, each before its own ReadyForQuery');
  refusedSeen += errorsIn(piped).filter((x) => x.C === '53400').length;
  t.equal(errorsIn(piped).length, 2);
  await sleep(1100);
  t.same(errorsIn(await c.query('select 8')), [], 'and the session still works');
  c.sock.destroy();

  // pgbench: flood (20 q/s, burst 5) with more clients than the bound can queue, and calm at the
  // same time, unlimited.
  for (const mode of ['simple', 'extended']) {
    const [flood, calm] = await Promise.all([pgbench(p, 'flood', ['-M', mode, '-c', '10', '-T', '3']), pgbench(p, 'calm', ['-M', mode, '-c', '2', '-T', '3'])]);
    const floodDone = processed(flood);
    const floodRefused = refusalsIn(flood);
    refusedSeen += floodRefused;
    t.ok(floodDone > 20, `flood -M ${mode}: ${floodDone} transactions went through`);
    t.ok(floodDone <= 5 + 20 * 4, `flood -M ${mode}: ${floodDone} transactions, within burst + rate x (3 s + the last delays)`);
    t.ok(floodRefused >= 1, `flood -M ${mode}: ${floodRefused} clients were refused with 53400 (10 clients queue past 300 ms at 20/s)`);
    t.notMatch(flood.stderr.replace(/.*rate limit exceeded.*\n?/g, ''), /ERROR/, `flood -M ${mode}: no other errors`);
    t.equal(calm.code, 0, `calm -M ${mode}: pgbench exits 0: ${calm.stderr}`);
    t.equal(refusalsIn(calm), 0, `calm -M ${mode}: never refused`);
    t.ok(processed(calm) > 20 * 3 * 5, `calm -M ${mode}: ${processed(calm)} transactions, far more than flood's rate allows`);
  }

  const m = await metricsOf(p);
  t.equal(m('pgscribe_rate_limit_refused_total'), refusedSeen, `the refusals counter equals the 53400s the clients saw (${refusedSeen})`);
  t.ok(m('pgscribe_rate_limit_delayed_total') >= 1, `queries were delayed (${m('pgscribe_rate_limit_delayed_total')})`);
  t.ok(m('pgscribe_rate_limit_delay_ms_total') >= 100, `for ${m('pgscribe_rate_limit_delay_ms_total')} ms in all`);
  t.match(p.stderr(), /WARN query over its rate limit refused with 53400: it would have waited more than rate-limit-max-delay-ms rule="?rate-limits rule 1/);
  const refusedLines = await logLinesMatching(p, / refused=rate-limit /, refusedSeen);
  t.equal(refusedLines.length, refusedSeen, 'each refused query has its query log line, marked refused=rate-limit');
  t.ok(refusedLines.some((l) => / Q refused=rate-limit sql=select 2$/.test(l)), 'the paced session\'s refused Query among them');
  t.ok(refusedLines.some((l) => / E refused=rate-limit sql=select 4$/.test(l)), 'and its refused Execute');
});

t.test('rate limits with --cache --singleflight: a Query is refused in order; an Execute the cache holds a batch for is delayed by the bound instead; the session stays usable', async (t) => {
  const p = await fx.launch(['--admin', '127.0.0.1:0', '--cache', '--singleflight', '--rate-limits', 'application_name=pacer,qps=1', '--rate-limit-max-delay-ms', '300']);
  const { c, msgs } = await start(p, USERS.trust.user, 'postgres', { application_name: 'pacer' });
  t.ok(ready(msgs));
  t.same(errorsIn(await c.query('select 1')), []);
  const refused = await c.query('select 2');
  t.equal(types(refused), 'EZ', 'the Query over the rate: 53400 and ReadyForQuery, the cache bypassed');
  t.equal(errorsIn(refused)[0]?.C, '53400');
  const sent = performance.now();
  c.write(Buffer.concat([enc.parse('', 'select 3'), enc.bind('', '', []), enc.execute(), enc.sync()]));
  const ext = await c.readZ(1);
  const took = performance.now() - sent;
  t.same(errorsIn(ext), [], 'the Execute inside the batch the cache gathers is not refused');
  t.equal(types(ext), '12DCZ', 'it is answered in full, in order');
  t.ok(took >= 250, `after waiting the bound (${took.toFixed(0)} ms; 300 by the setting)`);
  await sleep(1100);
  t.same(errorsIn(await c.query('select 4')), [], 'the session still works');
  const m = await metricsOf(p);
  t.equal(m('pgscribe_rate_limit_refused_total'), 1, 'one refusal, the one the client saw');
  t.equal(m('pgscribe_rate_limit_delayed_total'), 1, 'one delay');
  t.equal((await logLinesMatching(p, / refused=rate-limit /, 1)).length, 1, 'one line marked refused in the query log');
});
