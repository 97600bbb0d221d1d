/**
 * The log files replay reads, in order, as a stream of lines: a file `F` with rotated siblings
 * (`F.1` newest ... `F.N` oldest, as log-rotate-bytes names them) is read from `F.N` up to `F`.
 * Reading is paused and resumed by the caller, so memory holds one chunk plus what the caller
 * keeps, whatever the files' size.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The files to read for the paths given: each with its rotated siblings, oldest first. */
export function expandRotated(paths: readonly string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    const dir = path.dirname(p);
    const base = path.basename(p);
    const rotated: number[] = [];
    let names: string[] = [];
    try {
      names = fs.readdirSync(dir);
    } catch {
      names = [];
    }
    for (const n of names) {
      if (!n.startsWith(base + '.')) continue;
      const suffix = n.slice(base.length + 1);
      if (/^[1-9][0-9]*$/.test(suffix)) rotated.push(Number(suffix));
    }
    rotated.sort((a, b) => b - a);
    for (const n of rotated) out.push(path.join(dir, `${base}.${n}`));
    out.push(p);
  }
  return out;
}

/** A line longer than this is not a log line pgscribe wrote whole; it is skipped and counted. */
const MAX_LINE = 512 << 20;
const CHUNK = 1 << 20;

export interface LineHandler {
  line(text: string): void;
  /** Every file was read. */
  end(): void;
  /** A file could not be read. */
  error(file: string, err: Error): void;
}

/** Cuts a byte stream into lines (without their newline); a line may span any number of chunks. */
export class LineSplitter {
  private partial: Buffer[] = [];
  private partialLen = 0;
  private overlong = false;
  /** Lines over MAX_LINE, skipped. */
  skippedLong = 0;

  constructor(
    private readonly line: (text: string) => void,
    private readonly maxLine = MAX_LINE,
  ) {}

  push(chunk: Buffer): void {
    let from = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, from);
      if (nl < 0) break;
      if (this.partialLen > 0 || this.overlong) {
        this.keep(chunk.subarray(from, nl));
        this.end();
      } else if (nl > from) this.line(chunk.toString('utf8', from, nl));
      from = nl + 1;
    }
    if (from < chunk.length) this.keep(chunk.subarray(from));
  }

  /** The stream ended: a last line without its newline (a log still being written) is taken as it is. */
  end(): void {
    if (this.overlong) {
      this.overlong = false;
      this.skippedLong++;
      return;
    }
    if (this.partialLen === 0) return;
    const text = Buffer.concat(this.partial, this.partialLen).toString('utf8');
    this.partial = [];
    this.partialLen = 0;
    this.line(text);
  }

  private keep(piece: Buffer): void {
    if (this.overlong) return;
    if (this.partialLen + piece.length > this.maxLine) {
      this.overlong = true;
      this.partial = [];
      this.partialLen = 0;
      return;
    }
    this.partial.push(Buffer.from(piece));
    this.partialLen += piece.length;
  }
}

export class LineReader {
  private index = 0;
  private stream: fs.ReadStream | null = null;
  private paused = false;
  private readonly splitter: LineSplitter;
  /** Bytes read so far. */
  bytes = 0;

  constructor(
    readonly files: readonly string[],
    private readonly handler: LineHandler,
  ) {
    this.splitter = new LineSplitter((text) => handler.line(text));
  }

  /** Lines over 512 MiB, skipped. */
  get skippedLong(): number {
    return this.splitter.skippedLong;
  }

  start(): void {
    this.next();
  }

  pause(): void {
    this.paused = true;
    this.stream?.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.stream?.resume();
  }

  /** Stop reading for good. */
  close(): void {
    this.paused = true;
    this.index = this.files.length;
    this.stream?.destroy();
    this.stream = null;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  private next(): void {
    if (this.index >= this.files.length) {
      this.handler.end();
      return;
    }
    const file = this.files[this.index++]!;
    const s = fs.createReadStream(file, { highWaterMark: CHUNK });
    this.stream = s;
    s.on('data', (chunk: Buffer | string) => {
      this.bytes += chunk.length;
      this.splitter.push(chunk as Buffer);
    });
    s.on('error', (err) => this.handler.error(file, err));
    s.on('end', () => {
      // Each file ends its last line, written whole or not.
      this.splitter.end();
      this.stream = null;
      this.next();
    });
    if (this.paused) s.pause();
  }
}
