/**
 * Whether the server allows a change stream, for cache-invalidation auto: asked once at start
 * over pgscribe's own connection. The answer names the missing piece (wal_level, the REPLICATION
 * attribute, the right to create the publication, or the operator's publication itself), so
 * that the one start-up line an operator reads says what to change.
 *
 * @see https://www.postgresql.org/docs/15/logical-replication-security.html
 */
import type { PgConnection } from '../pg/connection';
import { quoteLiteral } from './replication-connection';

export type WalReadiness = { ok: true } | { ok: false; missing: string };

/**
 * Columns: wal_level, the user may replicate (REPLICATION or superuser), the publication exists,
 * the user may create it (CREATE on the database, or superuser), the user's name.
 */
function readinessSql(publication: string): string {
  return `SELECT pg_catalog.current_setting('wal_level'),
  r.rolreplication OR r.rolsuper,
  EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = ${quoteLiteral(publication)}),
  r.rolsuper OR pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'),
  r.rolname
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`;
}

/**
 * Asks over conn (a connection to one database; a publication is per database, so an operator's
 * publication is looked for there). operatorPublication '': pgscribe's own, which it creates.
 */
export async function walReadiness(conn: PgConnection, ownPublication: string, operatorPublication: string): Promise<WalReadiness> {
  const name = operatorPublication === '' ? ownPublication : operatorPublication;
  const r = await conn.query(readinessSql(name));
  const [level, replicate, exists, create, user] = r.rows[0] ?? [];
  if (level !== 'logical') return { ok: false, missing: `wal_level is ${level ?? 'unknown'}, not logical (set wal_level = logical in postgresql.conf and restart PostgreSQL)` };
  if (replicate !== 't') return { ok: false, missing: `the REPLICATION attribute: ${user ?? 'the catalog user'} has neither it nor superuser (ALTER ROLE ... REPLICATION)` };
  if (exists !== 't') {
    if (operatorPublication !== '') return { ok: false, missing: `publication ${operatorPublication}, named in cache-wal-publication, does not exist` };
    if (create !== 't') return { ok: false, missing: `publication rights: ${ownPublication} does not exist and ${user ?? 'the catalog user'} may not create it (GRANT CREATE ON DATABASE, or create it: CREATE PUBLICATION ${ownPublication})` };
  }
  return { ok: true };
}
