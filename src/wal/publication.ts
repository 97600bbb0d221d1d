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
 * @see https://www.postgresql.org/docs/15/logical-replication-publication.html
 * @see https://www.postgresql.org/docs/15/sql-altertable.html#SQL-ALTERTABLE-REPLICA-IDENTITY
 */
import { quoteIdent, quoteLiteral } from './replication-connection';

/** Tables in one ALTER PUBLICATION: a schema script of thousands of tables is added in a few statements. */
export const ADD_BATCH = 200;

/**
 * The tables to add to `publication`: not in it yet, with a usable replica identity (a primary
 * key, REPLICA IDENTITY FULL, or USING INDEX with its index present), owned by a role whose
 * privileges pgscribe's user has (or it is a superuser: pg_has_role is true for one). Columns:
 * the table as `schema.name`, each part quoted when needed.
 */
export function tablesToAddSql(publication: string): string {
  return `SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND c.oid >= 16384
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
    AND (c.relreplident = 'f'
      OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
      OR (c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))
    AND pg_catalog.pg_has_role(c.relowner, 'USAGE')
    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
      WHERE pr.prrelid = c.oid AND p.pubname = ${quoteLiteral(publication)})
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
