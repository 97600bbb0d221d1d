/**
 * `pgscribe replay`'s engine: reads the log as a stream, hands each line to its session's player
 * (session-player.ts), decides when each session starts, and sums up what happened.
 *
 * When a session starts: its `start` line is due (--speed), and at least as many replayed
 * sessions have ended as had ended in the log before it started, so the target never holds more
 * sessions at once than the original server did (a `pgbench -C` run does not become a connection
 * storm at --speed max). With --sessions-in-order, a session starts once the one before it ended.
 *
 * Memory: lines wait in their session's queue until sent; the reader pauses when MAX_QUEUED lines
 * wait (or, timed, when the next line is due more than LOOKAHEAD_MS ahead). A replay where every
 * session waits on a line not read yet (a lock held by a session whose next line is further on)
 * is seen as a stall, and the bound grows until the line arrives.
 */
import { classifySql } from '../sql/classify';
import { Comparison } from './compare';
import { expandRotated, LineReader } from './log-files';
import { parseLogLine, type StartLine } from './log-lines';
import type { Passwords } from './passfile';
import type { ReplayReport, TimelinePoint } from './report-types';
import { SessionPlayer, type ParseFailure, type PlayerHost, type StatementResult } from './session-player';
import { readTargetIdentity, sameServer, type TargetIdentity } from './target-identity';
import type { ReplayConnectOptions } from './replay-connection';

export interface SessionFilter {
  user?: RegExp | undefined;
  database?: RegExp | undefined;
  application?: RegExp | undefined;
}

export interface ReplayOptions {
  logs: string[];
  host: string;
  port: number;
  /** A factor (1: as logged, 2: twice as fast) or 'max'. */
  speed: number | 'max';
  inOrder: boolean;
  /** A session replays when any filter matches (none: all). */
  filters: SessionFilter[];
  /** Sessions that started in [from, to] (ms since the epoch; null: unbounded). */
  from: number | null;
  to: number | null;
  user: string | null;
  database: string | null;
  mapUser: ReadonlyMap<string, string>;
  mapDatabase: ReadonlyMap<string, string>;
  passwords: Passwords;
  readOnly: boolean;
  force: boolean;
  /** A digest whose p50 grows by this factor (and 1 ms) is a regression. */
  slower: number;
  connectTimeoutMs: number;
  /** Called with a progress line every progressMs (null: none). */
  progress: ((line: string) => void) | null;
  progressMs?: number;
  /** Lines waiting in sessions' queues before the reader pauses (default MAX_QUEUED). */
  maxQueued?: number;
}

/** The log names the target as the server it was captured from, and --force was not given. */
export class ReplayRefused extends Error {}

const MAX_QUEUED = 20_000;
const LOOKAHEAD_MS = 5_000;
const STALL_MS = 1_000;
const READ_MEMO_MAX = 10_000;

export function replay(o: ReplayOptions): Promise<ReplayReport> {
  return new Replayer(o).run();
}

class Replayer implements PlayerHost {
  readonly readOnly: boolean;
  private readonly files: string[];
  private readonly reader: LineReader;
  private readonly comparison = new Comparison();
  /** The player of each conn id whose lines are being read (a restart reuses ids: a start line replaces). */
  private readonly active = new Map<number, SessionPlayer>();
  /** Conn ids whose sessions are filtered out, or began before the log. */
  private readonly ignored = new Set<number>();
  /** Players not started yet, in log order, with the ends read before their start. */
  private readonly waiting: { p: SessionPlayer; endsBefore: number }[] = [];
  private waitingHead = 0;
  /** Every player not finished yet (started or waiting), for fail() to stop. */
  private readonly players = new Set<SessionPlayer>();
  private running = 0;
  private endsRead = 0;
  private endsDone = 0;
  private queued = 0;
  private maxQueued: number;
  private readerEnded = false;
  private lastProgress = performance.now();
  private identity: TargetIdentity | null = null;
  private checking: Promise<void> | null = null;
  private pendingLines: string[] = [];
  private refused: Error | null = null;
  private startTimer: NodeJS.Timeout | null = null;
  private resumeTimer: NodeJS.Timeout | null = null;
  private logT0: number | null = null;
  private runT0 = 0;
  private readonly startedAt = Date.now();
  private readonly readMemo = new Map<string, boolean>();
  // Figures for the report.
  private sessionsTotal = 0;
  private sessionsReplayed = 0;
  private sessionsFailed = 0;
  private firstFailure: string | undefined;
  private sessionsCut = 0;
  private skippedWrites = 0;
  private readonly notReplayableCounts: Record<string, number> = {};
  private unreadable = 0;
  private readonly timeline: TimelinePoint[] = [];
  private second = { statements: 0, errors: 0, lagMs: 0 };
  private resolve!: (r: ReplayReport) => void;
  private reject!: (e: Error) => void;

  constructor(private readonly o: ReplayOptions) {
    this.readOnly = o.readOnly;
    this.files = expandRotated(o.logs);
    this.maxQueued = o.maxQueued ?? MAX_QUEUED;
    this.reader = new LineReader(this.files, {
      line: (text) => this.onLine(text),
      end: () => {
        this.readerEnded = true;
        for (const p of this.active.values()) p.endOfLog();
        this.active.clear();
        this.maybeDone();
      },
      error: (file, err) => this.fail(new Error(`cannot read ${file}: ${err.message}`)),
    });
  }

  run(): Promise<ReplayReport> {
    return new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
      this.runT0 = performance.now();
      const tick = setInterval(() => this.tick(), this.o.progressMs ?? 1000);
      const done = (): void => clearInterval(tick);
      this.resolveDone = done;
      this.reader.start();
    });
  }
  private resolveDone: () => void = () => {};

  // ---- reading ---------------------------------------------------------------------------------

  private onLine(text: string): void {
    if (this.refused !== null) return;
    if (this.checking !== null) {
      // The target is being identified: lines wait (the reader is paused; this is its last chunk).
      this.pendingLines.push(text);
      return;
    }
    const line = parseLogLine(text);
    if (line === null) {
      this.unreadable++;
      return;
    }
    if (line.kind === 'start') return this.onStart(line, text);
    const p = this.active.get(line.conn);
    if (p === undefined) {
      if (!this.ignored.has(line.conn)) {
        this.ignored.add(line.conn);
        this.notReplayable('sessions that began before the log (no start line)');
      }
      return;
    }
    if (line.kind === 'end') {
      this.active.delete(line.conn);
      this.endsRead++;
    }
    this.queued++;
    p.push(line);
    this.paceReading(line.ts);
  }

  private onStart(line: StartLine, text: string): void {
    // A start line for a conn id still being read (a proxy restart counts from 1 again, or two
    // proxies' lines in one file): the older session gets no more lines. Without this it waited
    // for its end line forever and the replay never ended.
    const older = this.active.get(line.conn);
    if (older !== undefined) older.endOfLog();
    this.active.delete(line.conn);
    this.ignored.delete(line.conn);
    if (!this.wanted(line)) {
      this.ignored.add(line.conn);
      return;
    }
    if (this.identity === null) {
      this.identify(line, text);
      return;
    }
    void sameServer(this.identity, line).then((why) => {
      if (why !== null && !this.o.force) this.fail(new ReplayRefused(`${why}; replay refuses to run the log against it (--force to replay anyway)`));
    });
    // The schedule starts at the first session replayed (not at the log's first line: --from).
    this.logT0 ??= line.ts;
    const p = new SessionPlayer(line, this);
    this.players.add(p);
    this.active.set(line.conn, p);
    this.sessionsTotal++;
    this.waiting.push({ p, endsBefore: this.endsRead });
    this.schedule();
  }

  /** The first session: ask the target who it is before anything runs there. */
  private identify(line: StartLine, text: string): void {
    this.reader.pause();
    this.pendingLines = [];
    const c = this.connectOptions(line.user, line.db, {});
    this.checking = readTargetIdentity({ host: c.host, port: c.port, user: c.user, database: c.database, password: c.password, connectTimeoutMs: c.connectTimeoutMs }).then(async (id) => {
      const why = await sameServer(id, line);
      this.checking = null;
      if (why !== null && !this.o.force) return this.fail(new ReplayRefused(`${why}; replay refuses to run the log against it (--force to replay anyway)`));
      this.identity = id;
      const held = this.pendingLines;
      this.pendingLines = [];
      this.onLine(text);
      for (const t of held) this.onLine(t);
      this.reader.resume();
    });
  }

  private wanted(s: StartLine): boolean {
    if (this.o.from !== null && s.ts < this.o.from) return false;
    if (this.o.to !== null && s.ts > this.o.to) return false;
    if (this.o.filters.length === 0) return true;
    const app = s.startup['application_name'] ?? '';
    return this.o.filters.some((f) => (f.user === undefined || f.user.test(s.user)) && (f.database === undefined || f.database.test(s.db)) && (f.application === undefined || f.application.test(app)));
  }

  /** Pause the reader when enough lines wait, or (timed) when what it reads is far ahead. */
  private paceReading(ts: number): void {
    if (this.queued >= this.maxQueued) {
      this.reader.pause();
      return;
    }
    if (this.o.speed === 'max') return;
    const ahead = this.dueAt(ts) - performance.now();
    if (ahead > LOOKAHEAD_MS && this.resumeTimer === null) {
      this.reader.pause();
      this.resumeTimer = setTimeout(() => {
        this.resumeTimer = null;
        if (this.queued < this.maxQueued) this.reader.resume();
      }, ahead - LOOKAHEAD_MS / 2);
    }
  }

  consumed(n: number): void {
    this.queued -= n;
    this.lastProgress = performance.now();
    if (this.reader.isPaused && this.queued < this.maxQueued / 2 && this.resumeTimer === null && this.checking === null) this.reader.resume();
  }

  // ---- sessions --------------------------------------------------------------------------------

  private schedule(): void {
    while (this.waitingHead < this.waiting.length) {
      const w = this.waiting[this.waitingHead]!;
      if (this.o.inOrder && this.running > 0) return;
      if (this.endsDone < w.endsBefore) return;
      const wait = this.dueAt(w.p.start.ts) - performance.now();
      if (wait > 0) {
        if (this.startTimer === null) {
          this.startTimer = setTimeout(() => {
            this.startTimer = null;
            this.schedule();
          }, Math.ceil(wait));
        }
        return;
      }
      this.waiting[this.waitingHead++] = undefined as never;
      if (this.waitingHead > 1024 && this.waitingHead * 2 > this.waiting.length) {
        this.waiting.splice(0, this.waitingHead);
        this.waitingHead = 0;
      }
      this.running++;
      w.p.begin();
    }
  }

  finished(p: SessionPlayer, how: { failed: string | null; cut: string | null }): void {
    this.players.delete(p);
    this.running--;
    this.endsDone++;
    if (how.failed !== null) {
      this.sessionsFailed++;
      this.firstFailure ??= how.failed;
    } else this.sessionsReplayed++;
    if (how.cut !== null) this.sessionsCut++;
    this.schedule();
    this.maybeDone();
  }

  private maybeDone(): void {
    if (!this.readerEnded || this.running > 0 || this.waitingHead < this.waiting.length || this.refused !== null) return;
    if (this.checking !== null) return;
    this.resolveDone();
    this.tick();
    this.resolve(this.report());
  }

  /** Give up: nothing more is read or sent, every session's connection closes. */
  private fail(err: Error): void {
    if (this.refused !== null) return;
    this.refused = err;
    this.reader.close();
    this.resolveDone();
    if (this.startTimer !== null) clearTimeout(this.startTimer);
    if (this.resumeTimer !== null) clearTimeout(this.resumeTimer);
    for (const p of this.players) p.abort();
    this.reject(err);
  }

  // ---- PlayerHost ------------------------------------------------------------------------------

  isRead(sql: string): boolean {
    let r = this.readMemo.get(sql);
    if (r === undefined) {
      r = !classifySql(sql).writes;
      if (this.readMemo.size >= READ_MEMO_MAX) this.readMemo.clear();
      this.readMemo.set(sql, r);
    }
    return r;
  }

  connectOptions(user: string, database: string, startup: Record<string, string>): ReplayConnectOptions {
    const u = this.o.user ?? this.o.mapUser.get(user) ?? user;
    const d = this.o.database ?? this.o.mapDatabase.get(database) ?? database;
    return { host: this.o.host, port: this.o.port, user: u, database: d, password: this.o.passwords.lookup(this.o.host, this.o.port, d, u), startup, connectTimeoutMs: this.o.connectTimeoutMs };
  }

  dueAt(ts: number): number {
    if (this.o.speed === 'max' || this.logT0 === null) return -Infinity;
    return this.runT0 + (ts - this.logT0) / this.o.speed;
  }

  sentStatement(lagMs: number): void {
    this.second.statements++;
    if (this.o.speed !== 'max' && lagMs > this.second.lagMs) this.second.lagMs = lagMs;
  }

  result(r: StatementResult): void {
    if (r.replayed !== null && r.replayed.status === 'error') this.second.errors++;
    this.comparison.add(r);
  }

  parseFailed(f: ParseFailure): void {
    this.second.errors++;
    this.comparison.parseFailed(f);
  }

  notReplayable(reason: string): void {
    this.notReplayableCounts[reason] = (this.notReplayableCounts[reason] ?? 0) + 1;
  }

  skippedWrite(): void {
    this.skippedWrites++;
  }

  // ---- progress and report -----------------------------------------------------------------

  private tick(): void {
    const t = Math.round((performance.now() - this.runT0) / 1000);
    const s = this.second;
    this.timeline.push({ t, statements: s.statements, errors: s.errors, lagMs: Math.round(s.lagMs) });
    this.second = { statements: 0, errors: 0, lagMs: 0 };
    // A replay where nothing moves while the reader is paused: read on (see the header).
    if (this.reader.isPaused && this.checking === null && this.resumeTimer === null && performance.now() - this.lastProgress > STALL_MS && !this.readerEnded) {
      this.maxQueued *= 2;
      this.reader.resume();
    }
    if (this.o.progress !== null) {
      const done = this.sessionsReplayed + this.sessionsFailed;
      this.o.progress(`replay ${t}s: sessions ${this.running} running, ${done} done, ${this.sessionsFailed} failed; ${s.statements} statements/s; ${this.comparison.errors} errors; lag ${Math.round(s.lagMs)} ms; ${(this.reader.bytes / 1048576).toFixed(0)} MB read`);
    }
  }

  private report(): ReplayReport {
    const durationMs = performance.now() - this.runT0;
    if (this.unreadable > 0) this.notReplayableCounts['lines that are not replay records (another format, or cut)'] = this.unreadable;
    if (this.reader.skippedLong > 0) this.notReplayableCounts['lines over 512 MiB'] = this.reader.skippedLong;
    return {
      logs: this.files,
      target: `${this.o.host}:${this.o.port}`,
      speed: String(this.o.speed),
      startedAt: new Date(this.startedAt).toISOString(),
      finishedAt: new Date().toISOString(),
      durationMs,
      slowerThreshold: this.o.slower,
      sessions: { total: this.sessionsTotal, replayed: this.sessionsReplayed, failed: this.sessionsFailed, firstFailure: this.firstFailure, cut: this.sessionsCut },
      statements: {
        replayed: this.comparison.replayed,
        errors: this.comparison.errors,
        changed: this.comparison.changed,
        rate: durationMs > 0 ? (this.comparison.replayed * 1000) / durationMs : 0,
        notReplayable: this.notReplayableCounts,
        skippedWrites: this.skippedWrites,
      },
      digests: this.comparison.report(this.o.slower),
      timeline: this.timeline,
    };
  }
}
