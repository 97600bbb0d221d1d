// pgscribe in front of PgBouncer in transaction mode (issue 19): client -> pgscribe -> PgBouncer
// -> PostgreSQL. PgBouncer runs with a pool of 2 server connections, so the 8 pgbench clients (and
// the cache scenarios' sessions) really share server connections: a session's next transaction
// may run on another backend.
//
// What is checked:
// - pgbench (-M simple and -M extended; -M prepared only where PgBouncer has
//   max_prepared_statements, 1.21+) through pgscribe: exit 0, no failed transaction, and the
//   query log holds exactly what pgbench sent, by kind (Q, P, B, E), every line whole; PostgreSQL's
//   own statement log agrees, and shows at most 2 backends serving the run.
// - The cache (--cache, catalog mode) keeps its promises behind transaction pooling: a write from
//   one session is seen by the next read of another; a read after a write in the same transaction
//   sees it; answers of sessions with different search_paths (role defaults, which PgBouncer keeps
//   apart in per-user pools, and SET LOCAL) never cross.
// Not asserted: session-level SET, temp tables and the like. Transaction pooling itself shares
// them between clients (a SET stays on the backend PgBouncer hands to the next client); the
// README's "Behind PgBouncer" says to keep them off.
//
// Skipped only where PgBouncer is not installed and CI is not set (CI installs it in .ci/run).
import t, { type Test as Tap } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startCluster, PG_BIN, USERS, type PgCluster } from '../harness/pg-cluster';
import { run, type RunResult } from '../harness/run';
import type { Proxy } from '../harness/proxy';
import { sleep, waitFor } from '../harness/time';
import { column, errorsIn, describeMessages, enc, type RawClient } from '../harness/wire';
import { unescapeText } from '../../src/log/format';
import { proxyFixture } from '../helpers/fixture';
import { CATALOG_ARGS } from '../helpers/cache';
import { findPgbouncer, hasMaxPreparedStatements, pgbouncerVersion, startPgbouncer, type Pgbouncer } from '../helpers/pgbouncer';

const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';
const inCi = process.env.CI === 'true';
const bin = findPgbouncer();
const version = bin === null ? null : pgbouncerVersion(bin);
const POOL_SIZE = 2;

/** Statements in pgbench's built-in TPC-B-like script: BEGIN, 3 UPDATEs, SELECT, INSERT, END. */
const TPCB_STATEMENTS = 7;
const CLIENTS = 8;
const TX_PER_CLIENT = 50;

const USER = USERS.trust.user;
/** Roles whose role default search_path names their own schema. */
const R1 = 'pgb_r1';
const R2 = 'pgb_r2';

t.test('behind PgBouncer (transaction pooling)', { skip: bin !== null || inCi ? false : 'pgbouncer not installed (apt-get install pgbouncer)' }, async (t) => {
  t.ok(bin !== null, 'pgbouncer is installed (CI installs it in .ci/run)');
  if (bin === null) return;
  t.comment(`PgBouncer ${version?.join('.') ?? '?'}: max_prepared_statements ${hasMaxPreparedStatements(version) ? 'yes' : 'no (before 1.21)'}`);

  const pg: PgCluster = await startCluster({
    conf: { log_min_duration_statement: '0', log_statement: 'none', log_line_prefix: '%m [%p] %a ' },
  });
  let bouncer: Pgbouncer | undefined;
  const fx = proxyFixture({ upstreamPort: () => bouncer!.port, user: USER });
  t.teardown(async () => {
    await fx.cleanup('SIGKILL');
    await bouncer?.stop();
    await pg.stop();
  });

  await pg.psql(
    [
      `CREATE SCHEMA s1; CREATE SCHEMA s2;`,
      `CREATE TABLE public.kv (id int PRIMARY KEY, v text); INSERT INTO public.kv VALUES (1, 'public');`,
      `CREATE TABLE s1.kv (id int PRIMARY KEY, v text); INSERT INTO s1.kv VALUES (1, 's1');`,
      `CREATE TABLE s2.kv (id int PRIMARY KEY, v text); INSERT INTO s2.kv VALUES (1, 's2');`,
      `CREATE TABLE counter (id int PRIMARY KEY, n int); INSERT INTO counter VALUES (1, 0);`,
      `CREATE ROLE ${R1} LOGIN; CREATE ROLE ${R2} LOGIN;`,
      `ALTER ROLE ${R1} SET search_path = s1, public; ALTER ROLE ${R2} SET search_path = s2, public;`,
      `GRANT USAGE ON SCHEMA s1, s2 TO PUBLIC;`,
      `GRANT SELECT ON public.kv, s1.kv, s2.kv TO PUBLIC; GRANT SELECT, UPDATE ON counter TO PUBLIC;`,
    ].join('\n'),
  );
  const init = await run(PGBENCH, ['-i', '-q', '-s', '1', '-h', pg.host, '-p', String(pg.port), '-U', 'postgres', 'postgres'], { timeoutMs: 120_000 });
  t.equal(init.code, 0, `pgbench -i straight against PostgreSQL${init.code === 0 ? '' : `: ${init.stderr.slice(-400)}`}`);

  bouncer = await startPgbouncer({
    upstreamPort: pg.port,
    poolMode: 'transaction',
    defaultPoolSize: POOL_SIZE,
    ...(hasMaxPreparedStatements(version) ? { maxPreparedStatements: 100 } : {}),
    users: ['postgres', USER, R1, R2],
  });

  const modes = hasMaxPreparedStatements(version) ? (['extended', 'simple', 'prepared'] as const) : (['extended', 'simple'] as const);
  /** Simple queries pgbench's setup connection sends (the branch count, the partition check), from the extended run. */
  let setupQueries: number | undefined;
  for (const mode of modes) {
    await t.test(`pgbench -M ${mode} -c ${CLIENTS} -j 2 -t ${TX_PER_CLIENT} through pgscribe and PgBouncer`, async (t) => {
      const r = await pgbenchThrough(t, fx, pg, mode);
      t.equal(r.result.code, 0, `pgbench exits 0${r.result.code === 0 ? '' : `: ${r.result.stderr.slice(-600)}`}`);
      t.match(r.result.stdout, `query mode: ${mode}`);
      const done = /number of transactions actually processed: (\d+)\/(\d+)/.exec(r.result.stdout);
      t.same(done && [Number(done[1]), Number(done[2])], [CLIENTS * TX_PER_CLIENT, CLIENTS * TX_PER_CLIENT], 'every transaction processed');
      const failed = /number of failed transactions: (\d+)/.exec(r.result.stdout);
      t.equal(failed?.[1], '0', 'number of failed transactions: 0');

      const c = r.log.counts;
      t.same(r.log.bad, [], 'every query log line is whole and well formed');
      t.ok(r.logEndsWithNewline, 'the log ends with a newline (no torn last line)');
      const statements = CLIENTS * TX_PER_CLIENT * TPCB_STATEMENTS;
      t.equal(r.log.script, statements, `${statements} script statements in the query log (${CLIENTS * TX_PER_CLIENT} transactions x ${TPCB_STATEMENTS})`);
      switch (mode) {
        case 'simple':
          t.equal(c.P + c.B + c.E, 0, 'no extended-protocol lines');
          t.equal(c.Q, statements + (setupQueries ?? NaN), `Q = ${statements} + the ${setupQueries} setup queries`);
          break;
        case 'extended':
          t.equal(c.P, statements, `P = ${statements}: one unnamed Parse per statement`);
          t.equal(c.B, statements, `B = ${statements}`);
          t.equal(c.E, statements, `E = ${statements}`);
          break;
        case 'prepared':
          t.equal(c.P, CLIENTS * TPCB_STATEMENTS, 'each client prepares each statement once');
          t.equal(c.B, statements, `B = ${statements}`);
          t.equal(c.E, statements, `E = ${statements}`);
          break;
      }
      if (mode === 'extended') setupQueries = c.Q;
      else if (mode === 'prepared') t.equal(c.Q, setupQueries, `Q = ${setupQueries}: only pgbench's setup queries`);
      t.equal(r.log.conns.size, CLIENTS + 1, `${CLIENTS + 1} client sessions in the log (pgbench's ${CLIENTS} plus its setup connection)`);

      // PostgreSQL's own count of what it executed for this run agrees, through at most POOL_SIZE backends.
      const server = await settledServerTally(pg, r.app);
      t.same(server.errors, [], 'the server logged no error for this run');
      const kinds = { Q: 'statement', P: 'parse', B: 'bind', E: 'execute' } as const;
      for (const k of ['Q', 'P', 'B', 'E'] as const) {
        if (k === 'P' && mode === 'prepared') {
          // PgBouncer 1.21+ parses a client's statement again on each backend that lacks it.
          t.ok(server.counts.P >= c.P, `"parse" lines in the server log (${server.counts.P}) >= P lines (${c.P})`);
        } else t.equal(c[k], server.counts[k], `${k} lines = "${kinds[k]}" lines in the server log (${server.counts[k]})`);
      }
      t.ok(server.pids.size <= POOL_SIZE, `${r.log.conns.size} client sessions ran on ${server.pids.size} server backends (pool of ${POOL_SIZE})`);
      t.notMatch(r.stderr, /\bERROR\b|\bWARN\b|internal error|protocol violation/, 'the proxy reported no problems');
    });
  }
  if (!hasMaxPreparedStatements(version)) {
    t.comment(`pgbench -M prepared not run: PgBouncer ${version?.join('.') ?? '?'} has no max_prepared_statements (1.21+), and named statements do not survive transaction pooling without it`);
  }

  await t.test('the cache behind transaction pooling', async (t) => {
    const p = await fx.launch(['--cache', '--cache-ttl', '60000', ...CATALOG_ARGS]);
    t.teardown(() => fx.stopProxy(p));
    await cacheScenarios(t, fx, p);
  });
});

interface LogTally {
  counts: Record<'Q' | 'P' | 'B' | 'E', number>;
  /** Lines whose SQL is one of the script's statements (Q lines in simple mode, E lines otherwise). */
  script: number;
  conns: Set<number>;
  bad: string[];
}

/** "<ts> conn=N user@db host:port KIND [stmt=..] [portal=..] [params=...] [cache=..] [flight=..] sql=..." (README, "The query log") */
const LINE = /^\S+Z conn=(\d+) \S+@\S+ 127\.0\.0\.1:\d+ ([QPBE])( stmt=\S+)?( portal=\S+)?( params=.*?)?( cache=\S+)?( flight=\S+)? sql=(.*)$/;
const SCRIPT_SQL = /^(BEGIN|END|UPDATE pgbench_(accounts|tellers|branches) SET|SELECT abalance FROM pgbench_accounts|INSERT INTO pgbench_history)/;

function tallyLog(lines: string[], mode: string): LogTally {
  const out: LogTally = { counts: { Q: 0, P: 0, B: 0, E: 0 }, script: 0, conns: new Set(), bad: [] };
  for (const l of lines) {
    const m = LINE.exec(l);
    if (!m) {
      out.bad.push(l);
      continue;
    }
    const kind = m[2] as 'Q' | 'P' | 'B' | 'E';
    out.counts[kind]++;
    out.conns.add(Number(m[1]));
    if ((mode === 'simple' ? kind === 'Q' : kind === 'E') && SCRIPT_SQL.test(unescapeText(m[8]!).trim())) out.script++;
  }
  return out;
}

let runSeq = 0;

async function pgbenchThrough(
  t: Tap,
  fx: ReturnType<typeof proxyFixture>,
  pg: PgCluster,
  mode: string,
): Promise<{ result: RunResult; log: LogTally; logEndsWithNewline: boolean; app: string; stderr: string }> {
  const p = await fx.launch([]);
  const app = `pgb_${process.pid}_${++runSeq}`;
  const env = { ...pg.env(), PGHOST: p.host, PGPORT: String(p.port), PGAPPNAME: app };
  const result = await run(PGBENCH, ['-n', '-c', String(CLIENTS), '-j', '2', '-t', String(TX_PER_CLIENT), '-M', mode], { env, timeoutMs: 120_000 });
  await fx.stopProxy(p);
  t.same(p.exit, { code: 0, signal: null }, 'pgscribe shut down cleanly after the run (its log flushed)');
  const text = fs.readFileSync(p.logPath, 'utf8');
  return { result, log: tallyLog(p.logLines(), mode), logEndsWithNewline: text.endsWith('\n'), app, stderr: p.stderr() };
}

const RECORD_START = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+ \[(\d+)\] (\S*) ([A-Z]+):  /;
const DURATION = /^duration: \d+\.\d+ ms {2}(statement|parse|bind|execute)(?: [^:]*?)?: /;
const SERVER_KIND = { statement: 'Q', parse: 'P', bind: 'B', execute: 'E' } as const;

function serverTally(pg: PgCluster, app: string): { counts: Record<'Q' | 'P' | 'B' | 'E', number>; errors: string[]; pids: Set<number> } {
  const counts = { Q: 0, P: 0, B: 0, E: 0 };
  const errors: string[] = [];
  const pids = new Set<number>();
  for (const line of fs.readFileSync(pg.logFile, 'utf8').split('\n')) {
    const m = RECORD_START.exec(line);
    if (!m || m[2] !== app) continue;
    const text = line.slice(m[0].length);
    if (m[3] === 'ERROR' || m[3] === 'FATAL') errors.push(text);
    const d = DURATION.exec(text);
    if (m[3] !== 'LOG' || !d) continue;
    // PgBouncer's own SET application_name when it hands a backend to another client.
    if (d[1] === 'statement' && /^SET application_name/i.test(text.slice(d[0].length))) continue;
    pids.add(Number(m[1]));
    counts[SERVER_KIND[d[1] as keyof typeof SERVER_KIND]]++;
  }
  return { counts, errors, pids };
}

async function settledServerTally(pg: PgCluster, app: string): Promise<ReturnType<typeof serverTally>> {
  let prev = '';
  for (let i = 0; i < 50; i++) {
    const s = serverTally(pg, app);
    const sig = JSON.stringify(s.counts);
    if (sig === prev) return s;
    prev = sig;
    await sleep(150);
  }
  return serverTally(pg, app);
}

async function val(c: RawClient, sql: string): Promise<string | null> {
  const r = await c.query(sql, 30_000);
  if (errorsIn(r).length > 0) throw new Error(`${sql}: ${describeMessages(r)}`);
  return column(r)[0] ?? null;
}

/** The cache= field of the nth query log line of `sql` ('relayed' when it has none), once it is written. */
async function cacheOf(p: Proxy, sql: string, nth: number): Promise<string> {
  const line = await waitFor(() => p.logLines().filter((l) => l.endsWith(` sql=${sql}`))[nth - 1], {
    timeoutMs: 10000,
    timeout: () => `line ${nth} of ${sql} did not reach the log`,
  });
  return / cache=(\S+)/.exec(line)?.[1] ?? 'relayed';
}

async function sessionAs(fx: ReturnType<typeof proxyFixture>, port: number, user: string): Promise<RawClient> {
  const c = await fx.connect(port);
  const r = await c.startup(user);
  if (r[r.length - 1]?.type !== 'Z') throw new Error(`startup as ${user}: ${describeMessages(r)}`);
  return c;
}

const READ_N = 'SELECT n FROM counter WHERE id = 1';
const READ_KV = 'SELECT v FROM kv WHERE id = 1';

async function cacheScenarios(t: Tap, fx: ReturnType<typeof proxyFixture>, p: Proxy): Promise<void> {
  await t.test('a write from one session is seen by the next read of another', async (t) => {
    const a = await sessionAs(fx, p.port, USER);
    const b = await sessionAs(fx, p.port, USER);
    t.equal(await val(b, READ_N), '0', 'b reads 0');
    t.equal(await val(b, READ_N), '0', 'b reads 0 again');
    t.equal(await cacheOf(p, READ_N, 2), 'hit', "b's second read is answered from the cache");
    t.equal(await val(a, 'UPDATE counter SET n = n + 1 WHERE id = 1 RETURNING n'), '1', 'a commits n = 1');
    t.equal(await val(b, READ_N), '1', 'b reads 1 right after, not the cached 0');
    const c = await sessionAs(fx, p.port, USER);
    t.equal(await val(c, READ_N), '1', 'a new session reads 1');
  });

  await t.test('a read in a transaction after a write in it sees the write; others see the commit, not before', async (t) => {
    const a = await sessionAs(fx, p.port, USER);
    const b = await sessionAs(fx, p.port, USER);
    t.equal(await val(b, READ_N), '1', 'b reads 1');
    await val(a, 'BEGIN');
    await val(a, 'UPDATE counter SET n = n + 1 WHERE id = 1');
    t.equal(await val(a, READ_N), '2', 'a reads its own write (2) inside its transaction');
    t.equal(await val(b, READ_N), '1', 'b still reads the committed 1 (a holds one backend, b runs on the other)');
    await val(a, 'COMMIT');
    t.equal(await val(b, READ_N), '2', 'b reads 2 right after the COMMIT');
    await val(a, 'BEGIN');
    await val(a, 'UPDATE counter SET n = n + 100 WHERE id = 1');
    t.equal(await val(a, READ_N), '102', 'a reads 102 inside a second transaction');
    await val(a, 'ROLLBACK');
    t.equal(await val(a, READ_N), '2', 'after ROLLBACK a reads 2');
    t.equal(await val(b, READ_N), '2', 'and so does b');
  });

  await t.test('role default search_paths: each role gets its own schema, twice, the second from the cache', async (t) => {
    for (const [user, want] of [[R1, 's1'], [R2, 's2'], [USER, 'public']] as const) {
      for (let i = 0; i < 2; i++) {
        const c = await sessionAs(fx, p.port, user);
        t.equal(await val(c, READ_KV), want, `${user} read ${i + 1}: ${want}`);
        c.sock.destroy();
      }
    }
    const lines = await waitFor(
      () => {
        const l = p.logLines().filter((x) => x.endsWith(` sql=${READ_KV}`));
        return l.length >= 6 ? l : undefined;
      },
      { timeoutMs: 10000, timeout: () => 'the 6 read lines did not reach the log' },
    );
    t.same(
      lines.map((l) => / cache=(\S+)/.exec(l)?.[1] ?? 'relayed'),
      ['miss', 'hit', 'miss', 'hit', 'miss', 'hit'],
      'each role: a miss, then a hit of its own answer',
    );
  });

  await t.test('SET LOCAL search_path inside a transaction neither leaks nor is served', async (t) => {
    const a = await sessionAs(fx, p.port, USER);
    await val(a, 'BEGIN');
    await val(a, 'SET LOCAL search_path = s2');
    t.equal(await val(a, READ_KV), 's2', 'inside the transaction: s2');
    await val(a, 'COMMIT');
    t.equal(await val(a, READ_KV), 'public', 'after COMMIT: public again');
    const b = await sessionAs(fx, p.port, USER);
    t.equal(await val(b, READ_KV), 'public', 'another session: public');
  });

  // Named statements of the same name in two sessions: without max_prepared_statements (before
  // 1.21) PgBouncer itself mixes them up (the second Parse fails with 42P05 "already exists" on
  // the shared backend and the Bind runs the other client's statement), so this runs on 1.21+ only.
  await t.test(
    'same-named prepared statements in two sessions get their own answers',
    { skip: hasMaxPreparedStatements(version) ? false : `PgBouncer ${version?.join('.') ?? '?'} has no max_prepared_statements (1.21+)` },
    async (t) => {
      const a = await sessionAs(fx, p.port, USER);
      const b = await sessionAs(fx, p.port, USER);
      const unit = (sql: string | null): Buffer =>
        Buffer.concat([...(sql === null ? [] : [enc.parse('s', sql)]), enc.bind('', 's', []), enc.describe('P', ''), enc.execute(''), enc.sync()]);
      for (let round = 1; round <= 3; round++) {
        a.write(unit(round === 1 ? 'SELECT v FROM s1.kv WHERE id = 1' : null));
        const ra = await a.readZ(1, 10000);
        b.write(unit(round === 1 ? 'SELECT v FROM s2.kv WHERE id = 1' : null));
        const rb = await b.readZ(1, 10000);
        t.same([column(ra)[0], errorsIn(ra)], ['s1', []], `round ${round}: a's "s" answers s1`);
        t.same([column(rb)[0], errorsIn(rb)], ['s2', []], `round ${round}: b's "s" answers s2`);
      }
    },
  );
}
