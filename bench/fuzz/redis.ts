/**
 * The hostile-Redis fuzzer's run (bench/fuzz-redis.ts, `make fuzz-redis`, and a short run in the
 * e2e tests): a throwaway PostgreSQL and redis-server, and between pgscribe and that Redis a man
 * in the middle in this process that mutates the replies (redis-cases.ts). Every connection
 * pgscribe opens to it is a case with a plan of its own, made from the run's seed and the
 * connection's number; each lives a few seconds at most, then is reset, so pgscribe keeps
 * reconnecting into new trouble. The subscriber connection also gets pushes nobody published.
 *
 * Meanwhile valid sessions read rows whose answers are known and write rows of their own through
 * pgscribe (cache, singleflight and the Redis singleflight on, a tiny L1 so that most reads reach
 * Redis), and judge every answer:
 *
 *   fz_fixed  k = 1..FIXED_ROWS, v = fixedValue(k), never written: a read must return exactly that
 *   fz_owned  each session owns OWN_ROWS rows and is their only writer: a read must return the
 *             value of its last acknowledged write (read-your-writes through the shared cache)
 *
 * The oracle:
 * - pgscribe stays up, and its stderr has no stack trace;
 * - 0 wrong answers: every read equals what PostgreSQL must return, no session gets an error or
 *   loses its connection;
 * - no hang: every query is answered within QUERY_BOUND_MS (the Redis timeout, the Redis lock's
 *   lifetime and a margin for a busy machine);
 * - RSS stays bounded: the result has its start, peak and end, for the caller to judge.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { startCluster, USERS, type PgCluster } from '../../test/harness/pg-cluster';
import { startProxy, type Proxy } from '../../test/harness/proxy';
import { RssSampler } from './shared';
import { startRedis, type RedisServer } from '../../test/harness/redis';
import { RawClient, enc, errorsIn, column, describeMessages, type BackendMessage } from '../../test/harness/wire';
import { sleep } from '../../test/harness/time';
import { prng } from '../../test/harness/prng';
import { MITM_KINDS, Seen, bulkArray, garbagePush, mitmPlan, mutateReply, replyEnd, type MitmKind, type MitmPlan, type Out } from './redis-cases';

/** Ms a Redis command may take (--redis-timeout-ms). */
const REDIS_TIMEOUT_MS = 200;
/** Ms a Redis flight lock lives (--redis-lock-ms): the longest a read waits for another flight. */
const LOCK_MS = 1000;
/** Every query must be answered within this. */
export const QUERY_BOUND_MS = REDIS_TIMEOUT_MS + LOCK_MS + 4000;

/**
 * pgscribe's flags, all in one place: a setting that becomes required with --redis (a key for the
 * entries' checksum, say) is one more line here. The run adds --redis (the man in the middle)
 * and --log.
 */
const PGSCRIBE_ARGS: readonly string[] = [
  '--cache',
  '--singleflight',
  '--catalog-user',
  'postgres',
  '--cache-ttl',
  '60000',
  // A tiny L1: most reads miss it and go on to Redis.
  '--cache-max-entries',
  '8',
  '--redis-timeout-ms',
  String(REDIS_TIMEOUT_MS),
  '--redis-singleflight',
  '--redis-lock-ms',
  String(LOCK_MS),
];

const FIXED_ROWS = 100;
const OWN_ROWS = 4;
const USER = USERS.trust.user;

/** The value of fixed row k: lengths vary from 33 to 230 bytes. */
export function fixedValue(k: number): string {
  return `${k}:` + createHash('md5').update(String(k)).digest('hex').repeat(1 + (k % 7));
}

export interface RedisFuzzOptions {
  durationS: number;
  seed: number;
  /** Valid sessions reading and writing meanwhile. */
  sessions: number;
  /** Every connection gets the plan of this case seed (a replay of one case). */
  only?: number;
  /** Every connection gets this kind of trouble (its rate and life still from its seed). */
  onlyKind?: MitmKind;
  /** Extra pgscribe flags. */
  args?: string[];
  log(line: string): void;
}

export interface RedisFuzzResult {
  seed: number;
  durationS: number;
  /** Connections pgscribe opened to the man in the middle, each a case. */
  cases: number;
  byKind: Record<MitmKind, number>;
  /** Replies from the real Redis, and how many of them were mutated. */
  replies: number;
  mutated: number;
  /** Pushes nobody published, sent on subscriber connections. */
  garbagePushes: number;
  /** MGET replies of an entry whose entry or generation was replaced. */
  forgedEntries: number;
  /** Queries the valid sessions sent and checked (reads and writes). */
  queries: number;
  reads: number;
  writes: number;
  /** Wrong answers, errors, lost sessions: what happened, and the cases that were live. */
  wrongAnswers: string[];
  /** Queries not answered within QUERY_BOUND_MS. */
  hangs: string[];
  /** The slowest answer, ms. */
  maxLatencyMs: number;
  /** Stack-trace lines pgscribe printed on stderr (the first few). */
  stackTraces: string[];
  pgscribeExited: string | null;
  /** pgscribe's cache counters at the end (cache_l2_hits, cache_l2_refused, ...). */
  counters: Record<string, number>;
  rssStartBytes: number;
  rssMaxBytes: number;
  rssEndBytes: number;
}

// ---- the man in the middle ----------------------------------------------------------------------

interface MitmTally {
  cases: number;
  byKind: Record<MitmKind, number>;
  replies: number;
  mutated: number;
  garbagePushes: number;
  /** MGET replies of an entry whose entry or generation was replaced (wrong-value, wrong-generation). */
  forgedEntries: number;
  /** Case seeds of the connections open now (for findings). */
  live: Set<string>;
}

/** One connection of pgscribe's, relayed to the real Redis under a plan. */
class MitmConn {
  private readonly up: net.Socket;
  private readonly plan: MitmPlan;
  private readonly tally: MitmTally;
  private readonly seen: Seen;
  private readonly channel: string;
  private readonly label: string;
  /** Commands sent on and not answered yet, in order (none on a subscriber connection). */
  private readonly cmds: string[][] = [];
  private subscriber = false;
  private cmdBuf: Buffer = Buffer.alloc(0);
  private replyBuf: Buffer = Buffer.alloc(0);
  private readonly earlier: Buffer[] = [];
  private readonly out: Out[] = [];
  private pumping = false;
  private window: Buffer[] = [];
  private windowTimer: NodeJS.Timeout | null = null;
  private pushTimer: NodeJS.Timeout | null = null;
  private readonly lifeTimer: NodeJS.Timeout;
  private done = false;

  constructor(
    private readonly down: net.Socket,
    redisPort: number,
    plan: MitmPlan,
    tally: MitmTally,
    seen: Seen,
    channel: string,
  ) {
    this.plan = plan;
    this.tally = tally;
    this.seen = seen;
    this.channel = channel;
    this.label = `${plan.seed}:${plan.kind}@${plan.rate}`;
    tally.live.add(this.label);
    this.up = net.connect({ port: redisPort, host: '127.0.0.1' });
    this.up.setNoDelay(true);
    down.setNoDelay(true);
    down.on('data', (d: Buffer) => this.fromPgscribe(d));
    this.up.on('data', (d: Buffer) => this.fromRedis(d));
    for (const s of [down, this.up]) {
      s.on('error', () => this.finish(false));
      s.on('close', () => this.finish(false));
    }
    this.lifeTimer = setTimeout(() => this.finish(true), plan.lifeMs);
  }

  private fromPgscribe(d: Buffer): void {
    this.up.write(d);
    this.cmdBuf = this.cmdBuf.length === 0 ? d : Buffer.concat([this.cmdBuf, d]);
    let off = 0;
    for (let end = replyEnd(this.cmdBuf, off); end > 0; end = replyEnd(this.cmdBuf, off)) {
      const items = bulkArray(this.cmdBuf.subarray(off, end));
      off = end;
      const args = (items ?? []).map((b) => (b === null ? '' : b.toString('latin1')));
      const name = args[0]?.toUpperCase();
      if (name === 'SUBSCRIBE') this.becomeSubscriber();
      if (name === 'SET' && /:v:/.test(args[1] ?? '') && items?.[2]) this.seen.value(args[1]!, items[2]);
      if (!this.subscriber) this.cmds.push(args);
    }
    this.cmdBuf = this.cmdBuf.subarray(off);
  }

  private becomeSubscriber(): void {
    this.subscriber = true;
    this.cmds.length = 0;
    // There is one subscriber connection to a few command connections: half of its cases forge pushes whatever their kind.
    if (this.plan.kind !== 'pubsub-garbage' && this.plan.rand() < 0.5) return;
    const tick = (): void => {
      this.pushTimer = setTimeout(tick, 5 + Math.floor(this.plan.rand() * 100));
      if (this.plan.rand() >= Math.max(0.3, this.plan.rate)) return;
      this.tally.garbagePushes++;
      this.send([{ kind: 'bytes', bytes: garbagePush(this.plan.rand, this.channel) }]);
    };
    tick();
  }

  private fromRedis(d: Buffer): void {
    this.replyBuf = this.replyBuf.length === 0 ? d : Buffer.concat([this.replyBuf, d]);
    let off = 0;
    for (let end = replyEnd(this.replyBuf, off); end > 0; end = replyEnd(this.replyBuf, off)) {
      const reply = Buffer.from(this.replyBuf.subarray(off, end));
      off = end;
      this.reply(reply);
    }
    this.replyBuf = this.replyBuf.subarray(off);
  }

  private reply(reply: Buffer): void {
    this.tally.replies++;
    const cmd = this.subscriber ? null : (this.cmds.shift() ?? null);
    if (cmd !== null && cmd[0]?.toUpperCase() === 'MGET') {
      const items = bulkArray(reply);
      if (items !== null) {
        if (/:v:/.test(cmd[1] ?? '') && items[0]) this.seen.value(cmd[1]!, items[0]);
        for (let i = /:v:/.test(cmd[1] ?? '') ? 1 : 0; i < items.length; i++) if (items[i]) this.seen.gen(cmd[i + 1] ?? '', items[i]!.toString('latin1'));
      }
    }
    const p = this.plan;
    const hit = p.rate >= 1 || p.rand() < p.rate;
    if (p.kind === 'reorder') {
      this.window.push(reply);
      if (hit) this.tally.mutated++;
      if (this.window.length >= 2 + Math.floor(p.rand() * 3)) this.flushWindow(hit);
      else if (this.windowTimer === null) this.windowTimer = setTimeout(() => this.flushWindow(false), 20);
      return;
    }
    if (p.kind === 'pubsub-garbage' && this.subscriber) {
      this.send([{ kind: 'bytes', bytes: reply }]);
      return;
    }
    if (hit && p.kind !== 'clean') this.tally.mutated++;
    if (hit && (p.kind === 'wrong-value' || p.kind === 'wrong-generation') && cmd !== null && cmd[0]?.toUpperCase() === 'MGET' && /:v:/.test(cmd[1] ?? '')) this.tally.forgedEntries++;
    this.send(hit ? mutateReply(p, reply, { cmd, earlier: this.earlier, seen: this.seen, channel: this.channel }) : [{ kind: 'bytes', bytes: reply }]);
    if (this.earlier.length >= 32) this.earlier.shift();
    this.earlier.push(reply);
  }

  /** The replies held for reordering, written permuted (or in order). */
  private flushWindow(permute: boolean): void {
    if (this.windowTimer !== null) clearTimeout(this.windowTimer);
    this.windowTimer = null;
    const w = this.window;
    this.window = [];
    if (permute) {
      for (let i = w.length - 1; i > 0; i--) {
        const j = Math.floor(this.plan.rand() * (i + 1));
        [w[i], w[j]] = [w[j]!, w[i]!];
      }
    }
    this.send(w.map((bytes) => ({ kind: 'bytes', bytes })));
  }

  private send(outs: Out[]): void {
    this.out.push(...outs);
    if (!this.pumping) void this.pump();
  }

  /** Write what is queued, in order, with its delays, byte-by-byte writes, resets and FINs. */
  private async pump(): Promise<void> {
    this.pumping = true;
    while (this.out.length > 0 && !this.done) {
      const o = this.out.shift()!;
      if (o.kind === 'bytes' && o.delayMs !== undefined) await sleep(o.delayMs);
      if (this.done) break;
      if (o.kind === 'bytes' && o.gapMs !== undefined) {
        for (let i = 0; i < o.bytes.length && !this.done; i++) {
          this.down.write(o.bytes.subarray(i, i + 1));
          await (o.gapMs === 0 ? new Promise((r) => setImmediate(r)) : sleep(o.gapMs));
        }
        continue;
      }
      if (o.bytes.length > 0) this.down.write(o.bytes);
      if (o.kind === 'reset') {
        this.finish(true);
      } else if (o.kind === 'end') {
        this.down.end();
        this.up.destroy();
        this.done = true;
      }
    }
    this.pumping = false;
  }

  /** The case is over: both sockets go (with a reset toward pgscribe when `reset`). */
  private finish(reset: boolean): void {
    if (this.done && !reset) {
      this.tally.live.delete(this.label);
      return;
    }
    this.done = true;
    this.tally.live.delete(this.label);
    clearTimeout(this.lifeTimer);
    if (this.windowTimer !== null) clearTimeout(this.windowTimer);
    if (this.pushTimer !== null) clearTimeout(this.pushTimer);
    this.up.destroy();
    if (reset && !this.down.destroyed) this.down.resetAndDestroy();
    else this.down.destroy();
  }

  close(): void {
    this.finish(true);
  }
}

interface Mitm {
  port: number;
  tally: MitmTally;
  close(): Promise<void>;
}

async function startMitm(redisPort: number, o: RedisFuzzOptions, channel: string): Promise<Mitm> {
  const tally: MitmTally = { cases: 0, byKind: Object.fromEntries(MITM_KINDS.map((k) => [k, 0])) as Record<MitmKind, number>, replies: 0, mutated: 0, garbagePushes: 0, forgedEntries: 0, live: new Set() };
  const seen = new Seen();
  const conns = new Set<MitmConn>();
  let next = 0;
  const server = net.createServer((sock) => {
    const caseSeed = o.only ?? (o.seed * 1_000_003 + next++) >>> 0;
    const plan = mitmPlan(caseSeed, o.onlyKind);
    tally.cases++;
    tally.byKind[plan.kind]++;
    const c = new MitmConn(sock, redisPort, plan, tally, seen, channel);
    conns.add(c);
    sock.on('close', () => conns.delete(c));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    tally,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of conns) c.close();
        server.close(() => resolve());
      }),
  };
}

// ---- the valid sessions -------------------------------------------------------------------------

interface SessionTally {
  queries: number;
  reads: number;
  writes: number;
  maxLatencyMs: number;
  wrong: string[];
  hangs: string[];
}

async function extended(c: RawClient, sql: string, params: string[]): Promise<BackendMessage[]> {
  c.write(Buffer.concat([enc.parse('', sql), enc.bind('', '', params), enc.describe('P', ''), enc.execute(''), enc.sync()]));
  return c.readZ(1, QUERY_BOUND_MS);
}

/**
 * One valid session: reads of fixed rows and of its own rows, writes of its own rows, each answer
 * judged. A hang or a lost connection is recorded, then the session starts over (its own rows
 * read back from PostgreSQL directly: a write without an answer may or may not have committed).
 */
async function sessionLoop(port: number, pg: PgCluster, index: number, seed: number, stop: () => boolean, t: SessionTally, live: () => string): Promise<void> {
  const r = prng(seed);
  const own = Array.from({ length: OWN_ROWS }, (_, i) => index * OWN_ROWS + i + 1);
  const expected = new Map<number, number>(own.map((k) => [k, 0]));
  let writes = 0;
  let c: RawClient | null = null;
  while (!stop()) {
    let what = 'startup';
    const began = Date.now();
    try {
      if (c === null) {
        c = await RawClient.connect(port);
        c.sock.setNoDelay(true);
        const hello = await c.startup(USER);
        if (errorsIn(hello).length > 0 || hello[hello.length - 1]?.type !== 'Z') throw new Error(`startup: ${describeMessages(hello)}`);
        for (const [k, v] of (await pg.psql(`select k, v from fz_owned where k between ${own[0]} and ${own[OWN_ROWS - 1]}`)).split('\n').map((l) => l.split('|'))) {
          expected.set(Number(k), Number(v));
        }
      }
      const x = r();
      const ext = r() < 0.5;
      let msgs: BackendMessage[];
      let want: string | null = null;
      if (x < 0.55) {
        const k = 1 + Math.floor(r() * FIXED_ROWS);
        what = `${ext ? 'extended' : 'simple'} read of fz_fixed k=${k}`;
        msgs = ext ? await extended(c, 'select v from fz_fixed where k = $1', [String(k)]) : await c.query(`select v from fz_fixed where k = ${k}`, QUERY_BOUND_MS);
        want = fixedValue(k);
        t.reads++;
      } else if (x < 0.85) {
        const k = own[Math.floor(r() * OWN_ROWS)]!;
        what = `${ext ? 'extended' : 'simple'} read of own row fz_owned k=${k}`;
        msgs = ext ? await extended(c, 'select v from fz_owned where k = $1', [String(k)]) : await c.query(`select v from fz_owned where k = ${k}`, QUERY_BOUND_MS);
        want = String(expected.get(k));
        t.reads++;
      } else {
        const k = own[Math.floor(r() * OWN_ROWS)]!;
        const v = index * 1_000_000 + ++writes;
        const update = `update fz_owned set v = ${v} where k = ${k}`;
        const sql = r() < 0.3 ? `begin; ${update}; commit` : update;
        what = `write ${sql}`;
        expected.delete(k); // unknown until the answer says it committed
        msgs = await c.query(sql, QUERY_BOUND_MS);
        if (errorsIn(msgs).length > 0 || !msgs.some((m) => m.type === 'C' && m.body.toString('latin1').startsWith('UPDATE 1'))) throw new Error(`wrong answer: ${describeMessages(msgs)}`);
        expected.set(k, v);
        t.writes++;
      }
      t.queries++;
      t.maxLatencyMs = Math.max(t.maxLatencyMs, Date.now() - began);
      if (want !== null) {
        const got = column(msgs);
        if (errorsIn(msgs).length > 0 || got.length !== 1 || got[0] !== want) {
          throw new Error(`wrong answer: got ${JSON.stringify(got)} ${JSON.stringify(errorsIn(msgs))}, PostgreSQL has ${JSON.stringify(want)}`);
        }
      }
    } catch (err) {
      if (stop()) break;
      const m = (err as Error).message;
      const line = `session ${index}: ${what}: ${m} (after ${Date.now() - began} ms; Redis cases live: ${live()})`;
      if (/timed out/.test(m)) t.hangs.push(line);
      else t.wrong.push(line);
      c?.sock.destroy();
      c = null;
    }
  }
  c?.end();
}

// ---- the run ----------------------------------------------------------------------------------

const STACK_LINE = /^\s+at \S.*(:\d+:\d+\)?|\(native\)|<anonymous>\)?)$/;

export async function runRedisFuzz(o: RedisFuzzOptions): Promise<RedisFuzzResult> {
  let pg: PgCluster | null = null;
  let redis: RedisServer | null = null;
  let mitm: Mitm | null = null;
  let proxy: Proxy | null = null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-fuzz-redis-'));
  const t: SessionTally = { queries: 0, reads: 0, writes: 0, maxLatencyMs: 0, wrong: [], hangs: [] };
  const stackTraces: string[] = [];
  try {
    pg = await startCluster();
    await pg.psql(
      [
        'create table fz_fixed (k int primary key, v text)',
        `insert into fz_fixed values ${Array.from({ length: FIXED_ROWS }, (_, i) => `(${i + 1}, '${fixedValue(i + 1)}')`).join(', ')}`,
        'create table fz_owned (k int primary key, v bigint not null)',
        `insert into fz_owned select g, 0 from generate_series(1, ${o.sessions * OWN_ROWS}) g`,
        `grant all on fz_fixed, fz_owned to ${USER}`,
      ].join('; '),
    );
    redis = await startRedis();
    mitm = await startMitm(redis.port, o, 'pgscribe:events@0');
    proxy = await startProxy({
      upstreamPort: pg.port,
      args: [...PGSCRIBE_ARGS, '--redis', `127.0.0.1:${mitm.port}`, '--log', path.join(dir, 'queries.log'), ...(o.args ?? [])],
      stderrLimit: 1 << 20,
      onStderrLine: (line) => {
        if (STACK_LINE.test(line) && stackTraces.length < 20) stackTraces.push(line);
      },
    });
    const pid = proxy.proc.pid!;
    const rss = new RssSampler(pid);
    const started = Date.now();
    const deadline = started + o.durationS * 1000;
    const stop = (): boolean => Date.now() >= deadline || !proxy!.alive;
    const tally = mitm.tally;
    o.log(
      `fuzz-redis: seed ${o.seed}, ${o.durationS} s, ${o.sessions} valid sessions; replay a case with FUZZ_ONLY=<case seed>, a kind with FUZZ_KIND=<kind>`,
    );
    const progress = setInterval(
      () =>
        o.log(
          `fuzz-redis: ${Math.round((deadline - Date.now()) / 1000)} s left, ${tally.cases} cases, ${tally.mutated}/${tally.replies} replies mutated, ${t.queries} queries, ${t.wrong.length} wrong, ${t.hangs.length} hangs, rss ${(rss.maxBytes / 2 ** 20).toFixed(0)} MiB max`,
        ),
      30_000,
    );
    const live = (): string => [...tally.live].join(' ') || 'none';
    await Promise.all(Array.from({ length: o.sessions }, (_, i) => sessionLoop(proxy!.port, pg!, i, o.seed * 7 + i, stop, t, live)));
    clearInterval(progress);
    rss.stop();
    const counters: Record<string, number> = proxy.alive ? await proxy.stats().catch(() => ({})) : {};
    await sleep(1000);
    const rssEndBytes = rss.sample();
    return {
      seed: o.seed,
      durationS: Math.round((Date.now() - started) / 1000),
      cases: tally.cases,
      byKind: tally.byKind,
      replies: tally.replies,
      mutated: tally.mutated,
      garbagePushes: tally.garbagePushes,
      forgedEntries: tally.forgedEntries,
      queries: t.queries,
      reads: t.reads,
      writes: t.writes,
      wrongAnswers: t.wrong,
      hangs: t.hangs,
      maxLatencyMs: t.maxLatencyMs,
      stackTraces,
      pgscribeExited: proxy.alive ? null : `${JSON.stringify(proxy.exit)}: ${proxy.stderr().slice(-2000)}`,
      counters: Object.fromEntries(Object.entries(counters).filter(([k]) => k.startsWith('cache_'))),
      rssStartBytes: rss.startBytes,
      rssMaxBytes: rss.maxBytes,
      rssEndBytes,
    };
  } finally {
    if (proxy?.alive) await proxy.stop('SIGTERM', { killAfterMs: 5000 });
    await mitm?.close();
    await redis?.stop();
    await pg?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
