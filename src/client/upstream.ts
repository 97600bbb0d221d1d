/**
 * A session's connection to PostgreSQL: opened when the client's StartupMessage is accepted,
 * in plaintext or TLS as --upstream-tls says (libpq's sslmode meanings), with a connect timeout.
 * With several upstream nodes it goes to the current primary (src/upstreams/), waiting up to
 * primary-wait-ms for one during a failover. Failures before the session exists are answered
 * 08001, as libpq reports them.
 *
 * @see https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-SSL
 */
import * as net from 'node:net';
import { reusedReads } from '../net/reused-reads';
import { formatHostPort, type HostPort } from '../config';
import type { ErrorFields } from '../protocol/messages';
import { negotiateUpstream, type Negotiation } from '../tls';
import { SessionError } from './errors';
import type { ClientHost } from './host';
import { ClientState } from './states';

/** What the upstream leg needs of its session. */
export interface UpstreamSession {
  readonly id: number;
  readonly address: string;
  readonly state: ClientState;
  /** It came through the read-only listener: a standby serves it (the primary only as a fallback). */
  readonly readOnly: boolean;
  /** What its log lines say of it: with several upstreams, the node (HOST:PORT) serving it. */
  readonly recorder: { readonly session: { node?: string } | null };
  fail(error: ErrorFields): void;
  /** The server refused the connection with this ErrorResponse (its bytes): pass it on and close. */
  closeWithServerError(bytes: Buffer): void;
  /** The connection carries the session: relay authentication, read the client again. */
  upstreamReady(): void;
  onServerData(chunk: Buffer): void;
  /** A read into the leg's reused buffer (reading in place): true when a view of chunk outlives the call. */
  onServerRead(chunk: Buffer): boolean;
  /** The upstream socket drained: the client may be read again. */
  onUpstreamDrain(): void;
  onUpstreamClose(): void;
}

export class UpstreamLeg {
  private readonly session: UpstreamSession;
  private readonly host: ClientHost;
  /** The socket the session's messages go to (the TLS session over the TCP one once negotiated). */
  socket: net.Socket | null = null;
  /** pgscribe's connection to the upstream is TLS. */
  encrypted = false;
  /** The upstream's answer to pgscribe's SSLRequest, or its TLS handshake, is awaited. */
  negotiating = false;
  private timer: NodeJS.Timeout | null = null;
  /** The socket is not read: the client is slow, or a commit's answer is held. */
  private paused = false;
  /** The node this session connects (or connected) to; null until chosen. */
  node: HostPort | null = null;
  /**
   * Several upstreams: the StartupMessage (a copy) and when the session's wait for a primary
   * ends. A primary that refuses the connection (it just died) is not the client's failure:
   * nothing has reached a server yet, so the session waits for the next primary instead.
   */
  private retry: { packet: Buffer; deadline: number } | null = null;
  /** A read-only session's routing was counted (its first choice of node). */
  private readOnlyCounted = false;

  /**
   * inPlace: read the server into one reused buffer (src/net/reused-reads.ts) when the connection
   * is plaintext (TLS reads the socket itself).
   */
  constructor(session: UpstreamSession, host: ClientHost, private readonly inPlace = false) {
    this.session = session;
    this.host = host;
  }

  /** HOST:PORT of the node reached (as the log writes nodes, log-replay's start line), or that would be. */
  get address(): string {
    return formatHostPort(this.node ?? this.host.settings.upstream);
  }

  private get target(): string {
    const { host, port } = this.node ?? this.host.settings.upstream;
    return `${host}:${port}`;
  }

  /**
   * Open the connection and send the client's StartupMessage (a view: copied here). With several
   * nodes, to the primary; while there is none, after waiting for one (the client is not read
   * meanwhile: its state stays Connecting).
   */
  connect(startupPacket: Buffer): void {
    const router = this.host.upstreams;
    if (router === null) {
      this.connectTo(this.host.settings.upstream, startupPacket);
      return;
    }
    const waitMs = this.host.settings.primaryWaitMs;
    this.retry = { packet: Buffer.from(startupPacket), deadline: Date.now() + waitMs };
    if (this.session.readOnly) {
      this.connectReadOnly();
      return;
    }
    const now = router.route();
    if (now !== null) {
      this.connectTo(now, startupPacket);
      return;
    }
    this.waitForPrimary(waitMs);
  }

  /** Several upstreams: connect once there is a primary; 08001 after waitMs without one. */
  private waitForPrimary(waitMs: number): void {
    const router = this.host.upstreams!;
    const packet = this.retry!.packet;
    const s = this.session;
    void router.whenTarget(waitMs).then((node) => {
      if (s.state !== ClientState.Connecting) return; // the client went away meanwhile
      try {
        if (node !== null) {
          this.connectTo(node, packet);
          return;
        }
        const waited = this.host.settings.primaryWaitMs;
        this.host.ops.warn('no upstream primary within primary-wait-ms; refusing the client with 08001', { conn: s.id, client: s.address, wait_ms: waited, nodes: router.describe() });
        // The client is not authenticated: the nodes' states, not the checks' error texts.
        s.fail(SessionError.noPrimary(waited, router.describe(false)));
      } catch (err) {
        this.host.ops.error('internal error while connecting a session that waited for a primary; closing it', { conn: s.id, error: (err as Error).message });
        s.fail(SessionError.upstreamUnreachable(this.target, 'internal error'));
      }
    });
  }

  /**
   * The read-only listener: once every node has been checked once, the standby within the lag
   * bound that holds the fewest sessions; when none qualifies, the primary (waiting for one as a
   * primary-listener session would) or 08001, as replica-fallback says.
   */
  private connectReadOnly(): void {
    const router = this.host.upstreams!;
    const retry = this.retry!;
    const s = this.session;
    const counters = this.host.counters;
    void router.whenChecked(Math.max(0, retry.deadline - Date.now())).then(() => {
      if (s.state !== ClientState.Connecting) return; // the client went away meanwhile
      try {
        // Counted once per session, at its first choice (a retry after a refused connect is not another session).
        const first = !this.readOnlyCounted;
        this.readOnlyCounted = true;
        const standby = router.pickStandby(this.host.sessionsByNode());
        if (standby !== null) {
          if (first) counters.readOnlyToStandby++;
          this.connectTo(standby, retry.packet);
          return;
        }
        if (this.host.settings.replicaFallback === 'primary') {
          if (first) counters.readOnlyToPrimary++;
          this.waitForPrimary(Math.max(0, retry.deadline - Date.now()));
          return;
        }
        if (first) counters.readOnlyRefused++;
        this.host.ops.warn('no upstream standby qualifies for a read-only session (replica-fallback refuse); refusing the client with 08001', { conn: s.id, client: s.address, nodes: router.describe() });
        s.fail(SessionError.noStandby(router.describe(false)));
      } catch (err) {
        this.host.ops.error('internal error while choosing a standby for a read-only session; closing it', { conn: s.id, error: (err as Error).message });
        s.fail(SessionError.upstreamUnreachable(this.target, 'internal error'));
      }
    });
  }

  private connectTo(node: HostPort, startupPacket: Buffer): void {
    this.node = node;
    const logged = this.session.recorder.session;
    if (this.host.upstreams !== null && logged !== null) logged.node = formatHostPort(node);
    const { host, port } = node;
    const timeoutMs = this.host.settings.connectTimeoutMs;
    const utls = this.host.tls.upstream;
    const s = this.session;
    const inPlace = this.inPlace && utls === null;
    const up = inPlace ? net.connect({ host, port, onread: reusedReads((chunk) => s.onServerRead(chunk)) }) : net.connect({ host, port });
    this.socket = up;
    up.setNoDelay(true);
    up.setKeepAlive(true, 60_000);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.waitForAnotherPrimary(`no connection within ${timeoutMs} ms`)) return;
      this.host.ops.warn('upstream connect timed out', { conn: this.session.id, client: this.session.address, upstream: this.target, timeout_ms: timeoutMs });
      this.session.fail(SessionError.upstreamUnreachable(this.target, `timeout after ${timeoutMs} ms`));
    }, timeoutMs);
    const packet = Buffer.from(startupPacket);
    if (utls === null) {
      // net queues this write until the connection is up; the client is not read until then.
      up.write(packet);
      up.on('connect', () => this.ready());
      this.listen(up, inPlace);
      return;
    }
    // The startup packet waits for the TLS session (or for 'N' with prefer).
    const onConnectError = (err: NodeJS.ErrnoException): void => this.onError(err);
    up.on('error', onConnectError);
    this.negotiating = true;
    negotiateUpstream(up, host, utls, (n) => {
      up.off('error', onConnectError);
      this.onNegotiated(up, n, packet);
    });
  }

  /** onread: the socket was opened with onread and hands its reads to onServerRead itself. */
  private listen(sock: net.Socket, onread = false): void {
    const s = this.session;
    if (!onread) sock.on('data', (chunk: Buffer) => s.onServerData(chunk));
    sock.on('drain', () => s.onUpstreamDrain());
    sock.on('error', (err: NodeJS.ErrnoException) => this.onError(err));
    sock.on('close', () => s.onUpstreamClose());
  }

  private ready(): void {
    this.stopTimer();
    if (this.session.state !== ClientState.Connecting) return;
    this.session.upstreamReady();
  }

  /** The upstream answered pgscribe's SSLRequest (see negotiateUpstream). */
  private onNegotiated(raw: net.Socket, n: Negotiation, startupPacket: Buffer): void {
    this.negotiating = false;
    const s = this.session;
    if (s.state !== ClientState.Connecting) {
      if (n.kind === 'tls') n.socket.destroy();
      raw.destroy();
      return;
    }
    switch (n.kind) {
      case 'tls':
        this.socket = n.socket;
        this.encrypted = true;
        this.listen(n.socket);
        n.socket.write(startupPacket);
        this.ready();
        return;
      case 'plain': {
        const utls = this.host.tls.upstream!;
        if (!utls.plaintextNoted) {
          // Said once: with prefer against a server without SSL, every session would say it.
          utls.plaintextNoted = true;
          this.host.ops.info('upstream does not support SSL; connecting in plaintext (--upstream-tls prefer; said once)', { conn: s.id, client: s.address, upstream: this.target });
        }
        this.listen(raw);
        raw.write(startupPacket);
        raw.resume();
        this.ready();
        return;
      }
      case 'error': {
        // Like libpq: a protocol-3 ErrorResponse is the server's word and goes to the client as
        // is; anything else is an old-style error text ('E', then a string). Either way the
        // connection ends there: nothing (no startup packet, no password) goes on in plaintext.
        const d = n.data;
        const len = d.length >= 5 ? d.readUInt32BE(1) : 8;
        if (len >= 8 && len <= 30000) {
          this.host.ops.warn('upstream answered the SSL request with an error; passing it on to the client and closing', { conn: s.id, client: s.address, upstream: this.target });
          this.relayErrorAndClose(raw, d, 1 + len);
          return;
        }
        const text = d.toString('utf8', 1).replace(/\0[\s\S]*$/, '').trim();
        this.negotiationFailed(`the server sent an error during SSL negotiation: ${text}`);
        return;
      }
      case 'failed':
        this.negotiationFailed(n.reason);
        return;
    }
  }

  /** Read the rest of the server's ErrorResponse (size bytes in all), give it to the client, close. */
  private relayErrorAndClose(raw: net.Socket, first: Buffer, size: number): void {
    const s = this.session;
    let got = first;
    const settle = (): void => {
      if (got.length < size) return;
      raw.off('data', onData);
      raw.destroy();
      this.stopTimer();
      if (s.state === ClientState.Connecting) s.closeWithServerError(got.subarray(0, size));
    };
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      settle();
    };
    raw.on('data', onData);
    // Ended before its error was whole: what came is not a message to pass on.
    raw.once('close', () => {
      if (got.length < size && s.state === ClientState.Connecting) this.negotiationFailed('the server closed the connection in the middle of its error');
    });
    raw.resume();
    settle();
  }

  private negotiationFailed(reason: string): void {
    const s = this.session;
    const mode = this.host.tls.upstream!.mode;
    this.host.ops.warn('TLS negotiation with upstream failed; refusing the client with 08001', {
      conn: s.id,
      client: s.address,
      upstream: this.target,
      upstream_tls: mode,
      reason,
    });
    s.fail(SessionError.upstreamUnreachable(this.target, reason, `Check --upstream-tls ${mode} and --upstream-tls-ca against the server's SSL settings.`));
  }

  private onError(err: NodeJS.ErrnoException): void {
    const s = this.session;
    if (s.state === ClientState.Connecting) {
      if (err.syscall === 'connect' && this.waitForAnotherPrimary(err.code ?? err.message)) return;
      this.host.counters.upstreamErrors++;
      if (this.node !== null) this.host.upstreams?.suspect(this.node);
      this.host.ops.warn('cannot connect to upstream', { conn: s.id, client: s.address, upstream: this.target, error: err.code ?? err.message });
      s.fail(SessionError.upstreamUnreachable(this.target, err.message));
      return;
    }
    // Resets are how a session often ends; 'close' follows and does the work.
    if (err.code !== 'ECONNRESET' && err.code !== 'EPIPE') {
      this.host.ops.warn('upstream socket error', { conn: s.id, client: s.address, error: err.code ?? err.message });
    }
  }

  /**
   * Several upstreams: the primary (or, for a read-only session, the standby) did not take the
   * connection (refused, or no answer in connect-timeout). Nothing reached a server, so the
   * session waits for a primary (a read-only one: chooses again) for what is left of its
   * primary-wait-ms, and the node gets no new session until a check passes. False when that does
   * not apply (one upstream, TLS negotiation begun, the wait used up).
   */
  private waitForAnotherPrimary(reason: string): boolean {
    const router = this.host.upstreams;
    const node = this.node;
    if (router === null || node === null || this.retry === null || this.negotiating) return false;
    const left = this.retry.deadline - Date.now();
    if (left <= 0) return false;
    const sock = this.socket;
    if (sock !== null) {
      sock.removeAllListeners();
      sock.on('error', () => {});
      sock.destroy();
    }
    this.socket = null;
    this.stopTimer();
    router.unreachable(node, reason);
    if (this.session.readOnly) {
      this.host.ops.info('upstream node did not take the read-only session; it goes to another', { conn: this.session.id, client: this.session.address, upstream: this.target, reason, wait_ms: left });
      this.connectReadOnly();
      return true;
    }
    this.host.ops.info('upstream primary did not take the session; it waits for a primary', { conn: this.session.id, client: this.session.address, upstream: this.target, reason, wait_ms: left });
    this.waitForPrimary(left);
    return true;
  }

  /** Stop (on) or resume reading the server. mayResume: false once the session is closing. */
  setPaused(on: boolean, mayResume: boolean): void {
    const up = this.socket;
    if (up === null || on === this.paused) return;
    this.paused = on;
    if (on) up.pause();
    else if (mayResume) up.resume();
  }

  private stopTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  /**
   * The session is closing: say goodbye (sayTerminate: send Terminate first; the client did not,
   * and the last message sent upstream was whole) and destroy the socket after lingerMs.
   */
  close(sayTerminate: boolean, terminate: Buffer, lingerMs: number): void {
    this.stopTimer();
    const up = this.socket;
    if (up === null) return;
    if (this.negotiating) {
      // Mid SSL negotiation there is nothing to say goodbye to.
      up.destroy();
      return;
    }
    if (up.destroyed) return;
    if (sayTerminate && up.writable) up.end(terminate);
    else up.end();
    up.resume();
    setTimeout(() => up.destroy(), lingerMs).unref();
  }
}
