/**
 * The startup phase of a client connection, before the upstream is involved: SSLRequest and
 * GSSENCRequest (answered 'N' unless TLS is configured for clients, then the TLS handshake),
 * CancelRequest (routed to the session it names; it has no reply), the StartupMessage (checked,
 * then admitted under the session limit), and the timeout for all of it.
 *
 * @see https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-START-UP
 */
import type * as tls from 'node:tls';
import { NEGOTIATION_REFUSED, SSL_ACCEPTED, decodeStartup, type ErrorFields } from '../protocol/messages';
import type { ClientTls, TlsUpgradeListener } from '../tls';
import type { ClientLeg } from './client-leg';
import { SessionError } from './errors';
import type { ClientHandle, ClientHost } from './host';
import { ClientState } from './states';

/** What the startup phase needs of its session. */
export interface StartupSession extends ClientHandle {
  readonly state: ClientState;
  transition(next: ClientState): void;
  fail(error: ErrorFields): void;
  protocolViolation(reason: string): void;
  /** The framer holds no part of a message (nothing arrived in the clear after the SSLRequest). */
  readonly clientAtBoundary: boolean;
  /** The connection to the client, handed to TLS and back here. */
  readonly clientLeg: ClientLeg;
  /** A CancelRequest arrived on this connection: it has no reply; the connection closes. */
  closeAfterCancel(): void;
  /** The StartupMessage was accepted and admitted: open the upstream and relay it. */
  begin(user: string, params: ReadonlyMap<string, string>, packet: Buffer): void;
}

export class StartupPhase implements TlsUpgradeListener {
  private readonly session: StartupSession;
  private readonly host: ClientHost;
  /** The connection is TLS (SSLRequest answered 'S' and the handshake completed). */
  encrypted = false;
  /** 'S' has been written: nothing may follow in the clear before the handshake. */
  private sslAnswered = false;
  /** The handshake's key in ClientTls (to forget it if the client goes away first). */
  private handshakeKey = '';
  private timer: NodeJS.Timeout | null;

  constructor(session: StartupSession, host: ClientHost) {
    this.session = session;
    this.host = host;
    this.timer = setTimeout(() => this.onTimeout(), host.settings.startupTimeoutMs);
  }

  /** An untyped startup-phase packet arrived. */
  onPacket(buf: Buffer, start: number, end: number): void {
    const s = this.session;
    if (this.sslAnswered) {
      // PostgreSQL's rule since CVE-2021-23214: bytes that follow an SSLRequest before the handshake
      // were not protected by it (they may come from someone in the middle), so they are refused.
      s.protocolViolation('received unencrypted data after SSLRequest');
      return;
    }
    let packet;
    try {
      packet = decodeStartup(buf, start, end);
    } catch (err) {
      s.protocolViolation((err as Error).message);
      return;
    }
    switch (packet.kind) {
      case 'ssl':
      case 'gssenc': {
        if (this.encrypted) {
          s.protocolViolation(`${packet.kind === 'ssl' ? 'SSLRequest' : 'GSSENCRequest'} on a connection that is already encrypted`);
          return;
        }
        const ctls = this.host.tls.client;
        if (packet.kind === 'ssl' && ctls !== null) {
          this.answerSsl(ctls);
          return;
        }
        // No GSSAPI encryption (nor TLS, unless configured): 'N' lets the client carry on in plaintext.
        s.clientLeg.write(NEGOTIATION_REFUSED);
        return;
      }
      case 'cancel':
        // Accepted in the clear even with --tls-mode require, as PostgreSQL accepts it whatever
        // pg_hba.conf says: libpq before 17 always sends cancel requests unencrypted.
        this.stopTimer();
        this.host.keys.cancel(packet.pid, packet.secret, s.address);
        s.closeAfterCancel();
        return;
      case 'unsupported':
        s.fail(SessionError.unsupportedProtocol(packet.code));
        return;
      case 'startup':
        this.onStartupMessage(packet.params, buf.subarray(start, end));
        return;
    }
  }

  private onStartupMessage(params: ReadonlyMap<string, string>, packet: Buffer): void {
    const s = this.session;
    if (!this.encrypted && this.host.tls.client?.mode === 'require') {
      this.host.ops.warn('plaintext client refused: --tls-mode require; it must connect with sslmode=require or stronger', {
        conn: s.id,
        client: s.address,
        user: params.get('user'),
      });
      s.fail(SessionError.tlsRequired());
      return;
    }
    this.stopTimer();
    const user = params.get('user');
    if (user === undefined || user === '') {
      s.fail(SessionError.noUser());
      return;
    }
    if (!this.host.admit(s)) {
      s.fail(SessionError.tooManyClients());
      return;
    }
    s.begin(user, params, packet);
  }

  /**
   * Answer 'S' and hand the socket to the TLS handshake once the answer is written. The write's
   * callback runs after the framer has gone through the rest of the read that held the
   * SSLRequest, so whatever followed it in the clear has shown up by then: a whole packet in
   * onPacket, a partial one as bytes the framer holds. Either is refused.
   */
  private answerSsl(ctls: ClientTls): void {
    this.sslAnswered = true;
    // The TLS handshake takes the socket over once 'S' is written: read nothing more in the clear.
    this.session.clientLeg.stopReading();
    this.session.clientLeg.write(SSL_ACCEPTED, (err) => {
      if (err === undefined || err === null) this.startTls(ctls);
    });
  }

  private startTls(ctls: ClientTls): void {
    const s = this.session;
    if (s.state !== ClientState.Startup) return;
    if (!s.clientAtBoundary) {
      s.protocolViolation('received unencrypted data after SSLRequest');
      return;
    }
    const raw = s.clientLeg.releaseRaw();
    s.transition(ClientState.TlsHandshake);
    this.handshakeKey = ctls.upgrade(raw, this);
  }

  /** TlsUpgradeListener: the handshake is done. */
  onTlsSecure(sock: tls.TLSSocket): void {
    const s = this.session;
    if (s.state !== ClientState.TlsHandshake) {
      sock.destroy();
      return;
    }
    this.encrypted = true;
    this.sslAnswered = false;
    const ctls = this.host.tls.client!;
    const refused = ctls.verifyClients && !sock.authorized;
    s.clientLeg.useTls(sock, !refused);
    s.transition(ClientState.Startup);
    if (!refused) return;
    const peer = sock.getPeerCertificate();
    const reason = peer === null || Object.keys(peer).length === 0 ? 'no certificate' : (sock.authorizationError?.toString() ?? 'not verified');
    this.host.ops.warn('client certificate refused (not signed by the --tls-ca certificates); closing it', {
      conn: s.id,
      client: s.address,
      reason,
    });
    s.fail(SessionError.clientCertificateRefused(reason));
  }

  /** TlsUpgradeListener: the handshake failed. */
  onTlsError(err: Error): void {
    const s = this.session;
    if (s.state !== ClientState.TlsHandshake) return;
    this.host.ops.warn('TLS handshake with client failed; closing it', {
      conn: s.id,
      client: s.address,
      error: (err as NodeJS.ErrnoException).code ?? err.message,
    });
    s.transition(ClientState.Closing);
  }

  private onTimeout(): void {
    this.timer = null;
    const s = this.session;
    const timeoutMs = this.host.settings.startupTimeoutMs;
    if (s.state === ClientState.TlsHandshake) {
      this.host.ops.warn('client did not complete the TLS handshake in time; dropping it', { conn: s.id, client: s.address, timeout_ms: timeoutMs });
      s.transition(ClientState.Closing);
      return;
    }
    if (s.state !== ClientState.Startup) return;
    this.host.ops.warn('client did not send a startup packet in time; dropping it', { conn: s.id, client: s.address, timeout_ms: timeoutMs });
    s.fail(SessionError.startupTimeout(timeoutMs));
  }

  private stopTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  /** The connection is closing (from: the state it was in). */
  close(from: ClientState): void {
    this.stopTimer();
    if (from === ClientState.TlsHandshake) this.host.tls.client?.forget(this.handshakeKey, this);
  }
}
