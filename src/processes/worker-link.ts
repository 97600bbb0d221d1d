/**
 * A serving process's side of --processes N: its IPC channel to the primary (primary.ts). It
 * takes the connections the primary hands over, asks it for admission under the one
 * max-connections limit, reports each connection's end, and carries what this process must tell
 * the others and what they tell it: cancel requests for keys it does not hold, and the
 * invalidations of writes committed through it (answered only once every other process has
 * dropped what the write changed, so read-your-writes holds across processes).
 *
 * The process's parts register what to do on each message (`on`); the link knows none of them.
 */
import type * as net from 'node:net';
import { isMessage, type AdminQuery, type ToPrimary, type ToWorker } from './ipc';
import type { SessionIdentity } from '../limits/connection-limits';

/** The primary's answer to an admission: yes (true), no under max-connections (false), or the per-user or per-database limit that refuses it. */
export type Admission = boolean | 'user' | 'database';

export interface WorkerHandlers {
  /** A client connection for this process, with its conn id (unique across processes). */
  connection(sock: net.Socket, id: number): void;
  /** Another process got a CancelRequest for a key it does not hold: true if one of ours does (and was cancelled). */
  cancel(pid: number, secret: number, from: string): boolean;
  /**
   * A write committed through another process: drop what it changed from this process's cache
   * (not shared further); `done` once that holds here (it may wait, as a commit's hold does).
   */
  invalidate(db: string, tables: readonly string[] | null, done: () => void): void;
  /** SIGHUP at the primary. */
  reload(): void;
  /** This process's stats line figures (it prints its line too). */
  stats(): Record<string, number | string | boolean | undefined>;
  /** The admin server in the primary asks for this process's figures, digests or tables, or a cache flush (plain data). */
  admin(q: AdminQuery): unknown;
  /** SIGTERM or SIGINT at the primary: shut down. */
  stop(signal: string): void;
}

/** The IPC channel: `process` in a serving process; a fake in tests. */
export interface Channel {
  send(message: ToPrimary, callback?: (err: Error | null) => void): unknown;
  on(event: 'message', listener: (message: unknown, handle?: unknown) => void): unknown;
  on(event: 'disconnect', listener: () => void): unknown;
  /** False once the channel has closed (the primary is gone). */
  readonly connected?: boolean;
}

export class WorkerLink {
  private handlers: WorkerHandlers | null = null;
  private nextReq = 1;
  private readonly admissions = new Map<number, (ok: Admission) => void>();
  private readonly invalidations = new Map<number, () => void>();
  /** A stop (or SIGHUP) that came before serve(): acted on there. */
  private pendingStop: string | null = null;
  private pendingReload = false;

  constructor(
    /** This process's index among the primary's (0-based): its stats line says which it is. */
    readonly index: number,
    private readonly channel: Channel,
  ) {
    channel.on('message', (m, handle) => this.onMessage(m, handle));
    // The primary is gone: nobody will answer. Admissions are refused, invalidations have
    // nobody else to reach.
    channel.on('disconnect', () => {
      for (const resolve of this.admissions.values()) resolve(false);
      this.admissions.clear();
      for (const done of this.invalidations.values()) done();
      this.invalidations.clear();
    });
  }

  /** Start acting on the primary's messages (connections may come at once). */
  serve(handlers: WorkerHandlers): void {
    this.handlers = handlers;
    this.send({ t: 'ready' });
    if (this.pendingReload) handlers.reload();
    if (this.pendingStop !== null) handlers.stop(this.pendingStop);
  }

  /** This process is shutting down: no more connections for it. */
  draining(): void {
    this.send({ t: 'draining' });
  }

  /** Send unless the channel is closed; a failed send is the primary going away ('disconnect' follows). */
  private send(m: ToPrimary, then?: () => void): void {
    if (this.channel.connected === false) {
      then?.();
      return;
    }
    try {
      this.channel.send(m, () => then?.());
    } catch {
      then?.();
    }
  }

  /**
   * Whether a session may start: resolves with the primary's answer under max-connections (true
   * or false) and, given who it is, under max-user-connections and max-db-connections (the limit
   * that refuses it).
   */
  admit(who?: SessionIdentity): Promise<Admission> {
    if (this.channel.connected === false) return Promise.resolve(false);
    const req = this.nextReq++;
    return new Promise((resolve) => {
      this.admissions.set(req, resolve);
      this.send(who === undefined ? { t: 'admit', req } : { t: 'admit', req, user: who.user, db: who.database });
    });
  }

  /** A connection this process was handed has ended (who: it was counted by user and database). */
  gone(admitted: boolean, who?: SessionIdentity): void {
    this.send(who === undefined ? { t: 'gone', admitted } : { t: 'gone', admitted, user: who.user, db: who.database });
  }

  /** An admission answered yes after its client had gone: the slot goes back (who: its user's and database's too). */
  release(who?: SessionIdentity): void {
    this.send(who === undefined ? { t: 'release' } : { t: 'release', user: who.user, db: who.database });
  }

  /** A CancelRequest whose key no session here holds: the others check theirs. */
  askCancel(pid: number, secret: number, from: string): void {
    this.send({ t: 'cancel', req: this.nextReq++, pid, secret, from });
  }

  /** Drop what a write through this process changed in every other process; `done` once they all have. */
  invalidateOthers(db: string, tables: readonly string[] | null, done: () => void): void {
    if (this.channel.connected === false) {
      done();
      return;
    }
    const req = this.nextReq++;
    this.invalidations.set(req, done);
    this.send({ t: 'invalidate', req, db, tables: tables === null ? null : [...tables] });
  }

  /** Shutting down: the query log lines this process has written (into the primary's pipe). */
  bye(lines: number): Promise<void> {
    return new Promise((resolve) => this.send({ t: 'bye', lines }, resolve));
  }

  private onMessage(raw: unknown, handle: unknown): void {
    if (!isMessage<ToWorker>(raw)) return;
    const h = this.handlers;
    const m = raw;
    switch (m.t) {
      case 'conn': {
        const sock = handle as net.Socket | undefined;
        if (h !== null && sock !== undefined) {
          h.connection(sock, m.id);
          return;
        }
        // Not serving yet, or the socket did not arrive (out of file descriptors here): the
        // client sees its connection close, and the primary's count of ours stays right.
        sock?.destroy();
        this.gone(false);
        return;
      }
      case 'admitted': {
        const resolve = this.admissions.get(m.req);
        this.admissions.delete(m.req);
        resolve?.(m.ok ? true : (m.limit ?? false));
        return;
      }
      case 'cancel':
        this.send({ t: 'cancel-answer', req: m.req, found: h?.cancel(m.pid, m.secret, m.from) ?? false });
        return;
      case 'invalidate': {
        const ack = () => this.send({ t: 'invalidate-ack', req: m.req });
        if (h === null) ack(); // nothing cached yet
        else h.invalidate(m.db, m.tables, ack);
        return;
      }
      case 'invalidated': {
        const done = this.invalidations.get(m.req);
        this.invalidations.delete(m.req);
        done?.();
        return;
      }
      case 'hup':
        if (h === null) this.pendingReload = true;
        else h.reload();
        return;
      case 'stats':
        if (h !== null) this.send({ t: 'stats', req: m.req, fields: h.stats() });
        return;
      case 'admin':
        if (h !== null) this.send({ t: 'admin-answer', req: m.req, data: h.admin(m.q) });
        return;
      case 'stop':
        if (h === null) this.pendingStop = m.signal;
        else h.stop(m.signal);
        return;
    }
  }
}
