// The comparison (src/replay/compare.ts): per-digest counts, which differences count as a changed
// outcome (status, SQLSTATE, rows of an ok statement, a rows digest only where capture had one),
// latency regressions (p50 ratio and at least 1 ms), and the order of the report.
import t from 'tap';
import { Comparison } from '../../src/replay/compare';
import type { StatementResult } from '../../src/replay/session-player';

function ok(ms: number, rows = 1, rowsDigest?: string) {
  return { status: 'ok' as const, sqlstate: null, rows, rowsDigest, ms };
}
function err(ms: number, sqlstate: string, message?: string) {
  return { status: 'error' as const, sqlstate, rows: 0, ms, message };
}
let seq = 0;
function r(sql: string | null, original: StatementResult['original'], replayed: StatementResult['replayed']): StatementResult {
  return { conn: 1, seq: ++seq, sql, original, replayed };
}

t.test('counts and changes per digest', async (t) => {
  const c = new Comparison();
  for (let i = 0; i < 5; i++) c.add(r(`select * from t where id = ${i}`, ok(1), ok(1)));
  c.add(r('select * from t where id = 9', ok(1), err(1, '42703', 'column "id" does not exist')));
  c.add(r('select * from t where id = 10', ok(1), err(1, '42703')));
  c.add(r('select * from t where id = 11', ok(1, 1), ok(1, 2)));
  c.add(r('select * from t where id = 12', ok(1, 1, 'aaaa'), ok(1, 1, 'bbbb')));
  c.add(r('select * from t where id = 13', ok(1, 1), ok(1, 1, 'bbbb')));
  c.add(r('select * from t where id = 14', ok(1), null));
  c.add(r('select 1/0', err(1, '22012'), err(1, '22012')));
  c.add(r('select 1/0', err(1, '22012'), ok(1)));
  c.add(r('update t set x = 1', err(1, '40001'), err(1, '40P01')));
  const rep = c.report(2);
  const byId = new Map(rep.map((d) => [d.sql, d]));
  const sel = byId.get('select * from t where id = $1')!;
  t.equal(sel.original, 11);
  t.equal(sel.replayed, 10, 'a statement that did not run here is counted on its original side only');
  t.same(sel.changes.map((x) => [x.before, x.after, x.count]), [
    ['ok', 'error 42703', 2],
    ['ok rows 1', 'ok rows 2', 1],
    ['ok rows digest aaaa', 'ok rows digest bbbb', 1],
  ], 'status, rows, rows digest; no change where capture had no digest');
  t.equal(sel.changes[0]!.message, 'column "id" does not exist', 'the first example keeps its message');
  t.same(byId.get('select $1/$2')!.changes.map((x) => [x.before, x.after]), [['error 22012', 'ok']]);
  t.same(byId.get('update t set x = $1')!.changes.map((x) => [x.before, x.after]), [['error 40001', 'error 40P01']], 'another SQLSTATE is a change');
  t.equal(c.replayed, 13);
  t.equal(c.errors, 4);
  t.equal(c.changed, 6);
});

t.test('regressions: p50 ratio at the threshold and at least 1 ms slower', async (t) => {
  const c = new Comparison();
  for (let i = 0; i < 100; i++) {
    c.add(r('select a from slow', ok(2), ok(8)));
    c.add(r('select a from tiny', ok(0.01), ok(0.5)));
    c.add(r('select a from same', ok(3), ok(3.1)));
  }
  const rep = c.report(2);
  const by = new Map(rep.map((d) => [d.sql, d]));
  t.equal(by.get('select a from slow')!.regression, true);
  t.ok(Math.abs(by.get('select a from slow')!.ratioP50! - 4) < 0.3, 'ratio about 4');
  t.equal(by.get('select a from tiny')!.regression, false, '50x but under 1 ms: not a regression');
  t.equal(by.get('select a from same')!.regression, false);
  t.equal(rep[0]!.sql, 'select a from slow', 'regressions first');
  t.equal(c.report(5).find((d) => d.sql === 'select a from slow')!.regression, false, 'the threshold is the caller\'s');
});

t.test('SQL unknown and long SQL', async (t) => {
  const c = new Comparison();
  c.add(r(null, ok(1), null));
  c.add(r('select ' + 'x, '.repeat(400) + 'y', ok(1), ok(1)));
  const rep = c.report(2);
  t.ok(rep.some((d) => d.sql === '(SQL not known)'));
  t.ok(rep.every((d) => d.sql.length <= 503), 'SQL cut to 500 characters');
});
