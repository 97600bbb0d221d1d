/**
 * One database's catalog in memory: what the verdicts (judge.ts) need, loaded with the queries of
 * queries.ts. Compact by design: relations, types and function names are a few thousand small
 * records; expressions (views, policies, domain checks, defaults) keep only what they reach.
 */
import type { CatalogRows, CatalogSource } from './source';
import * as Q from './queries';
import { addUnique } from '../unique-list';

/** pg_proc.provolatile: immutable, stable, volatile ('i' < 's' < 'v'). */
export type Volatility = 'i' | 's' | 'v';

/** A function an expression calls (directly or as an operator). */
export interface FunctionRef {
  readonly vol: Volatility;
  readonly schema: string;
  readonly name: string;
}

/** What a stored expression reaches (a view's query, a table's policies, its defaults and checks, a domain's checks). */
export interface Reach {
  readonly functions: FunctionRef[];
  readonly relations: number[];
  readonly domains: number[];
  /** Reads the clock: CURRENT_TIMESTAMP & co, or a text coerced to a date/time type. */
  clock: boolean;
}

/** A relation (relkind r, p, v, m, f, S). */
export interface Relation {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  /** pg_class.relkind. */
  readonly kind: string;
  /** pg_class.relpersistence: p, u (unlogged), t (temporary). */
  readonly persistence: string;
  readonly rowSecurity: boolean;
  readonly forceRowSecurity: boolean;
  readonly rowType: number;
  /** Has triggers that are not internal (foreign-key triggers are internal). */
  readonly userTriggers: boolean;
  /** Has rules other than a view's SELECT rule (DO ALSO / INSTEAD on writes). */
  readonly writeRules: boolean;
  /** Its row type holds a date/time (a cast of text to it reads 'now'). */
  readonly clockRow: boolean;
  readonly parents: number[];
  readonly children: number[];
  /** Tables whose foreign key changes them when this one's rows are deleted or updated. */
  readonly cascadesTo: number[];
  /** v / m: its query. */
  view: Reach | null;
  /** Its policies' expressions. */
  policies: Reach | null;
  /** Its defaults, generated columns and CHECK constraints. */
  writeSide: Reach | null;
}

/** One schema's functions of one name, all overloads together. */
export interface FunctionName {
  readonly schema: string;
  /** Worst volatility of every overload. */
  readonly vol: Volatility;
  /** Worst volatility of the overloads attribute notation may call (`x.f`); '' when none. */
  readonly rowVol: Volatility | '';
  /** Some STABLE overload has a body the catalog cannot read. */
  readonly opaqueStable: boolean;
  /** Bodies of its STABLE LANGUAGE sql overloads. */
  readonly bodies: string[];
}

/** One schema's operators of one symbol. */
export interface OperatorName {
  readonly schema: string;
  readonly vol: Volatility;
}

/** A type a cast may name. */
export interface TypeInfo {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  /** pg_type.typtype: b, c, d (domain), e, p, r, m. */
  readonly kind: string;
  /** A domain's base type (0 otherwise). */
  readonly base: number;
  /** Holds a date/time (a domain over one, a range or a composite of one ...). */
  readonly clock: boolean;
  /** Worst volatility of its input and output functions and of the casts to it. */
  readonly castVol: Volatility;
  /** A domain's CHECK constraints. */
  checks: Reach | null;
}

/** A role or database default (ALTER ROLE / DATABASE ... SET). */
export interface RoleSetting {
  /** '' for every role. */
  readonly role: string;
  /** `name=value`. */
  readonly setting: string;
}

/** Text columns to values (the simple protocol's text format). */
const num = (v: string | null | undefined): number => (v === null || v === undefined ? 0 : Number(v));
const bool = (v: string | null | undefined): boolean => v === 't' || v === 'true';
const str = (v: string | null | undefined): string => v ?? '';
/** An unexpected value counts as volatile. */
const vol = (v: string | null | undefined): Volatility => (v === 'i' || v === 's' ? v : 'v');

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

/** The rows of every snapshot query, in load order. */
export interface SnapshotRows {
  fingerprint: string;
  schemas: CatalogRows;
  relations: CatalogRows;
  inherits: CatalogRows;
  cascades: CatalogRows;
  dependencies: CatalogRows;
  functions: CatalogRows;
  bodies: CatalogRows;
  operators: CatalogRows;
  types: CatalogRows;
  settings: CatalogRows;
  /** The publication the change stream reads (wal mode), or null. */
  publication?: string | null;
  /** Q.published(publication)'s rows; absent or null without a publication. */
  published?: CatalogRows | null;
}

/** The fingerprint rows as one comparable string. */
export function fingerprintOf(rows: CatalogRows): string {
  return rows.rows.map((r) => r.map(str).join(':')).join(',');
}

/**
 * The fingerprint of the catalog, and of what `publication` streams when one is given: a change
 * of either reloads the snapshot.
 */
export async function readFingerprint(source: CatalogSource, publication: string | null): Promise<string> {
  const fp = fingerprintOf(await source.query(Q.FINGERPRINT));
  return publication === null ? fp : fp + ',' + fingerprintOf(await source.query(Q.publishedFingerprint(publication)));
}

/** How many times a load starts over when the catalog changed while it ran. */
const LOAD_ATTEMPTS = 3;

/** One database's catalog, loaded at one moment. */
export class CatalogSnapshot {
  readonly schemaNames = new Map<number, string>();
  readonly relations = new Map<number, Relation>();
  readonly relationsByName = new Map<string, Relation[]>();
  readonly functions = new Map<string, FunctionName[]>();
  readonly operators = new Map<string, OperatorName[]>();
  readonly types = new Map<number, TypeInfo>();
  readonly typesByName = new Map<string, TypeInfo[]>();
  readonly roleSettings: RoleSetting[] = [];
  readonly fingerprint: string;
  /** The publication the change stream reads (wal mode: a table outside it is not cached), or null. */
  readonly publication: string | null;
  /** The oids of the relations `publication` streams (empty without one). */
  readonly published = new Set<number>();

  /**
   * Loads the catalog through source: the fingerprint, every query, the fingerprint again; starts
   * over when the two differ (a DDL committed meanwhile). Rejects when a query fails or the
   * catalog keeps changing.
   */
  static async load(source: CatalogSource, publication: string | null = null): Promise<CatalogSnapshot> {
    for (let attempt = 0; attempt < LOAD_ATTEMPTS; attempt++) {
      const before = await readFingerprint(source, publication);
      const rows: SnapshotRows = {
        fingerprint: before,
        schemas: await source.query(Q.SCHEMAS),
        relations: await source.query(Q.RELATIONS),
        inherits: await source.query(Q.INHERITS),
        cascades: await source.query(Q.CASCADES),
        dependencies: await source.query(Q.DEPENDENCIES),
        functions: await source.query(Q.FUNCTIONS),
        bodies: await source.query(Q.FUNCTION_BODIES),
        operators: await source.query(Q.OPERATORS),
        types: await source.query(Q.TYPES),
        settings: await source.query(Q.ROLE_SETTINGS),
        publication,
        published: publication === null ? null : await source.query(Q.published(publication)),
      };
      const after = await readFingerprint(source, publication);
      if (after === before) return new CatalogSnapshot(rows);
    }
    throw new Error(`the catalog changed during each of ${LOAD_ATTEMPTS} loads`);
  }

  constructor(r: SnapshotRows) {
    this.fingerprint = r.fingerprint;
    this.publication = r.publication ?? null;
    for (const [oid] of r.published?.rows ?? []) this.published.add(num(oid));
    for (const [oid, name] of r.schemas.rows) this.schemaNames.set(num(oid), str(name));
    for (const row of r.relations.rows) {
      const rel: Relation = {
        oid: num(row[0]), schema: this.schemaName(row[1]), name: str(row[2]), kind: str(row[3]),
        persistence: str(row[4]), rowSecurity: bool(row[5]), forceRowSecurity: bool(row[6]), rowType: num(row[7]),
        userTriggers: bool(row[8]), writeRules: bool(row[9]), clockRow: bool(row[10]),
        parents: [], children: [], cascadesTo: [], view: null, policies: null, writeSide: null,
      };
      this.relations.set(rel.oid, rel);
      push(this.relationsByName, rel.name, rel);
    }
    for (const [child, parent] of r.inherits.rows) {
      this.relations.get(num(child))?.parents.push(num(parent));
      this.relations.get(num(parent))?.children.push(num(child));
    }
    for (const [referencing, referenced] of r.cascades.rows) this.relations.get(num(referenced))?.cascadesTo.push(num(referencing));
    for (const row of r.types.rows) {
      const ty: TypeInfo = {
        oid: num(row[0]), schema: this.schemaName(row[1]), name: str(row[2]), kind: str(row[3]), base: num(row[4]),
        clock: bool(row[5]), castVol: vol(row[6]), checks: null,
      };
      this.types.set(ty.oid, ty);
      push(this.typesByName, ty.name, ty);
    }
    const bodies = new Map<string, string[]>();
    for (const [schema, name, body] of r.bodies.rows) push(bodies, str(schema) + '\0' + str(name), str(body));
    for (const [schema, name, v, rowV, opaque] of r.functions.rows) {
      push(this.functions, str(name), {
        schema: str(schema), vol: vol(v), rowVol: rowV === '' || rowV === null ? '' : vol(rowV), opaqueStable: bool(opaque),
        bodies: bodies.get(str(schema) + '\0' + str(name)) ?? [],
      });
    }
    for (const [schema, symbol, v] of r.operators.rows) push(this.operators, str(symbol), { schema: str(schema), vol: vol(v) });
    for (const [role, setting] of r.settings.rows) this.roleSettings.push({ role: str(role), setting: str(setting) });
    for (const row of r.dependencies.rows) this.addDependency(row);
  }

  private schemaName(oid: string | null | undefined): string {
    return this.schemaNames.get(num(oid)) ?? '';
  }

  /** One row of DEPENDENCIES: owner kind, owner oid, ref kind, ref oid, volatility, schema, name. */
  private addDependency(row: (string | null)[]): void {
    const owner = num(row[1]);
    let reach: Reach | null;
    const fresh = (): Reach => ({ functions: [], relations: [], domains: [], clock: false });
    switch (row[0]) {
      case 'd': {
        const ty = this.types.get(owner);
        if (ty === undefined) return;
        reach = ty.checks ??= fresh();
        break;
      }
      case 'v': case 'p': case 'w': {
        const rel = this.relations.get(owner);
        if (rel === undefined) return;
        reach = row[0] === 'v' ? (rel.view ??= fresh()) : row[0] === 'p' ? (rel.policies ??= fresh()) : (rel.writeSide ??= fresh());
        break;
      }
      default: return;
    }
    switch (row[2]) {
      case 'f': reach.functions.push({ vol: vol(row[4]), schema: str(row[5]), name: str(row[6]) }); break;
      case 'r': addUnique(reach.relations, num(row[3])); break;
      case 't': addUnique(reach.domains, num(row[3])); break;
      case 'c': reach.clock = true; break;
    }
  }
}
