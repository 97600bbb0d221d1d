/**
 * Opening the query log the settings ask for: its sink (the file, stdout, or with --processes N
 * the pipe to the primary), the logger over it with its formats and policy, and what operators
 * read when the log cannot be written or rotated.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Config } from '../config';
import { NoopLogger, SinkLogger, type ClientLogger } from './client-logger';
import { FileSink, StdoutSink } from './file-sink';
import { jsonCompletionFormatter, jsonSessionFormatter, lineFormatterOf, textCompletionFormatter } from './format';
import { lineWriterOf } from './line-bytes';
import type { OpsLog } from './ops';
import { Sampler } from './sampling';

/**
 * The query log's sink: the file (or stdout) the settings name, or with --processes N in a serving
 * process the pipe to the primary, which writes the file (processes/log-funnel.ts).
 */
export function createSink(cfg: Config, ops: OpsLog, pipeFd: number | null): FileSink | StdoutSink {
  const log = cfg.log;
  const onError = (err: NodeJS.ErrnoException, context: string) =>
    ops.error(context === 'rotate' ? rotateProblem(err, log.path) : logProblem(err), {
      log: log.path,
      context,
      error: err.code ?? err.message,
    });
  // The one line that ends the episode: without it an operator who freed space cannot tell
  // whether pgscribe noticed (it retries by itself, within a second).
  const onRecover = (failedForMs: number) => ops.info('query log is writable again; paused clients resume', { log: log.path, failed_ms: Math.round(failedForMs) });
  if (pipeFd !== null) return new StdoutSink({ fd: pipeFd, highWaterMark: log.bufferBytes, onError, onRecover });
  const sink =
    log.path === '-'
      ? new StdoutSink({ highWaterMark: log.bufferBytes, onError, onRecover })
      : new FileSink({
          path: log.path,
          mode: 0o600,
          highWaterMark: log.bufferBytes,
          onError,
          onRecover,
          rotateBytes: log.rotateBytes,
          rotateKeep: log.rotateKeep,
          onRotateRecover: (failedForMs) => ops.info('query log rotation works again', { log: log.path, failed_ms: Math.round(failedForMs) }),
        });
  if (sink instanceof FileSink) warnIfOthersCanRead(log.path, ops);
  return sink;
}

export function createLogger(cfg: Config, ops: OpsLog, pipeFd: number | null = null): ClientLogger {
  const log = cfg.log;
  if (log.path === 'none') return new NoopLogger();
  const format = lineFormatterOf(log);
  const done = !log.completions ? null : log.format === 'json' ? jsonCompletionFormatter() : textCompletionFormatter();
  const reportDropped = (n: number, total: number) =>
    ops.warn('query log is behind: lines dropped in the last second (log-overflow drop); give the log a faster disk, or set log-overflow wait to pause clients instead', { dropped: n, dropped_total: total, log: log.path });
  const policy = { sampler: log.sample.length === 0 ? null : new Sampler(log.sample), dropAboveBytes: log.overflow === 'drop' ? log.bufferBytes : null, reportDropped };
  const sessionLines = log.replay && log.format === 'json' ? jsonSessionFormatter() : null;
  return new SinkLogger(createSink(cfg, ops, pipeFd), format, done, policy, sessionLines, lineWriterOf(log));
}

/** What the operator reads when the query log cannot be written: the problem and what to do. */
function logProblem(err: NodeJS.ErrnoException): string {
  const after = 'lines are kept in memory, client reads pause until it clears, and pgscribe retries by itself';
  switch (err.code) {
    case 'ENOSPC':
      return `query log: the disk is full; free space on the file system that holds the log; ${after}`;
    case 'EDQUOT':
      return `query log: the disk quota is used up; free space or raise the quota of pgscribe's user; ${after}`;
    default:
      return `query log write problem; ${after}`;
  }
}

/** A rotation by size failed: nothing is lost, the file grows; what to check. */
function rotateProblem(err: NodeJS.ErrnoException, file: string): string {
  const what =
    err.code === 'EACCES' || err.code === 'EPERM' || err.code === 'EROFS'
      ? `pgscribe's user may not rename or create files in ${path.dirname(path.resolve(file))}: give it write permission on that directory`
      : err.code === 'ENOSPC' || err.code === 'EDQUOT'
        ? 'the file system is full: free space on it'
        : err.code === 'EISDIR' || err.code === 'ENOTEMPTY' || err.code === 'EEXIST'
          ? `a rotated name (${file}.1 or another number) is a directory: move it away`
          : `renaming ${file} to ${file}.1 or creating a new ${file} failed`;
  return `query log: rotation by size failed; ${what}. No line is lost: lines go on into the current file, which grows past log-rotate-bytes, and rotation is tried again (at most a minute apart)`;
}

/** The log holds queries and their parameters: a file others can read is said once, at start. */
function warnIfOthersCanRead(path: string, ops: OpsLog): void {
  const mode = fs.statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    ops.warn('the query log can be read by other users than pgscribe\'s; it holds every query and its parameters. New files are made 0600: run chmod 600 on it', {
      log: path,
      mode: mode.toString(8).padStart(4, '0'),
    });
  }
}
