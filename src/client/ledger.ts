/**
 * The session as PostgreSQL holds it, kept from the messages the client sent and the server's
 * answers: prepared statements, portals, and the request groups still waiting for their
 * ReadyForQuery. The query log, the completion tracker and the cache all read this one ledger;
 * none keeps a copy that could drift from it.
 *
 * - Statements: what the server has, as of the messages sent so far. A Parse that failed is
 *   undone at its group's ReadyForQuery as PostgreSQL undoes it: a failed unnamed Parse leaves no
 *   unnamed statement, a failed named one leaves the earlier statement of that name.
 * - The unnamed statement as the client believes it, where that differs: a request the cache
 *   answered never reached the server, so the server still has the previous unnamed statement.
 *   Before the next message that uses it goes upstream, repairUnnamed() makes the server agree
 *   (an injected Parse, or a Close), and the ledger swallows the completion of what it injected.
 * - Portals: bound by Binds sent so far, gone at Close and at the end of the transaction.
 * - Groups: the messages sent up to and including one Query, Sync or FunctionCall, each answered
 *   by one ReadyForQuery. A group carries what each part needs to know at that ReadyForQuery:
 *   the completions it awaits, the queries whose answers end in it, the writes it committed.
 *
 * @see https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY
 */
import { Backend, Frontend, TxStatus } from '../protocol/codes';
import { Fifo } from '../fifo';
import { encodeMessage, rowShape } from '../protocol/messages';
import type { CacheOutcome, FlightRole } from '../log/format';
import type { StatementPolicy } from '../cache/policy';
import type { Lead } from '../cache/lead';
import type { ResponseCapture } from '../cache/response';

/** A prepared statement. */
export class StatementDef {
  /** The SQL as text, for the log and the completion records; null when nothing records. */
  readonly sql: string | null;
  /** The definition (SQL, NUL, parameter types) as bytes, one char per byte: its identity in cache keys ('' without the cache). */
  readonly definition: string;
  /** Length of the SQL at the start of the definition. */
  readonly sqlLength: number;
  /** The cache's verdict on the SQL, worked out once per statement (and again after a reload changed the rules). */
  policy: StatementPolicy | null = null;
  /** The CachePolicy that gave `policy`: a reload replaces it (src/reload.ts). */
  policySource: object | null = null;
  /**
   * The result description PostgreSQL gave for it (rowShape() of the RowDescription: the
   * formats, which a portal chooses, left out; or 'n' for NoData), null until a Describe of it (or of a portal of it) was answered. It is fixed at
   * Parse: a statement whose result type changed since fails with 0A000, so the cache keys its
   * answers by it.
   */
  description: string | null = null;
  /**
   * The session kept more statement text than MAX_RETAINED_STATEMENT_CHARS when this one was
   * parsed: its text is not kept (sql null, no definition). Its Bind and Execute lines say
   * `sql=?` (its P line has the text), and the cache treats it as a statement it does not know.
   */
  readonly forgotten: boolean;

  constructor(sql: string | null, definition: string, sqlLength: number, forgotten = false) {
    this.sql = sql;
    this.definition = definition;
    this.sqlLength = sqlLength;
    this.forgotten = forgotten;
  }

  /** Characters of text it keeps alive. */
  get retainedChars(): number {
    return (this.sql === null ? 0 : this.sql.length) + this.definition.length;
  }
}

/**
 * Statement text one session's ledger keeps, at most (SQL and definitions, in characters). A
 * client can prepare statements without end; PostgreSQL keeps them in its own backend, but
 * pgscribe serves many sessions in one process, so each gets a bound: 150 named statements of 1 MiB
 * held 210 MB before. Past it, new statements are kept without their text (forgotten).
 */
export const MAX_RETAINED_STATEMENT_CHARS = 16 * 2 ** 20;

/** A portal: the statement it was bound to (def null: a statement the ledger does not know). */
export interface Portal {
  readonly statement: string;
  readonly def: StatementDef | null;
}

/** A query (Q or E) whose answer a group carries, as the completion tracker follows it. */
export interface PendingQuery {
  readonly of: 'Q' | 'E';
  readonly seq: number;
  readonly sql: string | null;
  /** performance.now() when it arrived (or was decided on by the cache). */
  readonly start: number;
  rows: number;
  sqlstate: string | null;
  readonly cache: CacheOutcome | undefined;
  readonly flight: FlightRole | undefined;
}

/** Writes of a group: relation names, null for "anything", undefined for none. */
export type Writes = Set<string> | null | undefined;

/**
 * What the server owes for a message of the group: a ParseComplete, a CloseComplete, or the
 * answer to a Describe (ParameterDescription and RowDescription/NoData for a statement,
 * RowDescription/NoData for a portal). Answers to other messages are not followed.
 */
interface Awaited {
  readonly completion: typeof Backend.ParseComplete | typeof Backend.CloseComplete | typeof Backend.RowDescription;
  /** Sent by the proxy (repairUnnamed): its completion is not relayed. */
  readonly injected: boolean;
  readonly name: string;
  readonly def: StatementDef | null;
  /** For a Parse of a named statement: the statement of that name before it, restored if it fails. */
  readonly prev: StatementDef | undefined;
  /** For a Describe of a statement: its ParameterDescription is still to come. */
  parameters: boolean;
  ok: boolean;
}

/**
 * A request pgscribe sends in the client's own session for itself (the cache's probe of the
 * session's settings): its whole answer, up to its ReadyForQuery, goes to `done`, never to the
 * client.
 */
export interface SideRequest {
  /** Where the answer's bytes go as they arrive. */
  readonly capture: ResponseCapture;
  /** The answer is complete (the capture's bytes), or null: the session closed first. */
  done(answer: Buffer | null): void;
}

/** Messages sent upstream up to and including one Query, Sync or FunctionCall. */
export class PendingGroup {
  /** The completions the group's Parses and Closes are owed (null: none; most groups of a simple Query). */
  awaiting: Awaited[] | null = null;
  /** Index of the next completion expected in `awaiting`. */
  next = 0;
  /** Queries answered within this group, in order (completion tracking; null when off). */
  queries: PendingQuery[] | null = null;
  /** Index of the first query not yet ended. */
  queryHead = 0;
  /** What the group's statements may write (the cache's invalidation). */
  writes: Writes = undefined;
  /** Statements the group runs (2 for "several"): a COMMIT alone in its group is told apart. */
  statements = 0;
  /**
   * The server answered a message of the group with an ErrorResponse: PostgreSQL now reads and
   * discards every message up to the Sync, answering none (protocol-flow, "extended query"). The
   * rest of the group is not followed message by message, so a client that pipelines without Sync
   * after an error costs nothing per message here.
   */
  failed = false;
  /** The group's transaction-ending statement, if it had one. */
  txEnd: 'commit' | 'rollback' | null = null;
  /** The cache flight whose answer this group carries, if it leads one. */
  lead: Lead | null = null;
  /** pgscribe's own request: nothing of its answer is the client's. */
  side: SideRequest | null = null;
  /** The group ran DDL: what the catalog says may have changed. */
  ddl = false;
  /**
   * pgscribe refused one of the group's queries itself (a rate limit, src/limits/rate-gate.ts):
   * this ErrorResponse reaches the client just before the group's ReadyForQuery.
   */
  refusal: Buffer | null = null;
}

/** Close of the unnamed statement, injected when the client believes it gone (by a Query the cache answered). */
const CLOSE_UNNAMED = Buffer.from([Frontend.Close, 0, 0, 0, 6, 0x53, 0]);

export class SessionLedger {
  /** Statements the server has ('' is the unnamed one), as of the messages sent so far. */
  private readonly statements = new Map<string, StatementDef>();
  /** Characters of text the statements map keeps alive (see MAX_RETAINED_STATEMENT_CHARS). */
  private retained = 0;
  /** The unnamed statement as the client believes it, where that differs: a def, null (none), undefined (same as the server). */
  private unnamedClient: StatementDef | null | undefined = undefined;
  /**
   * Named portals. The unnamed one, which nearly every Bind names, is a field of its own: a Map
   * set, get and clear per transaction cost more than the rest of its bookkeeping (issue 21).
   */
  private readonly portals = new Map<string, Portal>();
  private unnamedPortal: Portal | undefined = undefined;
  private readonly groups = new Fifo<PendingGroup>();
  private open: PendingGroup | null = null;
  /** A completion arrived that no message asked for: the ledger no longer knows the server's statements. */
  lost = false;
  /** Groups of pgscribe's own requests (sendSide) sent and not yet ended by their ReadyForQuery. */
  private sidesPending = 0;

  // ---- reading ---------------------------------------------------------------------------------

  /** The statement a Bind of `name` runs, as the client believes it (undefined: none the ledger knows). */
  statement(name: string): StatementDef | null | undefined {
    if (name === '' && this.unnamedClient !== undefined) return this.unnamedClient;
    return this.statements.get(name);
  }

  portal(name: string): Portal | undefined {
    return name === '' ? this.unnamedPortal : this.portals.get(name);
  }

  /** Groups sent and not yet answered by their ReadyForQuery. */
  get pendingGroups(): number {
    return this.groups.size;
  }

  /** The group the server is answering now: the oldest sent one, else the one being built. */
  get head(): PendingGroup | null {
    return this.groups.size > 0 ? this.groups.at(0)! : this.open;
  }

  /** pgscribe's own request the server is answering now, if it is one. */
  get side(): SideRequest | null {
    // Asked at every message and read; only the cache's sessions ever send one (issue 21).
    if (this.sidesPending === 0) return null;
    const g = this.head;
    return g === null ? null : g.side;
  }

  /**
   * Send pgscribe's own request (a batch ending in Sync, at a moment when nothing is pending):
   * a group of its own, whose answer is not the client's.
   */
  sendSide(side: SideRequest): void {
    const g = this.openGroup();
    g.side = side;
    this.sidesPending++;
    this.seal();
  }

  /**
   * The group being built is one the server already failed (the error came before its Sync): the
   * messages still added to it are read and discarded by PostgreSQL, unanswered, so they change
   * nothing the ledger keeps. Books.sent() skips them instead of recording what will never be.
   */
  get discarding(): boolean {
    return this.open !== null && this.open.failed;
  }

  /**
   * An ErrorResponse arrived: the group the server is answering is failed from here to its Sync
   * (for a Query's group it ends there anyway). Returns that group.
   */
  serverError(): PendingGroup | null {
    const g = this.head;
    if (g !== null && g.side === null) g.failed = true;
    return g;
  }

  /**
   * The ErrorResponse pgscribe owes the client before the oldest sent group's ReadyForQuery, or
   * null. None when the server failed the group: it discarded the refused query's place anyway,
   * and said so once. (A group still being built owes nothing yet: the ReadyForQuery that ends
   * authentication is not its.)
   */
  get refusal(): Buffer | null {
    const g = this.groups.size > 0 ? this.groups.at(0)! : null;
    return g === null || g.failed ? null : g.refusal;
  }

  /** The group being built (created on first use). */
  openGroup(): PendingGroup {
    return (this.open ??= new PendingGroup());
  }

  // ---- messages going upstream, in order ------------------------------------------------------

  /**
   * A Query goes upstream: it destroys the unnamed statement, here and in the client's mind, and
   * the unnamed portal (PostgreSQL runs the Query in an unnamed portal of its own, which replaces
   * it, inside a transaction block too), and ends a group.
   */
  query(): void {
    this.dropStatement('');
    this.unnamedClient = undefined;
    this.unnamedPortal = undefined;
    this.seal();
  }

  private setStatement(name: string, def: StatementDef): void {
    const old = this.statements.get(name);
    if (old !== undefined) this.retained -= old.retainedChars;
    this.statements.set(name, def);
    this.retained += def.retainedChars;
  }

  private dropStatement(name: string): void {
    const old = this.statements.get(name);
    if (old === undefined) return;
    this.retained -= old.retainedChars;
    this.statements.delete(name);
  }

  /** Characters of statement text kept for the session (tests and bounds). */
  get retainedChars(): number {
    return this.retained;
  }

  /** A Parse of `name` goes upstream (injected: sent by the proxy to repair the unnamed statement). */
  parse(name: string, given: StatementDef, injected = false): void {
    const prev = this.statements.get(name);
    const room = MAX_RETAINED_STATEMENT_CHARS - this.retained + (prev === undefined ? 0 : prev.retainedChars);
    const def = given.retainedChars <= room ? given : new StatementDef(null, '', given.sqlLength, true);
    this.setStatement(name, def);
    if (name === '') this.unnamedClient = undefined;
    const g = this.openGroup();
    (g.awaiting ??= []).push({ completion: Backend.ParseComplete, injected, name, def, prev: name === '' ? undefined : prev, parameters: false, ok: false });
  }

  bind(portal: string, statement: string): void {
    // A forgotten statement's portal is one of a statement the ledger does not know.
    const def = this.statements.get(statement);
    const p: Portal = { statement, def: def === undefined || def.forgotten ? null : def };
    if (portal === '') this.unnamedPortal = p;
    else this.portals.set(portal, p);
  }

  close(kind: 'S' | 'P', name: string, injected = false): void {
    if (kind === 'S') {
      this.dropStatement(name);
      if (name === '') this.unnamedClient = undefined;
    } else if (name === '') this.unnamedPortal = undefined;
    else this.portals.delete(name);
    const g = this.openGroup();
    (g.awaiting ??= []).push({ completion: Backend.CloseComplete, injected, name, def: null, prev: undefined, parameters: false, ok: false });
  }

  /**
   * A Describe goes upstream (only followed when its answer is looked at: the cache's sessions).
   * Its RowDescription becomes the description of the statement it is about.
   */
  describe(kind: 'S' | 'P', name: string, injected = false): void {
    const def = kind === 'S' ? (this.statements.get(name) ?? null) : (this.portal(name)?.def ?? null);
    const g = this.openGroup();
    (g.awaiting ??= []).push({ completion: Backend.RowDescription, injected, name, def, prev: undefined, parameters: kind === 'S', ok: false });
  }

  /**
   * After a named Parse goes upstream (only with the cache, which follows Describe answers): a
   * Describe of it that the proxy sends for itself, so that the statement's description as of its
   * Parse is known before its first execution. Its answer is not relayed.
   */
  describeParsed(name: string): Buffer {
    this.describe('S', name, true);
    return encodeMessage(Frontend.Describe, Buffer.from(`S${name}\0`, 'utf8'));
  }

  /** A Sync or FunctionCall goes upstream: it ends a group. */
  seal(): void {
    const g = this.openGroup();
    this.open = null;
    this.groups.push(g);
  }

  /** A statement that may deallocate prepared statements ran: the ledger no longer knows which exist. */
  forgetStatements(): void {
    this.statements.clear();
    this.retained = 0;
  }

  /**
   * Before a message that uses the unnamed statement goes upstream: the message that makes the
   * server's unnamed statement what the client believes, or null when they agree.
   */
  repairUnnamed(): Buffer | null {
    const want = this.unnamedClient;
    if (want === undefined) return null;
    if (want === null) {
      this.close('S', '', true);
      return CLOSE_UNNAMED;
    }
    this.parse('', want, true);
    // The unnamed statement's name (empty), then the definition as the client sent it.
    return encodeMessage(Frontend.Parse, Buffer.concat([Buffer.from([0]), Buffer.from(want.definition, 'latin1')]));
  }

  // ---- requests answered without the server ----------------------------------------------------

  /**
   * A request answered by the proxy (from the cache, or another client's flight): a Query leaves
   * the client believing there is no unnamed statement, an unnamed Parse that it is `def`.
   */
  answeredLocally(def: StatementDef | null): void {
    this.unnamedClient = def;
  }

  /**
   * The unnamed statement the client believes in, when the server does not have it and its
   * result description is known: before a request uses it, the cache checks that parsing it
   * again gives that description (PostgreSQL answers 0A000 for a statement whose result type
   * changed since its Parse). Null: nothing to check.
   */
  unnamedToCheck(): StatementDef | null {
    const want = this.unnamedClient;
    return want === undefined || want === null || want.description === null ? null : want;
  }

  /**
   * The cache's check parsed the believed unnamed statement on the server (in a request of its
   * own): with the same description (same: the server has it now, nothing left to repair), or
   * another (the server has another statement under the name; the client's still fails).
   */
  unnamedChecked(def: StatementDef, same: boolean): void {
    if (same) {
      this.setStatement('', def);
      this.unnamedClient = undefined;
    } else this.dropStatement('');
  }

  // ---- the server's answers --------------------------------------------------------------------

  /**
   * ParseComplete or CloseComplete arrived. False when it answers a message the proxy injected
   * (the client must not see it).
   */
  completion(type: number): boolean {
    const g = this.head;
    const a = g === null || g.awaiting === null ? undefined : g.awaiting[g.next];
    if (g === null || a === undefined || a.completion !== type) {
      this.lost = true;
      return true;
    }
    g.next++;
    a.ok = true;
    return !a.injected;
  }

  /**
   * ParameterDescription, RowDescription or NoData arrived: when it answers a Describe the ledger
   * follows, the statement learns its description (buf[start, end): the whole message). A
   * RowDescription that answers a Query is not one. False when it answers the proxy's own
   * Describe (describeParsed): the client must not see it.
   */
  described(type: number, buf: Buffer, start: number, end: number): boolean {
    const g = this.head;
    const a = g === null || g.awaiting === null ? undefined : g.awaiting[g.next];
    if (g === null || a === undefined || a.completion !== Backend.RowDescription) return true;
    if (type === Backend.ParameterDescription) {
      if (a.parameters) a.parameters = false;
      else this.lost = true;
      return !a.injected;
    }
    g.next++;
    a.ok = true;
    if (a.def !== null && a.def.description === null) a.def.description = type === Backend.NoData ? 'n' : rowShape(buf, start, end);
    return !a.injected;
  }

  /**
   * ReadyForQuery ended the oldest group: undo its failed Parses, drop the portals of a finished
   * transaction, and return the group (undefined: the ReadyForQuery that ends authentication).
   */
  readyForQuery(status: TxStatus): PendingGroup | undefined {
    const g = this.groups.shift();
    if (g !== undefined && g.side !== null) this.sidesPending--;
    if (g !== undefined && g.awaiting !== null) {
      for (const a of g.awaiting) {
        if (a.completion !== Backend.ParseComplete || a.ok || this.statements.get(a.name) !== a.def) continue;
        if (a.prev !== undefined) this.setStatement(a.name, a.prev);
        else this.dropStatement(a.name);
      }
    }
    if (status === TxStatus.Idle) {
      this.unnamedPortal = undefined;
      if (this.portals.size > 0) this.portals.clear();
    }
    return g;
  }

  /** The session is over: every group sent or being built, oldest first (their answers will never come). */
  drain(): PendingGroup[] {
    const all = this.groups.drain();
    if (this.open !== null) all.push(this.open);
    this.open = null;
    this.sidesPending = 0;
    return all;
  }
}
