/**
 * Names as a session resolves them: relations and types by the first schema of its search path
 * that has them, functions and operators by every schema of it (overload resolution by argument
 * types may pick any; the judge takes the worst), as PostgreSQL does.
 *
 * `schemas` is the session's current_schemas(true): its effective resolution order, pg_catalog
 * included (first unless the search_path names it later) and its temporary schema pg_temp_N
 * when it has one (first: PostgreSQL searches it first for relations and types, and never for
 * functions and operators). A name qualified with `pg_temp` means that temporary schema.
 * @see https://www.postgresql.org/docs/15/ddl-schemas.html#DDL-SCHEMAS-PATH
 * @see https://www.postgresql.org/docs/15/runtime-config-client.html#GUC-SEARCH-PATH
 */
import { nameParts } from '../sql/names';
import type { CatalogSnapshot, FunctionName, OperatorName, Relation, TypeInfo } from './snapshot';

/** Schemas whose relations are the system's (never cached). */
export function isSystemSchema(schema: string): boolean {
  return schema === 'pg_catalog' || schema === 'information_schema' || schema.startsWith('pg_toast');
}

/** The session's temporary schema (pg_temp_N), if it has one. */
function tempSchema(schemas: readonly string[]): string | undefined {
  return schemas.find((s) => s.startsWith('pg_temp_'));
}

/** The schema a qualified name names (pg_temp: the session's), or '' when it is none of the session's. */
function qualifier(parts: string[], schemas: readonly string[]): string {
  const s = parts[parts.length - 2]!;
  return s === 'pg_temp' ? (tempSchema(schemas) ?? '') : s;
}

/** First match in the search path (relations, types); all matches of the named schema when qualified. */
function firstInPath<T extends { readonly schema: string }>(list: readonly T[] | undefined, parts: string[],
  schemas: readonly string[]): T | null {
  if (list === undefined || parts.length > 3) return null;
  if (parts.length > 1) {
    const s = qualifier(parts, schemas);
    return list.find((e) => e.schema === s) ?? null;
  }
  for (const s of schemas) {
    const e = list.find((x) => x.schema === s);
    if (e !== undefined) return e;
  }
  return null;
}

/** Every match in the search path without its temporary schema (functions, operators). */
function allInPath<T extends { readonly schema: string }>(list: readonly T[] | undefined, parts: string[],
  schemas: readonly string[]): T[] {
  if (list === undefined || parts.length > 3) return [];
  if (parts.length > 1) {
    const s = qualifier(parts, schemas);
    return list.filter((e) => e.schema === s);
  }
  return list.filter((e) => !e.schema.startsWith('pg_temp') && schemas.includes(e.schema));
}

/** The relation a name (as the classifier writes it) means to the session, or null. */
export function resolveRelation(snap: CatalogSnapshot, name: string, schemas: readonly string[]): Relation | null {
  const parts = nameParts(name);
  return firstInPath(snap.relationsByName.get(parts[parts.length - 1]!), parts, schemas);
}

/** Every function of that name the session may call by it; empty when none (an unknown name). */
export function resolveFunctions(snap: CatalogSnapshot, name: string, schemas: readonly string[]): FunctionName[] {
  const parts = nameParts(name);
  return allInPath(snap.functions.get(parts[parts.length - 1]!), parts, schemas);
}

/**
 * The operators of that symbol (`+`, or `schema.+` from OPERATOR(schema.+)) the session may use.
 * Empty also for built-in operators: the snapshot holds only those outside pg_catalog and the
 * volatile ones (queries.ts), so an operator it does not hold is known stable or immutable.
 */
export function resolveOperators(snap: CatalogSnapshot, symbol: string, schemas: readonly string[]): OperatorName[] {
  const dot = symbol.lastIndexOf('.');
  if (dot < 0) return allInPath(snap.operators.get(symbol), [symbol], schemas);
  const parts = [...nameParts(symbol.slice(0, dot)), symbol.slice(dot + 1)];
  return allInPath(snap.operators.get(symbol.slice(dot + 1)), parts, schemas);
}

/** A type a cast names: a type, or a relation's row type; null when unknown. */
export function resolveType(snap: CatalogSnapshot, name: string, schemas: readonly string[]): TypeInfo | Relation | null {
  const parts = nameParts(name);
  const last = parts[parts.length - 1]!;
  // Relations and types share one namespace per schema (a table's row type is a type), so the
  // first schema holding either decides.
  const ty = firstInPath(snap.typesByName.get(last), parts, schemas);
  const rel = firstInPath(snap.relationsByName.get(last), parts, schemas);
  if (ty === null || rel === null) return ty ?? rel;
  if (parts.length > 1) return ty;
  return schemas.indexOf(ty.schema) <= schemas.indexOf(rel.schema) ? ty : rel;
}
