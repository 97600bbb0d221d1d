// A TCP relay for fault injection (issue 15, part 3): it listens on a free port, connects each
// client it accepts to a target (PostgreSQL, redis-server) and forwards the bytes both ways, and
// on command it adds latency, stalls (holding what it has), resets, half-closes, forwards one byte
// per write, or refuses new connections. PgBouncer's test/utils.py does the same with iptables and
// tc; a relay in the test process needs no privileges and can time a fault to the message.
//
// Each connection is two pipes (client -> target, target -> client), each a queue of chunks
// stamped with the time they may leave. A pipe pumps its queue into the other socket unless the
// relay is stalled in its direction; it stops reading its source while its queue is long, so a
// stall holds bytes without buffering without bound. Both sockets allow half-open connections,
// so that an end() from either side is passed on as an end(), not turned into a close.

import * as net from 'node:net';

/** toTarget: what the client sends; toClient: what the target answers. */
export type Direction = 'toTarget' | 'toClient' | 'both';

export interface ChaosCounts {
  /** Connections accepted and forwarded. */
  accepted: number;
  /** Connections open now (either side not yet closed). */
  active: number;
  /** Connections refused by dropNewConnections (reset as soon as accepted). */
  dropped: number;
  /** Connections reset by resetAll. */
  reset: number;
  /** Connections half-closed by halfCloseAll. */
  halfClosed: number;
  /** Writes made to either side (one per byte while oneByteWrites is on). */
  writes: number;
}

export interface ChaosRelay {
  readonly host: string;
  readonly port: number;
  /** Every chunk waits this long before it is forwarded (0: none); order is kept. */
  setLatency(ms: number): void;
  /** Stop forwarding in one or both directions; bytes received meanwhile are held. */
  stall(direction?: Direction): void;
  /** Forward again, held bytes first. */
  resume(): void;
  /** RST both sockets of every open connection (socket.resetAndDestroy()). */
  resetAll(): void;
  /**
   * end() one side of every open connection: toTarget ends the socket to the target (it reads
   * EOF, as if the client had shut down its writing side), toClient the socket to the client.
   */
  halfCloseAll(direction: Exclude<Direction, 'both'>): void;
  /** Forward byte by byte, each byte its own write in its own event loop turn. */
  oneByteWrites(on: boolean): void;
  /** Reset new connections at once instead of forwarding them. */
  dropNewConnections(on: boolean): void;
  /**
   * Do not pass on an end() (a FIN) while on: the peer sees the connection open after the last
   * bytes, so that a test can act between a server's last message and its close.
   */
  holdEnds(on: boolean): void;
  counts(): ChaosCounts;
  /** Back to plain forwarding: no latency, stall, one-byte writes, drops or held ends. */
  heal(): void;
  /** Stop listening and destroy every connection. */
  close(): Promise<void>;
}

/** A pipe's queue this long (bytes): stop reading its source until it drains. */
const HIGH_WATER = 256 * 1024;

interface Chunk {
  bytes: Buffer;
  /** performance.now() at which it may be forwarded. */
  at: number;
}

class Pipe {
  readonly queue: Chunk[] = [];
  queued = 0;
  /** The source ended: end the destination once the queue is empty. */
  eof = false;
  /** The destination was ended or destroyed: nothing more goes through. */
  done = false;
  private timer: NodeJS.Timeout | null = null;
  /** A one-byte write's next turn is pending: the next byte goes then. */
  private scheduled = false;
  /** The destination's buffer is full: wait for its 'drain'. */
  private draining = false;

  constructor(
    private readonly relay: Relay,
    readonly direction: 'toTarget' | 'toClient',
    readonly src: net.Socket,
    readonly dst: net.Socket,
  ) {}

  push(b: Buffer): void {
    if (this.done) return;
    this.queue.push({ bytes: b, at: performance.now() + this.relay.latencyMs });
    this.queued += b.length;
    if (this.queued > HIGH_WATER) this.src.pause();
    this.pump();
  }

  end(): void {
    this.eof = true;
    this.pump();
  }

  /** Forward what may go now; schedules itself for what must wait. */
  pump = (): void => {
    if (this.scheduled || this.draining) return;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.done || this.relay.stalled(this.direction) || this.dst.destroyed) return;
    // A socket still connecting queues writes itself; the target's 'connect' pumps again.
    if (this.dst.connecting) return;
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const wait = head.at - performance.now();
      if (wait > 0) {
        this.timer = setTimeout(this.pump, Math.ceil(wait));
        return;
      }
      if (this.relay.oneByte) {
        this.write(head.bytes.subarray(0, 1));
        head.bytes = head.bytes.subarray(1);
        this.queued--;
        if (head.bytes.length === 0) this.queue.shift();
        // The next byte in another turn, so that the peer can read each one on its own.
        this.later();
        this.resumeSource();
        return;
      }
      this.queue.shift();
      this.queued -= head.bytes.length;
      if (!this.write(head.bytes)) {
        this.draining = true;
        this.dst.once('drain', this.drained);
        this.resumeSource();
        return;
      }
    }
    this.resumeSource();
    if (this.eof && !this.done && !this.relay.endsHeld) {
      this.done = true;
      this.dst.end();
    }
  };

  private write(b: Buffer): boolean {
    this.relay.writes++;
    return this.dst.write(b);
  }

  private later(): void {
    this.scheduled = true;
    setImmediate(this.tick);
  }

  private readonly tick = (): void => {
    this.scheduled = false;
    this.pump();
  };

  private readonly drained = (): void => {
    this.draining = false;
    this.pump();
  };

  private resumeSource(): void {
    if (this.queued <= HIGH_WATER / 2 && !this.src.destroyed) this.src.resume();
  }

  /** The destination is gone: drop what waits. */
  kill(): void {
    this.done = true;
    this.queue.length = 0;
    this.queued = 0;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

class Connection {
  readonly up: Pipe;
  readonly down: Pipe;
  private closedSides = 0;

  constructor(
    private readonly relay: Relay,
    readonly client: net.Socket,
    readonly target: net.Socket,
  ) {
    this.up = new Pipe(relay, 'toTarget', client, target);
    this.down = new Pipe(relay, 'toClient', target, client);
    client.setNoDelay(true);
    target.setNoDelay(true);
    target.on('connect', () => this.up.pump());
    this.wire(client, this.up, this.down, target);
    this.wire(target, this.down, this.up, client);
  }

  /** src feeds `from`; `into` writes to src; other is the far socket. */
  private wire(src: net.Socket, from: Pipe, into: Pipe, other: net.Socket): void {
    src.on('data', (b: Buffer) => from.push(b));
    src.on('end', () => from.end());
    src.on('error', (err: NodeJS.ErrnoException) => {
      // A reset from one side is passed on as a reset, as a router would let it through.
      if (err.code === 'ECONNRESET' && !other.destroyed) other.resetAndDestroy();
    });
    src.on('close', () => {
      into.kill();
      // Fully closed with bytes still to forward from it: they go, then the far side ends.
      if (from.queue.length === 0 && !from.eof) from.end();
      if (++this.closedSides === 2) this.relay.forget(this);
    });
  }

  reset(): void {
    this.up.kill();
    this.down.kill();
    if (!this.client.destroyed) this.client.resetAndDestroy();
    if (!this.target.destroyed) this.target.resetAndDestroy();
  }

  halfClose(direction: 'toTarget' | 'toClient'): void {
    const pipe = direction === 'toTarget' ? this.up : this.down;
    if (pipe.done) return;
    pipe.kill();
    pipe.dst.end();
  }

  destroy(): void {
    this.up.kill();
    this.down.kill();
    this.client.destroy();
    this.target.destroy();
  }
}

class Relay implements ChaosRelay {
  readonly host = '127.0.0.1';
  port = 0;
  latencyMs = 0;
  oneByte = false;
  endsHeld = false;
  writes = 0;
  private stalledUp = false;
  private stalledDown = false;
  private dropping = false;
  private readonly conns = new Set<Connection>();
  private accepted = 0;
  private dropped = 0;
  private resets = 0;
  private halfClosed = 0;
  readonly server: net.Server;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (client) => this.accept(client));
  }

  private accept(client: net.Socket): void {
    client.on('error', () => {});
    if (this.dropping) {
      this.dropped++;
      client.resetAndDestroy();
      return;
    }
    this.accepted++;
    const target = net.connect({ host: this.targetHost, port: this.targetPort, allowHalfOpen: true });
    target.on('error', () => {});
    this.conns.add(new Connection(this, client, target));
  }

  stalled(d: 'toTarget' | 'toClient'): boolean {
    return d === 'toTarget' ? this.stalledUp : this.stalledDown;
  }

  forget(c: Connection): void {
    this.conns.delete(c);
  }

  private pumpAll(): void {
    for (const c of this.conns) {
      c.up.pump();
      c.down.pump();
    }
  }

  setLatency(ms: number): void {
    this.latencyMs = ms;
  }

  stall(direction: Direction = 'both'): void {
    if (direction !== 'toClient') this.stalledUp = true;
    if (direction !== 'toTarget') this.stalledDown = true;
  }

  resume(): void {
    this.stalledUp = false;
    this.stalledDown = false;
    this.pumpAll();
  }

  resetAll(): void {
    for (const c of [...this.conns]) {
      this.resets++;
      c.reset();
    }
  }

  halfCloseAll(direction: 'toTarget' | 'toClient'): void {
    for (const c of this.conns) {
      this.halfClosed++;
      c.halfClose(direction);
    }
  }

  oneByteWrites(on: boolean): void {
    this.oneByte = on;
    if (!on) this.pumpAll();
  }

  dropNewConnections(on: boolean): void {
    this.dropping = on;
  }

  holdEnds(on: boolean): void {
    this.endsHeld = on;
    if (!on) this.pumpAll();
  }

  counts(): ChaosCounts {
    return { accepted: this.accepted, active: this.conns.size, dropped: this.dropped, reset: this.resets, halfClosed: this.halfClosed, writes: this.writes };
  }

  heal(): void {
    this.latencyMs = 0;
    this.dropping = false;
    this.oneByte = false;
    this.endsHeld = false;
    this.resume();
  }

  close(): Promise<void> {
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** A relay on 127.0.0.1 (a port of its own) in front of targetHost:targetPort. */
export async function startChaosRelay(targetPort: number, targetHost = '127.0.0.1'): Promise<ChaosRelay> {
  const r = new Relay(targetHost, targetPort);
  await new Promise<void>((resolve, reject) => {
    r.server.once('error', reject);
    r.server.listen(0, '127.0.0.1', () => resolve());
  });
  r.port = (r.server.address() as net.AddressInfo).port;
  return r;
}
