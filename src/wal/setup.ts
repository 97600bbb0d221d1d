/**
 * What a change stream needs on the server before it can stream, and what to tell the operator
 * when it cannot: the publication (pgscribe's own, created when missing, or the operator's, used
 * as it is), a unique slot name, and advice for each way the setup fails.
 *
 * @see https://www.postgresql.org/docs/15/logical-replication-publication.html
 */
import { PgClientError, PgError } from '../pg/connection';
import { quoteIdent, quoteLiteral, type ReplicationConnection } from './replication-connection';
import { namesStandby } from './sync-standby';

/**
 * pgscribe's own publication, used when the operator names none. It lists tables one by one
 * (publication.ts adds each table that has a replica identity): FOR ALL TABLES would make
 * PostgreSQL refuse UPDATE and DELETE on every table without one, subscriber or not.
 */
export const DEFAULT_PUBLICATION = 'pgscribe_all';

/** A setup failure the operator can fix; `hint` says how. */
export class SetupError extends Error {
  constructor(
    message: string,
    readonly hint: string,
  ) {
    super(message);
    this.name = 'SetupError';
  }
}

export interface Publication {
  name: string;
  /** pgscribe created it just now. */
  created: boolean;
}

/** The columns of pg_publication that say what is published; older servers lack some. */
const ACTIONS = ['pubinsert', 'pubupdate', 'pubdelete', 'pubtruncate'] as const;

/**
 * Make sure the publication exists. `operatorName` null: pgscribe's own, created empty when
 * missing (tables are added to it by publication.ts; relations outside it are not cached in wal
 * mode). A name: the operator's, never created nor altered; the tables it does not list are the
 * operator's choice (the catalog judge relays reads of them). Either is refused when it publishes
 * fewer kinds of change than all four: an UPDATE the stream never carries would leave a listed
 * table's cached answers stale for their whole TTL, which in wal mode may be an hour.
 */
export async function ensurePublication(conn: ReplicationConnection, operatorName: string | null, timeoutMs: number): Promise<Publication> {
  const name = operatorName ?? DEFAULT_PUBLICATION;
  const r = await conn.query(`SELECT * FROM pg_catalog.pg_publication WHERE pubname = ${quoteLiteral(name)}`, timeoutMs);
  const row = r.rows[0];
  if (row === undefined) {
    if (operatorName !== null) {
      throw new SetupError(
        `publication ${JSON.stringify(name)} does not exist in this database`,
        `create it (CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ...), or leave cache-wal-publication unset for pgscribe to create and fill ${DEFAULT_PUBLICATION}; the change stream stays down until it exists`,
      );
    }
    try {
      await conn.query(`CREATE PUBLICATION ${quoteIdent(name)}`, timeoutMs);
      return { name, created: true };
    } catch (err) {
      // Another pgscribe created it in the meantime: the same definition.
      if (err instanceof PgError && err.code === '42710') return { name, created: false };
      throw new SetupError(
        `cannot create publication ${name}: ${(err as Error).message}`,
        `pgscribe's user needs CREATE on the database (GRANT CREATE ON DATABASE ...), or an operator can create it: CREATE PUBLICATION ${name}; the change stream stays down until it exists`,
      );
    }
  }
  const col = (field: string): string | null | undefined => {
    const i = r.fields.indexOf(field);
    return i < 0 ? undefined : row[i];
  };
  const actions = ACTIONS.filter((a) => col(a) !== 't').map((a) => a.slice(3));
  if (actions.length > 0) {
    const fix =
      operatorName === null
        ? `DROP PUBLICATION ${name} for pgscribe to create it again`
        : `ALTER PUBLICATION ${quoteIdent(name)} SET (publish = 'insert, update, delete, truncate')`;
    throw new SetupError(
      `publication ${name} leaves out the ${actions.join(', ')} changes`,
      `pgscribe needs every kind of change, or the cache would miss them: ${fix}; the change stream stays down (nothing of this database is served from the cache) until then`,
    );
  }
  return { name, created: false };
}

/**
 * Refuse to stream while synchronous_standby_names names this connection's application_name
 * (or is '*'): PostgreSQL could pick pgscribe as a synchronous standby (sync-standby.ts). Asked
 * on the walsender's own connection, so it is the value that walsender runs with.
 */
export async function refuseSynchronousStandby(conn: ReplicationConnection, applicationName: string, timeoutMs: number): Promise<void> {
  const setting = (await conn.query('SHOW synchronous_standby_names', timeoutMs)).rows[0]?.[0] ?? '';
  if (!namesStandby(setting, applicationName)) return;
  throw new SetupError(
    `synchronous_standby_names = '${setting}' would make pgscribe's change stream (application_name '${applicationName}') a synchronous standby`,
    `commits would wait for pgscribe and count as replicated once pgscribe read them: name the real standbys in synchronous_standby_names instead of '*'; the change stream stays down (nothing of this database is served from the cache) until then, and is tried again every few seconds`,
  );
}

let slots = 0;

/**
 * A slot name no other connection of this process uses: pgscribe_<pid>_<n>. Another host may
 * have the same pid; CREATE_REPLICATION_SLOT then fails with 42710 and the next attempt takes
 * the next number.
 */
export function nextSlotName(): string {
  slots = (slots + 1) % 1_000_000_000;
  return `pgscribe_${process.pid}_${slots}`;
}

/** What the operator can do about a failed attempt (empty when pgscribe's retry is the answer). */
export function adviceFor(err: unknown): string {
  if (err instanceof SetupError) return err.hint;
  if (err instanceof PgError) {
    if (err.code === '42501') return 'the user needs the REPLICATION attribute (ALTER ROLE ... REPLICATION)';
    if (err.code === '55000' && /wal_level/.test(err.message)) return 'set wal_level = logical in postgresql.conf and restart PostgreSQL';
    if (err.code === '53400') return 'raise max_replication_slots (each pgscribe database stream holds one temporary slot)';
    if (err.code === '53300') return 'the server has no connection or WAL sender to spare: raise max_connections or max_wal_senders';
    if (err.code === '28000') return 'pg_hba.conf must let this user connect to this database (a logical replication connection matches the database name, not "replication")';
    if (err.code === '42710') return 'a slot of that name exists (another host with the same pid?); the next attempt takes another name';
  }
  if (err instanceof PgClientError && err.code === 'PGSCRIBE_PG_QUERY_TIMEOUT') {
    return 'creating a replication slot waits for every transaction running at that moment to end: look for long or idle-in-transaction sessions (pg_stat_activity) and forgotten prepared transactions (pg_prepared_xacts)';
  }
  return '';
}
