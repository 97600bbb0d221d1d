/**
 * How the catalog knowledge reads PostgreSQL: one SQL text in, its rows out as text (the simple
 * query protocol's text format: booleans `t`/`f`, numbers in decimal, NULL as null). pgscribe's
 * own connection (src/pg/) implements it; tests implement it over psql or with canned rows.
 */

/** The rows of one query, every value as text. */
export interface CatalogRows {
  fields: string[];
  rows: (string | null)[][];
}

/** A connection to one database that runs one query at a time. A failed query rejects. */
export interface CatalogSource {
  query(sql: string): Promise<CatalogRows>;
}
