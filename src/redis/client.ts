/**
 * A Redis client over one TCP connection, written for the cache layer's needs: RESP2, pipelining
 * (every command issued in one event loop turn goes out in one write), AUTH and SELECT on each
 * connect, reconnect with capped exponential backoff, a timeout per command, and bounds on what
 * may wait (commands, bytes). Failures are values passed to the callback, never exceptions: the
 * caller decides what a failed command means (for the cache: a miss).
 *
 * Replies match commands by order (RESP has no ids). A command that times out stays in the FIFO
 * with its callback spent, so that its late reply is matched and dropped instead of shifting
 * every later reply onto the wrong command. When no reply has come for STALL_RESET_MS the
 * connection is given up and opened again (a blackholed link, a server that stopped reading).
 *
 * With `isPush` (a subscriber connection), replies it recognises (`message` arrays) go to onPush
 * instead of the FIFO.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { Fifo } from '../fifo';
import { RespParser, RespProtocolError, RespError, encodeCommand, type RespValue } from './resp';

export type RedisArg = string | Buffer;

/** Why a command got no reply. */
export type RedisFailureCode =
  /** No reply within the command timeout (the server is slow, stopped, or the link is lost). */
  | 'timeout'
  /** Not connected (connecting, reconnecting after a failure, or closed). */
  | 'unavailable'
  /** Too many commands or bytes already waiting. */
  | 'queue-full'
  /** The server answered with an error reply. */
  | 'error'
  /** The connection was lost (or reset by this client) before the reply came. */
  | 'disconnected';

export class RedisFailure {
  constructor(
    readonly code: RedisFailureCode,
    readonly message: string,
  ) {}
}

export type RedisCallback = (failure: RedisFailure | null, reply: RespValue) => void;

/** What the cache layer sees of Redis: commands and their answers, no sockets. */
export interface RedisLink {
  /** Send a command; cb runs exactly once, never synchronously inside call(). */
  call(args: readonly RedisArg[], cb: RedisCallback): void;
  /** Connected and past AUTH/SELECT. */
  readonly ready: boolean;
}

export interface RedisClientOptions {
  host: string;
  port: number;
  /** AUTH password ('' for none). */
  password: string;
  /** ACL user name for AUTH ('' for the default user). */
  user: string;
  /** SELECT this database on connect (0: none sent). */
  db: number;
  /** TLS (tls.connect options; null or absent: plaintext). */
  tls?: tls.ConnectionOptions | null;
  /** Per-command timeout, ms. */
  timeoutMs: number;
  /** Most commands waiting for a reply; more fail with queue-full. Default 4096. */
  maxPending?: number;
  /** Most bytes buffered for the socket; more fail with queue-full. Default 32 MiB. */
  maxBufferedBytes?: number;
  /** Connect (TCP plus AUTH/SELECT) timeout, ms. Default max(1000, 4 x timeoutMs). */
  connectTimeoutMs?: number;
  /** Largest bulk string accepted in a reply. Default 512 MiB (Redis's own bound). */
  maxBulkBytes?: number;
  /** Replies that are not answers to commands (pub/sub messages). */
  isPush?: (v: RespValue) => boolean;
  onPush?: (v: RespValue) => void;
  /** Connected, authenticated, database selected. */
  onReady?: () => void;
  /** The connection is down (after being ready, or an attempt failed): why, for the operator. */
  onDown?: (reason: string) => void;
}

/** Reconnect delays: 100 ms doubling up to 2 s, each with +-20% jitter. */
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 2000;
/** Oldest unanswered command this old: the connection is given up and reopened. */
const STALL_RESET_MS = 5000;

interface Pending {
  cb: RedisCallback | null;
  deadline: number;
}

export class RedisClient implements RedisLink {
  private readonly opts: RedisClientOptions;
  private readonly maxPending: number;
  private readonly maxBufferedBytes: number;
  private readonly connectTimeoutMs: number;
  private sock: net.Socket | null = null;
  private readonly parser: RespParser;
  /** Commands sent, in order, until their reply comes (timed-out ones too: their reply is still due). */
  private readonly pending = new Fifo<Pending>();
  /** How many at the head of `pending` have timed out already (deadlines grow along the queue). */
  private expired = 0;
  /** Encoded commands waiting for the end of this event loop turn. */
  private out: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  private isReady = false;
  private closed = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private connectTimer: NodeJS.Timeout | null = null;
  private timeoutTimer: NodeJS.Timeout | null = null;
  private timeoutAt = 0;
  /** Runs while a reply is partly read (watchStall). */
  private stallTimer: NodeJS.Timeout | null = null;
  /** Whole replies read on any connection so far. */
  private repliesRead = 0;
  /** The reason given for the connection going down, once per connection. */
  private downReported = false;

  constructor(opts: RedisClientOptions) {
    this.opts = opts;
    this.maxPending = opts.maxPending ?? 4096;
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 32 << 20;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? Math.max(1000, 4 * opts.timeoutMs);
    const maxBulkBytes = opts.maxBulkBytes ?? 512 << 20;
    // A reply holds one entry and a few small values (MGET of a value and its generations).
    this.parser = new RespParser((v) => this.onReply(v), { maxBulkBytes, maxReplyBytes: maxBulkBytes + (1 << 20) });
  }

  get ready(): boolean {
    return this.isReady;
  }

  /** Where it connects, for messages. */
  get address(): string {
    const h = this.opts.host;
    return `${h.includes(':') ? `[${h}]` : h}:${this.opts.port}`;
  }

  /** Commands sent and not answered yet (timed-out ones included until their reply comes). */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Open the connection (and keep reopening it until close()). */
  connect(): void {
    if (this.closed || this.sock !== null || this.reconnectTimer !== null) return;
    this.open();
  }

  call(args: readonly RedisArg[], cb: RedisCallback): void {
    if (!this.isReady) {
      later(cb, new RedisFailure('unavailable', this.closed ? 'the Redis client is closed' : `not connected to Redis at ${this.address}`));
      return;
    }
    if (this.pending.size >= this.maxPending) {
      later(cb, new RedisFailure('queue-full', `${this.pending.size} Redis commands already wait for a reply`));
      return;
    }
    const buffered = this.outBytes + (this.sock?.writableLength ?? 0);
    if (buffered >= this.maxBufferedBytes) {
      later(cb, new RedisFailure('queue-full', `${buffered} bytes already wait to be sent to Redis`));
      return;
    }
    this.enqueue(encodeCommand(args), cb, performance.now() + this.opts.timeoutMs);
  }

  /** Stop for good: the connection closes, every waiting command fails with 'unavailable'. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.isReady = false;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.clearConnectTimer();
    const s = this.sock;
    this.sock = null;
    if (s !== null) {
      s.removeAllListeners();
      s.on('error', () => {});
      s.destroy();
    }
    this.failAll(new RedisFailure('unavailable', 'the Redis client is closed'));
  }

  // ---- connection --------------------------------------------------------------------------

  private open(): void {
    const secure = this.opts.tls ?? null;
    const s: net.Socket = secure === null ? net.connect({ host: this.opts.host, port: this.opts.port }) : tls.connect({ ...secure, host: this.opts.host, port: this.opts.port });
    this.sock = s;
    this.downReported = false;
    s.setNoDelay(true);
    s.setKeepAlive(true, 10_000);
    this.connectTimer = setTimeout(() => {
      this.connectTimer = null;
      this.drop(`no connection within ${this.connectTimeoutMs} ms`);
    }, this.connectTimeoutMs);
    // Over TLS, nothing goes out before the handshake checked the server (AUTH carries a password).
    s.on(secure === null ? 'connect' : 'secureConnect', () => this.handshake());
    s.on('data', (chunk: Buffer) => this.onData(chunk));
    s.on('error', (err: NodeJS.ErrnoException) => this.drop(err.code ?? err.message));
    s.on('close', () => this.drop('connection closed by the server'));
  }

  /** AUTH and SELECT go first; the client is ready when both are answered OK. */
  private handshake(): void {
    const steps: RedisArg[][] = [];
    if (this.opts.password !== '') steps.push(this.opts.user !== '' ? ['AUTH', this.opts.user, this.opts.password] : ['AUTH', this.opts.password]);
    if (this.opts.db !== 0) steps.push(['SELECT', String(this.opts.db)]);
    if (steps.length === 0) {
      this.becomeReady();
      return;
    }
    let left = steps.length;
    const deadline = performance.now() + this.connectTimeoutMs;
    for (const args of steps) {
      this.enqueue(
        encodeCommand(args),
        (f, reply) => {
          if (f !== null) {
            // An error reply to AUTH or SELECT: nothing will work on this connection.
            const what = args[0] === 'AUTH' ? 'AUTH' : `SELECT ${this.opts.db}`;
            this.drop(`${what} failed: ${f.message}${f.code === 'error' && args[0] === 'AUTH' ? ' (check --redis-password and --redis-user)' : ''}`, true);
            return;
          }
          if (reply instanceof RespError) return; // (errors come as failures)
          if (--left === 0) this.becomeReady();
        },
        deadline,
      );
    }
  }

  private becomeReady(): void {
    this.clearConnectTimer();
    if (this.sock === null) return;
    this.isReady = true;
    this.attempt = 0;
    this.opts.onReady?.();
  }

  /**
   * The connection is gone (reason for the operator). Waiting commands fail; a new connection
   * is tried after the backoff (the longest one when `hard`: AUTH or SELECT was refused).
   */
  private drop(reason: string, hard = false): void {
    const s = this.sock;
    if (s === null) return;
    this.sock = null;
    this.isReady = false;
    this.clearConnectTimer();
    s.removeAllListeners();
    s.on('error', () => {});
    s.destroy();
    this.parser.reset();
    if (this.stallTimer !== null) {
      clearTimeout(this.stallTimer);
      this.stallTimer = null;
    }
    this.out = [];
    this.outBytes = 0;
    this.failAll(new RedisFailure('disconnected', `Redis connection lost: ${reason}`));
    if (!this.downReported) {
      this.downReported = true;
      this.opts.onDown?.(reason);
    }
    if (this.closed) return;
    const base = hard ? BACKOFF_MAX_MS : Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt++;
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.closed) this.open();
    }, delay);
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    this.connectTimer = null;
  }

  private failAll(f: RedisFailure): void {
    if (this.timeoutTimer !== null) clearTimeout(this.timeoutTimer);
    this.timeoutTimer = null;
    this.expired = 0;
    for (const p of this.pending.drain()) {
      const cb = p.cb;
      p.cb = null;
      if (cb !== null) cb(f, null);
    }
  }

  // ---- commands and replies ------------------------------------------------------------------

  private enqueue(cmd: Buffer, cb: RedisCallback, deadline: number): void {
    this.pending.push({ cb, deadline });
    this.out.push(cmd);
    this.outBytes += cmd.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
    this.armTimeout();
  }

  /** Everything issued during this event loop turn, in one write. */
  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.out.length === 0 || this.sock === null) return;
    const data = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out, this.outBytes);
    this.out = [];
    this.outBytes = 0;
    this.sock.write(data);
  };

  private onData(chunk: Buffer): void {
    try {
      this.parser.push(chunk);
    } catch (err) {
      if (!(err instanceof RespProtocolError)) throw err;
      this.drop(`invalid reply from Redis: ${err.message}`);
      return;
    }
    this.watchStall();
  }

  /**
   * A reply begun must end within the connect timeout. The command timeout covers replies a
   * command waits for; this also covers a subscriber connection, which waits for none, and
   * whose server could otherwise trickle one endless reply into memory.
   */
  private watchStall(): void {
    if (this.parser.atBoundary) {
      if (this.stallTimer !== null) {
        clearTimeout(this.stallTimer);
        this.stallTimer = null;
      }
      return;
    }
    if (this.stallTimer !== null) return;
    const sock = this.sock;
    // Under steady pipelined traffic a read may end inside a reply every time: what counts is
    // whether any reply completed meanwhile.
    const mark = this.repliesRead;
    this.stallTimer = setTimeout(() => {
      this.stallTimer = null;
      if (this.sock !== sock || this.parser.atBoundary) return;
      if (this.repliesRead !== mark) this.watchStall();
      else this.drop(`a reply from Redis stalled: not complete within ${this.connectTimeoutMs} ms`);
    }, this.connectTimeoutMs);
    this.stallTimer.unref();
  }

  private onReply(v: RespValue): void {
    this.repliesRead++;
    if (this.opts.isPush !== undefined && this.opts.isPush(v)) {
      this.opts.onPush?.(v);
      return;
    }
    const p = this.pending.shift();
    if (p === undefined) {
      this.drop('a reply came for no command');
      return;
    }
    if (this.expired > 0) this.expired--;
    const cb = p.cb;
    p.cb = null;
    if (cb === null) return; // timed out: its late reply is dropped
    if (v instanceof RespError) cb(new RedisFailure('error', v.message), v);
    else cb(null, v);
  }

  private armTimeout(): void {
    const next = this.pending.at(this.expired)?.deadline;
    if (next === undefined) return;
    if (this.timeoutTimer !== null) {
      if (this.timeoutAt <= next) return;
      clearTimeout(this.timeoutTimer);
    }
    this.timeoutAt = next;
    this.timeoutTimer = setTimeout(this.onTimeout, Math.max(1, Math.ceil(next - performance.now())));
  }

  private readonly onTimeout = (): void => {
    this.timeoutTimer = null;
    const now = performance.now();
    const f = new RedisFailure('timeout', `no reply from Redis within ${this.opts.timeoutMs} ms`);
    for (let p = this.pending.at(this.expired); p !== undefined && p.deadline <= now; p = this.pending.at(this.expired)) {
      this.expired++;
      const cb = p.cb;
      p.cb = null;
      if (cb !== null) cb(f, null);
    }
    const oldest = this.pending.at(0)?.deadline;
    if (oldest !== undefined && now - oldest > STALL_RESET_MS) {
      this.drop(`no reply for ${Math.round(now - oldest + this.opts.timeoutMs)} ms`);
      return;
    }
    this.armTimeout();
    // Keep watching a stalled connection even when nothing new is sent.
    if (this.timeoutTimer === null && oldest !== undefined && this.sock !== null) {
      this.timeoutAt = oldest + STALL_RESET_MS + 1;
      this.timeoutTimer = setTimeout(this.onTimeout, Math.max(1, Math.ceil(this.timeoutAt - now)));
    }
  };
}

/** Run cb on the next tick: call() never calls back from inside itself. */
function later(cb: RedisCallback, f: RedisFailure): void {
  process.nextTick(cb, f, null);
}
