/**
 * Turning one query message into one log line. A line never contains a raw newline or control
 * character, so `tail -f` and `wc -l` see one query per line.
 */
import { BindMessage, paramFormat } from '../protocol/client-messages';
import { TEXT_UNSAFE, TEXT_UNSAFE_ALL, jsonSafe } from './escape';
import { redactionOf, type RedactionSettings } from './redaction';

/** Who sent a query: fixed for the lifetime of a client connection. */
export interface SessionInfo {
  readonly id: number;
  readonly user: string;
  readonly database: string;
  /** "host:port" of the client socket. */
  readonly client: string;
  /** With several upstreams: the node (HOST:PORT) serving the session, set when it connects there. */
  node?: string;
  /** application_name of the startup packet ('' when none): log-sample rules match it. */
  readonly application?: string;
}

export type QueryType = 'Q' | 'P' | 'B' | 'E';
/**
 * D (Describe), C (Close), S (Sync), H (Flush): lines only with log-replay, whose reader needs
 * every message that shapes the session's answers (docs/replay.md).
 */
export type WireType = 'D' | 'C' | 'S' | 'H';

/** Bind parameters as views of the message; the formatter copies what it prints. */
export interface BindParams {
  formats: readonly number[];
  values: readonly (Buffer | null)[];
}

export interface QueryRecord {
  type: QueryType;
  /**
   * Prepared statement name; null when the message has none ('Q'). '' is the unnamed statement.
   * For D and C: the name of their target, whichever `kind` it is.
   */
  statement: string | null;
  /** Portal name for 'B' and 'E'; null otherwise. '' is the unnamed portal. */
  portal: string | null;
  /** The SQL text; null when a Bind/Execute names a statement or portal pgscribe never saw. */
  sql: string | null;
  params: BindParams | null;
  /** How the cache answered the query this message belongs to (absent: not a cacheable read, or no cache). */
  cache?: CacheOutcome | undefined;
  /** Its part in a singleflight (absent: none). */
  flight?: FlightRole | undefined;
  /** pgscribe refused it itself and it never reached PostgreSQL: `rate-limit`, a 53400 (src/limits/rate-gate.ts). */
  refused?: 'rate-limit' | undefined;
  /** The line's number within its connection (1, 2, ...): completion records refer to it. */
  seq?: number | undefined;
  /** Its data values are hidden (redaction.ts): parameters as a count, SQL in the normal form. */
  redacted?: true | undefined;
  /**
   * log-replay's details of the message (undefined without it: one field, so that a record of a
   * log without replay costs one store more and no allocation).
   */
  wire?: WireDetails | undefined;
}

/** What log-replay writes of a message beyond a query line's fields, as sent. */
export interface WireDetails {
  /** P: the parameter type OIDs. */
  paramTypes?: readonly number[];
  /** B: the result format codes (the parameters' are params.formats). */
  resultFormats?: readonly number[];
  /** E: the row limit (0: all). */
  maxRows?: number;
  /** D and C: a statement ('S') or a portal ('P'). */
  kind?: 'S' | 'P';
}

/**
 * log-replay's record of a D, C, S or H message: a QueryRecord's fields (the same shape, so the
 * formatter sees one hidden class) with no SQL, parameters or cache part. A type of its own so
 * that a pluggable logger written for Q/P/B/E records (ClientLogger.log) never meets one.
 */
export interface WireRecord extends Omit<QueryRecord, 'type'> {
  type: WireType;
}

/** What a line formatter takes: a query record, or with log-replay a wire record. */
export type LogRecord = QueryRecord | WireRecord;

/** A session's first line with log-replay: what a replay needs to open the same session. */
export interface SessionStart {
  /** Every startup parameter but user and database (which every line's head carries). */
  startup: Record<string, string>;
  /** The protocol version the client asked for: "3.0". */
  protocol: string;
  /** HOST:PORT of the node the session reached. */
  upstream: string;
  /** That node's system identifier (decimal), when pgscribe knows it. */
  system: string | undefined;
}

/**
 * Why a session ended: terminate (the client sent Terminate), client (it hung up), server (the
 * server closed or failed it), proxy (pgscribe closed it: shutdown, a limit, a failover).
 */
export type EndReason = 'terminate' | 'client' | 'server' | 'proxy';

/** A session line of log-replay: its start, or its end. */
export type SessionLine = { type: 'start'; start: SessionStart } | { type: 'end'; reason: EndReason };

/**
 * How a query (a Q, or an E) ended. ok: CommandComplete (or EmptyQueryResponse); error: an
 * ErrorResponse; skipped: never run, because an earlier message of the same pipeline failed
 * (the server ignores the rest until Sync); suspended: PortalSuspended (Execute with a row limit);
 * aborted: the connection ended before the answer did.
 */
export type CompletionStatus = 'ok' | 'error' | 'skipped' | 'suspended' | 'aborted';

/** One completed query: the `done` line written after its answer (--log-completions). */
export interface CompletionRecord {
  /** seq of the Q or E line it completes. */
  seq: number;
  of: 'Q' | 'E';
  /** From the message's arrival (or the decision to answer it from cache) to its last answer message. */
  ms: number;
  /** Rows from CommandComplete (summed over the statements of a Q); 0 when none. */
  rows: number;
  status: CompletionStatus;
  /** SQLSTATE of the ErrorResponse (status error); null otherwise. */
  sqlstate: string | null;
  cache?: CacheOutcome | undefined;
  flight?: FlightRole | undefined;
  /** log-replay: the first 16 hex digits of SHA-1 over the answer's DataRow bodies, when it had rows. */
  rowsDigest?: string | undefined;
}

/**
 * hit: answered from this instance's cache; l2: from the shared cache in Redis (--redis); miss:
 * in neither, run upstream; bypass: too large to cache or share.
 */
export type CacheOutcome = 'hit' | 'l2' | 'miss' | 'bypass';
/**
 * leader: ran it upstream for everyone waiting; waiter: answered with the leader's result;
 * remote: waited for another pgscribe instance's flight and was answered from the shared cache.
 */
export type FlightRole = 'leader' | 'waiter' | 'remote';

export interface FormatOptions {
  /** Print Bind parameter values (false: only their count). */
  params: boolean;
  /** Parameter values longer than this many bytes are cut, with a marker saying how much was cut. */
  paramMaxBytes: number;
  /** Print each line's seq (on with --log-completions, so that `done` lines can be matched). */
  seq?: boolean;
  /** Bind and Execute lines show at most this many characters of their SQL (0 or absent: all). */
  repeatedSqlMaxChars?: number;
  /** log-replay (JSON only): the wire details of P, B and E, and the D, C, S, H lines. */
  replay?: boolean;
}

/** The log settings that shape a query line. */
export type LogFormatSettings = { format: 'text' | 'json'; params: boolean; paramMaxBytes: number; repeatedSqlMaxChars: number; completions: boolean; replay?: boolean } & RedactionSettings;

/** The formatter options of those settings. */
export function formatOptionsOf(log: LogFormatSettings): FormatOptions {
  const replay = log.replay === true;
  return { params: log.params, paramMaxBytes: log.paramMaxBytes, repeatedSqlMaxChars: log.repeatedSqlMaxChars, seq: log.completions || replay, replay };
}

/** The query-line formatter the log settings ask for (at start, and again after a reload). */
export function lineFormatterOf(log: LogFormatSettings): LineFormatter {
  const opts = formatOptionsOf(log);
  const format = log.format === 'json' ? jsonFormatter(opts) : textFormatter(opts);
  const redact = redactionOf(log);
  if (redact === null) return format;
  return (s, r, now) => {
    const sql = redact(r.sql);
    if (sql === undefined) return format(s, r, now);
    // Field by field, in the recorder's order: a spread would give each record a new shape.
    return format(
      s,
      { type: r.type, statement: r.statement, portal: r.portal, sql, params: r.params, cache: r.cache, flight: r.flight, refused: r.refused, seq: r.seq, wire: r.wire, redacted: true },
      now,
    );
  };
}

/** Characters of a B or E line's SQL cut off at repeatedSqlMaxChars (0: none). */
export function repeatedSqlCut(r: LogRecord, max: number): number {
  if (max <= 0 || r.sql === null || r.sql.length <= max || (r.type !== 'B' && r.type !== 'E')) return 0;
  return r.sql.length - max;
}

export type LineFormatter = (s: SessionInfo, r: LogRecord, now: number) => string;
export type CompletionFormatter = (s: SessionInfo, c: CompletionRecord, now: number) => string;
export type SessionFormatter = (s: SessionInfo, l: SessionLine, now: number) => string;

let cachedMs = -1;
let cachedIso = '';
/** ISO-8601 UTC timestamp with milliseconds; formatted once per millisecond. */
export function isoTime(ms: number): string {
  if (ms !== cachedMs) {
    cachedMs = ms;
    cachedIso = new Date(ms).toISOString();
  }
  return cachedIso;
}


function escapeChar(c: string): string {
  switch (c) {
    case '\\':
      return '\\\\';
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
    default: {
      const code = c.charCodeAt(0);
      return code < 0x100 ? '\\x' + code.toString(16).padStart(2, '0') : '\\u' + code.toString(16).padStart(4, '0');
    }
  }
}

/**
 * Backslash-escape backslashes, control characters (C0, DEL, C1), line separators and bidi
 * controls (escape.ts) so the text stays on one line and reads as it is.
 */
export function escapeText(s: string): string {
  return TEXT_UNSAFE.test(s) ? s.replace(TEXT_UNSAFE_ALL, escapeChar) : s;
}

/** The inverse of escapeText, for tools that read the text log back (\n \r \t \\ \xHH \uHHHH). */
export function unescapeText(s: string): string {
  if (!s.includes('\\')) return s;
  return s.replace(/\\(n|r|t|\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})/g, (_m, e: string) => {
    switch (e) {
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case '\\':
        return '\\';
      default:
        return String.fromCharCode(Number.parseInt(e.slice(1), 16));
    }
  });
}

/** A name (statement, portal, user, database) as a single token: bare when plain, quoted otherwise. */
export function nameToken(name: string): string {
  return name !== '' && /^[\w.$-]+$/.test(name) ? name : jsonSafe(JSON.stringify(name));
}

interface ParamValue {
  /** Text (format 0) or lowercase hex (format 1) of at most paramMaxBytes bytes. */
  value: string;
  binary: boolean;
  /** Bytes cut off the end, 0 when whole. */
  cut: number;
}

function paramValue(v: Buffer, format: number, max: number): ParamValue {
  const cut = v.length > max ? v.length - max : 0;
  const shown = cut > 0 ? v.subarray(0, max) : v;
  if (format === 1) return { value: shown.toString('hex'), binary: true, cut };
  // A cut may split a UTF-8 sequence; toString() then ends in U+FFFD, which is honest enough.
  return { value: shown.toString('utf8'), binary: false, cut };
}


function textParams(p: BindParams, max: number): string {
  // A Bind message's own values are read from its bytes, without a view each (issue 21).
  const m = p instanceof BindMessage ? p : null;
  const n = m !== null ? m.paramCount : p.values.length;
  let out = '(';
  for (let i = 0; i < n; i++) {
    if (i > 0) out += ', ';
    let buf: Buffer | null | undefined;
    let at = 0;
    let len = 0;
    if (m !== null) {
      at = m.valueStart(i);
      buf = at < 0 ? null : m.buf;
      len = m.valueBytes(i);
    } else {
      buf = p.values[i];
      len = buf === null || buf === undefined ? 0 : buf.length;
    }
    if (buf === null || buf === undefined) out += 'NULL';
    else out += paramFormat(p.formats, i) === 1 ? hexParam(buf, at, len, max) : quotedParam(buf, at, len, max);
  }
  return out + ')';
}

/** A text parameter (buf[at, at + len)) as the text log shows it: quoted as SQL quotes it, escaped, and cut at max bytes. */
function quotedParam(buf: Buffer, at: number, len: number, max: number): string {
  const cut = len > max ? len - max : 0;
  // A cut may split a UTF-8 sequence; the text then ends in U+FFFD, which is honest enough.
  const text = escapeText(buf.toString('utf8', at, at + len - cut));
  const quoted = "'" + (text.includes("'") ? text.replace(QUOTES, "''") : text) + "'";
  return cut === 0 ? quoted : quoted + '...(+' + cut + ' bytes)';
}

/** A binary parameter (buf[at, at + len)) as the text log shows it: x'hex', cut at max bytes. */
function hexParam(buf: Buffer, at: number, len: number, max: number): string {
  const cut = len > max ? len - max : 0;
  const hex = "x'" + buf.toString('hex', at, at + len - cut) + "'";
  return cut === 0 ? hex : hex + '...(+' + cut + ' bytes)';
}

const QUOTES = /'/g;

/**
 * Text format:
 * `2026-11-23T10:15:02.345Z conn=17 app@shop 127.0.0.1:53422 B stmt=s1 params=('42', NULL) sql=SELECT ...`
 */
export function textFormatter(opts: FormatOptions): LineFormatter {
  const prefixOf = textPrefixes();
  const withSeq = opts.seq === true;
  const maxRepeated = opts.repeatedSqlMaxChars ?? 0;
  // A session's B and E lines repeat its statement's name and SQL: escaped once while they repeat.
  const statementToken = lastOf(nameToken);
  const sqlField = lastOf((sql: string | null) => textSqlField(sql, 0));
  return (s, r, now) => {
    let line = isoTime(now) + prefixOf(s) + r.type;
    if (withSeq && r.seq !== undefined) line += ' seq=' + r.seq;
    if (r.statement !== null && r.statement !== '') line += ' stmt=' + statementToken(r.statement);
    if (r.portal !== null && r.portal !== '') line += ' portal=' + nameToken(r.portal);
    if (r.params !== null) {
      if (r.redacted === true) line += ' params=' + r.params.values.length + ':redacted';
      else line += opts.params ? ' params=' + textParams(r.params, opts.paramMaxBytes) : ' params=' + r.params.values.length + ':hidden';
    }
    if (r.cache !== undefined) line += ' cache=' + r.cache;
    if (r.flight !== undefined) line += ' flight=' + r.flight;
    if (r.refused !== undefined) line += ' refused=' + r.refused;
    const cut = repeatedSqlCut(r, maxRepeated);
    return line + (cut === 0 ? sqlField(r.sql) : textSqlField(r.sql, cut)) + '\n';
  };
}

/** A text line's SQL field: ` sql=` and the SQL escaped, cut by `cut` characters (repeatedSqlCut), or ` sql=?`. */
export function textSqlField(sql: string | null, cut: number): string {
  if (sql === null) return ' sql=?';
  if (cut === 0) return ' sql=' + escapeText(sql);
  return ' sql=' + escapeText(sql.slice(0, sql.length - cut)) + '...(+' + cut + ' chars)';
}

/** f, remembering its last argument and result: a compare instead of f's work (a regular expression's scan, an encoding). */
export function lastOf<A, R>(f: (a: A) => R): (a: A) => R {
  let seen = false;
  let arg: A;
  let result: R;
  return (a) => {
    // `seen`, not a sentinel value: whatever the first argument is (null among them), f runs on it.
    if (!seen || a !== arg) {
      result = f(a);
      arg = a;
      seen = true;
    }
    return result;
  };
}

/** The part of a text line fixed for a session, made once per session rather than once per line. */
export function textPrefixes(): (s: SessionInfo) => string {
  const prefixes = new WeakMap<SessionInfo, string>();
  return (s) => {
    let prefix = prefixes.get(s);
    if (prefix === undefined) {
      // User and database come straight from the client's startup packet: never print them raw.
      prefix = ' conn=' + s.id + ' ' + nameToken(s.user) + '@' + nameToken(s.database) + ' ' + s.client + (s.node === undefined ? ' ' : ' node=' + s.node + ' ');
      prefixes.set(s, prefix);
    }
    return prefix;
  };
}

/** Milliseconds with microsecond resolution, without trailing zeros: 0.153, 12.5, 3. */
function msText(ms: number): string {
  return String(Math.round(ms * 1000) / 1000);
}

/**
 * Text completion line, after the answer of the Q/E line with the same conn and seq:
 * `2026-11-23T10:15:02.346Z conn=17 app@shop 127.0.0.1:53422 done seq=42 of=E ms=0.153 rows=1 cache=hit`
 * with ` status=error sqlstate=22012` (or status=skipped|suspended|aborted) when not ok.
 */
export function textCompletionFormatter(): CompletionFormatter {
  const prefixOf = textPrefixes();
  return (s, c, now) => {
    let line = isoTime(now) + prefixOf(s) + 'done seq=' + c.seq + ' of=' + c.of + ' ms=' + msText(c.ms) + ' rows=' + c.rows;
    if (c.status !== 'ok') line += ' status=' + c.status;
    if (c.sqlstate !== null) line += ' sqlstate=' + nameToken(c.sqlstate);
    if (c.cache !== undefined) line += ' cache=' + c.cache;
    if (c.flight !== undefined) line += ' flight=' + c.flight;
    return line + '\n';
  };
}

/**
 * JSON completion line:
 * `{"ts":"...","conn":17,"user":"app","db":"shop","client":"127.0.0.1:53422","type":"done","seq":42,"of":"E","ms":0.153,"rows":1,"status":"ok","sqlstate":null}`
 * (plus "cache"/"flight" when set).
 */
export function jsonCompletionFormatter(): CompletionFormatter {
  return (s, c, now) => {
    const o = jsonHead(s, now, 'done');
    Object.assign(o, {
      seq: c.seq,
      of: c.of,
      ms: Math.round(c.ms * 1000) / 1000,
      rows: c.rows,
      status: c.status,
      sqlstate: c.sqlstate,
    });
    if (c.cache !== undefined) o['cache'] = c.cache;
    if (c.flight !== undefined) o['flight'] = c.flight;
    if (c.rowsDigest !== undefined) o['rowsDigest'] = c.rowsDigest;
    return jsonSafe(JSON.stringify(o)) + '\n';
  };
}

/**
 * log-replay's session lines (JSON only), without seq:
 * `{...,"type":"start","startup":{"application_name":"pgbench"},"protocol":"3.0","upstream":"127.0.0.1:5432","system":"7301..."}`
 * (no "system" when unknown) and `{...,"type":"end","reason":"terminate"}`.
 */
export function jsonSessionFormatter(): SessionFormatter {
  return (s, l, now) => {
    const o = jsonHead(s, now, l.type);
    if (l.type === 'start') {
      o['startup'] = l.start.startup;
      o['protocol'] = l.start.protocol;
      o['upstream'] = l.start.upstream;
      if (l.start.system !== undefined) o['system'] = l.start.system;
    } else o['reason'] = l.reason;
    return jsonSafe(JSON.stringify(o)) + '\n';
  };
}

/** The fields every JSON line starts with. */
function jsonHead(s: SessionInfo, now: number, type: string): Record<string, unknown> {
  const head: Record<string, unknown> = { ts: isoTime(now), conn: s.id, user: s.user, db: s.database, client: s.client };
  if (s.node !== undefined) head['node'] = s.node;
  head['type'] = type;
  return head;
}

/**
 * log-replay's fields of a line: true when the line is whole with them (D, C, S, H carry no SQL
 * or cache fields), false when the query line's own fields follow.
 */
function replayFields(o: Record<string, unknown>, r: LogRecord): boolean {
  switch (r.type) {
    case 'P':
      o['paramTypes'] = r.wire?.paramTypes ?? [];
      return false;
    case 'B':
      o['paramFormats'] = r.params === null ? [] : r.params.formats;
      o['resultFormats'] = r.wire?.resultFormats ?? [];
      return false;
    case 'E':
      o['maxRows'] = r.wire?.maxRows ?? 0;
      return false;
    case 'D':
    case 'C':
      o['kind'] = r.wire?.kind;
      o['name'] = r.statement;
      return true;
    case 'S':
    case 'H':
      return true;
    default:
      return false;
  }
}

type JsonParam = string | null | { text?: string; hex?: string; truncatedBytes?: number };

function jsonParams(p: BindParams, max: number): JsonParam[] {
  const out: JsonParam[] = [];
  for (let i = 0; i < p.values.length; i++) {
    const v = p.values[i];
    if (v === null || v === undefined) {
      out.push(null);
      continue;
    }
    const pv = paramValue(v, paramFormat(p.formats, i), max);
    if (!pv.binary && pv.cut === 0) out.push(pv.value);
    else if (pv.binary) out.push(pv.cut > 0 ? { hex: pv.value, truncatedBytes: pv.cut } : { hex: pv.value });
    else out.push({ text: pv.value, truncatedBytes: pv.cut });
  }
  return out;
}

/**
 * JSON lines format, one object per line with the same fields as the text format:
 * `{"ts":"...","conn":17,"user":"app","db":"shop","client":"127.0.0.1:53422","type":"B","stmt":"s1","portal":"","params":["42",null],"sql":"SELECT ..."}`
 * Text parameters are strings; binary ones {"hex":...}; cut ones carry "truncatedBytes".
 */
export function jsonFormatter(opts: FormatOptions): LineFormatter {
  const withSeq = opts.seq === true;
  const replay = opts.replay === true;
  const maxRepeated = opts.repeatedSqlMaxChars ?? 0;
  return (s, r, now) => {
    const o = jsonHead(s, now, r.type);
    if (withSeq && r.seq !== undefined) o['seq'] = r.seq;
    if (replay) {
      const done = replayFields(o, r);
      if (done) return jsonSafe(JSON.stringify(o)) + '\n';
    }
    if (r.statement !== null) o['stmt'] = r.statement;
    if (r.portal !== null) o['portal'] = r.portal;
    if (r.params !== null) {
      if (opts.params && r.redacted !== true) o['params'] = jsonParams(r.params, opts.paramMaxBytes);
      else o['paramCount'] = r.params.values.length;
      if (r.redacted === true) o['redacted'] = true;
    }
    if (r.cache !== undefined) o['cache'] = r.cache;
    if (r.flight !== undefined) o['flight'] = r.flight;
    if (r.refused !== undefined) o['refused'] = r.refused;
    const cut = repeatedSqlCut(r, maxRepeated);
    if (cut === 0) o['sql'] = r.sql;
    else {
      o['sql'] = r.sql!.slice(0, r.sql!.length - cut);
      o['sqlCutChars'] = cut;
    }
    // JSON.stringify escapes C0 controls and quotes; jsonSafe the rest (escape.ts).
    return jsonSafe(JSON.stringify(o)) + '\n';
  };
}
