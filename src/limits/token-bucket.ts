/**
 * A token bucket that takes reservations: each query takes one token, and when none is left it
 * takes one in advance (the balance goes below zero) and is told how long until that token will
 * have been earned. Queries that arrive while others wait therefore queue behind them in order,
 * and the rate over any window is at most burst + qps x window. A reservation that would wait
 * longer than the caller allows is not taken (the query is refused and costs nothing).
 */
export class TokenBucket {
  /** Tokens available now (negative: reserved in advance by queries still waiting). */
  private tokens: number;
  /** When `tokens` was last brought up to date (ms, a monotonic clock). */
  private at: number;

  constructor(
    /** Tokens earned per second. */
    readonly qps: number,
    /** Most tokens held: queries that may run at once beyond the rate. */
    readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.at = now;
  }

  private refill(now: number): void {
    if (now > this.at) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.qps) / 1000);
      this.at = now;
    }
  }

  /**
   * Take one token: how many ms until it is earned (0: at once), or -1 when that would be more
   * than maxWaitMs (then nothing is taken).
   */
  take(now: number, maxWaitMs: number): number {
    this.refill(now);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    const waitMs = ((1 - this.tokens) * 1000) / this.qps;
    if (waitMs > maxWaitMs) return -1;
    this.tokens -= 1;
    return waitMs;
  }

  /** The bucket is full again at `now`: forgetting it loses nothing. */
  fullAt(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }
}
