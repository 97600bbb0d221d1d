/**
 * The proxy's own operational messages (listening, client and upstream errors, reopen, shutdown):
 * one line each on stderr, `2026-11-23T10:15:02.345Z WARN message key=value ...`.
 */
import { jsonSafe } from './escape';

export type OpsLevel = 'INFO' | 'WARN' | 'ERROR';

export type OpsFields = Record<string, string | number | boolean | undefined>;

export interface OpsLog {
  info(msg: string, fields?: OpsFields): void;
  warn(msg: string, fields?: OpsFields): void;
  error(msg: string, fields?: OpsFields): void;
}

function fieldValue(v: string | number | boolean): string {
  const s = String(v);
  // Quoted values may hold what a client chose (a user name, a reason): nothing raw (escape.ts).
  return /^[\w.:@/[\]-]+$/.test(s) ? s : jsonSafe(JSON.stringify(s));
}

export function formatOps(level: OpsLevel, msg: string, fields: OpsFields | undefined, now: number): string {
  let line = new Date(now).toISOString() + ' ' + level + ' ' + msg.replace(/[\r\n]+/g, ' ');
  if (fields) {
    for (const k of Object.keys(fields)) {
      const v = fields[k];
      if (v !== undefined) line += ' ' + k + '=' + fieldValue(v);
    }
  }
  return line + '\n';
}

/** Writes to a stream (stderr by default); synchronous enough for a few lines per second. */
export function streamOpsLog(out: NodeJS.WritableStream = process.stderr): OpsLog {
  const w = (level: OpsLevel) => (msg: string, fields?: OpsFields) => {
    out.write(formatOps(level, msg, fields, Date.now()));
  };
  return { info: w('INFO'), warn: w('WARN'), error: w('ERROR') };
}
