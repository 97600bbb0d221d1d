// Fault injection (issue 15, part 3): PostgreSQL, and in one configuration Redis, sit behind a
// chaos relay (test/helpers/chaos-relay.ts) while pgbench and checker clients run through one
// pgscribe with the query log and the cache on. Each fault in turn: latency, one-byte writes and a
// stall give no error and right answers; a reset, a half-close from either side and PostgreSQL
// terminating its backends give the client what PostgreSQL's own loss gives (FATAL 08006 or
// 57P01, or a plain close), never a wrong answer, and pgscribe recovers without a restart: new
// sessions work, pgbench runs again with no failure, the cache answers again. Redis trouble
// (reset, stall, one-byte writes, latency) never reaches a client, and the shared cache comes back
// by itself. At the end every answered query has its log line, the shutdown count equals the
// lines in the file, and every line is whole.
//
// The matrix runs in three configurations: the cache in the event loop, in worker threads, and
// with --redis. Nothing is timed tighter than seconds: faults last about a second, recovery is
// waited for as a condition.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test as Tap } from 'tap';
import { PG_BIN, startCluster, type PgCluster } from '../harness/pg-cluster';
import { startProxy, type Proxy } from '../harness/proxy';
import { startRedis, type RedisServer } from '../harness/redis';
import { run, type RunResult } from '../harness/run';
import { sleep, waitFor } from '../harness/time';
import { RawClient, describeMessages, enc, errorFields, value, type BackendMessage } from '../harness/wire';
import { extUnit, workerArgs, CATALOG_ARGS } from '../helpers/cache';
import { startChaosRelay, type ChaosRelay } from '../helpers/chaos-relay';

const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';
/** What a client may be told when its session is lost: pgscribe's 08006, PostgreSQL's 57P01. */
const LOSS_CODES = ['08006', '57P01'];
/** A new session while the upstream refuses connections: could not connect (08001) or lost at once (08006). */
const CONNECT_CODES = ['08001', '08006'];
/** Redis commands may take this long; then the lookup goes to PostgreSQL. */
const REDIS_TIMEOUT_MS = 1000;
/** pgbench's messages when a client aborts on a lost session (pgscribe's, PostgreSQL's, libpq's). */
const PGBENCH_LOSS = /upstream server closed the connection unexpectedly|terminating connection due to administrator command|server closed the connection unexpectedly|could not (connect|receive data)|connection to server .* failed|no connection to the server|could not send data|SQL command send failed|perhaps the backend died while processing/;

const READ_SQL = /^SELECT v AS got FROM known WHERE id = /;

let pg: PgCluster;
let redis: RedisServer;
let pgRelay: ChaosRelay;
let redisRelay: ChaosRelay;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-chaos-'));
fs.chmodSync(dir, 0o755);

t.before(async () => {
  pg = await startCluster();
  redis = await startRedis();
  pgRelay = await startChaosRelay(pg.port);
  redisRelay = await startChaosRelay(redis.port);
  await pg.psql(
    [
      // Known rows: v = 7 id + 3, never written; a read of another value is a wrong answer.
      'CREATE TABLE known (id int PRIMARY KEY, v int NOT NULL)',
      'INSERT INTO known SELECT g, 7 * g + 3 FROM generate_series(1, 1000) g',
      // One row per checker, written only by it: after its COMMIT it must read what it wrote.
      'CREATE TABLE ck (id int PRIMARY KEY, v bigint NOT NULL)',
      'INSERT INTO ck SELECT g, 0 FROM generate_series(1, 16) g',
      // pgbench's read-your-writes rows.
      'CREATE TABLE ctr (id int PRIMARY KEY, v bigint NOT NULL)',
      'INSERT INTO ctr SELECT g, 0 FROM generate_series(1, 4) g',
    ].join('; '),
  );
  fs.writeFileSync(
    path.join(dir, 'read.sql'),
    // A hot set (the cache answers most of it); any other value than 7 id + 3 aborts the client.
    '\\set aid random(1, 40)\n\\set want 7 * :aid + 3\nSELECT v AS got FROM known WHERE id = :aid \\gset\n\\if :got != :want\nSELECT 1 / 0 AS wrong_answer;\n\\endif\n',
  );
  fs.writeFileSync(
    path.join(dir, 'ryw.sql'),
    // A read below the client's own committed write is a stale answer.
    '\\set id random(1, 4)\nUPDATE ctr SET v = v + 1 WHERE id = :id RETURNING v AS w \\gset\nSELECT v AS r FROM ctr WHERE id = :id \\gset\n\\if :r < :w\nSELECT 1 / 0 AS stale_read;\n\\endif\n',
  );
});
t.teardown(async () => {
  await pgRelay?.close();
  await redisRelay?.close();
  await redis?.stop();
  await pg?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

// ---- pgbench --------------------------------------------------------------------------------

interface Bench {
  result: RunResult;
  /** Transactions of read.sql and ryw.sql that completed. */
  reads: number;
  writes: number;
  failed: number;
  /** Lines of stderr about an aborted client, and those that do not name a lost session. */
  aborts: string[];
  unexpected: string[];
}

function pgbench(port: number, args: string[]): Promise<Bench> {
  return run(PGBENCH, ['-n', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-c', '4', '-j', '2', '-f', 'read.sql@4', '-f', 'ryw.sql@1', ...args, 'postgres'], {
    timeoutMs: 120_000,
    cwd: dir,
  }).then((result) => {
    const scripts = [...result.stdout.matchAll(/ - (\d+) transactions \(/g)].map((m) => Number(m[1]));
    const failed = /number of failed transactions: (\d+)/.exec(result.stdout);
    const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
    const aborts = lines.filter((l) => /aborted|error/i.test(l));
    return {
      result,
      reads: scripts[0] ?? 0,
      writes: scripts[1] ?? 0,
      failed: failed ? Number(failed[1]) : -1,
      aborts,
      unexpected: lines.filter((l) => /wrong_answer|stale_read|division by zero/.test(l) || (/aborted|error/i.test(l) && !PGBENCH_LOSS.test(l) && !/Run was aborted/.test(l))),
    };
  });
}

// ---- checker clients ------------------------------------------------------------------------

/** What the checkers saw during one phase. */
interface Seen {
  /** Answers checked. */
  answers: number;
  /** "what: got, expected" for every wrong answer. */
  wrong: string[];
  /** SQLSTATE (or 'close') of every lost session. */
  losses: string[];
  /** SQLSTATE (or 'close') of every refused new session. */
  refused: string[];
  /** Errors that are neither: a non-FATAL error, a hang. */
  unexpected: string[];
  /** The slowest answer, ms. */
  maxMs: number;
}

const newSeen = (): Seen => ({ answers: 0, wrong: [], losses: [], refused: [], unexpected: [], maxMs: 0 });

/** Answered queries per "client port|type|sql", over a whole configuration: each needs its log line. */
type Answered = Map<string, number>;

function answered(a: Answered, port: number, types: string[], sql: string): void {
  for (const ty of types) {
    const k = `${port}|${ty}|${sql}`;
    a.set(k, (a.get(k) ?? 0) + 1);
  }
}

/** Everything up to ReadyForQuery; `lost` when the peer closed first (with its FATAL, if any). */
async function exchange(c: RawClient, bytes: Buffer, timeoutMs: number): Promise<{ msgs: BackendMessage[]; lost: string | null }> {
  c.write(bytes);
  const msgs: BackendMessage[] = [];
  for (;;) {
    let m: BackendMessage;
    try {
      m = await c.read(timeoutMs);
    } catch (e) {
      if (!c.closed) throw e;
      const fatal = msgs.filter((x) => x.type === 'E').map((x) => errorFields(x.body));
      return { msgs, lost: fatal.length > 0 ? `${fatal[0]!['S']} ${fatal[0]!['C']}` : 'close' };
    }
    msgs.push(m);
    if (m.type === 'Z') return { msgs, lost: null };
  }
}

/**
 * A checker: reads known rows (simple and extended protocol) and, every few reads, writes its own
 * row and reads it back, until stop(); a lost session is counted and opened again.
 */
function checker(port: () => number, me: number, seen: () => Seen, log: Answered): { stop(): Promise<void> } {
  let stopping = false;
  let c: RawClient | null = null;
  const loop = (async () => {
    let n = 0;
    while (!stopping) {
      if (c === null || c.closed) {
        c = null;
        try {
          const s = await RawClient.connect(port());
          s.sock.setNoDelay(true);
          const r = await exchange(s, enc.startup({ user: 'postgres', database: 'postgres' }), 20_000);
          if (r.lost !== null) {
            seen().refused.push(r.lost.replace(/^FATAL /, ''));
            s.sock.destroy();
            await sleep(100);
            continue;
          }
          c = s;
        } catch (e) {
          seen().refused.push(`connect: ${(e as Error).message}`);
          await sleep(100);
          continue;
        }
      }
      const cur: RawClient = c;
      const lport = cur.sock.localPort!;
      const id = 1 + ((me * 7 + n++) % 40);
      const step = n % 6;
      const t0 = performance.now();
      let what: string;
      let r: { msgs: BackendMessage[]; lost: string | null };
      let check: (msgs: BackendMessage[]) => string | null;
      try {
        if (step === 5) {
          // Its own row: the value the UPDATE returned (PostgreSQL's word) must be what it reads next.
          const up = `UPDATE ck SET v = v + 1 WHERE id = ${me} RETURNING v`;
          what = up;
          r = await exchange(cur, enc.query(up), 20_000);
          if (r.lost === null && !hasError(r.msgs)) {
            answered(log, lport, ['Q'], up);
            const w = value(r.msgs);
            const rd = `SELECT v FROM ck WHERE id = ${me}`;
            what = `${rd} after its COMMIT of ${w}`;
            r = await exchange(cur, enc.query(rd), 20_000);
            check = (m) => (value(m) === w ? null : `got ${value(m)}, expected ${w}`);
            if (r.lost === null && !hasError(r.msgs)) answered(log, lport, ['Q'], rd);
          } else check = () => null;
        } else if (step % 2 === 0) {
          const sql = `SELECT v FROM known WHERE id = ${id}`;
          what = sql;
          r = await exchange(cur, enc.query(sql), 20_000);
          check = (m) => (value(m) === String(7 * id + 3) ? null : `got ${value(m)}, expected ${7 * id + 3}`);
          if (r.lost === null && !hasError(r.msgs)) answered(log, lport, ['Q'], sql);
        } else {
          const sql = 'SELECT v FROM known WHERE id = $1';
          what = `${sql} (${id})`;
          r = await exchange(cur, extUnit({ sql, params: [String(id)] }), 20_000);
          check = (m) => (describeMessages(m) === '1 2 T D C Z' && value(m) === String(7 * id + 3) ? null : `got ${describeMessages(m)} ${value(m)}, expected ${7 * id + 3}`);
          if (r.lost === null && !hasError(r.msgs)) answered(log, lport, ['P', 'B', 'E'], sql);
        }
      } catch (e) {
        seen().unexpected.push(`checker ${me}: ${(e as Error).message} (no answer)`);
        cur.sock.destroy();
        continue;
      }
      const s = seen();
      s.maxMs = Math.max(s.maxMs, performance.now() - t0);
      if (r.lost !== null) {
        s.losses.push(r.lost);
        cur.sock.destroy();
        continue;
      }
      if (hasError(r.msgs)) {
        s.unexpected.push(`checker ${me}: ${what}: ${describeMessages(r.msgs)}`);
        continue;
      }
      s.answers++;
      const bad = check(r.msgs);
      if (bad !== null) s.wrong.push(`checker ${me}: ${what}: ${bad}`);
    }
  })();
  return {
    async stop() {
      stopping = true;
      await loop;
      (c as RawClient | null)?.sock.destroy();
    },
  };
}

const hasError = (msgs: BackendMessage[]): boolean => msgs.some((m) => m.type === 'E');

// ---- the faults -----------------------------------------------------------------------------

interface Fault {
  name: string;
  /** The clients lose their sessions (else: no error at all). */
  loses: boolean;
  /** Inject; the returned function ends the fault. */
  inject(): Promise<() => void>;
  /** Redis faults: the breaker may open; the shared cache must come back. */
  redis?: boolean;
}

/** Client backends of the cluster (not pgscribe's catalog connection) ended by pg_terminate_backend. */
const TERMINATE =
  "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name <> 'pgscribe catalog'";

const PG_FAULTS: Fault[] = [
  {
    name: 'latency 40 ms each way',
    loses: false,
    async inject() {
      pgRelay.setLatency(40);
      await sleep(1500);
      return () => pgRelay.setLatency(0);
    },
  },
  {
    name: 'one-byte writes',
    loses: false,
    async inject() {
      pgRelay.oneByteWrites(true);
      await sleep(1200);
      return () => pgRelay.oneByteWrites(false);
    },
  },
  {
    name: 'stall both ways, then resume',
    loses: false,
    async inject() {
      pgRelay.stall('both');
      await sleep(1200);
      return () => pgRelay.resume();
    },
  },
  {
    name: 'reset (RST) every connection; new ones refused for a second',
    loses: true,
    async inject() {
      pgRelay.dropNewConnections(true);
      pgRelay.resetAll();
      await sleep(1000);
      return () => pgRelay.dropNewConnections(false);
    },
  },
  {
    name: 'half-close toward PostgreSQL (it reads EOF)',
    loses: true,
    async inject() {
      pgRelay.halfCloseAll('toTarget');
      return () => {};
    },
  },
  {
    name: 'half-close toward pgscribe (it reads EOF)',
    loses: true,
    async inject() {
      pgRelay.halfCloseAll('toClient');
      return () => {};
    },
  },
  {
    name: 'PostgreSQL terminates the backends',
    loses: true,
    async inject() {
      await pg.psql(TERMINATE);
      return () => {};
    },
  },
];

const REDIS_FAULTS: Fault[] = [
  {
    name: 'Redis: reset every connection',
    loses: false,
    redis: true,
    async inject() {
      redisRelay.resetAll();
      await sleep(500);
      return () => {};
    },
  },
  {
    name: 'Redis: stall both ways, then resume',
    loses: false,
    redis: true,
    async inject() {
      redisRelay.stall('both');
      await sleep(1500);
      return () => redisRelay.resume();
    },
  },
  {
    name: 'Redis: one-byte writes',
    loses: false,
    redis: true,
    async inject() {
      redisRelay.oneByteWrites(true);
      await sleep(1200);
      return () => redisRelay.oneByteWrites(false);
    },
  },
  {
    name: 'Redis: latency 60 ms each way',
    loses: false,
    redis: true,
    async inject() {
      redisRelay.setLatency(60);
      await sleep(1200);
      return () => redisRelay.setLatency(0);
    },
  },
];

// ---- one configuration ----------------------------------------------------------------------

interface Config {
  name: string;
  args: string[];
  faults: Fault[];
}

const CONFIGS: Config[] = [
  { name: 'workers=0', args: workerArgs(0), faults: PG_FAULTS },
  { name: 'workers=2', args: workerArgs(2), faults: PG_FAULTS },
  {
    name: 'workers=0 --redis',
    args: ['--redis', '', '--redis-timeout-ms', String(REDIS_TIMEOUT_MS), '--redis-prefix', 'chaos:'],
    faults: [...REDIS_FAULTS, ...PG_FAULTS.filter((f) => /reset|stall/.test(f.name))],
  },
];

/** A fresh session answers a known row right: the time from `since` until it does. */
async function recovered(p: Proxy, since: number): Promise<number> {
  let last = '';
  return waitFor(
    async () => {
      try {
        const c = await RawClient.connect(p.port);
        try {
          const r = await exchange(c, enc.startup({ user: 'postgres', database: 'postgres' }), 10_000);
          if (r.lost !== null) return void (last = `startup: ${r.lost}`);
          const q = await exchange(c, enc.query('SELECT v FROM known WHERE id = 1000'), 10_000);
          if (q.lost === null && value(q.msgs) === '7003') return Math.round(performance.now() - since);
          last = describeMessages(q.msgs);
        } finally {
          c.sock.destroy();
        }
      } catch (e) {
        last = (e as Error).message;
      }
      return undefined;
    },
    { timeoutMs: 20_000, intervalMs: 100, timeout: () => `no working session 20 s after the fault ended: ${last}` },
  );
}

/** The shared cache is in use (its breaker closed): the time from `since` until it is. */
function l2Available(p: Proxy, since: number): Promise<number> {
  return waitFor(async () => ((await p.stats())['cache_l2_available'] === 1 ? Math.round(performance.now() - since) : undefined), {
    timeoutMs: 20_000,
    intervalMs: 100,
    timeout: () => 'the shared cache is not in use again 20 s after the fault',
  });
}

/** The cache answers again: a read repeated in one session is logged cache=hit (or from L2). */
async function cacheAnswers(p: Proxy, tag: string): Promise<void> {
  const sql = `SELECT v, '${tag}' AS tag FROM known WHERE id = 11`;
  const c = await RawClient.connect(p.port);
  try {
    await exchange(c, enc.startup({ user: 'postgres', database: 'postgres' }), 10_000);
    await waitFor(
      async () => {
        const r = await exchange(c, enc.query(sql), 10_000);
        if (r.lost !== null || value(r.msgs) !== '80') throw new Error(`${sql}: ${describeMessages(r.msgs)}`);
        return p.logLines().some((l) => l.endsWith(` sql=${sql}`) && / cache=(hit|l2) /.test(l)) ? true : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200, timeout: () => `the cache did not answer ${sql} within 20 s` },
    );
  } finally {
    c.sock.destroy();
  }
}

/**
 * Redis takes answers again: fresh reads until one is stored there. (Under load the breaker may
 * open again on slow replies; a read while it is open is not stored, the next one may be.)
 */
async function storesAgain(p: Proxy, tag: string): Promise<void> {
  const c = await RawClient.connect(p.port);
  let n = 0;
  try {
    await exchange(c, enc.startup({ user: 'postgres', database: 'postgres' }), 10_000);
    const before = (await p.stats())['cache_l2_stores'] ?? 0;
    await waitFor(
      async () => {
        const r = await exchange(c, enc.query(`SELECT v, '${tag} ${++n}' AS tag FROM known WHERE id = 12`), 10_000);
        if (r.lost !== null || value(r.msgs) !== '87') throw new Error(`read: ${describeMessages(r.msgs)}`);
        return ((await p.stats())['cache_l2_stores'] ?? 0) > before ? true : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200, timeout: () => `nothing stored in Redis within 20 s: ${p.stderr().split('\n').filter((l) => / redis: /.test(l)).slice(-6).join(' | ')}` },
    );
  } finally {
    c.sock.destroy();
  }
}

const count = (s: string, re: RegExp): number => s.match(re)?.length ?? 0;
const tally = (xs: string[]): string => {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return [...m].map(([k, v]) => `${k} x${v}`).join(', ') || 'none';
};

/** Lines of pgbench's read in the query log after byte offset `from`. */
function benchLinesSince(p: Proxy, from: number): number {
  const fd = fs.openSync(p.logPath, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.max(0, size - from));
    fs.readSync(fd, buf, 0, buf.length, from);
    return buf.toString('utf8').match(/ sql=SELECT v AS got FROM known WHERE id = /g)?.length ?? 0;
  } finally {
    fs.closeSync(fd);
  }
}

async function runFault(t: Tap, p: Proxy, cfg: Config, f: Fault, idx: number, log: Answered, benchTotals: { reads: number; writes: number }): Promise<void> {
  const seen = newSeen();
  const checkers = [1, 2].map((k) => checker(() => p.port, cfg.faults.indexOf(f) * 2 + k, () => seen, log));
  const unavailableBefore = count(p.stderr(), /WARN redis: shared cache unavailable/g);
  const stderrAt = p.stderr().length;
  const mode = idx % 2 === 0 ? 'prepared' : 'simple';
  const logAt = fs.statSync(p.logPath).size;
  let benchDone = false;
  const bench = pgbench(p.port, ['-T', '3', '-M', mode]).finally(() => (benchDone = true));
  // The fault comes once pgbench's reads flow (its sessions are up), however slow the machine:
  // on a busy one, 3 s of pgbench may be a few dozen reads, or fewer.
  await sleep(500);
  await waitFor(() => (benchDone || benchLinesSince(p, logAt) >= 4 ? true : undefined), {
    timeoutMs: 20_000,
    intervalMs: 50,
    timeout: () => `pgbench's reads did not reach the log: ${benchLinesSince(p, logAt)} lines`,
  });
  const end = await f.inject();
  end();
  const healed = performance.now();
  // Measured from the end of the fault, under the load that is still running.
  const recovery = recovered(p, healed);
  const l2Back = f.redis ? l2Available(p, healed) : Promise.resolve(0);
  const b = await bench;
  await Promise.all(checkers.map((c) => c.stop()));
  const recoveryMs = await recovery;
  const l2Ms = await l2Back;
  benchTotals.reads += b.reads;
  benchTotals.writes += b.writes;

  t.same(seen.wrong, [], 'no wrong answer from the checkers');
  t.same(b.unexpected, [], `pgbench: no wrong answer, stale read or unexpected error (-M ${mode})`);
  t.same(seen.unexpected, [], 'checkers: no error other than a lost session, no hang');
  t.ok(seen.answers > 0, `the checkers' answers were checked (${seen.answers}; pgbench ${b.reads} reads, ${b.writes} writes)`);
  if (f.loses) {
    t.ok(seen.losses.length > 0, `the checkers lost their sessions (${tally(seen.losses)})`);
    t.same(
      seen.losses.filter((l) => !(l === 'close' || LOSS_CODES.some((c) => l === `FATAL ${c}`))),
      [],
      `every lost session was told FATAL ${LOSS_CODES.join(' or ')}, or closed`,
    );
    t.same(seen.refused.filter((l) => !CONNECT_CODES.includes(l) && l !== 'close'), [], `every refused new session was told ${CONNECT_CODES.join(' or ')} (${tally(seen.refused)})`);
    // pgbench's clients were lost too; it can run again at once, with no failure.
    const again = await pgbench(p.port, ['-t', '15', '-M', mode]);
    t.equal(again.result.code, 0, `pgbench runs again after the fault: ${again.result.stderr.slice(-300)}`);
    t.equal(again.failed, 0, 'with no failed transaction');
    t.ok(again.reads > 0, `and its reads are checked (${again.reads})`);
    benchTotals.reads += again.reads;
    benchTotals.writes += again.writes;
  } else {
    t.same(seen.losses, [], 'no session lost');
    t.same(seen.refused, [], 'no new session refused');
    t.equal(b.result.code, 0, `pgbench exits 0 through the fault: ${b.result.stderr.slice(-300)}`);
    t.equal(b.failed, 0, 'pgbench: no failed transaction');
    t.ok(b.reads > 0, `pgbench's reads were checked (${b.reads})`);
  }
  if (f.redis) {
    t.ok(seen.maxMs < REDIS_TIMEOUT_MS + 4000, `checkers answered within the Redis timeout plus a margin (slowest ${Math.round(seen.maxMs)} ms)`);
    // The breaker opened (or not) on its own judgement; whichever, it is closed again (l2Back).
    const opened = count(p.stderr(), /WARN redis: shared cache unavailable/g) - unavailableBefore;
    if (/reset|stall/.test(f.name)) t.ok(opened >= 1, `the breaker opened (${opened} time(s)) and closed again`);
    await cacheAnswers(p, `${cfg.name} ${f.name}`);
    await storesAgain(p, `${cfg.name} ${f.name}`);
  } else {
    await cacheAnswers(p, `${cfg.name} ${f.name}`);
  }
  t.ok(p.alive, 'pgscribe is still running');
  if (f.redis) for (const l of p.stderr().slice(stderrAt).split('\n').filter((x) => / redis: /.test(x))) t.comment(`  ${l.slice(25, 260)}`);
  t.comment(
    `${cfg.name} | ${f.name}: checkers ${seen.answers} answers, lost ${tally(seen.losses)}, refused ${tally(seen.refused)}, slowest ${Math.round(seen.maxMs)} ms; ` +
      `pgbench -M ${mode} ${b.reads}+${b.writes} tx, exit ${b.result.code}, ${b.aborts.length} abort lines; recovered in ${recoveryMs} ms${f.redis ? `, shared cache in use again after ${l2Ms} ms` : ''}`,
  );
}

/** "<ts> conn=N user@db host:port TYPE [stmt=..] [portal=..] [params=...] [cache=..] [flight=..] sql=..." */
const LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z conn=\d+ \S+@\S+ 127\.0\.0\.1:(\d+) ([QPBE]) (?:.* )?sql=(.*)$/;

/** CHAOS_CONFIG=redis (a part of a configuration's name) runs that configuration alone, when debugging. */
const ONLY = process.env.CHAOS_CONFIG ?? '';

for (const cfg of CONFIGS.filter((c) => c.name.includes(ONLY))) {
  t.test(`${cfg.name}: every fault under pgbench load`, async (t) => {
    const started = performance.now();
    const args = [...cfg.args];
    const r = args.indexOf('--redis');
    if (r >= 0) args[r + 1] = `127.0.0.1:${redisRelay.port}`;
    const p = await startProxy({ upstreamPort: pgRelay.port, args: ['--cache', '--singleflight', ...CATALOG_ARGS, ...args] });
    t.teardown(async () => {
      if (p.alive) await p.stop('SIGKILL');
    });
    if (r >= 0) await p.waitStderr(/redis: shared cache available/);
    const log: Answered = new Map();
    const benchTotals = { reads: 0, writes: 0 };
    for (const [i, f] of cfg.faults.entries()) await t.test(f.name, (t) => runFault(t, p, cfg, f, i, log, benchTotals));

    const exit = await p.stop('SIGTERM', { killAfterMs: 15_000 });
    t.same(exit, { code: 0, signal: null }, 'pgscribe shuts down cleanly after every fault');
    const lines = p.logLines();
    const shutdown = /shutdown complete query_log_lines=(\d+)/.exec(p.stderr());
    t.equal(Number(shutdown?.[1]), lines.length, `the shutdown count of log lines equals the lines in the file (${lines.length})`);
    const bad = lines.filter((l) => !LINE.test(l));
    t.same(bad.slice(0, 5), [], 'every line is whole and well formed (no split line)');
    const have = new Map<string, number>();
    let benchReadLines = 0;
    for (const l of lines) {
      const m = LINE.exec(l);
      if (m === null) continue;
      const k = `${m[1]}|${m[2]}|${m[3]}`;
      have.set(k, (have.get(k) ?? 0) + 1);
      if ((m[2] === 'Q' || m[2] === 'E') && READ_SQL.test(m[3]!)) benchReadLines++;
    }
    const missing = [...log].filter(([k, n]) => (have.get(k) ?? 0) < n).map(([k, n]) => `${k}: ${have.get(k) ?? 0} lines for ${n} answers`);
    t.same(missing.slice(0, 10), [], `every query a checker got an answer for has its log line (${log.size} distinct)`);
    t.ok(benchReadLines >= benchTotals.reads, `the log holds a line for every read pgbench completed (${benchReadLines} lines, ${benchTotals.reads} reads)`);
    t.comment(`${cfg.name}: ${lines.length} log lines; ${Math.round((performance.now() - started) / 1000)} s`);
  });
}
