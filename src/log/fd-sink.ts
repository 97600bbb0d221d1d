/**
 * The machinery of the non-blocking, never-dropping line writers (in the spirit of pino's
 * sonic-boom): FdSink writes to a file descriptor; file-sink.ts opens one (a file, stdout).
 *
 * Model
 * -----
 * - `write()` only appends the text to an in-memory queue of "chunks" (strings of at most
 *   `maxWrite` UTF-8 bytes, built by concatenation, split only between write() calls) and
 *   updates a byte counter. It never touches fs.
 * - A single pump performs the I/O: at most ONE `fs.write` is in flight at any time. The first
 *   write after an idle period is started from `setImmediate`, so every line queued during the
 *   current event-loop turn is coalesced into one write. When a write completes the next one is
 *   started right away with whatever accumulated meanwhile.
 * - The buffer being written ("in-flight" buffer) is kept until all of its bytes are confirmed;
 *   after a partial write the remainder (`subarray(n)`) is written before anything else.
 * - Nothing is ever dropped. On EAGAIN/EINTR the same bytes are retried with a bounded backoff
 *   (10 ms doubling up to 1 s). On any other error (ENOSPC, EIO, EBADF, ...) `onError` is called
 *   once per failure episode, the write is retried at 100 ms doubling up to 1 s, and `onRecover`
 *   is called once when a write succeeds again (the end of the episode). The producer sees
 *   backpressure because `write()` keeps returning false once more than `highWaterMark` bytes
 *   are buffered. A write that fails wrote nothing; one cut short by a full disk wrote a prefix,
 *   and the rest goes first on the retry: the file gets every line once, whole, in order.
 * - Timers exist only while data is queued and a retry is pending; an idle sink holds no timer
 *   and no pending I/O, so it never keeps the process alive on its own.
 * - Rotation by size (FileSink, issue 19): the sink counts the bytes of its current file. Before
 *   the next write, a chunk that would take the file past `rotateBytes` is cut after its last
 *   whole line that fits; the cut part is written, and the rest waits while the file is rotated
 *   (the same place a reopen happens: nothing in flight). Chunks hold whole lines (write() takes
 *   whole lines, writeBytes() too), so a cut never splits a line; a single line longer than the
 *   limit goes whole into a file of its own.
 */
import * as fs from 'node:fs';
import type { LineSink, ResolvedOptions } from './line-sink';

const RETRY_MIN_MS = 10;
const RETRY_MAX_MS = 1000;
/**
 * Failures (not EAGAIN) are retried at 100 ms doubling up to 1 s: space freed on a full disk is
 * used (and paused clients resume) within a second, and a disk that stays full costs one write a
 * second.
 */
const FAILURE_RETRY_MIN_MS = 100;
const FAILURE_RETRY_MAX_MS = 1000;
/** How long flushSync keeps retrying EAGAIN before giving up (e.g. a stalled stdout pipe). */
const SYNC_EAGAIN_BUDGET_MS = 5000;

function isTransient(err: NodeJS.ErrnoException): boolean {
  return err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK' || err.code === 'EINTR';
}

function errnoError(code: string, message: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code}: ${message}`);
  err.code = code;
  return err;
}

let sleepCell: Int32Array | undefined;
function sleepSync(ms: number): void {
  sleepCell ??= new Int32Array(new SharedArrayBuffer(4));
  Atomics.wait(sleepCell, 0, 0, ms);
}

const NEWLINE = 0x0a;

/** After a failed rotation the file grows past the limit for this long (doubling), then the next rotation is tried. */
const ROTATE_RETRY_MIN_MS = 1000;
const ROTATE_RETRY_MAX_MS = 60_000;

interface FlushWaiter {
  target: number;
  resolve: () => void;
}

export abstract class FdSink implements LineSink {
  protected fd: number;
  protected readonly onError: (err: NodeJS.ErrnoException, context: string) => void;
  private readonly onRecover: (failedForMs: number) => void;
  private readonly highWaterMark: number;
  private readonly lowWaterMark: number;
  private readonly maxWrite: number;
  private readonly minWrite: number;
  private readonly maxDelayMs: number;
  /** Batching timer: armed while fewer than minWrite bytes wait and nothing is in flight. */
  private delayTimer: NodeJS.Timeout | null = null;

  /**
   * Queued bytes not yet handed to fs: sealed chunks of at most maxWrite bytes (a single longer
   * line is a chunk of its own), then the chunk being filled. Text is UTF-8 encoded straight into
   * the chunk with buf.write(), which measures and encodes in one pass (bench/log-writer.ts: about
   * 2.5x faster than Buffer.byteLength per line plus Buffer.from of the concatenated text).
   */
  private readonly chunks: Buffer[] = [];
  /** The chunk being filled (maxWrite bytes) and how much of it is used. */
  private fill: Buffer | null = null;
  private fillLen = 0;
  /** A written fill buffer kept for reuse, so a steady stream of lines does not allocate. */
  private spare: Buffer | null = null;
  /** Backing stores of the fill buffers (their own, never Node's shared pool): safe to reuse. */
  private readonly fillBuffers = new WeakSet<ArrayBufferLike>();
  /** Bytes in `chunks` plus fillLen. */
  private pendingBytes = 0;

  /** Bytes of the current chunk not yet confirmed written (null: none). */
  private inflight: Buffer | null = null;
  /** Accounted size of the chunk `inflight` came from (for the flush counters). */
  private inflightAccounted = 0;
  /** An fs.write callback is outstanding. */
  private writing = false;
  /** setImmediate kick scheduled. */
  private scheduled = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private backoffMs = 0;
  /** In a (non-transient) failure episode: onError already called. */
  private failing = false;
  /** When the failure episode began (performance.now()). */
  private failingSince = 0;

  /** Cumulative accounted bytes queued / fully written; used for flush(). */
  private queuedTotal = 0;
  private writtenTotal = 0;
  private flushWaiters: FlushWaiter[] = [];
  private drainCallbacks: Array<() => void> = [];

  protected reopenPending = false;
  protected reopening = false;
  private reopenWaiters: Array<() => void> = [];

  private closed = false;
  private closePromise: Promise<void> | null = null;

  /** Rotate before the current file would exceed this many bytes (0: never; FileSink sets it). */
  protected rotateBytes = 0;
  /** Bytes in the current file: its size at open (fstat) plus what this sink wrote to it. */
  protected fileBytes = 0;
  /** A failed rotation: none is tried again before this (performance.now()); the file grows meanwhile. */
  private rotateHoldUntil = 0;
  private rotateBackoffMs = 0;

  private readonly kick = (): void => {
    this.scheduled = false;
    if (this.delayTimer !== null) {
      clearTimeout(this.delayTimer);
      this.delayTimer = null;
    }
    this.pump(true);
  };

  private readonly retry = (): void => {
    this.retryTimer = null;
    this.pump();
  };

  private readonly onWriteDone = (err: NodeJS.ErrnoException | null, n: number): void => {
    this.writing = false;
    if (err) {
      this.onWriteFailed(err, 'write');
      return;
    }
    this.backoffMs = 0;
    this.recovered();
    this.consumed(n);
    this.pump();
    this.maybeDrain();
  };

  protected constructor(fd: number, opts: ResolvedOptions) {
    this.fd = fd;
    this.highWaterMark = opts.highWaterMark;
    this.lowWaterMark = opts.lowWaterMark;
    this.maxWrite = opts.maxWrite;
    this.minWrite = opts.minWrite;
    this.maxDelayMs = opts.maxDelayMs;
    this.onError = opts.onError;
    this.onRecover = opts.onRecover;
  }

  get bufferedBytes(): number {
    return this.pendingBytes + (this.inflight === null ? 0 : this.inflight.length);
  }

  write(text: string): boolean {
    if (this.closed) throw new Error('log sink: write() after close()');
    if (text.length > 0) {
      let n: number;
      // A UTF-16 code unit takes at most 3 UTF-8 bytes: with that much room the text fits whole.
      const worst = text.length * 3;
      if (this.fill !== null && this.fill.length - this.fillLen >= worst) {
        n = this.fill.write(text, this.fillLen);
        this.fillLen += n;
      } else if (worst <= this.maxWrite) {
        this.seal();
        this.fill = this.spare ?? this.newFill();
        this.spare = null;
        n = this.fill.write(text, 0);
        this.fillLen = n;
      } else {
        // Possibly longer than a chunk: encode exactly and queue it as its own chunk (or add it to
        // the current one when it turns out to fit).
        const b = Buffer.from(text, 'utf8');
        n = b.length;
        if (this.fill !== null && this.fill.length - this.fillLen >= n) {
          b.copy(this.fill, this.fillLen);
          this.fillLen += n;
        } else {
          this.seal();
          this.chunks.push(b);
        }
      }
      this.queued(n);
    }
    return this.bufferedBytes <= this.highWaterMark;
  }

  /**
   * Room for one line of at most maxBytes, formatted straight into the buffer being filled (the
   * text log's byte path, line-bytes.ts): that buffer, with the line to go at `reservedAt`; then
   * commit() queues it. Null when maxBytes is more than a chunk holds (the caller writes a string
   * instead). Nothing is queued until commit(), so a caller that gives up leaves no trace.
   */
  reserve(maxBytes: number): Buffer | null {
    if (this.closed) throw new Error('log sink: reserve() after close()');
    if (maxBytes > this.maxWrite) return null;
    if (this.fill === null || this.fill.length - this.fillLen < maxBytes) {
      this.seal();
      this.fill = this.spare ?? this.newFill();
      this.spare = null;
    }
    return this.fill;
  }

  /** Where reserve()'s line starts in its buffer. */
  get reservedAt(): number {
    return this.fillLen;
  }

  /** Queue what was written into reserve()'s buffer, up to end; write()'s backpressure verdict. */
  commit(end: number): boolean {
    const n = end - this.fillLen;
    if (n > 0) {
      this.fillLen = end;
      this.queued(n);
    }
    return this.bufferedBytes <= this.highWaterMark;
  }

  /**
   * Queue bytes that are already whole UTF-8 lines (copied: the caller may reuse b). The primary
   * of --processes N writes the lines its processes hand it this way, without decoding them.
   */
  writeBytes(b: Buffer): boolean {
    if (this.closed) throw new Error('log sink: writeBytes() after close()');
    const n = b.length;
    if (n > 0) {
      if (this.fill !== null && this.fill.length - this.fillLen >= n) {
        b.copy(this.fill, this.fillLen);
        this.fillLen += n;
      } else if (n <= this.maxWrite) {
        this.seal();
        this.fill = this.spare ?? this.newFill();
        this.spare = null;
        b.copy(this.fill, 0);
        this.fillLen = n;
      } else {
        this.seal();
        this.chunks.push(Buffer.from(b));
      }
      this.queued(n);
    }
    return this.bufferedBytes <= this.highWaterMark;
  }

  /** n more bytes wait: start a write now, or when the batch is big or old enough. */
  private queued(n: number): void {
    this.pendingBytes += n;
    this.queuedTotal += n;
    if (!this.scheduled && !this.writing && this.retryTimer === null && !this.reopening) {
      if (this.pendingBytes >= this.minWrite) {
        this.scheduled = true;
        setImmediate(this.kick);
      } else if (this.delayTimer === null) {
        this.delayTimer = setTimeout(this.kick, this.maxDelayMs);
      }
    }
  }

  onDrain(cb: () => void): void {
    if (this.bufferedBytes <= this.lowWaterMark) {
      process.nextTick(cb);
    } else {
      this.drainCallbacks.push(cb);
    }
  }

  reopen(): void {
    // No-op by default (stdout); FileSink overrides.
  }

  flush(): Promise<void> {
    if (this.writtenTotal >= this.queuedTotal) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.flushWaiters.push({ target: this.queuedTotal, resolve });
      // Don't wait for the batching delay.
      if (!this.scheduled && !this.writing) {
        this.scheduled = true;
        setImmediate(this.kick);
      }
    });
  }

  /**
   * Write everything still queued with fs.writeSync, for process-exit paths.
   *
   * Decision: if an asynchronous fs.write is in flight, flushSync writes NOTHING and returns
   * (the data stays queued; `bufferedBytes` > 0 tells the caller). Reason: we cannot know how
   * much of the in-flight buffer the thread pool has written (or whether it has started), so
   *  - rewriting the in-flight buffer could duplicate lines, and
   *  - writing the later queued data now could land it before the in-flight bytes (reordering,
   *    or a line torn by a partial in-flight write).
   * Order and no-duplication win over completeness in that rare case. The normal exit path is
   * `await sink.flush()` (or close()) first, after which nothing is in flight and flushSync
   * writes whatever was queued since, completely and in order.
   *
   * When no write is in flight (idle, scheduled, waiting for a retry timer, or while a reopen's
   * fs.open is pending, in which case the old fd is used) it writes the remainder of the
   * in-flight buffer and then all queued chunks, handling partial writes and retrying
   * EAGAIN/EINTR (bounded to a few seconds). On another error it reports via onError (once per
   * episode), leaves the rest queued and lets the asynchronous retry loop take over.
   */
  flushSync(): void {
    if (this.writing) return;
    if (this.inflight === null && this.chunks.length === 0 && this.fillLen === 0) return;
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    if (this.delayTimer !== null) {
      clearTimeout(this.delayTimer);
      this.delayTimer = null;
    }
    let eagainSince = 0;
    for (;;) {
      if (this.inflight === null) {
        // While an asynchronous rotation or reopen is under way the old fd takes the rest, whole.
        const next = this.takeChunk(!this.reopening);
        if (next === 'idle') break;
        if (next === 'rotate') {
          this.rotationSettled(this.rotateSync());
          continue;
        }
      }
      const buf = this.inflight!;
      let n: number;
      try {
        n = fs.writeSync(this.fd, buf, 0, buf.length, null);
        if (n === 0) throw errnoError('EAGAIN', 'write() wrote 0 bytes');
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (isTransient(err)) {
          const now = Date.now();
          if (eagainSince === 0) eagainSince = now;
          if (now - eagainSince < SYNC_EAGAIN_BUDGET_MS) {
            sleepSync(1);
            continue;
          }
        }
        this.onWriteFailed(err, 'flushSync');
        return;
      }
      eagainSince = 0;
      this.backoffMs = 0;
      this.recovered();
      this.consumed(n);
    }
    if (this.drainCallbacks.length > 0) process.nextTick(() => this.maybeDrain());
  }

  close(): Promise<void> {
    if (this.closePromise === null) {
      this.closed = true;
      this.closePromise = this.doClose();
    }
    return this.closePromise;
  }

  private async doClose(): Promise<void> {
    await this.flush();
    while (this.reopening || this.reopenPending) {
      await new Promise<void>((resolve) => this.reopenWaiters.push(resolve));
    }
    await this.closeFd();
  }

  /** Close the underlying fd at close() time. */
  protected abstract closeFd(): Promise<void>;

  /** Rotate the file (FileSink): nothing is in flight. Must eventually call rotateFinished(). */
  protected startRotate(): void {
    this.rotateFinished(false);
  }

  /**
   * Rotate synchronously (flushSync's exit path): true when the new file is open. FileSink
   * overrides; reports its own failure.
   */
  protected rotateSync(): boolean {
    return false;
  }

  /**
   * The rotation ended. ok: a new file is open (fileBytes was set to its size). Otherwise the
   * current file takes the lines meanwhile (the limit is set aside for ROTATE_RETRY_MIN_MS,
   * doubling up to ROTATE_RETRY_MAX_MS): a rename that fails never costs a line.
   */
  protected rotateFinished(ok: boolean): void {
    this.rotationSettled(ok);
    this.reopenFinished();
  }

  private rotationSettled(ok: boolean): void {
    if (ok) {
      this.rotateBackoffMs = 0;
      this.rotateHoldUntil = 0;
    } else {
      this.rotateBackoffMs = this.rotateBackoffMs === 0 ? ROTATE_RETRY_MIN_MS : Math.min(this.rotateBackoffMs * 2, ROTATE_RETRY_MAX_MS);
      this.rotateHoldUntil = performance.now() + this.rotateBackoffMs;
    }
  }

  /** Start the reopen (FileSink). Must eventually call reopenFinished(). */
  protected startReopen(): void {
    this.reopenPending = false;
  }

  protected reopenFinished(): void {
    this.reopening = false;
    const waiters = this.reopenWaiters;
    this.reopenWaiters = [];
    for (const w of waiters) w();
    this.pump();
  }

  /** Reopen requested: start it now unless a write/open is outstanding (then pump() does it). */
  protected requestReopen(): void {
    if (this.closePromise !== null && !this.reopening && !this.writing && this.bufferedBytes === 0) {
      return; // closing and nothing left to write: nothing would go to the new file
    }
    this.reopenPending = true;
    if (this.writing || this.reopening) return;
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    this.pump();
  }

  /**
   * Start the next fs.write if possible. Unless forced (batching timer, flush, close), a partial
   * batch (under minWrite bytes, nothing half-written) waits for the batching timer.
   */
  private pump(force = false): void {
    if (this.writing || this.reopening || this.retryTimer !== null) return;
    if (
      !force &&
      !this.reopenPending &&
      this.inflight === null &&
      this.pendingBytes > 0 &&
      this.pendingBytes < this.minWrite &&
      this.flushWaiters.length === 0 &&
      this.closePromise === null
    ) {
      if (this.delayTimer === null && !this.scheduled) this.delayTimer = setTimeout(this.kick, this.maxDelayMs);
      return;
    }
    // A reopen waits for the in-flight buffer to be fully written (so a line is never torn
    // across the two files), except during a failure episode on the old fd, where waiting
    // could mean waiting forever (the reopen may be the operator's fix).
    if (this.reopenPending && (this.inflight === null || this.failing)) {
      this.reopening = true;
      this.startReopen();
      return;
    }
    if (this.inflight === null) {
      const next = this.takeChunk(true);
      if (next === 'idle') return;
      if (next === 'rotate') {
        // Between writes, like a reopen: lines queued meanwhile wait and go to the new file.
        this.reopening = true;
        this.startRotate();
        return;
      }
    }
    const buf = this.inflight!;
    this.writing = true;
    fs.write(this.fd, buf, 0, buf.length, null, this.onWriteDone);
  }

  private newFill(): Buffer {
    const b = Buffer.allocUnsafeSlow(this.maxWrite);
    this.fillBuffers.add(b.buffer);
    return b;
  }

  /** Queue the chunk being filled (if it holds anything) behind the sealed ones. */
  private seal(): void {
    if (this.fill !== null && this.fillLen > 0) {
      this.chunks.push(this.fill.subarray(0, this.fillLen));
      this.fill = null;
      this.fillLen = 0;
    }
  }

  /**
   * Move the first queued chunk into the in-flight buffer ('write'), or say that there is none
   * ('idle') or that the file must be rotated first ('rotate'). With `cut` and a size limit, only
   * the whole lines that still fit in the current file are taken; the rest stays queued first.
   * An empty file takes at least one line, however long.
   */
  private takeChunk(cut: boolean): 'write' | 'idle' | 'rotate' {
    if (this.chunks.length === 0) this.seal();
    let chunk = this.chunks[0];
    if (chunk === undefined) return 'idle';
    if (cut && this.rotateBytes > 0 && this.fileBytes + chunk.length > this.rotateBytes && performance.now() >= this.rotateHoldUntil) {
      const room = this.rotateBytes - this.fileBytes;
      let end = room > 0 ? chunk.lastIndexOf(NEWLINE, room - 1) + 1 : 0;
      if (end === 0) {
        if (this.fileBytes > 0) return 'rotate';
        end = chunk.indexOf(NEWLINE) + 1 || chunk.length;
      }
      if (end < chunk.length) {
        // The rest shares the chunk's memory: consumed() must not recycle it meanwhile.
        this.chunks[0] = chunk.subarray(end);
        chunk = chunk.subarray(0, end);
      } else {
        this.chunks.shift();
      }
    } else {
      this.chunks.shift();
    }
    this.pendingBytes -= chunk.length;
    this.inflight = chunk;
    this.inflightAccounted = chunk.length;
    return 'write';
  }

  /** `n` bytes of the in-flight buffer were written. */
  private consumed(n: number): void {
    const buf = this.inflight!;
    this.fileBytes += n;
    if (n < buf.length) {
      this.inflight = buf.subarray(n);
      return;
    }
    // A fully written fill buffer is free again (unless a rotation cut it and its rest still
    // waits): keep one for the next lines.
    if (this.spare === null && this.fillBuffers.has(buf.buffer) && this.chunks[0]?.buffer !== buf.buffer) this.spare = Buffer.from(buf.buffer, 0, this.maxWrite);
    this.inflight = null;
    this.writtenTotal += this.inflightAccounted;
    this.inflightAccounted = 0;
    while (this.flushWaiters.length > 0 && this.flushWaiters[0]!.target <= this.writtenTotal) {
      this.flushWaiters.shift()!.resolve();
    }
  }

  /** A write went through: a failure episode (if any) is over, and the operator hears so once. */
  private recovered(): void {
    if (!this.failing) return;
    this.failing = false;
    this.onRecover(performance.now() - this.failingSince);
  }

  private onWriteFailed(err: NodeJS.ErrnoException, context: string): void {
    let report = false;
    if (isTransient(err)) {
      this.backoffMs = this.backoffMs === 0 ? RETRY_MIN_MS : Math.min(this.backoffMs * 2, RETRY_MAX_MS);
    } else {
      report = !this.failing;
      this.backoffMs = report ? FAILURE_RETRY_MIN_MS : Math.min(Math.max(this.backoffMs, FAILURE_RETRY_MIN_MS) * 2, FAILURE_RETRY_MAX_MS);
      if (report) this.failingSince = performance.now();
      this.failing = true;
    }
    if (this.reopenPending && this.failing) {
      // Reopen may be what fixes the failure: do it now rather than after the retry delay.
      this.pump();
    } else {
      this.retryTimer = setTimeout(this.retry, this.backoffMs);
    }
    if (report) this.onError(err, context);
  }

  private maybeDrain(): void {
    if (this.drainCallbacks.length === 0 || this.bufferedBytes > this.lowWaterMark) return;
    const cbs = this.drainCallbacks;
    this.drainCallbacks = [];
    for (const cb of cbs) cb();
  }
}
