// Fifo (src/fifo.ts): the session ledger's request groups and the Redis client's and cache
// workers' pending requests. Random pushes and shifts against an array doing the same, through
// emptying (the indexes start again at 0) and long queues (compaction past 1024 shifted).
import t, { type Test } from 'tap';
import { Fifo } from '../../src/fifo';
import { prng } from '../harness/prng';

function agree(t: Test, q: Fifo<number>, model: number[], when: string): boolean {
  if (q.size !== model.length) return t.fail(`${when}: size ${q.size}, expected ${model.length}`);
  for (let i = -1; i <= model.length; i++) {
    if (q.at(i) !== model[i]) return t.fail(`${when}: at(${i}) is ${q.at(i)}, expected ${model[i]}`);
  }
  return true;
}

t.test('pushes and shifts in random runs agree with an array', (t) => {
  const rnd = prng(21);
  const q = new Fifo<number>();
  const model: number[] = [];
  let next = 0;
  let emptied = 0;
  let longest = 0;
  let ok = true;
  // Phases (steps, chance of a push): short queues that empty often, growth past the compaction
  // threshold, shrinking with pushes between, and short queues again.
  const phases: [number, number][] = [[4000, 0.5], [8000, 0.85], [8000, 0.2], [4000, 0.5]];
  const pushChance = (step: number): number => {
    for (const [steps, chance] of phases) {
      if (step < steps) return chance;
      step -= steps;
    }
    return 0.5;
  };
  for (let step = 0; step < 24_000 && ok; step++) {
    if (rnd() < pushChance(step)) {
      q.push(next);
      model.push(next++);
    } else {
      const got = q.shift();
      const want = model.shift();
      if (got !== want) ok = t.fail(`step ${step}: shift gave ${got}, expected ${want}`);
      if (want !== undefined && model.length === 0) emptied++;
    }
    longest = Math.max(longest, model.length);
    if (step % 97 === 0) ok = ok && agree(t, q, model, `step ${step}`);
  }
  t.ok(ok, 'every shift in order, every size and at() as the array');
  t.ok(emptied > 10, `emptied and refilled (${emptied} times)`);
  t.ok(longest > 2048, `long enough to compact (${longest} at most)`);
  t.same(q.drain(), model, 'drain() gives the rest in order');
  t.equal(q.size, 0);
  t.equal(q.shift(), undefined);
  q.push(7);
  t.equal(q.at(0), 7, 'usable after drain()');
  t.end();
});
