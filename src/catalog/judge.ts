/**
 * The verdicts on a statement's facts (src/sql/statement-facts.ts) over one catalog snapshot,
 * for one session's resolution order (resolve.ts). Pure and synchronous.
 *
 * - judgeRead: cacheable only when the text alone allows it (facts.readBlocker), every relation
 *   it reads is known and is a table, partitioned table, view or materialized view (not foreign,
 *   not a sequence, not temporary, not unlogged (the change stream cannot see its writes), not in
 *   pg_catalog / information_schema), and everything it may call is STABLE or IMMUTABLE and not a
 *   clock or per-session built-in (now(), pg_backend_pid() ...; current_setting() is allowed: the
 *   session part of the key covers every setting). Reads follow views (transitively), a table's
 *   partitions and inheritance children (transitively), and the policies of tables with row
 *   security (what they read is read too). In wal mode (the snapshot has a publication) every
 *   table and materialized view read must be one the publication streams. A STABLE function outside pg_catalog may read
 *   tables: a LANGUAGE sql body is judged like the statement (what it reads is depended on);
 *   any other body (plpgsql, C, BEGIN ATOMIC) makes the read not cacheable. dependsOn: every
 *   relation read that way, by name (the last name component, as the cache matches names).
 * - writeTargets: the targets with their ancestors and descendants, and the tables that
 *   foreign keys with a cascading action reach from them (with theirs); null (the whole
 *   database) when the text does not say (DDL, DO, EXECUTE ...), a target is unknown or a view,
 *   a reached table has user triggers or rules, a default / CHECK / policy it evaluates calls a
 *   volatile function, or the statement calls one (it may write anything), except the volatile
 *   built-ins that write no relation (HARMLESS_VOLATILE: nextval, random ...).
 * - callsOnlyStable: everything the statement may call is known STABLE or IMMUTABLE: named
 *   calls, attribute notation (`x.f` with f taking x's row), operators (the comparisons that
 *   IN / ORDER BY / joins use without a symbol included), casts (their input, output and cast
 *   functions, a domain's CHECK functions), what views and policies it reads call, and on its
 *   targets: triggers and rules (false), defaults, CHECKs and policies. Unknown: false.
 *   Option harmless: HARMLESS_VOLATILE built-ins pass (they change no state a cached answer
 *   depends on; the classifier keeps them out of cached reads by name).
 */
import { analyzeSql } from '../sql/classify';
import { isUncacheableFunction } from '../sql/functions';
import { nameParts, renderQuoted } from '../sql/names';
import type { StatementFacts } from '../sql/statement-facts';
import { isSystemSchema, resolveFunctions, resolveOperators, resolveRelation, resolveType } from './resolve';
import type { CatalogSnapshot, FunctionRef, Reach, Relation, TypeInfo, Volatility } from './snapshot';
import { addUnique, hasUnique } from '../unique-list';

/** A read's verdict. */
export interface ReadVerdict {
  cacheable: boolean;
  /** Why not ('' when cacheable), for the log and tests. */
  reason: string;
  /** Relation names to invalidate on (last name component). */
  dependsOn: string[];
}

/** Operators every statement may use without writing them (IN, BETWEEN, ORDER BY, DISTINCT, joins ...). */
const IMPLIED_OPERATORS = ['=', '<>', '<', '>', '<=', '>='];

/**
 * Volatile pg_catalog built-ins that write no relation and change no session state a cached
 * answer depends on (sequences, the random seed, locks and notifications are never cached).
 */
export const HARMLESS_VOLATILE: ReadonlySet<string> = new Set([
  'nextval', 'setval', 'currval', 'lastval', 'random', 'random_normal', 'setseed', 'clock_timestamp', 'timeofday',
  'gen_random_uuid', 'pg_sleep', 'pg_sleep_for', 'pg_sleep_until', 'txid_current', 'txid_current_if_assigned',
  'pg_current_xact_id', 'pg_current_xact_id_if_assigned', 'pg_notify', 'pg_advisory_lock', 'pg_advisory_lock_shared',
  'pg_advisory_unlock', 'pg_advisory_unlock_shared', 'pg_advisory_unlock_all', 'pg_advisory_xact_lock',
  'pg_advisory_xact_lock_shared', 'pg_try_advisory_lock', 'pg_try_advisory_lock_shared', 'pg_try_advisory_xact_lock',
  'pg_try_advisory_xact_lock_shared',
]);

/** A pg_catalog function whose answer follows the clock or the session, not the data (current_setting excepted). */
function isClockOrSession(schema: string, name: string): boolean {
  return schema === 'pg_catalog' && name !== 'current_setting' && isUncacheableFunction(name);
}

/** How many STABLE sql bodies one verdict follows (a body calling a body ...). */
const MAX_BODIES = 64;

/** One walk over what a statement reaches. */
class Walk {
  reason = '';
  readonly dependsOn: string[] = [];
  private readonly seen = new Set<Relation | TypeInfo | string>();
  private bodies = 0;

  /**
   * read: apply the cacheability rules and collect dependsOn (judgeRead), else volatility only.
   * harmless: HARMLESS_VOLATILE built-ins pass (callsOnlyStable's option, writeTargets).
   */
  constructor(readonly snap: CatalogSnapshot, readonly schemas: readonly string[], readonly read: boolean,
    readonly harmless: boolean) {}

  fail(reason: string): false {
    if (this.reason === '') this.reason = reason;
    return false;
  }

  private once(x: Relation | TypeInfo | string): boolean {
    if (this.seen.has(x)) return false;
    this.seen.add(x);
    return true;
  }

  /** A function of this volatility in this schema may be called. */
  private fn(vol: Volatility, schema: string, name: string, what: string): boolean {
    if (vol === 'v' && !(this.harmless && schema === 'pg_catalog' && HARMLESS_VOLATILE.has(name))) {
      return this.fail(`${what} may call volatile function ${schema}.${name}`);
    }
    // PostgreSQL does not hold a STABLE function to its word: its body may call set_config() or
    // anything volatile. Whether a statement may change the session (or write) follows it too.
    if (!this.read) return vol !== 's' || isSystemSchema(schema) || this.stableBodies(schema, name);
    if (isClockOrSession(schema, name)) return this.fail(`${what} calls ${schema}.${name} (clock or session)`);
    if (vol === 's' && !isSystemSchema(schema)) return this.stableBodies(schema, name);
    return true;
  }

  /** A STABLE function outside pg_catalog: what its bodies read and call. */
  private stableBodies(schema: string, name: string): boolean {
    const entry = this.snap.functions.get(name)?.find((e) => e.schema === schema);
    if (entry === undefined) return this.fail(`unknown function ${schema}.${name}`);
    if (entry.opaqueStable) return this.fail(`STABLE function ${schema}.${name} may read relations the catalog cannot name`);
    for (const body of entry.bodies) {
      if (!this.once('body:' + body)) continue;
      if (++this.bodies > MAX_BODIES) return this.fail(`too many function bodies to follow at ${schema}.${name}`);
      const facts = analyzeSql(body).facts;
      if (this.read && facts.readBlocker !== null) return this.fail(`function ${schema}.${name}: ${facts.readBlocker}`);
      if (!this.reads(facts) || !this.calls(facts)) return false;
    }
    return true;
  }

  /** What a stored expression reaches (a view, policies, checks, defaults). */
  reach(r: Reach, what: string, relations: boolean): boolean {
    if (this.read && r.clock) return this.fail(`${what} reads the clock`);
    for (const f of r.functions) if (!this.fnRef(f, what)) return false;
    for (const oid of r.domains) {
      const ty = this.snap.types.get(oid);
      if (ty !== undefined && !this.type(ty, what)) return false;
    }
    if (!relations) return true;
    for (const oid of r.relations) {
      const rel = this.snap.relations.get(oid);
      if (rel === undefined) return this.fail(`${what} reads relation ${oid}, not in the catalog snapshot`);
      if (!this.relation(rel)) return false;
    }
    return true;
  }

  private fnRef(f: FunctionRef, what: string): boolean {
    return this.fn(f.vol, f.schema, f.name, what);
  }

  /** A relation the statement reads. */
  relation(rel: Relation): boolean {
    if (!this.once(rel)) return true;
    const qn = `${rel.schema}.${rel.name}`;
    if (this.read) {
      if (isSystemSchema(rel.schema)) return this.fail(`${qn} is a system relation`);
      if (rel.persistence === 't') return this.fail(`${qn} is temporary`);
      if (rel.persistence === 'u') return this.fail(`${qn} is unlogged`);
      if (rel.kind === 'f') return this.fail(`${qn} is a foreign table`);
      if (rel.kind === 'S') return this.fail(`${qn} is a sequence`);
      if (rel.kind !== 'r' && rel.kind !== 'p' && rel.kind !== 'v' && rel.kind !== 'm') return this.fail(`${qn} is not a table`);
      // wal mode: only what the stream reports can be invalidated when it changes. A view counts
      // through its base tables and a partitioned table through its leaves (walked below); a
      // materialized view is never published (REFRESH is not streamed).
      const pub = this.snap.publication;
      if (pub !== null && (rel.kind === 'r' || rel.kind === 'm') && !this.snap.published.has(rel.oid)) {
        return this.fail(`${qn} is not in publication ${pub}: its changes are not streamed`);
      }
      const n = renderQuoted(rel.name);
      addUnique(this.dependsOn, n);
    }
    if (rel.rowSecurity && rel.policies !== null && !this.reach(rel.policies, `a policy of ${qn}`, true)) return false;
    if (rel.kind === 'v' && rel.view !== null && !this.reach(rel.view, `view ${qn}`, true)) return false;
    for (const oid of rel.children) {
      const child = this.snap.relations.get(oid);
      if (child === undefined) return this.fail(`a child of ${qn} is not in the catalog snapshot`);
      if (!this.relation(child)) return false;
    }
    return true;
  }

  /** A type cast to (or a relation's row type). */
  type(ty: TypeInfo | Relation, what: string): boolean {
    if (!('castVol' in ty)) return !this.read || !ty.clockRow || this.fail(`${what}: a cast to ${ty.name} may read 'now'`);
    if (!this.once(ty)) return true;
    if (ty.castVol === 'v') return this.fail(`${what}: a cast to ${ty.schema}.${ty.name} calls a volatile function`);
    if (this.read && ty.clock && !isSystemSchema(ty.schema)) return this.fail(`${what}: a cast to ${ty.name} may read 'now'`);
    if (ty.checks !== null && !this.reach(ty.checks, `domain ${ty.name}`, false)) return false;
    const base = ty.base === 0 ? undefined : this.snap.types.get(ty.base);
    return base === undefined || this.type(base, what);
  }

  /** The relations a statement reads. */
  reads(facts: StatementFacts): boolean {
    for (const name of facts.reads) {
      const rel = resolveRelation(this.snap, name, this.schemas);
      if (rel === null) {
        if (hasUnique(facts.ctes, name)) continue;
        return this.fail(`unknown relation ${name}`);
      }
      if (!this.relation(rel)) return false;
    }
    return true;
  }

  /** What a statement calls by name, attribute notation, operator and cast. */
  calls(facts: StatementFacts): boolean {
    for (const name of facts.functions) {
      const found = resolveFunctions(this.snap, name, this.schemas);
      if (found.length === 0) return this.fail(`unknown function ${name}`);
      for (const f of found) if (!this.fn(f.vol, f.schema, lastPart(name), 'the statement')) return false;
    }
    for (const name of facts.attributes) {
      for (const f of resolveFunctions(this.snap, name, this.schemas)) {
        if (f.rowVol !== '' && !this.fn(f.rowVol, f.schema, lastPart(name), `attribute notation .${name}`)) return false;
      }
    }
    for (const symbol of [...IMPLIED_OPERATORS, ...facts.operators]) {
      for (const o of resolveOperators(this.snap, symbol, this.schemas)) {
        if (o.vol === 'v') return this.fail(`operator ${o.schema}.${symbol} calls a volatile function`);
      }
    }
    for (const name of facts.types) {
      const ty = resolveType(this.snap, name, this.schemas);
      if (ty === null) return this.fail(`unknown type ${name}`);
      if (!this.type(ty, 'the statement')) return false;
    }
    return true;
  }
}

/** The last component of a written name, unquoted. */
function lastPart(written: string): string {
  const parts = nameParts(written);
  return parts[parts.length - 1]!;
}

/** judgeRead (see the file comment). */
export function judgeRead(snap: CatalogSnapshot, facts: StatementFacts, schemas: readonly string[]): ReadVerdict {
  const no = (reason: string): ReadVerdict => ({ cacheable: false, reason, dependsOn: [] });
  if (facts.readBlocker !== null) return no(`the text: ${facts.readBlocker}`);
  if (facts.opaque || facts.writesUnknown || facts.writes.length > 0) return no('the text may write');
  const w = new Walk(snap, schemas, true, false);
  if (!w.reads(facts) || !w.calls(facts)) return no(w.reason);
  return { cacheable: true, reason: '', dependsOn: w.dependsOn };
}

/** callsOnlyStable (see the file comment). */
export function callsOnlyStable(snap: CatalogSnapshot, facts: StatementFacts, schemas: readonly string[],
  opts: { harmless?: boolean } = {}): boolean {
  if (facts.opaque) return false;
  const w = new Walk(snap, schemas, false, opts.harmless === true);
  if (!w.reads(facts) || !w.calls(facts)) return false;
  return targets(snap, facts, schemas, w) !== null;
}

/** writeTargets (see the file comment). */
export function writeTargets(snap: CatalogSnapshot, facts: StatementFacts, schemas: readonly string[]): string[] | null {
  if (facts.opaque || facts.writesUnknown) return null;
  const w = new Walk(snap, schemas, false, true);
  if (!w.reads(facts) || !w.calls(facts)) return null;
  return targets(snap, facts, schemas, w);
}

/** The names a statement's targets reach; null when unsure (see writeTargets). */
function targets(snap: CatalogSnapshot, facts: StatementFacts, schemas: readonly string[], w: Walk): string[] | null {
  const out: string[] = [];
  const seen = new Set<Relation>();
  const visit = (rel: Relation, up: boolean, down: boolean): boolean => {
    if (seen.has(rel)) return true;
    seen.add(rel);
    const qn = `${rel.schema}.${rel.name}`;
    if (rel.kind === 'v') return w.fail(`${qn} is a view`);
    if (rel.userTriggers || rel.writeRules) return w.fail(`${qn} has triggers or rules`);
    if (rel.writeSide !== null && !w.reach(rel.writeSide, `a default or check of ${qn}`, false)) return false;
    if (rel.rowSecurity && rel.policies !== null && !w.reach(rel.policies, `a policy of ${qn}`, false)) return false;
    if (rel.kind === 'm' && rel.view !== null && !w.reach(rel.view, `materialized view ${qn}`, false)) return false;
    const n = renderQuoted(rel.name);
    addUnique(out, n);
    const next = (oids: number[], u: boolean, d: boolean): boolean => {
      for (const oid of oids) {
        const r = snap.relations.get(oid);
        if (r === undefined) return w.fail(`relation ${oid} of ${qn} is not in the catalog snapshot`);
        if (!visit(r, u, d)) return false;
      }
      return true;
    };
    return (!up || next(rel.parents, true, false)) && (!down || next(rel.children, false, true)) &&
      next(rel.cascadesTo, true, true);
  };
  for (const name of facts.writes) {
    const rel = resolveRelation(snap, name, schemas);
    if (rel === null) { w.fail(`unknown relation ${name}`); return null; }
    if (!visit(rel, true, true)) return null;
  }
  return out;
}
