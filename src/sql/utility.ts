/**
 * Session state and the other utility statements (reason 'session-state' unless said otherwise;
 * none is cacheable):
 *
 *     SET x / SET SESSION x / SET ROLE / SET SESSION AUTHORIZATION /
 *       SET SESSION CHARACTERISTICS, RESET x / RESET ALL / RESET ROLE
 *                                                    -> changesSettings, does not taint: the
 *       cache asks the session for its settings and role again (cache/probe.ts) before its next
 *       cached read, so the key holds what SET changed, whatever it was
 *     SET LOCAL ... / SET TRANSACTION / SET CONSTRAINTS -> neither: it ends with the
 *       transaction, and nothing is cached inside a transaction block anyway
 *     DISCARD ...                                    -> taints (as issue 4 lists it)
 *     LISTEN                                         -> taints; UNLISTEN does not
 *     LOAD                                           -> taints
 *     PREPARE name AS stmt                           -> taints only when stmt would
 *     DEALLOCATE                                     -> does not taint; reason 'deallocate' (the
 *       cache's statement ledger forgets the session's prepared statements)
 *     DECLARE c CURSOR ... FOR query, FETCH, MOVE, CLOSE -> 'utility', do not taint (DECLARE:
 *       unless its query would; its tables and writes are the query's)
 *     SHOW, VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, NOTIFY -> 'utility', not writes
 *     LOCK                                           -> 'locking', not a write, tables its names
 *     EXECUTE                                        -> 'unknown', a write with tables null (the
 *       prepared text is not known here); does not taint
 *     CALL, DO                                       -> 'write', tables null (they may write
 *       anything); do not taint (facts: DO and EXECUTE are opaque, CALL calls its procedure)
 *
 * CREATE TEMP ... (ddl.ts) and SELECT INTO TEMP (dml.ts) taint too ('temp-table'), and so does a
 * statement calling set_config() (calls.ts).
 */
import { DOT, LP } from './lexer';
import { scanCalls } from './calls';
import { scanRefs } from './refs';
import { CUSTOM_SETTING_NAME, result, UNKNOWN_TAINT, type SqlClass } from './sql-class';
import { Facts, relationList, type ClassifyRange, type Stmt } from './stmt';

/**
 * SET or RESET of the setting named at i. A custom setting (a dotted name: app.tenant) is one
 * pg_settings does not list, so the cache's probe must be told its name; one whose name is not
 * plain words (quoted, or not understood) taints the session instead.
 */
function settingsChange(s: Stmt, i: number): SqlClass {
  const cls = result(false, 'session-state', false, [], false);
  const named = s.name(i);
  if (named === null) return result(false, 'session-state', true, [], false);
  if (!named[0].includes('.')) return { ...cls, changesSettings: true };
  const name = named[0];
  if (!CUSTOM_SETTING_NAME.test(name)) return result(false, 'session-state', true, [], false);
  return { ...cls, changesSettings: true, customSettings: [name] };
}

/**
 * The verdict when the statement whose first keyword kw is at p (up to b) is one of the above;
 * null when it is something else. inner classifies the statement PREPARE and DECLARE hold.
 */
export function classifyUtility(s: Stmt, kw: string, p: number, b: number, inner: ClassifyRange): SqlClass | null {
  switch (kw) {
    case 'set': {
      // `SET local.tenant = 1` sets a custom setting of class "local": a word followed by a dot
      // is the setting's name, not SET LOCAL / TRANSACTION / CONSTRAINTS / SESSION.
      const n = s.k(p + 2) === DOT ? '' : s.w(p + 1);
      const local = n === 'local' || n === 'transaction' || n === 'constraints';
      return local ? result(false, 'session-state', false, [], false) : settingsChange(s, n === 'session' ? p + 2 : p + 1);
    }
    case 'reset':
      return settingsChange(s, p + 1);
    case 'discard': case 'listen': case 'load':
      return result(false, 'session-state', true, [], false);
    case 'unlisten':
      return result(false, 'session-state', false, [], false);
    case 'deallocate':
      return result(false, 'deallocate', false, [], false);
    case 'prepare': {
      let j = p + 1;
      while (j < b && s.w(j) !== 'as') j = s.k(j) === LP ? s.match[j]! + 1 : j + 1;
      if (j + 1 >= b) return UNKNOWN_TAINT();
      const stmt = inner(s, j + 1, b);
      return result(false, 'session-state', stmt.taintsSession, [], false);
    }
    case 'execute':
      s.out.opaque = true;
      s.out.writesUnknown = true;
      return result(false, 'unknown', false, null, true);
    case 'declare': {
      let j = p + 1;
      while (j < b && s.w(j) !== 'for') j++;
      if (j + 1 >= b) return UNKNOWN_TAINT();
      const query = inner(s, j + 1, b);
      return result(false, 'utility', query.taintsSession, query.tables, query.writes);
    }
    case 'fetch': case 'move': case 'close': case 'show': case 'checkpoint': case 'vacuum':
    case 'analyze': case 'analyse': case 'cluster': case 'reindex': case 'notify':
      return result(false, 'utility', false, [], false);
    case 'lock': {
      const list = relationList(s, p + 1);
      return result(false, 'locking', false, list === null ? null : list[0], false);
    }
    case 'call': case 'do': {
      // Facts: DO runs code the text only quotes; CALL p(args) calls p and what its arguments call.
      if (kw === 'do') s.out.opaque = true;
      else {
        const f = new Facts();
        scanCalls(s, f, p + 1, b);
        scanRefs(s, f, p + 1, b);
      }
      s.out.writesUnknown = true;
      return result(false, 'write', false, null, true);
    }
  }
  return null;
}
