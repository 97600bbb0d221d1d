// ThrottledLine (src/log/ops-throttle.ts): a line anyone can cause is said at most once per
// interval, and the next one said counts those left out (issue 15, security finding 18: each
// unknown CancelRequest wrote a WARN line).
import t from 'tap';
import { ThrottledLine } from '../../src/log/ops-throttle';
import type { OpsFields } from '../../src/log/ops';

t.test('once per interval, with the count of the suppressed ones on the next line', async (t) => {
  const said: [string, OpsFields][] = [];
  const line = new ThrottledLine((m, f) => said.push([m, f]), 'cancel request for an unknown session ignored', 1000);
  line.log({ pid: 1 }, 10_000);
  for (let i = 2; i <= 500; i++) line.log({ pid: i }, 10_000 + i); // within the second
  t.same(said, [['cancel request for an unknown session ignored', { pid: 1 }]], 'one line for 500 in a second');
  line.log({ pid: 501 }, 11_000);
  t.same(said[1], ['cancel request for an unknown session ignored', { pid: 501, suppressed: 499 }], 'the next says how many were left out');
  line.log({ pid: 502 }, 12_500);
  t.same(said[2], ['cancel request for an unknown session ignored', { pid: 502 }], 'none left out: no count');
});
