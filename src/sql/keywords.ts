/**
 * Keyword sets of the classifier: the words that decide what a token means for its neighbours
 * (a call or syntax, the end of a FROM list, an alias or not, the start of a statement).
 */

/** Words followed by `(` that are syntax, not function calls (reserved or special-cased by the grammar). */
export const NOT_CALL: ReadonlySet<string> = new Set([
  'all', 'and', 'any', 'array', 'as', 'asc', 'between', 'both', 'by', 'case', 'cast', 'check',
  'collate', 'conflict', 'constraint', 'cube', 'default', 'desc', 'distinct', 'do', 'else', 'end',
  'escape', 'except', 'exists', 'fetch', 'filter', 'for', 'from', 'group', 'grouping', 'having',
  'ilike', 'in', 'intersect', 'into', 'is', 'join', 'lateral', 'like', 'limit', 'not', 'offset',
  'on', 'only', 'or', 'order', 'over', 'overlaps', 'partition', 'primary', 'references', 'returning',
  'rollup', 'row', 'select', 'set', 'sets', 'similar', 'some', 'table', 'then', 'to', 'union',
  'unique', 'using', 'values', 'when', 'where', 'window', 'with', 'within',
  // type names with a type modifier: numeric(10,2), varchar(3), character varying(3) ...
  'bigint', 'bit', 'boolean', 'char', 'character', 'dec', 'decimal', 'float', 'int', 'integer',
  'interval', 'national', 'nchar', 'numeric', 'precision', 'real', 'smallint', 'time', 'timestamp',
  'varchar', 'varying', 'setof',
]);

/** SQL keywords that read the clock without parentheses. */
export const VOLATILE_KEYWORDS: ReadonlySet<string> = new Set([
  'current_date', 'current_time', 'current_timestamp', 'localtime', 'localtimestamp',
]);

/**
 * Date/time input strings that depend on the clock ('now'::timestamptz), as literals in the text
 * and as parameter values (volatile-input.ts, whose first-letter filter knows n, t and y only).
 */
export const VOLATILE_STRINGS: ReadonlySet<string> = new Set(['now', 'today', 'tomorrow', 'yesterday']);

/** Words that end a FROM list (after an item). */
export const FROM_END: ReadonlySet<string> = new Set([
  'where', 'group', 'having', 'window', 'order', 'limit', 'offset', 'fetch', 'for', 'union',
  'intersect', 'except', 'returning', 'into',
]);

/** Words that cannot be a bare alias after a FROM item. */
export const NOT_ALIAS: ReadonlySet<string> = new Set([
  ...FROM_END, 'join', 'inner', 'left', 'right', 'full', 'cross', 'natural', 'on', 'using',
  'tablesample', 'with', 'set', 'when', 'then', 'as', 'and', 'or', 'not', 'select', 'values',
]);

/** Words of a join (`left outer join`, `natural join` ...) before JOIN. */
export const JOIN_WORDS: ReadonlySet<string> = new Set(['inner', 'left', 'right', 'full', 'cross', 'natural', 'outer']);

/** The data-modifying statements (their targets are writes). */
export const DML_WORDS: ReadonlySet<string> = new Set(['insert', 'update', 'delete', 'merge']);

/** Words before a `TABLE t` that continues a set operation (`UNION [ALL | DISTINCT] TABLE t`). */
export const SET_OPS: ReadonlySet<string> = new Set(['union', 'intersect', 'except', 'all', 'distinct']);

/** Words a query starts with (after any opening parentheses). */
export const READ_START: ReadonlySet<string> = new Set(['select', 'values', 'table', 'with']);
