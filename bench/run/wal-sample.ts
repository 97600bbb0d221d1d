/**
 * What a cell of `make bench` reads of the wal-mode targets (pgscribe-cache-wal): their stats line
 * (wal_commits, wal_lag_p99_ms...) and the CPU of their walsenders (/proc/<pid>/stat of the
 * backends streaming to them), before and after the run.
 *
 * The change stream runs in the pgscribe process, so its consumer's CPU is part of the proxy CPU
 * the cell already charges; two figures isolate it. During a wal target's own run: its walsender's
 * CPU, and (in the report) its proxy CPU minus pgscribe-cache's on the same workload. During every
 * other target's run: the wal target has no clients, yet its stream carries that run's writes
 * (any session's commit on the database), so its proxy CPU then is the consumer's, plus its
 * timers (catalog poll, pings) that run with no writes too. Those are the bystander figures.
 */
import { cpuTicks, treeCpuTicks } from '../../test/harness/proc';
import type { Target } from './target';

/** A wal target's figures over one run it served. */
export interface WalCell {
  /** Committed transactions its stream carried during the run (wal_commits; anyone's, on the database). */
  commits: number;
  /** Of those, the ones that dropped cached answers (wal_invalidations). */
  invalidations: number;
  /** Commits through it whose ReadyForQuery waited for the stream (wal_commit_waits). */
  commitWaits: number;
  /** Such waits past cache-wal-wait-ms: the database's answers were dropped (wal_commit_wait_timeouts). */
  commitWaitTimeouts: number;
  /**
   * wal_lag_p99_ms and wal_lag_max_ms at the end of the run. The proxy keeps one lag histogram
   * for its life: it covers every commit its stream has carried so far, its earlier runs' and the
   * other targets' included.
   */
  lagP99Ms: number;
  lagMaxMs: number;
  /** CPU of its walsender(s) during the run, ms; null when one (re)started during the run. */
  walsenderCpuMs: number | null;
}

/** A wal target during another target's run: no clients of its own, its stream still reading. */
export interface Bystander {
  target: string;
  /** Commits its stream carried during the run. */
  commits: number;
  /** Its process tree's CPU during the run, ms. */
  proxyCpuMs: number;
  /** Its walsender(s)' CPU during the run, ms; null when one (re)started. */
  walsenderCpuMs: number | null;
}

interface Mark {
  target: Target;
  stats: Record<string, number>;
  senders: number[];
  /** CPU ticks: the proxy's tree, and each walsender's (null: gone). */
  proxyTicks: number;
  senderTicks: (number | null)[];
}

/** The wal targets' stats and walsender pids (queries: before the CPU window opens). */
export async function walStatsBefore(targets: readonly Target[]): Promise<Omit<Mark, 'proxyTicks' | 'senderTicks'>[]> {
  const out: Omit<Mark, 'proxyTicks' | 'senderTicks'>[] = [];
  for (const t of targets) {
    if (t.wal === undefined) continue;
    out.push({ target: t, stats: await t.wal.stats(), senders: await t.wal.senderPids() });
  }
  return out;
}

/** CPU ticks now (no query: the CPU window's edge). */
export function walTicks(marks: readonly Omit<Mark, 'proxyTicks' | 'senderTicks'>[]): Mark[] {
  return marks.map((m) => ({ ...m, proxyTicks: treeCpuTicks(m.target.pid!), senderTicks: m.senders.map(cpuTicks) }));
}

/**
 * The figures of the run between `before` and `after` (ticks read at each edge): for the measured
 * target t its WalCell, for the other wal targets their Bystander lines. Queries after the window.
 */
export async function walFigures(
  t: Target,
  before: readonly Mark[],
  after: readonly Mark[],
  clkTck: number,
): Promise<{ wal: WalCell | null; bystanders: Bystander[] }> {
  let wal: WalCell | null = null;
  const bystanders: Bystander[] = [];
  for (const [i, b] of before.entries()) {
    const a = after[i]!;
    const probe = b.target.wal!;
    const stats = await probe.stats();
    const sendersNow = await probe.senderPids();
    const same = sendersNow.length === b.senders.length && sendersNow.every((p) => b.senders.includes(p)) && a.senderTicks.every((x) => x !== null);
    const senderMs = same ? (a.senderTicks.reduce<number>((s, x, j) => s + x! - b.senderTicks[j]!, 0) / clkTck) * 1000 : null;
    const d = (k: string) => (stats[k] ?? 0) - (b.stats[k] ?? 0);
    if (b.target === t) {
      wal = {
        commits: d('wal_commits'),
        invalidations: d('wal_invalidations'),
        commitWaits: d('wal_commit_waits'),
        commitWaitTimeouts: d('wal_commit_wait_timeouts'),
        lagP99Ms: stats['wal_lag_p99_ms'] ?? NaN,
        lagMaxMs: stats['wal_lag_max_ms'] ?? NaN,
        walsenderCpuMs: senderMs,
      };
    } else {
      bystanders.push({ target: b.target.name, commits: d('wal_commits'), proxyCpuMs: ((a.proxyTicks - b.proxyTicks) / clkTck) * 1000, walsenderCpuMs: senderMs });
    }
  }
  return { wal, bystanders };
}
