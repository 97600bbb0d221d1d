// Real pgbench through pgscribe, with exact accounting of the query log against PostgreSQL's own
// statement log.
//
// The cluster runs with log_min_duration_statement = 0, so the server logs one line per query
// message it executed:
//   simple Query      -> "duration: X ms  statement: <sql>"
//   Parse             -> "duration: X ms  parse <stmt>: <sql>"        (<unnamed> for '')
//   Bind              -> "duration: X ms  bind <stmt>[/<portal>]: <sql>"
//   Execute           -> "duration: X ms  execute <stmt>[/<portal>]: <sql>"
// Each pgbench run gets a fresh proxy (so its query log holds exactly that run, flushed by a clean
// shutdown) and a unique application_name (PGAPPNAME, %a in log_line_prefix) to pick its server
// lines. The counts must match per type: Q = statement, P = parse, B = bind, E = execute, and so
// must the SQL (and statement names) behind them.
//
// Where the server would NOT log a message (so the relationship is not equality): a Query, Parse,
// Bind or Execute that fails with an ERROR is not logged as "duration: ..." (the error ends the
// message before the duration is logged; it appears as ERROR + STATEMENT instead), and messages
// skipped by the server while it discards input up to Sync after an error are not logged at all.
// pgbench runs without failures here, which the test checks (no ERROR lines for the run's
// application_name), so equality is the right assertion.

import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCluster, PG_BIN, type PgCluster } from '../harness/pg-cluster';
import { run, type RunResult } from '../harness/run';
import { startProxy, type Proxy } from '../harness/proxy';
import { unescapeText } from '../../src/log/format';
import { sleep } from '../harness/time';

const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';

/** Statements in pgbench's built-in TPC-B-like script: BEGIN, 3 UPDATEs, SELECT, INSERT, END. */
const TPCB_STATEMENTS = 7;

let pg: PgCluster;

t.before(async () => {
  pg = await startCluster({
    conf: { log_min_duration_statement: '0', log_statement: 'none', log_line_prefix: '%m [%p] %a ' },
  });
});
t.teardown(async () => {
  if (pg) await pg.stop();
});

type QType = 'Q' | 'P' | 'B' | 'E';
const TYPES: QType[] = ['Q', 'P', 'B', 'E'];
const SERVER_KIND: Record<string, QType> = { statement: 'Q', parse: 'P', bind: 'B', execute: 'E' };

interface Tally {
  counts: Record<QType, number>;
  /** "<type> <statement name> <sql>" -> how many times. */
  keys: Map<string, number>;
}

function emptyTally(): Tally {
  return { counts: { Q: 0, P: 0, B: 0, E: 0 }, keys: new Map() };
}

function add(tally: Tally, type: QType, name: string, sql: string): void {
  tally.counts[type]++;
  const k = `${type} ${name} ${sql}`;
  tally.keys.set(k, (tally.keys.get(k) ?? 0) + 1);
}


/** "<ts> conn=N user@db host:port TYPE [stmt=..] [portal=..] [params=...] sql=..." */
const PROXY_LINE = /^\S+Z conn=(\d+) \S+@\S+ 127\.0\.0\.1:\d+ ([QPBE])( stmt=(\S+))?( portal=\S+)?( params=.*?)? sql=(.*)$/;

function tallyProxy(lines: string[]): { tally: Tally; bad: string[]; conns: Set<number> } {
  const tally = emptyTally();
  const bad: string[] = [];
  const conns = new Set<number>();
  for (const l of lines) {
    const m = PROXY_LINE.exec(l);
    if (!m) {
      bad.push(l);
      continue;
    }
    conns.add(Number(m[1]));
    const type = m[2] as QType;
    let name = m[4] ?? '';
    if (name.startsWith('"')) name = JSON.parse(name) as string;
    add(tally, type, type === 'Q' ? '' : name, unescapeText(m[7]!));
  }
  return { tally, bad, conns };
}

/** Start of a server log record with prefix '%m [%p] %a '. */
const RECORD_START = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+ \[(\d+)\] (\S*) ([A-Z]+):  /;

interface ServerRecord {
  pid: number;
  app: string;
  level: string;
  text: string;
}

/** Split the server log into records; continuation lines (a message's own newlines) start with a tab. */
function serverRecords(): ServerRecord[] {
  const out: ServerRecord[] = [];
  for (const line of fs.readFileSync(pg.logFile, 'utf8').split('\n')) {
    const m = RECORD_START.exec(line);
    if (m) out.push({ pid: Number(m[1]), app: m[2]!, level: m[3]!, text: line.slice(m[0].length) });
    else if (out.length > 0 && line !== '') out[out.length - 1]!.text += '\n' + line.replace(/^\t/, '');
  }
  return out;
}

const DURATION = /^duration: \d+\.\d+ ms {2}(statement|parse|bind|execute)(?: ([^:]*?))?: ([\s\S]*)$/;

function tallyServer(app: string): { tally: Tally; errors: string[]; other: string[]; pids: Set<number> } {
  const tally = emptyTally();
  const errors: string[] = [];
  const other: string[] = [];
  const pids = new Set<number>();
  for (const r of serverRecords()) {
    if (r.app !== app) continue;
    pids.add(r.pid);
    if (r.level === 'ERROR' || r.level === 'FATAL' || r.level === 'PANIC') errors.push(r.text);
    if (r.level !== 'LOG') continue;
    const m = DURATION.exec(r.text);
    if (!m) {
      if (r.text.startsWith('duration:')) other.push(r.text);
      continue;
    }
    const type = SERVER_KIND[m[1]!]!;
    let name = m[2] ?? '';
    if (name === '<unnamed>') name = '';
    // "bind S/P" and "execute S/P" name the portal too; pgbench only uses the unnamed portal.
    if (type === 'Q') name = '';
    add(tally, type, name, m[3]!);
  }
  return { tally, errors, other, pids };
}

/** Read the server's lines for `app` until they stop changing (backends write them as they go). */
async function settledServerTally(app: string): Promise<ReturnType<typeof tallyServer>> {
  let prev = '';
  for (let i = 0; i < 50; i++) {
    const s = tallyServer(app);
    const sig = JSON.stringify(s.tally.counts);
    if (sig === prev) return s;
    prev = sig;
    await sleep(150);
  }
  return tallyServer(app);
}

function keyDiff(a: Map<string, number>, b: Map<string, number>): string[] {
  const out: string[] = [];
  for (const k of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(k) ?? 0;
    const y = b.get(k) ?? 0;
    if (x !== y) out.push(`${x} in the query log vs ${y} in the server log: ${k.slice(0, 200)}`);
  }
  return out.slice(0, 20);
}

interface BenchRun {
  result: RunResult;
  app: string;
  proxyLog: ReturnType<typeof tallyProxy>;
  server: ReturnType<typeof tallyServer>;
  proxyStderr: string;
}

let runSeq = 0;

/** Run pgbench through a fresh proxy, stop the proxy (which flushes its log), and tally both logs. */
async function pgbenchThroughProxy(t: tap.Test, args: string[], timeoutMs = 120_000, proxyArgs: string[] = []): Promise<BenchRun> {
  const proxy: Proxy = await startProxy({ upstreamPort: pg.port, args: proxyArgs });
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await proxy.stop();
  });
  const app = `pgbench_${process.pid}_${++runSeq}`;
  const env = { ...pg.env(), PGHOST: proxy.host, PGPORT: String(proxy.port), PGAPPNAME: app };
  const result = await run(PGBENCH, args, { env, timeoutMs });
  const exit = await proxy.stop();
  stopped = true;
  t.same(exit, { code: 0, signal: null }, 'proxy shut down cleanly after the run');
  const proxyLog = tallyProxy(proxy.logLines());
  const server = await settledServerTally(app);
  return { result, app, proxyLog, server, proxyStderr: proxy.stderr() };
}

/** The exact accounting: one query log line per Q/P/B/E, as PostgreSQL itself counted them. */
function checkAccounting(t: tap.Test, r: BenchRun): void {
  t.same(r.proxyLog.bad, [], 'every query log line is well formed');
  t.same(r.server.errors, [], 'the server logged no errors for this run');
  t.same(r.server.other, [], 'no other kinds of duration lines (e.g. "execute fetch from")');
  for (const type of TYPES) {
    const server = { Q: 'statement', P: 'parse', B: 'bind', E: 'execute' }[type];
    t.equal(r.proxyLog.tally.counts[type], r.server.tally.counts[type], `${type} lines in the query log = "${server}" lines in the server log (${r.server.tally.counts[type]})`);
  }
  t.same(keyDiff(r.proxyLog.tally.keys, r.server.tally.keys), [], 'same statements, names and SQL on both sides');
  t.equal(r.proxyLog.conns.size, r.server.pids.size, 'as many proxy sessions as server backends for this run');
  t.notMatch(r.proxyStderr, /\bERROR\b|\bWARN\b|internal error|protocol violation/, 'the proxy reported no problems');
}

function processed(out: string): { done: number; of: number } | null {
  const m = /number of transactions actually processed: (\d+)(?:\/(\d+))?/.exec(out);
  return m ? { done: Number(m[1]), of: m[2] === undefined ? Number(m[1]) : Number(m[2]) } : null;
}

/** pgbench's summary says no transaction failed; a summary without that line fails too (it would check nothing). */
function checkNoFailures(t: tap.Test, out: string): void {
  const failed = /number of failed transactions: (\d+)/.exec(out);
  t.ok(failed, 'pgbench printed "number of failed transactions"');
  t.equal(failed?.[1], '0', 'number of failed transactions: 0');
}

t.test('pgbench -i -s 1 through the proxy', async (t) => {
  const r = await pgbenchThroughProxy(t, ['-i', '-s', '1']);
  t.equal(r.result.code, 0, `pgbench -i exits 0: ${r.result.stderr}`);
  t.match(r.result.stderr, /done in [\d.]+ s/);
  t.equal(await pg.psql('select count(*) from pgbench_accounts'), '100000', '100000 accounts');
  t.equal(await pg.psql('select count(*) from pgbench_branches'), '1');
  t.equal(await pg.psql('select count(*) from pgbench_tellers'), '10');
  t.equal(
    await pg.psql("select count(*) from pg_indexes where tablename like 'pgbench_%' and indexname like '%_pkey'"),
    '3',
    'primary keys created',
  );
  t.ok(r.proxyLog.tally.counts.Q > 5, `init sent ${r.proxyLog.tally.counts.Q} simple queries`);
  t.equal(r.proxyLog.tally.counts.P + r.proxyLog.tally.counts.B + r.proxyLog.tally.counts.E, 0, 'init uses only simple queries');
  t.ok(
    [...r.proxyLog.tally.keys.keys()].some((k) => /^Q  copy pgbench_accounts from stdin/i.test(k)),
    'the COPY statement is in the query log',
  );
  checkAccounting(t, r);
});

const CLIENTS = 4;
const TX_PER_CLIENT = 100;
/** Simple queries pgbench's main connection sends before the run (branch count, partition check). */
const extraQueries: Partial<Record<string, number>> = {};

for (const mode of ['simple', 'extended', 'prepared'] as const) {
  t.test(`pgbench -M ${mode} -c ${CLIENTS} -j 2 -t ${TX_PER_CLIENT}`, async (t) => {
    const r = await pgbenchThroughProxy(t, ['-n', '-c', String(CLIENTS), '-j', '2', '-t', String(TX_PER_CLIENT), '-M', mode]);
    const out = r.result.stdout;
    t.equal(r.result.code, 0, `pgbench exits 0: ${r.result.stderr}`);
    t.match(out, `query mode: ${mode}`);
    t.same(processed(out), { done: CLIENTS * TX_PER_CLIENT, of: CLIENTS * TX_PER_CLIENT }, 'processed 400/400');
    checkNoFailures(t, out);
    checkAccounting(t, r);

    const c = r.proxyLog.tally.counts;
    const statements = CLIENTS * TX_PER_CLIENT * TPCB_STATEMENTS;
    switch (mode) {
      case 'simple':
        t.ok(c.Q > statements, `Q = ${c.Q}: the ${statements} script statements plus setup queries`);
        t.equal(c.P + c.B + c.E, 0, 'no extended-protocol messages');
        extraQueries[mode] = c.Q - statements;
        break;
      case 'extended':
        t.equal(c.P, statements, 'one unnamed Parse per statement');
        t.equal(c.B, statements, 'one Bind per statement');
        t.equal(c.E, statements, 'one Execute per statement');
        extraQueries[mode] = c.Q;
        break;
      case 'prepared':
        t.equal(c.P, CLIENTS * TPCB_STATEMENTS, 'each client prepares each statement once');
        t.equal(c.B, statements, 'one Bind per statement');
        t.equal(c.E, statements, 'one Execute per statement');
        t.ok([...r.proxyLog.tally.keys.keys()].every((k) => !/^[BE] {2}/.test(k)), 'every Bind/Execute names its prepared statement');
        extraQueries[mode] = c.Q;
        break;
    }
    if (extraQueries.simple !== undefined) {
      t.equal(extraQueries[mode], extraQueries.simple, `the same ${extraQueries.simple} setup queries as in simple mode`);
    }
    // Every Bind/Execute line carries the SQL of its statement (the proxy tracked it).
    t.notOk([...r.proxyLog.tally.keys.keys()].some((k) => / \?$/.test(k) && /^[BE]/.test(k)), 'no Bind/Execute with unknown SQL');
  });
}

// A custom script in pipeline mode: several Parse/Bind/Execute groups before one Sync.
const PIPELINE_SCRIPT = [
  '\\set aid random(1, 100000 * :scale)',
  '\\set delta random(-5000, 5000)',
  '\\startpipeline',
  'SELECT abalance FROM pgbench_accounts WHERE aid = :aid;',
  'UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;',
  "SELECT :aid::text || E'\\t' || :delta AS tab_in_result;",
  '\\endpipeline',
  '',
].join('\n');
const PIPELINE_STATEMENTS = 3;

for (const mode of ['extended', 'prepared'] as const) {
  t.test(`pgbench pipeline mode (\\startpipeline), -M ${mode}`, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-pgbench-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const script = path.join(dir, 'pipeline.sql');
    fs.writeFileSync(script, PIPELINE_SCRIPT);
    const clients = 2;
    const tx = 150;
    const r = await pgbenchThroughProxy(t, ['-n', '-c', String(clients), '-j', '2', '-t', String(tx), '-M', mode, '-f', script]);
    t.equal(r.result.code, 0, `pgbench exits 0: ${r.result.stderr}`);
    t.same(processed(r.result.stdout), { done: clients * tx, of: clients * tx });
    checkNoFailures(t, r.result.stdout);
    checkAccounting(t, r);
    const c = r.proxyLog.tally.counts;
    t.equal(c.P, mode === 'prepared' ? clients * PIPELINE_STATEMENTS : clients * tx * PIPELINE_STATEMENTS, 'Parse count');
    t.equal(c.B, clients * tx * PIPELINE_STATEMENTS, 'Bind count');
    t.equal(c.E, clients * tx * PIPELINE_STATEMENTS, 'Execute count');
  });
}

t.test('pgbench -C (a new connection per transaction), -M extended', async (t) => {
  const clients = 4;
  const tx = 25;
  const r = await pgbenchThroughProxy(t, ['-n', '-C', '-c', String(clients), '-j', '2', '-t', String(tx), '-M', 'extended']);
  t.equal(r.result.code, 0, `pgbench exits 0: ${r.result.stderr}`);
  t.same(processed(r.result.stdout), { done: clients * tx, of: clients * tx });
  checkNoFailures(t, r.result.stdout);
  checkAccounting(t, r);
  t.ok(r.proxyLog.conns.size > clients * tx, `${r.proxyLog.conns.size} sessions for ${clients * tx} transactions`);
  t.equal(r.proxyLog.tally.counts.E, clients * tx * TPCB_STATEMENTS);
});

t.test('pgbench -M prepared -c 8 -j 2 -T 5', async (t) => {
  const clients = 8;
  const r = await pgbenchThroughProxy(t, ['-n', '-c', String(clients), '-j', '2', '-T', '5', '-M', 'prepared']);
  const out = r.result.stdout;
  t.equal(r.result.code, 0, `pgbench exits 0: ${r.result.stderr}`);
  const p = processed(out);
  t.ok(p !== null && p.done > 0, `processed ${p?.done} transactions`);
  checkNoFailures(t, out);
  checkAccounting(t, r);
  const c = r.proxyLog.tally.counts;
  t.equal(c.P, clients * TPCB_STATEMENTS, 'each client prepares each statement once');
  t.equal(c.B, c.E, 'one Bind per Execute');
  // pgbench checks the timer between transactions, so every started transaction completes.
  t.equal(c.E, p!.done * TPCB_STATEMENTS, 'Executes = 7 x processed transactions');
});

t.test('--processes 2: pgbench -M extended -c 8 -j 2 -T 5, the one log counts as PostgreSQL does', async (t) => {
  const clients = 8;
  const r = await pgbenchThroughProxy(t, ['-n', '-c', String(clients), '-j', '2', '-T', '5', '-M', 'extended'], 120_000, ['--processes', '2']);
  const out = r.result.stdout;
  t.equal(r.result.code, 0, `pgbench exits 0: ${r.result.stderr}`);
  const p = processed(out);
  t.ok(p !== null && p.done > 0, `processed ${p?.done} transactions`);
  checkNoFailures(t, out);
  checkAccounting(t, r);
  t.equal(r.proxyLog.tally.counts.E, p!.done * TPCB_STATEMENTS, 'Executes = 7 x processed transactions');
  const m = /shutdown complete query_log_lines=(\d+) query_log_lines_written=(\d+)/.exec(r.proxyStderr);
  const lines = r.proxyLog.tally.counts.P + r.proxyLog.tally.counts.B + r.proxyLog.tally.counts.E + r.proxyLog.tally.counts.Q;
  t.same([Number(m?.[1]), Number(m?.[2])], [lines, lines], 'both processes\' counts, summed, and the primary\'s equal the lines in the file');
  t.match(r.proxyStderr, /serving process ready: .*process=0 /);
  t.match(r.proxyStderr, /serving process ready: .*process=1 /);
});
