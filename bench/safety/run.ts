/**
 * One checker run: a throwaway PostgreSQL with the schema (schema.ts), optionally a redis-server,
 * pgscribe in front of it (test/harness/proxy.ts, any build), the clients, the admin and
 * optionally writes from elsewhere for `durationS`; then pgscribe's own counters (cache hits,
 * flight waiters) and everything torn down. Used by bench/safety-check.ts and the e2e test.
 */
import { startCluster, type PgCluster } from '../../test/harness/pg-cluster';
import { startProxy, type Proxy, type Stats } from '../../test/harness/proxy';
import { startRedis, type RedisServer } from '../../test/harness/redis';
import { prng } from '../../test/harness/prng';
import { sleep } from '../../test/harness/time';
import { adminLoop, elsewhereLoop } from './background';
import { clientLoop, type ClientContext, type Violation } from './client';
import { Conn, mustSimple } from './conn';
import { Model, type Family } from './model';
import { INITIAL_ROLE_DEFAULTS, MODEL_SEED_SQL, setupSql } from './schema';
import { RoleLocks } from './settings-ops';
import { ShapeOracle } from './shape';
import { Tally } from './tally';

/**
 * A run long enough to judge something: after `durationS` it goes on until it has judged this
 * many reads and committed writes and pgscribe has answered this many reads from its cache or a
 * flight, or until `maxDurationS`. A slower machine then runs longer instead of judging less.
 */
export interface Enough {
  reads: number;
  writes: number;
  cacheAnswers: number;
  maxDurationS: number;
}

export interface CheckOptions {
  durationS: number;
  /** Go past durationS until this much was judged (default: stop at durationS). */
  enough?: Enough;
  clients: number;
  seed: number;
  /** Extra pgscribe flags (after the checker's own). */
  extraArgs: string[];
  /** --workers N (null: not passed). */
  workers: number | null;
  redis: boolean;
  /** Pass --catalog-user postgres (builds before catalog mode lack the flag). */
  catalog: boolean;
  /** Another pgscribe build (its dist/main.js). */
  main?: string;
  /** No pgscribe: the clients talk to PostgreSQL itself (a check of the checker: must find nothing). */
  direct: boolean;
  /** Writes past pgscribe, straight to PostgreSQL. */
  elsewhere: boolean;
  elsewhereLagMs: number;
  /** Violations printed in full as they happen (the rest are counted). */
  printLimit: number;
  /** Where progress and violations go. */
  log(line: string): void;
}

export interface CheckResult {
  seed: number;
  /** How long the load ran (durationS, or more when `enough` extended it). */
  durationS: number;
  clients: number;
  pgscribeArgs: string[];
  main: string | null;
  tally: Tally;
  /** The first violations of each kind and read template, in full. */
  examples: Violation[];
  /** pgscribe's stats line at the end of the load. */
  proxyStats: Stats | null;
}

/** Violations kept in full per kind and read template. */
const EXAMPLES_PER_KIND = 3;

/** pgscribe's flags for a run. */
export function pgscribeArgs(o: CheckOptions, redis: RedisServer | null): string[] {
  return [
    '--cache', '--singleflight', '--cache-ttl', '60000',
    '--log', 'none',
    '--max-connections', String(o.clients + 20),
    ...(o.catalog ? ['--catalog-user', 'postgres'] : []),
    ...(o.workers !== null ? ['--workers', String(o.workers)] : []),
    ...(redis !== null ? ['--redis', `${redis.host}:${redis.port}`] : []),
    ...o.extraArgs,
  ];
}

async function seedModel(c: Conn, model: Model): Promise<void> {
  const [a] = await mustSimple(c, MODEL_SEED_SQL);
  for (const r of a!.rows) model.seed(r[0] as Family, Number(r[1]), Number(r[2]), r[3] ?? '', Number(r[4]));
  model.seed('shelftmp', 900, 1, '', 1); // TEMP_SHELF's row, in each session that makes it
}

export async function runSafetyCheck(o: CheckOptions): Promise<CheckResult> {
  let pg: PgCluster | null = null;
  let redis: RedisServer | null = null;
  let proxy: Proxy | null = null;
  let shapes: ShapeOracle | null = null;
  const tally = new Tally();
  const examples: Violation[] = [];
  try {
    pg = await startCluster({ conf: { max_connections: String(Math.max(300, o.clients + 60)) } });
    const direct = await Conn.open(pg.port, 'postgres', {});
    await mustSimple(direct, setupSql());
    const model = new Model();
    await seedModel(direct, model);
    direct.close();
    if (o.redis) redis = await startRedis();
    const args = o.direct ? [] : pgscribeArgs(o, redis);
    if (!o.direct) proxy = await startProxy({ upstreamPort: pg.port, args, ...(o.main ? { main: o.main } : {}), detached: true, stderrLimit: 1 << 20 });
    o.log(`safety-check: seed ${o.seed}, ${o.clients} clients, ${o.durationS} s, ${o.direct ? 'straight to PostgreSQL (no pgscribe)' : `pgscribe ${o.main ?? '(this build)'} ${args.join(' ')}`}`);
    shapes = await ShapeOracle.open(pg.port);

    const startedAt = Date.now();
    const end = { at: startedAt + o.durationS * 1000 };
    const inflight = new Map<number, number>();
    model.lowWater = () => Math.min(model.clock, ...inflight.values());
    const ctx: ClientContext = {
      port: proxy?.port ?? pg.port,
      model,
      shapes,
      roleDefaults: new Map(Object.entries(INITIAL_ROLE_DEFAULTS)),
      roleLocks: new RoleLocks(),
      tally,
      inflight,
      stopping: () => Date.now() >= end.at || (proxy !== null && !proxy.alive),
      report: (v) => {
        tally.violation(v.kind, v.template);
        // The first few of each kind and read: a rare kind is not crowded out by a frequent one.
        if ((tally.violationsByTemplate[`${v.kind} <- ${v.template}`] ?? 0) <= EXAMPLES_PER_KIND) examples.push(v);
        if (tally.totalViolations <= o.printLimit) o.log(formatViolation(v));
      },
    };
    const loops: Promise<void>[] = [];
    for (let i = 0; i < o.clients; i++) loops.push(clientLoop(ctx, i, prng(o.seed * 1000 + i)));
    loops.push(adminLoop(ctx, prng(o.seed * 1000 + 999)));
    if (o.elsewhere) loops.push(elsewhereLoop(ctx, pg.port, o.elsewhereLagMs, prng(o.seed * 1000 + 998)));
    const progress = setInterval(() => {
      o.log(`safety-check: ${Math.round((end.at - Date.now()) / 1000)} s left, ${tally.reads} reads, ${tally.writesCommitted} writes, ${tally.totalViolations} violations`);
    }, 30_000);
    const extending = o.enough !== undefined && proxy !== null ? extendUntilEnough(o.enough, startedAt, end, proxy, tally, o.log) : null;
    await Promise.all(loops);
    clearInterval(progress);
    await extending;
    if (proxy !== null && !proxy.alive) throw new Error(`pgscribe exited during the run (${JSON.stringify(proxy.exit)}): ${proxy.stderr().slice(-2000)}`);
    const proxyStats = proxy === null ? null : await proxy.stats();
    return { seed: o.seed, durationS: Math.round((Date.now() - startedAt) / 1000), clients: o.clients, pgscribeArgs: args, main: o.main ?? null, tally, examples, proxyStats };
  } finally {
    shapes?.close();
    if (proxy?.alive) await proxy.stop('SIGTERM', { killAfterMs: 5000 });
    await redis?.stop();
    await pg?.stop();
  }
}

function cacheAnswers(stats: Stats): number {
  return (stats['cache_hits'] ?? 0) + (stats['cache_waiters'] ?? 0);
}

/**
 * A little before the planned end, asks pgscribe for its counters and moves the end on by 5 s
 * while the run has not judged `enough`, up to `enough.maxDurationS`.
 */
async function extendUntilEnough(enough: Enough, startedAt: number, end: { at: number }, proxy: Proxy, tally: Tally, log: (s: string) => void): Promise<void> {
  const hardStop = startedAt + enough.maxDurationS * 1000;
  for (;;) {
    await sleep(Math.max(0, end.at - 3000 - Date.now()));
    if (end.at >= hardStop || !proxy.alive) return;
    const stats = await proxy.stats().catch(() => null);
    if (stats === null) return;
    const answers = cacheAnswers(stats);
    if (tally.reads >= enough.reads && tally.writesCommitted >= enough.writes && answers >= enough.cacheAnswers) return;
    end.at = Math.min(hardStop, end.at + 5000);
    log(`safety-check: not enough judged yet (${tally.reads} reads, ${tally.writesCommitted} writes, ${answers} cache answers): running on to ${Math.round((end.at - startedAt) / 1000)} s`);
  }
}

/** A violation in full: the session, its settings, the statement, the answer, what was expected. */
export function formatViolation(v: Violation): string {
  return [
    `VIOLATION ${v.kind} (client ${v.client} session ${v.session}, read ${v.template})`,
    `  session:   ${v.state}`,
    `  statement: [${v.protocol}] ${v.statement}${v.params.length ? `  params [${v.params.join(', ')}]` : ''}`,
    `  answer:    ${v.answer}`,
    `  expected:  ${v.detail}`,
    '  history (oldest first):',
    ...v.history.map((h) => `    ${h}`),
  ].join('\n');
}
