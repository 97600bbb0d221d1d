/**
 * Query digests: per normalised text (fingerprint.ts), calls, errors, rows, time (total, min, max,
 * mean, p50/p95/p99 from a LatencyHistogram), first/last seen, cache hits and misses, in bounded
 * memory.
 *
 * ## Kind and tables (once per new digest, from classifySql of the first text seen)
 *
 * - 'other', no tables: transaction control, SET/RESET/DISCARD and other session commands,
 *   DEALLOCATE, utility statements (SHOW, EXPLAIN, VACUUM, COPY ... TO ...), LOCK, empty texts.
 * - 'write', its target tables: INSERT/UPDATE/DELETE/MERGE/TRUNCATE/COPY FROM, DDL, writing CTEs,
 *   SELECT INTO, nextval('seq'), texts the classifier does not understand. A write whose targets
 *   the classifier cannot name (tables null: DO, CALL, DROP ... CASCADE, unparsed texts) has no
 *   tables, so it adds no table heat.
 * - 'read', the tables after FROM/JOIN: every other SELECT/VALUES/TABLE/WITH, cacheable or not
 *   (catalog reads, volatile functions, FOR UPDATE). One exception: a SELECT calling a function
 *   the classifier does not know (`select my_func(a) from t`) may write anything, so the
 *   classifier names no tables; it is counted as a read with no tables (most such calls read).
 * - Names are relationName()s (`public.t` -> `t`, as the cache matches them). CTE names, which the
 *   classifier lists as tables, are left out. A multi-statement text is a read or write of the
 *   union of its parts' tables.
 *
 * ## Bounded memory
 *
 * - At most maxDigests digests. When a new one does not fit, the tenth of them (at least one) with
 *   the least total time goes in one batch: a quickselect, O(n) once per maxDigests/10 new
 *   digests, never a sort. `evictions` counts the digests dropped. A newcomer is kept until the
 *   next batch at least, so a new heavy query has maxDigests/10 arrivals of others to pass the
 *   least useful.
 * - The text -> digest shortcut (memo) skips the normaliser for texts seen before: prepared and
 *   extended statements repeat the same text. It holds at most memoSize texts of up to 4096
 *   chars in two generations (a full young generation becomes the old one; the old one is
 *   dropped), only texts whose normal form replaced no literal (texts with literals, as sent by
 *   pgbench -M simple, are mostly unique: remembering them would only churn the heap), and it is
 *   cleared on every eviction batch, so it never keeps an evicted digest alive.
 * - A normalised text longer than maxQueryChars is keyed by its id and shown cut.
 */
import { classifySql } from '../sql/classify';
import { relationName } from '../sql/names';
import { fingerprintId, normalizeSqlCounting } from './fingerprint';
import { LatencyHistogram, type HistogramState } from './histogram';
import type { TableStats } from './heat';
import { kthSmallest } from './select';
import type { DigestKind, DigestView } from './types';
import { usRound } from './units';
import { addUnique, hasUnique } from '../unique-list';

/** Texts longer than this are not memoised (the memo must not pin big strings). */
const MEMO_MAX_SQL = 4096;

/** Per-digest state; the owner (Insight) updates the counters on each completion. */
export class DigestEntry {
  calls = 0;
  errors = 0;
  rows = 0;
  totalMs = 0;
  readonly hist = new LatencyHistogram();
  firstSeen: number;
  lastSeen: number;
  cacheHits = 0;
  cacheMisses = 0;
  /** Executions that ran upstream without error (not hits, not waiters), for time saved. */
  upstreamCalls = 0;
  upstreamMs = 0;
  savedMs = 0;
  /** With several upstreams: executions that ran upstream, by node (null until the first). */
  nodes: Map<string, number> | null = null;
  /** Dropped by eviction: whoever still holds it must look the text up again. */
  evicted = false;
  /** Heat records of `tables`, resolved by the owner on first use (index-aligned). */
  heat: TableStats[] | null = null;

  constructor(
    readonly key: string,
    readonly id: string,
    readonly query: string,
    readonly kind: DigestKind,
    readonly tables: readonly string[],
    /** The classifier says the cache may answer it (a cacheable read). */
    readonly cacheable: boolean,
    now: number,
  ) {
    this.firstSeen = now;
    this.lastSeen = now;
  }

  view(): DigestView {
    const h = this.hist;
    return {
      id: this.id,
      query: this.query,
      kind: this.kind,
      tables: this.tables.slice(),
      calls: this.calls,
      errors: this.errors,
      rows: this.rows,
      totalMs: usRound(this.totalMs),
      minMs: usRound(h.minMs),
      maxMs: usRound(h.maxMs),
      meanMs: h.count === 0 ? NaN : usRound(h.sumMs / h.count),
      p50Ms: usRound(h.quantile(0.5)),
      p95Ms: usRound(h.quantile(0.95)),
      p99Ms: usRound(h.quantile(0.99)),
      firstSeen: new Date(this.firstSeen).toISOString(),
      lastSeen: new Date(this.lastSeen).toISOString(),
      cacheHits: this.cacheHits,
      cacheMisses: this.cacheMisses,
      savedMs: usRound(this.savedMs),
      ...(this.nodes === null ? {} : { nodes: Object.fromEntries(this.nodes) }),
    };
  }

  /** One more execution on `node` (several upstreams). */
  ranOn(node: string, n = 1): void {
    const m = (this.nodes ??= new Map());
    m.set(node, (m.get(node) ?? 0) + n);
  }
}

/** A digest as plain data, for the primary of --processes N to merge the processes' digests. */
export interface DigestRecord {
  key: string;
  id: string;
  /** null: the same as key (a text within maxQueryChars), not sent twice. */
  query: string | null;
  kind: DigestKind;
  tables: string[];
  cacheable: boolean;
  calls: number;
  errors: number;
  rows: number;
  totalMs: number;
  hist: HistogramState;
  firstSeen: number;
  lastSeen: number;
  cacheHits: number;
  cacheMisses: number;
  upstreamCalls: number;
  upstreamMs: number;
  savedMs: number;
  /** Executions by node (several upstreams); null when none was recorded. */
  nodes: Record<string, number> | null;
}

export interface DigestTableOptions {
  maxDigests: number;
  memoSize: number;
  maxQueryChars: number;
}

export class DigestTable {
  private readonly byKey = new Map<string, DigestEntry>();
  private young = new Map<string, DigestEntry>();
  private old = new Map<string, DigestEntry>();
  private readonly memoHalf: number;
  /** Digests dropped by eviction since the start (or reset). */
  evictions = 0;

  constructor(private readonly opts: DigestTableOptions) {
    this.memoHalf = Math.max(1, opts.memoSize >> 1);
  }

  get size(): number {
    return this.byKey.size;
  }

  /** Texts in the memo (both generations): for tests. */
  get memoCount(): number {
    return this.young.size + this.old.size;
  }

  /** The digests the memo points to: for tests (none may be evicted). */
  memoDigests(): DigestEntry[] {
    return [...this.young.values(), ...this.old.values()];
  }

  /** The digest of a query text, created if new (which may evict others). */
  entryFor(sql: string, now: number): DigestEntry {
    let e = this.young.get(sql);
    if (e !== undefined) return e;
    e = this.old.get(sql);
    if (e !== undefined) {
      this.remember(sql, e);
      return e;
    }
    const norm = normalizeSqlCounting(sql);
    const text = norm.text;
    const memoise = norm.literals === 0 && sql.length <= MEMO_MAX_SQL;
    const key = text.length <= this.opts.maxQueryChars ? text : `${fingerprintId(text)}:${text.length}`;
    e = this.byKey.get(key);
    if (e === undefined) {
      if (this.byKey.size >= this.opts.maxDigests) this.evict();
      e = create(sql, text, key, this.opts.maxQueryChars, now);
      this.byKey.set(key, e);
    }
    if (memoise) this.remember(sql, e);
    return e;
  }

  private remember(sql: string, e: DigestEntry): void {
    if (this.young.size >= this.memoHalf) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(sql, e);
  }

  /** Drops the tenth (at least one) of the digests with the least total time. */
  private evict(): void {
    const n = this.byKey.size;
    const k = Math.max(1, Math.ceil(this.opts.maxDigests / 10));
    const totals = new Float64Array(n);
    let i = 0;
    for (const e of this.byKey.values()) totals[i++] = e.totalMs;
    const threshold = kthSmallest(totals, Math.min(k, n) - 1);
    // Everything below the threshold goes, then entries equal to it until k are gone.
    let below = 0;
    for (const e of this.byKey.values()) if (e.totalMs < threshold) below++;
    let ties = k - below;
    for (const [key, e] of this.byKey) {
      if (e.totalMs < threshold || (e.totalMs === threshold && ties-- > 0)) {
        e.evicted = true;
        this.byKey.delete(key);
        this.evictions++;
      }
    }
    this.young.clear();
    this.old.clear();
  }

  /** Views of the top `limit` digests by the given order (ties: by id). */
  views(sort: 'total' | 'calls' | 'mean', limit: number): DigestView[] {
    const all = [...this.byKey.values()];
    const key = sort === 'calls' ? (e: DigestEntry) => e.calls
      : sort === 'mean' ? (e: DigestEntry) => (e.hist.count === 0 ? 0 : e.hist.sumMs / e.hist.count)
        : (e: DigestEntry) => e.totalMs;
    all.sort((a, b) => key(b) - key(a) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return all.slice(0, Math.max(0, limit)).map((e) => e.view());
  }

  /** Every digest as plain data. */
  records(): DigestRecord[] {
    const out: DigestRecord[] = [];
    for (const e of this.byKey.values()) {
      out.push({
        key: e.key, id: e.id, query: e.query === e.key ? null : e.query, kind: e.kind, tables: [...e.tables], cacheable: e.cacheable,
        calls: e.calls, errors: e.errors, rows: e.rows, totalMs: e.totalMs, hist: e.hist.state(),
        firstSeen: e.firstSeen, lastSeen: e.lastSeen, cacheHits: e.cacheHits, cacheMisses: e.cacheMisses,
        upstreamCalls: e.upstreamCalls, upstreamMs: e.upstreamMs, savedMs: e.savedMs,
        nodes: e.nodes === null ? null : Object.fromEntries(e.nodes),
      });
    }
    return out;
  }

  /**
   * Adds another table's digests (its records()): the same normal form adds up, a new one is
   * taken as it is. No eviction: a merged table is built for one answer and thrown away.
   */
  absorb(records: readonly DigestRecord[], evictions: number): void {
    this.evictions += evictions;
    for (const r of records) {
      let e = this.byKey.get(r.key);
      if (e === undefined) {
        e = new DigestEntry(r.key, r.id, r.query ?? r.key, r.kind, r.tables, r.cacheable, r.firstSeen);
        this.byKey.set(r.key, e);
      }
      e.calls += r.calls;
      e.errors += r.errors;
      e.rows += r.rows;
      e.totalMs += r.totalMs;
      e.hist.merge(r.hist);
      e.firstSeen = Math.min(e.firstSeen, r.firstSeen);
      e.lastSeen = Math.max(e.lastSeen, r.lastSeen);
      e.cacheHits += r.cacheHits;
      e.cacheMisses += r.cacheMisses;
      e.upstreamCalls += r.upstreamCalls;
      e.upstreamMs += r.upstreamMs;
      e.savedMs += r.savedMs;
      if (r.nodes !== null) for (const [node, n] of Object.entries(r.nodes)) e.ranOn(node, n);
    }
  }

  reset(): void {
    for (const e of this.byKey.values()) e.evicted = true;
    this.byKey.clear();
    this.young.clear();
    this.old.clear();
    this.evictions = 0;
  }
}

function create(sql: string, text: string, key: string, maxChars: number, now: number): DigestEntry {
  const cls = classifySql(sql);
  let kind: DigestKind;
  let tables: string[] = [];
  const r = cls.reason;
  if (r === 'empty' || r === 'transaction-control' || r === 'session-state' || r === 'deallocate' || r === 'utility' ||
    (r === 'locking' && text.startsWith('lock'))) {
    kind = 'other';
  } else if (cls.writes && !(r === 'volatile' && cls.tables === null)) {
    kind = 'write';
    tables = cls.tables ?? [];
  } else {
    kind = 'read';
    tables = cls.tables ?? [];
  }
  const ctes = cteNames(text);
  const names: string[] = [];
  for (const t of tables) {
    if (hasUnique(ctes, t)) continue;
    const n = relationName(t);
    addUnique(names, n);
  }
  const query = text.length <= maxChars ? text : text.slice(0, maxChars) + ' ...';
  return new DigestEntry(key, fingerprintId(text), query, kind, names, cls.cacheable, now);
}

/** Plain lower-case names are written bare, as the classifier writes them ("x" -> x). */
const PLAIN = /^[a-z_][a-z0-9_$]*$/;

/**
 * Names of the CTEs of a normalised `with [recursive] a [(cols)] as [[not] materialized] (...),
 * b as (...) ...` text, in the classifier's name format. Empty when the text is not a WITH.
 */
export function cteNames(text: string): string[] {
  const names: string[] = [];
  if (!text.startsWith('with ')) return names;
  let i = 5;
  if (text.startsWith('recursive ', i)) i += 10;
  const n = text.length;
  const space = (): void => { while (text.charCodeAt(i) === 32) i++; };
  /** Index after the parenthesised group at i (quoted identifiers may hold parens). */
  const skipParens = (): boolean => {
    let depth = 0;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 34) {
        const q = text.indexOf('"', i + 1);
        if (q < 0) return false;
        i = q + 1;
        continue;
      }
      i++;
      if (c === 40) depth++;
      else if (c === 41 && --depth === 0) return true;
    }
    return false;
  };
  for (;;) {
    space();
    let name: string;
    if (text.charCodeAt(i) === 34) {
      let j = i + 1;
      for (;;) {
        const q = text.indexOf('"', j);
        if (q < 0) return names;
        if (text.charCodeAt(q + 1) === 34) { j = q + 2; continue; }
        j = q + 1;
        break;
      }
      const inner = text.slice(i + 1, j - 1);
      name = PLAIN.test(inner) ? inner : text.slice(i, j);
      i = j;
    } else {
      const m = /^[a-z_\x80-\uffff][a-z0-9_$\x80-\uffff]*/.exec(text.slice(i, i + 256));
      if (m === null) return names;
      name = m[0];
      i += name.length;
    }
    space();
    if (text.charCodeAt(i) === 40 && !skipParens()) return names;
    space();
    if (!text.startsWith('as', i)) return names;
    i += 2;
    space();
    if (text.startsWith('not materialized', i)) i += 16;
    else if (text.startsWith('materialized', i)) i += 12;
    space();
    if (text.charCodeAt(i) !== 40 || !skipParens()) return names;
    names.push(name);
    space();
    if (text.charCodeAt(i) !== 44) return names;
    i++;
  }
}
