/**
 * The query log seen from a Client: one call per Q/P/B/E message. Implementations decide where
 * lines go (file, stdout) or whether they go anywhere (none); the state machine does not care.
 */
import type { LineSink } from './file-sink';
import type { CompletionFormatter, CompletionRecord, LineFormatter, QueryRecord, SessionInfo } from './format';

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
  /** One-shot callback for when the writer has caught up after log() returned false. */
  onDrain(cb: () => void): void;
  /** Reopen the destination (SIGHUP, logrotate). */
  reopen(): void;
  /**
   * A reload changed how query lines are written (log-params and the like): lines from now on
   * use `format`. Optional: a logger that formats its own way has nothing to change.
   */
  reformat?(format: LineFormatter): void;
  /** Write everything queued; resolves when done. */
  flush(): Promise<void>;
  /** Last-resort synchronous flush on process exit. */
  flushSync(): void;
  close(): Promise<void>;
  /** Lines accepted so far. */
  readonly lines: number;
  /** Bytes accepted and not yet written. */
  readonly queuedBytes: number;
}

/** Formats records and hands the lines to a LineSink (a file or stdout). */
export class SinkLogger implements ClientLogger {
  readonly enabled = true;
  private count = 0;
  constructor(
    private readonly sink: LineSink,
    private format: LineFormatter,
    private readonly completionFormat: CompletionFormatter | null = null,
  ) {}

  log(session: SessionInfo, record: QueryRecord): boolean {
    this.count++;
    return this.sink.write(this.format(session, record, Date.now()));
  }
  logCompletion(session: SessionInfo, record: CompletionRecord): boolean {
    if (this.completionFormat === null) return true;
    this.count++;
    return this.sink.write(this.completionFormat(session, record, Date.now()));
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
  reformat(format: LineFormatter): void {
    this.format = format;
  }
  flush(): Promise<void> {
    return this.sink.flush();
  }
  flushSync(): void {
    this.sink.flushSync();
  }
  close(): Promise<void> {
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
