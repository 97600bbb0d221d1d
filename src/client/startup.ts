/**
 * The startup phase of a client connection, before the upstream is involved: SSLRequest and
 * GSSENCRequest (answered 'N' unless TLS is configured for clients, then the TLS handshake),
 * CancelRequest (routed to the session it names; it has no reply), the StartupMessage (admitted
 * under the session limit, then relayed), and the timeout for all of it.
 *
 * Faults are answered as the postmaster answers them (ProcessStartupPacket): what it only logs
 * (a bad length, an early EOF, a CancelRequest of the wrong size, the timeout) closes in silence;
 * what it reports in the StartupMessage (protocol version, layout, no user) is PostgreSQL's own
 * answer, because the packet is relayed to it as it came; and the negotiation faults only the
 * postmaster's state can see (a second SSLRequest or GSSENCRequest, plaintext pipelined behind
 * one) get its FATAL, worded as it words them. docs/protocol.md has the whole table.
 *
 * @see https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-START-UP
 */
import type * as tls from 'node:tls';
import { StartupCode } from '../protocol/codes';
import { NEGOTIATION_REFUSED, SSL_ACCEPTED, readStartupParams, type ErrorFields } from '../protocol/messages';
import type { ClientTls, TlsUpgradeListener } from '../tls';
import type { ClientLeg } from './client-leg';
import type { OpsLog } from '../log/ops';
import { ThrottledLine } from '../log/ops-throttle';
import { SessionError } from './errors';
import type { ClientHandle, ClientHost } from './host';
import { ClientState } from './states';

/** What the startup phase needs of its session. */
export interface StartupSession extends ClientHandle {
  readonly state: ClientState;
  transition(next: ClientState): void;
  fail(error: ErrorFields): void;
  /** Close without a word, as the postmaster does after a fault it only logs. */
  closeSilently(): void;
  /** The framer holds no part of a message (nothing arrived in the clear after the SSLRequest). */
  readonly clientAtBoundary: boolean;
  /** The connection to the client, handed to TLS and back here. */
  readonly clientLeg: ClientLeg;
  /**
   * The StartupMessage was admitted: open the upstream and relay it. rawAnswer: the server will
   * refuse it in the pre-3.0 error format, which is relayed as bytes, unread.
   */
  begin(user: string, params: ReadonlyMap<string, string>, packet: Buffer, rawAnswer: boolean): void;
  /**
   * Admission is asked of another process (--processes N): read and deliver nothing more from the
   * client until the answer (on: true), then carry on (false).
   */
  holdForAdmission(on: boolean): void;
}

/** One throttled line per operational log and message: anyone can cause these, as often as they like. */
function throttledWarning(message: string): (ops: OpsLog) => ThrottledLine {
  const lines = new WeakMap<OpsLog, ThrottledLine>();
  return (ops) => {
    let line = lines.get(ops);
    if (line === undefined) {
      line = new ThrottledLine((m, f) => ops.warn(m, f), message);
      lines.set(ops, line);
    }
    return line;
  };
}
const refusals = throttledWarning('client startup packet refused; closing it without a reply, as PostgreSQL does');
const lateStartups = throttledWarning('client did not send a startup packet in time; dropping it');

export class StartupPhase implements TlsUpgradeListener {
  private readonly session: StartupSession;
  private readonly host: ClientHost;
  /** The connection is TLS (SSLRequest answered 'S' and the handshake completed). */
  encrypted = false;
  /** 'S' has been written: nothing may follow in the clear before the handshake. */
  private sslAnswered = false;
  /** Plaintext arrived between 'S' and the handshake: refused once the handshake is done. */
  private plaintextBeforeHandshake = false;
  /**
   * The postmaster's ssl_done and gss_done: a request it has had once (or that encryption made
   * pointless) is not a request any more, but a StartupMessage of an unknown protocol version.
   */
  private sslDone = false;
  private gssDone = false;
  /**
   * 'N' was written in answer to this request during the current read: whatever else that read
   * held came before the answer, in the clear and unasked for, and is refused.
   */
  private refusedInThisRead: 'ssl' | 'gssenc' | null = null;
  /** The handshake's key in ClientTls (to forget it if the client goes away first). */
  private handshakeKey = '';
  private timer: NodeJS.Timeout | null;

  constructor(session: StartupSession, host: ClientHost) {
    this.session = session;
    this.host = host;
    this.timer = setTimeout(() => this.onTimeout(), host.settings.startupTimeoutMs);
  }

  /** An untyped startup-phase packet arrived (the framer checked its length: 8 to 10004 bytes). */
  onPacket(buf: Buffer, start: number, end: number): void {
    const s = this.session;
    if (this.sslAnswered) {
      // PostgreSQL's rule since CVE-2021-23214: bytes that follow an SSLRequest before the handshake
      // were not protected by it (they may come from someone in the middle). The handshake goes on,
      // as the postmaster's does, and the refusal is said inside it (startTls, onTlsSecure).
      this.plaintextBeforeHandshake = true;
      return;
    }
    if (this.refusedInThisRead !== null) {
      s.fail(SessionError.unencryptedAfterRequest(this.refusedInThisRead));
      return;
    }
    const code = buf.readUInt32BE(start + 4);
    if (code === StartupCode.CancelRequest) {
      this.onCancelRequest(buf, start, end);
      return;
    }
    if (code === StartupCode.SSLRequest && !this.sslDone) {
      this.onSslRequest();
      return;
    }
    if (code === StartupCode.GSSENCRequest && !this.gssDone) {
      // No GSSAPI encryption: 'N', as from a server built without it.
      this.sslDone = false;
      this.gssDone = true;
      this.refuse('gssenc');
      return;
    }
    this.onStartupMessage(code, buf.subarray(start, end));
  }

  /**
   * Accepted in the clear even with --tls-mode require, as PostgreSQL accepts it whatever
   * pg_hba.conf says: libpq before 17 always sends cancel requests unencrypted. The wrong size is
   * dropped unread, as the postmaster drops it.
   */
  private onCancelRequest(buf: Buffer, start: number, end: number): void {
    this.stopTimer();
    if (end - start !== 16) {
      this.closeSilently('invalid length of startup packet (a CancelRequest is 16 bytes)', end - start);
      return;
    }
    this.host.keys.cancel(buf.readInt32BE(start + 8), buf.readInt32BE(start + 12), this.session.address);
    // A CancelRequest has no reply: its connection just closes.
    this.session.closeSilently();
  }

  private onSslRequest(): void {
    const ctls = this.host.tls.client;
    // (Inside TLS sslDone is already set: a second SSLRequest never comes here.)
    if (ctls === null) {
      this.sslDone = true;
      this.gssDone = false;
      this.refuse('ssl');
      return;
    }
    this.sslDone = true;
    this.gssDone = true;
    this.answerSsl(ctls);
  }

  /** 'N': carry on in plaintext; the rest of this read must be empty (see refusedInThisRead). */
  private refuse(request: 'ssl' | 'gssenc'): void {
    const s = this.session;
    s.clientLeg.write(NEGOTIATION_REFUSED);
    this.refusedInThisRead = request;
    // Runs once the framer is through the read that held the request.
    queueMicrotask(() => {
      this.refusedInThisRead = null;
      if (s.state === ClientState.Startup && !s.clientAtBoundary) s.fail(SessionError.unencryptedAfterRequest(request));
    });
  }

  private onStartupMessage(code: number, packet: Buffer): void {
    const s = this.session;
    if (code === StartupCode.SSLRequest || code === StartupCode.GSSENCRequest) {
      // A second request: the postmaster reads it as a StartupMessage of protocol 1234.5679 or .5680.
      s.fail(SessionError.unsupportedProtocol(code));
      return;
    }
    const params = readStartupParams(packet, 0, packet.length);
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
    const user = params.get('user') ?? '';
    const admitted = this.host.admit(s, { user, database: params.get('database') || user });
    if (!(admitted instanceof Promise)) {
      this.admitted(admitted, params, packet, code);
      return;
    }
    // Bytes behind the StartupMessage wait for the answer: they are not startup packets if it is yes.
    s.holdForAdmission(true);
    void admitted.then((refused) => {
      if (s.state !== ClientState.Startup) return; // it went away meanwhile
      this.admitted(refused, params, packet, code);
      s.holdForAdmission(false);
    });
  }

  private admitted(refused: ErrorFields | null, params: ReadonlyMap<string, string>, packet: Buffer, code: number): void {
    const s = this.session;
    if (refused !== null) {
      s.fail(refused);
      return;
    }
    // Whatever is wrong with it (protocol version, layout, no user), PostgreSQL says so itself.
    s.begin(params.get('user') ?? '', params, packet, code >>> 16 < 3);
  }

  /**
   * The framer found a startup packet's length out of bounds. Bytes behind a request that was
   * just answered are refused first, as the postmaster checks its buffer before it reads on.
   */
  onBadLength(reason: string): void {
    if (this.sslAnswered) {
      this.plaintextBeforeHandshake = true;
      return;
    }
    if (this.refusedInThisRead !== null) {
      this.session.fail(SessionError.unencryptedAfterRequest(this.refusedInThisRead));
      return;
    }
    this.closeSilently(reason);
  }

  /**
   * A fault the postmaster logs (COMMERROR) and answers by closing without a word: say it to the
   * operator, nothing to the client.
   */
  closeSilently(reason: string, length?: number): void {
    const s = this.session;
    this.stopTimer();
    refusals(this.host.ops).log({ conn: s.id, client: s.address, reason, ...(length === undefined ? {} : { length }) });
    s.closeSilently();
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
    if (!s.clientAtBoundary) this.plaintextBeforeHandshake = true;
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
    if (this.plaintextBeforeHandshake) {
      s.clientLeg.useTls(sock, true);
      s.transition(ClientState.Startup);
      this.host.ops.warn('client sent plaintext between SSLRequest and the TLS handshake; refusing it', { conn: s.id, client: s.address });
      s.fail(SessionError.unencryptedAfterRequest('ssl'));
      return;
    }
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
    // The postmaster's child simply exits at authentication_timeout: no message.
    lateStartups(this.host.ops).log({ conn: s.id, client: s.address, timeout_ms: timeoutMs });
    s.closeSilently();
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
