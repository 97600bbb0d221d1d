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
import { isMessage, type ToPrimary, type ToWorker } from './ipc';

export interface WorkerHandlers {
  /** A client connection for this process, with its conn id (unique across processes). */
  connection(sock: net.Socket, id: number): void;
  /** Another process got a CancelRequest for a key it does not hold: true if one of ours does (and was cancelled). */
  cancel(pid: number, secret: number, from: string): boolean;
  /** A write committed through another process: drop what it changed from this process's cache (not shared further). */
  invalidate(db: string, tables: readonly string[] | null): void;
  /** SIGHUP at the primary. */
  reload(): void;
  /** This process's stats line figures (it prints its line too). */
  stats(): Record<string, number | string | boolean | undefined>;
  /** SIGTERM or SIGINT at the primary: shut down. */
  stop(signal: string): void;
}

/** The IPC channel: `process` in a serving process; a fake in tests. */
export interface Channel {
  send(message: ToPrimary, callback?: (err: Error | null) => void): unknown;
  on(event: 'message', listener: (message: unknown, handle?: unknown) => void): unknown;
}

export class WorkerLink {
  private handlers: WorkerHandlers | null = null;
  private nextReq = 1;
  private readonly admissions = new Map<number, (ok: boolean) => void>();
  private readonly invalidations = new Map<number, () => void>();

  constructor(
    /** This process's index among the primary's (0-based): its stats line says which it is. */
    readonly index: number,
    private readonly channel: Channel,
  ) {
    channel.on('message', (m, handle) => this.onMessage(m, handle));
  }

  /** Start acting on the primary's messages (connections may come at once). */
  serve(handlers: WorkerHandlers): void {
    this.handlers = handlers;
    this.channel.send({ t: 'ready' });
  }

  /** Whether a session may start: resolves with the primary's answer under max-connections. */
  admit(): Promise<boolean> {
    const req = this.nextReq++;
    return new Promise((resolve) => {
      this.admissions.set(req, resolve);
      this.channel.send({ t: 'admit', req });
    });
  }

  /** A connection this process was handed has ended. */
  gone(admitted: boolean): void {
    this.channel.send({ t: 'gone', admitted });
  }

  /** An admission answered yes after its client had gone: the slot goes back. */
  release(): void {
    this.channel.send({ t: 'release' });
  }

  /** A CancelRequest whose key no session here holds: the others check theirs. */
  askCancel(pid: number, secret: number, from: string): void {
    this.channel.send({ t: 'cancel', req: this.nextReq++, pid, secret, from });
  }

  /** Drop what a write through this process changed in every other process; `done` once they all have. */
  invalidateOthers(db: string, tables: readonly string[] | null, done: () => void): void {
    const req = this.nextReq++;
    this.invalidations.set(req, done);
    this.channel.send({ t: 'invalidate', req, db, tables: tables === null ? null : [...tables] });
  }

  /** Shutting down: the query log lines this process has written (into the primary's pipe). */
  bye(lines: number): Promise<void> {
    return new Promise((resolve) => this.channel.send({ t: 'bye', lines }, () => resolve()));
  }

  private onMessage(raw: unknown, handle: unknown): void {
    if (!isMessage<ToWorker>(raw)) return;
    const h = this.handlers;
    const m = raw;
    switch (m.t) {
      case 'conn':
        if (h === null) (handle as net.Socket | undefined)?.destroy();
        else h.connection(handle as net.Socket, m.id);
        return;
      case 'admitted': {
        const resolve = this.admissions.get(m.req);
        this.admissions.delete(m.req);
        resolve?.(m.ok);
        return;
      }
      case 'cancel':
        this.channel.send({ t: 'cancel-answer', req: m.req, found: h?.cancel(m.pid, m.secret, m.from) ?? false });
        return;
      case 'invalidate':
        h?.invalidate(m.db, m.tables);
        this.channel.send({ t: 'invalidate-ack', req: m.req });
        return;
      case 'invalidated': {
        const done = this.invalidations.get(m.req);
        this.invalidations.delete(m.req);
        done?.();
        return;
      }
      case 'hup':
        h?.reload();
        return;
      case 'stats':
        if (h !== null) this.channel.send({ t: 'stats', req: m.req, fields: h.stats() });
        return;
      case 'stop':
        h?.stop(m.signal);
        return;
    }
  }
}
