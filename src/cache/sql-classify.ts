/**
 * Conservative classification of one SQL text, as a client sends it (a simple-query `Q` text or a
 * Parse'd statement, possibly with `$n` placeholders), for the result cache and singleflight.
 *
 * Not integrated yet: the cache layer (issue 4) calls `classifySql(sql)` per statement text and
 * should memoise the answer per text (or per named statement): the answer depends on the text only.
 *
 * ## How it works
 *
 * One tokeniser pass over the text (no regular expressions per character, no allocation per
 * character, one small object per token), then a few linear passes over the tokens of each
 * statement. The tokeniser understands `--` and nested `/* *\/` comments, '...' strings with ''
 * escapes, E'...' strings with backslash escapes, B''/X''/N'' strings, $$...$$ and $tag$...$tag$
 * dollar quotes, "quoted identifiers" (case kept, may contain dots and spaces), numbers, operators
 * and `$n` placeholders. A `;` outside those separates statements; empty statements (trailing `;`)
 * are ignored. It assumes standard_conforming_strings = on (the default since PostgreSQL 9.1);
 * pass `{ standardConformingStrings: false }` for a session whose server reported `off`.
 *
 * ## Rules (when in doubt: not cacheable; for writes: tables null = invalidate the whole database)
 *
 * - Cacheable = exactly one statement that is SELECT / VALUES / TABLE t / WITH ... SELECT,
 *   without SELECT INTO, without FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE (at any depth),
 *   without data-modifying CTEs, without volatile functions, without `pg_temp` relations, and
 *   whose tables could all be read from the FROM / JOIN lists (else 'unknown').
 * - Functions: a call is allowed only when its name is in the modest `SAFE_FUNCTIONS` allowlist
 *   (unqualified or `pg_catalog.`-qualified). A name in `UNCACHEABLE_FUNCTIONS` is 'volatile'.
 *   Any other call (a user-defined function, another schema, a "quoted" name) cannot be proven
 *   immutable nor free of side effects: 'volatile', and the statement counts as a write with
 *   tables null (it may write anything). Data-changing built-ins (nextval, setval, lo_*,
 *   dblink*) are writes too; nextval('seq') / setval('seq', ...) with a plain literal name write
 *   table `seq`. set_config(...) taints the session. The SQL keywords CURRENT_DATE, CURRENT_TIME,
 *   CURRENT_TIMESTAMP, LOCALTIME, LOCALTIMESTAMP are volatile (with or without parentheses), and
 *   so are the date/time input strings 'now', 'today', 'tomorrow', 'yesterday' ('now'::timestamptz).
 *   CURRENT_USER, SESSION_USER, CURRENT_ROLE, USER, CURRENT_CATALOG, CURRENT_SCHEMA and version()
 *   are cacheable: stable within a session, the cache key covers database and user, and SET ROLE
 *   / SET SESSION AUTHORIZATION / SET search_path taint the session.
 *   Not calls: casts (`::numeric(10,2)`, CAST(x AS varchar(3))), keyword constructs (IN, EXISTS,
 *   ANY, ALL, ARRAY, ROW, VALUES, OVER, FILTER, WITHIN GROUP ...), column lists of aliases and CTEs.
 * - Writes (writes = true): INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY ... FROM, SELECT INTO,
 *   data-modifying CTEs, DDL (CREATE/ALTER/DROP/GRANT/REVOKE/COMMENT/...), CALL, DO, REFRESH
 *   MATERIALIZED VIEW, EXECUTE (the prepared text is not known here), COMMIT PREPARED (it commits
 *   writes done earlier, maybe in another session: tables null), EXPLAIN ANALYZE of a write,
 *   and any statement not recognised ('unknown').
 * - `tables` of a write are its *target* relations only (INSERT INTO t, UPDATE t, DELETE FROM t,
 *   MERGE INTO t, TRUNCATE t1, t2, COPY t FROM, CREATE TABLE t, CREATE INDEX ... ON t, ALTER TABLE
 *   t, DROP TABLE t1, t2, SELECT INTO t, REFRESH MATERIALIZED VIEW v). Null when: a target cannot
 *   be parsed, TRUNCATE/DROP ... CASCADE, any other DDL (views, functions, policies, grants, roles
 *   change answers of other relations), CALL/DO/EXECUTE, an unknown function is called.
 *   `tables` of a read are every relation named after FROM / JOIN (at any depth, including
 *   subqueries, CTE bodies and parenthesised joins) plus `TABLE t`. CTE names are included as if
 *   they were tables: a superset, harmless for invalidation.
 * - Names: unquoted identifiers folded to lower case; a quoted identifier that is a plain lower
 *   case name is written bare ("t" -> t), any other is written quoted the way quote_ident does
 *   ("My Table" -> "My Table", "a.b" -> "a.b" with its quotes), so splitting a name on dots
 *   outside quotes is unambiguous. Qualification is kept as written: public.t stays public.t and
 *   t stays t. The integrator must therefore match by the last component (relation name), or it
 *   will miss that `UPDATE public.t` changes what `SELECT ... FROM t` returns.
 * - Transaction control (BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT,
 *   RELEASE, ROLLBACK TO, PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED): not
 *   cacheable, 'transaction-control', txControl set, writes false (COMMIT PREPARED: see above).
 * - Session state (reason 'session-state' unless said otherwise), taintsSession:
 *     SET x / SET SESSION x / SET ROLE / SET SESSION AUTHORIZATION /
 *       SET SESSION CHARACTERISTICS                 -> taints
 *     SET LOCAL ... / SET TRANSACTION / SET CONSTRAINTS -> does not taint: it ends with the
 *       transaction, and nothing is cached inside a transaction block anyway
 *     RESET x / RESET ALL / RESET ROLE               -> taints (the session already was, or we
 *       cannot tell what RESET restores from; untainting is not this module's business)
 *     DISCARD ...                                    -> taints (as issue 4 lists it)
 *     LISTEN                                         -> taints; UNLISTEN does not
 *     LOAD                                           -> taints
 *     CREATE TEMP/TEMPORARY/LOCAL TEMP/GLOBAL TEMP TABLE|VIEW|SEQUENCE, CREATE TABLE pg_temp.x,
 *       SELECT INTO TEMP                             -> taints, reason 'temp-table', writes
 *     PREPARE name AS stmt                           -> taints only when stmt would
 *     DEALLOCATE                                     -> does not taint; reason 'deallocate' (the
 *       cache's statement ledger forgets the session's prepared statements)
 *     DECLARE c CURSOR ... FOR query, FETCH, MOVE, CLOSE -> 'utility', do not taint
 *   A statement calling set_config() taints. A text the tokeniser rejects (unterminated quote or
 *   comment, U&'...' escapes) or whose first word is unknown is 'unknown', a write with tables
 *   null, and taints (it might be a session command we do not parse).
 * - Reads of `pg_*` relations (system catalogs and views, some per-session or live state such as
 *   pg_prepared_statements and pg_stat_activity) and of `information_schema.*`: 'catalog'.
 * - Reads of `pg_temp.x` (or `pg_temp_N.x`): 'temp-table'. Unqualified reads of a temp table are
 *   covered by the session taint of the CREATE TEMP that made it.
 * - SHOW, EXPLAIN (without ANALYZE), VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, NOTIFY,
 *   COPY ... TO, FETCH/MOVE/CLOSE: 'utility', not cacheable, not writes. LOCK: 'locking'.
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
 *   value 'now' / 'today' makes it volatile. The integration should refuse to cache when a
 *   text-format parameter value, trimmed and lower-cased, is one of those words.
 * - search_path: unqualified names resolve per session; the key covers database + user, and
 *   SET search_path taints, but ALTER ROLE/DATABASE ... SET takes effect for new sessions only
 *   (those DDL statements invalidate everything since their tables are null).
 * - Temporary tables created inside functions are invisible here (no CREATE TEMP text).
 * - Bodies of CREATE FUNCTION ... BEGIN ATOMIC ...; END contain `;` outside quotes and split
 *   into several statements: that text is 'multi-statement' and a write with tables null.
 * - The function allowlist is deliberately small; an unlisted immutable built-in only costs a
 *   cache miss (and, being treated as a possible write, an invalidation of the whole database).
 */

export interface SqlClass {
  /** A single read-only statement that may be served from cache / shared by singleflight. */
  cacheable: boolean;
  /** Why not: 'write' | 'ddl' | 'locking' | 'volatile' | 'multi-statement' | 'transaction-control' |
   * 'session-state' | 'deallocate' | 'temp-table' | 'catalog' | 'utility' | 'empty' | 'unknown'; null
   * when cacheable. */
  reason: string | null;
  /** The statement changes session state that makes the session uncacheable from now on. */
  taintsSession: boolean;
  /** Relations read (reads) or written (writes); see the header for the name format. Null when they
   * cannot be determined (a write then invalidates the whole database). */
  tables: string[] | null;
  /** True when it modifies (or may modify) data or schema. */
  writes: boolean;
  /** 'begin' | 'commit' | 'rollback' | 'savepoint' | 'release' | 'rollback-to' | 'prepare-transaction' |
   * 'commit-prepared' | 'rollback-prepared' | null. */
  txControl: string | null;
}

export interface ClassifyOptions {
  /** The session's standard_conforming_strings (ParameterStatus). Default true. */
  standardConformingStrings?: boolean;
}

/**
 * The one list of functions that make a statement uncacheable: volatile, session-specific, or with
 * side effects. Names are lower case; `isUncacheableFunction` also applies the prefixes below.
 * Any function outside SAFE_FUNCTIONS is uncacheable anyway; this list documents the known ones
 * and is what a future allowlist extension must never include.
 */
export const UNCACHEABLE_FUNCTIONS: ReadonlySet<string> = new Set([
  // time
  'now', 'current_timestamp', 'current_time', 'current_date', 'localtime', 'localtimestamp',
  'clock_timestamp', 'statement_timestamp', 'transaction_timestamp', 'timeofday', 'age',
  // randomness
  'random', 'random_normal', 'setseed', 'gen_random_uuid', 'uuidv4', 'uuidv7', 'uuid_generate_v1',
  'uuid_generate_v1mc', 'uuid_generate_v3', 'uuid_generate_v4', 'uuid_generate_v5',
  'gen_random_bytes', 'gen_salt',
  // sequences
  'nextval', 'currval', 'lastval', 'setval',
  // transaction ids and snapshots
  'txid_current', 'txid_current_if_assigned', 'txid_current_snapshot', 'txid_status',
  'pg_current_xact_id', 'pg_current_xact_id_if_assigned', 'pg_current_snapshot', 'pg_xact_status',
  'pg_export_snapshot',
  // settings and session
  'set_config', 'current_setting', 'pg_backend_pid', 'inet_client_addr', 'inet_client_port',
  'inet_server_addr', 'inet_server_port', 'pg_is_in_recovery', 'pg_conf_load_time',
  'pg_postmaster_start_time', 'pg_blocking_pids', 'pg_trigger_depth',
  // sleeping, locks, notifications, signals
  'pg_sleep', 'pg_sleep_for', 'pg_sleep_until',
  'pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_advisory_unlock', 'pg_advisory_unlock_shared',
  'pg_advisory_unlock_all', 'pg_advisory_xact_lock', 'pg_advisory_xact_lock_shared',
  'pg_try_advisory_lock', 'pg_try_advisory_lock_shared', 'pg_try_advisory_xact_lock',
  'pg_try_advisory_xact_lock_shared',
  'pg_notify', 'pg_cancel_backend', 'pg_terminate_backend', 'pg_reload_conf', 'pg_rotate_logfile',
  'pg_switch_wal', 'pg_create_restore_point', 'pg_logical_emit_message',
  'pg_current_wal_lsn', 'pg_current_wal_insert_lsn', 'pg_last_wal_receive_lsn',
  'pg_last_wal_replay_lsn', 'pg_last_xact_replay_timestamp',
  'pg_stat_reset', 'pg_stat_reset_shared', 'pg_stat_clear_snapshot',
  // files, large objects, remote databases
  'pg_read_file', 'pg_read_binary_file', 'pg_ls_dir', 'pg_stat_file', 'pg_file_write',
  'lo_import', 'lo_export', 'lo_create', 'lo_creat', 'lo_unlink', 'lo_open', 'lo_close', 'lo_get',
  'lo_put', 'lo_from_bytea', 'lo_truncate', 'lo_lseek', 'lo_tell', 'loread', 'lowrite',
  'dblink', 'dblink_exec', 'dblink_connect', 'dblink_send_query', 'dblink_get_result',
]);

/** Name prefixes that are uncacheable too (extension families and catalogs of live state). */
export const UNCACHEABLE_FUNCTION_PREFIXES: readonly string[] = [
  'uuid_generate_', 'pg_advisory_', 'pg_try_advisory_', 'txid_', 'pg_current_xact_id', 'pg_sleep',
  'lo_', 'dblink', 'pg_stat_', 'pg_ls_', 'pg_read_', 'pg_create_', 'pg_drop_', 'pg_replication_',
  'pg_logical_', 'pg_last_', 'pg_current_', 'pg_cancel_', 'pg_terminate_',
];

export function isUncacheableFunction(name: string): boolean {
  if (UNCACHEABLE_FUNCTIONS.has(name)) return true;
  for (const p of UNCACHEABLE_FUNCTION_PREFIXES) if (name.startsWith(p)) return true;
  return false;
}

/**
 * Functions known immutable or stable (within a session whose reported parameters are in the key)
 * and free of side effects. Deliberately modest; anything else is treated as volatile.
 */
export const SAFE_FUNCTIONS: ReadonlySet<string> = new Set([
  // aggregates and window functions
  'count', 'sum', 'avg', 'min', 'max', 'bool_and', 'bool_or', 'every', 'string_agg', 'array_agg',
  'json_agg', 'jsonb_agg', 'json_object_agg', 'jsonb_object_agg', 'stddev', 'variance',
  'row_number', 'rank', 'dense_rank', 'percent_rank', 'cume_dist', 'ntile', 'lag', 'lead',
  'first_value', 'last_value', 'nth_value', 'percentile_cont', 'percentile_disc', 'mode',
  // conditionals
  'coalesce', 'nullif', 'greatest', 'least',
  // strings
  'lower', 'upper', 'length', 'char_length', 'character_length', 'octet_length', 'substr',
  'substring', 'position', 'strpos', 'trim', 'btrim', 'ltrim', 'rtrim', 'replace', 'concat',
  'concat_ws', 'left', 'right', 'lpad', 'rpad', 'split_part', 'starts_with', 'reverse', 'repeat',
  'initcap', 'translate', 'md5', 'regexp_replace', 'regexp_match', 'string_to_array',
  'array_to_string',
  // numbers
  'abs', 'round', 'trunc', 'floor', 'ceil', 'ceiling', 'mod', 'sign', 'sqrt', 'power', 'exp', 'ln',
  'log',
  // dates (stable at most: TimeZone and DateStyle are reported parameters, so in the key)
  'extract', 'date_part', 'date_trunc', 'to_char', 'make_date', 'make_interval',
  // arrays, sets, json
  'array_length', 'cardinality', 'unnest', 'generate_series', 'to_json', 'to_jsonb',
  'json_build_object', 'jsonb_build_object', 'json_build_array', 'jsonb_build_array',
  'jsonb_array_length', 'json_array_length',
  // session-stable information
  'version', 'current_schema', 'current_database',
]);

// ---------------------------------------------------------------------------------------------
// Tokens (the character rules and scanString are shared with src/insight/fingerprint.ts)

const WORD = 0; // unquoted identifier or keyword; v lower-cased
const QID = 1; // "quoted identifier"; v = the name, "" unescaped
const STR = 2; // any string literal; v = its content (escapes not processed)
const NUM = 3;
const PARAM = 4; // $n
const OP = 5; // operator run or stray character; v = its text
const LP = 6;
const RP = 7;
const COMMA = 8;
const SEMI = 9;
const DOT = 10;
const LB = 11;
const RB = 12;
const CAST = 13; // ::

interface Tok {
  k: number;
  v: string;
}

export function isIdentStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c >= 128;
}
export function isIdentChar(c: number): boolean {
  return isIdentStart(c) || (c >= 48 && c <= 57) || c === 36;
}
export function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}
/** + - * / < > = ~ ! @ # % ^ & | ` ? */
export function isOpChar(c: number): boolean {
  return c === 43 || c === 45 || c === 42 || c === 47 || c === 60 || c === 62 || c === 61 ||
    c === 126 || c === 33 || c === 64 || c === 35 || c === 37 || c === 94 || c === 38 || c === 124 ||
    c === 96 || c === 63;
}

/** Folds ASCII letters only, as PostgreSQL does for identifiers in multi-byte encodings. */
function foldAscii(s: string, hasUpper: boolean): string {
  if (!hasUpper) return s;
  let out = '';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) {
      out += s.slice(from, i) + String.fromCharCode(c + 32);
      from = i + 1;
    }
  }
  return out + s.slice(from);
}

/** Tokens of the text, or null when it cannot be tokenised with confidence. */
function tokenize(sql: string, scs: boolean): Tok[] | null {
  const toks: Tok[] = [];
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 32 || c === 9 || c === 10 || c === 13 || c === 12 || c === 11) { i++; continue; }
    if (c === 45 && sql.charCodeAt(i + 1) === 45) { // -- comment
      const e = sql.indexOf('\n', i + 2);
      i = e < 0 ? n : e + 1;
      continue;
    }
    if (c === 47 && sql.charCodeAt(i + 1) === 42) { // /* nested */ comment
      const e = blockCommentEnd(sql, i);
      if (e < 0) return null;
      i = e;
      continue;
    }
    if (c === 39) { // 'string'
      const e = scanString(sql, i + 1, !scs);
      if (e < 0) return null;
      toks.push({ k: STR, v: sql.slice(i + 1, e - 1) });
      i = e;
      continue;
    }
    if (c === 34) { // "identifier"
      let j = i + 1;
      let v = '';
      let from = j;
      for (;;) {
        if (j >= n) return null;
        if (sql.charCodeAt(j) === 34) {
          if (sql.charCodeAt(j + 1) === 34) { v += sql.slice(from, j + 1); j += 2; from = j; continue; }
          break;
        }
        j++;
      }
      v += sql.slice(from, j);
      if (v.length === 0) return null;
      toks.push({ k: QID, v });
      i = j + 1;
      continue;
    }
    if (c === 36) { // $n or $tag$...$tag$
      const d = sql.charCodeAt(i + 1);
      if (isDigit(d)) {
        let j = i + 1;
        while (j < n && isDigit(sql.charCodeAt(j))) j++;
        toks.push({ k: PARAM, v: sql.slice(i, j) });
        i = j;
        continue;
      }
      const j = dollarTagEnd(sql, i);
      if (j < 0) return null; // a stray $: not something we understand
      const tag = sql.slice(i, j + 1);
      const close = sql.indexOf(tag, j + 1);
      if (close < 0) return null;
      toks.push({ k: STR, v: sql.slice(j + 1, close) });
      i = close + tag.length;
      continue;
    }
    if (isIdentStart(c)) {
      let j = i + 1;
      let upper = c >= 65 && c <= 90;
      while (j < n) {
        const e = sql.charCodeAt(j);
        if (!isIdentChar(e)) break;
        if (e >= 65 && e <= 90) upper = true;
        j++;
      }
      if (j === i + 1) {
        const next = sql.charCodeAt(j);
        const lc = c | 32;
        if (next === 39 && (lc === 101 || lc === 98 || lc === 120 || lc === 110)) { // E'' B'' X'' N''
          const e = scanString(sql, j + 1, lc === 101 || !scs);
          if (e < 0) return null;
          toks.push({ k: STR, v: sql.slice(j + 1, e - 1) });
          i = e;
          continue;
        }
        if (lc === 117 && next === 38) { // U&'...' / U&"...": escapes we do not decode
          const q = sql.charCodeAt(j + 1);
          if (q === 39 || q === 34) return null;
        }
      }
      toks.push({ k: WORD, v: foldAscii(sql.slice(i, j), upper) });
      i = j;
      continue;
    }
    if (isDigit(c) || (c === 46 && isDigit(sql.charCodeAt(i + 1)))) {
      const j = numberEnd(sql, i);
      toks.push({ k: NUM, v: sql.slice(i, j) });
      i = j;
      continue;
    }
    switch (c) {
      case 40: toks.push({ k: LP, v: '(' }); i++; continue;
      case 41: toks.push({ k: RP, v: ')' }); i++; continue;
      case 44: toks.push({ k: COMMA, v: ',' }); i++; continue;
      case 59: toks.push({ k: SEMI, v: ';' }); i++; continue;
      case 46: toks.push({ k: DOT, v: '.' }); i++; continue;
      case 91: toks.push({ k: LB, v: '[' }); i++; continue;
      case 93: toks.push({ k: RB, v: ']' }); i++; continue;
      case 58:
        if (sql.charCodeAt(i + 1) === 58) { toks.push({ k: CAST, v: '::' }); i += 2; }
        else { toks.push({ k: OP, v: ':' }); i++; }
        continue;
    }
    if (isOpChar(c)) {
      let j = i + 1;
      while (j < n && isOpChar(sql.charCodeAt(j))) {
        const e = sql.charCodeAt(j);
        const f = sql.charCodeAt(j + 1);
        if ((e === 45 && f === 45) || (e === 47 && f === 42)) break; // a comment starts
        j++;
      }
      toks.push({ k: OP, v: sql.slice(i, j) });
      i = j;
      continue;
    }
    toks.push({ k: OP, v: sql[i]! });
    i++;
  }
  return toks;
}

/** Index just after the closing quote of a string whose content starts at i, or -1. */
/** For a `$` at i: the index of the `$` that closes a dollar-quote tag (`$$`, `$tag$`), or -1 when it is not one. */
export function dollarTagEnd(sql: string, i: number): number {
  const n = sql.length;
  let j = i + 1;
  if (isIdentStart(sql.charCodeAt(j))) {
    j++;
    while (j < n) {
      const e = sql.charCodeAt(j);
      if (!isIdentStart(e) && !isDigit(e)) break;
      j++;
    }
  }
  return sql.charCodeAt(j) === 36 ? j : -1;
}

/** Index after the (nested) block comment whose slash-star is at i; -1 when it never ends. */
export function blockCommentEnd(sql: string, i: number): number {
  const n = sql.length;
  let depth = 1;
  i += 2;
  while (i < n && depth > 0) {
    const d = sql.charCodeAt(i);
    if (d === 47 && sql.charCodeAt(i + 1) === 42) {
      depth++;
      i += 2;
    } else if (d === 42 && sql.charCodeAt(i + 1) === 47) {
      depth--;
      i += 2;
    } else i++;
  }
  return depth > 0 ? -1 : i;
}

/**
 * Index after a number starting at i: digits, letters, _ (so 0x1F, 1_000 and junk like 12abc
 * stay one token), '.' (not '..'), and an exponent's sign.
 */
export function numberEnd(sql: string, i: number): number {
  const n = sql.length;
  let j = i + 1;
  while (j < n) {
    const e = sql.charCodeAt(j);
    if (isDigit(e) || e === 95 || (e >= 97 && e <= 122) || (e >= 65 && e <= 90)) {
      if ((e === 101 || e === 69) && (sql.charCodeAt(j + 1) === 43 || sql.charCodeAt(j + 1) === 45)) j++;
      j++;
    } else if (e === 46 && sql.charCodeAt(j + 1) !== 46) j++;
    else break;
  }
  return j;
}

export function scanString(sql: string, i: number, backslash: boolean): number {
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 39) {
      if (sql.charCodeAt(i + 1) === 39) { i += 2; continue; }
      return i + 1;
    }
    if (c === 92 && backslash) { i += 2; continue; }
    i++;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Keyword sets

/** Words followed by `(` that are syntax, not function calls (reserved or special-cased by the grammar). */
const NOT_CALL: ReadonlySet<string> = new Set([
  'all', 'and', 'any', 'array', 'as', 'asc', 'between', 'both', 'by', 'case', 'cast', 'check',
  'collate', 'conflict', 'constraint', 'cube', 'default', 'desc', 'distinct', 'do', 'else', 'end',
  'escape', 'except', 'exists', 'fetch', 'filter', 'for', 'from', 'group', 'grouping', 'having',
  'ilike', 'in', 'intersect', 'into', 'is', 'join', 'lateral', 'like', 'limit', 'not', 'offset',
  'on', 'only', 'or', 'order', 'over', 'overlaps', 'partition', 'primary', 'references', 'returning',
  'rollup', 'row', 'select', 'set', 'sets', 'similar', 'some', 'table', 'then', 'to', 'union',
  'unique', 'using', 'values', 'when', 'where', 'window', 'with', 'within',
  // type names with a type modifier: numeric(10,2), varchar(3), character varying(3) ...
  'bigint', 'bit', 'boolean', 'char', 'character', 'dec', 'decimal', 'float', 'int', 'integer',
  'interval', 'national', 'nchar', 'numeric', 'precision', 'real', 'smallint', 'time', 'timestamp',
  'varchar', 'varying', 'setof',
]);

/** SQL keywords that read the clock without parentheses. */
const VOLATILE_KEYWORDS: ReadonlySet<string> = new Set([
  'current_date', 'current_time', 'current_timestamp', 'localtime', 'localtimestamp',
]);

/** Date/time input strings that depend on the clock ('now'::timestamptz). */
const VOLATILE_STRINGS: ReadonlySet<string> = new Set(['now', 'today', 'tomorrow', 'yesterday']);

/** Words that end a FROM list (after an item). */
const FROM_END: ReadonlySet<string> = new Set([
  'where', 'group', 'having', 'window', 'order', 'limit', 'offset', 'fetch', 'for', 'union',
  'intersect', 'except', 'returning', 'into',
]);

/** Words that cannot be a bare alias after a FROM item. */
const NOT_ALIAS: ReadonlySet<string> = new Set([
  ...FROM_END, 'join', 'inner', 'left', 'right', 'full', 'cross', 'natural', 'on', 'using',
  'tablesample', 'with', 'set', 'when', 'then', 'as', 'and', 'or', 'not', 'select', 'values',
]);

const JOIN_WORDS: ReadonlySet<string> = new Set(['inner', 'left', 'right', 'full', 'cross', 'natural', 'outer']);

const DML_WORDS: ReadonlySet<string> = new Set(['insert', 'update', 'delete', 'merge']);

const SET_OPS: ReadonlySet<string> = new Set(['union', 'intersect', 'except', 'all', 'distinct']);

const READ_START: ReadonlySet<string> = new Set(['select', 'values', 'table', 'with']);

// ---------------------------------------------------------------------------------------------
// Classification

function result(cacheable: boolean, reason: string | null, taintsSession: boolean, tables: string[] | null,
  writes: boolean, txControl: string | null = null): SqlClass {
  return { cacheable, reason, taintsSession, tables, writes, txControl };
}

const UNKNOWN_TAINT = (): SqlClass => result(false, 'unknown', true, null, true);

/** What the scans of one statement found. */
class Facts {
  volatile = false;
  mayWrite = false; // a function with (possible) data side effects
  writeTablesUnknown = false;
  taints = false;
  uncertain = false; // a FROM list we could not follow
  locking = false;
  reads: string[] = [];
  written: string[] = [];
}

function addUnique(list: string[], name: string): void {
  if (!list.includes(name)) list.push(name);
}

/** Lower-case plain names stay bare; others are written quoted, the way quote_ident does. */
function renderQuoted(v: string): string {
  if (/^[a-z_][a-z0-9_$]*$/.test(v)) return v;
  return '"' + v.replace(/"/g, '""') + '"';
}

/** One statement's tokens, with helpers. Ranges are [a, b) over `t`. */
class Stmt {
  balanced = true;

  /** match: index of the matching paren/bracket (filled here for [a, b)); notCall: 1 = not a function call. */
  constructor(readonly t: Tok[], readonly a: number, readonly b: number, readonly match: Int32Array,
    readonly notCall: Uint8Array) {
    const stack: number[] = [];
    for (let i = a; i < b; i++) {
      const k = t[i]!.k;
      if (k === LP || k === LB) stack.push(i);
      else if (k === RP || k === RB) {
        const o = stack.pop();
        if (o === undefined || (t[o]!.k === LP) !== (k === RP)) { this.balanced = false; return; }
        this.match[o] = i;
        this.match[i] = o;
      }
    }
    if (stack.length > 0) this.balanced = false;
  }

  w(i: number): string {
    const tok = this.t[i];
    return i < this.b && tok !== undefined && tok.k === WORD ? tok.v : '';
  }

  k(i: number): number {
    return i < this.b && i >= this.a ? this.t[i]!.k : -1;
  }

  /** A possibly qualified name at i: [rendered name, index after it], or null. */
  name(i: number): [string, number] | null {
    let out = '';
    for (;;) {
      const tok = this.t[i];
      if (i >= this.b || tok === undefined) return null;
      if (tok.k === WORD) out += tok.v;
      else if (tok.k === QID) out += renderQuoted(tok.v);
      else return null;
      i++;
      if (this.k(i) === DOT) { out += '.'; i++; continue; }
      return [out, i];
    }
  }

  /** Index after `( ... )` starting at i (which must be LP), or -1. */
  skipParens(i: number): number {
    return this.k(i) === LP ? this.match[i]! + 1 : -1;
  }
}

function isJoinStart(s: Stmt, i: number): boolean {
  const v = s.w(i);
  if (v === 'join') return true;
  if (!JOIN_WORDS.has(v) || v === 'outer') return false;
  const n = s.w(i + 1);
  return n === 'join' || JOIN_WORDS.has(n);
}

/** Skips a join condition expression; stops at `,`, a join, the end of the FROM list. */
function skipExpr(s: Stmt, i: number, end: number): number {
  while (i < end) {
    const k = s.k(i);
    if (k === LP || k === LB) { i = s.match[i]! + 1; continue; }
    if (k === RP || k === RB || k === COMMA || k === SEMI) return i;
    if (k === WORD && (FROM_END.has(s.t[i]!.v) || isJoinStart(s, i))) return i;
    i++;
  }
  return i;
}

/** Skips an optional alias (and column alias list) after a FROM item. */
function skipAlias(s: Stmt, i: number): number {
  if (s.w(i) === 'as') {
    i++;
    if (s.k(i) !== WORD && s.k(i) !== QID) return -1;
    i++;
  } else if (s.k(i) === QID || (s.k(i) === WORD && !NOT_ALIAS.has(s.t[i]!.v))) i++;
  else return i;
  if (s.k(i) === LP) { s.notCall[i - 1] = 1; i = s.match[i]! + 1; }
  return i;
}

/** One FROM item at i; returns the index after it, or -1 when not understood. */
function fromItem(s: Stmt, f: Facts, i: number, end: number): number {
  if (s.w(i) === 'only') i++;
  if (s.w(i) === 'lateral') i++;
  const k = s.k(i);
  if (k === LP) {
    const m = s.match[i]!;
    if (m < 0 || m >= end) return -1;
    let q = i + 1;
    while (s.k(q) === LP) q++;
    if (READ_START.has(s.w(q))) {
      // A subquery: its FROM lists are found by the scan of the whole statement.
    } else {
      const r = fromList(s, f, i + 1, m);
      if (r !== m) return -1;
    }
    i = m + 1;
  } else if (s.w(i) === 'rows' && s.w(i + 1) === 'from' && s.k(i + 2) === LP) {
    i = s.match[i + 2]! + 1;
    if (s.w(i) === 'with' && s.w(i + 1) === 'ordinality') i += 2;
  } else {
    const nm = s.name(i);
    if (nm === null) return -1;
    i = nm[1];
    if (s.k(i) === LP) { // a function in FROM; the call itself is judged by the call scan
      i = s.match[i]! + 1;
      if (s.w(i) === 'with' && s.w(i + 1) === 'ordinality') i += 2;
    } else {
      addUnique(f.reads, nm[0]);
      if (s.k(i) === OP && s.t[i]!.v === '*') i++;
    }
  }
  i = skipAlias(s, i);
  if (i < 0) return -1;
  if (s.w(i) === 'tablesample') {
    const nm = s.name(i + 1);
    if (nm === null || s.k(nm[1]) !== LP) return -1;
    s.notCall[nm[1] - 1] = 1; // a sampling method, not a function (it is random: judged below)
    f.volatile = true;
    i = s.skipParens(nm[1]);
    if (s.w(i) === 'repeatable') i = s.skipParens(i + 1);
    if (i < 0) return -1;
  }
  return i;
}

/** A FROM list at i, up to `end`; returns the index where it ends, or -1 when not understood. */
function fromList(s: Stmt, f: Facts, i: number, end: number): number {
  i = fromItem(s, f, i, end);
  while (i >= 0 && i < end) {
    const k = s.k(i);
    if (k === COMMA) { i = fromItem(s, f, i + 1, end); continue; }
    if (isJoinStart(s, i)) {
      while (s.w(i) !== 'join') i++;
      i = fromItem(s, f, i + 1, end);
      if (i < 0) return -1;
      if (s.w(i) === 'on') i = skipExpr(s, i + 1, end);
      else if (s.w(i) === 'using') {
        i = s.skipParens(i + 1);
        if (i < 0) return -1;
        if (s.w(i) === 'as') i += 2;
      }
      continue;
    }
    if (k === RP || k === SEMI || (k === WORD && FROM_END.has(s.t[i]!.v))) return i;
    return -1;
  }
  return i;
}

/** Finds the relations of every FROM list in [a, b) (reads) and the not-a-call positions. */
function scanFrom(s: Stmt, f: Facts, a: number, b: number): void {
  const owners: number[] = []; // indexes of the open parens enclosing i
  for (let i = a; i < b; i++) {
    const tok = s.t[i]!;
    if (tok.k === LP) { owners.push(i); continue; }
    if (tok.k === RP) { owners.pop(); continue; }
    if (tok.k === CAST) { // a type name follows: numeric(10,2) is not a call
      let j = i + 1;
      while (s.k(j) === WORD || s.k(j) === QID) {
        s.notCall[j] = 1;
        if (s.k(j + 1) !== DOT) break;
        j += 2;
      }
      continue;
    }
    if (tok.k !== WORD || tok.v !== 'from') continue;
    const prev = s.w(i - 1);
    if (prev === 'rows') continue;
    if (prev === 'distinct' && (s.w(i - 2) === 'is' || s.w(i - 2) === 'not')) continue;
    const o = owners.length > 0 ? owners[owners.length - 1]! : -1;
    if (o > a) {
      const fn = s.w(o - 1);
      if (fn === 'extract' || fn === 'substring' || fn === 'trim' || fn === 'overlay') continue;
    }
    const end = o >= 0 ? s.match[o]! : b;
    if (fromList(s, f, i + 1, end) < 0) f.uncertain = true;
  }
}

/** Judges every function call, clock keyword and clock string in [a, b). */
function scanCalls(s: Stmt, f: Facts, a: number, b: number): void {
  for (let i = a; i < b; i++) {
    const tok = s.t[i]!;
    if (tok.k === STR) {
      if (tok.v.length <= 16 && VOLATILE_STRINGS.has(tok.v.trim().toLowerCase())) f.volatile = true;
      continue;
    }
    if (tok.k !== WORD && tok.k !== QID) continue;
    if (tok.k === WORD && VOLATILE_KEYWORDS.has(tok.v)) { f.volatile = true; continue; }
    if (s.k(i + 1) !== LP || s.notCall[i] === 1) continue;
    const pk = s.k(i - 1);
    if (pk === RP || pk === CAST || s.w(i - 1) === 'as') continue;
    const m = s.match[i + 1]!;
    if (s.w(m + 1) === 'as' && (s.k(m + 2) === LP || s.w(m + 2) === 'not' || s.w(m + 2) === 'materialized')) {
      continue; // a CTE's column list: WITH x(a, b) AS (...)
    }
    if (tok.k === QID) { unknownCall(f); continue; }
    if (NOT_CALL.has(tok.v) || (tok.v === 'insert' && s.w(i - 1) === 'then')) continue;
    if (pk === DOT) {
      if (s.w(i - 2) === 'pg_catalog' && s.k(i - 3) !== DOT) judgeCall(s, f, tok.v, i);
      else unknownCall(f);
      continue;
    }
    judgeCall(s, f, tok.v, i);
  }
}

function unknownCall(f: Facts): void {
  f.volatile = true;
  f.mayWrite = true;
  f.writeTablesUnknown = true;
}

function judgeCall(s: Stmt, f: Facts, name: string, i: number): void {
  if (name === 'nextval' || name === 'setval') {
    f.volatile = true;
    f.mayWrite = true;
    const arg = s.t[i + 2];
    const after = s.k(i + 3);
    if (arg !== undefined && s.k(i + 2) === STR && (after === RP || after === COMMA || after === CAST) &&
      /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/.test(arg.v)) {
      addUnique(f.written, foldAscii(arg.v, true));
    } else f.writeTablesUnknown = true;
    return;
  }
  if (name === 'set_config') f.taints = true;
  if (name === 'lowrite' || name.startsWith('lo_') || name.startsWith('dblink')) {
    f.volatile = true;
    f.mayWrite = true;
    f.writeTablesUnknown = true;
    return;
  }
  if (isUncacheableFunction(name)) { f.volatile = true; return; }
  if (SAFE_FUNCTIONS.has(name)) return;
  unknownCall(f);
}

/** The target relation of the DML keyword at i; marks an INSERT column list as not a call. */
function dmlTarget(s: Stmt, i: number): string | null {
  const v = s.w(i);
  i++;
  if (v === 'insert' || v === 'merge') { if (s.w(i) !== 'into') return null; i++; }
  else if (v === 'delete') { if (s.w(i) !== 'from') return null; i++; }
  if (s.w(i) === 'only') i++;
  const nm = s.name(i);
  if (nm === null) return null;
  i = nm[1];
  if (v === 'insert') {
    if (s.w(i) === 'as') i += 2;
    if (s.k(i) === LP) s.notCall[i - 1] = 1;
  }
  return nm[0];
}

function isTempName(name: string): boolean {
  return name.startsWith('pg_temp.') || /^pg_temp_\d+\./.test(name);
}

/**
 * System catalogs and views (pg_class, pg_stat_activity, pg_locks, pg_prepared_statements, ...)
 * and information_schema: some show live or per-session state (which a cached copy would hand
 * to another session), and DDL changes the rest; none is worth caching.
 */
function isCatalogName(name: string): boolean {
  return name.startsWith('pg_') || name.startsWith('information_schema.') || /(^|\.)pg_[^.]*$/.test(name);
}

const TX: ReadonlyMap<string, string> = new Map([
  ['begin', 'begin'], ['start', 'begin'], ['commit', 'commit'], ['end', 'commit'], ['savepoint', 'savepoint'],
  ['release', 'release'],
]);

/** `[TABLE] [ONLY] name [*], ...` of LOCK and TRUNCATE from token j: the names and the index after them. */
function relationList(s: Stmt, j: number): [string[], number] | null {
  if (s.w(j) === 'table') j++;
  const names: string[] = [];
  for (;;) {
    if (s.w(j) === 'only') j++;
    const nm = s.name(j);
    if (nm === null) return null;
    addUnique(names, nm[0]);
    j = nm[1];
    if (s.k(j) === OP && s.t[j]!.v === '*') j++;
    if (s.k(j) !== COMMA) return [names, j];
    j++;
  }
}

/** Classifies the statement [a, b) of s (a < b). */
function classifyRange(s: Stmt, a: number, b: number): SqlClass {
  if (!s.balanced) return UNKNOWN_TAINT();
  let p = a;
  while (s.k(p) === LP) p++;
  const kw = s.w(p);
  if (p > a && !READ_START.has(kw)) return UNKNOWN_TAINT();

  // Transaction control
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

  switch (kw) {
    case 'set': {
      const n = s.w(p + 1);
      const local = n === 'local' || n === 'transaction' || n === 'constraints';
      return result(false, 'session-state', !local, [], false);
    }
    case 'reset': case 'discard': case 'listen': case 'load':
      return result(false, 'session-state', true, [], false);
    case 'unlisten':
      return result(false, 'session-state', false, [], false);
    case 'deallocate':
      return result(false, 'deallocate', false, [], false);
    case 'prepare': {
      let j = p + 1;
      while (j < b && s.w(j) !== 'as') j = s.k(j) === LP ? s.match[j]! + 1 : j + 1;
      if (j + 1 >= b) return UNKNOWN_TAINT();
      const inner = classifyRange(s, j + 1, b);
      return result(false, 'session-state', inner.taintsSession, [], false);
    }
    case 'execute':
      return result(false, 'unknown', false, null, true);
    case 'declare': {
      let j = p + 1;
      while (j < b && s.w(j) !== 'for') j++;
      if (j + 1 >= b) return UNKNOWN_TAINT();
      const inner = classifyRange(s, j + 1, b);
      return result(false, 'utility', inner.taintsSession, inner.tables, inner.writes);
    }
    case 'fetch': case 'move': case 'close': case 'show': case 'checkpoint': case 'vacuum':
    case 'analyze': case 'analyse': case 'cluster': case 'reindex': case 'notify':
      return result(false, 'utility', false, [], false);
    case 'explain': return classifyExplain(s, p, b);
    case 'lock': {
      const list = relationList(s, p + 1);
      return result(false, 'locking', false, list === null ? null : list[0], false);
    }
    case 'call': case 'do':
      return result(false, 'write', false, null, true);
    case 'truncate': {
      const list = relationList(s, p + 1);
      if (list === null) return result(false, 'write', false, null, true);
      for (let j = list[1]; j < b; j++) if (s.w(j) === 'cascade') return result(false, 'write', false, null, true);
      return result(false, 'write', false, list[0], true);
    }
    case 'copy': return classifyCopy(s, p);
    case 'create': case 'alter': case 'drop': case 'grant': case 'revoke': case 'comment':
    case 'security': case 'import': case 'reassign': case 'refresh':
      return classifyDdl(s, kw, p, b);
  }
  if (READ_START.has(kw) || DML_WORDS.has(kw)) return classifyDml(s, kw, p, a, b);
  return UNKNOWN_TAINT();
}

function txResult(tx: string): SqlClass {
  return result(false, 'transaction-control', false, [], false, tx);
}

function classifyExplain(s: Stmt, p: number, b: number): SqlClass {
  let j = p + 1;
  let analyze = false;
  if (s.k(j) === LP) {
    const m = s.match[j]!;
    for (let i = j + 1; i < m; i++) {
      const v = s.w(i);
      if ((v === 'analyze' || v === 'analyse') && (s.k(i - 1) === LP || s.k(i - 1) === COMMA)) {
        const val = s.k(i + 1) === COMMA || i + 1 === m ? 'true' : s.t[i + 1]!.v.toLowerCase();
        analyze = !(val === 'false' || val === 'off' || val === '0' || val === 'no');
      }
    }
    j = m + 1;
  } else {
    while (s.w(j) === 'analyze' || s.w(j) === 'analyse' || s.w(j) === 'verbose') {
      if (s.w(j) !== 'verbose') analyze = true;
      j++;
    }
  }
  if (j >= b) return UNKNOWN_TAINT();
  const inner = classifyRange(s, j, b);
  if (analyze && inner.writes) return result(false, inner.reason === 'ddl' ? 'ddl' : 'write', inner.taintsSession, inner.tables, true);
  return result(false, 'utility', false, inner.tables, false);
}

function classifyCopy(s: Stmt, p: number): SqlClass {
  let j = p + 1;
  if (s.k(j) === LP) { // COPY (query) TO ...
    const m = s.match[j]!;
    if (m <= j + 1) return UNKNOWN_TAINT();
    const inner = classifyRange(s, j + 1, m);
    if (inner.writes) return result(false, 'write', inner.taintsSession, inner.tables, true);
    return result(false, 'utility', inner.taintsSession, inner.tables, false);
  }
  const nm = s.name(j);
  if (nm === null) return result(false, 'write', false, null, true);
  j = nm[1];
  if (s.k(j) === LP) j = s.match[j]! + 1;
  if (s.w(j) === 'to') return result(false, 'utility', false, [nm[0]], false);
  return result(false, 'write', false, s.w(j) === 'from' ? [nm[0]] : null, true);
}

function classifyDdl(s: Stmt, kw: string, p: number, b: number): SqlClass {
  let j = p + 1;
  if (kw === 'create') {
    let temp = false;
    for (;;) {
      const v = s.w(j);
      if (v === 'or' && s.w(j + 1) === 'replace') { j += 2; continue; }
      if (v === 'global' || v === 'local' || v === 'unlogged') { j++; continue; }
      if (v === 'temp' || v === 'temporary') { temp = true; j++; continue; }
      break;
    }
    const what = s.w(j);
    if (what === 'table' || what === 'view' || what === 'sequence' || (what === 'recursive' && s.w(j + 1) === 'view')) {
      j += what === 'recursive' ? 2 : 1;
      if (s.w(j) === 'if' && s.w(j + 1) === 'not' && s.w(j + 2) === 'exists') j += 3;
      const nm = s.name(j);
      if (nm !== null && isTempName(nm[0])) temp = true;
      if (temp) return result(false, 'temp-table', true, nm === null ? null : [nm[0]], true);
      if (what === 'table' && nm !== null) return result(false, 'ddl', false, [nm[0]], true);
      return result(false, 'ddl', false, null, true);
    }
    if (temp) return result(false, 'temp-table', true, null, true);
    if (what === 'index' || (what === 'unique' && s.w(j + 1) === 'index')) {
      for (; j < b; j++) {
        if (s.w(j) === 'on') {
          let k = j + 1;
          if (s.w(k) === 'only') k++;
          const nm = s.name(k);
          return result(false, 'ddl', false, nm === null ? null : [nm[0]], true);
        }
      }
    }
    return result(false, 'ddl', false, null, true);
  }
  if (kw === 'alter' && s.w(j) === 'table') {
    j++;
    if (s.w(j) === 'if' && s.w(j + 1) === 'exists') j += 2;
    if (s.w(j) === 'only') j++;
    if (s.w(j) === 'all') return result(false, 'ddl', false, null, true);
    const nm = s.name(j);
    return result(false, 'ddl', false, nm === null ? null : [nm[0]], true);
  }
  if (kw === 'drop' && s.w(j) === 'table') {
    j++;
    if (s.w(j) === 'if' && s.w(j + 1) === 'exists') j += 2;
    const names: string[] = [];
    for (;;) {
      const nm = s.name(j);
      if (nm === null) return result(false, 'ddl', false, null, true);
      addUnique(names, nm[0]);
      j = nm[1];
      if (s.k(j) !== COMMA) break;
      j++;
    }
    if (s.w(j) === 'cascade') return result(false, 'ddl', false, null, true);
    return result(false, 'ddl', false, names, true);
  }
  if (kw === 'refresh' && s.w(j) === 'materialized' && s.w(j + 1) === 'view') {
    j += 2;
    if (s.w(j) === 'concurrently') j++;
    const nm = s.name(j);
    return result(false, 'write', false, nm === null ? null : [nm[0]], true);
  }
  return result(false, 'ddl', false, null, true);
}

/** SELECT / VALUES / TABLE / WITH ... and INSERT / UPDATE / DELETE / MERGE. */
function classifyDml(s: Stmt, kw: string, p: number, a: number, b: number): SqlClass {
  const f = new Facts();
  let targetsKnown = true;
  let mainKw = kw;
  let mainAt = p;
  if (kw === 'with') {
    // CTE names (and their column lists) and the main statement: the first read/DML keyword at depth 0.
    let j = p + 1;
    if (s.w(j) === 'recursive') j++;
    mainKw = '';
    while (j < b) {
      const k = s.k(j);
      if (k === LP || k === LB) {
        if (s.k(j - 1) === WORD || s.k(j - 1) === QID) s.notCall[j - 1] = 1;
        j = s.match[j]! + 1;
        continue;
      }
      const v = s.w(j);
      if ((v === 'select' || v === 'values' || v === 'table' || DML_WORDS.has(v)) && s.w(j - 1) !== 'set') {
        mainKw = v;
        mainAt = j;
        break;
      }
      j++;
    }
    if (mainKw === '') {
      return result(false, 'unknown', false, null, true);
    }
  }
  // Data-modifying statements: the main one and any nested right after '('.
  for (let i = a; i < b; i++) {
    if (s.k(i) !== WORD || !DML_WORDS.has(s.t[i]!.v)) continue;
    if (i !== mainAt && s.k(i - 1) !== LP) continue;
    const target = dmlTarget(s, i);
    if (target === null) targetsKnown = false;
    else addUnique(f.written, target);
  }
  const isWrite = f.written.length > 0 || !targetsKnown;
  scanFrom(s, f, a, b);
  // TABLE t: as the statement, in a subquery `(TABLE t)`, or after UNION / INTERSECT / EXCEPT.
  for (let i = a; i < b; i++) {
    if (s.k(i) !== WORD || s.t[i]!.v !== 'table') continue;
    const prev = s.w(i - 1);
    if (i !== mainAt && s.k(i - 1) !== LP && !SET_OPS.has(prev)) continue;
    let j = i + 1;
    if (s.w(j) === 'only') j++;
    const nm = s.name(j);
    if (nm === null) f.uncertain = true;
    else addUnique(f.reads, nm[0]);
  }
  // SELECT INTO (at depth 0 of the statement)
  let into: string | null | undefined; // undefined: none
  let intoTemp = false;
  if (!isWrite) {
    let depth = 0;
    for (let i = a; i < b; i++) {
      const k = s.k(i);
      if (k === LP) depth++;
      else if (k === RP) depth--;
      else if (depth === 0 && s.w(i) === 'into') {
        let j = i + 1;
        for (;;) {
          const v = s.w(j);
          if (v === 'temp' || v === 'temporary') { intoTemp = true; j++; continue; }
          if (v === 'local' || v === 'global' || v === 'unlogged' || v === 'table') { j++; continue; }
          break;
        }
        const nm = s.name(j);
        into = nm === null ? null : nm[0];
        if (into !== null && isTempName(into)) intoTemp = true;
        break;
      }
    }
  }
  scanCalls(s, f, a, b);
  for (let i = a; i < b; i++) {
    if (s.w(i) !== 'for') continue;
    const n = s.w(i + 1);
    if (n === 'update' || n === 'share' || (n === 'no' && s.w(i + 2) === 'key') || (n === 'key' && s.w(i + 2) === 'share')) {
      f.locking = true;
      break;
    }
  }

  const writeTables = (extra: string[]): string[] | null => {
    if (!targetsKnown || f.writeTablesUnknown) return null;
    const out = extra.slice();
    for (const t of f.written) addUnique(out, t);
    return out;
  };
  if (isWrite) return result(false, 'write', f.taints, writeTables([]), true);
  if (into !== undefined) {
    if (intoTemp) return result(false, 'temp-table', true, into === null ? null : [into], true);
    return result(false, 'write', f.taints, into === null ? null : writeTables([into]), true);
  }
  if (f.mayWrite) return result(false, 'volatile', f.taints, writeTables([]), true);
  const tables = f.uncertain ? null : f.reads;
  let reason: string | null = null;
  if (f.locking) reason = 'locking';
  else if (f.volatile) reason = 'volatile';
  else if (f.reads.some(isTempName)) reason = 'temp-table';
  else if (f.reads.some(isCatalogName)) reason = 'catalog';
  else if (f.uncertain) reason = 'unknown';
  return result(reason === null, reason, f.taints, tables, false);
}

/**
 * Classifies one SQL text (one or more statements). Pure: the answer depends on the text and the
 * options only, so callers may memoise it per text.
 */
export function classifySql(sql: string, opts?: ClassifyOptions): SqlClass {
  const toks = tokenize(sql, opts?.standardConformingStrings !== false);
  if (toks === null) return UNKNOWN_TAINT();
  const parts: SqlClass[] = [];
  const match = new Int32Array(toks.length).fill(-1);
  const notCall = new Uint8Array(toks.length);
  let start = 0;
  for (let i = 0; i <= toks.length; i++) {
    if (i < toks.length && toks[i]!.k !== SEMI) continue;
    if (i > start) {
      const s = new Stmt(toks, start, i, match, notCall);
      parts.push(classifyRange(s, start, i));
    }
    start = i + 1;
  }
  if (parts.length === 0) return result(false, 'empty', false, [], false);
  if (parts.length === 1) return parts[0]!;
  const writes = parts.some((c) => c.writes);
  let tables: string[] | null = [];
  for (const c of parts) {
    if (writes && !c.writes) continue;
    if (c.tables === null) { tables = null; break; }
    for (const t of c.tables) addUnique(tables, t);
  }
  return result(false, 'multi-statement', parts.some((c) => c.taintsSession), tables, writes);
}
