/**
 * `make safety-check`: a randomized black-box checker that looks for any answer through pgscribe
 * that PostgreSQL would not have given.
 *
 * It starts a throwaway PostgreSQL with several tenants' versioned rows behind row-level security,
 * reached through views, a materialized view, a partitioned table, an inheritance parent and
 * child, triggers, cascading foreign keys, two schemas with a same-named table, STABLE and VOLATILE
 * functions (bench/safety/schema.ts); then pgscribe with `--cache --singleflight --cache-ttl 60000`
 * (a long TTL on purpose: only invalidation keeps answers right); then CLIENTS concurrent clients
 * that log in as random roles (with role defaults that an admin changes under them), change their
 * tenant, search_path, float and bytea formats and role both where pgscribe can see it (SET,
 * startup options) and where it cannot (functions calling set_config, DO blocks), and make random
 * reads (simple, extended, named prepared statements) and writes (through tables, views,
 * partitions, inheritance, triggers, cascades, functions, DO).
 *
 * Every read is judged (bench/safety/oracle.ts says exactly what counts as a violation): rows the
 * session's row-level security hides, versions older than a COMMIT acknowledged before the read
 * was sent, rows missing or from the wrong schema, values not formatted as the session's settings
 * say, columns other than PostgreSQL describes, identities and settings not the session's own.
 *
 * Knobs (environment): DURATION (s, default 300), CLIENTS (24), SEED (default: from the clock;
 * printed, to replay the same choices), PGSCRIBE_ARGS (extra flags), WORKERS (0 or 2: --workers),
 * REDIS=1 (--redis with a redis-server started here), BASELINE_MAIN (another build's
 * dist/main.js), NO_CATALOG=1 (leave out --catalog-user postgres, for builds without it),
 * ELSEWHERE=1 (writes straight to PostgreSQL too; ELSEWHERE_LAG_MS, default 2000, is how long
 * after their COMMIT they must be visible), PRINT (violations printed in full, default 20),
 * DIRECT=1 (no pgscribe: the clients talk to PostgreSQL itself; a check of the checker, which must
 * then find nothing).
 *
 * Output: the violations as they happen, a summary line, logs/safety-<timestamp>.json.
 * Exit status 1 when there was any violation, 2 when the run itself failed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from './lib/common';
import { runSafetyCheck, type CheckOptions, type CheckResult } from './safety/run';

function envNum(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v.trim() === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got '${v}'`);
  return n;
}

export function optionsFromEnv(log: (s: string) => void): CheckOptions {
  const workers = process.env['WORKERS'];
  const main = process.env['BASELINE_MAIN'];
  return {
    durationS: envNum('DURATION', 300),
    clients: envNum('CLIENTS', 24),
    seed: envNum('SEED', Date.now() % 1_000_000),
    extraArgs: (process.env['PGSCRIBE_ARGS'] ?? '').split(/\s+/).filter((x) => x !== ''),
    workers: workers === undefined || workers === '' ? null : envNum('WORKERS', 0),
    redis: process.env['REDIS'] === '1',
    catalog: process.env['NO_CATALOG'] !== '1',
    ...(main ? { main: path.resolve(main) } : {}),
    direct: process.env['DIRECT'] === '1',
    elsewhere: process.env['ELSEWHERE'] === '1',
    elsewhereLagMs: envNum('ELSEWHERE_LAG_MS', 2000),
    printLimit: envNum('PRINT', 20),
    log,
  };
}

/** One line: what was checked and what was found. */
export function summaryLine(r: CheckResult): string {
  const t = r.tally;
  const kinds = Object.entries(t.violations).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}=${n}`).join(' ');
  const s = r.proxyStats ?? {};
  return (
    `safety-check seed=${r.seed} duration=${r.durationS}s clients=${r.clients} sessions=${t.sessions} ` +
    `reads=${t.reads} read_errors=${Object.values(t.readErrors).reduce((a, b) => a + b, 0)} ` +
    `writes=${t.writesCommitted} writes_failed=${t.writesFailed} ` +
    `cache_hits=${s['cache_hits'] ?? 0} flight_waiters=${s['cache_waiters'] ?? 0} l2_hits=${s['cache_l2_hits'] ?? 0} ` +
    `violations=${t.totalViolations}${kinds ? ` (${kinds})` : ''}`
  );
}

function writeJson(r: CheckResult): string {
  const dir = path.join(repoRoot(), 'logs');
  fs.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const file = path.join(dir, `safety-${stamp}.json`);
  fs.writeFileSync(file, JSON.stringify({ ...r, summary: summaryLine(r), replay: replayCommand(r) }, null, 2) + '\n');
  return file;
}

function replayCommand(r: CheckResult): string {
  const env = [`SEED=${r.seed}`, `DURATION=${r.durationS}`, `CLIENTS=${r.clients}`];
  for (const k of ['WORKERS', 'REDIS', 'NO_CATALOG', 'PGSCRIBE_ARGS', 'BASELINE_MAIN', 'ELSEWHERE', 'DIRECT']) {
    const v = process.env[k];
    if (v !== undefined && v !== '') env.push(`${k}=${v.includes(' ') ? `'${v}'` : v}`);
  }
  return `make safety-check ${env.join(' ')}`;
}

if (require.main === module) {
  const log = (s: string): void => {
    process.stderr.write(s + '\n');
  };
  runSafetyCheck(optionsFromEnv(log))
    .then((r) => {
      const file = writeJson(r);
      const t = r.tally;
      if (t.totalViolations > 0) {
        log('violations by kind and read:');
        for (const [k, n] of Object.entries(t.violationsByTemplate).sort((a, b) => b[1] - a[1])) log(`  ${n}\t${k}`);
      }
      const errors = Object.entries(t.errors).sort((a, b) => b[1] - a[1]);
      if (errors.length > 0) log(`client errors (sessions ended by them): ${errors.slice(0, 8).map(([k, n]) => `${n}x ${k}`).join('; ')}`);
      process.stdout.write(summaryLine(r) + '\n');
      log(`results: ${path.relative(process.cwd(), file)}; replay: ${replayCommand(r)}`);
      process.exit(t.totalViolations > 0 ? 1 : 0);
    })
    .catch((e: Error) => {
      process.stderr.write(`safety-check: ${e.stack ?? e.message}\n`);
      process.exit(2);
    });
}
