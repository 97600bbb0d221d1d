/**
 * CancelRequests: which live session a cancel key names, and forwarding the cancel to that
 * session's upstream on a fresh connection, with the same --upstream-tls as sessions (the cancel
 * key is a secret worth encrypting). Keys that belong to no session of this proxy are ignored,
 * as PostgreSQL ignores unknown keys (with --processes N, once no other process holds them
 * either: the primary asks them, and says so when none did); a session waiting for another client's identical query is
 * answered by pgscribe itself.
 *
 * @see https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-CANCELING-REQUESTS
 */
import * as net from 'node:net';
import type { HostPort } from './config';
import type { OpsLog } from './log/ops';
import { ThrottledLine } from './log/ops-throttle';
import { encodeCancelRequest } from './protocol/messages';
import { negotiateUpstream, type UpstreamTls } from './tls';
import type { ClientHandle, KeyRegistry } from './client/host';

/** The other processes of --processes N (worker-link.ts): they check a key this one does not hold. */
export interface OtherProcesses {
  askCancel(pid: number, secret: number, from: string): void;
}

export class CancelRouter implements KeyRegistry {
  private readonly byKey = new Map<string, ClientHandle>();
  /** Anyone can send unknown keys, as fast as they like: said at most once a second. */
  private readonly unknownKey: ThrottledLine;

  constructor(
    private readonly upstream: HostPort,
    private readonly upstreamTls: UpstreamTls | null,
    private readonly connectTimeoutMs: number,
    private readonly ops: OpsLog,
    private readonly others: OtherProcesses | null = null,
  ) {
    this.unknownKey = new ThrottledLine((m, f) => ops.warn(m, f), 'cancel request for an unknown session ignored');
  }

  register(c: ClientHandle): void {
    const k = c.backendKey;
    if (k) this.byKey.set(`${k.pid}.${k.secret}`, c);
  }

  unregister(c: ClientHandle): void {
    const k = c.backendKey;
    if (k && this.byKey.get(`${k.pid}.${k.secret}`) === c) this.byKey.delete(`${k.pid}.${k.secret}`);
  }

  cancel(pid: number, secret: number, from: string): void {
    if (this.cancelOwn(pid, secret, from)) return;
    if (this.others !== null) this.others.askCancel(pid, secret, from);
    else this.unknownKey.log({ client: from, pid });
  }

  /** Cancel the session of this process that holds the key; false when none does. */
  cancelOwn(pid: number, secret: number, from: string): boolean {
    const target = this.byKey.get(`${pid}.${secret}`);
    if (target === undefined) return false;
    if (target.cancelWait()) {
      this.ops.info("cancel request answered by pgscribe: the session was waiting for another client's identical query", { conn: target.id, client: from, pid });
      return true;
    }
    this.forward(target, pid, secret, from);
    return true;
  }

  private forward(target: ClientHandle, pid: number, secret: number, from: string): void {
    // The node the session is on (several upstreams), else the one upstream.
    const { host, port } = target.upstream.node ?? this.upstream;
    const sock = net.connect({ host, port });
    let current: net.Socket = sock;
    const timer = setTimeout(() => current.destroy(), this.connectTimeoutMs).unref();
    let failed = false;
    const failure = (error: string) => {
      if (failed) return;
      failed = true;
      this.ops.warn('could not forward cancel request', { conn: target.id, client: from, error });
    };
    sock.on('close', () => clearTimeout(timer));
    const send = (s: net.Socket, tls: boolean) => {
      current = s;
      if (s !== sock) {
        s.on('error', (err) => failure(err.message));
        s.on('close', () => clearTimeout(timer));
      }
      s.resume();
      s.end(encodeCancelRequest(pid, secret));
      this.ops.info('cancel request forwarded', { conn: target.id, client: from, pid, tls: this.upstreamTls === null ? undefined : tls });
    };
    sock.on('error', (err) => failure(err.message));
    const utls = this.upstreamTls;
    if (utls === null) {
      sock.on('connect', () => send(sock, false));
      return;
    }
    negotiateUpstream(sock, host, utls, (n) => {
      switch (n.kind) {
        case 'tls':
          send(n.socket, true);
          return;
        case 'plain':
          send(sock, false);
          return;
        case 'error':
          failure('the server sent an error during SSL negotiation');
          break;
        case 'failed':
          failure(n.reason);
          break;
      }
      clearTimeout(timer);
      sock.destroy();
    });
  }
}
