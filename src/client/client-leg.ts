/**
 * A session's connection to its client: the accepted socket, or the TLS session over it once the
 * handshake is done, and why it is not being read (flow control). The session relays through it;
 * the startup phase hands it to TLS and back.
 */
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import { adoptAccepted } from '../net/adopt';
import type { Outbox } from '../outbox';

/** Reasons the client is not read (bit flags): reading resumes when none is left. */
export const Pause = {
  /** The upstream socket's buffer is full. */
  UpstreamFull: 1,
  /** The query log's writer is behind. */
  LogFull: 2,
  /** The upstream connection is being opened. */
  Connecting: 4,
  /** The cache decides on a held request. */
  CacheWait: 8,
  /** The client's own socket buffer is full (what the proxy answered itself waits). */
  ClientFull: 16,
  /** Another process decides whether the session fits under max-connections (--processes N). */
  Admission: 32,
  /** A query waits for its rate limit's token (src/limits/rate-gate.ts). */
  RateLimit: 64,
} as const;
export type Pause = (typeof Pause)[keyof typeof Pause];

/** What the leg tells its session. */
export interface ClientLegEvents {
  onClientData(chunk: Buffer): void;
  /**
   * A read into the leg's reused buffer (reading in place): onClientData, then whether anything
   * still holds a view of chunk (the next read then goes to a fresh buffer).
   */
  onClientRead(chunk: Buffer): boolean;
  onClientDrain(): void;
  onClientError(err: NodeJS.ErrnoException): void;
  onClientClose(): void;
}

const noop = (): void => {};

export class ClientLeg {
  /** The client connection: the accepted socket, or the TLS session over it. */
  socket: net.Socket;
  /** The accepted socket (its 'close' ends the session, TLS or not). */
  private readonly raw: net.Socket;
  /** Why reading is paused (Pause bits; 0: reading). */
  private paused = 0;
  // The listeners, kept by name to move data, drain and error to the TLS session.
  private readonly onData: (chunk: Buffer) => void;
  private readonly onDrain: () => void;
  private readonly onError: (err: NodeJS.ErrnoException) => void;

  /**
   * inPlace: the socket was accepted paused (pauseOnConnect) and is read into one reused buffer
   * (src/net/reused-reads.ts); it can then never carry TLS, whose handshake reads the socket itself.
   */
  constructor(accepted: net.Socket, events: ClientLegEvents, inPlace = false) {
    const socket = inPlace ? adoptAccepted(accepted, (chunk) => events.onClientRead(chunk)) : accepted;
    this.socket = socket;
    this.raw = socket;
    this.onData = (chunk) => events.onClientData(chunk);
    this.onDrain = () => events.onClientDrain();
    this.onError = (err) => events.onClientError(err);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    if (!inPlace) socket.on('data', this.onData);
    socket.on('drain', this.onDrain);
    socket.on('error', this.onError);
    socket.on('close', () => events.onClientClose());
  }

  /** The client's address, host:port. */
  get address(): string {
    const addr = this.raw.remoteAddress;
    if (addr === undefined) return 'unknown';
    const a = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
    return a.includes(':') ? `[${a}]:${this.raw.remotePort}` : `${a}:${this.raw.remotePort}`;
  }

  write(bytes: Buffer, done?: (err?: Error | null) => void): void {
    this.socket.write(bytes, done);
  }

  /** Write what out holds; false when the client is slow (its socket buffer is full). */
  flush(out: Outbox): boolean {
    return out.flush(this.socket);
  }

  /** The socket can take a last message. */
  get writable(): boolean {
    return !this.socket.destroyed && this.socket.writable;
  }

  /**
   * Add or remove a reason not to read the client. mayResume: false once the session is closing
   * (what the client still sends is drained and discarded by close()).
   */
  setPaused(reason: Pause, on: boolean, mayResume: boolean): void {
    const before = this.paused;
    this.paused = on ? before | reason : before & ~reason;
    if (before === 0 && this.paused !== 0) this.socket.pause();
    else if (before !== 0 && this.paused === 0 && mayResume) this.socket.resume();
  }

  /** Stop reading now, whatever the reasons say (an SSLRequest was answered 'S'). */
  stopReading(): void {
    this.socket.pause();
  }

  /** Hand the accepted socket to TLS: from here the TLS session reads it (and takes what it already buffered). */
  releaseRaw(): net.Socket {
    const raw = this.raw;
    // The accepted socket keeps only its 'close', which also comes when the TLS session closes.
    raw.off('data', this.onData);
    raw.off('drain', this.onDrain);
    raw.off('error', this.onError);
    raw.on('error', noop);
    return raw;
  }

  /** The TLS session carries the client from now on (listen: start reading it). */
  useTls(sock: tls.TLSSocket, listen: boolean): void {
    this.socket = sock;
    sock.on('error', this.onError);
    if (!listen) return;
    sock.on('data', this.onData);
    sock.on('drain', this.onDrain);
  }

  /**
   * The session is over: end the connection, drain and discard what the client still sends, and
   * destroy it after lingerMs (the client's time to read its last ErrorResponse).
   * midHandshake: the TLS handshake is abandoned: close the connection under it at once.
   */
  close(midHandshake: boolean, lingerMs: number): void {
    const sock = this.socket;
    if (midHandshake) {
      this.raw.destroy();
    } else if (!sock.destroyed) {
      sock.end();
      sock.resume();
      setTimeout(() => sock.destroy(), lingerMs).unref();
    }
  }

  destroy(): void {
    this.socket.destroy();
    this.raw.destroy();
  }
}
