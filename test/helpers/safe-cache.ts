// The regression tests of issue 14 ("the cache must never give an answer PostgreSQL would not"):
// the pgscribe flags they run with (one place: safeCacheArgs), the modes (event loop or worker
// threads, alone or two instances sharing Redis), and the oracle. PostgreSQL is the oracle: a
// scenario's steps run once straight against the cluster and once through pgscribe, each time
// on freshly set-up objects, and what the scenario observed is compared, label by label.
//
// A scenario opens its sessions through a Target. Sessions "via 1" go through the second
// instance when two share Redis (so that an answer reaches them through the shared cache), and
// through the same pgscribe otherwise; a direct Target ignores `via`. `truth()` reads straight
// from PostgreSQL whatever the target: what really happened (a side effect that did or did not
// run), never a cached answer.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Test } from 'tap';
import type { PgCluster } from '../harness/pg-cluster';
import { PG_BIN, USERS } from '../harness/pg-cluster';
import type { Proxy } from '../harness/proxy';
import { startRedis, type RedisServer } from '../harness/redis';
import { run as runCommand } from '../harness/run';
import { sleep, waitFor } from '../harness/time';
import { WORKER_MODES, extUnit, workerArgs, type UnitOptions } from './cache';
import { clusterAndProxies, type ProxyFixture } from './fixture';
import { RawClient, describeMessages, enc, errorFields, type BackendMessage } from '../harness/wire';

/** The cache flags every issue-14 test runs pgscribe with (besides the worker and Redis flags). */
export const SAFE_CACHE_FLAGS: readonly string[] = ['--cache', '--singleflight', '--cache-ttl', '60000'];

/**
 * The flags of a pgscribe under test: the cache flags, the worker threads, and pgscribe's own
 * catalog connection as the superuser. PGSCRIBE_TEST_NO_CATALOG=1 leaves --catalog-user out, for
 * builds that predate it (to show that the tests fail there for the reason the issue gives).
 */
export function safeCacheArgs(workers: number): string[] {
  const args = [...SAFE_CACHE_FLAGS, ...workerArgs(workers)];
  if (process.env.PGSCRIBE_TEST_NO_CATALOG !== '1') args.push('--catalog-user', 'postgres');
  return args;
}

/** One way to run pgscribe: worker threads or not, one instance or two sharing Redis. */
export interface CacheMode {
  readonly workers: number;
  readonly redis: boolean;
  readonly name: string;
}

/**
 * Every worker mode (WORKER_MODES), each alone and as two instances sharing Redis.
 * PGSCRIBE_TEST_REDIS=0 leaves the Redis modes out, =only keeps them alone (when debugging).
 */
export function cacheModes(redisApplies = true): CacheMode[] {
  const env = process.env.PGSCRIBE_TEST_REDIS;
  const out: CacheMode[] = [];
  for (const workers of WORKER_MODES) {
    if (env !== 'only') out.push({ workers, redis: false, name: `workers=${workers}` });
    if (redisApplies && env !== '0') out.push({ workers, redis: true, name: `workers=${workers} --redis (two instances)` });
  }
  return out;
}

// ---- answers ---------------------------------------------------------------------------------

/** A printable rendering of a value's bytes: the text when it is printable UTF-8, else hex. */
function render(b: Buffer): string {
  const s = b.toString('utf8');
  if (Buffer.from(s, 'utf8').equals(b) && !/[\u0000-\u001f\u007f\ufffd]/.test(s)) return s;
  return '\\x' + b.toString('hex');
}

/** The columns of a DataRow body (null for NULL). */
function dataRow(body: Buffer): (Buffer | null)[] {
  const out: (Buffer | null)[] = [];
  let off = 2;
  for (let i = 0; i < body.readInt16BE(0); i++) {
    const len = body.readInt32BE(off);
    off += 4;
    out.push(len < 0 ? null : body.subarray(off, off + len));
    if (len > 0) off += len;
  }
  return out;
}

/** One message, as the summaries show it. */
function summarizeOne(m: BackendMessage): string {
  const b = m.body;
  switch (m.type) {
    case 'T': {
      const cols: string[] = [];
      let off = 2;
      for (let i = 0; i < b.readInt16BE(0); i++) {
        const end = b.indexOf(0, off);
        const name = b.toString('utf8', off, end);
        off = end + 1;
        const typeOid = b.readInt32BE(off + 6);
        const format = b.readInt16BE(off + 16);
        off += 18;
        cols.push(`${name}:${typeOid}/${format}`);
      }
      return `T(${cols.join(',')})`;
    }
    case 't': {
      const oids: number[] = [];
      for (let i = 0; i < b.readInt16BE(0); i++) oids.push(b.readInt32BE(2 + 4 * i));
      return `t(${oids.join(',')})`;
    }
    case 'D':
      return `D(${dataRow(b).map((v) => (v === null ? 'NULL' : render(v))).join('|')})`;
    case 'C':
      return `C(${b.toString('utf8', 0, b.indexOf(0))})`;
    case 'E':
    case 'N': {
      const f = errorFields(b);
      return `${m.type}(${f['C']}: ${f['M']})`;
    }
    case 'S': {
      const end = b.indexOf(0);
      return `S(${b.toString('utf8', 0, end)}=${b.toString('utf8', end + 1, b.indexOf(0, end + 1))})`;
    }
    case 'Z':
      return `Z(${String.fromCharCode(b[0]!)})`;
    case 'V': {
      const len = b.readInt32BE(0);
      return `V(${len < 0 ? 'NULL' : render(b.subarray(4, 4 + len))})`;
    }
    default:
      return m.type;
  }
}

/** What a session got back for one request. */
export class Answer {
  constructor(readonly msgs: BackendMessage[]) {}

  /** Every message in one line: `T(v:23/0) D(1) C(SELECT 1) Z(I)`; errors with SQLSTATE and message. */
  get text(): string {
    return this.msgs.map(summarizeOne).join(' ');
  }

  /** The rows, every column as text (null for NULL). */
  get rows(): (string | null)[][] {
    return this.msgs.filter((m) => m.type === 'D').map((m) => dataRow(m.body).map((v) => (v === null ? null : v.toString('utf8'))));
  }

  /** The rows, one line: `a|b; c|d` (NULL for NULL), or the errors when there are no rows. */
  get data(): string {
    const errs = this.errors;
    const rows = this.rows.map((r) => r.map((v) => v ?? 'NULL').join('|')).join('; ');
    return errs.length > 0 ? `${rows}${rows === '' ? '' : ' '}ERROR ${errs.join(', ')}` : rows;
  }

  /** The first column of the first row. */
  get value(): string | null {
    return this.rows[0]?.[0] ?? null;
  }

  /** ErrorResponses, as `SQLSTATE: message`. */
  get errors(): string[] {
    return this.msgs.filter((m) => m.type === 'E').map((m) => {
      const f = errorFields(m.body);
      return `${f['C']}: ${f['M']}`;
    });
  }
}

// ---- sessions and targets --------------------------------------------------------------------

export interface SessionOptions {
  /** Login role (default: the harness's trust user). */
  user?: string;
  database?: string;
  /** Through the second instance when two share Redis (default 0). */
  via?: 0 | 1;
  /** More startup parameters (options, application_name ...). */
  params?: Record<string, string>;
}

/** One session, direct or through pgscribe. */
export class Sess {
  constructor(
    readonly c: RawClient,
    private readonly before: () => Promise<void>,
    private readonly errors: string[],
    readonly label: string,
  ) {}

  /** Write bytes, read through n ReadyForQuery. */
  async raw(bytes: Buffer, n = 1): Promise<Answer> {
    await this.before();
    this.c.write(bytes);
    const a = new Answer(await this.c.readZ(n, 15000));
    for (const e of a.errors) this.errors.push(`${this.label}: ${e}`);
    return a;
  }

  /** A simple Query. */
  q(sql: string): Promise<Answer> {
    return this.raw(enc.query(sql));
  }

  /** An extended-protocol unit `[P] B [D] E S` (test/helpers/cache.ts). */
  ext(u: UnitOptions): Promise<Answer> {
    return this.raw(extUnit(u));
  }

  /** A fastpath FunctionCall of function `oid` with text arguments. */
  fastpath(oid: number, args: (string | null)[]): Promise<Answer> {
    return this.raw(enc.functionCall(oid, args));
  }

  close(): void {
    if (!this.c.closed) this.c.write(enc.terminate());
    this.c.sock.destroy();
  }
}

export interface Target {
  /** 'direct' (PostgreSQL alone: the oracle) or 'pgscribe'. */
  readonly kind: 'direct' | 'pgscribe';
  /** A new session. */
  session(o?: SessionOptions): Promise<Sess>;
  /**
   * One psql session (a real client) running each command in turn (`psql -c ... -c ...`):
   * its output (unaligned, tuples only), or its error output when it fails.
   */
  psql(commands: readonly string[], o?: SessionOptions): Promise<string>;
  /** Statements run one by one as the superuser straight to PostgreSQL (the operator's own psql), whatever the target. */
  truth(sql: string, database?: string): Promise<Answer>;
  /**
   * Run `change` (statements straight to PostgreSQL that change what the catalog or the settings
   * say: DDL, a configuration reload), then wait until every pgscribe instance noticed it (its
   * catalog poll dropped the database's cached answers: its cache_invalidations moved on).
   * pgscribe can see such a change only that way; the direct run just runs it.
   */
  catalogChange(change: () => Promise<void>): Promise<void>;
}

const PSQL = fs.existsSync(path.join(PG_BIN, 'psql')) ? path.join(PG_BIN, 'psql') : 'psql';

/** Open a raw session on port and finish a trust startup; throws unless it ends in ReadyForQuery. */
async function openRaw(port: number, o: SessionOptions): Promise<RawClient> {
  const c = await RawClient.connect(port);
  c.sock.setNoDelay(true);
  const startup = await c.startup(o.user ?? USERS.trust.user, o.database ?? 'postgres', o.params ?? {});
  if (startup[startup.length - 1]?.type !== 'Z') {
    c.sock.destroy();
    throw new Error(`startup of ${o.user ?? USERS.trust.user} on port ${port} did not finish: ${describeMessages(startup)}`);
  }
  return c;
}

/** Run statements one Query each as the superuser, straight to PostgreSQL; throws on the first error. */
export async function admin(pg: PgCluster, statements: readonly string[], database = 'postgres'): Promise<Answer[]> {
  if (statements.length === 0) return [];
  const c = await openRaw(pg.port, { user: 'postgres', database });
  try {
    const out: Answer[] = [];
    for (const sql of statements) {
      const a = new Answer(await c.query(sql, 60_000));
      if (a.errors.length > 0) throw new Error(`statement failed: ${sql}: ${a.errors.join(', ')}`);
      out.push(a);
    }
    return out;
  } finally {
    c.sock.destroy();
  }
}

/** Sessions a run opened, closed when it ends; the errors PostgreSQL raised in them. */
class Run implements Target {
  readonly sessions: Sess[] = [];
  readonly errors: string[] = [];
  private n = 0;

  /** The instance of the last request (-1: none yet). */
  private lastVia = -1;

  /**
   * portOf: the port of an instance; settle(v): called before a request goes through another
   * instance than the previous one, v being the previous one.
   */
  constructor(
    readonly kind: 'direct' | 'pgscribe',
    private readonly pg: PgCluster,
    private readonly portOf: (via: 0 | 1) => number,
    private readonly settle: ((previous: 0 | 1) => Promise<void>) | null,
    private readonly instances: readonly Proxy[] = [],
  ) {}

  async catalogChange(change: () => Promise<void>): Promise<void> {
    const before = await Promise.all(this.instances.map(async (p) => (await p.stats())['cache_invalidations'] ?? 0));
    await change();
    await Promise.all(
      this.instances.map((p, i) =>
        waitFor(async () => (((await p.stats())['cache_invalidations'] ?? 0) > before[i]! ? true : undefined), {
          timeoutMs: 20_000,
          intervalMs: 50,
          timeout: () => 'pgscribe did not notice the change made straight in PostgreSQL',
        }),
      ),
    );
  }

  /** Before a request through instance `via`. */
  private async switchTo(via: 0 | 1): Promise<void> {
    const last = this.lastVia;
    this.lastVia = via;
    if (this.settle !== null && last >= 0 && last !== via) await this.settle(last as 0 | 1);
  }

  async session(o: SessionOptions = {}): Promise<Sess> {
    const via = o.via ?? 0;
    const c = await openRaw(this.portOf(via), o);
    const s = new Sess(c, () => this.switchTo(via), this.errors, `session ${++this.n} (${o.user ?? USERS.trust.user})`);
    this.sessions.push(s);
    return s;
  }

  async psql(commands: readonly string[], o: SessionOptions = {}): Promise<string> {
    const env: NodeJS.ProcessEnv = { ...process.env, PGHOST: '127.0.0.1', PGPORT: String(this.portOf(o.via ?? 0)), PGUSER: o.user ?? USERS.trust.user, PGDATABASE: o.database ?? 'postgres' };
    for (const k of ['PGPASSWORD', 'PGSERVICE', 'PGPASSFILE', 'PGOPTIONS', 'PGAPPNAME']) delete env[k];
    if (o.params?.['options'] !== undefined) env['PGOPTIONS'] = o.params['options'];
    if (o.params?.['application_name'] !== undefined) env['PGAPPNAME'] = o.params['application_name'];
    await this.switchTo(o.via ?? 0);
    const r = await runCommand(PSQL, ['-X', '-A', '-t', '-w', '-v', 'ON_ERROR_STOP=1', ...commands.flatMap((c) => ['-c', c])], { env, timeoutMs: 30_000 });
    if (r.code !== 0) {
      this.errors.push(`psql: ${r.stderr.trim()}`);
      return `psql failed: ${r.stderr.trim()}`;
    }
    return r.stdout.replace(/\n+$/, '');
  }

  async truth(sql: string, database = 'postgres'): Promise<Answer> {
    const [a] = await admin(this.pg, [sql], database);
    return a!;
  }

  close(): void {
    for (const s of this.sessions) s.close();
  }
}

// ---- scenarios -------------------------------------------------------------------------------

/** What a scenario observed, by label: compared label by label between PostgreSQL and pgscribe. */
export type Observations = Record<string, string>;

export interface Scenario {
  readonly name: string;
  /** Statements run as the superuser straight to PostgreSQL before each run (so: idempotent). */
  readonly setup?: readonly string[];
  /** The database the setup runs in (default postgres). */
  readonly setupDb?: string;
  /** Run after each run, as the setup (undo what outlives a session: ALTER SYSTEM, role settings). */
  readonly teardown?: readonly string[];
  /** Errors are part of what PostgreSQL answers here (else an error in the direct run means a broken setup). */
  readonly errorsExpected?: boolean;
  /** Pairs of labels whose answers differ when run straight against PostgreSQL: the scenario tells the states apart. */
  readonly distinct?: readonly (readonly [string, string])[];
  run(x: Target): Promise<Observations>;
}

/**
 * Soft wait until an instance has stored in Redis what it stored locally, so that a read through
 * the other instance can find it there (each stats line costs ~200 ms: done only when the next
 * request goes through the other instance).
 */
async function settleL2(p: Proxy): Promise<void> {
  try {
    await waitFor(
      async () => {
        const s = await p.stats();
        return (s['cache_l2_stores'] ?? 0) + (s['cache_l2_hits'] ?? 0) >= (s['cache_stores'] ?? 0) ? true : undefined;
      },
      { timeoutMs: 2000, intervalMs: 10, timeout: () => 'not settled' },
    );
  } catch {
    // Not an assertion: a build whose counters mean something else only loses the wait.
  }
}

let prefixes = 0;

/**
 * One file of issue-14 scenarios: a throwaway cluster (and a redis-server for the Redis modes),
 * `once` run as the superuser before anything (roles, databases), then for each mode a control
 * (pgscribe does answer a plain read from its cache, so that a scenario cannot pass because
 * nothing is cached) and every scenario, each with a fresh pgscribe (or pair).
 */
export function issue14Suite(
  tap: Test,
  o: { once?: readonly string[]; scenarios: readonly Scenario[]; redis?: boolean },
): { pg: () => PgCluster; fx: ProxyFixture } {
  const { pg, fx } = clusterAndProxies(tap);
  const modes = cacheModes(o.redis !== false);
  let redis: RedisServer | null = null;
  tap.before(async () => {
    if (modes.some((m) => m.redis)) redis = await startRedis();
    await admin(pg(), [...(o.once ?? []), 'CREATE TABLE IF NOT EXISTS issue14_control (id int PRIMARY KEY, v text)', `GRANT SELECT ON issue14_control TO PUBLIC`]);
    await admin(pg(), ["INSERT INTO issue14_control VALUES (1, 'one') ON CONFLICT DO NOTHING"]);
  });
  tap.teardown(async () => {
    await redis?.stop();
  });

  const launch = async (mode: CacheMode): Promise<Proxy[]> => {
    const args = safeCacheArgs(mode.workers);
    if (!mode.redis) return [await fx.launch(args)];
    const shared = [...args, '--redis', `127.0.0.1:${redis!.port}`, '--redis-prefix', `i14-${process.pid}-${++prefixes}:`, '--redis-timeout-ms', '2000'];
    const pair = await Promise.all([fx.launch(shared), fx.launch(shared)]);
    await Promise.all(pair.map((p) => p.waitStderr(/redis: shared cache available/)));
    return pair;
  };

  const proxyRun = (instances: Proxy[], mode: CacheMode): Run =>
    new Run('pgscribe', pg(), (via) => instances[Math.min(via, instances.length - 1)]!.port, mode.redis ? (v) => settleL2(instances[v]!) : null, instances);

  /** The direct run of each scenario, once for every mode (PostgreSQL's answers do not depend on pgscribe's mode). */
  const directRuns = new Map<Scenario, Promise<{ want: Observations; errors: string[] }>>();
  const directRun = (sc: Scenario): Promise<{ want: Observations; errors: string[] }> => {
    let r = directRuns.get(sc);
    if (r === undefined) {
      r = (async () => {
        const direct = new Run('direct', pg(), () => pg().port, null);
        try {
          await admin(pg(), sc.setup ?? [], sc.setupDb);
          return { want: await sc.run(direct), errors: direct.errors };
        } finally {
          direct.close();
          await admin(pg(), sc.teardown ?? [], sc.setupDb);
        }
      })();
      directRuns.set(sc, r);
    }
    return r;
  };

  const compare = async (
    t: Test,
    sc: Scenario,
    mode: CacheMode,
  ): Promise<void> => {
    const { want, errors } = await directRun(sc);
    if (sc.errorsExpected !== true) t.same(errors, [], 'straight to PostgreSQL: no error (the scenario is set up right)');
    for (const [a, b] of sc.distinct ?? []) {
      t.not(want[a], want[b], `straight to PostgreSQL, "${a}" and "${b}" differ (the scenario tells the two states apart)`);
    }

    // Set up before pgscribe starts: what it learns of the catalog at start is then current.
    await admin(pg(), sc.setup ?? [], sc.setupDb);
    const instances = await launch(mode);
    const run = proxyRun(instances, mode);
    let got: Observations;
    try {
      got = await sc.run(run);
    } finally {
      run.close();
      for (const p of instances) await fx.stopProxy(p);
      await admin(pg(), sc.teardown ?? [], sc.setupDb);
    }
    for (const [label, w] of Object.entries(want)) t.equal(got[label], w, `${label}: as PostgreSQL answers`);
  };

  for (const mode of modes) {
    tap.test(mode.name, async (t) => {
      await t.test('control: a plain read in two sessions is answered once by PostgreSQL, then from the cache', async (t) => {
        const instances = await launch(mode);
        const run = proxyRun(instances, mode);
        try {
          const sql = 'SELECT v FROM issue14_control WHERE id = 1';
          const a = await (await run.session()).q(sql);
          const b = await (await run.session({ via: 1 })).q(sql);
          t.equal(a.data, 'one', 'first session: the row');
          t.equal(b.data, 'one', 'second session: the row');
          let hits = 0;
          for (const p of instances) {
            const s = await p.stats();
            hits += (s['cache_hits'] ?? 0) + (s['cache_l2_hits'] ?? 0);
          }
          t.ok(hits >= 1, `the second read was answered from the cache (${hits} hits)`);
        } finally {
          run.close();
          for (const p of instances) await fx.stopProxy(p);
        }
      });
      for (const sc of o.scenarios) {
        await t.test(sc.name, async (t) => {
          await compare(t, sc, mode);
        });
      }
    });
  }

  return { pg, fx };
}

/** A short pause so that the clock moves on between two reads of it ('now' is microseconds). */
export function tick(): Promise<void> {
  return sleep(5);
}

/**
 * Setup: public.sp_items and tenant_a.sp_items, one row each, both readable: which one an
 * unqualified name reaches is the session's search order. tenant_b is dropped (a scenario may
 * create it).
 */
export const SHARED_AND_TENANT_A: readonly string[] = [
  'DROP SCHEMA IF EXISTS tenant_a CASCADE',
  'DROP SCHEMA IF EXISTS tenant_b CASCADE',
  'DROP TABLE IF EXISTS sp_items',
  'CREATE SCHEMA tenant_a',
  'CREATE TABLE tenant_a.sp_items (body text)',
  "INSERT INTO tenant_a.sp_items VALUES ('tenant_a row')",
  'CREATE TABLE public.sp_items (body text)',
  "INSERT INTO public.sp_items VALUES ('public row')",
  'GRANT USAGE ON SCHEMA tenant_a TO PUBLIC',
  'GRANT SELECT ON tenant_a.sp_items, public.sp_items TO PUBLIC',
];

/** Setup: one bytea value, whose text form bytea_output decides. */
export const BLOBS: readonly string[] = ['DROP TABLE IF EXISTS blobs', 'CREATE TABLE blobs (b bytea)', "INSERT INTO blobs VALUES ('\\x00ff41'::bytea)", 'GRANT SELECT ON blobs TO PUBLIC'];

/**
 * R reads `read`; another session (through the other instance) runs `writes`; R and a new session
 * read again. PostgreSQL's answers before and after differ (the writes change what R reads).
 */
export function readsAroundWrites(name: string, setup: readonly string[], read: string, writes: readonly string[],
  readOpts: SessionOptions = {}, writeOpts: SessionOptions = {}): Scenario {
  return {
    name,
    setup,
    distinct: [['R reads, before', 'R reads, after']],
    async run(x) {
      const r = await x.session(readOpts);
      const before = (await r.q(read)).data;
      const w = await x.session({ ...writeOpts, via: 1 });
      for (const sql of writes) await w.q(sql);
      return {
        'R reads, before': before,
        'R reads, after': (await r.q(read)).data,
        'a new session reads, after': (await (await x.session({ ...readOpts, via: 1 })).q(read)).data,
      };
    },
  };
}

/** Setup: rows owned by alice and by bob, each visible only to its owner (RLS on current_user). */
export const OWNED: readonly string[] = [
  'DROP TABLE IF EXISTS owned',
  'CREATE TABLE owned (owner name, body text)',
  "INSERT INTO owned VALUES ('alice', 'alice row'), ('bob', 'bob row')",
  'ALTER TABLE owned ENABLE ROW LEVEL SECURITY',
  'CREATE POLICY mine ON owned USING (owner = current_user)',
  'GRANT SELECT ON owned TO PUBLIC',
];
