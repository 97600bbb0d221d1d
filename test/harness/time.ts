// Waiting, for the tests and the benchmarks: one sleep, and one polling loop with a deadline.

/** Resolves after ms milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface WaitOptions {
  /** Give up after this long. */
  timeoutMs: number;
  /** Pause between two probes (default 20 ms). */
  intervalMs?: number;
  /** The message of the error thrown on timeout (built then, so it can show the last state). */
  timeout: () => string;
}

/**
 * Probe until it returns something other than undefined, and return that; throw when
 * `timeoutMs` passes first. The probe runs once more after the deadline, so a slow machine that
 * reaches the state just in time is not failed. A probe that throws ends the wait with its error.
 */
export async function waitFor<T>(probe: () => T | undefined | Promise<T | undefined>, o: WaitOptions): Promise<T> {
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(o.timeout());
    await sleep(o.intervalMs ?? 20);
  }
}
