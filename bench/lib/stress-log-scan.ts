/**
 * Incremental reader of a pgscribe text query log for bench/stress.ts: counts lines per phase,
 * database and message type, and the SQL statements inside simple-query (Q) lines, without
 * holding the (possibly multi-GB) file in memory.
 *
 * Text line format (README, "The query log"):
 *   <timestamp> conn=<id> <user>@<database> <client addr> <type> [seq=N] [stmt=..] [portal=..] [params=(..)] sql=<SQL>
 * and, with --log-completions, `done` lines:
 *   <timestamp> conn=<id> <user>@<database> <client addr> done seq=N of=Q|E ms=.. rows=.. [status=..] ...
 */
import * as fs from 'node:fs';
import { unescapeText } from '../../src/log/format';

export interface TypeCounts {
  Q: number;
  P: number;
  B: number;
  E: number;
  /** Statements inside Q lines (a multi-statement simple query counts each one). */
  qStatements: number;
  /** Q lines holding more than one statement. */
  qMulti: number;
  /**
   * Executes of a transaction-control statement (BEGIN, COMMIT, ...) through a prepared statement
   * that was already executed since its Parse on that connection (see stress.ts: PostgreSQL 15's
   * pg_stat_statements counts only the first execution of such a cached plan).
   */
  txnRepeats: number;
  /** The same for other utility statements (their plan may be rebuilt: counted 0 or 1 times). */
  utilityRepeats: number;
  /** Executes of an empty statement (EmptyQueryResponse: not a call). */
  emptyE: number;
  /**
   * Q and E lines answered by the proxy without PostgreSQL (`cache=hit`, `cache=l2`,
   * `flight=waiter`): not calls. (A waiter whose leader failed runs the query itself: the proxy's
   * cache_reruns.)
   */
  answeredByProxy: number;
  /** `done` lines (--log-completions): one per Q and E line when the run is over. */
  done: number;
}

const emptyCounts = (): TypeCounts => ({ Q: 0, P: 0, B: 0, E: 0, qStatements: 0, qMulti: 0, txnRepeats: 0, utilityRepeats: 0, emptyE: 0, answeredByProxy: 0, done: 0 });

/** Index just past a ` seq=N` field that starts at i (the space before it), or i when there is none. */
function skipSeq(buf: Buffer, i: number, stop: number): number {
  if (buf.toString('latin1', i, i + 5) !== ' seq=') return i;
  let j = i + 5;
  while (j < stop && buf[j]! >= 0x30 && buf[j]! <= 0x39) j++;
  return j > i + 5 ? j : i;
}

/** The optional field between the client address and the type (several upstreams). */
const NODE = Buffer.from('node=');
const DONE = Buffer.from('done seq=');

/**
 * The fields between a Q/E line's type and its sql= carry `cache=hit`, `cache=l2` (the shared cache
 * in Redis) or `flight=waiter` (added by the cache layer). Only that short stretch is searched: a search of the rest of the chunk would
 * make a scan of a log without such lines quadratic.
 */
function answeredByProxy(buf: Buffer, from: number, stop: number): boolean {
  const sql = buf.indexOf(' sql=', from);
  const fields = buf.toString('latin1', from, sql < 0 || sql > stop ? stop : sql);
  return fields.includes(' cache=hit') || fields.includes(' cache=l2') || fields.includes(' flight=waiter');
}

export class QueryLogScanner {
  /** Complete lines read so far (all phases). */
  lines = 0;
  /** Lines that do not have the documented shape (should stay 0). */
  malformed = 0;
  malformedExamples: string[] = [];
  /** Bytes consumed (up to and including the last complete line). */
  offset = 0;
  /** phase -> database -> counts */
  readonly counts = new Map<string, Map<string, TypeCounts>>();
  phase = 'default';
  private carry: Buffer = Buffer.alloc(0);
  /** "conn stmt" -> executions since its Parse, for prepared utility statements. */
  private readonly utilityExecs = new Map<string, number>();

  constructor(private readonly file: string) {}

  /** Read from where the last call stopped to the current end of the file. */
  scan(): void {
    let fd: number;
    try {
      fd = fs.openSync(this.file, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    try {
      const chunk = Buffer.allocUnsafe(16 << 20);
      let pos = this.offset + this.carry.length;
      for (;;) {
        const n = fs.readSync(fd, chunk, 0, chunk.length, pos);
        if (n <= 0) break;
        pos += n;
        const buf = this.carry.length ? Buffer.concat([this.carry, chunk.subarray(0, n)]) : chunk.subarray(0, n);
        const lastNl = buf.lastIndexOf(10);
        if (lastNl < 0) {
          this.carry = Buffer.from(buf);
          continue;
        }
        this.processLines(buf, lastNl);
        this.offset += lastNl + 1;
        this.carry = Buffer.from(buf.subarray(lastNl + 1));
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  countsFor(phase: string): Map<string, TypeCounts> {
    let m = this.counts.get(phase);
    if (!m) this.counts.set(phase, (m = new Map()));
    return m;
  }

  private processLines(buf: Buffer, end: number): void {
    const byDb = this.countsFor(this.phase);
    let start = 0;
    while (start <= end) {
      const nl = buf.indexOf(10, start);
      const stop = nl < 0 || nl > end ? end : nl;
      this.processLine(buf, start, stop, byDb);
      this.lines++;
      start = stop + 1;
    }
  }

  private processLine(buf: Buffer, start: number, stop: number, byDb: Map<string, TypeCounts>): void {
    const sp1 = buf.indexOf(32, start);
    const sp2 = sp1 < 0 ? -1 : buf.indexOf(32, sp1 + 1);
    const sp3 = sp2 < 0 ? -1 : buf.indexOf(32, sp2 + 1);
    let sp4 = sp3 < 0 ? -1 : buf.indexOf(32, sp3 + 1);
    // With several upstreams the node that served the session follows the client address.
    if (sp4 > 0 && buf.compare(NODE, 0, NODE.length, sp4 + 1, Math.min(stop, sp4 + 1 + NODE.length)) === 0) sp4 = buf.indexOf(32, sp4 + 1);
    const isDone = sp4 > 0 && buf.compare(DONE, 0, DONE.length, sp4 + 1, Math.min(stop, sp4 + 1 + DONE.length)) === 0;
    const ok =
      sp4 > 0 &&
      sp4 + 2 < stop &&
      (buf[sp4 + 2] === 32 || isDone) &&
      buf[sp1 + 1] === 0x63 /* c of conn= */ &&
      buf[start + 4] === 0x2d; /* - of the date */
    if (!ok || (isDone && !/^done seq=\d+ of=[QE] ms=[\d.]+ rows=\d+( |$)/.test(buf.toString('latin1', sp4 + 1, Math.min(stop, sp4 + 80))))) {
      this.bad(buf, start, stop);
      return;
    }
    const who = buf.toString('latin1', sp2 + 1, sp3);
    const at = who.lastIndexOf('@');
    const db = at < 0 ? '?' : who.slice(at + 1);
    let c = byDb.get(db);
    if (!c) byDb.set(db, (c = emptyCounts()));
    if (isDone) {
      c.done++;
      return;
    }
    // The fields after the type, past a seq=N (--log-completions).
    const fieldsAt = skipSeq(buf, sp4 + 2, stop) + 1;
    switch (buf[sp4 + 1]) {
      case 0x51 /* Q */: {
        c.Q++;
        if (answeredByProxy(buf, sp4, stop)) c.answeredByProxy++;
        // sql= comes right after the type, or after the cache layer's cache=/flight= fields.
        const sqlAt = buf.indexOf(' sql=', sp4) + 1;
        const fields = buf.toString('latin1', fieldsAt, Math.max(fieldsAt, sqlAt - 1));
        if (sqlAt <= 0 || sqlAt > stop || !/^((cache|flight)=\w+ ?)*$/.test(fields)) {
          this.bad(buf, start, stop);
          return;
        }
        const n = countStatements(unescapeText(buf.toString('utf8', sqlAt + 4, stop)));
        c.qStatements += n;
        if (n > 1) c.qMulti++;
        break;
      }
      case 0x50 /* P */: {
        c.P++;
        const [key, kind] = this.stmtKeyAndKind(buf, sp1, sp2, fieldsAt, stop);
        if (kind === 'txn' || kind === 'utility') this.utilityExecs.set(key, 0);
        else this.utilityExecs.delete(key);
        break;
      }
      case 0x42 /* B */:
        c.B++;
        break;
      case 0x45 /* E */: {
        c.E++;
        if (answeredByProxy(buf, sp4, stop)) c.answeredByProxy++;
        const [key, kind] = this.stmtKeyAndKind(buf, sp1, sp2, fieldsAt, stop);
        if (kind === 'empty') c.emptyE++;
        else if (kind === 'txn' || kind === 'utility') {
          const n = this.utilityExecs.get(key) ?? 0;
          if (n > 0) {
            if (kind === 'txn') c.txnRepeats++;
            else c.utilityRepeats++;
          }
          this.utilityExecs.set(key, n + 1);
        }
        break;
      }
      default:
        this.bad(buf, start, stop);
    }
  }

  /** For P and E lines (fields: where the fields after the type start): "conn stmt" and the kind of the SQL (from its first keyword). */
  private stmtKeyAndKind(buf: Buffer, sp1: number, sp2: number, fields: number, stop: number): [string, SqlKind | 'unknown'] {
    const conn = buf.toString('latin1', sp1 + 1, sp2);
    let stmt = '';
    if (buf.toString('latin1', fields, fields + 5) === 'stmt=') {
      const sp = buf.indexOf(32, fields + 5);
      stmt = buf.toString('utf8', fields + 5, sp < 0 || sp > stop ? stop : sp);
    }
    const at = buf.indexOf(' sql=', fields - 1);
    if (at < 0 || at >= stop) return [conn + ' ' + stmt, 'unknown'];
    const sqlStart = at + 5;
    if (stop - sqlStart === 1 && buf[sqlStart] === 0x3f /* ? */) return [conn + ' ' + stmt, 'unknown'];
    return [conn + ' ' + stmt, classifySql(unescapeText(buf.toString('utf8', sqlStart, Math.min(stop, sqlStart + 200))))];
  }

  private bad(buf: Buffer, start: number, stop: number): void {
    this.malformed++;
    if (this.malformedExamples.length < 5) this.malformedExamples.push(buf.toString('utf8', start, Math.min(stop, start + 300)));
  }
}


export type SqlKind = 'dml' | 'txn' | 'utility' | 'empty';

const TXN = new Set(['BEGIN', 'START', 'COMMIT', 'END', 'ROLLBACK', 'ABORT', 'SAVEPOINT', 'RELEASE']);
const DML = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'WITH', 'VALUES', 'TABLE', 'MERGE']);

/**
 * What a statement is, from its first keyword: a transaction-control statement (BEGIN, COMMIT,
 * ... PREPARE TRANSACTION), an optimizable one (SELECT, INSERT, ...), another utility statement,
 * or empty.
 */
export function classifySql(sql: string): SqlKind {
  const m = /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/|\()*([A-Za-z]+)(?:\s+([A-Za-z]+))?/.exec(sql);
  if (!m) return /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/|;)*$/.test(sql) ? 'empty' : 'utility';
  const w = m[1]!.toUpperCase();
  if (TXN.has(w)) return 'txn';
  if (w === 'PREPARE' && m[2]?.toUpperCase() === 'TRANSACTION') return 'txn';
  if (DML.has(w)) return 'dml';
  return 'utility';
}

const IDENT = /[A-Za-z0-9_]/;

/**
 * Number of non-empty statements in a simple-query string, as PostgreSQL splits it: semicolons
 * outside quotes ('..', E'..', "..", $tag$..$tag$) and comments (-- .., nested /* .. *\/).
 */
export function countStatements(sql: string): number {
  let count = 0;
  let hasToken = false;
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const ch = sql[i]!;
    if (ch === '-' && sql[i + 1] === '-') {
      const j = sql.indexOf('\n', i);
      i = j < 0 ? n : j + 1;
      continue;
    }
    if (ch === '/' && sql[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else i++;
      }
      continue;
    }
    if (ch === ';') {
      if (hasToken) count++;
      hasToken = false;
      i++;
      continue;
    }
    if (ch === ' ' || ch === '\n' || ch === '\t' || ch === '\r' || ch === '\f' || ch === '\v') {
      i++;
      continue;
    }
    hasToken = true;
    if (ch === "'" || ch === '"') {
      // A string or quoted identifier: a doubled quote stays inside; E'...' also has \ escapes.
      const prev = sql[i - 1];
      const escaped = ch === "'" && (prev === 'E' || prev === 'e') && (i < 2 || !IDENT.test(sql[i - 2]!));
      i++;
      while (i < n) {
        if (escaped && sql[i] === '\\') {
          i += 2;
          continue;
        }
        if (sql[i] === ch) {
          if (sql[i + 1] === ch) {
            i += 2;
            continue;
          }
          i++;
          break;
        }
        i++;
      }
      continue;
    }
    if (ch === '$' && !(i > 0 && IDENT.test(sql[i - 1]!))) {
      const m = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 64));
      if (m) {
        const end = sql.indexOf(m[0], i + m[0].length);
        i = end < 0 ? n : end + m[0].length;
        continue;
      }
    }
    i++;
  }
  if (hasToken) count++;
  return count;
}
