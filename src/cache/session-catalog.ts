/**
 * What one session's cache asks of the catalog (src/catalog/): whether a read may be answered
 * from the cache and which relations its answer depends on, which relations a write may change,
 * and whether a statement may change the session in a way pgscribe cannot see. Verdicts are
 * memoised per statement text for the session (they depend on its schema search order) until
 * the catalog knowledge changes.
 *
 * Without a catalog (no catalog-user) the text's own facts decide, and only what a cache-rules
 * entry allows is cacheable (policy.ts): in doubt, relay.
 */
import type { CatalogKnowledge } from '../catalog/knowledge';
import type { ReadVerdict } from '../catalog/judge';
import type { StatementPolicy } from './policy';

export class SessionCatalog {
  /** The session's schema search order (current_schemas(true)), once the probe told it. */
  private schemas: readonly string[] | null = null;
  private readonly verdicts = new Map<StatementPolicy, ReadVerdict>();
  private generation = -1;
  /** The catalog generation when the probe now being answered was sent, and when the one whose answer holds was. */
  private probeSentAt = -1;
  private probedAt = -1;

  /**
   * knowledge: the catalog of the session's database. Null with catalogMode: catalog-user is set
   * but this database has no knowledge (too many databases): nothing is served. Null without it:
   * rules only.
   */
  constructor(
    private readonly knowledge: CatalogKnowledge | null,
    private readonly catalogMode: boolean,
  ) {}

  /** Custom settings the catalog's role and database defaults have named (see CatalogKnowledge). */
  customSettingNames(): Iterable<string> {
    return this.knowledge?.customSettingNames ?? [];
  }

  /** The probe is being sent. */
  probing(): void {
    this.probeSentAt = this.knowledge?.generation ?? -1;
  }

  /** The probe told the session's schema search order. */
  identified(schemas: readonly string[]): void {
    this.schemas = schemas;
    this.probedAt = this.probeSentAt;
    this.verdicts.clear();
  }

  /**
   * What the probe said still holds for the catalog as pgscribe knows it: a schema created,
   * dropped or granted since (the catalog read again) may change the session's search order
   * (current_schemas lists only the schemas that exist and it may use), so it is asked again.
   */
  get probeCurrent(): boolean {
    const k = this.knowledge;
    return k === null || k.generation === this.probedAt;
  }

  /**
   * The session's search order may have changed (a SET, or code pgscribe cannot see through):
   * until the probe tells it again, no read is judged and a write's targets are looked up in
   * every schema (a superset).
   */
  unidentified(): void {
    this.schemas = null;
    this.verdicts.clear();
  }

  /**
   * The relation names a cacheable read's answer depends on (invalidated by writes to them), or
   * null when it may not be answered from the cache now (the catalog is not ready, the change
   * stream of wal mode is not streaming, it touches
   * something unknown or unsafe, the session's search order is not known).
   */
  reads(pol: StatementPolicy): readonly string[] | null {
    const k = this.knowledge;
    if (k === null) return this.catalogMode ? null : pol.reads;
    if (!k.serving || this.schemas === null || !this.probeCurrent) return null;
    if (this.generation !== k.generation) {
      this.verdicts.clear();
      this.generation = k.generation;
    }
    let v = this.verdicts.get(pol);
    if (v === undefined) {
      v = k.judgeRead(pol.facts, this.schemas);
      this.verdicts.set(pol, v);
    }
    return v.cacheable ? v.dependsOn : null;
  }

  /**
   * The relation names a write may change: its targets with their ancestors and descendants and
   * what their cascades reach; null: anything in the database.
   */
  writes(pol: StatementPolicy): readonly string[] | null {
    const k = this.knowledge;
    if (k === null) return this.catalogMode ? null : pol.writeTables;
    if (!k.ready) return null;
    if (this.schemas !== null && this.probeCurrent) return k.writeTargets(pol.facts, this.schemas);
    // The search order is not known yet (no cacheable read so far): each schema the name may
    // resolve in, all of their targets (a superset is safe).
    const out = new Set<string>();
    for (const schema of k.snapshot!.schemaNames.values()) {
      const t = k.writeTargets(pol.facts, ['pg_catalog', schema]);
      if (t === null) return null;
      for (const n of t) out.add(n);
    }
    return [...out];
  }

  /**
   * The statement may change the session in ways pgscribe cannot see through: code it does not
   * show (DO, EXECUTE, a text not understood), a procedure, or a function the catalog does not
   * know to be STABLE or IMMUTABLE (the volatile built-ins that change no session state aside).
   * Without the catalog, any function the classifier does not know.
   */
  changesSession(pol: StatementPolicy): boolean {
    const { cls, facts } = pol;
    if (cls.taintsSession || facts.opaque || cls.reason === 'unknown' || cls.reason === 'ddl') return true;
    const k = this.knowledge;
    // Without the catalog (or before it is read): what the classifier cannot name it calls a
    // write of anything (a function it does not know among them).
    if (k === null || !k.ready) return cls.writes && pol.writeTables === null;
    const schemas = this.schemas ?? ['pg_catalog', ...k.snapshot!.schemaNames.values()];
    return !k.callsOnlyStable(facts, schemas, { harmless: true });
  }

  /** A DDL committed through this session: read the catalog again. */
  ddlCommitted(): void {
    void this.knowledge?.refresh();
  }
}
