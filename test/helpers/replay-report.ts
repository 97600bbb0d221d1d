// Canned ReplayReports for the report renderers' tests (test/unit/replay-report.test.ts and
// test/e2e/replay-report-page.test.ts): an empty one, and one with changes, regressions and a
// timeline, built from a seeded PRNG so that every run draws the same report.
import type { DigestReport, LatencySummary, ReplayReport, TimelinePoint } from '../../src/replay/report-types';
import { prng } from '../harness/prng';

/** Sets document.title if it ever runs: the page test asserts the title did not change. */
export const XSS_SQL = `SELECT '<script>document.title = "pwned"</script>' AS x WHERE $1 = 1`;
export const XSS_IMG_MESSAGE = `invalid input syntax: "<img src=x onerror=\"document.title = 'img pwned'\">"`;
export const XSS_LOG = '/var/log/<b>pgscribe</b>/q.log';

export function emptyReport(): ReplayReport {
  return {
    logs: [],
    target: '127.0.0.1:5433',
    speed: 'max',
    startedAt: '2026-12-05T20:00:00.000Z',
    finishedAt: '2026-12-05T20:00:00.250Z',
    durationMs: 250,
    slowerThreshold: 2,
    sessions: { total: 0, replayed: 0, failed: 0, cut: 0 },
    statements: { replayed: 0, errors: 0, changed: 0, rate: 0, notReplayable: {}, skippedWrites: 0 },
    digests: [],
    timeline: [],
  };
}

export function lat(count: number, p50: number, p99: number): LatencySummary {
  return { count, p50, p99 };
}

/** A digest with its ratios and regression flag worked out as compare.ts would (--slower 2). */
export function digest(id: string, sql: string, original: number, before: LatencySummary | null, after: LatencySummary | null, changes: DigestReport['changes'] = []): DigestReport {
  const ratio = (a: number | undefined, b: number | undefined): number | null => (a === undefined || b === undefined || b === 0 ? null : a / b);
  const ratioP50 = ratio(after?.p50, before?.p50);
  return {
    id,
    sql,
    original,
    replayed: after?.count ?? 0,
    changes,
    before,
    after,
    ratioP50,
    ratioP99: ratio(after?.p99, before?.p99),
    regression: ratioP50 !== null && ratioP50 >= 2 && after!.p50 - before!.p50 >= 1,
  };
}

/** 60 s of timeline: ~400 statements/s, a burst of errors at t=20..24, lag growing after t=40. */
export function timeline(seconds = 60): TimelinePoint[] {
  const next = prng(7);
  const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1));
  const out: TimelinePoint[] = [];
  for (let t = 0; t < seconds; t++) {
    out.push({
      t,
      statements: Math.round(400 + 60 * Math.sin(t / 6) + int(0, 40)),
      errors: t >= 20 && t < 25 ? 30 + int(0, 10) : int(0, 2),
      lagMs: t < 40 ? 0 : (t - 40) * 35,
    });
  }
  return out;
}

/** The ids of the regressions in fullReport(), largest p50 ratio first. */
export const REGRESSION_IDS_BY_RATIO = ['00000000000000c4', '00000000000000a2', '00000000000000b3'];

/**
 * A report with 25 digests (so the chart's top 20 leaves five out), three regressions (listed out
 * of ratio order on purpose), two digests with changed outcomes, one of them with <script> in its
 * SQL and <img onerror> in its message, and a log file name with markup.
 */
export function fullReport(): ReplayReport {
  const ds: DigestReport[] = [
    digest('00000000000000a2', 'SELECT abalance FROM pgbench_accounts WHERE aid = $1', 5400, lat(5400, 0.42, 1.2), lat(5400, 3.1, 9.8)),
    digest('00000000000000b3', 'UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2', 1200, lat(1200, 1.5, 4.2), lat(1200, 4.0, 11)),
    digest('00000000000000c4', 'SELECT count(*) FROM orders o JOIN order_lines l ON l.order_id = o.id WHERE o.created_at >= $1', 310, lat(310, 12.5, 40.1), lat(310, 140.2, 420.5)),
    digest('00000000000000d5', XSS_SQL, 400, lat(400, 0.3, 0.8), lat(398, 0.31, 0.9), [
      { before: 'ok rows 1', after: 'error 22P02', count: 2, example: { conn: 12, seq: 40 }, message: XSS_IMG_MESSAGE },
    ]),
    digest(
      '00000000000000e6',
      'SELECT o.id, o.created_at, c.name, c.email, sum(l.quantity * l.unit_price) AS total\nFROM orders o JOIN customers c ON c.id = o.customer_id\nJOIN order_lines l ON l.order_id = o.id WHERE o.created_at >= $1 AND o.status = ANY($2) GROUP BY o.id, o.created_at, c.name, c.email ORDER BY total DESC LIMIT 50',
      900,
      lat(900, 2.0, 7.5),
      lat(890, 2.2, 8.0),
      [
        { before: 'ok', after: 'error 42703', count: 3, example: { conn: 3, seq: 7 }, message: 'column c.email does not exist' },
        { before: 'ok rows 50', after: 'ok rows 49', count: 7, example: { conn: 5, seq: 19 } },
      ],
    ),
  ];
  for (let i = 0; i < 20; i++) {
    const id = (0xf00 + i).toString(16).padStart(16, '0');
    const p50 = 0.1 + i * 0.05;
    ds.push(digest(id, `SELECT * FROM t${i} WHERE id = $1`, 100 - i * 4, lat(100 - i * 4, p50, p50 * 3), i === 5 ? null : lat(100 - i * 4, p50 * 1.1, p50 * 3.3)));
  }
  const tl = timeline();
  return {
    logs: ['/var/log/pgscribe/q.log.1', XSS_LOG],
    target: '127.0.0.1:5433',
    speed: '2',
    startedAt: '2026-12-05T20:00:00.000Z',
    finishedAt: '2026-12-05T20:01:00.000Z',
    durationMs: 60_000,
    slowerThreshold: 2,
    sessions: { total: 120, replayed: 117, failed: 1, firstFailure: 'password authentication failed for user "app"', cut: 2 },
    statements: {
      replayed: 24_512,
      errors: 187,
      changed: 12,
      rate: 408.53,
      notReplayable: { 'redacted statement': 2, 'parameter cut at log-param-max-bytes': 3 },
      skippedWrites: 0,
    },
    digests: ds,
    timeline: tl,
  };
}
