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
 * Grammar forms that look like calls but are not a lookup of a function by name: expression nodes
 * (COALESCE, NULLIF, GREATEST, LEAST, GROUPING) and forms the grammar turns into a call of a fixed
 * pg_catalog built-in (TRIM -> btrim/ltrim/rtrim, SUBSTRING, POSITION, OVERLAY, EXTRACT, NORMALIZE,
 * the XML forms). Unquoted and unqualified only: "coalesce"(x) is a function call.
 * @see https://www.postgresql.org/docs/15/functions-conditional.html
 */
export const GRAMMAR_CALLS: ReadonlySet<string> = new Set([
  'coalesce', 'nullif', 'greatest', 'least', 'grouping', 'trim', 'substring', 'position', 'overlay',
  'extract', 'normalize', 'treat', 'xmlconcat', 'xmlelement', 'xmlexists', 'xmlforest', 'xmlparse',
  'xmlpi', 'xmlroot', 'xmlserialize', 'xmltable', 'xmlattributes', 'xmlnamespaces',
]);

/**
 * Date/time types whose input reads 'now', 'today' ... at execution (ranges and multiranges of
 * them too, and their array types as named in pg_type): a cast of anything but a plain literal or
 * parameter to one of them is volatile (`('n'||'ow')::timestamptz`, `textcol::date`).
 */
export const CLOCK_TYPES: ReadonlySet<string> = new Set(
  ['date', 'time', 'timetz', 'timestamp', 'timestamptz', 'tsrange', 'tstzrange', 'daterange', 'tsmultirange',
    'tstzmultirange', 'datemultirange'].flatMap((n) => [n, '_' + n]),
);

/** Calls that are function-style casts to a clock type when given text: `date(textcol)`. */
export const CLOCK_CAST_FUNCTIONS: ReadonlySet<string> = new Set(['date', 'timestamptz', 'timetz']);

/**
 * Words that may stand right before a string literal without being its type (`LIKE 'a' ESCAPE
 * '!'`, `AT TIME ZONE 'UTC'`, `THEN 'x'`): PostgreSQL's reserved and type/function-name keywords
 * plus the few unreserved ones the expression grammar puts there. Any other word before a
 * literal is read as a type name (`date 'today'`, `mytype 'x'`).
 * @see https://www.postgresql.org/docs/15/sql-keywords-appendix.html
 */
export const NOT_LITERAL_TYPE: ReadonlySet<string> = new Set([
  // reserved
  'all', 'analyse', 'analyze', 'and', 'any', 'array', 'as', 'asc', 'asymmetric', 'both', 'case', 'cast',
  'check', 'collate', 'column', 'constraint', 'create', 'current_catalog', 'current_date', 'current_role',
  'current_time', 'current_timestamp', 'current_user', 'default', 'deferrable', 'desc', 'distinct', 'do',
  'else', 'end', 'except', 'false', 'fetch', 'for', 'foreign', 'from', 'grant', 'group', 'having', 'in',
  'initially', 'intersect', 'into', 'lateral', 'leading', 'limit', 'localtime', 'localtimestamp', 'not',
  'null', 'offset', 'on', 'only', 'or', 'order', 'placing', 'primary', 'references', 'returning',
  'select', 'session_user', 'some', 'symmetric', 'table', 'then', 'to', 'trailing', 'true', 'union',
  'unique', 'user', 'using', 'variadic', 'when', 'where', 'window', 'with',
  // type and function names
  'authorization', 'binary', 'collation', 'concurrently', 'cross', 'current_schema', 'freeze', 'full',
  'ilike', 'inner', 'is', 'isnull', 'join', 'left', 'like', 'natural', 'notnull', 'outer', 'overlaps',
  'right', 'similar', 'tablesample', 'verbose',
  // unreserved, where the expression grammar takes a literal after them
  'escape', 'zone', 'uescape', 'by', 'document', 'content', 'version', 'standalone', 'nulls', 'value',
  'set', 'values', 'between', 'passing', 'ref', 'key',
]);

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

/** Words followed by `(` in ALTER TABLE / ALTER DOMAIN that are syntax, not calls (ddl.ts). */
export const DDL_NOT_CALL: ReadonlySet<string> = new Set([
  'key', 'include', 'exclude', 'btree', 'hash', 'gist', 'gin', 'brin', 'spgist', 'range', 'list', 'storage',
  'statistics', 'inherit', 'of', 'attach', 'detach', 'partition', 'reset',
]);
