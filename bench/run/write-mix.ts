/**
 * The `write-mix` workload of `make bench` (issue 16): the hot set with 10% writes, some of which
 * fire a trigger that writes a table the reads also touch. Three pgbench scripts, weighted:
 *
 *   hotset.sql@8             SELECT abalance FROM pgbench_accounts WHERE aid = :aid (the `hotset` script)
 *   write-mix-summary.sql@1  SELECT deposits FROM bench_hot_summary WHERE aid = :aid
 *   write-mix-write.sql@1    one of, evenly: UPDATE pgbench_accounts SET abalance = abalance + :delta
 *                            WHERE aid = :aid; or UPDATE bench_hot_deposits SET n = n + 1 WHERE
 *                            aid = :aid, whose AFTER trigger updates bench_hot_summary
 *
 * aid is in 1..1000 everywhere, as in `hotset`. Weighted scripts rather than `\if` in one script:
 * pgbench then reports each script's transactions and mean latency apart, so the writes' latency
 * (held in wal mode until the change stream has applied them) is not averaged into the reads'.
 *
 * What each mode sees: a write to pgbench_accounts names its table, so both modes drop the
 * answers that read it. The trigger's write to bench_hot_summary is named by no statement: ttl mode
 * knows from the catalog that bench_hot_deposits has a trigger and drops the whole database on
 * each such write; wal mode drops what the change stream says changed (bench_hot_deposits and
 * bench_hot_summary).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { psql } from './psql';
import { WRITE_MIX_SYNC_COMMIT } from './settings';

/** The hot set's script (the `hotset` and `hotset-extended` workloads, and 8/10 of `write-mix`). */
export const HOTSET_SQL = '\\set aid random(1, 1000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n';

const SUMMARY_SQL = '\\set aid random(1, 1000)\nSELECT deposits FROM bench_hot_summary WHERE aid = :aid;\n';

const WRITE_SQL = [
  '\\set aid random(1, 1000)',
  '\\set delta random(-5000, 5000)',
  '\\set trigger random(0, 1)',
  '\\if :trigger',
  'UPDATE bench_hot_deposits SET n = n + 1 WHERE aid = :aid;',
  '\\else',
  'UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;',
  '\\endif',
  '',
].join('\n');

/**
 * The tables and trigger write-mix writes, created idempotently after `pgbench -i`. Only
 * write-mix touches them; every table has a primary key, so wal mode's publication streams it.
 */
const SETUP_SQL = `
CREATE TABLE IF NOT EXISTS bench_hot_deposits (aid int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS bench_hot_summary (aid int PRIMARY KEY, deposits bigint NOT NULL DEFAULT 0);
INSERT INTO bench_hot_deposits (aid) SELECT g FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING;
INSERT INTO bench_hot_summary (aid) SELECT g FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION bench_hot_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE bench_hot_summary SET deposits = deposits + (NEW.n - OLD.n) WHERE aid = NEW.aid;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS bench_hot_tally ON bench_hot_deposits;
CREATE TRIGGER bench_hot_tally AFTER UPDATE ON bench_hot_deposits FOR EACH ROW EXECUTE FUNCTION bench_hot_tally();
`;

/** Create write-mix's tables and trigger (idempotent). */
export async function setupWriteMix(pgPort: number): Promise<void> {
  await psql(pgPort, SETUP_SQL);
}

/** A script file in dir, written once (readable by pgbench whatever user it runs as). */
export function scriptFile(dir: string, name: string, text: string): string {
  const f = path.join(dir, name);
  if (!fs.existsSync(f)) {
    fs.writeFileSync(f, text);
    fs.chmodSync(f, 0o644);
  }
  return f;
}

/** pgbench's options for write-mix. */
export function writeMixArgs(dir: string): string[] {
  return [
    '-f',
    `${scriptFile(dir, 'hotset.sql', HOTSET_SQL)}@8`,
    '-f',
    `${scriptFile(dir, 'write-mix-summary.sql', SUMMARY_SQL)}@1`,
    '-f',
    `${scriptFile(dir, 'write-mix-write.sql', WRITE_SQL)}@1`,
    '-M',
    'simple',
  ];
}

/** libpq settings of write-mix's pgbench: its sessions' synchronous_commit (see WRITE_MIX_SYNC_COMMIT). */
export function writeMixEnv(): Record<string, string> {
  return { PGOPTIONS: `-c synchronous_commit=${WRITE_MIX_SYNC_COMMIT}` };
}

/** One script's share of a pgbench run with several scripts. */
export interface ScriptStats {
  /** The script file's name without .sql: hotset, write-mix-summary, write-mix-write. */
  script: string;
  transactions: number;
  latencyMeanMs: number;
}

/**
 * The per-script sections pgbench prints when it runs several scripts:
 * "SQL script 1: /dir/hotset.sql\n - weight: 8 ...\n - 1234 transactions (80.1% of total, tps = ...)\n ...
 *  - latency average = 1.234 ms". Empty for a single script.
 */
export function parseScripts(stdout: string): ScriptStats[] {
  const out: ScriptStats[] = [];
  const parts = stdout.split(/^SQL script \d+: /m).slice(1);
  for (const part of parts) {
    const name = path.basename(part.slice(0, part.indexOf('\n')).trim()).replace(/\.sql$/, '');
    const n = /- (\d+) transactions \(/.exec(part);
    const lat = /- latency average = ([\d.]+) ms/.exec(part);
    out.push({ script: name, transactions: n ? Number(n[1]) : NaN, latencyMeanMs: lat ? Number(lat[1]) : NaN });
  }
  return out;
}

/** Several pgbench processes' per-script figures added up (latency weighted by transactions). */
export function mergeScripts(runs: ScriptStats[][]): ScriptStats[] | null {
  const by = new Map<string, { n: number; sum: number }>();
  for (const r of runs) {
    for (const s of r) {
      const a = by.get(s.script) ?? { n: 0, sum: 0 };
      a.n += s.transactions;
      a.sum += s.latencyMeanMs * s.transactions;
      by.set(s.script, a);
    }
  }
  if (by.size === 0) return null;
  return [...by].map(([script, a]) => ({ script, transactions: a.n, latencyMeanMs: a.n > 0 ? a.sum / a.n : NaN }));
}
