/**
 * The function lists of the classifier: which calls a cacheable statement may make
 * (SAFE_FUNCTIONS) and which are known volatile, session-specific or with side effects
 * (UNCACHEABLE_FUNCTIONS and its prefixes). How a call is judged is in calls.ts.
 */

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

/** The name (lower case, unqualified) is in UNCACHEABLE_FUNCTIONS or starts with one of its prefixes. */
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
