/**
 * The checker's commit log: for every versioned row, the versions whose commit was acknowledged
 * to a client, each stamped with the logical time of that acknowledgement.
 *
 * Time is one counter (`clock`) that moves at every acknowledgement and every request sent, in
 * this one process, so "a read sent after a COMMIT was acknowledged" is `read.start >= ack.seq`.
 * From the log, for a read that started at `s`:
 *  - floor(row, s): the highest version acknowledged at or before s. A read must show the row at
 *    that version or a later one (or not at all, when it was deleted: floor DELETED).
 *  - a row acknowledged as existing at s, not deleted by anything sent before the read ended,
 *    that matches the read's predicate and that the session may see, must be in the answer.
 *
 * Floors come from writers only for rows they changed themselves (read back inside their own
 * transaction, where their row locks make the versions theirs); see writes.ts.
 */
import { NEW_ID_START } from './schema';

export type Family = 'items' | 'totals' | 'touches' | 'parents' | 'children' | 'links' | 'meas' | 'animals' | 'docs' | 'shelf1' | 'shelf2' | 'shelftmp' | 'mv';

/** The floor of a deleted row: no version of it may be shown. */
export const DELETED = Number.MAX_SAFE_INTEGER;

export interface ModelRow {
  readonly fam: Family;
  readonly id: number;
  /** 0 for docs. */
  readonly tenant: number;
  /** docs: the owner role; animals: 'animal' or 'dog'; else ''. */
  readonly attr: string;
  /** Acknowledged versions, in acknowledgement order (versions may arrive out of order). */
  hist: { seq: number; ver: number }[];
  /** When the first request that might delete it was sent (null: never). */
  firstDeleteSend: number | null;
  /** Its insert rolled back: no session may ever see it. */
  aborted: boolean;
}

/** A row version read back by a writer (or a refresh), to acknowledge at its commit. */
export interface Floor {
  fam: Family;
  id: number;
  /** DELETED when the writer deleted it. */
  ver: number;
  tenant?: number;
  attr?: string;
}

export class Model {
  clock = 0;
  private readonly fams = new Map<Family, Map<number, ModelRow>>();
  private nextId = NEW_ID_START;
  /** The lowest start of a read in flight (hist entries at or before it may be folded). */
  lowWater: () => number = () => this.clock;

  tick(): number {
    return ++this.clock;
  }

  /** A fresh id (never used before, never reused). */
  newId(): number {
    return this.nextId++;
  }

  family(f: Family): Map<number, ModelRow> {
    let m = this.fams.get(f);
    if (m === undefined) {
      m = new Map();
      this.fams.set(f, m);
    }
    return m;
  }

  get(f: Family, id: number): ModelRow | undefined {
    return this.fams.get(f)?.get(id);
  }

  /** The row, created (with no history) when unknown. */
  row(f: Family, id: number, tenant: number, attr: string): ModelRow {
    const m = this.family(f);
    let r = m.get(id);
    if (r === undefined) {
      r = { fam: f, id, tenant, attr, hist: [], firstDeleteSend: null, aborted: false };
      m.set(id, r);
    }
    return r;
  }

  /** A seed row, known at time 0. */
  seed(f: Family, id: number, tenant: number, attr: string, ver: number): void {
    this.row(f, id, tenant, attr).hist.push({ seq: 0, ver });
  }

  /** A request that may delete these rows is being sent. */
  mayDelete(rows: Iterable<ModelRow>): void {
    const now = this.tick();
    for (const r of rows) if (r.firstDeleteSend === null) r.firstDeleteSend = now;
  }

  /** Commits acknowledged now: their versions become floors from this moment on. */
  ack(floors: readonly Floor[]): number {
    const seq = this.tick();
    for (const f of floors) {
      const r = this.get(f.fam, f.id) ?? this.row(f.fam, f.id, f.tenant ?? 0, f.attr ?? '');
      r.hist.push({ seq, ver: f.ver });
      if (r.hist.length > 8) this.fold(r);
    }
    return seq;
  }

  /** Entries no read in flight can tell apart become one (the highest version, the latest seq). */
  private fold(r: ModelRow): void {
    const lw = this.lowWater();
    let seq = -1;
    let ver = -1;
    const keep: { seq: number; ver: number }[] = [];
    for (const h of r.hist) {
      if (h.seq <= lw) {
        seq = Math.max(seq, h.seq);
        ver = Math.max(ver, h.ver);
      } else keep.push(h);
    }
    r.hist = seq < 0 ? keep : [{ seq, ver }, ...keep];
  }

  /** The highest version acknowledged at or before s (null: the row was not acknowledged yet). */
  floor(r: ModelRow, s: number): number | null {
    let best: number | null = null;
    for (const h of r.hist) if (h.seq <= s && (best === null || h.ver > best)) best = h.ver;
    return best;
  }
}
