/**
 * One session's side of the rate limits (rate-limiter.ts): every query (a simple Query, or an
 * Execute) takes a token from the session's bucket before it goes on. Without one:
 *
 * - it is delayed: the gate keeps a copy of it and the session reads and delivers nothing more
 *   from the client (the framer is held, the socket paused, Pause.RateLimit) until a timer of
 *   this session fires; then it goes on, and what followed it after. Queries stay in order, and
 *   the event loop never waits: other sessions are not slowed.
 * - when its token would come later than rate-limit-max-delay-ms, it waits that long (held as a
 *   delayed one is), then is refused with 53400 (configuration_limit_exceeded), and the session
 *   stays usable, as after any ERROR. Waiting first is PgBouncer's query_wait_timeout manner, and
 *   what keeps a flood cheap: a client that sends on regardless gets one refusal per bound per
 *   session, not one per round trip (an immediate refusal let 8 such sessions make pgscribe
 *   answer 6,000 refusals a second and halve another user's throughput: bench/rate-limits.ts).
 *   - a Query: a Sync goes upstream in its place, so that the server's ReadyForQuery answers it
 *     in order (after whatever the session had pipelined before it), just after the error;
 *   - an Execute: it is dropped, and so is every message after it up to the Sync, as PostgreSQL
 *     discards after an error; the Sync goes on, and the error reaches the client just before its
 *     ReadyForQuery. The messages before the Execute (Parse, Bind) did run.
 *   The refused query never reached PostgreSQL: its query log line is marked refused=rate-limit
 *   (it has no done line; the messages discarded after a refused Execute have no line), and an
 *   open transaction is not aborted by it (PostgreSQL would abort it).
 *
 * While the cache holds client messages of the session (a request unit being gathered, or
 * messages kept while it waits), a refusal could not be answered in order: such a query is
 * delayed by rate-limit-max-delay-ms instead and then goes on (counted as delayed).
 */
import { Frontend, SqlState } from '../protocol/codes';
import { ClientState } from '../client/states';
import { encodeErrorResponse, type ErrorFields } from '../protocol/messages';
import type { ClientMessage } from '../protocol/client-messages';
import type { LimitCounters } from './counters';
import type { RateLimiter, SessionRate } from './rate-limiter';

/** How a refused query's log line is marked. */
const REFUSED = { refused: 'rate-limit' } as const;

/** States in which the server reads a Query or Execute as a fault of the COPY (never as a query). */
const COPYING: ReadonlySet<ClientState> = new Set([ClientState.CopyIn, ClientState.CopyOut, ClientState.CopyBoth]);

/** Sync: what goes upstream in a refused Query's place. */
const SYNC = Buffer.from([Frontend.Sync, 0, 0, 0, 4]);

/** What the gate needs of its session (client/session.ts). */
export interface GatedSession {
  /** During COPY a Query or Execute is the client's mistake, which the server answers: not gated. */
  readonly state: ClientState;
  /** The client message goes on past the gate: the rest of client-request (cache, log, forward). */
  request(type: number, buf: Buffer, start: number, end: number): void;
  /** Stop (true) or resume (false) reading and delivering client messages. */
  holdForRate(on: boolean): void;
  /** Keep the books of a message going upstream and queue its bytes (Session.forward). */
  forward(type: number, buf: Buffer, start: number, end: number, msg: null, record: null, queryStart: number): void;
  flushToUpstream(): void;
  flushToClient(): void;
  /** Decode a whole client message (undefined: malformed, and the session is failed). */
  decode(type: number, buf: Buffer, start: number, end: number): ClientMessage | null | undefined;
  /** The query log's side of the session: a refused query still has its line. */
  readonly recorder: { readonly recording: boolean; record(msg: ClientMessage, ann: { refused: 'rate-limit' }): unknown };
  readonly ledger: {
    /** The server failed the group being built: it discards up to the Sync, queries included. */
    readonly discarding: boolean;
    openGroup(): { refusal: Buffer | null };
  };
}

/** The session's cache driver, when the cache is on (client/cache-driver.ts). */
interface CacheView {
  /** It holds client messages of the session (a unit being gathered, or kept while it waits): nothing may overtake them. */
  readonly holdsClient: boolean;
}

/** The gate of a session starting now, or null when no rate-limits rule matches it. */
export function gateFor(
  session: GatedSession,
  host: { readonly rateLimiter: RateLimiter | null; readonly counters: { readonly limits: LimitCounters } },
  who: { user: string; database: string; application: string },
  cache: CacheView | null,
): RateGate | null {
  const limiter = host.rateLimiter;
  const rate = limiter === null ? null : limiter.forSession(who.user, who.database, who.application);
  return rate === null ? null : new RateGate(session, rate, limiter!.maxDelayMs, host.counters.limits, cache, (rule) => limiter!.refused(rule, who));
}

/** The 53400 a refused query gets. */
export function rateLimited(rate: SessionRate, maxDelayMs: number): ErrorFields {
  return {
    severity: 'ERROR',
    code: SqlState.ConfigurationLimitExceeded,
    message: `pgscribe: rate limit exceeded: ${rate.rule} allows ${rate.qps} queries per second; this query would have waited more than ${maxDelayMs} ms (rate-limit-max-delay-ms)`,
  };
}

export class RateGate {
  /** The client message waiting for its token (or, refuse: for its refusal), copied (its socket chunk is not kept). */
  private held: { type: number; bytes: Buffer; since: number; refuse: boolean } | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** After a refused Execute: every message up to the Sync is dropped. */
  discarding = false;

  constructor(
    private readonly session: GatedSession,
    private readonly rate: SessionRate,
    private readonly maxDelayMs: number,
    private readonly counters: LimitCounters,
    private readonly cache: CacheView | null,
    /** Said when a query is refused (throttled by the caller). */
    private readonly onRefused: (rule: string) => void,
  ) {}

  /** A query waits for its token: nothing else of the client is delivered until it goes. */
  get holding(): boolean {
    return this.held !== null;
  }

  /**
   * A whole client message arrived: true when the gate took it (delayed, refused or discarded),
   * false when it goes on now.
   */
  takes(type: number, buf: Buffer, start: number, end: number): boolean {
    if (this.discarding) {
      if (type === Frontend.Sync) this.discarding = false;
      return type !== Frontend.Sync && type !== Frontend.Terminate;
    }
    // The server discards it anyway (a failed extended batch): it costs nothing.
    if ((type !== Frontend.Query && type !== Frontend.Execute) || this.session.ledger.discarding || COPYING.has(this.session.state)) return false;
    const now = performance.now();
    let waitMs = this.rate.take(now);
    if (waitMs === 0) return false;
    // Over the bound: refused once it has waited the bound, unless the cache holds messages of
    // the session that an answer could not overtake: then it goes on after the bound.
    const refuse = waitMs < 0 && (this.cache === null || !this.cache.holdsClient);
    if (waitMs < 0) waitMs = this.maxDelayMs;
    if (!refuse) this.counters.rateDelayed++;
    this.held = { type, bytes: Buffer.from(buf.subarray(start, end)), since: now, refuse };
    this.session.holdForRate(true);
    this.timer = setTimeout(this.fire, Math.ceil(waitMs));
    return true;
  }

  private refuse(type: number, buf: Buffer, start: number, end: number): void {
    const s = this.session;
    if (s.recorder.recording) {
      // Its query log line, marked refused=rate-limit (no done line follows: it never ran).
      const msg = s.decode(type, buf, start, end);
      if (msg === undefined) return; // malformed: the session is failed with 08P01
      if (msg !== null) s.recorder.record(msg, REFUSED);
    }
    this.counters.rateRefused++;
    this.onRefused(this.rate.rule);
    const error = encodeErrorResponse(rateLimited(this.rate, this.maxDelayMs));
    s.ledger.openGroup().refusal = error;
    if (type === Frontend.Query) s.forward(Frontend.Sync, SYNC, 0, SYNC.length, null, null, -1);
    else this.discarding = true;
  }

  /** The token is earned (or the bound is over: the query is refused); then what the client sent after it goes on. */
  private readonly fire = (): void => {
    this.timer = null;
    const h = this.held;
    if (h === null) return;
    this.held = null;
    const s = this.session;
    if (h.refuse) this.refuse(h.type, h.bytes, 0, h.bytes.length);
    else {
      this.counters.rateDelayMs += performance.now() - h.since;
      s.request(h.type, h.bytes, 0, h.bytes.length);
    }
    s.holdForRate(false);
    s.flushToUpstream();
    s.flushToClient();
  };

  /** The session ended: the waiting query is dropped with it. */
  close(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.held = null;
    this.rate.release();
  }
}
