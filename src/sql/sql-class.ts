/**
 * The classifier's verdict on one SQL text (SqlClass) and the values its fields take. classify.ts
 * re-exports these types; the statement-kind files build verdicts with result().
 */

/**
 * Why a statement is not cacheable (null when it is):
 * - 'write': INSERT/UPDATE/DELETE/MERGE, TRUNCATE, COPY ... FROM, SELECT INTO, data-modifying
 *   CTEs, CALL, DO, REFRESH MATERIALIZED VIEW, EXPLAIN ANALYZE of a write, COPY (a writing query);
 * - 'ddl': CREATE/ALTER/DROP/GRANT/REVOKE/COMMENT/SECURITY LABEL/IMPORT/REASSIGN (and EXPLAIN
 *   ANALYZE of one);
 * - 'locking': LOCK, or a read with FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE;
 * - 'volatile': a read calling a clock, random, sequence or unknown function, or reading a clock
 *   keyword or string;
 * - 'multi-statement': more than one statement in the text;
 * - 'transaction-control': BEGIN, COMMIT, ROLLBACK, SAVEPOINT ... (txControl says which);
 * - 'session-state': SET, RESET, DISCARD, LISTEN, UNLISTEN, LOAD, PREPARE;
 * - 'deallocate': DEALLOCATE (the session's prepared statements go);
 * - 'temp-table': CREATE TEMP ..., SELECT INTO TEMP, reads of pg_temp relations;
 * - 'catalog': reads of pg_* relations or information_schema;
 * - 'utility': SHOW, EXPLAIN, VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, NOTIFY, COPY ... TO,
 *   DECLARE, FETCH, MOVE, CLOSE;
 * - 'empty': no statement at all (only comments, spaces or `;`);
 * - 'unknown': a text not understood (not tokenised, unknown first word, a FROM list not
 *   followed, EXECUTE of a prepared statement whose text is not known here).
 */
export type SqlReason =
  | 'write'
  | 'ddl'
  | 'locking'
  | 'volatile'
  | 'multi-statement'
  | 'transaction-control'
  | 'session-state'
  | 'deallocate'
  | 'temp-table'
  | 'catalog'
  | 'utility'
  | 'empty'
  | 'unknown';

/**
 * Which transaction-control statement it is: BEGIN / START TRANSACTION ('begin'), COMMIT / END
 * ('commit'), ROLLBACK / ABORT ('rollback'), SAVEPOINT, RELEASE [SAVEPOINT], ROLLBACK TO
 * [SAVEPOINT] ('rollback-to'), PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED.
 */
export type TxControl =
  | 'begin'
  | 'commit'
  | 'rollback'
  | 'savepoint'
  | 'release'
  | 'rollback-to'
  | 'prepare-transaction'
  | 'commit-prepared'
  | 'rollback-prepared';

/** The classifier's verdict on one SQL text. */
export interface SqlClass {
  /** A single read-only statement that may be served from cache / shared by singleflight. */
  cacheable: boolean;
  /** Why not; null when cacheable. */
  reason: SqlReason | null;
  /** The statement changes session state that makes the session uncacheable from now on. */
  taintsSession: boolean;
  /**
   * The statement changes settings or the role (SET, RESET), all of which the cache's probe of
   * the session reads (cache/probe.ts): the session is asked again before its next cached read,
   * rather than tainted.
   */
  changesSettings?: boolean;
  /** With changesSettings: the custom settings (a dotted name: app.tenant) it changes. */
  customSettings?: string[];
  /** Relations read (reads) or written (writes); see classify.ts for the name format. Null when
   * they cannot be determined (a write then invalidates the whole database). */
  tables: string[] | null;
  /** True when it modifies (or may modify) data or schema. */
  writes: boolean;
  /** Set for a single transaction-control statement; null otherwise (also for a multi-statement
   * text: track the transaction state from ReadyForQuery, not from text). */
  txControl: TxControl | null;
}

/**
 * A custom setting's name as the classifier reports it (lower case, unquoted words joined by
 * dots); the cache's probe writes such names into its SQL, so nothing else may pass.
 */
export const CUSTOM_SETTING_NAME = /^[a-z_][a-z0-9_$]*(\.[a-z_][a-z0-9_$]*)+$/;

/** How to read a text. */
export interface ClassifyOptions {
  /** The session's standard_conforming_strings (ParameterStatus). Default true. */
  standardConformingStrings?: boolean;
}

/** A fresh verdict (callers may change the one they get: each call builds a new object). */
export function result(cacheable: boolean, reason: SqlReason | null, taintsSession: boolean, tables: string[] | null,
  writes: boolean, txControl: TxControl | null = null): SqlClass {
  return { cacheable, reason, taintsSession, tables, writes, txControl };
}

/** A text not understood: in doubt, a write of anything that taints the session. */
export const UNKNOWN_TAINT = (): SqlClass => result(false, 'unknown', true, null, true);
