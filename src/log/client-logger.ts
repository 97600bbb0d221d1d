/**
 * The query log seen from a Client: one call per Q/P/B/E message. Implementations decide where
 * lines go (file, stdout) or whether they go anywhere (none); the state machine does not care.
 */
import type { LineSink } from './file-sink';
import type { LineWriter } from './line-bytes';
import type { Sampler } from './sampling';
import type { CompletionFormatter, CompletionRecord, LineFormatter, QueryRecord, SessionFormatter, SessionInfo, SessionLine, WireRecord } from './format';

export interface ClientLogger {
  /** False when nothing is recorded: callers may skip building records. */
  readonly enabled: boolean;
  /**
   * Record one query message before it is forwarded. Returns false when the writer is behind
   * (over its high-water mark): the caller stops reading from its client until onDrain fires.
   * A line is never dropped.
   */
  log(session: SessionInfo, record: QueryRecord): boolean;
  /** Record how a query ended (--log-completions); same backpressure contract as log(). */
  logCompletion(session: SessionInfo, record: CompletionRecord): boolean;
  /**
   * log-replay: a session's start (when PostgreSQL accepted it, before its first record) or its
   * end (after its last); same backpressure contract as log(). Optional: a logger without it
   * writes no session lines, and its sessions' records are the same.
   */
  logSession?(session: SessionInfo, line: SessionLine): boolean;
  /**
   * log-replay: a Describe, Close, Sync or Flush, in its place among the query records; same
   * contract as log(). Optional: a logger without it sees gaps in a session's seq where they were.
   */
  logWire?(session: SessionInfo, record: WireRecord): boolean;
  /** One-shot callback for when the writer has caught up after log() returned false. */
  onDrain(cb: () => void): void;
  /** Reopen the destination (SIGHUP, logrotate). */
  reopen(): void;
  /**
   * A reload changed how query lines are written (log-params and the like): lines from now on
   * use `format`. Optional: a logger that formats its own way has nothing to change.
   */
  reformat?(format: LineFormatter, writer?: LineWriter | null): void;
  /** Write everything queued; resolves when done. */
  flush(): Promise<void>;
  /** Last-resort synchronous flush on process exit. */
  flushSync(): void;
  close(): Promise<void>;
  /** Lines accepted so far (written or queued). */
  readonly lines: number;
  /** Lines log-sample left out (optional: a logger that does not sample leaves it out). */
  readonly sampledOut?: number;
  /** Lines dropped because the writer was behind (log-overflow drop; optional likewise). */
  readonly dropped?: number;
  /** Bytes accepted and not yet written. */
  readonly queuedBytes: number;
}

/** What a SinkLogger leaves out: sampled sessions, and lines that find the writer behind. */
export interface LogPolicy {
  sampler?: Sampler | null;
  /**
   * log-overflow drop: a line that finds this many bytes queued or more is dropped and counted,
   * and clients are never paused. Null (the default): every line waits its turn.
   */
  dropAboveBytes?: number | null;
  /** Called once a second while lines are being dropped, with that second's count. */
  reportDropped?: (count: number, total: number) => void;
}

/** Formats records and hands the lines to a LineSink (a file or stdout). */
export class SinkLogger implements ClientLogger {
  readonly enabled = true;
  private count = 0;
  private sampledCount = 0;
  private droppedCount = 0;
  private droppedThisSecond = 0;
  private dropTimer: NodeJS.Timeout | null = null;
  private readonly sampler: Sampler | null;
  private readonly dropAbove: number | null;
  /** Per session, the seqs of Q/E lines sampling left out: their `done` lines go too. */
  private readonly unsampled = new WeakMap<SessionInfo, Set<number>>();

  constructor(
    private readonly sink: LineSink,
    private format: LineFormatter,
    private readonly completionFormat: CompletionFormatter | null = null,
    private readonly policy: LogPolicy = {},
    /** log-replay's start and end lines (null: none are written). */
    private readonly sessionFormat: SessionFormatter | null = null,
    /** The text log's byte path for the lines it can write (line-bytes.ts; null: every line is formatted as a string). */
    private writer: LineWriter | null = null,
  ) {
    this.sampler = policy.sampler ?? null;
    this.dropAbove = policy.dropAboveBytes ?? null;
  }

  log(session: SessionInfo, record: QueryRecord): boolean {
    return this.logRecord(session, record);
  }
  logWire(session: SessionInfo, record: WireRecord): boolean {
    return this.logRecord(session, record);
  }
  private logRecord(session: SessionInfo, record: QueryRecord | WireRecord): boolean {
    if (this.sampler !== null && !this.sampler.keeps(session, record.sql)) {
      this.sampledCount++;
      if (this.completionFormat !== null && record.seq !== undefined && (record.type === 'Q' || record.type === 'E')) {
        let seqs = this.unsampled.get(session);
        if (seqs === undefined) this.unsampled.set(session, (seqs = new Set()));
        seqs.add(record.seq);
      }
      return true;
    }
    const now = Date.now();
    // log-overflow drop decides line by line on the text it would queue (writeOrDrop): string path.
    if (this.writer !== null && this.dropAbove === null) {
      const accepted = this.writer(session, record, now, this.sink);
      if (accepted !== null) {
        this.count++;
        return accepted;
      }
    }
    return this.emit(this.format(session, record, now));
  }
  logCompletion(session: SessionInfo, record: CompletionRecord): boolean {
    if (this.completionFormat === null) return true;
    if (this.sampler !== null && this.unsampled.get(session)?.delete(record.seq) === true) {
      this.sampledCount++;
      return true;
    }
    return this.emit(this.completionFormat(session, record, Date.now()));
  }

  logSession(session: SessionInfo, line: SessionLine): boolean {
    if (this.sessionFormat === null) return true;
    // The session's one draw decides, as for its other lines (log-replay refuses rules with sql).
    if (this.sampler !== null && !this.sampler.keeps(session, null)) {
      this.sampledCount++;
      return true;
    }
    return this.emit(this.sessionFormat(session, line, Date.now()));
  }

  /** One line to the sink: false asks the client to pause (never in drop mode). */
  private emit(line: string): boolean {
    if (this.dropAbove !== null) return this.writeOrDrop(line);
    this.count++;
    return this.sink.write(line);
  }

  /** log-overflow drop: write the line unless the writer is behind; never pause the client. */
  private writeOrDrop(line: string): true {
    if (this.sink.bufferedBytes >= this.dropAbove!) {
      this.droppedCount++;
      this.droppedThisSecond++;
      if (this.dropTimer === null) this.startDropReports();
      return true;
    }
    this.count++;
    this.sink.write(line);
    return true;
  }

  /** One report a second while lines are dropped; the timer stops after a second without any. */
  private startDropReports(): void {
    this.dropTimer = setInterval(() => {
      const n = this.droppedThisSecond;
      this.droppedThisSecond = 0;
      if (n > 0) {
        this.policy.reportDropped?.(n, this.droppedCount);
        return;
      }
      clearInterval(this.dropTimer!);
      this.dropTimer = null;
    }, 1000);
    this.dropTimer.unref();
  }

  get sampledOut(): number {
    return this.sampledCount;
  }
  get dropped(): number {
    return this.droppedCount;
  }
  /** Bytes accepted and not yet written (the sink's queue). */
  get queuedBytes(): number {
    return this.sink.bufferedBytes;
  }
  onDrain(cb: () => void): void {
    this.sink.onDrain(cb);
  }
  reopen(): void {
    this.sink.reopen();
  }
  reformat(format: LineFormatter, writer: LineWriter | null = null): void {
    this.format = format;
    this.writer = writer;
  }
  flush(): Promise<void> {
    return this.sink.flush();
  }
  flushSync(): void {
    this.sink.flushSync();
  }
  close(): Promise<void> {
    if (this.dropTimer !== null) {
      clearInterval(this.dropTimer);
      this.dropTimer = null;
      // The last second's drops are said too: none goes unreported.
      if (this.droppedThisSecond > 0) this.policy.reportDropped?.(this.droppedThisSecond, this.droppedCount);
      this.droppedThisSecond = 0;
    }
    return this.sink.close();
  }
  get lines(): number {
    return this.count;
  }
}

/** Logging turned off: costs one property read per message. */
export class NoopLogger implements ClientLogger {
  readonly enabled = false;
  readonly lines = 0;
  readonly sampledOut = 0;
  readonly dropped = 0;
  log(): boolean {
    return true;
  }
  logCompletion(): boolean {
    return true;
  }
  readonly queuedBytes = 0;
  onDrain(cb: () => void): void {
    cb();
  }
  reopen(): void {}
  flush(): Promise<void> {
    return Promise.resolve();
  }
  flushSync(): void {}
  close(): Promise<void> {
    return Promise.resolve();
  }
}
