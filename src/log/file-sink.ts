/**
 * The query log's line writers: a file (opened without following a symlink, reopened on SIGHUP for
 * logrotate) and stdout. Both are FdSinks (fd-sink.ts): non-blocking, never dropping a line.
 */
import * as fs from 'node:fs';
import { FdSink, resolveOptions, type SinkOptions } from './fd-sink';

export type { LineSink, SinkOptions } from './fd-sink';

export interface FileSinkOptions extends SinkOptions {
  path: string;
  /** Mode for a newly created file, default 0o600. An existing file's mode is left alone. */
  mode?: number;
}

export interface StdoutSinkOptions extends SinkOptions {
  /** File descriptor to write to; default 1. Meant for tests. */
  fd?: number;
}

/**
 * Append, create if missing, and refuse a symbolic link as the file itself (ELOOP): whoever can
 * write the log's directory must not be able to point pgscribe's writes at another file.
 */
const APPEND_NO_SYMLINK = fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW;

/** Appends lines to a file; reopen() supports logrotate (rename + SIGHUP). */
export class FileSink extends FdSink {
  readonly path: string;
  private readonly mode: number;

  constructor(opts: FileSinkOptions) {
    const mode = opts.mode ?? 0o600;
    // Synchronous so that startup fails fast; the error message contains the path
    // (e.g. "ENOENT: no such file or directory, open '/x/y.log'"). Parent dirs are not created.
    const resolved = resolveOptions(opts);
    const fd = fs.openSync(opts.path, APPEND_NO_SYMLINK, mode);
    super(fd, resolved);
    this.path = opts.path;
    this.mode = mode;
  }

  override reopen(): void {
    this.requestReopen();
  }

  protected override startReopen(): void {
    super.startReopen();
    fs.open(this.path, APPEND_NO_SYMLINK, this.mode, (err, newFd) => {
      if (err) {
        // Keep writing to the old fd; the next reopen() call tries again.
        this.reopenFinished();
        this.onError(err, 'reopen');
        return;
      }
      const oldFd = this.fd;
      this.fd = newFd;
      fs.close(oldFd, (closeErr) => {
        if (closeErr) this.onError(closeErr, 'close');
      });
      this.reopenFinished();
    });
  }

  protected closeFd(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      fs.close(this.fd, (err) => (err ? reject(err) : resolve()));
    });
  }
}

/**
 * Same contract on fd 1 (stdout). Writes with fs.write directly (EAGAIN on non-blocking pipes is
 * retried); do not mix with process.stdout.write() or lines may interleave. reopen() is a no-op
 * and close() flushes but leaves fd 1 open.
 */
export class StdoutSink extends FdSink {
  constructor(opts: StdoutSinkOptions = {}) {
    super(opts.fd ?? 1, resolveOptions(opts));
  }

  protected closeFd(): Promise<void> {
    return Promise.resolve();
  }
}
