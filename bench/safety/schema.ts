/**
 * The checker's database: tenants' versioned rows behind row-level security, reached through
 * every path the SQL text of a statement does not show: views (plain, security_invoker, and
 * materialized), a partitioned table, an inheritance parent and child, triggers that write another
 * table, foreign keys that cascade or set null, two schemas with a same-named table, STABLE and
 * VOLATILE functions (some calling set_config, one called in attribute notation), and role
 * defaults (ALTER ROLE ... SET).
 *
 * Functions name their tables with the schema: they run under the caller's search_path.
 *
 * Every versioned row has `ver`, taken from one sequence by the column default and, on UPDATE,
 * either by the statement itself (`ver = nextval(...)`, VERSION_BUMP) or by a BEFORE UPDATE
 * trigger: a row's version only grows, whatever path changed it (a cascade's SET NULL, a
 * trigger, a function), and a version is never reused, even after a rollback. Only the tables
 * that something other than the clients' own UPDATEs changes keep the trigger (items, written by
 * functions; tenant_totals and touches, written by a trigger and a function; links, set null by
 * a cascade): pgscribe cannot see what a trigger does, so every write to a table with one drops
 * the whole database's answers, and were all tables so, few answers would live long enough to
 * be judged.
 *
 * Ids are global: each family of rows (below) has its own range, and rows inserted during the run
 * take ids from NEW_ID_START up, never reused.
 */

/** Tenants 1..TENANTS. */
export const TENANTS = 4;

/** Login roles the clients use; postgres is the superuser (sees every row). */
export const APP_ROLES = ['app_a', 'app_b', 'app_c'] as const;
/** NOLOGIN roles every app role is a member of (SET ROLE targets). */
export const GROUP_ROLES = ['viewer_x', 'viewer_y'] as const;
export const SUPERUSER = 'postgres';
/** Owners of docs rows (RLS by current_user). */
export const DOC_OWNERS = [...APP_ROLES, ...GROUP_ROLES, SUPERUSER];

/** First id of rows inserted during the run. */
export const NEW_ID_START = 10_000;

/**
 * A temp table that shadows s1.shelf and s2.shelf for the session that makes it (same first
 * columns; one row, never written).
 */
export const TEMP_SHELF = "CREATE TEMP TABLE IF NOT EXISTS shelf AS SELECT 900 AS id, 1 AS tenant, 1::bigint AS ver, 'tmp'::text AS tag";

/** Role defaults at the start (ALTER ROLE ... SET); the admin loop changes some during the run. */
export const INITIAL_ROLE_DEFAULTS: Record<string, Record<string, string>> = {
  app_a: { search_path: 's1, public', 'app.tenant': '1', extra_float_digits: '0' },
  app_b: { search_path: 's2, public', 'app.tenant': '2' },
  app_c: {},
};

/**
 * `ALTER ROLE r SET k = v`: search_path as a list (quoted, it would be one schema name), other
 * values quoted.
 */
export function alterRoleSet(role: string, k: string, v: string): string {
  return `ALTER ROLE ${role} SET ${k} = ${k === 'search_path' ? v : `'${v}'`}`;
}

const TENANT_EXPR = "nullif(current_setting('app.tenant', true), '')::int";

function rls(table: string, expr: string): string {
  return `ALTER TABLE ${table} ENABLE ROW LEVEL SECURITY; CREATE POLICY p_${table.replace('.', '_')} ON ${table} USING (${expr});`;
}

/** What a client's UPDATE of a table without the trigger sets, so that the row's version grows. */
export const VERSION_BUMP = "ver = nextval('public.ver_seq')";

function bump(table: string): string {
  return `CREATE TRIGGER bump_${table.replace('.', '_')} BEFORE UPDATE ON ${table} FOR EACH ROW EXECUTE FUNCTION bump_ver();`;
}

/** DDL and seed rows, run directly as postgres before pgscribe starts. */
export function setupSql(): string {
  const owners = DOC_OWNERS.map((o) => `'${o}'`).join(', ');
  const lines = [
    ...[...APP_ROLES].map((r) => `CREATE ROLE ${r} LOGIN;`),
    ...[...GROUP_ROLES].map((r) => `CREATE ROLE ${r} NOLOGIN;`),
    `GRANT ${GROUP_ROLES.join(', ')} TO ${APP_ROLES.join(', ')};`,
    ...Object.entries(INITIAL_ROLE_DEFAULTS).flatMap(([r, d]) => Object.entries(d).map(([k, v]) => `${alterRoleSet(r, k, v)};`)),
    // A lock wait longer than this fails the statement (the client rolls back) rather than stalling.
    "ALTER DATABASE postgres SET lock_timeout = '5s';",
    'CREATE SEQUENCE ver_seq;',
    "CREATE FUNCTION bump_ver() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.ver := nextval('public.ver_seq'); RETURN NEW; END$$;",
    'CREATE SCHEMA s1; CREATE SCHEMA s2;',

    // items (RLS by tenant) and tenant_totals, written by a trigger on items
    `CREATE TABLE items (id int PRIMARY KEY, tenant int NOT NULL, ver bigint NOT NULL DEFAULT nextval('ver_seq'), qty int NOT NULL DEFAULT 0,
       f float8 GENERATED ALWAYS AS (id::float8 / 3) STORED, b bytea GENERATED ALWAYS AS (int4send(id)) STORED);`,
    `CREATE TABLE tenant_totals (tenant int PRIMARY KEY, ver bigint NOT NULL DEFAULT nextval('ver_seq'), n int NOT NULL, qty_sum bigint NOT NULL);`,
    `CREATE FUNCTION items_total() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
       IF TG_OP IN ('UPDATE', 'DELETE') THEN UPDATE public.tenant_totals SET n = n - 1, qty_sum = qty_sum - OLD.qty WHERE tenant = OLD.tenant; END IF;
       IF TG_OP IN ('UPDATE', 'INSERT') THEN UPDATE public.tenant_totals SET n = n + 1, qty_sum = qty_sum + NEW.qty WHERE tenant = NEW.tenant; END IF;
       RETURN NULL; END$$;`,
    'CREATE TRIGGER items_total AFTER INSERT OR UPDATE OR DELETE ON items FOR EACH ROW EXECUTE FUNCTION items_total();',
    bump('items'),
    bump('tenant_totals'),
    rls('items', `tenant = ${TENANT_EXPR}`),
    rls('tenant_totals', `tenant = ${TENANT_EXPR}`),
    'CREATE VIEW v_items WITH (security_invoker = true) AS SELECT id, tenant, ver, qty FROM items;',
    'CREATE MATERIALIZED VIEW mv_items AS SELECT id, tenant, ver FROM items;',
    'CREATE FUNCTION items_of(t int) RETURNS SETOF items STABLE LANGUAGE sql AS $$SELECT * FROM public.items WHERE tenant = t$$;',
    "CREATE FUNCTION current_tenant() RETURNS int STABLE LANGUAGE sql AS $$SELECT nullif(current_setting('app.tenant', true), '')::int$$;",
    'CREATE FUNCTION bump_item(i int) RETURNS bigint VOLATILE LANGUAGE sql AS $$UPDATE public.items SET qty = qty + 1 WHERE id = i RETURNING ver$$;',
    'CREATE FUNCTION refresh_mv() RETURNS void VOLATILE SECURITY DEFINER LANGUAGE plpgsql AS $$BEGIN REFRESH MATERIALIZED VIEW public.mv_items; END$$;',
    // touches: written by touch(items), which reads like a column (`SELECT i.touch FROM items i`)
    `CREATE TABLE touches (tenant int PRIMARY KEY, ver bigint NOT NULL DEFAULT nextval('ver_seq'), n int NOT NULL DEFAULT 0);`,
    bump('touches'),
    'CREATE FUNCTION touch(i items) RETURNS bigint VOLATILE LANGUAGE sql AS $$UPDATE public.touches SET n = n + 1 WHERE tenant = i.tenant RETURNING ver$$;',

    // parents, children (ON DELETE CASCADE), links (ON DELETE SET NULL)
    `CREATE TABLE parents (id int PRIMARY KEY, tenant int NOT NULL, ver bigint NOT NULL DEFAULT nextval('ver_seq'));`,
    `CREATE TABLE children (id int PRIMARY KEY, tenant int NOT NULL, ver bigint NOT NULL DEFAULT nextval('ver_seq'), parent_id int REFERENCES parents ON DELETE CASCADE);`,
    `CREATE TABLE links (id int PRIMARY KEY, tenant int NOT NULL, ver bigint NOT NULL DEFAULT nextval('ver_seq'), parent_id int REFERENCES parents ON DELETE SET NULL);`,
    ...['parents', 'children', 'links'].map((x) => rls(x, `tenant = ${TENANT_EXPR}`)),
    bump('links'),

    // meas: partitioned by tenant
    `CREATE TABLE meas (id int NOT NULL, tenant int NOT NULL, ver bigint NOT NULL DEFAULT nextval('ver_seq'), val int NOT NULL DEFAULT 0, PRIMARY KEY (tenant, id)) PARTITION BY LIST (tenant);`,
    'CREATE TABLE meas_p1 PARTITION OF meas FOR VALUES IN (1, 2);',
    'CREATE TABLE meas_p2 PARTITION OF meas FOR VALUES IN (3, 4);',
    ...['meas', 'meas_p1', 'meas_p2'].map((x) => rls(x, `tenant = ${TENANT_EXPR}`)),
    'CREATE VIEW v_meas WITH (security_invoker = true) AS SELECT id, tenant, ver FROM meas;',

    // animals and its inheritance child dogs
    `CREATE TABLE animals (id int PRIMARY KEY, tenant int NOT NULL, ver bigint NOT NULL DEFAULT nextval('ver_seq'), kind text NOT NULL DEFAULT 'animal', legs int NOT NULL DEFAULT 4);`,
    "CREATE TABLE dogs (breed text NOT NULL DEFAULT 'mutt') INHERITS (animals);",
    "ALTER TABLE dogs ALTER kind SET DEFAULT 'dog';",
    ...['animals', 'dogs'].map((x) => rls(x, `tenant = ${TENANT_EXPR}`)),

    // docs: RLS by current_user
    `CREATE TABLE docs (id int PRIMARY KEY, owner name NOT NULL, ver bigint NOT NULL DEFAULT nextval('ver_seq'), body text NOT NULL DEFAULT '');`,
    rls('docs', 'owner = current_user'),

    // shelf in two schemas, with different columns: search_path decides which one a name means
    `CREATE TABLE s1.shelf (id int PRIMARY KEY, tenant int NOT NULL, ver bigint NOT NULL DEFAULT nextval('ver_seq'), tag text NOT NULL DEFAULT 's1', f float8 GENERATED ALWAYS AS (id::float8 / 3) STORED);`,
    `CREATE TABLE s2.shelf (id int PRIMARY KEY, tenant int NOT NULL, ver bigint NOT NULL DEFAULT nextval('ver_seq'), tag text NOT NULL DEFAULT 's2', note text NOT NULL DEFAULT 'n');`,

    // functions that change settings where pgscribe cannot see it
    "CREATE FUNCTION app_set_tenant(t int) RETURNS text VOLATILE LANGUAGE sql AS $$SELECT set_config('app.tenant', coalesce(t::text, ''), false)$$;",
    "CREATE FUNCTION app_set_path(p text) RETURNS text VOLATILE LANGUAGE sql AS $$SELECT set_config('search_path', p, false)$$;",

    // seed rows
    `INSERT INTO tenant_totals (tenant, n, qty_sum) SELECT g, 0, 0 FROM generate_series(1, ${TENANTS}) g;`,
    `INSERT INTO touches (tenant) SELECT g FROM generate_series(1, ${TENANTS}) g;`,
    `INSERT INTO items (id, tenant) SELECT g, (g % ${TENANTS}) + 1 FROM generate_series(1, 40) g;`,
    `INSERT INTO parents (id, tenant) SELECT g, (g % ${TENANTS}) + 1 FROM generate_series(100, 119) g;`,
    `INSERT INTO children (id, tenant, parent_id) SELECT g, ((100 + g % 20) % ${TENANTS}) + 1, 100 + g % 20 FROM generate_series(200, 259) g;`,
    `INSERT INTO links (id, tenant, parent_id) SELECT g, ((100 + g % 20) % ${TENANTS}) + 1, 100 + g % 20 FROM generate_series(300, 339) g;`,
    `INSERT INTO meas (id, tenant) SELECT g, (g % ${TENANTS}) + 1 FROM generate_series(400, 439) g;`,
    `INSERT INTO animals (id, tenant) SELECT g, (g % ${TENANTS}) + 1 FROM generate_series(500, 519) g;`,
    `INSERT INTO dogs (id, tenant) SELECT g, (g % ${TENANTS}) + 1 FROM generate_series(520, 539) g;`,
    `INSERT INTO docs (id, owner) SELECT g, (ARRAY[${owners}])[1 + g % ${DOC_OWNERS.length}] FROM generate_series(600, 629) g;`,
    `INSERT INTO s1.shelf (id, tenant) SELECT g, (g % ${TENANTS}) + 1 FROM generate_series(700, 719) g;`,
    `INSERT INTO s2.shelf (id, tenant) SELECT g, (g % ${TENANTS}) + 1 FROM generate_series(800, 819) g;`,
    'REFRESH MATERIALIZED VIEW mv_items;',

    'GRANT USAGE ON SCHEMA s1, s2 TO PUBLIC;',
    'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, s1, s2 TO PUBLIC;',
    'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO PUBLIC;',
    'ANALYZE;',
  ];
  return lines.join('\n');
}

/**
 * Every versioned row as the model starts from it: family, id, tenant (0 where none), owner,
 * partition or kind, version. Run directly as postgres (no RLS) once the seed is in.
 */
export const MODEL_SEED_SQL = `
SELECT 'items', id, tenant, '', ver FROM items
UNION ALL SELECT 'totals', tenant, tenant, '', ver FROM tenant_totals
UNION ALL SELECT 'touches', tenant, tenant, '', ver FROM touches
UNION ALL SELECT 'parents', id, tenant, '', ver FROM parents
UNION ALL SELECT 'children', id, tenant, '', ver FROM children
UNION ALL SELECT 'links', id, tenant, '', ver FROM links
UNION ALL SELECT 'meas', id, tenant, '', ver FROM meas
UNION ALL SELECT 'animals', id, tenant, kind, ver FROM animals
UNION ALL SELECT 'docs', id, 0, owner::text, ver FROM docs
UNION ALL SELECT 'shelf1', id, tenant, '', ver FROM s1.shelf
UNION ALL SELECT 'shelf2', id, tenant, '', ver FROM s2.shelf
UNION ALL SELECT 'mv', id, tenant, '', ver FROM mv_items`;
