/**
 * The probe: before a session's first cacheable read, pgscribe asks the session itself what
 * shapes its answers, instead of guessing from what it saw: every setting (role and database
 * defaults, ALTER SYSTEM, whatever the startup packet or server-side code set), the current and
 * session user, the effective schema search order and the temp schema. Two sessions share cached
 * answers only when all of that is equal.
 *
 * Custom settings (`app.tenant`, the ones row-level security policies read) are placeholders that
 * pg_settings does not list, and no view does: the probe asks for each by name, every name a
 * role or database default sets (pg_db_role_setting, readable by every role) and every name the
 * session SET itself (the text says it; a custom setting changed where pgscribe cannot see,
 * set_config() or a DO block, taints the session instead). A name from the startup packet is in
 * the key already, and SET of it is seen.
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
import { CUSTOM_SETTING_NAME } from '../sql/sql-class';

/** A statement name no client is expected to use; a clash makes the probe fail, which is safe. */
const NAME = 'pgscribe.probe';

/**
 * Every statement pgscribe runs itself starts with this comment, so that pg_stat_statements and
 * the server log tell it from the clients' (the stress harness leaves them out of its counts).
 */
export const OWN_SQL_MARK = '/* pgscribe */';


function probeSql(customNames: readonly string[]): string {
  const named = customNames.map((n) => `'${n}'`).join(', ');
  return OWN_SQL_MARK +
    ' SELECT current_user, session_user, pg_my_temp_schema() <> 0, array_to_json(current_schemas(true))::text, ' +
    "current_setting('search_path'), " +
    "md5(string_agg(name || '=' || coalesce(setting, ''), E'\\n' ORDER BY name)), " +
    "(SELECT coalesce(json_agg(json_build_array(n, current_setting(n, true)) ORDER BY n), '[]')::text FROM " +
    "(SELECT split_part(c, '=', 1) FROM pg_db_role_setting, unnest(setconfig) c" +
    (named === '' ? '' : ` UNION SELECT unnest(ARRAY[${named}]::text[])`) +
    ") AS s(n) WHERE n LIKE '%.%') FROM pg_settings";
}

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
  /** The custom settings the probe asked for by name, with their values (JSON text). */
  readonly customSettings: string;
}


function cstr(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8');
}

/**
 * Parse, Bind, Execute, Close and Sync of the probe, as one batch; customNames: the custom
 * settings the session SET (each matching CUSTOM_SETTING_NAME).
 */
export function probeBatch(customNames: readonly string[] = []): Buffer {
  for (const n of customNames) if (!CUSTOM_SETTING_NAME.test(n)) throw new Error(`not a custom setting name: ${n}`);
  return Buffer.concat([
    encodeMessage(Frontend.Parse, Buffer.concat([cstr(NAME), cstr(probeSql(customNames)), Buffer.from([0, 0])])),
    // Unnamed portal, the probe statement, no parameter formats, no parameters, no result formats.
    encodeMessage(Frontend.Bind, Buffer.concat([cstr(''), cstr(NAME), Buffer.from([0, 0, 0, 0, 0, 0])])),
    encodeMessage(Frontend.Execute, Buffer.concat([cstr(''), Buffer.from([0, 0, 0, 0])])),
    encodeMessage(Frontend.Close, Buffer.concat([Buffer.from('S'), cstr(NAME)])),
    encodeMessage(Frontend.Sync, Buffer.alloc(0)),
  ]);
}

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
  if (row === null || row.length !== 7 || row.some((v) => v === null)) return null;
  const [currentUser, sessionUser, temp, schemasJson, searchPath, digest, custom] = row as string[];
  let schemas: unknown;
  try {
    schemas = JSON.parse(schemasJson!);
  } catch {
    return null;
  }
  if (!Array.isArray(schemas) || !schemas.every((s): s is string => typeof s === 'string')) return null;
  return {
    currentUser: currentUser!, sessionUser: sessionUser!, hasTempSchema: temp === 't', schemas, searchPath: searchPath!,
    settingsDigest: digest!, customSettings: custom!,
  };
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
  return `${id.currentUser}\0${id.sessionUser}\0${id.hasTempSchema ? 't' : 'f'}\0${id.schemas.join('\u0001')}\0${id.settingsDigest}\0${id.customSettings}`;
}
