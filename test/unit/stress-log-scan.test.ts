// The stress run's query log scanner (bench/lib/stress-log-scan.ts) reads the documented text
// format, with and without the node= field that several upstreams add after the client address.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { QueryLogScanner } from '../../bench/lib/stress-log-scan';

const LINES = [
  "2026-12-05T10:00:00.000Z conn=1 app@shop 127.0.0.1:5000 Q cache=hit sql=select 1",
  "2026-12-05T10:00:00.001Z conn=2 app@shop 127.0.0.1:5001 node=127.0.0.1:5433 Q sql=select 2",
  "2026-12-05T10:00:00.002Z conn=2 app@shop 127.0.0.1:5001 node=[::1]:5433 P stmt=s1 sql=select $1",
  "2026-12-05T10:00:00.003Z conn=2 app@shop 127.0.0.1:5001 node=127.0.0.1:5433 B stmt=s1 params=('1') sql=select $1",
  "2026-12-05T10:00:00.004Z conn=2 app@shop 127.0.0.1:5001 node=127.0.0.1:5433 E sql=select $1",
  "2026-12-05T10:00:00.005Z conn=2 app@shop 127.0.0.1:5001 node=127.0.0.1:5433 done seq=3 of=E ms=0.2 rows=1",
];

t.test('node= after the client address is read as part of the session, not as the type', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-scan-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'q.log');
  fs.writeFileSync(file, LINES.join('\n') + '\n');
  const s = new QueryLogScanner(file);
  s.scan();
  t.equal(s.lines, LINES.length);
  t.equal(s.malformed, 0, `no malformed line (${s.malformedExamples.join(' | ')})`);
  t.match(s.countsFor('default').get('shop'), { Q: 2, P: 1, B: 1, E: 1, done: 1, answeredByProxy: 1 }, 'counted by type');
});
