/**
 * The change stream of ONE database: which relations each committed transaction changed, from
 * PostgreSQL's logical decoding (pgoutput), for the cache to drop what they invalidate.
 *
 * Each connection makes a TEMPORARY slot (the server drops it when the connection ends, so a
 * pgscribe that dies holds no WAL) and streams from where the slot starts. A new slot is a new
 * starting point: what committed between two connections is never seen, so every (re)start is
 * announced with onReady(), which the caller takes as a gap (drop everything of this database).
 * Any loss (the server gone or restarted, the walsender terminated, a malformed message, a
 * stall) calls onDown() and connects again after a backoff.
 *
 * Positions: `position` is the WAL position up to which every committed change has been handed
 * to onCommit(): a Commit's end LSN, or a keepalive's walEnd between transactions (for a logical
 * walsender that is where decoding has read the WAL: every transaction that committed before it
 * was sent before the keepalive). It is acknowledged to the server (so the slot lets WAL go) when
 * the walsender asks and every statusIntervalMs; a ping (a status update with reply-requested)
 * makes the walsender answer at once with a keepalive, which is how waitFor() learns the position
 * without waiting for traffic, and how a silent stream is told from an idle one.
 *
 * @see https://www.postgresql.org/docs/15/protocol-replication.html
 * @see https://www.postgresql.org/docs/15/logicaldecoding-explanation.html
 */
import type { OpsLog } from '../log/ops';
import type { UpstreamTls } from '../tls';
import { formatLsn } from './lsn';
import { decodePgoutput, type PrimaryKeepalive, type XLogData } from './pgoutput';
import { ReplicationConnection } from './replication-connection';
import { adviceFor, ensurePublication, nextSlotName, refuseSynchronousStandby } from './setup';
import { TransactionAssembler, type CommittedTransaction } from './transactions';

export type { ChangedRelation } from './transactions';
export { DEFAULT_PUBLICATION } from './setup';

/** A committed transaction, as onCommit() gets it. */
export interface CommitInfo extends CommittedTransaction {
  /** When it arrived here, Unix milliseconds. */
  receivedAtMs: number;
  /** receivedAtMs - commitTimeMs: the stream's lag for this commit (clock skew between hosts included). */
  lagMs: number;
}

export interface ReadyInfo {
  slot: string;
  /** Where the new slot starts: changes committed before it were not and will not be seen. */
  startLsn: bigint;
  publication: string;
}

export interface ChangeStreamOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  tls: UpstreamTls | null;
  /**
   * The operator's publication, used as it is and never created; absent or null: pgscribe's own
   * (`pgscribe_all`, created empty when missing; src/wal/publication.ts adds the tables).
   */
  publication?: string | null;
  /** TCP, TLS and authentication (default 10 s). */
  connectTimeoutMs?: number;
  /** Each setup command: the publication, the slot (which waits for running transactions), START_REPLICATION (default 30 s). */
  setupTimeoutMs?: number;
  /** Acknowledge the position at least this often (default 10 s; the server gives up on a silent client after wal_sender_timeout, 60 s by default). */
  statusIntervalMs?: number;
  /** Nothing received for this long, pings unanswered: the stream is down (default 15 s). */
  stallTimeoutMs?: number;
  /** First wait before connecting again; doubles per failure up to backoffMaxMs (defaults 100 ms, 5 s). */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Relation descriptions kept per connection (default 100 000). */
  maxRelations?: number;
  /** Largest message accepted (default 64 MiB): one pgoutput message carries a whole row. */
  maxMessageBytes?: number;
  /** Most waitFor() calls waiting at once; more resolve false at once (default 10 000). */
  maxWaiters?: number;
  applicationName?: string;
  ops: OpsLog;
  /** A committed transaction with the relations it changed. Runs synchronously in the stream: keep it short. */
  onCommit(c: CommitInfo): void;
  /** A new slot streams: a new starting point (a gap). */
  onReady(r: ReadyInfo): void;
  /** The stream is down (once per outage); it reconnects by itself. */
  onDown(reason: string): void;
}

export const StreamState = {
  /** Made, start() not called yet. */
  Idle: 'idle',
  /** Connecting, checking the publication, creating the slot, starting the stream. */
  Connecting: 'connecting',
  /** Streaming: healthy. */
  Streaming: 'streaming',
  /** Down, waiting out the backoff before connecting again. */
  Waiting: 'waiting',
  /** close() was called: no connection, no timer. */
  Closed: 'closed',
} as const;
export type StreamState = (typeof StreamState)[keyof typeof StreamState];

const NEXT: Record<StreamState, readonly StreamState[]> = {
  idle: ['connecting', 'closed'],
  connecting: ['streaming', 'waiting', 'closed'],
  streaming: ['waiting', 'closed'],
  waiting: ['connecting', 'closed'],
  closed: [],
};

/** A stream that stayed up this long starts its backoff over at the minimum. */
const STABLE_MS = 10_000;
/** Between two pings for waitFor() (one outstanding at a time): keepalives arrive unasked as decoding catches up. */
const PING_GAP_MS = 20;

interface Waiter {
  lsn: bigint;
  resolve(ok: boolean): void;
  timer: NodeJS.Timeout;
}

export class ChangeStream {
  private stateValue: StreamState = StreamState.Idle;
  private readonly o: Required<Omit<ChangeStreamOptions, 'publication' | 'tls' | 'ops' | 'onCommit' | 'onReady' | 'onDown'>>;
  private readonly opts: ChangeStreamOptions;
  /** Bumped by every attempt and by close(): callbacks of an older one are ignored. */
  private attempt = 0;
  private conn: ReplicationConnection | null = null;
  private assembler: TransactionAssembler | null = null;
  private slot: string | null = null;
  private processed = 0n;
  private readonly waiters = new Set<Waiter>();
  private pingOutstanding = false;
  private pingTimer: NodeJS.Timeout | null = null;
  private lastPingAnswer = 0;
  private lastReceived = 0;
  private lastStatus = 0;
  private tickTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private failures = 0;
  private readySince = 0;
  /** Why the stream is down (null while up or before the first attempt ended): one warning per outage. */
  private downReason: string | null = null;
  private everReady = false;

  constructor(opts: ChangeStreamOptions) {
    this.opts = opts;
    this.o = {
      host: opts.host,
      port: opts.port,
      user: opts.user,
      password: opts.password,
      database: opts.database,
      connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
      setupTimeoutMs: opts.setupTimeoutMs ?? 30_000,
      statusIntervalMs: opts.statusIntervalMs ?? 10_000,
      stallTimeoutMs: opts.stallTimeoutMs ?? 15_000,
      backoffMinMs: opts.backoffMinMs ?? 100,
      backoffMaxMs: opts.backoffMaxMs ?? 5_000,
      maxRelations: opts.maxRelations ?? 100_000,
      maxMessageBytes: opts.maxMessageBytes ?? 64 * 1024 * 1024,
      maxWaiters: opts.maxWaiters ?? 10_000,
      applicationName: opts.applicationName ?? 'pgscribe changes',
    };
  }

  get state(): StreamState {
    return this.stateValue;
  }

  /** Streaming now: every commit is being reported. */
  get healthy(): boolean {
    return this.stateValue === StreamState.Streaming;
  }

  /** Every change committed up to this WAL position has been handed to onCommit() (0n before the first start). */
  get position(): bigint {
    return this.processed;
  }

  /** What the replication connection says it is (a synchronous_standby_names entry would match it). */
  get applicationName(): string {
    return this.o.applicationName;
  }

  /** The slot streaming now, or null. */
  get slotName(): string | null {
    return this.slot;
  }

  /** Connect and stream; reconnects by itself until close(). */
  start(): void {
    if (this.stateValue !== StreamState.Idle) return;
    this.connect();
  }

  /**
   * Resolves true once every change committed up to `lsn` has been handed to onCommit(); false
   * after timeoutMs, when the stream is down, or when it goes down meanwhile.
   */
  waitFor(lsn: bigint, timeoutMs: number): Promise<boolean> {
    if (this.stateValue !== StreamState.Streaming) return Promise.resolve(false);
    if (this.processed >= lsn) return Promise.resolve(true);
    if (this.waiters.size >= this.o.maxWaiters) return Promise.resolve(false);
    return new Promise((resolve) => {
      const w: Waiter = {
        lsn,
        resolve,
        timer: setTimeout(() => {
          this.waiters.delete(w);
          resolve(false);
        }, timeoutMs),
      };
      this.waiters.add(w);
      this.requestPing();
    });
  }

  /**
   * End the stream now and connect again after the usual backoff (onDown, then a new slot and
   * onReady): for a caller that learnt the stream must not go on, e.g. synchronous_standby_names
   * changed to name it.
   */
  interrupt(reason: string): void {
    if (this.stateValue === StreamState.Streaming || this.stateValue === StreamState.Connecting) this.conn?.fail(reason);
  }

  /** Stop: the connection (and with it the slot) goes, every timer is cleared, waiters get false. onDown is not called. */
  close(): void {
    if (this.stateValue === StreamState.Closed) return;
    this.to(StreamState.Closed);
    this.attempt++;
    this.dropConnection();
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private to(next: StreamState): void {
    if (!NEXT[this.stateValue].includes(next)) throw new Error(`ChangeStream: no transition ${this.stateValue} -> ${next}`);
    this.stateValue = next;
  }

  private connect(): void {
    this.retryTimer = null;
    this.to(StreamState.Connecting);
    const id = ++this.attempt;
    this.setUp(id).catch((err: unknown) => this.lost(id, err));
  }

  /** One attempt: connect, publication, slot, START_REPLICATION. Throws what went wrong. */
  private async setUp(id: number): Promise<void> {
    const o = this.o;
    const conn = await ReplicationConnection.connect({
      // Read at each attempt: with several upstreams the options follow the primary.
      host: this.opts.host,
      port: this.opts.port,
      user: o.user,
      password: o.password,
      database: o.database,
      applicationName: o.applicationName,
      connectTimeoutMs: o.connectTimeoutMs,
      tls: this.opts.tls,
      maxMessageBytes: o.maxMessageBytes,
    });
    if (!this.current(id)) {
      conn.close();
      return;
    }
    this.conn = conn;
    conn.onEnd((reason) => this.lost(id, reason));
    await refuseSynchronousStandby(conn, o.applicationName, o.setupTimeoutMs);
    if (!this.current(id)) return;
    const publication = await ensurePublication(conn, this.opts.publication ?? null, o.setupTimeoutMs);
    if (!this.current(id)) return;
    if (publication.created) {
      this.opts.ops.info('change stream: created pgscribe\'s publication; tables with a primary key or replica identity are added to it as the catalog shows them', { db: o.database, publication: publication.name });
    }
    const slot = await conn.createTemporarySlot(nextSlotName(), 'pgoutput', o.setupTimeoutMs);
    if (!this.current(id)) return;
    // publication_names is a list of identifiers: the name is double-quoted as one.
    const options = new Map([
      ['proto_version', '1'],
      ['publication_names', `"${publication.name.replace(/"/g, '""')}"`],
    ]);
    await conn.startReplication(
      slot.name,
      0n, // a new slot starts at its consistent point whatever is asked
      options,
      {
        // Synchronous, before the CopyData that may share CopyBothResponse's read: none is lost.
        onStreaming: () => {
          if (this.current(id)) this.streaming(slot.name, slot.consistentPoint, publication.name);
        },
        onXLogData: (x, buf) => this.onXLogData(id, x, buf),
        onKeepalive: (k) => this.onKeepalive(id, k),
      },
      o.setupTimeoutMs,
    );
  }

  /** This attempt is still the one under way (not superseded, closed or lost). */
  private current(id: number): boolean {
    return id === this.attempt && this.stateValue === StreamState.Connecting;
  }

  private streaming(slot: string, startLsn: bigint, publication: string): void {
    this.to(StreamState.Streaming);
    const now = Date.now();
    this.assembler = new TransactionAssembler(this.o.maxRelations);
    this.slot = slot;
    // A new starting point: what committed before it is the caller's gap, not a change to wait for.
    this.processed = startLsn;
    this.readySince = now;
    this.lastReceived = now;
    this.lastStatus = now;
    this.lastPingAnswer = 0;
    const tick = Math.max(20, Math.min(1000, Math.floor(Math.min(this.o.statusIntervalMs, this.o.stallTimeoutMs / 3) / 4)));
    this.tickTimer = setInterval(() => this.tick(), tick);
    this.tickTimer.unref();
    const fields = { db: this.o.database, slot, publication, start: formatLsn(startLsn) };
    if (this.downReason !== null) this.opts.ops.info('change stream: back, on a new slot (what committed while it was down is a gap)', fields);
    else if (!this.everReady) this.opts.ops.info('change stream: streaming the changes of this database', fields);
    this.downReason = null;
    this.everReady = true;
    this.call('onReady', () => this.opts.onReady({ slot, startLsn, publication }));
  }

  private onXLogData(id: number, x: XLogData, buf: Buffer): void {
    if (id !== this.attempt || this.assembler === null) return;
    const now = Date.now();
    this.lastReceived = now;
    let t: CommittedTransaction | null;
    try {
      t = this.assembler.apply(decodePgoutput(buf, x.payloadStart, x.payloadEnd));
    } catch (err) {
      this.conn?.fail(`the walsender sent what pgoutput does not: ${(err as Error).message}`);
      return;
    }
    if (t === null) return;
    if (t.endLsn > this.processed) this.processed = t.endLsn;
    const info: CommitInfo = { ...t, receivedAtMs: now, lagMs: now - t.commitTimeMs };
    if (!this.call('onCommit', () => this.opts.onCommit(info))) {
      // The caller may have missed this commit: only a gap (a new slot, onReady) is safe.
      this.conn?.fail('the onCommit callback threw');
      return;
    }
    this.settleWaiters();
  }

  private onKeepalive(id: number, k: PrimaryKeepalive): void {
    if (id !== this.attempt || this.assembler === null) return;
    const now = Date.now();
    this.lastReceived = now;
    this.pingOutstanding = false;
    this.lastPingAnswer = now;
    // Inside a transaction's messages walEnd may pass changes not handed over yet.
    if (!this.assembler.inTransaction && k.walEnd > this.processed) this.processed = k.walEnd;
    if (k.replyRequested) this.sendStatus(false);
    this.settleWaiters();
    if (this.waiters.size > 0) this.requestPing();
  }

  /** Acknowledge the position; with ping, ask the walsender to answer at once. */
  private sendStatus(ping: boolean): void {
    const pos = this.processed;
    if (this.conn === null || !this.conn.sendStatus({ write: pos, flush: pos, apply: pos, replyRequested: ping })) return;
    this.lastStatus = Date.now();
    if (ping) this.pingOutstanding = true;
  }

  /** A ping for waitFor(), unless one is outstanding or was answered less than PING_GAP_MS ago. */
  private requestPing(): void {
    if (this.pingOutstanding || this.pingTimer !== null || this.stateValue !== StreamState.Streaming) return;
    const wait = this.lastPingAnswer + PING_GAP_MS - Date.now();
    if (wait <= 0) {
      this.sendStatus(true);
      return;
    }
    this.pingTimer = setTimeout(() => {
      this.pingTimer = null;
      if (this.waiters.size > 0) this.requestPing();
    }, wait);
  }

  private tick(): void {
    if (this.stateValue !== StreamState.Streaming) return;
    const now = Date.now();
    const silent = now - this.lastReceived;
    if (silent >= this.o.stallTimeoutMs) {
      this.conn?.fail(`nothing arrived for ${silent} ms, pings unanswered (stall timeout ${this.o.stallTimeoutMs} ms)`);
      return;
    }
    // A third of the stall timeout without a byte: ask, so that an idle stream answers and a dead one does not.
    const ping = silent >= this.o.stallTimeoutMs / 3 && !this.pingOutstanding;
    if (ping || now - this.lastStatus >= this.o.statusIntervalMs) this.sendStatus(ping);
  }

  private settleWaiters(): void {
    for (const w of this.waiters) {
      if (w.lsn > this.processed) continue;
      clearTimeout(w.timer);
      this.waiters.delete(w);
      w.resolve(true);
    }
  }

  /** The attempt failed or the stream was lost: report it (once per outage) and try again later. */
  private lost(id: number, why: unknown): void {
    if (id !== this.attempt || (this.stateValue !== StreamState.Connecting && this.stateValue !== StreamState.Streaming)) return;
    const wasStreaming = this.stateValue === StreamState.Streaming;
    const reason = typeof why === 'string' ? why : why instanceof Error ? why.message : String(why);
    const advice = adviceFor(why);
    this.dropConnection();
    this.to(StreamState.Waiting);
    const now = Date.now();
    if (wasStreaming && now - this.readySince >= STABLE_MS) this.failures = 0;
    const delay = Math.min(this.o.backoffMaxMs, this.o.backoffMinMs * 2 ** Math.min(this.failures, 30));
    this.failures++;
    // Scheduled before onDown runs, so that a close() from inside onDown clears it.
    this.retryTimer = setTimeout(() => {
      if (this.stateValue === StreamState.Waiting) this.connect();
    }, delay);
    this.retryTimer.unref();
    if (this.downReason === null) {
      this.downReason = reason;
      this.opts.ops.warn(`change stream: down; the cache cannot see this database's changes until it is back${advice === '' ? '' : `. ${advice}`}`, {
        db: this.o.database,
        user: this.o.user,
        reason,
        retry_ms: delay,
      });
      this.call('onDown', () => this.opts.onDown(reason));
    }
  }

  /** Close the connection, stop the timers, and give every waiter false. */
  private dropConnection(): void {
    this.conn?.close();
    this.conn = null;
    this.assembler = null;
    this.slot = null;
    if (this.tickTimer !== null) clearInterval(this.tickTimer);
    this.tickTimer = null;
    if (this.pingTimer !== null) clearTimeout(this.pingTimer);
    this.pingTimer = null;
    this.pingOutstanding = false;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.resolve(false);
    }
    this.waiters.clear();
  }

  /** Run a caller's callback; a throw is logged, not propagated into the stream. False when it threw. */
  private call(name: string, fn: () => void): boolean {
    try {
      fn();
      return true;
    } catch (err) {
      this.opts.ops.error(`change stream: the ${name} callback threw`, { db: this.o.database, error: err instanceof Error ? err.message : String(err) });
      return false;
    }
  }
}
