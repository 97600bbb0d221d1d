// The latency histogram: quantiles against an exact sort of the same random data (within the
// documented 3.1% bucket error), exact extremes, Prometheus cumulative counts against exact
// counts, bounded and lazily grown memory, reset.
import t from 'tap';
import { LatencyHistogram } from '../../src/insight/histogram';
import { prng as rng } from '../harness/prng';

/** The nearest-rank q-quantile of sorted xs: the ceil(q n)-th smallest. */
function exactQuantile(sorted: number[], q: number): number {
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!;
}

const DISTRIBUTIONS: Array<[string, (r: () => number) => number]> = [
  // log-uniform over 2 µs .. 20 s: every octave of the range
  ['log-uniform', (r) => 0.002 * 10 ** (r() * 4)],
  // a fast query with a slow tail (lognormal around 0.3 ms)
  ['lognormal', (r) => 0.3 * Math.exp(0.8 * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()))],
  // narrow: 1.00 .. 1.05 ms (all within one or two buckets)
  ['narrow', (r) => 1 + r() * 0.05],
];

t.test('quantiles are within 3.2% of an exact sort', async (t) => {
  for (const [name, gen] of DISTRIBUTIONS) {
    for (const seed of [1, 2, 3]) {
      const r = rng(seed);
      const h = new LatencyHistogram();
      const xs: number[] = [];
      for (let i = 0; i < 20000; i++) {
        const x = gen(r);
        xs.push(x);
        h.record(x);
      }
      xs.sort((a, b) => a - b);
      let worst = 0;
      for (const q of [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999]) {
        const want = exactQuantile(xs, q);
        const err = Math.abs(h.quantile(q) - want) / want;
        worst = Math.max(worst, err);
        t.ok(err <= 0.032, `${name} seed ${seed} q=${q}: ${h.quantile(q)} vs ${want} (${(err * 100).toFixed(2)}%)`);
      }
      t.equal(h.quantile(0), xs[0], `${name}: q=0 is the exact minimum`);
      t.equal(h.quantile(1), xs[xs.length - 1], `${name}: q=1 is the exact maximum`);
      t.equal(h.count, xs.length);
      t.ok(Math.abs(h.sumMs - xs.reduce((a, b) => a + b, 0)) < 1e-6 * h.sumMs, 'sum');
      t.comment(`${name} seed ${seed}: worst quantile error ${(worst * 100).toFixed(2)}%, ${h.bucketCount} buckets`);
    }
  }
});

t.test('a single value, constants, the ends of the range', async (t) => {
  const h = new LatencyHistogram();
  t.ok(Number.isNaN(h.quantile(0.5)), 'empty: NaN');
  t.ok(Number.isNaN(h.minMs) && Number.isNaN(h.maxMs));
  t.strictSame(h.cumulative([1, 10]), [0, 0]);
  h.record(7.3);
  for (const q of [0, 0.5, 0.99, 1]) t.equal(h.quantile(q), 7.3, `one value: q=${q}`);
  for (let i = 0; i < 99; i++) h.record(7.3);
  t.equal(h.quantile(0.5), 7.3, 'a constant is exact (clamped to min = max)');
  t.ok(Number.isNaN(h.quantile(-0.1)) && Number.isNaN(h.quantile(1.5)) && Number.isNaN(h.quantile(NaN)), 'q out of range');

  const e = new LatencyHistogram();
  for (let i = 0; i < 10; i++) e.record(0.0001); // 0.1 µs: underflow bucket
  for (let i = 0; i < 10; i++) e.record(500_000); // 500 s: overflow bucket
  e.record(-3); // a clock step back counts as 0
  e.record(NaN); // ignored
  t.equal(e.count, 21);
  t.equal(e.minMs, 0);
  t.equal(e.maxMs, 500_000);
  t.ok(e.quantile(0.25) < 0.001, `underflow quantile ${e.quantile(0.25)}`);
  t.equal(e.quantile(0.9), 500_000, 'overflow quantile: the maximum');
  t.equal(e.bucketCount, 0, 'nothing in range: no buckets allocated');
});

t.test('cumulative counts for Prometheus buckets', async (t) => {
  const r = rng(7);
  const h = new LatencyHistogram();
  const xs: number[] = [];
  for (let i = 0; i < 50000; i++) {
    const x = 0.01 * 10 ** (r() * 5); // 10 µs .. 1000 ms
    xs.push(x);
    h.record(x);
  }
  const bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500];
  const got = h.cumulative(bounds);
  t.equal(got.length, bounds.length);
  for (let i = 0; i < bounds.length; i++) {
    const b = bounds[i]!;
    // Exact within the observations of the bucket holding the bound (3.1% of it on each side).
    const lo = xs.filter((x) => x <= b * (1 - 0.0625)).length;
    const hi = xs.filter((x) => x <= b * (1 + 0.0625)).length;
    t.ok(got[i]! >= lo && got[i]! <= hi, `le=${b}: ${got[i]} in [${lo}, ${hi}]`);
    if (i > 0) t.ok(got[i]! >= got[i - 1]!, 'non-decreasing');
    t.ok(Number.isInteger(got[i]!), 'integer');
  }
  t.equal(got[0], 0, 'below the minimum: 0');
  t.equal(got[got.length - 1], xs.length, 'above the maximum: all');
});

t.test('cumulative: a bucket straddling a bound counts below it only when its midpoint does', async (t) => {
  // 1.000 ms lies in the bucket [0.992, 1.024) ms, whose midpoint is 1.008 ms.
  const h = new LatencyHistogram();
  h.record(0.5);
  for (let i = 0; i < 10; i++) h.record(1);
  h.record(2);
  t.strictSame(h.cumulative([0.995, 1.01, 1.5]), [1, 11, 11]);
});

t.test('memory: only the octaves seen are allocated, at most 432 buckets', async (t) => {
  const h = new LatencyHistogram();
  for (let i = 0; i < 1000; i++) h.record(0.2 + (i % 100) * 0.2); // 0.2 .. 20 ms: 7 octaves
  t.ok(h.bucketCount <= 8 * 16, `${h.bucketCount} buckets for two decades`);
  t.ok(h.bucketCount >= 7 * 16);
  h.record(0.001); // 1 µs: grows down
  h.record(100_000); // 100 s: grows up
  t.equal(h.bucketCount, 27 * 16, 'the whole range');
  t.equal(h.quantile(0.5), (() => {
    const g = new LatencyHistogram();
    for (let i = 0; i < 1000; i++) g.record(0.2 + (i % 100) * 0.2);
    g.record(0.001);
    g.record(100_000);
    return g.quantile(0.5);
  })(), 'growing keeps the counts where they were');
  const before = h.quantile(0.5);
  t.ok(Math.abs(before - 10.2) / 10.2 < 0.04, `median ${before} ~ 10.2 after growing both ways`);
});

t.test('reset', async (t) => {
  const h = new LatencyHistogram();
  for (let i = 1; i <= 100; i++) h.record(i);
  h.reset();
  t.equal(h.count, 0);
  t.equal(h.sumMs, 0);
  t.equal(h.bucketCount, 0);
  t.ok(Number.isNaN(h.quantile(0.5)));
  h.record(2);
  t.equal(h.quantile(0.5), 2);
  t.equal(h.minMs, 2);
});

t.test('merge (--processes N): histograms recorded apart and merged through JSON equal one that recorded everything', async (t) => {
  for (const [name, gen] of DISTRIBUTIONS) {
    const r = rng(7);
    const whole = new LatencyHistogram();
    const parts = [new LatencyHistogram(), new LatencyHistogram(), new LatencyHistogram()];
    for (let i = 0; i < 5000; i++) {
      // Some below 1 µs and some past 134 s: the under- and overflow buckets merge too.
      const x = i % 997 === 0 ? 0.0001 : i % 991 === 0 ? 200_000 : gen(r);
      whole.record(x);
      parts[i % 3 === 0 ? 0 : i % 5 === 0 ? 1 : 2]!.record(x);
    }
    const merged = new LatencyHistogram();
    merged.merge(new LatencyHistogram().state()); // an empty one changes nothing
    for (const p of parts) merged.merge(JSON.parse(JSON.stringify(p.state())));
    t.equal(merged.count, whole.count, `${name}: count`);
    t.equal(merged.minMs, whole.minMs, `${name}: min`);
    t.equal(merged.maxMs, whole.maxMs, `${name}: max`);
    t.ok(Math.abs(merged.sumMs - whole.sumMs) <= 1e-9 * whole.sumMs, `${name}: sum`);
    for (const q of [0, 0.01, 0.5, 0.9, 0.99, 0.999, 1]) t.equal(merged.quantile(q), whole.quantile(q), `${name}: q=${q}`);
    const bounds = [0.0005, 0.01, 0.1, 1, 10, 100, 1000, 150_000];
    t.strictSame(merged.cumulative(bounds), whole.cumulative(bounds), `${name}: Prometheus buckets`);
    t.strictSame({ ...merged.state(), sum: 0 }, { ...whole.state(), sum: 0 }, `${name}: the same buckets (the sum differs only by the order of additions)`);
  }
  const empty = new LatencyHistogram();
  empty.merge(new LatencyHistogram().state());
  t.equal(empty.count, 0, 'empty merged with empty');
  t.ok(Number.isNaN(empty.quantile(0.5)), 'still empty');
});
