/**
 * Transaction control: BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT,
 * RELEASE, ROLLBACK TO, PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED. Not cacheable,
 * 'transaction-control', txControl set, writes false, except COMMIT PREPARED: it commits writes
 * done earlier, maybe in another session, so it is a write with tables null.
 */
import { result, UNKNOWN_TAINT, type SqlClass, type TxControl } from './sql-class';
import type { Stmt } from './stmt';

/** First words that are transaction control whatever follows (the others are decided below). */
const TX: ReadonlyMap<string, TxControl> = new Map<string, TxControl>([
  ['begin', 'begin'], ['start', 'begin'], ['commit', 'commit'], ['end', 'commit'], ['savepoint', 'savepoint'],
  ['release', 'release'],
]);

function txResult(tx: TxControl): SqlClass {
  return result(false, 'transaction-control', false, [], false, tx);
}

/**
 * The verdict when the statement whose first keyword kw is at p is transaction control (or
 * START without TRANSACTION: unknown); null when it is something else.
 */
export function classifyTransaction(s: Stmt, kw: string, p: number): SqlClass | null {
  if (kw === 'prepare' && s.w(p + 1) === 'transaction') return txResult('prepare-transaction');
  if ((kw === 'commit' || kw === 'rollback') && s.w(p + 1) === 'prepared') {
    if (kw === 'commit') return result(false, 'transaction-control', false, null, true, 'commit-prepared');
    return txResult('rollback-prepared');
  }
  if (kw === 'rollback' || kw === 'abort') {
    let j = p + 1;
    if (s.w(j) === 'work' || s.w(j) === 'transaction') j++;
    if (kw === 'rollback' && s.w(j) === 'to') return txResult('rollback-to');
    return txResult('rollback');
  }
  if (kw === 'start' && s.w(p + 1) !== 'transaction') return UNKNOWN_TAINT();
  const tx = TX.get(kw);
  if (tx !== undefined) return txResult(tx);
  return null;
}
