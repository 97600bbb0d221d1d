/** Small helpers every bench script needs. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * The repository root (package.json and src/ side by side): above this file when run from
 * build/, else the working directory.
 */
export function repoRoot(): string {
  for (let d = __dirname; ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'package.json')) && fs.existsSync(path.join(d, 'src'))) return d;
    if (path.dirname(d) === d) break;
  }
  if (fs.existsSync(path.join(process.cwd(), 'package.json'))) return process.cwd();
  throw new Error(`repository root (package.json) not found above ${__dirname}; run from the repository`);
}

/** The median of the finite values (NaN when there is none). */
export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** What a result file says about the machine; loadAtStart is os.loadavg() taken before the run. */
export function machineInfo(loadAtStart: number[]): Record<string, unknown> {
  return {
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.cpus().length,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    totalMemMiB: Math.round(os.totalmem() / 2 ** 20),
    /** 1/5/15-minute load averages: other work on the machine skews the figures. */
    loadAverage: { atStart: loadAtStart, atEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
  };
}

/** A positive integer knob from the environment (unset or empty: dflt). */
export function envInt(name: string, dflt: number, min = 1): number {
  const v = process.env[name];
  if (v === undefined || v.trim() === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer of at least ${min}, got '${v}'`);
  return n;
}
