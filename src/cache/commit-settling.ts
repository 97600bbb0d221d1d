/**
 * A commit the change stream hands over may not be visible yet: PostgreSQL streams a commit once
 * its record is flushed, but other sessions see it only once the committing backend has left the
 * running transactions, after any synchronous-replication wait (seconds, with a slow standby) and,
 * without one, a few instructions later. A read that starts in between gets, and caches, the old
 * rows; the stream's invalidation has already happened, so they would stay until the TTL, which
 * in wal mode may be an hour.
 *
 * So each streamed commit is invalidated twice: by the stream at once (what is already visible,
 * nearly always, goes without waiting) and again here once a snapshot taken after it arrived shows
 * it finished: any answer cached from a snapshot older than that goes then. The snapshots are
 * pg_current_snapshot() on the catalog connection, one question at a time, each covering every
 * commit handed over before it was sent, asked ASK_DELAY_MS after a commit arrives (so that a
 * burst shares one), then while some are still running every 1 to MAX_RETRY_MS.
 *
 * Read-your-writes (commit-fence.ts) needs no wait of its own here: the fence's question, sent
 * after the client's commit was answered (so visible), carries a snapshot too (settleWith()), and
 * settles every commit that arrived before it was sent and had finished, the client's among
 * them; a commit that arrives after that question was visible before it arrived.
 *
 * The same answer carries synchronous_standby_names: a value that now names pgscribe's stream
 * (sync-standby.ts) is reported, for the stream to be ended.
 *
 * A question that fails (the catalog connection lost) leaves the commits unsettled: onFailed()
 * tells the caller, which must not serve the database from the cache until onFailed(null) says a
 * question was answered again.
 */

/** A commit waiting to be seen finished. */
interface Unsettled {
  /** Order of arrival, from 1. */
  seq: number;
  /** The top-level transaction id, 32 bits as pgoutput gives it. */
  xid: number;
  /** What to invalidate again once it is visible. */
  names: readonly string[];
}

export interface SnapshotAnswer {
  /** pg_current_snapshot() as text: xmin:xmax:xip,... (64-bit ids). */
  snapshot: string;
  /** current_setting('synchronous_standby_names'). */
  syncStandbyNames: string;
}

export interface CommitSettlingOptions {
  /** Asks the server (SNAPSHOT_SQL on the catalog connection). */
  ask(): Promise<SnapshotAnswer>;
  /** These commits are visible now: invalidate what they changed again. */
  onSettled(names: readonly string[]): void;
  /** A question failed (the commits stay unsettled; asked again later), or, with null, one succeeded again. */
  onFailed(reason: string | null): void;
  /** Each answer's synchronous_standby_names. */
  onSyncStandbyNames(setting: string): void;
}

export const SNAPSHOT_SQL = "SELECT pg_catalog.pg_current_snapshot()::text, pg_catalog.current_setting('synchronous_standby_names')";

/** After a commit arrives, before the question: commits arriving meanwhile share it and one invalidation (it bounds only the rare commit that streamed before it was visible). */
const ASK_DELAY_MS = 10;
/** Wait before asking again while commits are still running, doubling from MIN to MAX. */
const MIN_RETRY_MS = 1;
const MAX_RETRY_MS = 50;
/** After a failed question. */
const FAILED_RETRY_MS = 200;

/** The low 32 bits of a 64-bit transaction id in decimal (epoch << 32 | xid; far below 2^53 in practice, BigInt otherwise). */
function low32(text: string): number {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n % 2 ** 32 : Number(BigInt(text) & 0xffffffffn);
}

/** The running transactions of a snapshot, in pgoutput's 32-bit ids. */
export interface Running {
  /** Every id at or after this (modulo 2^32) had not finished when the snapshot was taken. */
  xmax: number;
  xip: ReadonlySet<number>;
}

/** Parse pg_current_snapshot()'s text; null when it is not one. */
export function parseSnapshot(text: string): Running | null {
  const m = /^(\d+):(\d+):([\d,]*)$/.exec(text.trim());
  if (m === null) return null;
  const xip = new Set<number>();
  for (const x of m[3]!.split(',')) if (x !== '') xip.add(low32(x));
  return { xmax: low32(m[2]!), xip };
}

/** xid had finished (committed or aborted) when the snapshot was taken: before xmax (in modulo-2^32 order, as PostgreSQL compares) and not running. */
export function finished(xid: number, r: Running): boolean {
  const before = ((xid - r.xmax) | 0) < 0;
  return before && !r.xip.has(xid >>> 0);
}

export class CommitSettling {
  private waiting: Unsettled[] = [];
  /** Commits added since the question out was sent (it does not cover them). */
  private arrived: Unsettled[] = [];
  private asking = false;
  private retryTimer: NodeJS.Timeout | null = null;
  /** performance.now() when retryTimer fires. */
  private retryDue = 0;
  private retryMs = MIN_RETRY_MS;
  private failing = false;
  private closed = false;
  private seq = 0;

  constructor(private readonly o: CommitSettlingOptions) {}

  /** Commits not yet seen finished. */
  get pending(): number {
    return this.waiting.length + this.arrived.length;
  }

  /** The last commit added so far: a snapshot asked for after now covers it (settleWith). */
  get lastSeq(): number {
    return this.seq;
  }

  /** A streamed commit (already invalidated once by the caller). */
  add(xid: number, names: readonly string[]): void {
    if (this.closed || names.length === 0) return;
    this.arrived.push({ seq: ++this.seq, xid, names });
    // Ask soon, unless a question is out (its answer asks again) or one is due sooner anyway.
    if (!this.asking && (this.retryTimer === null || this.retryDue > performance.now() + ASK_DELAY_MS)) {
      this.retryMs = MIN_RETRY_MS;
      this.retryLater(ASK_DELAY_MS);
    }
  }

  /**
   * A snapshot asked for elsewhere (the fence's question) once lastSeq was upTo: settle the
   * commits up to upTo it shows finished. An unreadable snapshot settles nothing.
   */
  settleWith(snapshot: string, upTo: number): void {
    const running = parseSnapshot(snapshot);
    if (running === null || this.closed) return;
    this.settle(running, upTo);
  }

  close(): void {
    this.closed = true;
    this.clearRetry();
    this.waiting = [];
    this.arrived = [];
  }

  /** Invalidate again (in one call) the commits up to upTo that running shows finished. */
  private settle(running: Running, upTo: number): void {
    const names = new Set<string>();
    const keep = (list: Unsettled[]): Unsettled[] => {
      const still: Unsettled[] = [];
      for (const u of list) {
        if (u.seq <= upTo && finished(u.xid, running)) for (const n of u.names) names.add(n);
        else still.push(u);
      }
      return still;
    };
    this.waiting = keep(this.waiting);
    this.arrived = keep(this.arrived);
    if (names.size > 0) this.o.onSettled([...names]);
  }

  private askNow(): void {
    this.retryTimer = null;
    if (this.closed) return;
    this.waiting.push(...this.arrived);
    this.arrived = [];
    if (this.waiting.length === 0) return;
    this.asking = true;
    const upTo = this.seq;
    this.o.ask().then(
      (a) => this.answered(a, upTo),
      (err: unknown) => this.failed(err instanceof Error ? err.message : String(err)),
    );
  }

  private answered(a: SnapshotAnswer, upTo: number): void {
    this.asking = false;
    if (this.closed) return;
    if (this.failing) {
      this.failing = false;
      this.o.onFailed(null);
    }
    this.o.onSyncStandbyNames(a.syncStandbyNames);
    const running = parseSnapshot(a.snapshot);
    if (running === null) return this.failed(`pg_current_snapshot() answered ${JSON.stringify(a.snapshot)}`);
    this.settle(running, upTo);
    if (this.pending === 0) {
      this.retryMs = MIN_RETRY_MS;
      return;
    }
    // New commits: ask after the usual short delay. Only running ones: after a growing pause.
    if (this.arrived.length > 0) {
      this.retryMs = MIN_RETRY_MS;
      this.retryLater(ASK_DELAY_MS);
      return;
    }
    this.retryLater(this.retryMs);
    this.retryMs = Math.min(MAX_RETRY_MS, this.retryMs * 2);
  }

  private failed(reason: string): void {
    this.asking = false;
    if (this.closed) return;
    if (!this.failing) {
      this.failing = true;
      this.o.onFailed(reason);
    }
    this.retryLater(FAILED_RETRY_MS);
  }

  private retryLater(ms: number): void {
    this.clearRetry();
    this.retryDue = performance.now() + ms;
    this.retryTimer = setTimeout(() => this.askNow(), ms);
    this.retryTimer.unref();
  }

  private clearRetry(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }
}
