/**
 * What the cache layer may do with one SQL text: the classifier's verdict (sql-classify.ts), the
 * operator's per-pattern rules (`cache-rules`), and the relation names used for invalidation,
 * memoised per text because the answer depends on the text only.
 *
 * Texts are handled as latin1 strings of the bytes the client sent (one char per byte): no UTF-8
 * decoding on the hot path, and the classifier sees every non-ASCII byte as an identifier
 * character, so names compare consistently between reads and writes. The cache only serves
 * sessions whose client_encoding is UTF8, where no ASCII byte (quote, backslash) can hide inside
 * a multi-byte character.
 */
import { classifySql, type SqlClass } from './sql-classify';

/** One `cache-rules` entry: the first rule whose pattern matches the SQL decides its TTL. */
export interface CacheRule {
  readonly pattern: RegExp;
  /** TTL for answers of matching statements; null: never cache nor share them. */
  readonly ttlMs: number | null;
}

export interface StatementPolicy {
  readonly cls: SqlClass;
  /** A read that may be answered from the cache or shared by a flight (classifier and rules agree). */
  readonly cacheable: boolean;
  /** How long a stored answer lives (0: not stored; a flight may still share it). */
  readonly ttlMs: number;
  /** Relation names (last name component) a cacheable read depends on. */
  readonly reads: readonly string[];
  /** Relation names (last component) a write may change; null: unknown, the whole database. */
  readonly writeTables: readonly string[] | null;
  /** The statement may drop the session's prepared statements (DEALLOCATE, or a multi-statement text). */
  readonly dropsStatements: boolean;
}

/** A memo is dropped whole when it reaches this many texts (ORMs produce a bounded set of texts). */
const MEMO_MAX = 20_000;
/** Texts longer than this are classified each time and never cached (keys stay small). */
export const MAX_CACHEABLE_SQL = 64 * 1024;

/**
 * The relation name a qualified name ends with: `public.t` -> `t`, `"s"."a.b"` -> `"a.b"`.
 * Reads and writes are matched by this part only (search_path decides the schema, and a
 * superset of invalidations is always safe).
 */
export function relationName(name: string): string {
  if (name.indexOf('.') < 0) return name;
  let inQuote = false;
  let last = 0;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 34) inQuote = !inQuote; // '"'; a doubled quote toggles twice
    else if (c === 46 && !inQuote) last = i + 1; // '.'
  }
  return name.slice(last);
}

function relationNames(names: readonly string[]): string[] {
  const out: string[] = [];
  for (const n of names) {
    const r = relationName(n);
    if (!out.includes(r)) out.push(r);
  }
  return out;
}

export class CachePolicy {
  private readonly rules: readonly CacheRule[];
  private readonly defaultTtlMs: number;
  private readonly memo = new Map<string, StatementPolicy>();
  private readonly memoNonStandard = new Map<string, StatementPolicy>();

  constructor(opts: { rules: readonly CacheRule[]; ttlMs: number }) {
    this.rules = opts.rules;
    this.defaultTtlMs = opts.ttlMs;
  }

  /**
   * The policy for a SQL text (latin1 string of its bytes). standardConformingStrings is the
   * session's reported setting: it changes how backslashes in string literals tokenise.
   */
  forSql(sql: string, standardConformingStrings = true): StatementPolicy {
    const memo = standardConformingStrings ? this.memo : this.memoNonStandard;
    // Rules match the text itself; without them, texts that differ only in numbers (pgbench and
    // ORMs inlining ids) share one classification instead of paying for one each.
    const key = this.rules.length === 0 && standardConformingStrings ? shapeOf(sql) : sql;
    let p = memo.get(key);
    if (p === undefined) {
      p = this.compute(sql, standardConformingStrings);
      if (sql.length <= MAX_CACHEABLE_SQL) {
        if (memo.size >= MEMO_MAX) memo.clear();
        memo.set(key, p);
      }
    }
    return p;
  }

  private compute(sql: string, scs: boolean): StatementPolicy {
    const cls = classifySql(sql, { standardConformingStrings: scs });
    let cacheable = cls.cacheable && sql.length <= MAX_CACHEABLE_SQL;
    let ttlMs = this.defaultTtlMs;
    if (cacheable && this.rules.length > 0) {
      const text = Buffer.from(sql, 'latin1').toString('utf8');
      for (const r of this.rules) {
        if (!r.pattern.test(text)) continue;
        if (r.ttlMs === null) cacheable = false;
        else ttlMs = r.ttlMs;
        break;
      }
    }
    return {
      cls,
      cacheable,
      ttlMs,
      reads: cacheable && cls.tables !== null ? relationNames(cls.tables) : [],
      writeTables: cls.writes ? (cls.tables === null ? null : relationNames(cls.tables)) : [],
      dropsStatements: cls.reason === 'deallocate' || cls.reason === 'multi-statement',
    };
  }
}

/** An identifier character as the classifier's tokeniser sees it (letters, digits, _, $, non-ASCII). */
function identChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 || c === 36 || c >= 128;
}

/**
 * The text with every numeric literal replaced by `1`, for the classification memo: a number
 * changes no verdict (`EXPLAIN (ANALYZE 0)` becomes ANALYZE 1: a write is then assumed, the safe
 * side). Numbers inside '...' and "..." stay. A text with a backslash, a dollar quote or a comment
 * is returned as it is (their quoting rules are the tokeniser's business, not worth a second copy).
 */
export function shapeOf(sql: string): string {
  let out = '';
  let from = 0;
  const n = sql.length;
  for (let i = 0; i < n; ) {
    const c = sql.charCodeAt(i);
    if (c === 39 || c === 34) {
      // '...' or "...": a doubled quote stays inside
      let j = i + 1;
      for (;;) {
        const q = sql.indexOf(c === 39 ? "'" : '"', j);
        if (q < 0) return sql; // unterminated: leave it to the tokeniser
        if (sql.charCodeAt(q + 1) === c) j = q + 2;
        else {
          i = q + 1;
          break;
        }
      }
      continue;
    }
    if (c === 92) return sql; // backslash
    if (c === 36 && !(sql.charCodeAt(i + 1) >= 48 && sql.charCodeAt(i + 1) <= 57)) return sql; // $tag$
    if ((c === 45 && sql.charCodeAt(i + 1) === 45) || (c === 47 && sql.charCodeAt(i + 1) === 42)) return sql; // -- /*
    if (c >= 48 && c <= 57 && (i === 0 || (!identChar(sql.charCodeAt(i - 1)) && sql.charCodeAt(i - 1) !== 46))) {
      // A number (the tokeniser's rule: digits, letters, _, '.' not before '.', exponent sign).
      let j = i + 1;
      while (j < n) {
        const e = sql.charCodeAt(j);
        if (identChar(e) && e !== 36) {
          if ((e === 101 || e === 69) && (sql.charCodeAt(j + 1) === 43 || sql.charCodeAt(j + 1) === 45)) j++;
          j++;
        } else if (e === 46 && sql.charCodeAt(j + 1) !== 46) j++;
        else break;
      }
      if (j - i > 1 || c !== 49) {
        out += sql.slice(from, i) + '1';
        from = j;
      }
      i = j;
      continue;
    }
    i++;
  }
  return from === 0 ? sql : out + sql.slice(from);
}

const VOLATILE_INPUTS = new Set(['now', 'today', 'tomorrow', 'yesterday']);

/**
 * True when a text-format parameter value is one of the date/time inputs that PostgreSQL resolves
 * at execution time ('now', 'today', ...): `SELECT $1::timestamptz` with 'now' must not be cached.
 */
export function isVolatileInput(buf: Buffer, start: number, end: number): boolean {
  const n = end - start;
  if (n < 3 || n > 12) return false;
  // Most values are numbers or words that cannot be one of these: decide on the first letter.
  let i = start;
  while (i < end && (buf[i] === 0x20 || (buf[i]! >= 0x09 && buf[i]! <= 0x0d))) i++;
  const c = (buf[i] ?? 0) | 0x20; // ASCII lower case
  if (c !== 0x6e && c !== 0x74 && c !== 0x79) return false; // n, t, y
  return VOLATILE_INPUTS.has(buf.toString('latin1', start, end).trim().toLowerCase());
}
