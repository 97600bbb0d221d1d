/**
 * Conservative classification of one SQL text, as a client sends it (a simple-query `Q` text or a
 * Parse'd statement, possibly with `$n` placeholders), for the result cache and singleflight, and
 * for insight's digests (kind and tables). analyzeSql also returns the text's facts
 * (statement-facts.ts): what it reads, writes, calls, casts to, for the catalog (src/catalog/) to
 * judge; classifySql is its verdict alone.
 *
 * The answer depends on the text (and the options) only: src/cache/policy.ts memoises it per
 * text (numbers folded for queries and plain DML: shape.ts), per standard_conforming_strings setting.
 *
 * ## How it works
 *
 * One tokeniser pass over the text (lexer.ts), then a few linear passes over the tokens of each
 * statement (stmt.ts). A `;` outside quotes and comments separates statements; empty statements
 * (trailing `;`) are ignored. Each statement goes by its first keyword to the file for its kind:
 *
 *   SELECT / VALUES / TABLE / WITH, INSERT / UPDATE / DELETE / MERGE, TRUNCATE   dml.ts
 *     (their FROM lists: from-list.ts; their function calls: calls.ts, functions.ts)
 *   CREATE / ALTER / DROP / GRANT / REVOKE / COMMENT / ... / REFRESH             ddl.ts
 *   BEGIN / COMMIT / ROLLBACK / SAVEPOINT / PREPARE TRANSACTION / ...            transaction.ts
 *   SET / RESET / DISCARD / LISTEN / PREPARE / DEALLOCATE / DECLARE / FETCH /
 *     SHOW / VACUUM / LOCK / EXECUTE / CALL / DO / ...                           utility.ts
 *   EXPLAIN, COPY                                                                explain-copy.ts
 *
 * ## Rules (when in doubt: not cacheable; for writes: tables null = invalidate the whole database)
 *
 * Each file states the rules for its kind; these hold across them.
 * - Cacheable = exactly one statement that is SELECT / VALUES / TABLE t / WITH ... SELECT with
 *   nothing volatile, locking, writing, temporary or catalog in it (dml.ts has the list).
 * - Writes (writes = true): INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY ... FROM, SELECT INTO,
 *   data-modifying CTEs, DDL (CREATE/ALTER/DROP/GRANT/REVOKE/COMMENT/...), CALL, DO, REFRESH
 *   MATERIALIZED VIEW, EXECUTE (the prepared text is not known here), COMMIT PREPARED (it commits
 *   writes done earlier, maybe in another session: tables null), EXPLAIN ANALYZE of a write, a
 *   call of a function not known to be free of side effects, and any statement not recognised
 *   ('unknown').
 * - `tables` of a write are its *target* relations only; null when they cannot be named (a target
 *   not parsed, CASCADE, any DDL (ddl.ts says why), CALL/DO/EXECUTE, an unknown function).
 *   `tables` of a read are every relation named after FROM / JOIN at any depth, plus `TABLE t`.
 *   The name format (case folding, quoting, qualification kept as written, so match by
 *   relationName()) is in names.ts.
 * - taintsSession: the statement changes session state that the cache key does not cover, so the
 *   session must not be served from the cache from now on (utility.ts has the table; CREATE TEMP
 *   and SELECT INTO TEMP, set_config() and unknown texts taint too).
 * - A text the tokeniser rejects (unterminated quote or comment, U&'...' escapes) or whose first
 *   word is unknown is 'unknown', a write with tables null, and taints (it might be a session
 *   command we do not parse).
 * - More than one statement: 'multi-statement', never cacheable; writes when any part writes;
 *   tables = union over the writing parts (over all parts when none writes), null if any is null;
 *   taintsSession when any part taints; txControl null (track the transaction state from
 *   ReadyForQuery, not from text).
 *
 * ## Known limitations (what the integration must do about them)
 *
 * - A view, rule, trigger, foreign-key ON DELETE/UPDATE CASCADE / SET NULL, or a function called
 *   inside a view/default/trigger can read or write relations that the SQL text does not name,
 *   and a view can hide a volatile function. `SELECT * FROM v` is cacheable under the name `v`
 *   only, and `DELETE FROM parent` invalidates `parent` only. The integration must bound this
 *   with the TTL (default 1 s), offer per-pattern `never` rules, and ideally expand names with a
 *   catalog lookup (pg_class.relkind for views, pg_depend/pg_rewrite for view dependencies,
 *   pg_trigger, pg_constraint confdeltype/confupdtype) before trusting invalidation by name.
 * - Parameter values are not seen here: `SELECT $1::timestamptz` is cacheable, but a bound
 *   value 'now' / 'today' makes it volatile. The cache unit refuses to cache when a parameter
 *   value of either format holds one of those words (isVolatileInput, volatile-input.ts). In the
 *   text, any string literal holding one, and any cast of a non-literal to a date/time type, is
 *   volatile (calls.ts, refs.ts, clock-words.ts).
 * - search_path: unqualified names resolve per session; the key covers database + user, and
 *   SET search_path taints, but ALTER ROLE/DATABASE ... SET takes effect for new sessions only
 *   (those DDL statements invalidate everything since their tables are null).
 * - Temporary tables created inside functions are invisible here (no CREATE TEMP text).
 * - Bodies of CREATE FUNCTION ... BEGIN ATOMIC ...; END contain `;` outside quotes and split
 *   into several statements: that text is 'multi-statement' and a write with tables null.
 * - The function allowlist is deliberately small; an unlisted immutable built-in only costs a
 *   cache miss (and, being treated as a possible write, an invalidation of the whole database).
 */
import { LP, SEMI, tokenize } from './lexer';
import { DML_WORDS, READ_START } from './keywords';
import { classifyDdl } from './ddl';
import { classifyDml, classifyTruncate } from './dml';
import { classifyCopy, classifyExplain } from './explain-copy';
import { result, UNKNOWN_TAINT, type ClassifyOptions, type SqlClass } from './sql-class';
import { FactsOut, type StatementFacts } from './statement-facts';
import { Stmt } from './stmt';
import { addUnique } from '../unique-list';
import { classifyTransaction } from './transaction';
import { classifyUtility } from './utility';

export type { ClassifyOptions, SqlClass, SqlReason, TxControl } from './sql-class';
export type { StatementFacts } from './statement-facts';

/** Classifies the statement [a, b) of s (a < b). */
function classifyRange(s: Stmt, a: number, b: number): SqlClass {
  if (!s.balanced) return UNKNOWN_TAINT();
  let p = a;
  while (s.k(p) === LP) p++;
  const kw = s.w(p);
  if (p > a && !READ_START.has(kw)) return UNKNOWN_TAINT();

  const tx = classifyTransaction(s, kw, p);
  if (tx !== null) return tx;
  switch (kw) {
    case 'explain': return classifyExplain(s, p, b, classifyRange);
    case 'truncate': return classifyTruncate(s, p, b);
    case 'copy': return classifyCopy(s, p, classifyRange);
    case 'create': case 'alter': case 'drop': case 'grant': case 'revoke': case 'comment':
    case 'security': case 'import': case 'reassign': case 'refresh':
      return classifyDdl(s, kw, p, b, classifyRange);
  }
  const utility = classifyUtility(s, kw, p, b, classifyRange);
  if (utility !== null) return utility;
  if (READ_START.has(kw) || DML_WORDS.has(kw)) return classifyDml(s, kw, p, a, b);
  return UNKNOWN_TAINT();
}

/** The verdict and the facts of one SQL text (see analyzeSql). */
export interface SqlAnalysis {
  cls: SqlClass;
  facts: StatementFacts;
}

/**
 * Classifies one SQL text (one or more statements) and collects what it touches for the catalog
 * (statement-facts.ts). Pure: the answer depends on the text and the options only, so callers
 * may memoise it per text.
 */
export function analyzeSql(sql: string, opts?: ClassifyOptions): SqlAnalysis {
  const out = new FactsOut();
  const toks = tokenize(sql, opts?.standardConformingStrings !== false);
  if (toks === null) {
    out.opaque = true;
    out.writesUnknown = true;
    return { cls: UNKNOWN_TAINT(), facts: out.done('unknown') };
  }
  const parts: SqlClass[] = [];
  const match = new Int32Array(toks.length).fill(-1);
  const notCall = new Uint8Array(toks.length);
  let start = 0;
  for (let i = 0; i <= toks.length; i++) {
    if (i < toks.length && toks[i]!.k !== SEMI) continue;
    if (i > start) {
      const s = new Stmt(toks, start, i, match, notCall, out);
      const c = classifyRange(s, start, i);
      // A text not understood may be anything (a read whose FROM list was not followed is only that).
      if (c.reason === 'unknown' && c.writes) { out.opaque = true; out.writesUnknown = true; }
      if (c.txControl === 'commit-prepared') out.writesUnknown = true;
      parts.push(c);
    }
    start = i + 1;
  }
  if (parts.length === 0) return { cls: result(false, 'empty', false, [], false), facts: out.done('empty') };
  if (parts.length === 1) {
    const c = parts[0]!;
    // 'volatile' comes from a read only: whether the text alone rules it out is the read's blocker.
    const blocker = c.cacheable ? null : c.reason === 'volatile' ? out.dmlBlocker : c.reason;
    return { cls: c, facts: out.done(blocker) };
  }
  const writes = parts.some((c) => c.writes);
  let tables: string[] | null = [];
  for (const c of parts) {
    if (writes && !c.writes) continue;
    if (c.tables === null) { tables = null; break; }
    for (const t of c.tables) addUnique(tables, t);
  }
  return {
    cls: {
      ...result(false, 'multi-statement', parts.some((c) => c.taintsSession), tables, writes),
      ...(parts.some((c) => c.changesSettings === true) ? { changesSettings: true } : {}),
      ...(parts.some((c) => c.customSettings !== undefined) ? { customSettings: parts.flatMap((c) => c.customSettings ?? []) } : {}),
    },
    facts: out.done('multi-statement'),
  };
}

/**
 * Classifies one SQL text (one or more statements). Pure: the answer depends on the text and the
 * options only, so callers may memoise it per text.
 */
export function classifySql(sql: string, opts?: ClassifyOptions): SqlClass {
  return analyzeSql(sql, opts).cls;
}
