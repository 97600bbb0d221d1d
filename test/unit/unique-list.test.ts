// src/unique-list.ts: arrays without duplicates, a Set beside the long ones (issue 15, security
// finding 14: a text naming 40,000 tables made the classifier and the digests quadratic).
import t from 'tap';
import { addUnique, hasUnique } from '../../src/unique-list';
import { classifySql } from '../../src/sql/classify';

t.test('the same list as a plain scan would build, short and long, in first-seen order', async (t) => {
  for (const n of [3, 15, 16, 17, 200]) {
    const got: number[] = [];
    const want: number[] = [];
    for (let i = 0; i < n * 3; i++) {
      const x = (i * 7919) % n; // every value three times, interleaved
      addUnique(got, x);
      if (!want.includes(x)) want.push(x);
    }
    t.same(got, want, `${n} distinct values`);
    for (let x = -1; x <= n; x++) t.equal(hasUnique(got, x), want.includes(x), `${n}: has ${x}`);
  }
});

t.test('a list that grew behind its back is indexed again: never a wrong answer', async (t) => {
  const list: string[] = [];
  for (let i = 0; i < 20; i++) addUnique(list, `t${i}`);
  list.push('sneaked');
  t.ok(hasUnique(list, 'sneaked'), 'found');
  addUnique(list, 'sneaked');
  t.equal(list.filter((x) => x === 'sneaked').length, 1, 'not added twice');
});

t.test('select * from t0, ..., t79999, with every name twice: each table once, in linear time', async (t) => {
  // The timeout is a guard some 40 times wider than the linear scan needs (about 130 ms here);
  // the quadratic one took over 10 s.
  t.setTimeout(5000);
  const n = 80_000;
  const names = Array.from({ length: n }, (_, i) => `t${i}`);
  const c = classifySql(`select * from ${[...names, ...names].join(',')}`);
  t.same(c.tables, names);
});
