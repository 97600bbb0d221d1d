/**
 * The probe: before a session's first cacheable read, pgscribe asks the session itself what
 * shapes its answers, instead of guessing from what it saw: every setting (role and database
 * defaults, ALTER SYSTEM, custom settings that policies read, whatever the startup packet or
 * server-side code set), the current and session user, the effective schema search order and the
 * temp schema. Two sessions share cached answers only when all of that is equal.
 *
 * It runs in the client's own session as a named statement of its own, in the extended protocol,
 * so that the client's unnamed statement and portals are left as they were; it is closed in the
 * same batch. Its answer never reaches the client (ledger.ts, SideRequest).
 *
 * @see https://www.postgresql.org/docs/15/view-pg-settings.html
 * @see https://www.postgresql.org/docs/15/functions-info.html
 */
import { Backend, Frontend } from '../protocol/codes';
import { encodeMessage } from '../protocol/messages';

/** A statement name no client is expected to use; a clash makes the probe fail, which is safe. */
const NAME = 'pgscribe.probe';

/**
 * Every statement pgscribe runs itself starts with this comment, so that pg_stat_statements and
 * the server log tell it from the clients' (the stress harness leaves them out of its counts).
 */
export const OWN_SQL_MARK = '/* pgscribe */';

const SQL =
  OWN_SQL_MARK +
  ' SELECT current_user, session_user, pg_my_temp_schema() <> 0, array_to_json(current_schemas(true))::text, ' +
  "current_setting('search_path'), " +
  "md5(string_agg(name || '=' || coalesce(setting, ''), E'\\n' ORDER BY name)) FROM pg_settings";

/** What the session said about itself. */
export interface SessionIdentity {
  readonly currentUser: string;
  readonly sessionUser: string;
  /** The session has a temp schema: its temp relations may shadow shared ones. */
  readonly hasTempSchema: boolean;
  /** current_schemas(true): where unqualified names are looked up, in order (pg_catalog and pg_temp_N included). */
  readonly schemas: readonly string[];
  /** The search_path setting as written (a pg_temp in it makes plain CREATE TABLE create temp tables). */
  readonly searchPath: string;
  /** md5 of every setting's name and value. */
  readonly settingsDigest: string;
}


function cstr(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8');
}

/** Parse, Bind, Execute, Close and Sync of the probe, as one batch. */
export const PROBE_BATCH: Buffer = Buffer.concat([
  encodeMessage(Frontend.Parse, Buffer.concat([cstr(NAME), cstr(SQL), Buffer.from([0, 0])])),
  // Unnamed portal, the probe statement, no parameter formats, no parameters, no result formats.
  encodeMessage(Frontend.Bind, Buffer.concat([cstr(''), cstr(NAME), Buffer.from([0, 0, 0, 0, 0, 0])])),
  encodeMessage(Frontend.Execute, Buffer.concat([cstr(''), Buffer.from([0, 0, 0, 0])])),
  encodeMessage(Frontend.Close, Buffer.concat([Buffer.from('S'), cstr(NAME)])),
  encodeMessage(Frontend.Sync, Buffer.alloc(0)),
]);

/**
 * The identity in the probe's answer (whole messages, up to its ReadyForQuery), or null when it
 * failed or is not what the probe asks for (the session is then not served from the cache).
 */
export function parseProbeAnswer(answer: Buffer): SessionIdentity | null {
  let row: (string | null)[] | null = null;
  let off = 0;
  while (off + 5 <= answer.length) {
    const type = answer[off]!;
    const end = off + 1 + answer.readUInt32BE(off + 1);
    if (end > answer.length || end < off + 5) return null;
    if (type === Backend.ErrorResponse) return null;
    if (type === Backend.DataRow && row === null) row = dataRow(answer, off + 5, end);
    off = end;
  }
  if (row === null || row.length !== 6 || row.some((v) => v === null)) return null;
  const [currentUser, sessionUser, temp, schemasJson, searchPath, digest] = row as string[];
  let schemas: unknown;
  try {
    schemas = JSON.parse(schemasJson!);
  } catch {
    return null;
  }
  if (!Array.isArray(schemas) || !schemas.every((s): s is string => typeof s === 'string')) return null;
  return { currentUser: currentUser!, sessionUser: sessionUser!, hasTempSchema: temp === 't', schemas, searchPath: searchPath!, settingsDigest: digest! };
}

/** A DataRow's text values (body at buf[start, end)), or null when malformed. */
function dataRow(buf: Buffer, start: number, end: number): (string | null)[] | null {
  if (start + 2 > end) return null;
  const n = buf.readInt16BE(start);
  let off = start + 2;
  const out: (string | null)[] = [];
  for (let i = 0; i < n; i++) {
    if (off + 4 > end) return null;
    const len = buf.readInt32BE(off);
    off += 4;
    if (len === -1) {
      out.push(null);
      continue;
    }
    if (len < 0 || off + len > end) return null;
    out.push(buf.toString('utf8', off, off + len));
    off += len;
  }
  return out;
}

/** The identity as one string: part of every cache key of the session. */
export function identityScope(id: SessionIdentity): string {
  return `${id.currentUser}\0${id.sessionUser}\0${id.hasTempSchema ? 't' : 'f'}\0${id.schemas.join('\u0001')}\0${id.settingsDigest}`;
}
