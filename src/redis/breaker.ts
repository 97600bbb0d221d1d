/**
 * A circuit breaker for the shared cache: while Redis fails, stop asking it (every lookup would
 * wait for a timeout), and find out by itself when it works again.
 *
 *   closed     Redis is used. `threshold` failures in a row open the breaker; so does losing the
 *              connection (open()).
 *   open       Redis is not used. After the cooldown (doubling from minCooldownMs to
 *              maxCooldownMs on each failed probe) the owner may probe.
 *   half-open  One probe is out; its success closes the breaker, its failure opens it again.
 *
 * Every state change is reported once through onChange (the owner logs one line per change).
 * The breaker owns no timers and sends nothing: the owner calls probeDue() when the cooldown may
 * have passed, sends the probe, and reports its outcome with probeResult(). Commands that finish
 * outside the closed state (sent before it opened) change nothing.
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

export interface BreakerOptions {
  /** Consecutive failures that open a closed breaker. */
  threshold: number;
  minCooldownMs: number;
  maxCooldownMs: number;
  onChange: (state: BreakerState, reason: string) => void;
  /** Clock (ms); performance.now by default. */
  now?: () => number;
}

export class Breaker {
  private readonly opts: BreakerOptions;
  private readonly now: () => number;
  private current: BreakerState;
  private failures = 0;
  private cooldown: number;
  private openedAt = 0;
  /** Why it is open (the first failure of the streak). */
  private why = '';

  /** Starts open: nothing is known to work until a probe succeeds. */
  constructor(opts: BreakerOptions, initialReason = 'not connected yet') {
    this.opts = opts;
    this.now = opts.now ?? (() => performance.now());
    this.cooldown = opts.minCooldownMs;
    this.current = 'open';
    this.why = initialReason;
    this.openedAt = this.now() - this.cooldown; // a first probe is due at once
  }

  get state(): BreakerState {
    return this.current;
  }

  get closed(): boolean {
    return this.current === 'closed';
  }

  get reason(): string {
    return this.why;
  }

  /** Ms until a probe may go out (0: now; only meaningful while open). */
  get msUntilProbe(): number {
    return Math.max(0, this.openedAt + this.cooldown - this.now());
  }

  /** Open and past its cooldown: move to half-open and return true (the caller sends the probe). */
  probeDue(): boolean {
    if (this.current !== 'open' || this.msUntilProbe > 0) return false;
    this.set('half-open', `probing after ${Math.round(this.cooldown)} ms`);
    return true;
  }

  /** A command succeeded (counts only while closed: it ends a streak of failures). */
  success(): void {
    if (this.current === 'closed') this.failures = 0;
  }

  /** A command failed (counts only while closed; the probe's outcome goes to probeResult()). */
  failure(reason: string): void {
    if (this.current === 'closed' && ++this.failures >= this.opts.threshold) this.trip(`${this.failures} failures in a row, the last: ${reason}`);
  }

  /** The probe sent after probeDue() came back: close, or open again with a longer cooldown. */
  probeResult(ok: boolean, reason: string): void {
    if (this.current !== 'half-open') return;
    if (ok) {
      this.failures = 0;
      this.cooldown = this.opts.minCooldownMs;
      this.set('closed', reason);
      return;
    }
    this.cooldown = Math.min(this.opts.maxCooldownMs, this.cooldown * 2);
    this.trip(`probe failed: ${reason}`);
  }

  /** Open now, whatever the state (the connection is lost). */
  open(reason: string): void {
    if (this.current === 'open') return;
    this.trip(reason);
  }

  private trip(reason: string): void {
    this.failures = 0;
    this.openedAt = this.now();
    this.why = reason;
    this.set('open', reason);
  }

  private set(s: BreakerState, reason: string): void {
    if (s === this.current) return;
    this.current = s;
    this.opts.onChange(s, reason);
  }
}
