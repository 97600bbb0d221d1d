/**
 * The query log's line writers: a file (opened without following a symlink, reopened on SIGHUP for
 * logrotate, optionally rotated by size) and stdout. Both are FdSinks (fd-sink.ts): non-blocking,
 * never dropping a line.
 *
 * Rotation by size names the files as logrotate (without dateext) and pino-roll's users expect:
 * `queries.log` is written, `queries.log.1` is the newest rotated file, `.2` the one before, up to
 * `.keep`; the file that would become `.keep + 1` is deleted (overwritten by the rename). Numbered
 * names rather than dates: `ls` and a tool reading them in order need no parsing, and an old
 * rotated file never changes name by a clock.
 */
import * as fs from 'node:fs';
import { FdSink } from './fd-sink';
import { resolveOptions, type SinkOptions } from './line-sink';

export type { LineSink, SinkOptions } from './line-sink';

export interface FileSinkOptions extends SinkOptions {
  path: string;
  /** Mode for a newly created file, default 0o600. An existing file's mode is left alone. */
  mode?: number;
  /** Rotate when the file would exceed this many bytes (default 0: never). */
  rotateBytes?: number;
  /** Rotated files kept, `path.1` (newest) to `path.<keep>` (default 5, at least 1). */
  rotateKeep?: number;
  /**
   * A rotation succeeded after failed ones (onError reported the first, context 'rotate'; the
   * retries are quiet): how long rotation failed, ms.
   */
  onRotateRecover?: (failedForMs: number) => void;
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

/** fs calls looked up at call time (tests replace them on the module to inject faults). */
function renameAsync(from: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => fs.rename(from, to, (err) => (err ? reject(err) : resolve())));
}
function openAsync(path: string, flags: number, mode: number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(path, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd))));
}
function existsAsync(path: string): Promise<boolean> {
  return new Promise((resolve) => fs.lstat(path, (err) => resolve(err === null)));
}
function fstatSize(fd: number): Promise<number> {
  return new Promise((resolve) => fs.fstat(fd, (err, st) => resolve(err ? 0 : st.size)));
}

/** A rename whose source may be missing (no `.3` yet): nothing to do. */
function missing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/** Appends lines to a file; reopen() supports logrotate (rename + SIGHUP); rotation by size. */
export class FileSink extends FdSink {
  readonly path: string;
  private readonly mode: number;
  private readonly keep: number;
  /** Rotations done (for the stats and the tests). */
  private rotationsDone = 0;
  /** Since when rotations fail (performance.now()), or null. */
  private rotateFailingSince: number | null = null;
  private readonly onRotateRecover: (failedForMs: number) => void;

  constructor(opts: FileSinkOptions) {
    const mode = opts.mode ?? 0o600;
    const rotateBytes = opts.rotateBytes ?? 0;
    const keep = opts.rotateKeep ?? 5;
    if (!(Number.isInteger(rotateBytes) && rotateBytes >= 0)) throw new RangeError(`rotateBytes must be an integer >= 0, got ${rotateBytes}`);
    if (!(Number.isInteger(keep) && keep >= 1)) throw new RangeError(`rotateKeep must be an integer >= 1, got ${keep}`);
    // Synchronous so that startup fails fast; the error message contains the path
    // (e.g. "ENOENT: no such file or directory, open '/x/y.log'"). Parent dirs are not created.
    const resolved = resolveOptions(opts);
    const fd = fs.openSync(opts.path, APPEND_NO_SYMLINK, mode);
    super(fd, resolved);
    this.path = opts.path;
    this.mode = mode;
    this.keep = keep;
    this.rotateBytes = rotateBytes;
    this.onRotateRecover = opts.onRotateRecover ?? (() => undefined);
    // A restart goes on where the last run left the file.
    this.fileBytes = fs.fstatSync(fd).size;
  }

  /** Rotations by size so far. */
  get rotations(): number {
    return this.rotationsDone;
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
      // The size counter goes on from what the reopened file holds (logrotate's copytruncate
      // leaves it empty; a reopen without a rename finds the old one).
      void fstatSize(newFd).then((size) => {
        this.fd = newFd;
        this.fileBytes = size;
        fs.close(oldFd, (closeErr) => {
          if (closeErr) this.onError(closeErr, 'close');
        });
        this.reopenFinished();
      });
    });
  }

  /** `path.N`, the N-th newest rotated file. */
  rotatedPath(n: number): string {
    return `${this.path}.${n}`;
  }

  /**
   * Rotation by size: shift `.keep-1` .. `.1` up one (the rename onto `.keep` deletes the oldest),
   * rename the file to `.1`, open a new one with the same flags and mode. Nothing is in flight.
   * On failure the current fd keeps taking the lines (FdSink retries later).
   */
  protected override startRotate(): void {
    this.rotateFiles().then(
      (newFd) => this.rotated(newFd),
      (err: NodeJS.ErrnoException) => {
        this.rotateFinished(false);
        this.rotateFailed(err);
      },
    );
  }

  /** Once per episode: the retries (FdSink's backoff, up to a minute apart) stay quiet. */
  private rotateFailed(err: NodeJS.ErrnoException): void {
    if (this.rotateFailingSince !== null) return;
    this.rotateFailingSince = performance.now();
    this.onError(err, 'rotate');
  }

  private rotateWorks(): void {
    this.rotationsDone++;
    if (this.rotateFailingSince === null) return;
    const ms = performance.now() - this.rotateFailingSince;
    this.rotateFailingSince = null;
    this.onRotateRecover(ms);
  }

  /**
   * How many rotated files to shift: `.1` up to the first missing one (at most keep - 1; `.keep`
   * is overwritten). Looking costs one call per file there is, not one per file that may be kept.
   */
  private async shiftCount(): Promise<number> {
    let n = 0;
    while (n < this.keep - 1 && (await existsAsync(this.rotatedPath(n + 1)))) n++;
    return n;
  }

  private async rotateFiles(): Promise<number> {
    for (let i = await this.shiftCount(); i >= 1; i--) {
      await renameAsync(this.rotatedPath(i), this.rotatedPath(i + 1)).catch((err: unknown) => {
        if (!missing(err)) throw err;
      });
    }
    // ENOENT: the file is gone from its path already (moved without a SIGHUP yet): a new one is opened.
    const moved = await renameAsync(this.path, this.rotatedPath(1)).then(
      () => true,
      (err: unknown) => {
        if (!missing(err)) throw err;
        return false;
      },
    );
    try {
      return await openAsync(this.path, APPEND_NO_SYMLINK, this.mode);
    } catch (err) {
      // Put the file back so that the lines to come land at its path, as before.
      if (moved) await renameAsync(this.rotatedPath(1), this.path).catch(() => undefined);
      throw err;
    }
  }

  private rotated(newFd: number): void {
    const oldFd = this.fd;
    this.fd = newFd;
    this.fileBytes = 0;
    this.rotateWorks();
    fs.close(oldFd, (closeErr) => {
      if (closeErr) this.onError(closeErr, 'close');
    });
    this.rotateFinished(true);
  }

  protected override rotateSync(): boolean {
    try {
      let shift = 0;
      while (shift < this.keep - 1 && fs.existsSync(this.rotatedPath(shift + 1))) shift++;
      for (let i = shift; i >= 1; i--) {
        try {
          fs.renameSync(this.rotatedPath(i), this.rotatedPath(i + 1));
        } catch (err) {
          if (!missing(err)) throw err;
        }
      }
      let moved = true;
      try {
        fs.renameSync(this.path, this.rotatedPath(1));
      } catch (err) {
        if (!missing(err)) throw err;
        moved = false;
      }
      let newFd: number;
      try {
        newFd = fs.openSync(this.path, APPEND_NO_SYMLINK, this.mode);
      } catch (err) {
        try {
          if (moved) fs.renameSync(this.rotatedPath(1), this.path);
        } catch {
          // the lines go on in .1; reported below
        }
        throw err;
      }
      const oldFd = this.fd;
      this.fd = newFd;
      this.fileBytes = 0;
      this.rotateWorks();
      try {
        fs.closeSync(oldFd);
      } catch {
        // nothing to do at exit
      }
      return true;
    } catch (err) {
      this.rotateFailed(err as NodeJS.ErrnoException);
      return false;
    }
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
