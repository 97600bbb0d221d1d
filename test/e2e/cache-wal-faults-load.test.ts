// Issue 16, faults under load: the four faults of the acceptance (the server restarted, the
// walsender terminated, its slot dropped, the walsender stopped past the stall detector), each
// while 6 clients read and write a small hot set through pgscribe and one writer updates the same
// rows straight on PostgreSQL.
//
// Tables: `hot` (written through pgscribe by the clients and straight), `src` whose trigger copies
// each write into `mirror` (written straight and through pgscribe by a session of its own: a
// session that writes a table with triggers is never answered from the cache again, since a
// trigger may change the session, and pgscribe drops the whole database after such a write), and
// `cold`, written only straight on PostgreSQL, once before the fault and once right after it, when
// the stream cannot see the write, then left alone. The trigger writer stops before the fault, so
// that only the new slot's gap drops what `cold` had cached: a gap that drops nothing shows up as
// stale `cold` reads (the restart's catalog reconnection drops the database too, so not there).
//
// The oracle: a read sent after version v of a row was acknowledged must return >= v. A write
// through pgscribe counts at once (read-your-writes); a write straight on PostgreSQL counts once it
// is LAG_MS old (the stream's lag), and not while the stream may be broken without pgscribe
// knowing it yet (the stall: up to the stall detector's 15 s).
//
// PGSCRIBE_FAULT_SEED=n replays the clients' choices (the timing is the machine's);
// PGSCRIBE_FAULT_ONLY=word runs the faults whose name holds it.
import t, { type Test as Tap } from 'tap';
import { startCluster, type PgCluster } from '../harness/pg-cluster';
import { prng } from '../harness/prng';
import type { Proxy } from '../harness/proxy';
import { sleep, waitFor } from '../harness/time';
import { column, enc, errorFields, RawClient, type BackendMessage } from '../harness/wire';
import { proxyFixture } from '../helpers/fixture';
import { admin, Answer } from '../helpers/safe-cache';

let pg: PgCluster;
const fx = proxyFixture({ upstreamPort: () => pg.port, user: 'postgres' });
const HOUR = '3600000';
const WAL = ['--cache', '--cache-ttl', HOUR, '--cache-invalidation', 'wal', '--catalog-user', 'postgres'];

const SEED = Number(process.env['PGSCRIBE_FAULT_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
const CLIENTS = 6;
const HOT_ROWS = 20;
const COLD_ROWS = 5;
/** A write straight on PostgreSQL is judged once this old: the stream's lag, generously. */
const LAG_MS = 3000;
/** Share of a client's requests that write `hot` (the rest read). */
const WRITE_SHARE = 0.03;
/** Pause of the direct writer, and of the trigger writer, between two writes. */
const DIRECT_PACE_MS = 100;
const TRIGGER_PACE_MS = 200;
/** SQLSTATEs PostgreSQL's restart itself causes: its shutdown, its start-up, the session lost, no server to connect to. */
const RESTART_CODES = new Set(['57P01', '57P02', '57P03', '08006', '08001', '08003']);

t.before(async () => {
  pg = await startCluster();
  await admin(pg, [
    ...['hot', 'src', 'mirror'].map((tb) => `CREATE TABLE ${tb} (id int PRIMARY KEY, ver int NOT NULL)`),
    'CREATE TABLE cold (id int PRIMARY KEY, ver int NOT NULL)',
    ...['hot', 'src', 'mirror'].map((tb) => `INSERT INTO ${tb} SELECT g, 0 FROM generate_series(1, ${HOT_ROWS}) g`),
    `INSERT INTO cold SELECT g, 0 FROM generate_series(1, ${COLD_ROWS}) g`,
    // mirror.ver follows src.ver: the row lock on src orders the copies as it orders the writes.
    'CREATE FUNCTION src_mirror() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE mirror SET ver = NEW.ver WHERE id = NEW.id; RETURN NEW; END $$',
    'CREATE TRIGGER src_mirror AFTER UPDATE ON src FOR EACH ROW EXECUTE FUNCTION src_mirror()',
  ]);
});

t.teardown(async () => {
  control?.sock.destroy();
  await fx.cleanup();
  await pg?.stop();
});

const stat = async (p: Proxy, k: string): Promise<number> => (await p.stats())[k] ?? 0;

interface Key {
  table: 'hot' | 'src' | 'mirror' | 'cold';
  id: number;
}
const KEYS: readonly Key[] = [
  ...Array.from({ length: HOT_ROWS }, (_, i): Key => ({ table: 'hot', id: i + 1 })),
  ...Array.from({ length: HOT_ROWS }, (_, i): Key => ({ table: 'src', id: i + 1 })),
  ...Array.from({ length: HOT_ROWS }, (_, i): Key => ({ table: 'mirror', id: i + 1 })),
  ...Array.from({ length: COLD_ROWS }, (_, i): Key => ({ table: 'cold', id: i + 1 })),
];
const name = (k: Key): string => `${k.table}:${k.id}`;
const readSql = (k: Key): string => `SELECT ver FROM ${k.table} WHERE id = ${k.id}`;

interface Floor {
  ver: number;
  directAt: number | null;
}

/** What was acknowledged, per row, and the least version a read sent now may return. */
class Model {
  private readonly viaProxy = new Map<string, number>();
  /** Straight on PostgreSQL: [acknowledged at, version], in acknowledgement order (one writer per table). */
  private readonly direct = new Map<string, [number, number][]>();
  /** Off while the stream may be broken without pgscribe knowing it yet. */
  judgeDirect = true;
  reads = 0;
  /** Reads whose floor came from a write straight on PostgreSQL, after the fault (the gap's part of the oracle). */
  judgedDirectAfterFault = 0;
  faultAt = Infinity;
  readonly stale: string[] = [];

  ackProxy(row: string, ver: number): void {
    if (ver > (this.viaProxy.get(row) ?? -1)) this.viaProxy.set(row, ver);
  }

  ackDirect(row: string, ver: number, at: number): void {
    let list = this.direct.get(row);
    if (list === undefined) this.direct.set(row, (list = []));
    list.push([at, ver]);
  }

  /** The floor of a read of row sent at `sentAt`; `directAt`: when the direct write that set it was acknowledged. */
  floor(row: string, sentAt: number): Floor {
    const proxied = this.viaProxy.get(row) ?? -1;
    if (!this.judgeDirect) return { ver: proxied, directAt: null };
    const list = this.direct.get(row) ?? [];
    for (let i = list.length - 1; i >= 0; i--) {
      const [at, ver] = list[i]!;
      if (at <= sentAt - LAG_MS) return ver > proxied ? { ver, directAt: at } : { ver: proxied, directAt: null };
    }
    return { ver: proxied, directAt: null };
  }

  check(row: string, got: number, floor: Floor, sentAt: number, who: string): void {
    this.reads++;
    if (floor.directAt !== null && sentAt > this.faultAt) this.judgedDirectAfterFault++;
    if (got >= floor.ver) return;
    const rel = (at: number): string => (Number.isFinite(this.faultAt) ? `${at - this.faultAt} ms after the fault` : 'before the fault');
    const how = floor.directAt === null ? 'through pgscribe' : `straight on PostgreSQL, ${rel(floor.directAt)}`;
    this.stale.push(`${who} read ${row} = ${got}, sent ${rel(sentAt)}, after ${floor.ver} was acknowledged (${how})`);
  }
}

/** One request's answer: its messages, and whether the connection closed before ReadyForQuery. */
interface Reply {
  msgs: BackendMessage[];
  closed: boolean;
}

/** Send one Query and read up to ReadyForQuery, keeping an ErrorResponse that came before a close. */
async function ask(c: RawClient, sql: string): Promise<Reply> {
  c.write(enc.query(sql));
  return readReply(c);
}

async function readReply(c: RawClient): Promise<Reply> {
  const msgs: BackendMessage[] = [];
  for (;;) {
    let m: BackendMessage;
    try {
      m = await c.read(30_000);
    } catch (err) {
      if (c.closed) return { msgs, closed: true };
      throw err;
    }
    msgs.push(m);
    if (m.type === 'Z') return { msgs, closed: false };
  }
}

const codes = (r: Reply): string[] => r.msgs.filter((m) => m.type === 'E').map((m) => errorFields(m.body)['C'] ?? '?');
const describe = (r: Reply): string =>
  [...r.msgs.filter((m) => m.type === 'E').map((m) => JSON.stringify(errorFields(m.body))), ...(r.closed ? ['(closed)'] : [])].join(' ');

/** The load: clients through pgscribe, one writer straight on PostgreSQL, until stop(). */
class Load {
  private running = true;
  private readonly loops: Promise<void>[] = [];
  private triggerWrites = true;
  private triggerWrite: Promise<unknown> = Promise.resolve();
  /** Errors no fault explains (any error, when the server does not restart). */
  readonly unexpected: string[] = [];
  /** Errors the restart explains, by SQLSTATE ('closed': the connection ended without one). */
  readonly expected = new Map<string, number>();
  writes = 0;
  directWrites = 0;

  constructor(
    private readonly p: Proxy,
    private readonly model: Model,
    /** The server restarts in this run: PostgreSQL's own ending of sessions is expected. */
    private readonly restarts: boolean,
  ) {
    for (let i = 0; i < CLIENTS; i++) this.loops.push(this.guard(`client ${i}`, this.client(i)));
    this.loops.push(this.guard('trigger writer', this.triggerWriter()));
    this.loops.push(this.guard('direct writer', this.directWriter()));
  }

  /** No more writes of src through pgscribe (each drops the whole database); resolves once the last one is answered. */
  async pauseTriggerWrites(): Promise<void> {
    this.triggerWrites = false;
    await this.triggerWrite;
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  private async guard(who: string, loop: Promise<void>): Promise<void> {
    try {
      await loop;
    } catch (err) {
      this.unexpected.push(`${who}: ${(err as Error).message}`);
    }
  }

  /** Tally a failed reply: expected when the restart explains it, unexpected otherwise. */
  private failed(who: string, what: string, r: Reply): void {
    const cs = codes(r);
    const explained = this.restarts && (cs.length === 0 ? r.closed : cs.every((c) => RESTART_CODES.has(c)));
    if (!explained) {
      this.unexpected.push(`${who}: ${what}: ${describe(r)}`);
      return;
    }
    for (const c of cs.length === 0 ? ['closed'] : cs) this.expected.set(c, (this.expected.get(c) ?? 0) + 1);
  }

  /** A session on port (retried while the restart explains the failure), or null once stopped. */
  private async session(who: string, port: number): Promise<RawClient | null> {
    while (this.running) {
      let c: RawClient;
      try {
        c = port === this.p.port ? await fx.connect(port) : await RawClient.connect(port);
      } catch (err) {
        // Nothing listens: only PostgreSQL restarting explains that (pgscribe always listens).
        if (!this.restarts || port === this.p.port) throw err;
        this.expected.set('refused', (this.expected.get('refused') ?? 0) + 1);
        await sleep(100);
        continue;
      }
      c.sock.setNoDelay(true);
      c.write(enc.startup({ user: 'postgres', database: 'postgres' }));
      const r = await readReply(c);
      if (!r.closed && codes(r).length === 0) return c;
      c.sock.destroy();
      this.failed(who, 'startup', r);
      await sleep(100);
    }
    return null;
  }

  private async client(i: number): Promise<void> {
    const who = `client ${i}`;
    const rnd = prng(SEED + i);
    let c = await this.session(who, this.p.port);
    while (this.running && c !== null) {
      const r = rnd();
      const key = KEYS[Math.floor(rnd() * KEYS.length)]!;
      if (r < WRITE_SHARE) {
        const id = 1 + Math.floor(rnd() * HOT_ROWS);
        const reply = await ask(c, `UPDATE hot SET ver = ver + 1 WHERE id = ${id} RETURNING ver`);
        if (reply.closed || codes(reply).length > 0) {
          this.failed(who, 'write', reply);
          c.sock.destroy();
          c = await this.session(who, this.p.port);
          continue;
        }
        this.model.ackProxy(`hot:${id}`, Number(column(reply.msgs)[0]));
        this.writes++;
        continue;
      }
      const row = name(key);
      const sentAt = Date.now();
      const floor = this.model.floor(row, sentAt);
      const reply = await ask(c, readSql(key));
      if (reply.closed || codes(reply).length > 0) {
        this.failed(who, 'read', reply);
        c.sock.destroy();
        c = await this.session(who, this.p.port);
        continue;
      }
      this.model.check(row, Number(column(reply.msgs)[0]), floor, sentAt, who);
      // Leave the machine's other work (and pgscribe) a moment: 2 cores.
      if (rnd() < 0.2) await sleep(1);
    }
    c?.sock.destroy();
  }

  /** Writes src through pgscribe: its commit answered, mirror's row must read as new from any session. */
  private async triggerWriter(): Promise<void> {
    const who = 'trigger writer';
    const rnd = prng(SEED + 2000);
    let c = await this.session(who, this.p.port);
    while (this.running && c !== null) {
      if (!this.triggerWrites) {
        await sleep(50);
        continue;
      }
      const id = 1 + Math.floor(rnd() * HOT_ROWS);
      const write = ask(c, `UPDATE src SET ver = ver + 1 WHERE id = ${id} RETURNING ver`);
      this.triggerWrite = write.catch(() => undefined);
      const reply = await write;
      if (reply.closed || codes(reply).length > 0) {
        this.failed(who, 'write', reply);
        c.sock.destroy();
        c = await this.session(who, this.p.port);
        continue;
      }
      const ver = Number(column(reply.msgs)[0]);
      this.model.ackProxy(`src:${id}`, ver);
      this.model.ackProxy(`mirror:${id}`, ver);
      this.writes++;
      await sleep(TRIGGER_PACE_MS);
    }
    c?.sock.destroy();
  }

  private async directWriter(): Promise<void> {
    const who = 'direct writer';
    const rnd = prng(SEED + 1000);
    let c = await this.session(who, pg.port);
    while (this.running && c !== null) {
      const table = rnd() < 0.5 ? 'src' : 'hot';
      const id = 1 + Math.floor(rnd() * HOT_ROWS);
      const reply = await ask(c, `UPDATE ${table} SET ver = ver + 1 WHERE id = ${id} RETURNING ver`);
      if (reply.closed || codes(reply).length > 0) {
        this.failed(who, 'write', reply);
        c.sock.destroy();
        c = await this.session(who, pg.port);
        continue;
      }
      const at = Date.now();
      const ver = Number(column(reply.msgs)[0]);
      this.model.ackDirect(`${table}:${id}`, ver, at);
      if (table === 'src') this.model.ackDirect(`mirror:${id}`, ver, at);
      this.directWrites++;
      await sleep(DIRECT_PACE_MS);
    }
    c?.sock.destroy();
  }
}

/** Every cold row one version up, straight on PostgreSQL, acknowledged into the model. */
/**
 * A statement straight on PostgreSQL, on one session kept open for the faults: the write that
 * follows a fault goes out within milliseconds (a new connection each time took up to 100 ms under
 * load, pgscribe's whole backoff, and the write was sometimes streamed by the new slot).
 */
let control: RawClient | null = null;
async function ctl(sql: string): Promise<Answer> {
  for (let attempt = 0; ; attempt++) {
    try {
      if (control === null || control.closed) {
        control = await RawClient.connect(pg.port);
        control.sock.setNoDelay(true);
        const startup = await control.startup('postgres');
        if (startup[startup.length - 1]?.type !== 'Z') throw new Error(`control session: ${new Answer(startup).text}`);
      }
      const a = new Answer(await control.query(sql, 60_000));
      if (a.errors.length > 0) throw new Error(`statement failed: ${sql}: ${a.errors.join(', ')}`);
      return a;
    } catch (err) {
      // The server restarted since the last statement: once more on a new session.
      if (attempt > 0 || control === null || !control.closed) throw err;
    }
  }
}

async function writeCold(model: Model): Promise<void> {
  const a = await ctl("UPDATE cold SET ver = ver + 1 RETURNING id || ':' || ver");
  const at = Date.now();
  for (const v of a.rows) {
    const [id, ver] = v[0]!.split(':');
    model.ackDirect(`cold:${id}`, Number(ver), at);
  }
}

/** Read every row through pgscribe until one pass is answered wholly from the cache; each answer as PostgreSQL's. */
async function allCached(tt: Tap, p: Proxy, what: string): Promise<void> {
  const c = await fx.session(p.port);
  const direct = new Map<string, string | null>();
  for (const k of KEYS) direct.set(name(k), (await admin(pg, [readSql(k)]))[0]!.value);
  let lastMismatch = '';
  await waitFor(
    async () => {
      const before = await stat(p, 'cache_hits');
      for (const k of KEYS) {
        const v = column((await c.query(readSql(k), 30_000)))[0] ?? null;
        if (v !== direct.get(name(k))) lastMismatch = `${name(k)}: ${v} through pgscribe, ${direct.get(name(k))} on PostgreSQL`;
      }
      return (await stat(p, 'cache_hits')) - before === KEYS.length ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 100, timeout: () => `${what}: not every row answered from the cache` },
  );
  tt.equal(lastMismatch, '', `${what}: every row answered from the cache, as PostgreSQL has it`);
  c.sock.destroy();
}

/** The walsender of pgscribe's slot and the slot's name. */
async function walsender(): Promise<{ pid: number; slot: string }> {
  const a = await ctl("SELECT active_pid, slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgscribe_%' AND active");
  const row = a.rows[0];
  if (row === undefined) throw new Error('no active pgscribe slot');
  return { pid: Number(row[0]), slot: row[1]! };
}

interface Fault {
  name: string;
  /** PostgreSQL itself ends the client sessions (its 57P01/08006 and refused connections are expected). */
  restarts: boolean;
  /** Break the stream; resolves with what undoes the fault once pgscribe noticed it. */
  inject(): Promise<() => Promise<void>>;
}

const nothing = async (): Promise<void> => undefined;

const FAULTS: readonly Fault[] = [
  {
    name: 'the walsender terminated (pg_terminate_backend)',
    restarts: false,
    async inject() {
      const { pid } = await walsender();
      // The timeout makes it wait for the walsender's exit: the write that follows is not streamed by it.
      await ctl(`SELECT pg_terminate_backend(${pid}, 10000)`);
      return nothing;
    },
  },
  {
    name: 'the slot dropped',
    restarts: false,
    async inject() {
      const { pid, slot } = await walsender();
      await ctl(`SELECT pg_terminate_backend(${pid})`);
      // A temporary slot goes with its session; drop it if it is still there, once no longer active.
      await waitFor(
        async () => {
          const left = await ctl(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = '${slot}'`);
          if (left.value === '0') return true;
          try {
            await ctl(`SELECT pg_drop_replication_slot('${slot}')`);
            return true;
          } catch (err) {
            const m = (err as Error).message;
            if (/is active|does not exist/.test(m)) return /does not exist/.test(m) ? true : undefined;
            throw err;
          }
        },
        { timeoutMs: 20_000, intervalMs: 5, timeout: () => `slot ${slot} could not be dropped` },
      );
      return nothing;
    },
  },
  {
    name: 'the stream stalled (walsender SIGSTOPped past the stall detector)',
    restarts: false,
    async inject() {
      const { pid } = await walsender();
      process.kill(pid, 'SIGSTOP');
      let resumed = false;
      const resume = async (): Promise<void> => {
        if (resumed) return;
        resumed = true;
        process.kill(pid, 'SIGCONT');
      };
      // Should the test fail before pgscribe noticed, the walsender is not left stopped.
      process.once('exit', () => void resume());
      return resume;
    },
  },
  {
    name: 'the server restarted',
    restarts: true,
    async inject() {
      await pg.restart();
      return nothing;
    },
  },
];

const ONLY = process.env['PGSCRIBE_FAULT_ONLY'];
for (const fault of FAULTS.filter((f) => ONLY === undefined || f.name.includes(ONLY))) {
  t.test(`under load, ${fault.name}: nothing stale, no error from pgscribe, the cache recovers`, async (tt) => {
    tt.comment(`seed ${SEED} (PGSCRIBE_FAULT_SEED)`);
    const p = await fx.launch(WAL);
    await allCached(tt, p, 'at start');
    const model = new Model();
    const load = new Load(p, model, fault.restarts);
    let undo: () => Promise<void> = nothing;
    try {
      // Before the fault: cold changes once (streamed), the load runs until that write is judged.
      await writeCold(model);
      const hits0 = await stat(p, 'cache_hits');
      await sleep(LAG_MS + 1500);
      const warmHits = (await stat(p, 'cache_hits')) - hits0;
      tt.ok(warmHits > 50, `before the fault, reads were answered from the cache (${warmHits} hits)`, { stats: await p.stats() });
      const readsBefore = model.reads;

      const gaps = await stat(p, 'wal_gaps');
      model.judgeDirect = false;
      model.faultAt = Date.now();
      // Each write of src through pgscribe drops the whole database (and, the stream broken, waits
      // up to a second first): stopped before the fault, so that only the new slot's gap drops what
      // cold had cached when it gets the write the stream cannot see.
      await load.pauseTriggerWrites();
      undo = await fault.inject();
      await writeCold(model);
      const coldAt = Date.now();
      await waitFor(async () => ((await stat(p, 'wal_streams_up')) === 0 || (await stat(p, 'wal_gaps')) > gaps ? true : undefined), {
        timeoutMs: 40_000,
        intervalMs: 50,
        timeout: () => 'pgscribe never noticed the fault',
      });
      model.judgeDirect = true;
      await undo();
      await waitFor(async () => ((await stat(p, 'wal_streams_up')) === 1 && (await stat(p, 'wal_gaps')) > gaps ? true : undefined), {
        timeoutMs: 60_000,
        intervalMs: 50,
        timeout: () => `the stream never came back on a new slot: ${p.stderr().slice(-2000)}`,
      });
      // After: the load goes on until the write cold got during the fault has been judged a while.
      const hits1 = await stat(p, 'cache_hits');
      await sleep(Math.max(2500, coldAt + LAG_MS + 2500 - Date.now()));
      const afterHits = (await stat(p, 'cache_hits')) - hits1;
      const diag = { stats: await p.stats(), stderr: p.stderr().split('\n').filter((l) => !/ INFO stats /.test(l)).slice(-15) };
      await load.stop();

      tt.equal(model.stale.length, 0, `no stale answer (${model.reads} reads, ${load.writes} writes through pgscribe, ${load.directWrites} straight)`, {
        stale: model.stale.slice(0, 10),
      });
      tt.same(load.unexpected, [], 'no error but those PostgreSQL itself caused');
      if (load.expected.size > 0) tt.comment(`errors the restart caused: ${JSON.stringify(Object.fromEntries(load.expected))}`);
      tt.ok(readsBefore > 0 && model.reads > readsBefore, 'reads ran before and through the fault');
      tt.ok(model.judgedDirectAfterFault > 0, `after the fault, reads were judged against writes made straight on PostgreSQL (${model.judgedDirectAfterFault})`);
      tt.ok(afterHits > 50, `after the fault, reads are answered from the cache again (${afterHits} hits)`, diag);
      tt.ok((await stat(p, 'wal_gaps')) > gaps, 'the new slot counted as a gap');
      if (fault.name.includes('stall')) tt.match(p.stderr(), /stall timeout/, 'the stall detector noticed');
    } finally {
      await load.stop();
      await undo();
    }
    await allCached(tt, p, 'after the load');
    await fx.stopProxy(p);
  });
}
