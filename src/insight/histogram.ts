/**
 * A bounded log-linear latency histogram (the HdrHistogram layout with 16 sub-buckets per power
 * of two), cheap enough to record every completed query.
 *
 * - Range: 1 µs to 2^27 µs (134 s) in 27 octaves x 16 linear sub-buckets = 432 buckets, plus an
 *   underflow bucket (< 1 µs) and an overflow bucket (>= 134 s). A bucket [lo, hi) of octave
 *   [2^e, 2^(e+1)) is 2^e / 16 wide, so reporting its midpoint is off by at most 1/32 = 3.1% of the
 *   true value (relative to lo; less in the upper part of an octave). The exact minimum and
 *   maximum are kept, quantiles are clamped to them, and the 0th / 100th percentiles are exact.
 * - record() finds the bucket from the bits of the double (exponent = octave, the top 4 bits of
 *   the mantissa = sub-bucket): no Math.log, no allocation.
 * - Memory: counts are a Float64Array (exact to 2^53: no overflow in a proxy's lifetime) that
 *   covers only the octaves seen so far, grown on demand. A query whose latencies stay within two
 *   decades (about 7 octaves) holds 112 buckets = 0.9 KB; the whole range is 3.5 KB.
 */

const SUB_BITS = 4;
const SUB = 1 << SUB_BITS;
/** Octaves 0 .. OCTAVES-1 of microseconds: [1 µs, 2^27 µs). */
const OCTAVES = 27;
const MAX_US = 2 ** OCTAVES;

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
/** Index of the word holding the sign, exponent and top of the mantissa. */
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;

/** Lower bound (µs) of bucket `sub` of octave `e`. */
function lowerUs(e: number, sub: number): number {
  return 2 ** e * (1 + sub / SUB);
}

/** A LatencyHistogram as plain data (JSON-safe): see LatencyHistogram.state(). */
export interface HistogramState {
  /** The first octave of the bucket indexes. */
  lo: number;
  /** [index, count] of the buckets that hold observations. */
  buckets: [number, number][];
  under: number;
  over: number;
  n: number;
  sum: number;
  /** 0 when n is 0. */
  min: number;
  max: number;
}

export class LatencyHistogram {
  private counts: Float64Array | null = null;
  /** First octave held in counts, and one past the last. */
  private lo = 0;
  private hi = 0;
  private under = 0;
  private over = 0;
  private n = 0;
  private sum = 0;
  private min = Infinity;
  private max = -Infinity;

  /** One observation in milliseconds; negative values count as 0, NaN is ignored. */
  record(ms: number): void {
    if (!(ms >= 0)) {
      if (ms !== ms) return; // NaN
      ms = 0;
    }
    this.n++;
    this.sum += ms;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
    const us = ms * 1000;
    if (us < 1) { this.under++; return; }
    if (us >= MAX_US) { this.over++; return; }
    f64[0] = us;
    const w = u32[HI]!;
    const e = ((w >>> 20) & 0x7ff) - 1023;
    if (e < this.lo || e >= this.hi) this.cover(e);
    const i = (e - this.lo) * SUB + ((w >>> (20 - SUB_BITS)) & (SUB - 1));
    this.counts![i] = this.counts![i]! + 1;
  }

  /** Grows counts to hold octave e. */
  private cover(e: number): void {
    if (this.counts === null) {
      this.lo = e;
      this.hi = e + 1;
      this.counts = new Float64Array(SUB);
      return;
    }
    const lo = Math.min(this.lo, e);
    const hi = Math.max(this.hi, e + 1);
    const c = new Float64Array((hi - lo) * SUB);
    c.set(this.counts, (this.lo - lo) * SUB);
    this.counts = c;
    this.lo = lo;
    this.hi = hi;
  }

  get count(): number {
    return this.n;
  }

  get sumMs(): number {
    return this.sum;
  }

  /** Smallest observation (ms); NaN when empty. */
  get minMs(): number {
    return this.n === 0 ? NaN : this.min;
  }

  /** Largest observation (ms); NaN when empty. */
  get maxMs(): number {
    return this.n === 0 ? NaN : this.max;
  }

  /** Buckets allocated (8 bytes each): for memory accounting and tests. */
  get bucketCount(): number {
    return this.counts === null ? 0 : this.counts.length;
  }

  /**
   * The q-quantile (q in [0,1]) by nearest rank: the value of the ceil(q * count)-th smallest
   * observation, within the bucket error (3.1%); exact at q = 0 and q = 1. NaN when empty.
   */
  quantile(q: number): number {
    const n = this.n;
    if (n === 0 || !(q >= 0 && q <= 1)) return NaN;
    const rank = Math.max(1, Math.ceil(q * n));
    if (rank === 1) return this.min;
    if (rank === n) return this.max;
    let v: number;
    let seen = this.under;
    if (rank <= seen) v = 0.0005;
    else {
      v = NaN;
      const c = this.counts;
      if (c !== null) {
        for (let i = 0; i < c.length; i++) {
          seen += c[i]!;
          if (seen >= rank) {
            const e = this.lo + (i >> SUB_BITS);
            const sub = i & (SUB - 1);
            v = (lowerUs(e, sub) + lowerUs(e, sub + 1)) / 2000;
            break;
          }
        }
      }
      if (v !== v) v = this.max; // in the overflow bucket
    }
    return Math.min(this.max, Math.max(this.min, v));
  }

  /**
   * Cumulative counts at upper bounds (ms), for a Prometheus histogram: counts[i] = observations
   * <= boundsMs[i]. A bucket that straddles a bound counts below it when its midpoint does; a
   * bound at or above the maximum gets every observation, one below the minimum none. So the
   * answer is exact to within the observations of one bucket (3.1% of the bound) per bound, and
   * non-decreasing when the bounds are.
   */
  cumulative(boundsMs: readonly number[]): number[] {
    const res: number[] = [];
    for (const b of boundsMs) {
      if (this.n === 0 || b < this.min) { res.push(0); continue; }
      if (b >= this.max) { res.push(this.n); continue; }
      const us = b * 1000;
      let k = us >= 0.5 ? this.under : 0;
      const c = this.counts;
      if (c !== null) {
        for (let i = 0; i < c.length; i++) {
          const e = this.lo + (i >> SUB_BITS);
          const sub = i & (SUB - 1);
          const lo = lowerUs(e, sub);
          if (lo > us) break;
          if ((lo + lowerUs(e, sub + 1)) / 2 <= us) k += c[i]!;
        }
      }
      res.push(k);
    }
    return res;
  }

  /**
   * Everything recorded, as plain data (for another process to merge: --processes N). Only the
   * buckets that hold observations are listed, as [index, count] pairs from octave `lo`.
   */
  state(): HistogramState {
    const buckets: [number, number][] = [];
    const c = this.counts;
    if (c !== null) for (let i = 0; i < c.length; i++) if (c[i]! > 0) buckets.push([i, c[i]!]);
    return { lo: this.lo, buckets, under: this.under, over: this.over, n: this.n, sum: this.sum, min: this.n === 0 ? 0 : this.min, max: this.n === 0 ? 0 : this.max };
  }

  /** Adds another histogram's observations (its state()): the result is as if this one had recorded them too. */
  merge(s: HistogramState): void {
    if (!(s.n > 0)) return;
    this.n += s.n;
    this.sum += s.sum;
    if (s.min < this.min) this.min = s.min;
    if (s.max > this.max) this.max = s.max;
    this.under += s.under;
    this.over += s.over;
    for (const [i, count] of s.buckets) {
      const e = s.lo + (i >> SUB_BITS);
      if (!(e >= 0 && e < OCTAVES) || !(count > 0)) continue;
      if (e < this.lo || e >= this.hi || this.counts === null) this.cover(e);
      const j = (e - this.lo) * SUB + (i & (SUB - 1));
      this.counts![j] = this.counts![j]! + count;
    }
  }

  reset(): void {
    this.counts = null;
    this.lo = this.hi = 0;
    this.under = this.over = 0;
    this.n = 0;
    this.sum = 0;
    this.min = Infinity;
    this.max = -Infinity;
  }
}
