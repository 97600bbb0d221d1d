/**
 * Read-your-writes through the change stream (issue 16, part 2): the ReadyForQuery that answers
 * a commit with writes waits until the stream has handed over every change of that commit, so
 * that what its triggers, cascades and rules changed is invalidated before the client can read
 * again. pgscribe's own invalidation of the tables a write names happens at once (the fast
 * path); this fence is for what the text does not name.
 *
 * The commit's position is not known to pgscribe, so the fence asks the server for its current
 * WAL insert position after the commit was answered: the commit record is before it. Commits
 * that arrive while such a question is out wait for the next one (the answer may predate them);
 * each question covers every commit queued before it was sent, so a burst of commits costs two
 * questions, not one each.
 *
 * Bounded: a commit is held at most holdMs in all. When that expires, the question fails, or the
 * stream is down, the commit is released at once and onLapse() tells the caller, which must then
 * drop the database's answers and serve none until the stream has caught up (`lsn`, when known).
 */

/** What the fence needs of the change stream. */
export interface FenceStream {
  readonly healthy: boolean;
  /** true once every change up to lsn was handed over; false on timeout or when the stream goes down. */
  waitFor(lsn: bigint, timeoutMs: number): Promise<boolean>;
}

export interface CommitFenceOptions {
  /** The server's current WAL insert position (pg_current_wal_insert_lsn()). */
  currentLsn(): Promise<bigint>;
  /** The database's change stream now, or null when it has none. */
  stream(): FenceStream | null;
  /** Longest hold of one commit, ms. */
  holdMs: number;
  /** Commits were released unconfirmed: why, the position the stream must reach (null: unknown), and how many. */
  onLapse(reason: string, lsn: bigint | null, commits: number): void;
  /** Held commits at most; more are released at once as a lapse (default 100 000). */
  maxHeld?: number;
}

interface Held {
  done: () => void;
  /** performance.now() when held. */
  since: number;
  /** The hold's bound. */
  timer: NodeJS.Timeout;
}

export class CommitFence {
  private readonly opts: CommitFenceOptions;
  private readonly maxHeld: number;
  /** Commits waiting for the next question. */
  private queued: Held[] = [];
  /** Every commit held, queued or waiting for the stream. */
  private readonly live = new Set<Held>();
  /** A question is out. */
  private asking = false;
  private closed = false;

  constructor(opts: CommitFenceOptions) {
    this.opts = opts;
    this.maxHeld = opts.maxHeld ?? 100_000;
  }

  /** Commits held now. */
  get holding(): number {
    return this.live.size;
  }

  /**
   * A commit's ReadyForQuery is about to go to the client. true: `done` runs later (hold the
   * ReadyForQuery until then); false: release it now (a lapse has been reported if needed).
   */
  hold(done: () => void): boolean {
    if (this.closed) return false;
    const s = this.opts.stream();
    if (s === null || !s.healthy) {
      this.opts.onLapse('the change stream is down', null, 1);
      return false;
    }
    if (this.live.size >= this.maxHeld) {
      this.opts.onLapse(`more than ${this.maxHeld} commits wait for the change stream`, null, 1);
      return false;
    }
    // The hold's bound runs from now, whatever the question and the stream do.
    const h: Held = {
      done,
      since: performance.now(),
      timer: setTimeout(() => this.release([h], `the change stream did not confirm a commit within ${this.opts.holdMs} ms`, null), this.opts.holdMs),
    };
    this.live.add(h);
    this.queued.push(h);
    if (!this.asking) this.ask();
    return true;
  }

  /** Release everything held (shutdown): the clients get their ReadyForQuery. */
  close(): void {
    this.closed = true;
    this.queued = [];
    for (const h of [...this.live]) this.finish(h);
  }

  /** Ask the position for the commits queued now; the next question goes out once this one is answered. */
  private ask(): void {
    const batch = this.queued;
    this.queued = [];
    this.asking = true;
    const next = (): void => {
      this.asking = false;
      if (this.queued.length > 0 && !this.closed) this.ask();
    };
    this.opts.currentLsn().then(
      (lsn) => {
        next();
        this.await(batch, lsn);
      },
      (err: unknown) => {
        next();
        this.release(batch, `the WAL position could not be read: ${(err as Error).message}`, null);
      },
    );
  }

  /** Wait for the stream to pass lsn, within what is left of the batch's bound. */
  private await(batch: Held[], lsn: bigint): void {
    const s = this.opts.stream();
    // The batch is in arrival order: its first commit has waited longest.
    const left = this.opts.holdMs - (performance.now() - batch[0]!.since);
    if (s === null || !s.healthy || left <= 0) {
      this.release(batch, 'the change stream went down before it reached the commit', lsn);
      return;
    }
    s.waitFor(lsn, left).then(
      (ok) => (ok ? this.releaseConfirmed(batch) : this.release(batch, 'the change stream did not reach the commit in time', lsn)),
      () => this.release(batch, 'the change stream failed before it reached the commit', lsn),
    );
  }

  private releaseConfirmed(batch: Held[]): void {
    for (const h of batch) this.finish(h);
  }

  /** Release unconfirmed: if any of them was still held, that is a lapse. */
  private release(batch: Held[], reason: string, lsn: bigint | null): void {
    let held = 0;
    for (const h of batch) if (this.live.has(h)) held++;
    if (held === 0) return;
    this.opts.onLapse(reason, lsn, held);
    for (const h of batch) this.finish(h);
  }

  private finish(h: Held): void {
    if (!this.live.delete(h)) return;
    clearTimeout(h.timer);
    h.done();
  }
}
