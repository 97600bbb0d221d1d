/**
 * The primary of --processes N: it serves no session. It starts N serving processes (pgscribe
 * itself, with the same command line, told its index in PGSCRIBE_PROCESS_INDEX), and owns what
 * must be one across them:
 * - The listening socket. The primary accepts each connection without reading it and hands the
 *   socket, with a conn id unique across processes and restarts, to the ready process holding the
 *   fewest connections. A session lives in that process from start to end.
 * - max-connections: each StartupMessage asks the primary (one IPC round trip), so the limit is
 *   one global count, as with one process. The socket headroom for clients still in their startup
 *   phase (server.ts) stays per process.
 * - The query log: the processes write into pipes, the primary into the file (log-funnel.ts).
 * - The relay between processes: a CancelRequest for a key the accepting process does not hold
 *   goes to the others; a write committed through one process is dropped from every other
 *   process's cache before its ReadyForQuery is released.
 * - Supervision: a process that dies is logged and started again (its sessions are lost: their
 *   sockets close with it); SIGTERM/SIGINT drain every process with the usual grace rules; SIGHUP
 *   reopens the log and makes every process reload its settings and certificates; SIGUSR2 makes each print its
 *   stats line, then the primary prints their total.
 *
 * Why not Node's cluster module: its round-robin hands sockets over the same way, but the primary
 * could not give each one an id and a process by load, or count admissions; passing the sockets
 * ourselves costs the same one message per connection.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import type { Readable } from 'node:stream';
import type { Config } from '../config';
import type { FdSink } from '../log/fd-sink';
import type { OpsLog } from '../log/ops';
import { ThrottledLine } from '../log/ops-throttle';
import { LOG_PIPE_FD, PROCESS_INDEX_ENV, isMessage, type AdminQuery, type ToPrimary, type ToWorker } from './ipc';
import { LogFunnel } from './log-funnel';
import { totalOf } from '../metrics-sum';
import { listenOn } from '../listen';
import { ConnectionLimits, SessionTally, type SessionIdentity } from '../limits/connection-limits';

/** A process that dies sooner than this after its start counts as crash-looping: its restart waits longer. */
const STABLE_MS = 10_000;
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 5_000;
/** How long an admin question waits for the processes' answers: a process that takes longer is stuck, and the request fails saying so. */
const ADMIN_WAIT_MS = 2_000;

interface Proc {
  index: number;
  child: ChildProcess;
  ready: boolean;
  /** It has said ready and not exited: it answers questions (also while draining its sessions). */
  answering: boolean;
  startedAt: number;
  /** Sockets handed to it and not yet gone; of those, admitted sessions. */
  sockets: number;
  sessions: number;
  /** Of those, the ones counted by user and database (max-user-connections, max-db-connections). */
  held: SessionTally;
  /** Its last 'bye': query log lines it wrote in all. */
  lines: number | null;
  /** Its exit, once seen; settled once both that and its channel's end are seen. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
  disconnected: boolean;
  settled: boolean;
  /** Resolves once settled. */
  gone: Promise<void>;
  markGone: () => void;
}

/** An admin question waiting for every ready process's answer. */
interface AdminWait {
  waiting: Set<Proc>;
  answers: unknown[];
  resolve: (answers: unknown[]) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** One relayed question (a cancel, an invalidation) waiting for the other processes' answers. */
interface Relay {
  from: Proc;
  fromReq: number;
  waiting: Set<Proc>;
  kind: 'cancel' | 'invalidate';
  /** A cancel: whether a process held the key, and what to say when none did. */
  found: boolean;
  pid?: number;
  client?: string;
}

export interface PrimaryOptions {
  cfg: Config;
  ops: OpsLog;
  /** The query log file (null: --log none); the primary is its only writer. */
  sink: (FdSink & { reopen(): void }) | null;
  /** The script and arguments that start a serving process (pgscribe's own). */
  script: string;
  argv: string[];
}

export class Primary {
  private readonly procs: (Proc | null)[] = [];
  private readonly failures: number[] = [];
  private listener: net.Server | null = null;
  private nextConnId = 1;
  /** Where dispatch's search starts: the tie-break turn. */
  private nextTurn = 0;
  private sessions = 0;
  /** max-user-connections and max-db-connections: one count over every process. */
  private readonly limits: ConnectionLimits;
  private nextReq = 1;
  private readonly relays = new Map<number, Relay>();
  private readonly statsWaits = new Map<number, { waiting: Set<Proc>; fields: Record<string, number>[] }>();
  private readonly adminWaits = new Map<number, AdminWait>();
  /** Date.now() at construction: the start of the whole pgscribe, whichever process restarted since. */
  readonly startedAt = Date.now();
  private stopping = false;
  private readonly funnel: LogFunnel | null;
  private readonly unknownKey: ThrottledLine;
  /** start()'s promise, until every process is ready (or one exits first). */
  private starting: { resolve: () => void; reject: (err: Error) => void } | null = null;
  /** Lines of processes that have exited, summed (their 'bye' counts). */
  private exitedLines = 0;

  constructor(private readonly o: PrimaryOptions) {
    this.funnel =
      o.sink === null
        ? null
        : new LogFunnel(o.sink, {
            onPartialLine: (index, bytes) =>
              o.ops.error('query log: a process ended in the middle of writing a line; that partial line was left out so the file stays line-whole', { process: index, bytes }),
          });
    this.unknownKey = new ThrottledLine((m, f) => o.ops.warn(m, f), 'cancel request for an unknown session ignored');
    this.limits = new ConnectionLimits(o.cfg.limits.maxUserConnections, o.cfg.limits.maxDbConnections);
  }

  /** A session of p that held a slot ended (or was admitted after its client left). */
  private released(p: Proc, who: SessionIdentity | null): void {
    p.sessions--;
    this.sessions--;
    if (who !== null && p.held.remove(who)) this.limits.release(who);
  }

  get processCount(): number {
    return this.o.cfg.processes;
  }

  /** The listening socket is open, and no stop has begun. */
  get listening(): boolean {
    return !this.stopping && this.listener !== null && this.listener.listening;
  }

  /** The indexes of the serving processes not ready now (starting, restarting after a crash, or draining). */
  notReady(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.processCount; i++) if (this.procs[i]?.ready !== true) out.push(i);
    return out;
  }

  /**
   * Every serving process's answer to an admin question (each answers from its own event loop,
   * between its clients' messages), draining ones included: they still hold sessions and caches.
   * Rejects, naming them, when some do not answer within ADMIN_WAIT_MS, and when none can answer;
   * a process that exits meanwhile is left out (its figures died with it).
   */
  ask(q: AdminQuery): Promise<unknown[]> {
    const live = this.procs.filter((p): p is Proc => p !== null && p.answering && p.child.connected);
    if (live.length === 0) return Promise.reject(new Error('no serving process can answer (all starting, restarting or gone)'));
    const req = this.nextReq++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.adminWaits.delete(req);
        const late = [...w.waiting].map((p) => p.index).join(', ');
        reject(new Error(`serving process ${late} did not answer within ${ADMIN_WAIT_MS} ms (stuck, or its event loop is saturated)`));
      }, ADMIN_WAIT_MS);
      const w: AdminWait = { waiting: new Set(live), answers: [], resolve, reject, timer };
      this.adminWaits.set(req, w);
      for (const p of live) this.send(p, { t: 'admin', req, q });
    });
  }

  /** Start every process; resolves once all are ready. */
  start(): Promise<void> {
    const all = new Promise<void>((resolve, reject) => (this.starting = { resolve, reject }));
    for (let i = 0; i < this.processCount; i++) this.spawn(i);
    return all;
  }

  /** Listen (after start()); resolves with the bound address. */
  listen(): Promise<net.AddressInfo> {
    const srv = net.createServer({ pauseOnConnect: true, noDelay: true }, (sock) => this.dispatch(sock));
    this.listener = srv;
    return listenOn(srv, this.o.cfg.listen, (err) => this.o.ops.error('listener error', { error: err.message }));
  }

  /** A reload changed the settings (this.o.cfg, in place): the per-user and per-database limits counted here. */
  refreshSettings(): void {
    this.limits.setLimits(this.o.cfg.limits.maxUserConnections, this.o.cfg.limits.maxDbConnections);
  }

  /** SIGHUP: reopen the log here, reload settings and certificates in every process. */
  reload(): void {
    this.o.ops.info('SIGHUP: reopening the query log; every process reloads its settings and TLS files', { log: this.o.cfg.log.path });
    this.o.sink?.reopen();
    this.broadcast({ t: 'hup' });
  }

  /** SIGUSR2: each process prints its stats line; then the total here. */
  printStats(): void {
    const req = this.nextReq++;
    const waiting = new Set(this.live());
    if (waiting.size === 0) return;
    this.statsWaits.set(req, { waiting, fields: [] });
    for (const p of waiting) this.send(p, { t: 'stats', req });
    setTimeout(() => this.finishStats(req), 2000).unref();
  }

  /** Drain every process, then close the log; resolves with the line counts. */
  async stop(signal: string): Promise<{ handed: number; written: number }> {
    this.stopping = true;
    this.listener?.close();
    const exits = this.procs.filter((p): p is Proc => p !== null).map((p) => p.gone);
    this.broadcast({ t: 'stop', signal });
    await Promise.all(exits);
    await this.funnel?.ended();
    await this.o.sink?.close();
    return { handed: this.exitedLines, written: this.funnel?.lines ?? 0 };
  }

  private live(): Proc[] {
    return this.procs.filter((p): p is Proc => p !== null && p.ready);
  }

  private spawn(index: number): void {
    const child = fork(this.o.script, this.o.argv, {
      env: { ...process.env, [PROCESS_INDEX_ENV]: String(index) },
      stdio: ['inherit', 'inherit', 'inherit', 'ipc', 'pipe'],
    });
    let markGone!: () => void;
    const gone = new Promise<void>((r) => (markGone = r));
    const p: Proc = { index, child, ready: false, answering: false, startedAt: Date.now(), sockets: 0, sessions: 0, held: new SessionTally(), lines: null, exit: null, disconnected: false, settled: false, gone, markGone };
    this.procs[index] = p;
    const pipe = child.stdio[LOG_PIPE_FD] as Readable | null;
    if (pipe !== null) {
      if (this.funnel !== null) this.funnel.add(index, pipe);
      else pipe.resume();
    }
    child.on('message', (m) => this.onMessage(p, m));
    // 'exit' can come before the last messages are read: its counts are settled once the
    // channel has ended too (every 'gone', 'admit' and 'bye' it sent has been handled).
    child.on('exit', (code, signal) => {
      p.exit = { code, signal };
      p.ready = false;
      p.answering = false;
      if (p.disconnected) this.exited(p);
    });
    child.on('disconnect', () => {
      p.disconnected = true;
      if (p.exit !== null) this.exited(p);
    });
    child.on('error', (err) => this.o.ops.error('a serving process could not be started or signalled', { process: index, error: err.message }));
  }

  private exited(p: Proc): void {
    if (p.settled) return;
    p.settled = true;
    p.markGone();
    const { code, signal } = p.exit!;
    if (this.procs[p.index] === p) this.procs[p.index] = null;
    this.sessions -= p.sessions;
    for (const { who, n } of p.held.drain()) for (let i = 0; i < n; i++) this.limits.release(who);
    this.exitedLines += p.lines ?? 0;
    // Relayed questions it will never answer: as if it said no.
    for (const [req, r] of this.relays) {
      if (r.from === p) this.relays.delete(req);
      else if (r.waiting.delete(p)) this.maybeFinish(req, r);
    }
    for (const [req, s] of this.statsWaits) if (s.waiting.delete(p) && s.waiting.size === 0) this.finishStats(req);
    for (const [req, w] of this.adminWaits) if (w.waiting.delete(p)) this.maybeAnswer(req, w);
    if (this.starting !== null) {
      // A setting or a resource it cannot get: starting it again would fail again.
      this.starting.reject(new Error(`process ${p.index} exited (${signal ?? `code ${code}`}) before it was ready`));
      this.starting = null;
      this.stopping = true;
      for (const x of this.procs) x?.child.kill('SIGTERM');
      return;
    }
    if (this.stopping) return;
    const uptime = Date.now() - p.startedAt;
    const failures = uptime >= STABLE_MS ? 0 : (this.failures[p.index] ?? 0) + 1;
    this.failures[p.index] = failures;
    const delay = failures === 0 ? 0 : Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (failures - 1));
    this.o.ops.error('a serving process died; its sessions were lost (their clients saw the connection close); starting a new one', {
      process: p.index,
      pid: p.child.pid,
      exit_code: code ?? undefined,
      signal: signal ?? undefined,
      sessions_lost: p.sessions,
      restart_in_ms: delay,
    });
    setTimeout(() => {
      if (!this.stopping) this.spawn(p.index);
    }, delay);
  }

  private dispatch(sock: net.Socket): void {
    // The fewest connections wins; ties go round the processes, so that short connections (one
    // at a time, each gone before the next) spread too.
    const live = this.live();
    let best: Proc | null = null;
    for (let k = 0; k < live.length; k++) {
      const p = live[(this.nextTurn + k) % live.length]!;
      if (best === null || p.sockets < best.sockets) best = p;
    }
    this.nextTurn = (this.nextTurn + 1) % Math.max(1, live.length);
    if (best === null || this.stopping) {
      // No process can take it (all restarting, or stopping): refuse before reading, as when far over the limit.
      sock.on('error', () => {});
      sock.destroy();
      return;
    }
    const target = best;
    target.sockets++;
    const id = this.nextConnId++;
    try {
      target.child.send({ t: 'conn', id } satisfies ToWorker, sock, (err) => {
        if (err) {
          target.sockets--;
          sock.destroy();
        }
      });
    } catch {
      target.sockets--;
      sock.destroy();
    }
  }

  private onMessage(p: Proc, raw: unknown): void {
    if (p.settled || !isMessage<ToPrimary>(raw)) return;
    const m = raw;
    switch (m.t) {
      case 'ready':
        if (this.stopping) {
          // Started before the stop: it missed it.
          this.send(p, { t: 'stop', signal: 'SIGTERM' });
          return;
        }
        p.ready = true;
        p.answering = true;
        if (this.starting !== null && this.procs.every((x) => x?.ready)) {
          this.starting.resolve();
          this.starting = null;
        }
        if (this.failures[p.index] !== undefined && this.listener !== null) this.o.ops.info('serving process ready again', { process: p.index, pid: p.child.pid });
        return;
      case 'admit': {
        const ok = !this.stopping && this.sessions < this.o.cfg.limits.maxConnections;
        const who = identity(m);
        const over = ok && who !== null ? this.limits.take(who) : null;
        if (over === 'user' || over === 'database') {
          this.send(p, { t: 'admitted', req: m.req, ok: false, limit: over });
          return;
        }
        if (ok) {
          this.sessions++;
          p.sessions++;
          if (who !== null) p.held.add(who);
        }
        this.send(p, { t: 'admitted', req: m.req, ok });
        return;
      }
      case 'gone':
        p.sockets--;
        if (m.admitted) this.released(p, identity(m));
        return;
      case 'release':
        this.released(p, identity(m));
        return;
      case 'cancel':
      case 'invalidate': {
        const others = this.live().filter((x) => x !== p);
        const req = this.nextReq++;
        const r: Relay = { from: p, fromReq: m.req, waiting: new Set(others), kind: m.t, found: false };
        this.relays.set(req, r);
        if (m.t === 'cancel') {
          r.pid = m.pid;
          r.client = m.from;
          for (const x of others) this.send(x, { t: 'cancel', req, pid: m.pid, secret: m.secret, from: m.from });
        } else {
          for (const x of others) this.send(x, { t: 'invalidate', req, db: m.db, tables: m.tables });
        }
        this.maybeFinish(req, r);
        return;
      }
      case 'cancel-answer':
      case 'invalidate-ack': {
        const r = this.relays.get(m.req);
        if (r === undefined || !r.waiting.delete(p)) return;
        if (m.t === 'cancel-answer' && m.found) r.found = true;
        this.maybeFinish(m.req, r);
        return;
      }
      case 'stats': {
        const s = this.statsWaits.get(m.req);
        if (s === undefined || !s.waiting.delete(p)) return;
        const numeric: Record<string, number> = {};
        for (const [k, v] of Object.entries(m.fields)) if (typeof v === 'number') numeric[k] = v;
        s.fields.push(numeric);
        if (s.waiting.size === 0) this.finishStats(m.req);
        return;
      }
      case 'admin-answer': {
        const w = this.adminWaits.get(m.req);
        if (w === undefined || !w.waiting.delete(p)) return;
        w.answers.push(m.data);
        this.maybeAnswer(m.req, w);
        return;
      }
      case 'draining':
        p.ready = false;
        return;
      case 'bye':
        p.lines = m.lines;
        return;
    }
  }

  /** A relayed question every other process has answered: tell the asker, or say the key was unknown. */
  private maybeFinish(req: number, r: Relay): void {
    if (r.waiting.size > 0) return;
    this.relays.delete(req);
    if (r.kind === 'invalidate') this.send(r.from, { t: 'invalidated', req: r.fromReq });
    else if (!r.found) this.unknownKey.log({ client: r.client, pid: r.pid });
  }

  private maybeAnswer(req: number, w: AdminWait): void {
    if (w.waiting.size > 0) return;
    this.adminWaits.delete(req);
    clearTimeout(w.timer);
    w.resolve(w.answers);
  }

  private finishStats(req: number): void {
    const s = this.statsWaits.get(req);
    if (s === undefined) return;
    this.statsWaits.delete(req);
    this.o.ops.info('stats total', { processes: s.fields.length, ...totalOf(s.fields) });
  }

  private broadcast(m: ToWorker): void {
    for (const p of this.procs) if (p !== null) this.send(p, m);
  }

  private send(p: Proc, m: ToWorker): void {
    if (!p.child.connected) return;
    try {
      p.child.send(m);
    } catch {
      // Its channel closed between the check and the send: its exit handler tidies up.
    }
  }
}

/** The user and database an admission, a gone or a release names (null: not counted by them). */
function identity(m: { user?: string; db?: string }): SessionIdentity | null {
  return typeof m.user === 'string' && typeof m.db === 'string' ? { user: m.user, database: m.db } : null;
}
