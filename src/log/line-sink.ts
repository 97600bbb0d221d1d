/**
 * The query log's writer seen from its users: the LineSink interface (where formatted lines go)
 * and the options every sink takes, with their defaults (fd-sink.ts implements them).
 */

import type { ByteSink } from './line-bytes';

/**
 * Where formatted log lines go. Lines are complete, each ending with '\n': as text (write), or
 * formatted in place as bytes (ByteSink: reserve, then commit).
 */
export interface LineSink extends ByteSink {
  /**
   * Queue text (one or more complete lines). Returns false when the buffered bytes exceed
   * highWaterMark: the producer should pause until onDrain fires. Never drops.
   */
  write(text: string): boolean;
  /**
   * Register a one-shot callback, called once buffered bytes fall to lowWaterMark or below
   * (only meaningful after write() returned false). If that is already the case when
   * registering, the callback is called on the next tick.
   */
  onDrain(cb: () => void): void;
  /**
   * Reopen the file at the same path (logrotate/SIGHUP). Deferred until the write in flight
   * completes; no line is lost or written twice; lines queued after the call go to the new file.
   */
  reopen(): void;
  /** Resolves when everything queued before the call is written to the OS. */
  flush(): Promise<void>;
  /**
   * Synchronous flush for process exit paths (fs.writeSync loop). If an asynchronous write is
   * in flight at that moment nothing is written (see FdSink.flushSync); check `bufferedBytes`
   * afterwards to know whether everything went out.
   */
  flushSync(): void;
  /** Flush then close; further writes are a programming error (throw). */
  close(): Promise<void>;
  /** Bytes queued and not yet written. */
  readonly bufferedBytes: number;
}

export interface SinkOptions {
  /** Default 8 MiB. */
  highWaterMark?: number;
  /** Default highWaterMark / 4. */
  lowWaterMark?: number;
  /** Max bytes per fs.write call, default 1 MiB (a single longer line is written whole). */
  maxWrite?: number;
  /**
   * Batching: an idle writer waits until this many bytes are queued (default 64 KiB) or
   * maxDelayMs passed since the first of them (default 20 ms), so a busy proxy makes a few large
   * writes rather than one per event-loop turn. flush()/close()/flushSync() do not wait.
   */
  minWrite?: number;
  maxDelayMs?: number;
  /**
   * Operational reporting (default: no-op). Called once per distinct failure episode, not per
   * retry. `context` is one of 'write', 'flushSync', 'reopen', 'close', 'rotate'.
   */
  onError?: (err: NodeJS.ErrnoException, context: string) => void;
  /**
   * A write succeeded after a failure episode that onError reported ('write' or 'flushSync'):
   * the operator learns that the problem cleared, and how long it lasted (ms).
   */
  onRecover?: (failedForMs: number) => void;
}

const DEFAULT_HIGH_WATER_MARK = 8 * 1024 * 1024;
const DEFAULT_MAX_WRITE = 1024 * 1024;
const DEFAULT_MIN_WRITE = 64 * 1024;
const DEFAULT_MAX_DELAY_MS = 20;
function noop(): void {}

export interface ResolvedOptions {
  highWaterMark: number;
  lowWaterMark: number;
  maxWrite: number;
  minWrite: number;
  maxDelayMs: number;
  onError: (err: NodeJS.ErrnoException, context: string) => void;
  onRecover: (failedForMs: number) => void;
}

export function resolveOptions(opts: SinkOptions): ResolvedOptions {
  const highWaterMark = opts.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
  const lowWaterMark = opts.lowWaterMark ?? Math.floor(highWaterMark / 4);
  const maxWrite = opts.maxWrite ?? DEFAULT_MAX_WRITE;
  if (!(highWaterMark > 0)) throw new RangeError(`highWaterMark must be > 0, got ${highWaterMark}`);
  if (!(lowWaterMark >= 0 && lowWaterMark <= highWaterMark)) {
    throw new RangeError(`lowWaterMark must be between 0 and highWaterMark, got ${lowWaterMark}`);
  }
  if (!(maxWrite >= 1)) throw new RangeError(`maxWrite must be >= 1, got ${maxWrite}`);
  const minWrite = opts.minWrite ?? Math.min(DEFAULT_MIN_WRITE, maxWrite);
  const maxDelayMs = opts.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
  if (!(minWrite >= 0 && minWrite <= maxWrite)) throw new RangeError(`minWrite must be between 0 and maxWrite, got ${minWrite}`);
  if (!(maxDelayMs >= 0)) throw new RangeError(`maxDelayMs must be >= 0, got ${maxDelayMs}`);
  return { highWaterMark, lowWaterMark, maxWrite, minWrite, maxDelayMs, onError: opts.onError ?? noop, onRecover: opts.onRecover ?? noop };
}
