/**
 * One checker session over the raw protocol client of the tests (test/harness/wire.ts): startup,
 * simple queries (one answer per statement), and extended-protocol requests through the unnamed
 * or a named prepared statement, each decoded into columns, text rows, command tag and error.
 * No driver: what the checker sees is exactly what pgscribe sent.
 *
 * @see https://www.postgresql.org/docs/current/protocol-flow.html
 */
import { RawClient, enc, errorFields, type BackendMessage } from '../../test/harness/wire';

/** A column of a RowDescription. */
export interface Col {
  name: string;
  oid: number;
}

/** The answer to one statement. */
export interface Answer {
  /** From RowDescription (null when none came: an error first, or a statement without rows). */
  cols: Col[] | null;
  rows: (string | null)[][];
  tag: string | null;
  error: { code: string; message: string } | null;
  /** Results were asked for in binary (decoded into text by decodeBinary). */
  binary: boolean;
  /** Binary values whose length does not fit their column's type (a text answer, say). */
  binaryErrors: string[];
}

/** Everything up to one ReadyForQuery: the answers of its statements, and the transaction status. */
export interface Reply {
  answers: Answer[];
  status: string;
}

/** The longest a checker waits for one reply (lock waits are bounded by lock_timeout). */
const REPLY_TIMEOUT_MS = 60_000;

function newAnswer(binary = false): Answer {
  return { cols: null, rows: [], tag: null, error: null, binary, binaryErrors: [] };
}

/** Binary value lengths of the column types the checker reads (OID -> bytes). */
const FIXED: Record<number, number> = { 20: 8, 21: 2, 23: 4, 701: 8 };

/**
 * A binary value as the text the oracle compares: integers in decimal, float8 as JavaScript's
 * shortest form, bytea in hex, text and name as they are. Null when its length cannot be one of
 * its type.
 * @see https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-FORMAT-CODES
 */
export function decodeBinary(oid: number, b: Buffer): string | null {
  const want = FIXED[oid];
  if (want !== undefined && b.length !== want) return null;
  switch (oid) {
    case 20: return b.readBigInt64BE(0).toString();
    case 21: return String(b.readInt16BE(0));
    case 23: return String(b.readInt32BE(0));
    case 701: return String(b.readDoubleBE(0));
    case 17: return '\\x' + b.toString('hex');
    default: return b.toString('utf8');
  }
}

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html (RowDescription) */
export function decodeRowDescription(body: Buffer): Col[] {
  const n = body.readInt16BE(0);
  const cols: Col[] = [];
  let off = 2;
  for (let i = 0; i < n; i++) {
    const end = body.indexOf(0, off);
    const name = body.toString('utf8', off, end);
    off = end + 1;
    cols.push({ name, oid: body.readInt32BE(off + 6) });
    off += 18;
  }
  return cols;
}

/** @see https://www.postgresql.org/docs/current/protocol-message-formats.html (DataRow) */
function decodeDataRow(body: Buffer, a: Answer): (string | null)[] {
  const n = body.readInt16BE(0);
  const out: (string | null)[] = [];
  let off = 2;
  for (let i = 0; i < n; i++) {
    const len = body.readInt32BE(off);
    off += 4;
    if (len < 0) {
      out.push(null);
      continue;
    }
    const oid = a.cols?.[i]?.oid;
    if (a.binary && oid !== undefined) {
      const v = decodeBinary(oid, body.subarray(off, off + len));
      if (v === null) a.binaryErrors.push(`column ${i + 1} (type ${oid}): ${len} bytes '${body.toString('latin1', off, off + len)}'`);
      out.push(v ?? `<${len} bytes>`);
    } else out.push(body.toString('utf8', off, off + len));
    off += len;
  }
  return out;
}

/** Splits messages through one ReadyForQuery into per-statement answers. */
export function decodeReply(msgs: readonly BackendMessage[], knownCols: Col[] | null = null, binary = false): Reply {
  const answers: Answer[] = [];
  let cur = newAnswer(binary);
  cur.cols = knownCols;
  let status = '?';
  for (const m of msgs) {
    switch (m.type) {
      case 'T':
        cur.cols = decodeRowDescription(m.body);
        break;
      case 'D':
        cur.rows.push(decodeDataRow(m.body, cur));
        break;
      case 'C':
        cur.tag = m.body.toString('utf8', 0, m.body.indexOf(0));
        answers.push(cur);
        cur = newAnswer(binary);
        break;
      case 'I':
        answers.push(cur);
        cur = newAnswer(binary);
        break;
      case 'E': {
        const f = errorFields(m.body);
        cur.error = { code: f['C'] ?? '?', message: f['M'] ?? '' };
        answers.push(cur);
        cur = newAnswer(binary);
        break;
      }
      case 'Z':
        status = String.fromCharCode(m.body[0] ?? 63);
        break;
      // '1' '2' 'n' 's' 't' 'N' 'S': nothing to keep
    }
  }
  return { answers, status };
}

/** How an extended request is sent. */
export interface ExtOptions {
  /** A named prepared statement (reused for the same text) rather than the unnamed one. */
  named: boolean;
  /** Describe the portal (RowDescription with the answer) as libpq does. */
  describe: boolean;
  /** Ask for every result column in binary. */
  binary: boolean;
}

export class Conn {
  readonly raw: RawClient;
  /** Named statements of this session: SQL text -> name, and the columns its Describe gave. */
  private readonly prepared = new Map<string, { name: string; cols: Col[] | null }>();
  /** Reports from the server (ParameterStatus) at startup. */
  readonly params = new Map<string, string>();

  private constructor(raw: RawClient) {
    this.raw = raw;
  }

  /** Connect and log in (trust). Throws with the server's error when the startup fails. */
  static async open(port: number, user: string, extra: Record<string, string>): Promise<Conn> {
    const raw = await RawClient.connect(port);
    raw.sock.setNoDelay(true);
    const c = new Conn(raw);
    const msgs = await raw.startup(user, 'postgres', extra);
    for (const m of msgs) {
      if (m.type === 'S') {
        const z1 = m.body.indexOf(0);
        c.params.set(m.body.toString('utf8', 0, z1), m.body.toString('utf8', z1 + 1, m.body.indexOf(0, z1 + 1)));
      }
    }
    const err = msgs.find((m) => m.type === 'E');
    if (err !== undefined || msgs[msgs.length - 1]?.type !== 'Z') {
      raw.sock.destroy();
      throw new Error(`login as ${user} failed: ${err ? errorFields(err.body)['M'] : 'no ReadyForQuery'}`);
    }
    return c;
  }

  get closed(): boolean {
    return this.raw.closed;
  }

  /** A simple query: one answer per statement. */
  async simple(sql: string): Promise<Reply> {
    this.raw.write(enc.query(sql));
    return decodeReply(await this.raw.readZ(1, REPLY_TIMEOUT_MS));
  }

  /** Parse (when needed), Bind, Describe (optionally), Execute, Sync: one answer. */
  async extended(sql: string, params: string[], o: ExtOptions): Promise<Reply> {
    const parts: Buffer[] = [];
    let stmt = '';
    let known: Col[] | null = null;
    let fresh = false;
    if (o.named) {
      let p = this.prepared.get(sql);
      if (p === undefined) {
        p = { name: `s${this.prepared.size + 1}`, cols: null };
        this.prepared.set(sql, p);
        parts.push(enc.parse(p.name, sql), enc.describe('S', p.name));
        fresh = true;
      }
      stmt = p.name;
      known = p.cols;
    } else {
      parts.push(enc.parse('', sql));
    }
    parts.push(enc.bind('', stmt, params, [], o.binary ? [1] : []));
    if (o.describe || !o.named) parts.push(enc.describe('P', ''));
    parts.push(enc.execute(''), enc.sync());
    this.raw.write(Buffer.concat(parts));
    const msgs = await this.raw.readZ(1, REPLY_TIMEOUT_MS);
    const reply = decodeReply(msgs, known, o.binary);
    if (o.named) {
      const p = this.prepared.get(sql)!;
      if (fresh) {
        // The statement's own Describe: its RowDescription is the shape of later executions.
        const t = msgs.find((m) => m.type === 'T');
        p.cols = t === undefined ? null : decodeRowDescription(t.body);
        if (!msgs.some((m) => m.type === '1')) this.prepared.delete(sql); // the Parse failed: nothing prepared
        else if (reply.answers[0] !== undefined && reply.answers[0].cols === null) reply.answers[0].cols = p.cols;
      }
    }
    return reply;
  }

  /** The prepared statements are gone (DISCARD, an error in their Parse, a new session). */
  forgetPrepared(): void {
    this.prepared.clear();
  }

  close(): void {
    if (this.raw.closed) return;
    this.raw.write(enc.terminate());
    this.raw.end();
  }

  destroy(): void {
    this.raw.sock.destroy();
  }
}

/** A simple query whose every statement must succeed (setup, the direct connection). */
export async function mustSimple(c: Conn, sql: string): Promise<Answer[]> {
  const r = await c.simple(sql);
  const bad = r.answers.find((a) => a.error !== null);
  if (bad) throw new Error(`${sql.slice(0, 200)}: ${bad.error!.code} ${bad.error!.message}`);
  return r.answers;
}
