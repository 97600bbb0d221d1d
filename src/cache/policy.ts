/**
 * What the cache layer may do with one SQL text: the classifier's verdict (src/sql/classify.ts),
 * the operator's per-pattern rules (`cache-rules`), and the relation names used for invalidation,
 * memoised per text because the answer depends on the text only.
 *
 * Texts are handled as latin1 strings of the bytes the client sent (one char per byte): no UTF-8
 * decoding on the hot path, and the classifier sees every non-ASCII byte as an identifier
 * character, so names compare consistently between reads and writes. The cache only serves
 * sessions whose client_encoding is UTF8, where no ASCII byte (quote, backslash) can hide inside
 * a multi-byte character.
 */
import { analyzeSql, type SqlClass } from '../sql/classify';
import type { StatementFacts } from '../sql/statement-facts';
import { relationName } from '../sql/names';
import { memoKeyOf } from '../sql/shape';
import { addUnique } from '../unique-list';

/** One `cache-rules` entry: the first rule whose pattern matches the SQL decides its TTL. */
export interface CacheRule {
  readonly pattern: RegExp;
  /** TTL for answers of matching statements; null: never cache nor share them. */
  readonly ttlMs: number | null;
}

export interface StatementPolicy {
  readonly cls: SqlClass;
  /** What the text touches, as written: what the catalog judges (src/catalog/). */
  readonly facts: StatementFacts;
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
/**
 * ...and at most this many characters of text in its keys: 20,000 texts of 64 KiB would be
 * 2.5 GB, outside any cache-max-bytes (issue 15, security finding 12). Past either bound the
 * memo starts again empty.
 */
const MEMO_MAX_CHARS = 16 << 20;
/** Texts longer than this are classified each time and never cached (keys stay small). */
export const MAX_CACHEABLE_SQL = 64 * 1024;
/**
 * `cache-rules` patterns run on texts up to this long; longer ones are relayed when rules exist.
 * An operator's regex may backtrack (`SELECT .* FROM t` without `^` took 0.4 s per 63 KB text,
 * issue 15, security finding 17); on 8 KiB its worst case is some 60 times cheaper, and not
 * running a `never` rule must not mean caching what it names: so the long text is not cached.
 */
export const MAX_RULE_SQL = 8 * 1024;


function relationNames(names: readonly string[]): string[] {
  const out: string[] = [];
  for (const n of names) {
    const r = relationName(n);
    addUnique(out, r);
  }
  return out;
}

/** Verdicts by text, dropped whole at MEMO_MAX texts or MEMO_MAX_CHARS characters of keys. */
class Memo {
  readonly map = new Map<string, StatementPolicy>();
  /** Characters of the keys in map. */
  chars = 0;

  add(key: string, p: StatementPolicy): void {
    if (this.map.size >= MEMO_MAX || this.chars + key.length > MEMO_MAX_CHARS) {
      this.map.clear();
      this.chars = 0;
    }
    this.map.set(key, p);
    this.chars += key.length;
  }
}

export class CachePolicy {
  private readonly rules: readonly CacheRule[];
  private readonly defaultTtlMs: number;
  private readonly rulesOnly: boolean;
  private readonly memo = new Memo();
  private readonly memoNonStandard = new Memo();

  /**
   * rulesOnly: no catalog knowledge: a read is cacheable only when a `cache-rules` entry allows it
   * explicitly (with a TTL), as ProxySQL caches only what its rules name.
   */
  constructor(opts: { rules: readonly CacheRule[]; ttlMs: number; rulesOnly: boolean }) {
    this.rules = opts.rules;
    this.defaultTtlMs = opts.ttlMs;
    this.rulesOnly = opts.rulesOnly;
  }

  /**
   * The policy for a SQL text (latin1 string of its bytes). standardConformingStrings is the
   * session's reported setting: it changes how backslashes in string literals tokenise.
   */
  /** What the memos hold: texts, and characters of text (bounded by MEMO_MAX, MEMO_MAX_CHARS). */
  memoFootprint(): { texts: number; chars: number } {
    return { texts: this.memo.map.size + this.memoNonStandard.map.size, chars: this.memo.chars + this.memoNonStandard.chars };
  }

  forSql(sql: string, standardConformingStrings = true): StatementPolicy {
    const memo = standardConformingStrings ? this.memo : this.memoNonStandard;
    // Rules match the text itself; without them, queries and DML that differ only in numbers
    // (pgbench and ORMs inlining ids) share one classification instead of paying for one each.
    // Other statements are keyed by their text: a number can change their verdict (memoKeyOf).
    const key = this.rules.length === 0 && standardConformingStrings ? memoKeyOf(sql) : sql;
    let p = memo.map.get(key);
    if (p === undefined) {
      p = this.compute(sql, standardConformingStrings);
      if (sql.length <= MAX_CACHEABLE_SQL) {
        memo.add(key, p);
      }
    }
    return p;
  }

  private compute(sql: string, scs: boolean): StatementPolicy {
    const { cls, facts } = analyzeSql(sql, { standardConformingStrings: scs });
    let cacheable = cls.cacheable && sql.length <= MAX_CACHEABLE_SQL;
    let ttlMs = this.defaultTtlMs;
    let allowed = false;
    if (cacheable && this.rules.length > 0 && sql.length > MAX_RULE_SQL) cacheable = false;
    else if (cacheable && this.rules.length > 0) {
      const text = Buffer.from(sql, 'latin1').toString('utf8');
      for (const r of this.rules) {
        if (!r.pattern.test(text)) continue;
        if (r.ttlMs === null) cacheable = false;
        else {
          ttlMs = r.ttlMs;
          allowed = true;
        }
        break;
      }
    }
    // Without the catalog nothing vouches for what a statement touches: only what a rule allows.
    if (this.rulesOnly && !allowed) cacheable = false;
    return {
      cls,
      facts,
      cacheable,
      ttlMs,
      reads: cacheable && cls.tables !== null ? relationNames(cls.tables) : [],
      writeTables: cls.writes ? (cls.tables === null ? null : relationNames(cls.tables)) : [],
      dropsStatements: cls.reason === 'deallocate' || cls.reason === 'multi-statement',
    };
  }
}
