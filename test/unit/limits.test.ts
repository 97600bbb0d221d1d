// Issue 18 part 5, in process: the token bucket, the rate-limits parser (flags, the JSON form,
// the compact form, bad input refused with a ConfigError naming the rule, and by --check), the
// rules' matching and buckets, and the per-user / per-database session counts.
import t from 'tap';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { ConfigError, parseCommandLine, type Config } from '../../src/config';
import { rateLimits } from '../../src/config/rate-limits';
import { TokenBucket } from '../../src/limits/token-bucket';
import { RateLimiter } from '../../src/limits/rate-limiter';
import { ConnectionLimits, SessionTally } from '../../src/limits/connection-limits';
import { jsonFormatter, textFormatter } from '../../src/log/format';
import { leaveTapHooksOutOfChildren } from '../harness/child-env';

// These tests start dist/main.js with spawnSync: without tap's coverage hook, as the harness does.
leaveTapHooksOutOfChildren();

const MAIN = path.resolve(__dirname, '../../../dist/main.js');

function configOf(argv: string[]): Config {
  const cmd = parseCommandLine(argv);
  if (cmd.kind !== 'run' && cmd.kind !== 'check') throw new Error(`expected run/check, got ${cmd.kind}`);
  return cmd.config;
}

t.test('token bucket: burst at once, then one token per 1/qps, waits queue in order, past the bound nothing is taken', async (t) => {
  const b = new TokenBucket(10, 3, 0); // 10 per second: a token every 100 ms
  t.same([b.take(0, 1000), b.take(0, 1000), b.take(0, 1000)], [0, 0, 0], 'the burst goes at once');
  t.equal(b.take(0, 1000), 100, 'the fourth waits one token time');
  t.equal(b.take(0, 1000), 200, 'the fifth queues behind it');
  t.equal(b.take(0, 250), -1, 'the sixth would wait 300 ms: refused with a 250 ms bound');
  t.equal(b.take(0, 300), 300, 'the refused one took nothing: with a 300 ms bound it waits 300');
  t.equal(b.take(350, 1000), 50, 'time earns tokens back: at 350 ms the next is 50 ms away');
  t.notOk(b.fullAt(350), 'not full while tokens are owed');
  t.ok(b.fullAt(10_000), 'full again later, never beyond the burst');
  t.same([b.take(10_000, 0), b.take(10_000, 0), b.take(10_000, 0), b.take(10_000, 0)], [0, 0, 0, -1], 'a long pause earns at most the burst');

  // Over any window the rate holds: burst + qps x window.
  const c = new TokenBucket(20, 5, 0);
  let admitted = 0;
  for (let now = 0; now <= 3000; now += 1) while (c.take(now, 0) === 0) admitted++;
  t.ok(admitted <= 5 + 20 * 3 + 1 && admitted >= 20 * 3, `3 s at 20/s with burst 5: ${admitted} queries`);
  const slow = new TokenBucket(0.5, 1, 0);
  t.same([slow.take(0, 0), slow.take(0, 5000), slow.take(0, 3000)], [0, 2000, -1], 'a fractional rate: one every 2 s');
});

t.test('rate-limits: the JSON form and the compact form give the same rules; matchers are optional', async (t) => {
  const json = configOf(['--rate-limits', '[{"user": "flood", "qps": 50, "burst": 10}, {"database": "reports", "application_name": "etl", "qps": 0.5}]']);
  const compact = configOf(['--rate-limits', ' user=flood, qps=50, burst=10 ; database=reports,application_name=etl,qps=0.5 ']);
  const want = [
    { user: 'flood', qps: 50, burst: 10 },
    { database: 'reports', application_name: 'etl', qps: 0.5, burst: 1 },
  ];
  t.strictSame(json.limits.rateLimits, want);
  t.strictSame(compact.limits.rateLimits, want);
  t.strictSame(configOf(['--rate-limits', '']).limits.rateLimits, [], 'empty: no rules');
  t.strictSame(configOf(['--rate-limits', '[]']).limits.rateLimits, []);
  t.strictSame(configOf([]).limits, { ...configOf([]).limits, maxUserConnections: 0, maxDbConnections: 0, rateLimits: [], rateLimitMaxDelayMs: 1000 }, 'defaults: no limits, 1000 ms');
  t.strictSame(rateLimits([{ qps: 1 }], 'rate-limits'), [{ qps: 1, burst: 1 }], 'a rule with no matcher matches everyone');
});

t.test('rate-limits: bad rules are ConfigErrors naming the setting and the rule', async (t) => {
  const bad: [string, RegExp][] = [
    ['{"user": "a", "qps": 1}', /expected an array/],
    ['[{"user": "a"}]', /rule 0: "qps" is required/],
    ['[{"qps": 0}]', /rule 0: "qps" must be more than 0/],
    ['[{"qps": -3}]', /rule 0: "qps" must be more than 0/],
    ['[{"qps": 2000000}]', /rule 0: "qps" must be more than 0 and at most 1000000/],
    ['[{"qps": "fast"}]', /rule 0: "qps" must be a number/],
    ['[{"qps": 1}, {"qps": 1, "burst": 0}]', /rule 1: "burst" must be an integer from 1/],
    ['[{"qps": 1, "burst": 2.5}]', /rule 0: "burst" must be an integer/],
    ['[{"qps": 1, "usr": "a"}]', /rule 0: unknown field "usr" \(known: user, database, application_name, qps, burst\)/],
    ['[{"qps": 1, "user": ""}]', /rule 0: "user" must be a non-empty string/],
    ['[{"qps": 1, "database": 5}]', /rule 0: "database" must be a non-empty string/],
    ['[42]', /rule 0: expected an object/],
    ['[{"qps": 1}', /expected a JSON array of rules/],
    ['user=a', /rule 0: "qps" is required/],
    ['user=a,qps=x', /rule 0: "qps" must be a number, got "x"/],
    ['qps=1;;qps=2', /rule 1: empty/],
    ['qps=1;user', /rule 1: expected NAME=VALUE, got "user"/],
    ['qps=1,qps=2', /rule 0: qps given twice/],
    ['qps=1,colour=red', /rule 0: unknown field "colour"/],
  ];
  for (const [raw, msg] of bad) {
    let err: unknown = null;
    try {
      configOf(['--rate-limits', raw]);
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof ConfigError, `${raw}: a ConfigError`);
    t.equal((err as ConfigError).key, '--rate-limits', `${raw}: names --rate-limits`);
    t.match((err as Error).message, msg, `${raw}: ${(err as Error).message}`);
  }
  for (const [flag, value] of [
    ['--max-user-connections', '-1'],
    ['--max-db-connections', 'many'],
    ['--rate-limit-max-delay-ms', '600001'],
  ] as const) {
    t.throws(() => configOf([flag, value]), { code: 'PGSCRIBE_CONFIG', key: flag }, `${flag} ${value} is refused`);
  }
});

t.test('--check refuses a bad rule, and shows good ones as a config file would hold them', async (t) => {
  const bad = spawnSync(process.execPath, [MAIN, '--check', '--log', 'none', '--rate-limits', 'user=flood,qps=0'], { encoding: 'utf8', timeout: 30_000 });
  t.equal(bad.status, 1, 'exit status 1');
  t.equal(bad.stdout, '');
  t.match(bad.stderr, /rate-limits: rule 0: "qps" must be more than 0/);
  const good = spawnSync(process.execPath, [MAIN, '--check', '--log', 'none', '--max-user-connections', '2', '--rate-limits', 'user=flood,qps=20,burst=5'], { encoding: 'utf8', timeout: 30_000 });
  t.equal(good.status, 0, good.stderr);
  const shown = JSON.parse(good.stdout) as Record<string, unknown>;
  t.strictSame(shown['rate-limits'], [{ user: 'flood', qps: 20, burst: 5 }]);
  t.equal(shown['max-user-connections'], 2);
  t.equal(shown['rate-limit-max-delay-ms'], 1000);
});

t.test('rate limiter: first matching rule wins; one bucket per (rule, user, database, application_name)', async (t) => {
  const rl = new RateLimiter(
    [
      { user: 'flood', database: 'db1', qps: 1, burst: 1 },
      { user: 'flood', qps: 1, burst: 2 },
      { application_name: 'etl', qps: 1, burst: 3 },
    ],
    0,
  );
  t.equal(rl.match('flood', 'db1', 'x'), 0);
  t.equal(rl.match('flood', 'db2', 'etl'), 1, 'the first that matches, not the most specific later one');
  t.equal(rl.match('alice', 'db2', 'etl'), 2);
  t.equal(rl.match('alice', 'db2', 'psql'), -1);
  t.equal(rl.forSession('alice', 'db2', 'psql'), null, 'no rule: no gate');
  const a = rl.forSession('flood', 'db2', 'x')!;
  const b = rl.forSession('flood', 'db2', 'x')!;
  const other = rl.forSession('flood', 'db3', 'x')!;
  t.equal(a.rule, 'rate-limits rule 1 (user=flood)');
  t.equal(rl.size, 2, 'two keys, two buckets');
  const now = performance.now();
  t.same([a.take(now), b.take(now), a.take(now)], [0, 0, -1], 'sessions of one key share its burst of 2');
  t.equal(other.take(now), 0, 'another database has its own bucket');
  a.release();
  a.release();
  b.release();
  const split = new RateLimiter([{ qps: 10, burst: 4 }], 1000, 2).forSession('u', 'd', 'a')!;
  const t0 = performance.now();
  t.same([split.take(t0), split.take(t0), Math.round(split.take(t0))], [0, 0, 200], 'with 2 processes each holds half the rate and burst');
  t.equal(split.qps, 10, 'the message names the rule as configured');
});

t.test('connection limits: per user, per database, released, and tallied per process', async (t) => {
  const l = new ConnectionLimits(2, 3);
  t.equal(l.take({ user: 'a', database: 'x' }), null);
  t.equal(l.take({ user: 'a', database: 'y' }), null);
  t.equal(l.take({ user: 'a', database: 'z' }), 'user', "a's third session");
  t.equal(l.take({ user: 'b', database: 'x' }), null, 'another user still gets in');
  t.equal(l.take({ user: 'c', database: 'x' }), null);
  t.equal(l.take({ user: 'd', database: 'x' }), 'database', "x's fourth session");
  t.equal(l.ofUser('d'), 0, 'a refused session is not counted');
  l.release({ user: 'a', database: 'x' });
  t.equal(l.take({ user: 'a', database: 'z' }), null, 'a slot freed is free');
  t.equal(l.take({ user: 'd', database: 'x' }), null, 'and x has room again');
  t.notOk(new ConnectionLimits(0, 0).active, '0: no limit');
  const none = new ConnectionLimits(0, 0);
  for (let i = 0; i < 100; i++) t.equal(none.take({ user: 'a', database: 'x' }), null, `session ${i} with no limits`);
  t.equal(none.keys, 0, 'and without limits nothing is counted (no map entry per user on the admission path)');

  const tally = new SessionTally();
  tally.add({ user: 'a', database: 'x' });
  tally.add({ user: 'a', database: 'x' });
  tally.add({ user: 'b', database: 'x' });
  t.ok(tally.remove({ user: 'b', database: 'x' }));
  t.notOk(tally.remove({ user: 'b', database: 'x' }), 'nothing left to remove');
  t.same(tally.drain(), [{ who: { user: 'a', database: 'x' }, n: 2 }], 'a dead process gives back what it held');
  t.same(tally.drain(), []);
});

t.test('query log: a refused query is marked refused=rate-limit, in text and JSON', async (t) => {
  const s = { id: 3, user: 'flood', database: 'db', client: '127.0.0.1:5000' };
  const now = Date.UTC(2026, 11, 5, 14, 0, 0, 0);
  const r = { type: 'E' as const, statement: 's1', portal: '', sql: 'select 1', params: null, refused: 'rate-limit' as const };
  t.equal(textFormatter({ params: true, paramMaxBytes: 256 })(s, r, now), '2026-12-05T14:00:00.000Z conn=3 flood@db 127.0.0.1:5000 E stmt=s1 refused=rate-limit sql=select 1\n');
  t.match(JSON.parse(jsonFormatter({ params: true, paramMaxBytes: 256 })(s, r, now)), { type: 'E', refused: 'rate-limit', sql: 'select 1' });
  const plain = { ...r, refused: undefined };
  t.notMatch(textFormatter({ params: true, paramMaxBytes: 256 })(s, plain, now), /refused/, 'absent otherwise');
});
