/**
 * The text log's Q, B and E lines written as bytes straight into the sink's buffer: the same
 * bytes textFormatter (format.ts) makes, without building the line as a string and encoding it
 * into the buffer afterwards (issue 21: that string and its encoding were most of a line's cost
 * in the proxy). The repeated parts (timestamp, session prefix, statement name, SQL field) are
 * encoded once and copied (TypedArray set(), about half of Buffer copy()'s cost for these few
 * bytes); Bind parameters are copied from the message's own bytes.
 *
 * Only lines whose every field takes no escaping here are written this way: anything else (a
 * parameter with a quote, a backslash, a control or a non-ASCII byte, one past the cut, P lines,
 * cache annotations, seq, redaction, JSON) declines, and the string formatter writes the line.
 * test/unit/line-bytes.test.ts checks that both give the same bytes for random records.
 */
import { BindMessage, paramFormat } from '../protocol/client-messages';
import { formatOptionsOf, isoTime, lastOf, nameToken, repeatedSqlCut, textPrefixes, textSqlField, type FormatOptions, type LogFormatSettings, type LogRecord, type SessionInfo } from './format';
import { redactionOf } from './redaction';

/** What the byte path needs of a sink (FdSink): room in its buffer, then the line queued. */
export interface ByteSink {
  /** A buffer with room for maxBytes at `reservedAt`, or null when a line that long must go as a string. */
  reserve(maxBytes: number): Buffer | null;
  readonly reservedAt: number;
  /** Queue the bytes up to `end`; the backpressure verdict, as LineSink.write gives it. */
  commit(end: number): boolean;
}

/**
 * Write one record's line into the sink: write()'s verdict (false: the writer is behind), or null
 * when this line must go through the string formatter.
 */
export type LineWriter = (s: SessionInfo, r: LogRecord, now: number, sink: ByteSink) => boolean | null;

const HEX = Buffer.from('0123456789abcdef', 'latin1');
const CH = { space: 0x20, quote: 0x27, comma: 0x2c, close: 0x29, x: 0x78, backslash: 0x5c } as const;
const PARAMS = Buffer.from(' params=(', 'latin1');
const NULL = Buffer.from('NULL', 'latin1');
/** Room for the fixed parts of a line besides the ones measured (type, markers, `)`). */
const SLACK = 64;

/**
 * The byte path the log settings allow, beside lineFormatterOf's formatter: null for JSON and
 * with redaction (whose lines this does not write).
 */
export function lineWriterOf(log: LogFormatSettings): LineWriter | null {
  if (log.format !== 'text' || redactionOf(log) !== null) return null;
  return textLineWriter(formatOptionsOf(log));
}

/**
 * The byte path for these text-format options, or null when every line takes the string path
 * (seq on lines: --log-completions or log-replay; their lines carry more than this writes).
 */
export function textLineWriter(opts: FormatOptions): LineWriter | null {
  if (opts.seq === true) return null;
  const maxRepeated = opts.repeatedSqlMaxChars ?? 0;
  const showParams = opts.params;
  const maxParam = opts.paramMaxBytes;
  const prefixOf = textPrefixes();
  const prefixes = new WeakMap<SessionInfo, Buffer>();
  // The fields a session's lines repeat, encoded while they repeat (a string compare instead).
  const encoded = (text: string): Buffer => Buffer.from(text, 'utf8');
  const statementField = lastOf((name: string) => encoded(' stmt=' + nameToken(name)));
  const portalField = lastOf((name: string) => encoded(' portal=' + nameToken(name)));
  // A memo for Q lines and one for B and E: a session that mixes them (BEGIN as a Query around
  // prepared statements) would otherwise encode its SQL field again at every switch.
  const sqlFieldOf = (sql: string | null): Buffer => encoded(textSqlField(sql, 0) + '\n');
  const querySql = lastOf(sqlFieldOf);
  const boundSql = lastOf(sqlFieldOf);
  let stampMs = -1;
  const stamp = Buffer.alloc(24);

  return (s, r, now, sink) => {
    const type = r.type;
    if ((type !== 'Q' && type !== 'B' && type !== 'E') || r.cache !== undefined || r.flight !== undefined || r.refused !== undefined || r.redacted === true) return null;
    const params = r.params;
    if (params !== null && showParams && !(params instanceof BindMessage)) return null;
    let prefix = prefixes.get(s);
    if (prefix === undefined) {
      prefix = Buffer.from(prefixOf(s), 'utf8');
      prefixes.set(s, prefix);
    }
    const stmt = r.statement !== null && r.statement !== '' ? statementField(r.statement) : null;
    const portal = r.portal !== null && r.portal !== '' ? portalField(r.portal) : null;
    let sqlField: Buffer;
    if (type === 'Q') {
      if (r.sql === null) return null;
      sqlField = querySql(r.sql);
    } else {
      const cut = repeatedSqlCut(r, maxRepeated);
      if (cut !== 0) return null;
      sqlField = boundSql(r.sql);
    }
    const paramBytes = params === null ? 0 : showParams ? 2 * ((params as BindMessage).end - (params as BindMessage).start) + PARAMS.length : SLACK;
    const max = stamp.length + prefix.length + (stmt === null ? 0 : stmt.length) + (portal === null ? 0 : portal.length) + paramBytes + sqlField.length + SLACK;
    const buf = sink.reserve(max);
    if (buf === null) return null;
    let at = sink.reservedAt;
    if (now !== stampMs) {
      stamp.write(isoTime(now), 0, 'latin1');
      stampMs = now;
    }
    buf.set(stamp, at);
    at += stamp.length;
    buf.set(prefix, at);
    at += prefix.length;
    buf[at++] = type.charCodeAt(0);
    if (stmt !== null) {
      buf.set(stmt, at);
      at += stmt.length;
    }
    if (portal !== null) {
      buf.set(portal, at);
      at += portal.length;
    }
    if (params !== null) {
      if (showParams) {
        at = writeParams(params as BindMessage, maxParam, buf, at);
        if (at < 0) return null;
      } else at += buf.write(' params=' + (params instanceof BindMessage ? params.paramCount : params.values.length) + ':hidden', at, 'latin1');
    }
    buf.set(sqlField, at);
    at += sqlField.length;
    return sink.commit(at);
  };
}

/**
 * ` params=(...)` of a Bind, from its bytes, into buf at `at`: the new end, or -1 when a value
 * needs what only the string formatter does (escaping, quotes doubled, a cut).
 */
function writeParams(m: BindMessage, max: number, buf: Buffer, at: number): number {
  buf.set(PARAMS, at);
  at += PARAMS.length;
  const src = m.buf;
  const formats = m.formats;
  const n = m.paramCount;
  for (let i = 0; i < n; i++) {
    if (i > 0) {
      buf[at++] = CH.comma;
      buf[at++] = CH.space;
    }
    const from = m.valueStart(i);
    if (from < 0) {
      buf.set(NULL, at);
      at += NULL.length;
      continue;
    }
    const len = m.valueBytes(i);
    if (len > max) return -1;
    const to = from + len;
    if (paramFormat(formats, i) === 1) {
      buf[at++] = CH.x;
      buf[at++] = CH.quote;
      for (let k = from; k < to; k++) {
        const b = src[k]!;
        buf[at++] = HEX[b >> 4]!;
        buf[at++] = HEX[b & 15]!;
      }
    } else {
      buf[at++] = CH.quote;
      for (let k = from; k < to; k++) {
        const b = src[k]!;
        // Printable ASCII but the quote (doubled) and the backslash (escaped): copied as is.
        if (b < 0x20 || b > 0x7e || b === CH.quote || b === CH.backslash) return -1;
        buf[at++] = b;
      }
    }
    buf[at++] = CH.quote;
  }
  buf[at++] = CH.close;
  return at;
}
