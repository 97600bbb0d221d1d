/**
 * A client session as the cache layer must know it, kept by the Client only when --cache or
 * --singleflight is on:
 *
 * - the cache key prefix: database, user, startup parameters and the parameters the server
 *   reports (ParameterStatus), interned to a short id;
 * - whether the session may use the cache at all (not after CREATE TEMP, LISTEN, DISCARD, DO, a
 *   volatile function ...: "tainted"; only with client_encoding UTF8; never for replication; not
 *   once the session ledger lost track of the server's statements); after a SET or RESET the
 *   session is asked for its settings again (probe.ts) before its next cached read;
 * - the writes of each request group sent upstream, so that committed writes invalidate the
 *   tables they name: immediately outside a transaction block, at COMMIT inside one, not on
 *   ROLLBACK; when the tables are unknown, the whole database;
 * - the flight this session leads, whose answer is captured as it is relayed.
 *
 * Prepared statements, portals and the request groups themselves live in the SessionLedger
 * (client/ledger.ts), which this reads and annotates. Pure bookkeeping over messages; the Client
 * owns sockets, state and the log.
 */
import { TxStatus } from '../protocol/codes';
import type { ParseMessage } from '../protocol/client-messages';
import { StatementDef, type PendingGroup, type SessionLedger, type Writes } from '../client/ledger';
import type { CacheLayer } from './layer';
import type { Lead, Request } from './lead';
import type { CachePolicy, StatementPolicy } from './policy';
import type { Catalogs } from './catalogs';
import type { ChangeStreams } from './change-streams';
import { identityScope, probeBatch, type SessionIdentity } from './probe';
import { SessionCatalog } from './session-catalog';
import { ResponseCapture } from './response';
import type { Unit } from './unit';

/** Custom settings a session may SET and still be served from the cache (see statement()). */
const MAX_CUSTOM_SETTINGS = 64;

/** What the cache layer shares between sessions: the layer, the policy and the settings. */
export interface CacheContext {
  readonly layer: CacheLayer;
  /** Replaced by a reload that changed cache-rules or cache-ttl (src/reload.ts). */
  policy: CachePolicy;
  /** The L1 cache is on (answers are stored); else singleflight only. */
  readonly cache: boolean;
  readonly singleflight: boolean;
  /** Larger answers are neither stored nor shared. */
  readonly maxEntryBytes: number;
  /** How long a key whose answer was too large goes straight upstream (follows cache-ttl on a reload). */
  bypassMs: number;
  /** Session fingerprint -> short id, for key prefixes. */
  intern(fingerprint: string): string;
  /** The catalog knowledge of each database (catalog-user set), or null: rules only. */
  readonly catalogs: Catalogs | null;
  /** wal mode: the change streams (their counters for the stats line and /metrics); null otherwise. */
  readonly changes?: ChangeStreams | null;
}

/**
 * A context's intern(): short ids for session scopes (the cache key's prefix). Ids are never
 * reused; the table is dropped when it grows past `max` scopes or `maxChars` characters of them,
 * since a client controls its scope's length (startup parameters, settings): 100,000 scopes of
 * 10 KB each would hold a gigabyte. Dropping it only gives the scopes that come next new ids.
 */
export function fingerprintInterner(max = 100_000, maxChars = 16 * 2 ** 20): (fp: string) => string {
  const ids = new Map<string, string>();
  let chars = 0;
  let next = 1;
  return (fp) => {
    let id = ids.get(fp);
    if (id === undefined) {
      if (ids.size >= max || chars + fp.length > maxChars) {
        ids.clear();
        chars = 0;
      }
      id = (next++).toString(36);
      ids.set(fp, id);
      chars += fp.length;
    }
    return id;
  };
}

/** Startup parameters that cannot change an answer (and would split the cache per application). */
const NOT_IN_KEY = new Set(['user', 'database', 'application_name', 'fallback_application_name']);

export class CacheSession {
  readonly ctx: CacheContext;
  readonly db: string;
  private readonly ledger: SessionLedger;
  private readonly user: string;
  private readonly startupPart: string;
  private readonly replication: boolean;
  private readonly reported = new Map<string, string>();
  private prefix: string | null = null;
  /** The session identity behind the prefix, as every instance computes it (the shared cache's scope). */
  private scope = '';
  private utf8 = false;
  private scs = true;
  /**
   * The session may have changed state that answers depend on, in a way pgscribe cannot see
   * through (CREATE TEMP, DO, CALL, a FunctionCall, a function not known to be STABLE or
   * IMMUTABLE, DDL, anything the classifier does not vouch for): no cache from now on. (SET and
   * RESET do not taint: the probe reads every setting and the role again.)
   */
  tainted = false;
  /** What the session said about its settings (probe.ts); null until it was asked. */
  private identity: SessionIdentity | null = null;
  private asked = false;
  /** Custom settings (app.tenant) the session SET: the probe asks for each (pg_settings does not list them). */
  private readonly customNames = new Set<string>();
  /** The last Parse seen (its definition bytes, a copy) and its statement. */
  private lastParse: { bytes: Buffer; def: StatementDef } | null = null;
  /** Writes of the current transaction not yet committed. */
  private txWrites: Writes = undefined;
  /** The current transaction ran DDL (the catalog is read again when it commits). */
  private txDdl = false;
  /** What the catalog says about this session's statements. */
  private readonly catalog: SessionCatalog;

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

  constructor(ctx: CacheContext, ledger: SessionLedger, startup: ReadonlyMap<string, string>, user: string, db: string) {
    this.ctx = ctx;
    this.ledger = ledger;
    this.user = user;
    this.db = db;
    const keys = [...startup.keys()].filter((k) => !NOT_IN_KEY.has(k)).sort();
    this.startupPart = keys.map((k) => `${k}=${startup.get(k)}`).join('\0');
    this.replication = startup.has('replication') && startup.get('replication') !== 'false' && startup.get('replication') !== 'off';
    this.catalog = new SessionCatalog(ctx.catalogs === null ? null : ctx.catalogs.of(db), ctx.catalogs !== null);
  }

  // ---- eligibility and keys ------------------------------------------------------------------

  /**
   * A read-only listener's session (--listen-replicas): its reads are always relayed (a standby's
   * answer is not the primary's), while its writes, should it land on a primary, still drop what
   * they change.
   */
  relayReads = false;

  /** The session may be answered from the cache (checked at each idle unit). */
  get usable(): boolean {
    return !this.tainted && !this.ledger.lost && this.utf8 && !this.replication && !this.relayReads;
  }

  /** While the catalog of the session's database is read for the first time: settles when it is over. */
  catalogLoading(): Promise<void> | null {
    return this.ctx.catalogs === null ? null : this.ctx.catalogs.firstLoad(this.db);
  }

  /** The probe batch for this session (probe.ts). */
  probeRequest(): Buffer {
    this.catalog.probing();
    const names = new Set([...this.customNames, ...this.catalog.customSettingNames()]);
    return probeBatch([...names].sort());
  }

  /** The session was asked for its identity (probe.ts); only then can a key be made. */
  get identified(): boolean {
    return this.asked && this.catalog.probeCurrent;
  }

  /**
   * The probe's answer (null: it failed or was not understood). A session whose settings cannot
   * be known, or whose unqualified names may reach temp relations (a temp schema, pg_temp in its
   * search_path), is never served.
   */
  identify(id: SessionIdentity | null): void {
    this.asked = true;
    this.identity = id;
    this.prefix = null;
    if (id === null || id.hasTempSchema || /pg_temp/i.test(id.searchPath)) this.tainted = true;
    else this.catalog.identified(id.schemas);
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
      const id = this.identity === null ? '' : identityScope(this.identity);
      this.scope = `${this.db}\0${this.user}\0${this.startupPart}\0\0${rep}\0\0${id}`;
      this.prefix = this.ctx.intern(this.scope) + ':';
    }
    return this.prefix;
  }

  private policyOf(def: StatementDef): StatementPolicy {
    if (def.policy === null || def.policySource !== this.ctx.policy) {
      def.policy = this.ctx.policy.forSql(def.definition.slice(0, def.sqlLength), this.scs);
      def.policySource = this.ctx.policy;
    }
    return def.policy;
  }

  /**
   * The statement a Parse defines. pgbench -M extended, JDBC and node-postgres send the same
   * Parse with every request: when the bytes equal the session's previous one, its statement
   * (with its memoised policy) is reused without decoding. recording: the log or the completion
   * records need the SQL as text.
   */
  statementFor(m: ParseMessage, recording: boolean): StatementDef {
    const from = m.start + m.bodyOffset;
    const len = m.end - from;
    const last = this.lastParse;
    if (last !== null && last.bytes.length === len && m.buf.compare(last.bytes, 0, len, from, m.end) === 0) return last.def;
    const def = new StatementDef(recording ? m.sql : null, m.definitionBytes(), m.sqlLength);
    this.lastParse = { bytes: Buffer.from(m.buf.subarray(from, m.end)), def };
    return def;
  }

  /** The cache request for a complete unit, or null when it is not a cacheable read. */
  request(u: Unit, parseDef: StatementDef | null): Request | null {
    let pol: StatementPolicy;
    let key: string;
    let description: string | null = null;
    let reads: readonly string[] | null;
    if (u.kind === 'Q') {
      pol = this.ctx.policy.forSql(u.sql, this.scs);
      if (!pol.cacheable || (reads = this.catalog.reads(pol)) === null) return null;
      key = this.keyPrefix() + 'Q' + u.sql;
    } else {
      if (u.volatileInput) return null;
      const def = parseDef ?? this.ledger.statement(u.bindStatement);
      if (def === null || def === undefined || def.forgotten) return null;
      pol = this.policyOf(def);
      if (!pol.cacheable || (reads = this.catalog.reads(pol)) === null) return null;
      if (parseDef === null) {
        // Parsed earlier: PostgreSQL answers 0A000 when its result type changed since, so it is
        // served only an answer of the description it was given (unknown until a Describe told
        // it): checked against the answer's RowDescription when the request describes its
        // portal, else part of the key.
        if (def.description === null) return null;
        description = def.description;
      }
      key = this.keyPrefix() + (u.hasDescribe ? 'D' : parseDef === null ? 'x' + def.description + '\0' : 'X') + def.definition + '\0' + u.paramsKey;
    }
    return {
      key,
      scope: this.scope,
      db: this.db,
      tables: reads,
      kind: u.kind as 'Q' | 'X',
      hasParse: u.hasParse,
      hasDescribe: u.hasDescribe,
      ttlMs: pol.ttlMs,
      description: u.hasDescribe ? description : null,
    };
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

  /** A Query goes upstream (sql: its bytes, latin1): what it may write and whether it taints. */
  query(sqlBytes: string): void {
    this.statement(this.ctx.policy.forSql(sqlBytes, this.scs));
  }

  /** An Execute of a portal of `def` goes upstream (null: a statement the ledger does not know). */
  execute(def: StatementDef | null): void {
    this.statement(def === null ? null : this.policyOf(def));
  }

  /** A FunctionCall goes upstream: it may write anything and change anything in the session. */
  functionCall(): void {
    this.statement(null);
  }

  /** No cache for the session from now on; its search order may have changed too. */
  private taint(): void {
    this.tainted = true;
    this.catalog.unidentified();
  }

  /** The session's settings, role or search order may have changed: ask it again. */
  private unidentify(): void {
    this.asked = false;
    this.identity = null;
    this.prefix = null;
    this.catalog.unidentified();
  }

  /** The open group is about to be sealed (its Query, Sync or FunctionCall goes upstream). */
  sealing(g: PendingGroup): void {
    if (this.pendingLead === null) return;
    g.lead = this.pendingLead;
    this.capturing = this.pendingLead;
    this.pendingLead = null;
  }

  /** A statement is being executed (policy null: unknown, may write anything). */
  private statement(pol: StatementPolicy | null): void {
    const g = this.ledger.openGroup();
    if (pol === null) {
      g.statements++;
      g.writes = null;
      this.taint();
      return;
    }
    g.statements += pol.cls.reason === 'multi-statement' ? 2 : 1;
    // Code pgscribe cannot see through (a volatile function, even one a domain check or a view
    // calls, DO, CALL) may change the session and write anything.
    if (this.catalog.changesSession(pol)) {
      this.taint();
      g.writes = null;
    }
    // SET, RESET: what the session said about itself may no longer hold; it is asked again
    // before its next cached read (only when idle: after this statement has run).
    if (pol.cls.changesSettings === true) {
      for (const n of pol.cls.customSettings ?? []) this.customNames.add(n);
      // Each name is asked for in every probe of the session: a client that sets hundreds of
      // them gets relayed rather than an ever longer probe.
      if (this.customNames.size > MAX_CUSTOM_SETTINGS) this.taint();
      else this.unidentify();
    }
    // DDL, and a configuration reload (it changes the settings of every open session): what was
    // cached may not be what PostgreSQL answers now, and the catalog is read again.
    if (pol.cls.reason === 'ddl' || reloadsConfiguration(pol)) {
      g.ddl = true;
      g.writes = null;
    }
    if (pol.dropsStatements) this.ledger.forgetStatements();
    if (pol.cls.writes) g.writes = addWrites(g.writes, this.catalog.writes(pol));
    const tx = pol.cls.txControl;
    if (tx === 'commit' || tx === 'prepare-transaction') g.txEnd = 'commit';
    else if (tx === 'rollback') g.txEnd = 'rollback';
  }

  // ---- server -> client ------------------------------------------------------------------------

  /**
   * ReadyForQuery ended group g (prev: the transaction status before it). Applies its writes and
   * returns its lead, if it led a flight.
   */
  readyForQuery(g: PendingGroup | undefined, prev: TxStatus, status: TxStatus): Lead | null {
    if (g === undefined) return null; // end of authentication
    if (g.writes !== undefined) this.txWrites = mergeWrites(this.txWrites, g.writes);
    if (g.ddl) this.txDdl = true;
    if (this.txWrites !== undefined) {
      const single = g.statements === 1;
      if (single && (g.txEnd === 'rollback' || (g.txEnd === 'commit' && prev === TxStatus.Failed))) {
        this.txWrites = undefined; // rolled back: nothing changed
        this.txDdl = false;
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
    if (this.txDdl) {
      this.txDdl = false;
      this.catalog.ddlCommitted();
    }
    if (w === undefined) return;
    if (this.ctx.layer.invalidate(this.db, w === null ? null : [...w], this.sharedDone)) this.sharing++;
    // wal mode: what the commit's triggers, cascades and functions wrote is known only from the
    // stream; the commit's ReadyForQuery waits until the stream has applied it (bounded).
    if (this.ctx.changes?.hold(this.db, this.sharedDone)) this.sharing++;
  }

  /**
   * The session is over; `unanswered` are its groups whose ReadyForQuery never came. Their writes
   * may have committed (a COMMIT in flight when the client vanished): invalidate them. Returns the
   * lead still capturing, if any.
   */
  close(unanswered: readonly PendingGroup[]): Lead | null {
    for (const g of unanswered) if (g.writes !== undefined) this.txWrites = mergeWrites(this.txWrites, g.writes);
    this.commit();
    const lead = this.capturing ?? this.pendingLead;
    this.capturing = this.pendingLead = null;
    this.onShared = null;
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

/** The statement calls pg_reload_conf(). */
function reloadsConfiguration(pol: StatementPolicy): boolean {
  for (const f of pol.facts.functions) if (f === 'pg_reload_conf' || f === 'pg_catalog.pg_reload_conf') return true;
  return false;
}
