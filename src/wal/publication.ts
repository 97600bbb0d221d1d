/**
 * What pgscribe's own publication lists, and the SQL that keeps it filled: every permanent
 * ordinary table (leaf partitions included, each by its own name) that has a usable replica
 * identity and that pgscribe's user may add (it owns the table, or is a superuser).
 *
 * Why not FOR ALL TABLES: PostgreSQL refuses UPDATE and DELETE on a table without a replica
 * identity ("cannot update table ... because it does not have a replica identity and publishes
 * updates") as soon as any publication that publishes updates covers it, subscriber or not. A
 * transparent proxy must never make a user's write fail, and never alters a user's table, so a
 * keyless table stays out: its changes are not streamed, and the catalog judge relays reads of
 * it in wal mode (judge.ts). Tables are added one by one, not as a partitioned parent, so that a
 * partition without an identity of its own is never covered either.
 *
 * A listed table that loses its identity later (its primary key dropped, REPLICA IDENTITY
 * NOTHING, its identity index dropped) is dropped from the publication again, or PostgreSQL would
 * refuse its UPDATEs and DELETEs from then on (issue 16 review; change-streams.ts does it when
 * the catalog poll sees the change, so they are refused until then).
 *
 * @see https://www.postgresql.org/docs/15/logical-replication-publication.html
 * @see https://www.postgresql.org/docs/15/sql-altertable.html#SQL-ALTERTABLE-REPLICA-IDENTITY
 */
import { quoteIdent, quoteLiteral } from './replication-connection';

/** Tables in one ALTER PUBLICATION: a schema script of thousands of tables is added in a few statements. */
export const ADD_BATCH = 200;

/**
 * An index PostgreSQL may take as a replica identity (relcache.c, RelationGetIndexList): live,
 * valid, unique, immediate (a DEFERRABLE primary key is not one) and without a predicate.
 */
const IDENTITY_INDEX = 'i.indislive AND i.indisvalid AND i.indisunique AND i.indimmediate AND i.indpred IS NULL';

/**
 * The table `c` (pg_class) has a usable replica identity: REPLICA IDENTITY FULL, DEFAULT with a
 * primary key, or USING INDEX with that index present, each index as IDENTITY_INDEX says.
 */
const USABLE_IDENTITY = `(c.relreplident = 'f'
      OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND ${IDENTITY_INDEX}))
      OR (c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisreplident AND ${IDENTITY_INDEX})))`;

/** `c` (pg_class) is listed in `publication` by itself. */
function listedIn(publication: string): string {
  return `EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
      WHERE pr.prrelid = c.oid AND p.pubname = ${quoteLiteral(publication)})`;
}

/**
 * The tables to add to `publication`: not in it yet, with a usable replica identity, owned by a
 * role whose privileges pgscribe's user has (or it is a superuser: pg_has_role is true for one).
 * Columns: the table as `schema.name`, each part quoted when needed.
 */
export function tablesToAddSql(publication: string): string {
  return `SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND c.oid >= 16384
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
    AND ${USABLE_IDENTITY}
    AND pg_catalog.pg_has_role(c.relowner, 'USAGE')
    AND NOT ${listedIn(publication)}
  ORDER BY 1`;
}

/**
 * The tables to drop from `publication` (pgscribe's own only: an operator's is never altered):
 * listed in it, without a usable replica identity any more. Dropping needs no right on the table,
 * only on the publication. Columns as tablesToAddSql's.
 */
export function tablesToDropSql(publication: string): string {
  return `SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE ${listedIn(publication)}
    AND NOT ${USABLE_IDENTITY}
  ORDER BY 1`;
}

/** ALTER PUBLICATION ... ADD TABLE for each batch of `tables` (already quoted as tablesToAddSql gives them). */
export function addTablesSql(publication: string, tables: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < tables.length; i += ADD_BATCH) {
    // ONLY: each table by itself; a partition or child is added by its own row.
    out.push(`ALTER PUBLICATION ${quoteIdent(publication)} ADD TABLE ${tables.slice(i, i + ADD_BATCH).map((t) => `ONLY ${t}`).join(', ')}`);
  }
  return out;
}

/** ALTER PUBLICATION ... DROP TABLE for each batch of `tables` (as tablesToDropSql gives them). */
export function dropTablesSql(publication: string, tables: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < tables.length; i += ADD_BATCH) {
    out.push(`ALTER PUBLICATION ${quoteIdent(publication)} DROP TABLE ${tables.slice(i, i + ADD_BATCH).map((t) => `ONLY ${t}`).join(', ')}`);
  }
  return out;
}
