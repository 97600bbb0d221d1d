/**
 * The queries that load one database's catalog (snapshot.ts) and notice its changes
 * (knowledge.ts). Each returns plain text columns in a fixed order (the comment above each says
 * which). They run as separate statements on a connection in autocommit (no transaction, so any
 * CatalogSource can run them, psql -c included); the loader takes the fingerprint before and
 * after them and loads again when it moved, so a snapshot is one state of the catalog. Names are
 * unqualified: pg_catalog is searched first unless a role's search_path names it later.
 *
 * Why expression trees and not only pg_depend: PostgreSQL records no dependency on pinned
 * (built-in) objects, so a view calling random() or reading pg_stat_activity has no pg_depend row
 * for it. The stored trees (pg_rewrite.ev_action, pg_policy.polqual / polwithcheck,
 * pg_constraint.conbin, pg_attrdef.adbin) name every function (`:funcid`, `:aggfnoid`,
 * `:winfnoid`), operator (`:opno`, `:eqop`, `:sortop`), relation (`:relid`) and clock reading
 * (`{SQLVALUEFUNCTION :op 0..8` is CURRENT_DATE ... LOCALTIMESTAMP; a `{COERCEVIAIO` to a date/time
 * type reads a text at execution) by oid; pg_depend adds the relations it records.
 *
 * Written for PostgreSQL 14 and later (pg_range.rngmultitypid).
 * @see https://www.postgresql.org/docs/15/catalogs.html
 */

/** Date/time types and every type built on them (domains, arrays, ranges, multiranges, composites holding one). */
const CLOCK_CTE = String.raw`
edge(child, parent) AS (
  SELECT t.oid, t.typbasetype FROM pg_type t WHERE t.typtype = 'd'
  UNION ALL SELECT t.oid, t.typelem FROM pg_type t WHERE t.typelem <> 0
  UNION ALL SELECT r.rngtypid, r.rngsubtype FROM pg_range r
  UNION ALL SELECT r.rngmultitypid, r.rngtypid FROM pg_range r
  UNION ALL SELECT t.oid, a.atttypid FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid
    WHERE t.typtype = 'c' AND a.attnum > 0 AND NOT a.attisdropped
), clock(oid) AS (
  SELECT oid FROM pg_type WHERE oid IN ('date'::regtype, 'time'::regtype, 'timetz'::regtype, 'timestamp'::regtype,
    'timestamptz'::regtype)
  UNION SELECT e.child FROM edge e JOIN clock c ON e.parent = c.oid
)`;

/** Relations of temporary schemas: left out of the fingerprint (only their own session sees them). */
const TEMP_RELS = `(SELECT oid FROM pg_class WHERE relpersistence = 't')`;

/**
 * The fingerprint: per catalog, the row count and the sum of the rows' xmin. A DDL inserts,
 * updates or deletes catalog rows: the count changes, or a row's xmin does (the new version
 * carries the writing transaction's id), and a sum sees a change that a max could miss when an
 * older transaction commits late. Temporary relations' rows are left out.
 * Columns: catalog, count, xmin sum.
 */
export const FINGERPRINT = [
  ['pg_class', `relpersistence <> 't'`],
  ['pg_proc', ''],
  ['pg_inherits', ''],
  ['pg_rewrite', `ev_class NOT IN ${TEMP_RELS}`],
  ['pg_policy', ''],
  ['pg_namespace', ''],
  ['pg_type', `typnamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname ~ '^pg_(toast_)?temp_')`],
  ['pg_operator', ''],
  ['pg_db_role_setting', ''],
  ['pg_trigger', `tgrelid NOT IN ${TEMP_RELS}`],
  ['pg_constraint', `conrelid NOT IN ${TEMP_RELS}`],
  ['pg_attrdef', `adrelid NOT IN ${TEMP_RELS}`],
  ['pg_cast', ''],
].map(([cat, where]) => `SELECT '${cat}', count(*), coalesce(sum(xmin::text::bigint), 0) FROM pg_catalog.${cat}` +
  (where === '' ? '' : ` WHERE ${where}`)).join('\nUNION ALL ') +
  // A configuration reload (pg_reload_conf(), SIGHUP) changes the settings of open sessions.
  "\nUNION ALL SELECT 'conf', 0, (extract(epoch FROM pg_catalog.pg_conf_load_time()) * 1000000)::bigint";

/** Columns: oid, name. */
export const SCHEMAS = 'SELECT oid, nspname FROM pg_namespace';

/**
 * Tables, partitioned tables, views, materialized views, foreign tables and sequences (not
 * indexes, TOAST tables, composite types). Columns: oid, schema oid, name, relkind,
 * relpersistence, relrowsecurity, relforcerowsecurity, reltype, has user triggers, has non-SELECT
 * rules, row type holds a date/time.
 */
export const RELATIONS = String.raw`WITH RECURSIVE ${CLOCK_CTE}
SELECT c.oid, c.relnamespace, c.relname, c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity, c.reltype,
  EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND NOT g.tgisinternal),
  EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.ev_type <> '1'),
  c.reltype IN (SELECT oid FROM clock)
FROM pg_class c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')`;

/** Direct inheritance and partitioning. Columns: child oid, parent oid. */
export const INHERITS = 'SELECT inhrelid, inhparent FROM pg_inherits';

/**
 * Foreign keys whose ON DELETE / ON UPDATE action changes the referencing table (CASCADE, SET
 * NULL, SET DEFAULT). Columns: referencing table oid, referenced table oid.
 */
export const CASCADES = `SELECT conrelid, confrelid FROM pg_constraint
WHERE contype = 'f' AND (confdeltype NOT IN ('a', 'r') OR confupdtype NOT IN ('a', 'r'))`;

/**
 * What stored expressions reach, per owner: 'v' a view's or materialized view's query (not those
 * in pg_catalog / information_schema), 'p' a table's policies, 'd' a domain's constraints, 'w' a
 * table's defaults, generated columns and CHECK constraints (evaluated on write).
 * Columns: owner kind, owner oid, ref kind, then per ref kind:
 *   'f' (a function, or an operator's function): -, volatility, schema, name (volatility of an
 *       aggregate includes its transition and final functions);
 *   'r' (a relation read): relation oid;   't' (a domain coerced to): type oid;
 *   'c' (reads the clock: CURRENT_TIMESTAMP & co, or a text coerced to a date/time type).
 */
export const DEPENDENCIES = String.raw`WITH RECURSIVE ${CLOCK_CTE},
trees(kind, owner, tree) AS (
  SELECT 'v', r.ev_class, r.ev_action::text FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
    WHERE r.ev_type = '1' AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
  UNION ALL SELECT 'p', p.polrelid, coalesce(p.polqual::text, '') || ' ' || coalesce(p.polwithcheck::text, '') FROM pg_policy p
  UNION ALL SELECT 'd', k.contypid, k.conbin::text FROM pg_constraint k WHERE k.contypid <> 0 AND k.conbin IS NOT NULL
  UNION ALL SELECT 'w', k.conrelid, k.conbin::text FROM pg_constraint k WHERE k.conrelid <> 0 AND k.contype = 'c'
  UNION ALL SELECT 'w', a.adrelid, a.adbin::text FROM pg_attrdef a
), fvol(oid, vol) AS (
  SELECT p.oid, greatest(p.provolatile::text, coalesce(tf.provolatile::text, 'i'), coalesce(ff.provolatile::text, 'i'))
  FROM pg_proc p LEFT JOIN pg_aggregate g ON g.aggfnoid = p.oid
    LEFT JOIN pg_proc tf ON tf.oid = g.aggtransfn LEFT JOIN pg_proc ff ON ff.oid = g.aggfinalfn
), called(kind, owner, fn) AS (
  SELECT t.kind, t.owner, m[1]::oid FROM trees t
    CROSS JOIN LATERAL regexp_matches(t.tree, ':(?:funcid|aggfnoid|winfnoid) (\d+)', 'g') m
  UNION SELECT t.kind, t.owner, o.oprcode::oid FROM trees t
    CROSS JOIN LATERAL regexp_matches(t.tree, ':(?:opno|eqop|sortop) (\d+)', 'g') m
    JOIN pg_operator o ON o.oid = m[1]::oid
)
SELECT DISTINCT c.kind, c.owner::text, 'f', NULL, v.vol, n.nspname, p.proname
  FROM called c JOIN fvol v ON v.oid = c.fn JOIN pg_proc p ON p.oid = c.fn JOIN pg_namespace n ON n.oid = p.pronamespace
UNION SELECT t.kind, t.owner::text, 'r', m[1], NULL, NULL, NULL
  FROM trees t CROSS JOIN LATERAL regexp_matches(t.tree, ':relid (\d+)', 'g') m
  WHERE t.kind IN ('v', 'p') AND m[1]::oid <> t.owner
UNION SELECT 'v', r.ev_class::text, 'r', d.refobjid::text, NULL, NULL, NULL
  FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
  WHERE r.ev_type = '1' AND d.refobjid <> r.ev_class
UNION SELECT 'p', p.polrelid::text, 'r', d.refobjid::text, NULL, NULL, NULL
  FROM pg_policy p JOIN pg_depend d ON d.classid = 'pg_policy'::regclass AND d.objid = p.oid AND d.refclassid = 'pg_class'::regclass
  WHERE d.refobjid <> p.polrelid
UNION SELECT t.kind, t.owner::text, 't', m[1], NULL, NULL, NULL
  FROM trees t CROSS JOIN LATERAL regexp_matches(t.tree, ':(?:resulttype|consttype) (\d+)', 'g') m
    JOIN pg_type y ON y.oid = m[1]::oid
  WHERE y.typtype = 'd' AND y.oid <> t.owner
UNION SELECT t.kind, t.owner::text, 'c', NULL, NULL, NULL, NULL FROM trees t
  WHERE t.tree ~ '\{SQLVALUEFUNCTION :op [0-8] ' OR (t.tree LIKE '%{COERCEVIAIO %' AND EXISTS (
    SELECT 1 FROM regexp_matches(t.tree, ':resulttype (\d+)', 'g') m JOIN clock k ON k.oid = m[1]::oid))`;

/**
 * Functions by schema and name, all overloads together. Columns: schema, name, worst volatility
 * of its overloads ('i' < 's' < 'v'; an aggregate's includes its transition and final
 * functions), worst volatility of the overloads callable with one row (attribute notation
 * `x.f`: one argument without a default, of a composite or pseudo type), or '' when none, and
 * whether some STABLE overload has a body the catalog cannot read (not LANGUAGE sql with a
 * string body: plpgsql, C, BEGIN ATOMIC), so the relations it reads are unknown.
 */
export const FUNCTIONS = String.raw`WITH fvol(oid, vol) AS (
  SELECT p.oid, greatest(p.provolatile::text, coalesce(tf.provolatile::text, 'i'), coalesce(ff.provolatile::text, 'i'))
  FROM pg_proc p LEFT JOIN pg_aggregate g ON g.aggfnoid = p.oid
    LEFT JOIN pg_proc tf ON tf.oid = g.aggtransfn LEFT JOIN pg_proc ff ON ff.oid = g.aggfinalfn
)
SELECT n.nspname, p.proname, max(v.vol),
  coalesce(max(v.vol) FILTER (WHERE p.pronargs >= 1 AND p.pronargs - p.pronargdefaults <= 1
    AND (SELECT t.typtype FROM pg_type t WHERE t.oid = p.proargtypes[0]) IN ('c', 'p')), ''),
  bool_or(v.vol = 's' AND (l.lanname <> 'sql' OR p.prosqlbody IS NOT NULL))
FROM pg_proc p JOIN fvol v ON v.oid = p.oid JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_language l ON l.oid = p.prolang
GROUP BY n.nspname, p.proname`;

/**
 * The bodies of STABLE LANGUAGE sql functions outside pg_catalog and information_schema: what
 * they read and call is judged like a statement's (a STABLE function may read tables, and the
 * answer depends on them). Columns: schema, name, body.
 */
export const FUNCTION_BODIES = `SELECT n.nspname, p.proname, p.prosrc
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
WHERE l.lanname = 'sql' AND p.provolatile = 's' AND p.prosqlbody IS NULL
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')`;

/**
 * Operators outside pg_catalog, and any whose function is volatile (built-in operators are known
 * stable or immutable otherwise). Columns: schema, symbol, worst volatility of its functions.
 */
export const OPERATORS = `SELECT n.nspname, o.oprname, max(p.provolatile::text)
FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace JOIN pg_proc p ON p.oid = o.oprcode
WHERE o.oprnamespace <> 'pg_catalog'::regnamespace OR p.provolatile = 'v'
GROUP BY n.nspname, o.oprname`;

/**
 * Types a cast may name: every type but arrays and the row types of tables, views and the like
 * (those are found through the relation). Columns: oid, schema oid, name, typtype, base type oid
 * (domains), holds a date/time, worst volatility of its input and output functions and of the
 * casts to it.
 */
export const TYPES = String.raw`WITH RECURSIVE ${CLOCK_CTE}
SELECT t.oid, t.typnamespace, t.typname, t.typtype, t.typbasetype, t.oid IN (SELECT oid FROM clock),
  greatest(i.provolatile::text, o.provolatile::text, coalesce((SELECT max(p.provolatile::text) FROM pg_cast k
    JOIN pg_proc p ON p.oid = k.castfunc WHERE k.casttarget = t.oid), 'i'))
FROM pg_type t JOIN pg_proc i ON i.oid = t.typinput JOIN pg_proc o ON o.oid = t.typoutput
  LEFT JOIN pg_class r ON r.oid = t.typrelid
WHERE (t.typrelid = 0 OR r.relkind = 'c') AND t.typcategory <> 'A'`;

/**
 * Role and database defaults of this database (ALTER ROLE / DATABASE ... SET), lowest precedence
 * first: ALTER ROLE ALL, the database's, the role's, the role's in this database. Columns: role
 * ('' for all roles), setting as `name=value`.
 */
export const ROLE_SETTINGS = `SELECT coalesce(r.rolname, ''), c.setting
FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) WITH ORDINALITY AS c(setting, n)
WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
ORDER BY s.setrole <> 0, s.setdatabase <> 0, r.rolname, c.n`;

/**
 * The relations whose changes `publication` streams, as pg_publication_tables lists them (with
 * publish_via_partition_root off, a partitioned table's leaves by their own names; FOR ALL TABLES
 * and FOR TABLES IN SCHEMA expanded), less those with a row filter (PostgreSQL 15: a change to a
 * row the filter leaves out is not streamed; to_jsonb reads the column where it exists).
 * Columns: relation oid.
 */
export function published(publication: string): string {
  return `SELECT c.oid FROM pg_publication_tables t JOIN pg_namespace n ON n.nspname = t.schemaname
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename
  WHERE t.pubname = ${literal(publication)} AND to_jsonb(t) ->> 'rowfilter' IS NULL`;
}

/**
 * The fingerprint of what `publication` streams (joined to FINGERPRINT's rows): ALTER PUBLICATION
 * writes pg_publication_rel or pg_publication_namespace, which FINGERPRINT does not count, and a
 * table dropped from it must stop being cached at once. Columns as FINGERPRINT's.
 */
export function publishedFingerprint(publication: string): string {
  return `SELECT 'published', count(*), coalesce(sum(hashtext(schemaname || '.' || tablename)), 0)
  FROM pg_publication_tables WHERE pubname = ${literal(publication)}
  UNION ALL SELECT 'publication', count(*), coalesce(sum((pubinsert::int + pubupdate::int * 2 + pubdelete::int * 4 + pubtruncate::int * 8 + pubviaroot::int * 16)), 0)
  FROM pg_publication WHERE pubname = ${literal(publication)}`;
}

/** A string literal (standard_conforming_strings is on since PostgreSQL 9.1). */
function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}
