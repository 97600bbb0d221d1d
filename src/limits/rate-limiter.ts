/**
 * The rate-limits rules of one process and their token buckets. A session is matched once, at
 * its start, against its StartupMessage's user, database and application_name (a later SET
 * application_name does not move it); the first rule that matches applies. Each matched
 * (rule, user, database, application_name) has its own bucket, shared by every session with
 * that key: a rule `{"user": "flood", "qps": 50}` allows flood 50 queries a second in each
 * database and application, whatever the number of its sessions.
 *
 * With --processes N each process has its own buckets, each with qps/N and burst/N (at least
 * one): the sum over the processes stays within the rule whichever process holds the sessions
 * (and a key whose sessions all sit in one process gets only its share there).
 */
import { describeRule } from '../config/rate-limits';
import type { RateLimitRule } from '../config/types';
import { TokenBucket } from './token-bucket';
import { ThrottledLine } from '../log/ops-throttle';
import type { OpsFields } from '../log/ops';

/** Buckets kept for keys without a session: past this many, the full ones are forgotten. */
const SWEEP_AT = 1024;

interface Entry {
  readonly bucket: TokenBucket;
  /** Sessions using it now. */
  refs: number;
}

/** A session's share of its rule: one bucket, and how to name it in a 53400. */
export interface SessionRate {
  /** `rate-limits rule 0 (user=flood)`. */
  readonly rule: string;
  /** The rule's rate as configured (queries per second over all processes). */
  readonly qps: number;
  /** Take a token: ms to wait for it (0: now), or -1 when that is past rate-limit-max-delay-ms. */
  take(now: number): number;
  /** The session ended. */
  release(): void;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Entry>();
  private readonly refusedLine: ThrottledLine | null;

  constructor(
    private readonly rules: readonly RateLimitRule[],
    readonly maxDelayMs: number,
    /** --processes N: each process holds 1/N of every rate. */
    private readonly processes = 1,
    /** Where a refusal is said (at most once a second); null: nowhere. */
    warn: ((msg: string, fields: OpsFields) => void) | null = null,
  ) {
    this.refusedLine = warn === null ? null : new ThrottledLine(warn, 'query over its rate limit refused with 53400: it would have waited more than rate-limit-max-delay-ms');
  }

  /** A query of this session was refused with 53400. */
  refused(rule: string, who: { user: string; database: string; application: string }): void {
    this.refusedLine?.log({ rule, user: who.user, database: who.database, application_name: who.application, max_delay_ms: this.maxDelayMs });
  }

  /** The index of the first rule matching a session, or -1. */
  match(user: string, database: string, application: string): number {
    return this.rules.findIndex(
      (r) => (r.user === undefined || r.user === user) && (r.database === undefined || r.database === database) && (r.application_name === undefined || r.application_name === application),
    );
  }

  /** The rate of a session starting now, or null when no rule matches it. */
  forSession(user: string, database: string, application: string): SessionRate | null {
    const i = this.match(user, database, application);
    if (i < 0) return null;
    const rule = this.rules[i]!;
    const now = performance.now();
    if (this.buckets.size >= SWEEP_AT) this.sweep(now);
    const key = JSON.stringify([i, user, database, application]);
    let e = this.buckets.get(key);
    if (e === undefined) {
      const n = this.processes;
      e = { bucket: new TokenBucket(rule.qps / n, Math.max(1, rule.burst / n), now), refs: 0 };
      this.buckets.set(key, e);
    }
    e.refs++;
    const entry = e;
    const maxDelayMs = this.maxDelayMs;
    let released = false;
    return {
      rule: describeRule(rule, i),
      qps: rule.qps,
      take: (at) => entry.bucket.take(at, maxDelayMs),
      release: () => {
        if (released) return;
        released = true;
        entry.refs--;
      },
    };
  }

  /** Buckets held now (for tests and the sweep). */
  get size(): number {
    return this.buckets.size;
  }

  /**
   * Forget the buckets no session uses that are full again: a new session of that key gets the
   * same full bucket it would have found. One that is not full is kept, or reconnecting would
   * reset a client's rate.
   */
  private sweep(now: number): void {
    for (const [k, e] of this.buckets) if (e.refs === 0 && e.bucket.fullAt(now)) this.buckets.delete(k);
  }
}
