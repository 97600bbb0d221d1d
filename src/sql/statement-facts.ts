/**
 * What a SQL text touches, as written, for the catalog to judge (src/catalog/): the relations it
 * reads and writes, the functions it calls, the operators it uses, the types it casts to, and
 * the names after a dot that may be attribute-notation calls (`x.f` calls `f(x)`). The classifier
 * collects them in the same passes that build its verdict (analyzeSql in classify.ts).
 *
 * Names are written as names.ts writes relation names: unquoted words lower-cased, quoted names
 * bare when they are plain lower case and quoted otherwise, qualification kept as written
 * (`public.t`, `pg_catalog.lower`, `"My Schema"."F"`). nameParts() (names.ts) splits them back.
 */
import type { SqlReason } from './sql-class';
import { addUnique } from '../unique-list';

/** The facts of one SQL text (all its statements). */
export interface StatementFacts {
  /**
   * Why the text alone rules out answering it from the cache, whatever the catalog says: not a
   * single read (a write, DDL, utility, several statements ...), locking, a clock keyword, string
   * or cast, a function known to be volatile or session-specific by name, TABLESAMPLE, a temp or
   * catalog name, a FROM list not followed. Null: a single read the catalog may clear (its
   * functions, operators, types and relations are the catalog's to judge).
   */
  readonly readBlocker: SqlReason | null;
  /** Relations named in FROM / JOIN / TABLE / COPY ... TO, at any depth (CTE names included). */
  readonly reads: readonly string[];
  /** Names that a WITH defines (a read of such a name may be the CTE, not a relation). */
  readonly ctes: readonly string[];
  /** Relations a statement targets: INSERT/UPDATE/DELETE/MERGE, SELECT INTO, TRUNCATE, COPY FROM, REFRESH, nextval('s'). */
  readonly writes: readonly string[];
  /** Some write's targets cannot be named from the text (DDL, a target not parsed, CASCADE, CALL, DO, EXECUTE, a text not understood). */
  readonly writesUnknown: boolean;
  /** Runs code the text does not show (DO, EXECUTE, CREATE/ALTER EXTENSION, a text not understood). */
  readonly opaque: boolean;
  /** Functions called, as written (grammar forms such as COALESCE or TRIM(... FROM ...) are not calls). */
  readonly functions: readonly string[];
  /** Operator symbols used (`+`, `~~` for LIKE, `public.+` for OPERATOR(public.+)). */
  readonly operators: readonly string[];
  /** Types cast to (`::t`, `CAST(x AS t)`, `t 'literal'`), array brackets removed; SQL-standard names as `pg_catalog.int4` etc. */
  readonly types: readonly string[];
  /** Names written after a dot and not called (`x.f`, `(x).f`): attribute notation may call `f(x)`. */
  readonly attributes: readonly string[];
}

const add = addUnique<string>;

/** The collector the scans of one text write into (one per analyzeSql call). */
export class FactsOut {
  reads: string[] = [];
  ctes: string[] = [];
  writes: string[] = [];
  writesUnknown = false;
  opaque = false;
  functions: string[] = [];
  operators: string[] = [];
  types: string[] = [];
  attributes: string[] = [];
  /** Set by each DML classification: what its text alone rules out (see readBlocker). */
  dmlBlocker: SqlReason | null = null;

  read(name: string): void { add(this.reads, name); }
  cte(name: string): void { add(this.ctes, name); }
  write(name: string): void { add(this.writes, name); }
  call(name: string): void { add(this.functions, name); }
  operator(symbol: string): void { add(this.operators, symbol); }
  type(name: string): void { add(this.types, name); }
  attribute(name: string): void { add(this.attributes, name); }

  /** The facts, with readBlocker as decided by classify.ts. */
  done(readBlocker: SqlReason | null): StatementFacts {
    return {
      readBlocker,
      reads: this.reads,
      ctes: this.ctes,
      writes: this.writes,
      writesUnknown: this.writesUnknown,
      opaque: this.opaque,
      functions: this.functions,
      operators: this.operators,
      types: this.types,
      attributes: this.attributes,
    };
  }
}
