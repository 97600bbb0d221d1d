/**
 * The oracle: could PostgreSQL have given this answer to this session, at this moment?
 *
 * A read sent at logical time `start` and answered at `end` (model.ts) by a session in state s
 * (state.ts) is wrong when any of these holds, each a violation kind:
 *
 *  - leak-tenant / leak-role: a row the session's row-level security hides (another tenant than
 *    its app.tenant; docs of another owner than current_user; any row at all when app.tenant is
 *    unset), unless the current role is the superuser;
 *  - stale-version: a row at a version lower than one acknowledged before `start`;
 *  - stale-deleted: a row whose delete was acknowledged before `start`;
 *  - stale-missing: no row for one acknowledged as existing before `start`, that matches the
 *    statement, that the session may see, and that nothing sent before `end` could have deleted;
 *  - dirty-read: a row whose insert rolled back;
 *  - wrong-rows: a row the statement's own WHERE excludes (an answer to another statement);
 *  - wrong-schema: an unqualified name answered from the other schema than search_path says
 *    (the `tag` column), current_schema() other than search_path's first, or rows where the
 *    session's search_path names no such table (PostgreSQL: 42P01);
 *  - format-float / format-bytea: a value not as this session's extra_float_digits / bytea_output
 *    print it (binary results: not the value itself);
 *  - format-binary: binary results asked for, and a value whose length cannot be its type's;
 *  - wrong-identity: current_user / session_user other than the session's;
 *  - wrong-setting: current_setting(...), or a STABLE function reading app.tenant, other than the
 *    session's;
 *  - stale-call: a VOLATILE function that writes (called in attribute notation) returned a
 *    version not above one acknowledged before `start`: it was not run.
 * shape.ts adds `shape`: columns (names, type OIDs) other than PostgreSQL describes for the
 * statement under the session's search_path.
 */
import type { Answer } from './conn';
import { DELETED, type Floor, type Model, type ModelRow } from './model';
import type { ReadSpec } from './reads';
import { byteaText, currentSchema, floatText, maySee, maySeeRow, shelfFamily, VISIBILITY, type SessionState } from './state';

const SHELF_TAG: Partial<Record<string, string>> = { shelf1: 's1', shelf2: 's2', shelftmp: 'tmp' };

export interface Finding {
  kind: string;
  detail: string;
}

export interface Judgement {
  findings: Finding[];
  /** Versions this read itself wrote and committed (the attribute-notation call). */
  floors: Floor[];
}

/** At most this many details of one kind are kept per read (the rest are counted). */
const DETAILS_PER_KIND = 3;

class Findings {
  readonly list: Finding[] = [];
  private readonly perKind = new Map<string, number>();
  add(kind: string, detail: string): void {
    const n = (this.perKind.get(kind) ?? 0) + 1;
    this.perKind.set(kind, n);
    if (n <= DETAILS_PER_KIND) this.list.push({ kind, detail });
    else if (n === DETAILS_PER_KIND + 1) this.list.push({ kind, detail: '(more rows like these)' });
  }
}

function norm(path: string | null): string {
  return (path ?? '').replace(/\s+/g, '');
}

export function judge(spec: ReadSpec, s: SessionState, a: Answer, start: number, end: number, model: Model): Judgement {
  const out = new Findings();
  const floors: Floor[] = [];
  const c = spec.check;
  if (a.error !== null) {
    // PostgreSQL's own errors (lock timeouts, deadlocks) are not findings; only a statement that
    // must fail but succeeded is (below).
    return { findings: [], floors };
  }
  for (const e of a.binaryErrors) out.add('format-binary', `binary results asked for; ${e}`);
  if (c.type === 'identity') {
    const row = a.rows[0] ?? [];
    if (row[0] !== currentSchema(s)) out.add('wrong-schema', `current_schema() = ${row[0]}, expected ${currentSchema(s)}`);
    if (row[1] !== s.role || row[2] !== s.login) out.add('wrong-identity', `current_user, session_user = ${row[1]}, ${row[2]}, expected ${s.role}, ${s.login}`);
  } else if (c.type === 'settings') {
    const row = a.rows[0] ?? [];
    const want = [s.tenant === null ? '' : String(s.tenant), norm(s.searchPath), String(s.efd), s.bytea];
    const got = [row[0] ?? '', norm(row[1] ?? null), row[2] ?? '', row[3] ?? ''];
    if (want.join('|') !== got.join('|')) out.add('wrong-setting', `app.tenant|search_path|extra_float_digits|bytea_output = ${got.join('|')}, expected ${want.join('|')}`);
  } else if (c.type === 'tenant') {
    const got = a.rows[0]?.[0] ?? null;
    const want = s.tenant === null ? null : String(s.tenant);
    if (got !== want) out.add('wrong-setting', `current_tenant() (STABLE, reads app.tenant) = ${got}, expected ${want}`);
  } else if (c.type === 'touch') {
    for (const row of a.rows) {
      const item = model.get('items', Number(row[0]));
      if (item === undefined) continue;
      if (!maySeeRow(s, item)) out.add('leak-tenant', `item ${item.id} of tenant ${item.tenant}`);
      const t = model.get('touches', item.tenant);
      const v = Number(row[1]);
      const f = t === undefined ? null : model.floor(t, start);
      if (f !== null && v <= f) out.add('stale-call', `touch() returned version ${v}, but version ${f} of touches[${item.tenant}] was acknowledged before the call`);
      else floors.push({ fam: 'touches', id: item.tenant, ver: v });
    }
  } else if ((c.fam === 'shelf' ? shelfFamily(s) : c.fam) === null) {
    out.add('wrong-schema', `rows answered, but search_path '${s.searchPath}' names no such table (PostgreSQL: 42P01)`);
  } else {
    const fam = c.fam === 'shelf' ? shelfFamily(s)! : c.fam;
    const seen = new Set<number>();
    const colNames = (a.cols ?? []).map((x) => x.name);
    const fCol = colNames.indexOf('f');
    const bCol = colNames.indexOf('b');
    const tagCol = colNames.indexOf('tag');
    for (const row of a.rows) {
      const id = Number(row[0]);
      const vis = row[1] ?? '';
      const ver = Number(row[2]);
      seen.add(id);
      const vk = VISIBILITY[fam];
      if (vk === 'tenant' && !maySee(s, fam, Number(vis), '')) out.add('leak-tenant', `${fam} ${id} of tenant ${vis}`);
      if (vk === 'owner' && !maySee(s, fam, 0, vis)) out.add('leak-role', `${fam} ${id} owned by ${vis}`);
      if (tagCol >= 0 && row[tagCol] !== SHELF_TAG[fam]) out.add('wrong-schema', `shelf ${id} from schema ${row[tagCol]}, search_path '${s.searchPath}'`);
      // Binary results carry no formatting: the value itself (conn.ts decodes it) is compared.
      const fWant = a.binary ? String(id / 3) : floatText(id, s.efd);
      const bWant = a.binary ? byteaText(id, 'hex') : byteaText(id, s.bytea);
      if (fCol >= 0 && row[fCol] !== fWant) out.add('format-float', `f of ${id} = ${row[fCol]}, ${a.binary ? 'binary' : `with extra_float_digits ${s.efd}`}: ${fWant}`);
      if (bCol >= 0 && row[bCol] !== bWant) out.add('format-bytea', `b of ${id} = ${row[bCol]}, ${a.binary ? 'binary' : `with bytea_output ${s.bytea}`}: ${bWant}`);
      const r = model.get(fam, id);
      if (r === undefined) continue; // inserted by a transaction not acknowledged yet
      if (r.aborted) out.add('dirty-read', `${fam} ${id}, whose insert rolled back`);
      if (!c.pred(r)) out.add('wrong-rows', `${fam} ${id} (tenant ${r.tenant} ${r.attr}) is not a row of this statement`);
      const f = model.floor(r, start);
      if (f === DELETED) out.add('stale-deleted', `${fam} ${id} at version ${ver}: its delete was acknowledged before this read`);
      else if (f !== null && ver < f) out.add('stale-version', `${fam} ${id} at version ${ver}: version ${f} was acknowledged before this read`);
    }
    for (const r of model.family(fam).values()) {
      if (seen.has(r.id) || r.aborted || !c.pred(r) || !maySeeRow(s, r)) continue;
      if (!existed(model, r, start, end)) continue;
      out.add('stale-missing', `${fam} ${r.id} (tenant ${r.tenant} ${r.attr}, version >= ${model.floor(r, start)}) missing`);
    }
  }
  return { findings: out.list, floors };
}

/** Acknowledged as existing before start, and nothing that might delete it was sent before end. */
function existed(model: Model, r: ModelRow, start: number, end: number): boolean {
  const f = model.floor(r, start);
  if (f === null || f === DELETED) return false;
  return r.firstDeleteSend === null || r.firstDeleteSend > end;
}
