/**
 * What the fuzzers (protocol.ts, upstream.ts, redis.ts, admin-http.ts) and their long-run entry
 * points (bench/fuzz-*.ts) have in common: the run options the protocol and upstream fuzzers
 * take, a finding, the RSS sampler of the oracle's memory bound, and the environment knobs and
 * result file of a `make fuzz*` run, and the valid session whose answers are checked throughout.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { rssBytes } from '../../test/harness/proc';
import { prng } from '../../test/harness/prng';
import { RawClient, enc, errorsIn, value } from '../../test/harness/wire';

/** A fuzz run with fuzzed connections beside valid sessions (protocol.ts, upstream.ts). */
export interface FuzzRunOptions {
  durationS: number;
  seed: number;
  /** Fuzzed connections at once. */
  concurrency: number;
  /** Valid sessions checking their answers meanwhile. */
  validSessions: number;
  /** Extra pgscribe flags (for the main pgscribe, where a fuzzer runs several). */
  args: string[];
  /** Replay one case (its seed) instead of a run. */
  only?: number;
  log(line: string): void;
}

/** A case the oracle failed: its seed replays it. */
export interface FuzzFinding<K extends string> {
  seed: number;
  kind: K;
  what: string;
  problem: string;
}

/** pid's RSS at the start and its peak, sampled every 200 ms until stop(). */
export class RssSampler {
  readonly startBytes: number;
  private peak: number;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number) {
    this.startBytes = rssBytes(pid) ?? 0;
    this.peak = this.startBytes;
    this.timer = setInterval(() => this.sample(), 200);
  }

  get maxBytes(): number {
    return this.peak;
  }

  /** The RSS now (also counted in the peak). */
  sample(): number {
    const now = rssBytes(this.pid) ?? 0;
    this.peak = Math.max(this.peak, now);
    return now;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** A numeric knob from the environment (a `make fuzz*` variable), or its default. */
export function envNumber(name: string, fallback: number): number {
  return process.env[name] === undefined ? fallback : Number(process.env[name]);
}

/** The knobs every long run reads: SEED (default: from the clock), FUZZ_ONLY, RSS_BOUND_MB (256), PGSCRIBE_ARGS. */
export function runKnobs(): { seed: number; only: number | undefined; rssBoundBytes: number; args: string[] } {
  return {
    seed: envNumber('SEED', Date.now() % 1_000_000),
    only: process.env['FUZZ_ONLY'] === undefined ? undefined : Number(process.env['FUZZ_ONLY']),
    rssBoundBytes: envNumber('RSS_BOUND_MB', 256) * 2 ** 20,
    args: (process.env['PGSCRIBE_ARGS'] ?? '').split(' ').filter((a) => a !== ''),
  };
}

/** Write a long run's result as logs/<name>-<time>.json; returns the file. */
export function writeFuzzResult(name: string, out: unknown): string {
  const file = path.join('logs', `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.mkdirSync('logs', { recursive: true });
  fs.writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  return file;
}

/**
 * A valid session asking `select n::int + 1` in the simple and the extended protocol until stop(),
 * checking each answer (pick: the n of each round, from the session's own PRNG). A wrong answer, or
 * the session failing before stop(), goes to `wrong`.
 */
export async function validLoop(
  port: number,
  user: string,
  seed: number,
  stop: () => boolean,
  wrong: string[],
  counted: () => void,
  pick: (r: () => number) => number,
): Promise<void> {
  const r = prng(seed);
  let c: RawClient | null = null;
  try {
    c = await RawClient.connect(port);
    await c.startup(user);
    while (!stop()) {
      const n = pick(r);
      const simple = await c.query(`select ${n}::int + 1`);
      if (value(simple) !== String(n + 1)) wrong.push(`simple: select ${n} + 1 gave ${JSON.stringify(value(simple))} ${JSON.stringify(errorsIn(simple))}`);
      c.write(Buffer.concat([enc.parse('', 'select $1::int + 1'), enc.bind('', '', [String(n)]), enc.execute(''), enc.sync()]));
      const ext = await c.readZ(1);
      if (value(ext) !== String(n + 1)) wrong.push(`extended: $1 = ${n} gave ${JSON.stringify(value(ext))} ${JSON.stringify(errorsIn(ext))}`);
      counted();
    }
  } catch (err) {
    if (!stop()) wrong.push(`a valid session failed: ${(err as Error).message}`);
  } finally {
    c?.end();
  }
}
