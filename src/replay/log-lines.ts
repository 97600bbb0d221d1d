/**
 * One line of a `--log-format json --log-replay` query log (docs/replay.md), read back into the
 * record replay acts on. A line that is not such a record (another format, a cut line, a line of
 * a newer pgscribe) is `null`: the reader counts it, it never throws.
 */
import type { OutcomeStatus } from './report-types';

/** A Bind parameter as logged: text, null, or bytes; `cut` when log-param-max-bytes cut it. */
export type LoggedParam = { text: string } | { hex: string } | null;

interface Head {
  /** Milliseconds since the epoch (the line's `ts`). */
  ts: number;
  conn: number;
  user: string;
  db: string;
}

export interface StartLine extends Head {
  kind: 'start';
  startup: Record<string, string>;
  upstream: string | null;
  system: string | null;
}
export interface EndLine extends Head {
  kind: 'end';
  reason: string;
}
export interface QueryLine extends Head {
  kind: 'Q';
  seq: number;
  sql: string | null;
  /** Why the line cannot be sent as logged (redacted); null when it can. */
  unreplayable: string | null;
}
export interface ParseLine extends Head {
  kind: 'P';
  seq: number;
  stmt: string;
  sql: string | null;
  paramTypes: number[];
  unreplayable: string | null;
}
export interface BindLine extends Head {
  kind: 'B';
  seq: number;
  stmt: string;
  portal: string;
  paramFormats: number[];
  params: LoggedParam[];
  resultFormats: number[];
  unreplayable: string | null;
}
export interface ExecuteLine extends Head {
  kind: 'E';
  seq: number;
  portal: string;
  maxRows: number;
  /** The SQL of the portal's statement, for the digest (null when pgscribe did not know it). */
  sql: string | null;
}
export interface TargetLine extends Head {
  kind: 'D' | 'C';
  seq: number;
  target: 'S' | 'P';
  name: string;
}
export interface BareLine extends Head {
  kind: 'S' | 'H';
  seq: number;
}
export interface DoneLine extends Head {
  kind: 'done';
  seq: number;
  of: 'Q' | 'E';
  ms: number;
  rows: number;
  status: OutcomeStatus;
  sqlstate: string | null;
  rowsDigest: string | null;
}

/** A message the session sent, in the order sent. */
export type MessageLine = QueryLine | ParseLine | BindLine | ExecuteLine | TargetLine | BareLine;
export type LogLine = StartLine | EndLine | MessageLine | DoneLine;

const STATUSES = new Set(['ok', 'error', 'skipped', 'suspended', 'aborted']);

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}
function int(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) ? v : null;
}
/** Integers each within [min, max] (what the wire field holds), else null. */
function ints(v: unknown, min: number, max: number): number[] | null {
  if (!Array.isArray(v) || v.length > 0xffff) return null;
  for (const x of v) {
    const n = int(x);
    if (n === null || n < min || n > max) return null;
  }
  return v as number[];
}
const INT16 = [-0x8000, 0x7fff] as const;
const HEX = /^(?:[0-9a-fA-F]{2})*$/;

/** An optional list of integers: [] when absent, null when present and not such a list. */
function optionalInts(v: unknown, min: number, max: number): number[] | null {
  return v === undefined ? [] : ints(v, min, max);
}
const OID = [0, 0xffffffff] as const;
const INT32 = [-0x80000000, 0x7fffffff] as const;

/** Parameters as logged; `cut` tells whether log-param-max-bytes cut any. */
function params(v: unknown): { values: LoggedParam[]; cut: boolean } | null {
  if (!Array.isArray(v) || v.length > 0xffff) return null;
  const values: LoggedParam[] = [];
  let cut = false;
  for (const p of v) {
    if (p === null) values.push(null);
    else if (typeof p === 'string') values.push({ text: p });
    else if (typeof p === 'object') {
      const o = p as Record<string, unknown>;
      if (o['truncatedBytes'] !== undefined) cut = true;
      if (typeof o['hex'] === 'string') {
        if (!HEX.test(o['hex'])) return null;
        values.push({ hex: o['hex'] });
      }
      else if (typeof o['text'] === 'string') values.push({ text: o['text'] });
      else return null;
    } else return null;
  }
  return { values, cut };
}

/** Reasons a line cannot be replayed as logged: the report counts them by these words. */
export const Unreplayable = {
  Redacted: 'redacted by log-redact or log-sql normalized',
  ParamsHidden: 'parameters hidden (log-params off)',
  ParamCut: 'a parameter cut at log-param-max-bytes',
  SqlUnknown: 'SQL unknown to pgscribe (statement prepared before the log)',
  NotUtf8: 'text that was not UTF-8 at capture (client_encoding other than UTF8): its bytes are not in the log',
} as const;

/**
 * pgscribe logs SQL and text parameters as UTF-8; bytes that were not (a LATIN1 session's é)
 * became U+FFFD, and sending that would send what the client never did. Such a text is not
 * replayed (a real U+FFFD in the text is left out too: when unsure, do not send).
 */
function lostBytes(s: string | null): boolean {
  return s !== null && s.includes('\uFFFD');
}

/** Parse one log line; null when it is not a replay record. */
export function parseLogLine(line: string): LogLine | null {
  if (line.length === 0 || line.charCodeAt(0) !== 0x7b /* { */) return null;
  let o: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(line);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
    o = v as Record<string, unknown>;
  } catch {
    return null;
  }
  const tsText = str(o['ts']);
  const conn = int(o['conn']);
  const user = str(o['user']);
  const db = str(o['db']);
  if (tsText === null || conn === null || user === null || db === null) return null;
  const ts = Date.parse(tsText);
  if (Number.isNaN(ts)) return null;
  const head = { ts, conn, user, db };
  const type = o['type'];
  if (type === 'start') {
    const startup: Record<string, string> = {};
    const s = o['startup'];
    if (s !== null && typeof s === 'object' && !Array.isArray(s)) {
      for (const [k, v] of Object.entries(s as Record<string, unknown>)) if (typeof v === 'string') startup[k] = v;
    }
    return { kind: 'start', ...head, startup, upstream: str(o['upstream']), system: str(o['system']) };
  }
  if (type === 'end') return { kind: 'end', ...head, reason: str(o['reason']) ?? '' };
  const seq = int(o['seq']);
  if (seq === null) return null;
  const redacted = o['redacted'] === true ? Unreplayable.Redacted : null;
  switch (type) {
    case 'Q': {
      const sql = str(o['sql']);
      return { kind: 'Q', ...head, seq, sql, unreplayable: redacted ?? (sql === null ? Unreplayable.SqlUnknown : lostBytes(sql) ? Unreplayable.NotUtf8 : null) };
    }
    case 'P': {
      const sql = str(o['sql']);
      const types = optionalInts(o['paramTypes'], ...OID);
      if (types === null) return null;
      return { kind: 'P', ...head, seq, stmt: str(o['stmt']) ?? '', sql, paramTypes: types, unreplayable: redacted ?? (sql === null ? Unreplayable.SqlUnknown : lostBytes(sql) ? Unreplayable.NotUtf8 : null) };
    }
    case 'B': {
      const p = params(o['params']);
      const paramFormats = optionalInts(o['paramFormats'], ...INT16);
      const resultFormats = optionalInts(o['resultFormats'], ...INT16);
      if (paramFormats === null || resultFormats === null) return null;
      // Parameters are logged as values, or as a count when hidden or redacted; neither is not a Bind line.
      if (p === null && int(o['paramCount']) === null) return null;
      let why: string | null = redacted;
      if (why === null && p === null) why = Unreplayable.ParamsHidden;
      if (why === null && p !== null && p.cut) why = Unreplayable.ParamCut;
      if (why === null && p !== null && p.values.some((v) => v !== null && 'text' in v && lostBytes(v.text))) why = Unreplayable.NotUtf8;
      return {
        kind: 'B',
        ...head,
        seq,
        stmt: str(o['stmt']) ?? '',
        portal: str(o['portal']) ?? '',
        paramFormats,
        params: p === null ? [] : p.values,
        resultFormats,
        unreplayable: why,
      };
    }
    case 'E': {
      // A row limit the wire cannot carry is not a line pgscribe wrote.
      const maxRows = int(o['maxRows']) ?? 0;
      if (maxRows < INT32[0] || maxRows > INT32[1]) return null;
      return { kind: 'E', ...head, seq, portal: str(o['portal']) ?? '', maxRows, sql: str(o['sql']) };
    }
    case 'D':
    case 'C': {
      const target = o['kind'] === 'P' ? 'P' : o['kind'] === 'S' ? 'S' : null;
      if (target === null) return null;
      return { kind: type, ...head, seq, target, name: str(o['name']) ?? '' };
    }
    case 'S':
    case 'H':
      return { kind: type, ...head, seq };
    case 'done': {
      const of = o['of'] === 'Q' || o['of'] === 'E' ? o['of'] : null;
      const status = str(o['status']);
      if (of === null || status === null || !STATUSES.has(status)) return null;
      return {
        kind: 'done',
        ...head,
        seq,
        of,
        ms: typeof o['ms'] === 'number' ? o['ms'] : 0,
        rows: int(o['rows']) ?? 0,
        status: status as OutcomeStatus,
        sqlstate: str(o['sqlstate']),
        rowsDigest: str(o['rowsDigest']),
      };
    }
    default:
      return null;
  }
}
