/**
 * TLS on both sides of the proxy.
 *
 * Clients: with a certificate and key, an SSLRequest is answered 'S' and the socket is upgraded,
 * as PostgreSQL does; the certificate, key and CA can be reloaded (SIGHUP) without touching the
 * sessions already encrypted. Upstream: pgscribe sends SSLRequest itself before the client's
 * StartupMessage (or a forwarded CancelRequest) and reads the one-byte answer the way libpq does.
 *
 * TLS terminates here: the proxy reads the protocol in the clear on both sides (that is its job),
 * so a client's TLS session ends at the proxy and the upstream sees the proxy's own session.
 *
 * @see https://www.postgresql.org/docs/15/protocol-flow.html (SSL Session Encryption)
 * @see https://www.postgresql.org/docs/15/libpq-ssl.html (the sslmode values upstream-tls follows)
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { ConfigError, clientTlsMode, type TlsConfig, type UpstreamTlsMode } from './config';
import { describeType } from './protocol/framer';
import { encodeSslRequest } from './protocol/messages';

/** A loaded certificate as the ops log shows it. */
export interface CertInfo {
  /** The certificate file. */
  file: string;
  /** Subject, one line (`CN=localhost`). */
  subject: string;
  /** notAfter, ISO 8601 when it parses. */
  expires: string;
  expired: boolean;
  /** The private key file, and its permission bits (PostgreSQL refuses a key others can read). */
  keyFile: string;
  keyMode: number;
}

/** Files of one side and the names of the settings they came from (for error messages). */
interface PemFiles {
  cert: string;
  key: string;
  ca: string;
}
const CLIENT_KEYS: PemFiles = { cert: 'tls-cert', key: 'tls-key', ca: 'tls-ca' };
const UPSTREAM_KEYS: PemFiles = { cert: 'upstream-tls-cert', key: 'upstream-tls-key', ca: 'upstream-tls-ca' };

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function readPem(file: string, key: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new ConfigError(key, `cannot read the ${what} ${file}: ${message(err)}`);
  }
}

function certInfo(file: string, x509: crypto.X509Certificate): Omit<CertInfo, 'keyFile' | 'keyMode'> {
  const notAfter = new Date(x509.validTo);
  const ok = !Number.isNaN(notAfter.getTime());
  return {
    file,
    subject: x509.subject.split('\n').join(', '),
    expires: ok ? notAfter.toISOString() : x509.validTo,
    expired: ok && notAfter.getTime() < Date.now(),
  };
}

/**
 * Read certificate, key and CA files (any may be '') and build a SecureContext, checking each on
 * the way so that the error names the setting at fault: unreadable file, not PEM, an encrypted
 * key, a key that does not belong to the certificate. Throws ConfigError.
 */
function loadContext(files: PemFiles, keys: PemFiles): { context: tls.SecureContext; options: tls.SecureContextOptions; cert: CertInfo | null } {
  const opts: tls.SecureContextOptions = {};
  let cert: CertInfo | null = null;
  if (files.cert !== '') {
    const certPem = readPem(files.cert, keys.cert, 'certificate');
    const keyPem = readPem(files.key, keys.key, 'private key');
    let x509: crypto.X509Certificate;
    try {
      x509 = new crypto.X509Certificate(certPem);
    } catch (err) {
      throw new ConfigError(keys.cert, `${files.cert} does not hold a PEM certificate: ${message(err)}`);
    }
    let pkey: crypto.KeyObject;
    try {
      pkey = crypto.createPrivateKey(keyPem);
    } catch (err) {
      throw new ConfigError(keys.key, `${files.key} does not hold an unencrypted PEM private key: ${message(err)}`);
    }
    if (!x509.checkPrivateKey(pkey)) {
      throw new ConfigError(keys.key, `${files.key} is not the private key of the certificate in ${files.cert}`);
    }
    opts.cert = certPem;
    opts.key = keyPem;
    cert = { ...certInfo(files.cert, x509), keyFile: files.key, keyMode: fs.statSync(files.key).mode & 0o777 };
  }
  if (files.ca !== '') {
    const caPem = readPem(files.ca, keys.ca, 'CA certificates');
    try {
      new crypto.X509Certificate(caPem);
    } catch (err) {
      throw new ConfigError(keys.ca, `${files.ca} does not hold a PEM certificate: ${message(err)}`);
    }
    opts.ca = caPem;
  }
  try {
    return { context: tls.createSecureContext(opts), options: opts, cert };
  } catch (err) {
    const key = files.cert !== '' ? keys.cert : keys.ca;
    throw new ConfigError(key, `cannot use ${files.cert !== '' ? files.cert : files.ca} for TLS: ${message(err)}`);
  }
}

/** What a ClientTls tells the connection it upgrades. */
export interface TlsUpgradeListener {
  /** The handshake completed; `socket` carries the session from now on (`authorized`: see ClientTls). */
  onTlsSecure(socket: tls.TLSSocket): void;
  /** The handshake failed (bad record, protocol mismatch, client gave up, ...). */
  onTlsError(err: Error): void;
}

/**
 * The client side: the certificate an SSLRequest is answered with, and the handshakes.
 *
 * Handshakes run in a tls.Server that never listens: each socket answered 'S' is handed to it
 * with emit('connection'). A TLSSocket made by hand with `isServer` would not check a client
 * certificate against the CA (Node checks it in tls.Server's connection handling only; by hand a
 * certificate from any CA is let through), and tls.Server's setSecureContext() is how a certificate
 * is replaced for the handshakes to come. The server requests a certificate when tls-ca is set but
 * does not abort the handshake itself: the session checks `socket.authorized` and refuses with a
 * FATAL error the client can show, and the ops log gets the reason with the client's address.
 */
export class ClientTls {
  readonly mode: 'allow' | 'require';
  /** tls-ca is set: a TLS client must present a certificate that chains to it. */
  readonly verifyClients: boolean;
  cert: CertInfo;
  private readonly files: PemFiles;
  private readonly server: tls.Server;
  /** Handshakes under way, by the peer's address and port (unique among open connections). */
  private readonly pending = new Map<string, TlsUpgradeListener>();

  constructor(mode: 'allow' | 'require', files: PemFiles) {
    this.mode = mode;
    this.files = files;
    this.verifyClients = files.ca !== '';
    const l = loadContext(files, CLIENT_KEYS);
    this.cert = l.cert!;
    this.server = tls.createServer({ ...l.options, requestCert: this.verifyClients, rejectUnauthorized: false });
    this.server.on('secureConnection', (sock: tls.TLSSocket) => {
      const w = this.take(sock);
      if (w === undefined) sock.destroy();
      else w.onTlsSecure(sock);
    });
    this.server.on('tlsClientError', (err: Error, sock: tls.TLSSocket) => {
      // When the client went away mid-handshake the address may be gone; its session sees the close.
      this.take(sock)?.onTlsError(err);
    });
  }

  /** Read the files again (SIGHUP). On error (ConfigError) the previous certificate stays in use. */
  reload(): CertInfo {
    const l = loadContext(this.files, CLIENT_KEYS);
    this.server.setSecureContext(l.options);
    this.cert = l.cert!;
    return this.cert;
  }

  /**
   * Start the server side of a handshake on an accepted socket that has just been answered 'S'.
   * Returns the key to forget() it by if the connection goes away first.
   */
  upgrade(sock: net.Socket, listener: TlsUpgradeListener): string {
    // A peer already gone has no address; its handshake fails and its session sees the close.
    const k = peerKey(sock);
    if (sock.remoteAddress !== undefined) this.pending.set(k, listener);
    this.server.emit('connection', sock);
    return k;
  }

  /** The connection is gone before its handshake ended: forget it. */
  forget(key: string, listener: TlsUpgradeListener): void {
    if (this.pending.get(key) === listener) this.pending.delete(key);
  }

  private take(sock: tls.TLSSocket): TlsUpgradeListener | undefined {
    if (sock.remoteAddress === undefined) return undefined;
    const k = peerKey(sock);
    const w = this.pending.get(k);
    if (w !== undefined) this.pending.delete(k);
    return w;
  }
}

function peerKey(sock: net.Socket): string {
  return `${sock.remoteAddress}|${sock.remotePort}`;
}

/** The upstream side: libpq's sslmode semantics for the proxy's own connections. */
export class UpstreamTls {
  readonly mode: Exclude<UpstreamTlsMode, 'disable'>;
  /**
   * Verify the certificate chain: verify-ca and verify-full, and also prefer and require when a CA
   * file is given (libpq verifies whenever it finds a root certificate, whatever the sslmode).
   */
  readonly verifyChain: boolean;
  /** verify-full: the certificate must name the upstream host (DNS name, or IP address SAN). */
  readonly verifyHost: boolean;
  context: tls.SecureContext;
  /** The client certificate presented to the upstream, if any. */
  cert: CertInfo | null;
  /** prefer fell back to plaintext once already (the ops log says it once). */
  plaintextNoted = false;
  private readonly files: PemFiles;

  constructor(mode: Exclude<UpstreamTlsMode, 'disable'>, files: PemFiles) {
    this.mode = mode;
    this.files = files;
    this.verifyChain = files.ca !== '' || mode === 'verify-ca' || mode === 'verify-full';
    this.verifyHost = mode === 'verify-full';
    const l = loadContext(files, UPSTREAM_KEYS);
    this.context = l.context;
    this.cert = l.cert;
  }

  /** True when there are files to reload. */
  get hasFiles(): boolean {
    return this.files.ca !== '' || this.files.cert !== '';
  }

  /** Read the files again (SIGHUP). On error (ConfigError) the previous context stays in use. */
  reload(): void {
    const l = loadContext(this.files, UPSTREAM_KEYS);
    this.context = l.context;
    this.cert = l.cert;
  }

  /** The client end of a TLS session over a connected socket whose SSLRequest was answered 'S'. */
  connect(sock: net.Socket, host: string): tls.TLSSocket {
    const opts: tls.ConnectionOptions = {
      socket: sock,
      // The name the certificate is checked against (checkServerIdentity); an IP address is
      // matched against the certificate's IP address SANs.
      host,
      secureContext: this.context,
      rejectUnauthorized: this.verifyChain,
    };
    // SNI carries host names only (libpq's sslsni does the same).
    if (net.isIP(host) === 0) opts.servername = host;
    if (!this.verifyHost) opts.checkServerIdentity = () => undefined;
    return tls.connect(opts);
  }
}

/** Both sides as configured; null where TLS is off. */
export interface TlsSetup {
  client: ClientTls | null;
  upstream: UpstreamTls | null;
}

/** Load the certificates the settings name. Throws ConfigError naming the setting at fault. */
export function loadTls(cfg: TlsConfig): TlsSetup {
  const c = cfg.client;
  const mode = clientTlsMode(c);
  const client = mode === 'disable' ? null : new ClientTls(mode, { cert: c.cert, key: c.key, ca: c.ca });
  const u = cfg.upstream;
  const upstream = u.mode === 'disable' ? null : new UpstreamTls(u.mode, { cert: u.cert, key: u.key, ca: u.ca });
  return { client, upstream };
}

/** How the upstream answered pgscribe's SSLRequest. */
export type Negotiation =
  /** 'S' and a completed handshake: carry on over this socket. */
  | { kind: 'tls'; socket: tls.TLSSocket }
  /** 'N' with upstream-tls prefer: carry on in plaintext over the original socket (paused). */
  | { kind: 'plain' }
  /** 'E': the server sent an ErrorResponse in the clear instead (e.g. too many clients); data starts with it. */
  | { kind: 'error'; data: Buffer }
  /** Anything else; reason says what, for the client's 08001 and the ops log. */
  | { kind: 'failed'; reason: string };

const SSL_REQUEST = encodeSslRequest();
const noop = (): void => {};

/**
 * Send SSLRequest on a socket that is connecting to the upstream and settle what follows, as
 * libpq does: 'S' upgrades (verifying as the mode says), 'N' carries on in plaintext only with
 * prefer, 'E' is the server's error to report. Any byte after the one-byte answer and before the
 * handshake fails the connection (CVE-2021-23222: it would be plaintext injected by someone in
 * the middle, read later as if it came through TLS). `done` is called once; until then the
 * socket's 'data' events are taken here. The sockets keep a no-op 'error' listener, so a late
 * error on a socket nobody uses any more cannot crash the process.
 */
export function negotiateUpstream(sock: net.Socket, host: string, up: UpstreamTls, done: (n: Negotiation) => void): void {
  let settled = false;
  const finish = (n: Negotiation): void => {
    if (settled) return;
    settled = true;
    sock.off('data', onData);
    sock.off('close', onClose);
    done(n);
  };
  const onClose = (): void => finish({ kind: 'failed', reason: 'the server closed the connection during SSL negotiation' });
  const onData = (chunk: Buffer): void => {
    sock.off('data', onData);
    sock.pause();
    const answer = chunk[0]!;
    if (answer === 0x45) {
      // 'E'
      finish({ kind: 'error', data: chunk });
      return;
    }
    if ((answer === 0x53 || answer === 0x4e) && chunk.length > 1) {
      finish({ kind: 'failed', reason: 'received unencrypted data after the SSL response' });
      return;
    }
    if (answer === 0x4e) {
      // 'N'
      finish(up.mode === 'prefer' ? { kind: 'plain' } : { kind: 'failed', reason: `the server does not support SSL, but --upstream-tls ${up.mode} requires it` });
      return;
    }
    if (answer !== 0x53) {
      finish({ kind: 'failed', reason: `received invalid response to SSL negotiation: ${describeType(answer)}` });
      return;
    }
    // 'S'
    sock.off('close', onClose);
    let t: tls.TLSSocket;
    try {
      t = up.connect(sock, host);
    } catch (err) {
      finish({ kind: 'failed', reason: `TLS setup failed: ${message(err)}` });
      return;
    }
    t.on('error', noop);
    t.once('secureConnect', () => finish({ kind: 'tls', socket: t }));
    t.once('error', (err: Error) => finish({ kind: 'failed', reason: `TLS handshake failed: ${err.message}` }));
    t.once('close', () => finish({ kind: 'failed', reason: 'the server closed the connection during the TLS handshake' }));
  };
  sock.on('error', noop);
  sock.on('data', onData);
  sock.on('close', onClose);
  sock.write(SSL_REQUEST);
}
