// A CatalogSource with canned rows (src/catalog/): a small catalog built by the test, answered
// per query text of src/catalog/queries.ts in the columns each documents. The fingerprint is a
// field the test changes to play a DDL; `failing` makes every query reject.
import * as Q from '../../src/catalog/queries';
import type { CatalogRows, CatalogSource } from '../../src/catalog/source';

type Row = (string | null)[];
const b = (v: boolean): string => (v ? 't' : 'f');

export interface RelationOpts {
  kind?: string;
  persistence?: string;
  rls?: boolean;
  triggers?: boolean;
  rules?: boolean;
  clock?: boolean;
}

/** What a stored expression reaches (see DEPENDENCIES in queries.ts). */
export type Ref = { fn: [vol: string, schema: string, name: string] } | { rel: number } | { type: number } | 'clock';

export class FakeCatalog implements CatalogSource {
  fingerprint = 'fp-1';
  failing = false;
  queries = 0;
  /** While set, every query waits for it (a load held half-way). */
  gate: Promise<void> | null = null;
  private oid = 50_000;
  private readonly schemaOids = new Map<string, number>();
  private readonly rows = {
    relations: [] as Row[], inherits: [] as Row[], cascades: [] as Row[], deps: [] as Row[], functions: [] as Row[],
    bodies: [] as Row[], operators: [] as Row[], types: [] as Row[], settings: [] as Row[],
  };

  constructor() {
    for (const s of ['pg_catalog', 'public', 'information_schema']) this.schema(s);
    // A few built-ins, as the real catalog has them.
    for (const [name, vol] of [['count', 'i'], ['sum', 'i'], ['lower', 'i'], ['upper', 'i'], ['now', 's'], ['random', 'v'],
      ['current_setting', 's'], ['nextval', 'v'], ['pg_backend_pid', 's'], ['generate_series', 'i'], ['abs', 'i'],
      ['set_config', 'v']] as const) this.fn('pg_catalog', name, vol);
    for (const [name, clock] of [['int4', false], ['text', false], ['date', true], ['timestamptz', true], ['numeric', false]] as const) {
      this.type('pg_catalog', name, { clock });
    }
  }

  schema(name: string): number {
    let oid = this.schemaOids.get(name);
    if (oid === undefined) { oid = ++this.oid; this.schemaOids.set(name, oid); }
    return oid;
  }

  relation(schema: string, name: string, o: RelationOpts = {}): number {
    const oid = ++this.oid;
    this.rows.relations.push([String(oid), String(this.schema(schema)), name, o.kind ?? 'r', o.persistence ?? 'p',
      b(o.rls ?? false), 'f', String(++this.oid), b(o.triggers ?? false), b(o.rules ?? false), b(o.clock ?? false)]);
    return oid;
  }

  inherit(child: number, parent: number): void { this.rows.inherits.push([String(child), String(parent)]); }
  cascade(referencing: number, referenced: number): void { this.rows.cascades.push([String(referencing), String(referenced)]); }

  /** owner kind: 'v' view query, 'p' policies, 'd' domain checks, 'w' defaults and checks. */
  dep(kind: 'v' | 'p' | 'd' | 'w', owner: number, ref: Ref): void {
    const o = String(owner);
    if (ref === 'clock') this.rows.deps.push([kind, o, 'c', null, null, null, null]);
    else if ('fn' in ref) this.rows.deps.push([kind, o, 'f', null, ...ref.fn]);
    else if ('rel' in ref) this.rows.deps.push([kind, o, 'r', String(ref.rel), null, null, null]);
    else this.rows.deps.push([kind, o, 't', String(ref.type), null, null, null]);
  }

  fn(schema: string, name: string, vol: string, rowVol = '', opaqueStable = false): void {
    this.rows.functions.push([schema, name, vol, rowVol, b(opaqueStable)]);
  }

  body(schema: string, name: string, text: string): void { this.rows.bodies.push([schema, name, text]); }
  op(schema: string, symbol: string, vol: string): void { this.rows.operators.push([schema, symbol, vol]); }

  type(schema: string, name: string, o: { kind?: string; base?: number; clock?: boolean; castVol?: string } = {}): number {
    const oid = ++this.oid;
    this.rows.types.push([String(oid), String(this.schema(schema)), name, o.kind ?? 'b', String(o.base ?? 0), b(o.clock ?? false),
      o.castVol ?? 'i']);
    return oid;
  }

  setting(role: string, setting: string): void { this.rows.settings.push([role, setting]); }

  /** Relation oids the publication of that name streams (wal mode): Q.published's rows. */
  readonly published = new Map<string, number[]>();

  async query(sql: string): Promise<CatalogRows> {
    this.queries++;
    if (this.gate !== null) await this.gate;
    if (this.failing) throw new Error('connection lost');
    const rows = ((): Row[] => {
      switch (sql) {
        case Q.FINGERPRINT: return [['pg_class', '1', this.fingerprint]];
        case Q.SCHEMAS: return [...this.schemaOids].map(([name, oid]) => [String(oid), name]);
        case Q.RELATIONS: return this.rows.relations;
        case Q.INHERITS: return this.rows.inherits;
        case Q.CASCADES: return this.rows.cascades;
        case Q.DEPENDENCIES: return this.rows.deps;
        case Q.FUNCTIONS: return this.rows.functions;
        case Q.FUNCTION_BODIES: return this.rows.bodies;
        case Q.OPERATORS: return this.rows.operators;
        case Q.TYPES: return this.rows.types;
        case Q.ROLE_SETTINGS: return this.rows.settings;
      }
      for (const [pub, oids] of this.published) {
        if (sql === Q.published(pub)) return oids.map((oid) => [String(oid)]);
        if (sql === Q.publishedFingerprint(pub)) return [['published', String(oids.length), oids.join('+')]];
      }
      throw new Error(`unexpected query: ${sql.slice(0, 60)}`);
    })();
    return { fields: [], rows: rows.map((r) => r.slice()) };
  }
}
