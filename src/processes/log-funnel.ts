/**
 * The one query log of --processes N: each serving process writes its lines into a pipe of its
 * own (ipc.ts LOG_PIPE_FD, through the same FdSink as a file), and the primary copies them into
 * the one file, whole lines at a time.
 *
 * Why a funnel and not N appenders on one O_APPEND file: an append is whole only when the write is
 * whole, and a write cut short by a full disk leaves the rest for a retry that another process's
 * lines may precede, splitting a line. Through the funnel only the primary writes the file, so
 * the single-writer FdSink rules hold unchanged (nothing dropped, nothing split, order kept), and
 * SIGHUP reopens one file in one place.
 *
 * - A pipe's bytes are cut after their last newline; the rest waits for the next read. Each pipe
 *   carries one process's lines in its order, so each session's lines keep their order.
 * - Backpressure: when the file's sink is over its high-water mark, every pipe is paused until it
 *   drains. The pipes then fill, the processes' own sinks queue, and their clients pause: the
 *   rule of one process, end to end.
 * - A process killed in the middle of a write can leave a partial last line: it is not written
 *   (the file stays line-whole) and is reported with its size.
 */
import type { Readable } from 'node:stream';
import type { FdSink } from '../log/fd-sink';

const NEWLINE = 0x0a;

export interface FunnelEvents {
  /** Process `index`'s pipe ended with `bytes` after its last newline (it died mid-line): dropped. */
  onPartialLine(index: number, bytes: number): void;
}

interface Pipe {
  index: number;
  stream: Readable;
  /** Bytes after the last newline so far, in arrival order. */
  tail: Buffer[];
  tailBytes: number;
  ended: Promise<void>;
}

export class LogFunnel {
  private readonly pipes = new Set<Pipe>();
  private paused = false;
  /** Lines handed to the sink. */
  private linesWritten = 0;

  constructor(
    private readonly sink: Pick<FdSink, 'writeBytes' | 'onDrain'>,
    private readonly events: FunnelEvents,
  ) {}

  /** Lines written to the sink so far (whole lines only). */
  get lines(): number {
    return this.linesWritten;
  }

  /** Copy process `index`'s lines from `stream` until it ends. */
  add(index: number, stream: Readable): void {
    let done!: () => void;
    const p: Pipe = { index, stream, tail: [], tailBytes: 0, ended: new Promise<void>((r) => (done = r)) };
    this.pipes.add(p);
    stream.on('data', (chunk: Buffer) => this.onData(p, chunk));
    const finish = () => {
      if (!this.pipes.delete(p)) return;
      if (p.tailBytes > 0) this.events.onPartialLine(index, p.tailBytes);
      done();
    };
    stream.on('end', finish);
    stream.on('close', finish);
    stream.on('error', () => finish());
    if (this.paused) stream.pause();
  }

  /** Resolves when every pipe added so far has ended (their processes have exited). */
  async ended(): Promise<void> {
    await Promise.all([...this.pipes].map((p) => p.ended));
  }

  private onData(p: Pipe, chunk: Buffer): void {
    const last = chunk.lastIndexOf(NEWLINE);
    if (last < 0) {
      p.tail.push(chunk);
      p.tailBytes += chunk.length;
      return;
    }
    let whole = chunk.subarray(0, last + 1);
    if (p.tailBytes > 0) {
      whole = Buffer.concat([...p.tail, whole]);
      p.tail = [];
      p.tailBytes = 0;
    }
    if (last + 1 < chunk.length) {
      p.tail.push(chunk.subarray(last + 1));
      p.tailBytes = chunk.length - last - 1;
    }
    this.linesWritten += countLines(whole);
    if (!this.sink.writeBytes(whole) && !this.paused) this.pause();
  }

  private pause(): void {
    this.paused = true;
    for (const p of this.pipes) p.stream.pause();
    this.sink.onDrain(() => {
      this.paused = false;
      for (const p of this.pipes) p.stream.resume();
    });
  }
}

function countLines(b: Buffer): number {
  let n = 0;
  for (let i = b.indexOf(NEWLINE); i >= 0; i = b.indexOf(NEWLINE, i + 1)) n++;
  return n;
}
