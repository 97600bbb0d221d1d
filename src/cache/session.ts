/**
 * A client session as the cache layer must know it, kept by the Client only when --cache or
 * --singleflight is on:
 *
 * - the cache key prefix: database, user, startup parameters and the parameters the server
 *   reports (ParameterStatus), interned to a short id;
 * - whether the session may use the cache at all (not after SET, SET ROLE, CREATE TEMP, LISTEN,
 *   DISCARD ...: "tainted"; only with client_encoding UTF8; never for replication);
 * - the statement ledger: which prepared statements exist on the server, so that a cached answer
 *   is only given where PostgreSQL would have run the statement. A request answered without
 *   reaching the server does not redefine the server's unnamed statement; the ledger remembers
 *   what the client believes it is and, before the next message that uses it goes upstream,
 *   re-creates it there (an injected Parse, or a Close after a simple Query, whose
 *   ParseComplete/CloseComplete the client never sees);
 * - the request groups sent upstream and not yet answered (each Query, Sync and FunctionCall is
 *   answered by one ReadyForQuery), with the writes they carry, so that committed writes
 *   invalidate the tables they name: immediately outside a transaction block, at COMMIT inside
 *   one, not on ROLLBACK; when the tables are unknown, the whole database.
 *
 * Pure bookkeeping over messages; the Client owns sockets, state and the log.
 */
import { Frontend, TxStatus } from '../protocol/codes';
import { cstringEnd, need } from '../protocol/messages';
import type { Outbox } from '../outbox';
import type { CacheLayer, CacheRequest } from './layer';
import type { CachePolicy, StatementPolicy } from './policy';
import { ResponseCapture } from './response';
import { bindLayout, parseSqlEnd, type Unit } from './unit';

/** What the cache layer shares between sessions: the layer, the policy and the settings. */
export interface CacheContext {
  readonly layer: CacheLayer;
  readonly policy: CachePolicy;
  /** The L1 cache is on (answers are stored); else singleflight only. */
  readonly cache: boolean;
  readonly singleflight: boolean;
  /** Larger answers are neither stored nor shared. */
  readonly maxEntryBytes: number;
  /** How long a key whose answer was too large goes straight upstream. */
  readonly bypassMs: number;
  /** Session fingerprint -> short id, for key prefixes. */
  intern(fingerprint: string): string;
}

/** A context's intern(): ids are never reused, the table is dropped when it grows too big. */
export function fingerprintInterner(max = 100_000): (fp: string) => string {
  const ids = new Map<string, string>();
  let next = 1;
  return (fp) => {
    let id = ids.get(fp);
    if (id === undefined) {
      if (ids.size >= max) ids.clear();
      id = (next++).toString(36);
      ids.set(fp, id);
    }
    return id;
  };
}

/** A prepared statement as the server has it. */
interface StmtDef {
  /** The Parse body from the SQL on (latin1): SQL, NUL, parameter type count and OIDs. */
  readonly ident: string;
  /** Length of the SQL at the start of ident. */
  readonly sqlLength: number;
  policy: StatementPolicy | null;
}

const PARSE = 0x31; // ParseComplete '1'
const CLOSE = 0x33; // CloseComplete '3'

interface Awaiting {
  completion: typeof PARSE | typeof CLOSE;
  /** Sent by the proxy (ledger repair): its completion is not relayed. */
  injected: boolean;
  name: string;
  def: StmtDef | null;
  ok: boolean;
}

/** Writes: a set of relation names, null for "anything", undefined for none. */
type Writes = Set<string> | null | undefined;

/** Messages sent upstream up to and including one Query/Sync/FunctionCall. */
interface Group {
  awaiting: Awaiting[];
  next: number;
  writes: Writes;
  statements: number;
  /** The group's transaction-ending statement, if it had one. */
  txEnd: 'commit' | 'rollback' | null;
  lead: Lead | null;
}

/** This session leads a flight: its answer is captured for the waiters and the cache. */
export interface Lead {
  flightId: number;
  kind: 'Q' | 'X';
  hasParse: boolean;
  hasDescribe: boolean;
  ttlMs: number;
  capture: ResponseCapture;
}

/** A cacheable request and how to replay its answer. */
export interface Request extends CacheRequest {
  kind: 'Q' | 'X';
  hasParse: boolean;
  hasDescribe: boolean;
  ttlMs: number;
}

/** Close of the unnamed statement, injected when the client believes it destroyed (by a Query). */
const CLOSE_UNNAMED = Buffer.from([Frontend.Close, 0, 0, 0, 6, 0x53, 0]);

/** Startup parameters that cannot change an answer (and would split the cache per application). */
const NOT_IN_KEY = new Set(['user', 'database', 'application_name', 'fallback_application_name']);

export class CacheSession {
  readonly ctx: CacheContext;
  readonly db: string;
  private readonly user: string;
  private readonly startupPart: string;
  private readonly replication: boolean;
  private readonly reported = new Map<string, string>();
  private prefix: string | null = null;
  /** The session identity behind the prefix, as every instance computes it (the shared cache's scope). */
  private scope = '';
  private utf8 = false;
  private scs = true;
  /** The session changed state that answers depend on (SET, SET ROLE, CREATE TEMP, ...): no cache from now on. */
  tainted = false;
  /** The ledger lost track of the server (a bug or an impossible server): no cache from now on. */
  private confused = false;

  /** Statements the server has, as of the messages sent so far (failed Parses removed at their ReadyForQuery). */
  private readonly serverStmts = new Map<string, StmtDef>();
  /** The unnamed statement as the client believes it, when that differs: a def, null (none), undefined (same as the server). */
  private unnamedClient: StmtDef | null | undefined = undefined;
  /** The last unit Parse seen (its body bytes, a copy) and its def. */
  private lastParse: { bytes: Buffer; def: StmtDef } | null = null;
  /** Portals bound by messages sent so far -> their statement (null: unknown). */
  private readonly portals = new Map<string, StmtDef | null>();

  private readonly groups: Group[] = [];
  private open: Group | null = null;
  /** Writes of the current transaction not yet committed. */
  private txWrites: Writes = undefined;

  /** The lead of the next group to be sealed (set while its unit is being sent). */
  private pendingLead: Lead | null = null;
  /** The lead whose answer is arriving: every relayed server byte goes to its capture. */
  capturing: Lead | null = null;
  /**
   * Committed invalidations still being shared with other pgscribe instances (--redis). While
   * above 0 the Client holds what it relays to its client (the commit's ReadyForQuery first);
   * `onShared` runs when it drops back to 0.
   */
  sharing = 0;
  onShared: (() => void) | null = null;
  private readonly sharedDone = (): void => {
    if (--this.sharing === 0) this.onShared?.();
  };

  constructor(ctx: CacheContext, startup: ReadonlyMap<string, string>, user: string, db: string) {
    this.ctx = ctx;
    this.user = user;
    this.db = db;
    const keys = [...startup.keys()].filter((k) => !NOT_IN_KEY.has(k)).sort();
    this.startupPart = keys.map((k) => `${k}=${startup.get(k)}`).join('\0');
    this.replication = startup.has('replication') && startup.get('replication') !== 'false' && startup.get('replication') !== 'off';
  }

  // ---- eligibility and keys ------------------------------------------------------------------

  /** The session may be answered from the cache (checked at each idle unit). */
  get usable(): boolean {
    return !this.tainted && !this.confused && this.utf8 && !this.replication;
  }

  /** A ParameterStatus from the server (name, value). */
  parameterStatus(name: string, value: string): void {
    if (name === 'application_name') return;
    if (this.reported.get(name) === value) return;
    this.reported.set(name, value);
    this.prefix = null;
    if (name === 'client_encoding') this.utf8 = value.toUpperCase() === 'UTF8' || value.toUpperCase() === 'UTF-8';
    else if (name === 'standard_conforming_strings') this.scs = value !== 'off';
  }

  private keyPrefix(): string {
    if (this.prefix === null) {
      const rep = [...this.reported.keys()].sort().map((k) => `${k}=${this.reported.get(k)}`).join('\0');
      this.scope = `${this.db}\0${this.user}\0${this.startupPart}\0\0${rep}`;
      this.prefix = this.ctx.intern(this.scope) + ':';
    }
    return this.prefix;
  }

  private policyOf(def: StmtDef): StatementPolicy {
    if (def.policy === null) def.policy = this.ctx.policy.forSql(def.ident.slice(0, def.sqlLength), this.scs);
    return def.policy;
  }

  /**
   * The statement a unit's Parse defines. pgbench -M extended, JDBC and node-postgres send the
   * same Parse with every request: when the bytes equal the session's previous one, its def (with
   * its memoised policy) is reused without decoding.
   */
  private parsed(u: Unit): StmtDef {
    const h = u.held[0]!;
    const from = h.start + u.parseOffset;
    const len = h.end - from;
    const last = this.lastParse;
    if (last !== null && last.bytes.length === len && h.buf.compare(last.bytes, 0, len, from, h.end) === 0) return last.def;
    const def: StmtDef = { ident: h.buf.toString('latin1', from, h.end), sqlLength: u.parseSqlLength, policy: null };
    this.lastParse = { bytes: Buffer.from(h.buf.subarray(from, h.end)), def };
    return def;
  }

  /** The statement a Bind of `name` runs, as the client believes it (undefined: unknown). */
  private clientStatement(name: string): StmtDef | null | undefined {
    if (name === '' && this.unnamedClient !== undefined) return this.unnamedClient;
    return this.serverStmts.get(name);
  }

  /** The cache request for a complete unit, or null when it is not a cacheable read. */
  request(u: Unit): Request | null {
    let pol: StatementPolicy;
    let key: string;
    if (u.kind === 'Q') {
      pol = this.ctx.policy.forSql(u.sql, this.scs);
      if (!pol.cacheable) return null;
      key = this.keyPrefix() + 'Q' + u.sql;
    } else {
      if (u.volatileInput) return null;
      const def = u.hasParse ? this.parsed(u) : this.clientStatement(u.bindStatement);
      if (def === null || def === undefined) return null;
      pol = this.policyOf(def);
      if (!pol.cacheable) return null;
      key = this.keyPrefix() + (u.hasDescribe ? 'D' : 'X') + def.ident + '\0' + u.paramsKey;
    }
    return { key, scope: this.scope, db: this.db, tables: pol.reads, kind: u.kind as 'Q' | 'X', hasParse: u.hasParse, hasDescribe: u.hasDescribe, ttlMs: pol.ttlMs };
  }

  /**
   * A unit was answered without reaching the server (from the cache or a flight): what it would
   * have done to the unnamed statement is now the client's belief, not the server's state.
   */
  answeredLocally(u: Unit): void {
    if (u.kind === 'Q') this.unnamedClient = null;
    else if (u.hasParse) this.unnamedClient = this.parsed(u);
  }

  /**
   * A waiting unit was cancelled by the proxy (its answer: ErrorResponse 57014, as if PostgreSQL
   * had been cancelled while parsing): a Query or an unnamed Parse leaves no unnamed statement.
   */
  cancelledLocally(u: Unit): void {
    if (u.kind === 'Q' || u.hasParse) this.unnamedClient = null;
  }

  /** The unit about to be sent leads a flight: its group captures the answer. */
  lead(flightId: number, r: Request): void {
    this.pendingLead = {
      flightId,
      kind: r.kind,
      hasParse: r.hasParse,
      hasDescribe: r.hasDescribe,
      ttlMs: r.ttlMs,
      capture: new ResponseCapture(this.ctx.maxEntryBytes),
    };
  }

  // ---- client -> server ------------------------------------------------------------------------

  private openGroup(): Group {
    if (this.open === null) this.open = { awaiting: [], next: 0, writes: undefined, statements: 0, txEnd: null, lead: null };
    return this.open;
  }

  private seal(): void {
    const g = this.openGroup();
    this.open = null;
    if (this.pendingLead !== null) {
      g.lead = this.pendingLead;
      this.capturing = this.pendingLead;
      this.pendingLead = null;
    }
    this.groups.push(g);
  }

  /**
   * A client message is about to be sent upstream: keep the ledger and the groups, and put what
   * the server must see first (ledger repair) into out. Throws ProtocolError on a malformed message.
   */
  beforeForward(type: number, buf: Buffer, start: number, end: number, out: Outbox): void {
    switch (type) {
      case Frontend.Query: {
        const nul = cstringEnd(buf, start + 5, end, 'Query');
        this.statement(this.ctx.policy.forSql(buf.toString('latin1', start + 5, nul), this.scs));
        // A simple Query destroys the unnamed statement, on the server and in the client's mind.
        this.serverStmts.delete('');
        this.unnamedClient = undefined;
        this.seal();
        break;
      }
      case Frontend.Parse: {
        const nameEnd = cstringEnd(buf, start + 5, end, 'Parse');
        const sqlEnd = parseSqlEnd(buf, nameEnd + 1, end);
        const name = buf.toString('utf8', start + 5, nameEnd);
        const def: StmtDef = { ident: buf.toString('latin1', nameEnd + 1, end), sqlLength: sqlEnd - nameEnd - 1, policy: null };
        this.serverStmts.set(name, def);
        if (name === '') this.unnamedClient = undefined;
        this.openGroup().awaiting.push({ completion: PARSE, injected: false, name, def, ok: false });
        break;
      }
      case Frontend.Bind: {
        const b = bindLayout(buf, start, end);
        if (b.statement === '') this.repairUnnamed(out);
        this.portals.set(b.portal, this.serverStmts.get(b.statement) ?? null);
        break;
      }
      case Frontend.Describe:
        if (end - start >= 7 && buf[start + 5] === 0x53 && buf[start + 6] === 0) this.repairUnnamed(out); // 'S', ''
        break;
      case Frontend.Execute: {
        const nul = cstringEnd(buf, start + 5, end, 'Execute');
        const def = this.portals.get(buf.toString('utf8', start + 5, nul));
        this.statement(def === undefined || def === null ? null : this.policyOf(def));
        break;
      }
      case Frontend.Close: {
        need(start + 5, 2, end, 'Close');
        const nul = cstringEnd(buf, start + 6, end, 'Close');
        const name = buf.toString('utf8', start + 6, nul);
        if (buf[start + 5] === 0x53) {
          this.serverStmts.delete(name);
          if (name === '') this.unnamedClient = undefined;
        } else this.portals.delete(name);
        this.openGroup().awaiting.push({ completion: CLOSE, injected: false, name, def: null, ok: false });
        break;
      }
      case Frontend.Sync:
        this.seal();
        break;
      case Frontend.FunctionCall:
        this.statement(null);
        this.seal();
        break;
    }
  }

  /** Make the server's unnamed statement what the client believes, before a message uses it. */
  private repairUnnamed(out: Outbox): void {
    const want = this.unnamedClient;
    if (want === undefined) return;
    this.unnamedClient = undefined;
    const g = this.openGroup();
    if (want === null) {
      out.push(CLOSE_UNNAMED, 0, CLOSE_UNNAMED.length);
      this.serverStmts.delete('');
      g.awaiting.push({ completion: CLOSE, injected: true, name: '', def: null, ok: false });
      return;
    }
    const body = Buffer.from(want.ident, 'latin1');
    const msg = Buffer.allocUnsafe(6 + body.length);
    msg[0] = Frontend.Parse;
    msg.writeUInt32BE(5 + body.length, 1);
    msg[5] = 0; // unnamed
    body.copy(msg, 6);
    out.push(msg, 0, msg.length);
    this.serverStmts.set('', want);
    g.awaiting.push({ completion: PARSE, injected: true, name: '', def: want, ok: false });
  }

  /** A statement is being executed (policy null: unknown, may write anything). */
  private statement(pol: StatementPolicy | null): void {
    const g = this.openGroup();
    if (pol === null) {
      g.statements++;
      g.writes = null;
      return;
    }
    g.statements += pol.cls.reason === 'multi-statement' ? 2 : 1;
    if (pol.cls.taintsSession) this.tainted = true;
    if (pol.dropsStatements) this.serverStmts.clear();
    if (pol.cls.writes) g.writes = addWrites(g.writes, pol.writeTables);
    const tx = pol.cls.txControl;
    if (tx === 'commit' || tx === 'prepare-transaction') g.txEnd = 'commit';
    else if (tx === 'rollback') g.txEnd = 'rollback';
  }

  // ---- server -> client ------------------------------------------------------------------------

  /** ParseComplete or CloseComplete arrived: false when it answers an injected message (do not relay). */
  completion(type: number): boolean {
    const g = this.groups.length > 0 ? this.groups[0]! : this.open;
    const a = g === null ? undefined : g.awaiting[g.next];
    if (g === null || a === undefined || a.completion !== type) {
      this.confused = true;
      return true;
    }
    g.next++;
    a.ok = true;
    return !a.injected;
  }

  /**
   * ReadyForQuery ended the oldest group (prev: the transaction status before it). Applies its
   * writes and returns its lead, if it led a flight.
   */
  readyForQuery(prev: number, status: number): Lead | null {
    const g = this.groups.shift();
    if (g === undefined) return null; // end of authentication
    for (const a of g.awaiting) {
      if (a.completion === PARSE && !a.ok && this.serverStmts.get(a.name) === a.def) this.serverStmts.delete(a.name);
    }
    if (status === TxStatus.Idle) this.portals.clear();
    if (g.writes !== undefined) this.txWrites = mergeWrites(this.txWrites, g.writes);
    if (this.txWrites !== undefined) {
      const single = g.statements === 1;
      if (single && (g.txEnd === 'rollback' || (g.txEnd === 'commit' && prev === TxStatus.Failed))) {
        this.txWrites = undefined; // rolled back: nothing changed
      } else if (status === TxStatus.Idle || g.txEnd === 'commit') {
        this.commit();
      }
    }
    if (g.lead !== null && this.capturing === g.lead) this.capturing = null;
    return g.lead;
  }

  private commit(): void {
    const w = this.txWrites;
    this.txWrites = undefined;
    if (w === undefined) return;
    if (this.ctx.layer.invalidate(this.db, w === null ? null : [...w], this.sharedDone)) this.sharing++;
  }

  /**
   * The session is over. Writes sent without their ReadyForQuery may have committed (a COMMIT in
   * flight when the client vanished): invalidate them. Returns the lead still capturing, if any.
   */
  close(): Lead | null {
    for (const g of this.groups) if (g.writes !== undefined) this.txWrites = mergeWrites(this.txWrites, g.writes);
    if (this.open !== null && this.open.writes !== undefined) this.txWrites = mergeWrites(this.txWrites, this.open.writes);
    this.commit();
    const lead = this.capturing ?? this.pendingLead;
    this.capturing = this.pendingLead = null;
    this.onShared = null;
    this.groups.length = 0;
    this.open = null;
    return lead;
  }
}

function addWrites(w: Writes, tables: readonly string[] | null): Writes {
  if (w === null || tables === null) return null;
  const s = w ?? new Set<string>();
  for (const t of tables) s.add(t);
  return s;
}

function mergeWrites(a: Writes, b: Writes): Writes {
  if (b === undefined) return a;
  if (b === null) return null;
  return addWrites(a, [...b]);
}
