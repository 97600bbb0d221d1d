/**
 * Several upstream nodes (--upstream A,B,...): each is checked every health-interval-ms
 * (health-check.ts), and the primary listener's sessions go to the one node that is up and not
 * in recovery. pgscribe never promotes anything: it follows what the nodes say.
 *
 * - A node is down after health-failures failed checks in a row, up again at the first good one.
 * - The primary is the node that is up, not in recovery, and whose last check passed. While its
 *   last check failed (it may be going away), while no node is primary (a failover in progress)
 *   and while two nodes claim to be (an old primary back without standby.signal), there is none:
 *   new sessions wait for one (whenTarget), never guess.
 * - A node that was primary and is now in recovery (a switchover) is `demoted`: its sessions
 *   would fail at their next write with 25006, so the owner closes them.
 * - Every change of a node's state, and of the primary, is one operational line.
 * - With a read-only listener (--listen-replicas), pickStandby() gives the healthy standby within
 *   the lag bound that holds the fewest sessions; replay-lag.ts says how a standby's lag is known.
 *
 * Without credentials (no catalog-user, `rolesFromSessions`) a check is a startup only
 * (startup-probe.ts): it says whether a node takes sessions, not its role. The role then comes
 * from the sessions, as libpq's target_session_attrs=read-write finds it: PostgreSQL 14 and later
 * report in_hot_standby at the start of every session (sawPrimary, sawInRecovery). While no node
 * is known to be primary, new sessions try one (`target`): the last primary, else the first node
 * in list order whose role is unknown. A session that reaches a standby is closed before it can
 * send anything (client/standby-guard.ts) and the next one tries the next node. What a node said
 * through a session lasts until it fails a check for good (down: it may come back in any role);
 * a standby's word, while no primary is known, lasts what a check's would then: a second at most
 * (it may be promoted). Meanwhile a node tried gets one session at a time (route()).
 */
import { formatHostPort as nodeName, type HostPort } from '../config';
import type { OpsLog } from '../log/ops';
import type { NodeReport } from './health-check';
import { NodeState, type HealthOptions, type NodeCheck, type NodeView, type RoleSource, type UpstreamEvents } from './node-state';
import { PrimaryWalHistory } from './replay-lag';

export type { HealthOptions, NodeCheck, NodeRole, NodeView, RoleSource, UpstreamEvents } from './node-state';

/** While no node is primary, every node is checked at least this often. */
const NO_PRIMARY_RECHECK_MS = 1000;
/** suspect() checks a node only when its last check ended at least this long ago. */
const SUSPECT_SPACING_MS = 250;

export class UpstreamSet {
  private nodes: NodeState[];
  private current: NodeState | null = null;
  /** Without credentials, while no node is known to be primary: the node new sessions try. */
  private candidate: NodeState | null = null;
  /** The last node chosen as primary (kept through gaps without one). */
  private last: NodeState | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private waiters: { resolve: (p: HostPort | null) => void; timer: NodeJS.Timeout; session: boolean }[] = [];
  /**
   * Without credentials: the candidate a session is trying now, until when. Other sessions wait
   * for what it finds (a standby would close them all), one at a time after health-timeout-ms.
   */
  private trial: { node: NodeState; timer: NodeJS.Timeout } | null = null;
  /** Sessions waiting for every node's first check (read-only listener). */
  private checkedWaiters: (() => void)[] = [];
  /** Where the next tie among equally loaded standbys starts (round robin). */
  private nextTie = 0;
  /** The current primary's WAL position at its recent checks: what standbys' lags are measured against. */
  private readonly primaryWal = new PrimaryWalHistory();
  /** The nodes that claimed primary together last time (said once per episode). */
  private splitBrain = '';

  constructor(
    addresses: readonly HostPort[],
    private opts: HealthOptions,
    private readonly check: NodeCheck,
    private readonly ops: OpsLog,
    private readonly events: UpstreamEvents,
  ) {
    this.nodes = addresses.map((a) => new NodeState(a));
  }

  /**
   * Check every node now, then every intervalMs; while there is no primary, every second at
   * least (sessions are waiting, and a failover should not wait a long interval to be seen).
   */
  start(): void {
    this.checkAll();
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    const wait = this.current === null ? Math.min(this.opts.intervalMs, NO_PRIMARY_RECHECK_MS) : this.opts.intervalMs;
    this.timer = setTimeout(() => {
      this.checkAll();
      this.schedule();
    }, wait);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.resolve(null);
    }
    this.waiters = [];
    this.endTrial();
    this.releaseCheckedWaiters();
  }

  /**
   * What the read-only listener needs to choose: every node checked (or failed) once, and, while
   * there is a primary, every live standby's lag measured against its WAL position.
   */
  private get standbysKnown(): boolean {
    if (this.nodes.some((n) => n.checkedAt === 0)) return false;
    // A standby whose last check failed is no candidate anyway: it does not hold the others up.
    return this.current === null || this.nodes.every((n) => !n.up || n.role !== 'standby' || n.failures > 0 || n.lagMeasured);
  }

  /** Resolves once the standbys are known (standbysKnown), or after timeoutMs. */
  whenChecked(timeoutMs: number): Promise<void> {
    if (this.standbysKnown || this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.checkedWaiters = this.checkedWaiters.filter((w) => w !== done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.checkedWaiters.push(done);
    });
  }

  private releaseCheckedWaiters(): void {
    for (const done of [...this.checkedWaiters]) done();
  }

  private isReadOnlyCandidate(n: NodeState): boolean {
    const bound = this.opts.maxReplicaLagMs;
    return bound !== null && bound !== undefined && n.up && n.role === 'standby' && n.failures === 0 && n.replayLagMs !== null && n.replayLagMs <= bound;
  }

  /**
   * The standby a new read-only session goes to: among those up, last checked fine and within
   * the lag bound, the one with the fewest sessions (`sessions`, by node name); ties take turns.
   * Null when none qualifies.
   */
  pickStandby(sessions: ReadonlyMap<string, number>): HostPort | null {
    let least: NodeState[] = [];
    let leastLoad = Infinity;
    for (const n of this.nodes) {
      if (!this.isReadOnlyCandidate(n)) continue;
      const load = sessions.get(n.name) ?? 0;
      if (load < leastLoad) {
        least = [n];
        leastLoad = load;
      } else if (load === leastLoad) least.push(n);
    }
    if (least.length === 0) return null;
    this.nextTie = (this.nextTie + 1) % 0x4000_0000;
    return least[this.nextTie % least.length]!.address;
  }

  /** The node known to be primary now, or null (none is, or two claim to be). */
  get primary(): HostPort | null {
    return this.current?.address ?? null;
  }

  /**
   * Where new sessions of the primary listener go: the primary or, without credentials while none
   * is known, the node to try (file comment). Null: none.
   */
  get target(): HostPort | null {
    return (this.current ?? this.candidate)?.address ?? null;
  }

  /**
   * Where a new session goes now: the primary; or, while a node is being tried, the first
   * session goes there (a trial) and the next ones wait for what it finds (null).
   */
  route(): HostPort | null {
    if (this.current !== null) return this.current.address;
    const c = this.candidate;
    if (c === null || (this.trial !== null && this.trial.node === c)) return null;
    this.endTrial();
    // One session tries it; if nothing is learned within health-timeout-ms (its login failed,
    // say), the next waiting one tries.
    const timer = setTimeout(() => {
      this.trial = null;
      this.releaseOne();
    }, this.opts.timeoutMs);
    timer.unref();
    this.trial = { node: c, timer };
    return c.address;
  }

  /**
   * A session's startup on `node` ended (ReadyForQuery). A node tried that said nothing of its
   * role (PostgreSQL 13 and older report no in_hot_standby) is not tried one session at a time:
   * the waiting sessions go there too.
   */
  startupDone(node: HostPort): void {
    const t = this.trial;
    if (t === null || t.node !== this.find(node) || t.node !== this.candidate) return;
    this.endTrial();
    this.releaseWaiters(t.node.address);
  }

  private endTrial(): void {
    if (this.trial === null) return;
    clearTimeout(this.trial.timer);
    this.trial = null;
  }

  /** A node is being tried: the sessions waiting for it go one at a time (route()); others at once. */
  private releaseOne(): void {
    if (this.current !== null || this.candidate === null) return;
    const others = this.waiters.filter((w) => !w.session);
    for (const w of others) {
      clearTimeout(w.timer);
      w.resolve(this.candidate.address);
    }
    this.waiters = this.waiters.filter((w) => w.session);
    if (this.waiters.length === 0) return;
    const node = this.route();
    if (node === null) return;
    const w = this.waiters.shift()!;
    clearTimeout(w.timer);
    w.resolve(node);
  }

  /** The last node chosen as primary (also during a gap without one); null before the first choice. */
  get lastPrimary(): HostPort | null {
    return this.last?.address ?? null;
  }

  /**
   * Where a new session goes (route()), at once or as soon as there is a node; null after
   * timeoutMs without one. forSession false: the target, without trying anything (start-up).
   */
  whenTarget(timeoutMs: number, forSession = true): Promise<HostPort | null> {
    const now = forSession ? this.route() : this.target;
    if (now !== null) return Promise.resolve(now);
    return new Promise((resolve) => {
      const w = {
        resolve,
        session: forSession,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          resolve(null);
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  /** A session could not connect to `node`: check it now rather than at the next interval. */
  suspect(node: HostPort): void {
    const n = this.find(node);
    // Many sessions failing at once (a full backlog) are one suspicion, not as many checks:
    // health-failures counts checks at least SUSPECT_SPACING_MS apart.
    if (n !== undefined && Date.now() - n.checkedAt >= SUSPECT_SPACING_MS) void this.checkOne(n);
  }

  /**
   * A reload (SIGHUP) changed the node list or the health settings. Nodes still listed keep
   * their state; new ones are checked at once (the primary is not chosen again until each has
   * answered); a dropped node gets no new session, and its sessions stay until they end. A
   * dropped primary leaves new sessions waiting for the next one.
   */
  reconfigure(addresses: readonly HostPort[], opts: HealthOptions): void {
    this.opts = opts;
    const kept = new Map(this.nodes.map((n) => [n.name, n]));
    this.nodes = addresses.map((a) => kept.get(nodeName(a)) ?? new NodeState(a));
    for (const gone of kept.values()) {
      if (this.nodes.includes(gone)) continue;
      this.ops.info('upstream node removed by a reload: no new session goes to it; its sessions stay until they end', { node: gone.name });
      if (gone === this.current) this.current = null;
      if (gone === this.last) this.last = null;
    }
    if (this.current === null) this.ops.warn('no upstream primary: new sessions wait for one (primary-wait-ms), then get 08001', { nodes: this.describe() });
    this.chooseCandidate();
    if (this.timer !== null && !this.stopped) {
      clearTimeout(this.timer);
      this.schedule();
    }
    this.checkAll();
  }

  /** Every node and its state, for an operator: `a:5432 primary, b:5432 down (connection refused)`. */
  describe(withErrors = true): string {
    return this.nodes.map((n) => `${n.name} ${n.state}${withErrors && !n.up && n.lastError !== null ? ` (${n.lastError})` : ''}`).join(', ');
  }

  /** Each node's state; sessions: the client sessions on each node, by name. */
  views(sessions?: ReadonlyMap<string, number>): NodeView[] {
    return this.nodes.map((n) => ({
      node: n.name,
      state: n.state,
      primary: n === this.current,
      failures: n.failures,
      lastError: n.lastError,
      checkedAt: n.checkedAt === 0 ? null : new Date(n.checkedAt).toISOString(),
      replayLsn: n.replayLsn,
      replayLagMs: n.replayLagMs,
      readOnlyCandidate: this.isReadOnlyCandidate(n),
      sessions: sessions?.get(n.name) ?? 0,
      roleFrom: n.up ? n.roleFrom : null,
      tried: n === this.candidate,
    }));
  }

  /** Check every node now (each at most once at a time). */
  checkAll(): void {
    for (const n of this.nodes) void this.checkOne(n);
  }

  private async checkOne(n: NodeState): Promise<void> {
    if (n.checking || this.stopped) return;
    n.checking = true;
    const epoch = n.epoch;
    let report: NodeReport | null = null;
    let error = '';
    const began = Date.now();
    try {
      report = await this.check(n.address, this.opts.timeoutMs);
    } catch (err) {
      error = (err as Error).message;
    }
    n.checking = false;
    if (this.stopped) return;
    // A session saw the node in recovery while this check ran: the check may predate that.
    if (n.epoch !== epoch) {
      void this.checkOne(n);
      return;
    }
    this.apply(n, report, error, began);
  }

  /**
   * A session found `node` in recovery (PostgreSQL's in_hot_standby at its start): as good as a
   * check that says so. No new session goes there from now on; the node is checked again too.
   */
  sawInRecovery(node: HostPort): void {
    const n = this.find(node);
    if (n === undefined || this.stopped) return;
    n.epoch++;
    this.apply(n, { inRecovery: true, replayLsn: n.replayLsn, replayLagMs: n.replayLagMs, walLsn: null }, '', 0, 'session');
    void this.checkOne(n);
  }

  /**
   * A session of the primary listener found `node` out of recovery (in_hot_standby = off at its
   * start). Without credentials that is how a primary becomes known; with them the checks say.
   */
  sawPrimary(node: HostPort): void {
    const n = this.find(node);
    if (n === undefined || this.stopped || !this.opts.rolesFromSessions || (n.role === 'primary' && n.up)) return;
    n.epoch++;
    this.apply(n, { inRecovery: false, replayLsn: null, replayLagMs: null, walLsn: null }, '', 0, 'session');
  }

  /**
   * A session could not connect to `node`: as a failed check (no new session goes there until a
   * check passes). Sessions failing together count once per SUSPECT_SPACING_MS.
   */
  unreachable(node: HostPort, reason: string): void {
    const n = this.find(node);
    if (n === undefined || this.stopped) return;
    if (n.failures > 0 && Date.now() - n.checkedAt < SUSPECT_SPACING_MS) return;
    n.epoch++;
    this.apply(n, null, reason);
  }

  private find(node: HostPort): NodeState | undefined {
    return this.nodes.find((x) => x.address.host === node.host && x.address.port === node.port);
  }

  /** What a check (report, or the error of a failed one) says of a node, and what follows. */
  private apply(n: NodeState, report: NodeReport | null, error: string, began = 0, by: RoleSource = 'check'): void {
    n.checkedAt = Date.now();
    const before = n.state;
    const wasPrimary = n.role === 'primary';
    if (report !== null) {
      if (!n.up && this.opts.rolesFromSessions) this.forgetRole(n); // back from down: any role
      n.up = true;
      n.failures = 0;
      n.lastError = null;
      if (report.inRecovery !== null) {
        n.role = report.inRecovery ? 'standby' : 'primary';
        n.roleFrom = by;
        n.roleAt = n.checkedAt;
      }
      n.replayLsn = report.replayLsn;
      n.timeline = report.timeline ?? null;
      n.replayLagMs = report.inRecovery ? this.standbyLag(report, n.checkedAt) : null;
      n.lagMeasured = report.inRecovery === true && !this.primaryWal.empty;
      n.lastWal = report.walLsn ? { lsn: report.walLsn, began } : null;
    } else {
      n.failures++;
      n.lastError = error;
      if (n.up && n.failures >= this.opts.failures) n.up = false;
      // Down, a node may come back in any role; a probe cannot tell which (file comment).
      if (!n.up && this.opts.rolesFromSessions) this.forgetRole(n);
    }
    if (n.state !== before) {
      const line = { node: n.name, from: before, to: n.state, failures: n.failures || undefined, error: n.lastError ?? undefined, said_by: n.up && n.roleFrom === 'session' ? 'a session (in_hot_standby)' : undefined };
      if (n.state === 'down') this.ops.warn('upstream node is down: no session goes to it until a health check passes again', line);
      else this.ops.info('upstream node state changed', line);
    }
    this.choosePrimary(n);
    this.chooseCandidate();
    if (wasPrimary && report !== null && n.role === 'standby') this.events.demoted(n.address, this.primary);
    if (n === this.current && report?.walLsn) this.recordPrimaryWal(report.walLsn, began);
    else if (report === null) n.lastWal = null;
    this.sayLagChange(n);
    if (this.checkedWaiters.length > 0 && this.standbysKnown) this.releaseCheckedWaiters();
  }

  /**
   * A standby's lag behind the current primary (replay-lag.ts). Its WAL positions are comparable
   * with the primary's only while it streams on the primary's timeline: one left on an old
   * timeline after a failover (ahead of the promoted node, and diverged from it) has no lag that
   * means anything (null: no read-only session), and one that streams from nobody is judged by
   * the time since the last transaction it replayed alone.
   */
  private standbyLag(r: NodeReport, now: number): number | null {
    if (r.walReceiver === false) return r.replayLagMs;
    const primaryTimeline = (this.current ?? this.last)?.timeline ?? null;
    if (primaryTimeline !== null && r.timeline !== null && r.timeline !== undefined && r.timeline !== primaryTimeline) return null;
    return this.primaryWal.lagOf(r.replayLsn, r.replayLagMs, now);
  }

  /**
   * The primary's WAL position, read by a check begun at `began`. Its first reading re-checks the
   * standbys at once: their lags so far were measured without it (replay-lag.ts).
   */
  private recordPrimaryWal(lsn: string, began: number): void {
    const first = this.primaryWal.empty;
    this.primaryWal.record(lsn, began);
    if (first && this.opts.maxReplicaLagMs != null) {
      for (const x of this.nodes) if (x.role === 'standby' && x.up) void this.checkOne(x);
    }
  }

  /** Sessions waiting for a target go to `node`. */
  private releaseWaiters(node: HostPort): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) {
      clearTimeout(w.timer);
      w.resolve(node);
    }
  }

  /** Without credentials, a node's role is not known again until a session or a trust login says it. */
  private forgetRole(n: NodeState): void {
    n.role = 'unknown';
    n.roleFrom = null;
    n.roleAt = 0;
  }

  /**
   * Without credentials, while no node is known to be primary and none claims the role: the node
   * new sessions try (file comment), said in one line when it changes. Waiting sessions go there.
   */
  private chooseCandidate(): void {
    let next: NodeState | null = null;
    if (this.opts.rolesFromSessions && this.current === null && this.nodes.every((n) => n.checkedAt !== 0) && !this.nodes.some((n) => n.up && n.role === 'primary')) {
      const now = Date.now();
      // A standby's word, from a session, lasts as long as a check's would while there is no
      // primary (a second at most): it may be promoted by now.
      const lasts = Math.min(this.opts.intervalMs, NO_PRIMARY_RECHECK_MS);
      const mayTry = (n: NodeState): boolean =>
        n.up && n.failures === 0 && (n.role === 'unknown' || (n.role === 'standby' && n.roleFrom === 'session' && now - n.roleAt >= lasts));
      const order = this.last !== null && this.nodes.includes(this.last) ? [this.last, ...this.nodes] : this.nodes;
      next = order.find(mayTry) ?? null;
    }
    if (next === this.candidate) return;
    this.candidate = next;
    this.endTrial();
    if (next === null) return;
    this.ops.info("no upstream node is known to be primary: new sessions try this one (without catalog-user a session's in_hot_standby tells a node's role; one that reaches a standby is closed with 57P01)", {
      node: next.name,
      nodes: this.describe(),
    });
    this.releaseOne();
  }

  /** The read-only listener: one line each time a standby starts or stops taking new read-only sessions for its lag. */
  private sayLagChange(n: NodeState): void {
    const bound = this.opts.maxReplicaLagMs;
    if (bound === null || bound === undefined) return;
    const within = n.up && n.role === 'standby' && n.replayLagMs !== null && n.replayLagMs <= bound;
    if (within === n.withinLag) return;
    n.withinLag = within;
    // Down and role changes have their own lines; this one is about the lag of a live standby.
    if (!n.up || n.role !== 'standby') return;
    const fields = { node: n.name, replay_lag_ms: n.replayLagMs ?? 'unknown', max_replica_lag_ms: bound };
    if (within) this.ops.info('upstream standby is within max-replica-lag-ms: new read-only sessions may go to it', fields);
    else this.ops.warn('upstream standby is behind its primary by more than max-replica-lag-ms: no new read-only session goes to it until it catches up', fields);
  }

  /** The one node up, not in recovery and last checked fine; else none. */
  private choosePrimary(checked: NodeState): void {
    // Not before every node has answered (or failed) once: a stale ex-primary that happens to
    // answer first must not get the sessions waiting from the start.
    if (this.nodes.some((n) => n.checkedAt === 0)) return;
    const claims = this.nodes.filter((n) => n.up && n.role === 'primary');
    // A node whose last check failed (the old primary going away, or a blip) keeps its claim:
    // while it is up, the others wait rather than flap. Two healthy claims are a split brain.
    const healthy = claims.filter((n) => n.failures === 0);
    let next: NodeState | null = null;
    if (healthy.length > 1) {
      const names = claims.map((n) => n.name).join(', ');
      if (this.splitBrain !== names) {
        this.splitBrain = names;
        this.ops.error('two upstream nodes claim to be primary; no new session goes to either until one is in recovery or down (pgscribe never chooses: demote or stop one)', { nodes: names });
      }
    } else {
      if (this.splitBrain !== '' && claims.length <= 1) {
        this.ops.info('only one upstream node claims to be primary again', { nodes: this.describe() });
        this.splitBrain = '';
      }
      next = claims.length === 1 ? healthy[0] ?? null : null;
    }
    if (next === this.current) return;
    this.current = next;
    if (next === null) {
      this.ops.warn('no upstream primary: new sessions wait for one (primary-wait-ms), then get 08001', { nodes: this.describe() });
      // The others may have changed too (a switchover): look at them now. The node just
      // checked is looked at again at the next tick, every second from now on while there is
      // no primary (not after what is left of a long interval).
      setImmediate(() => {
        for (const x of this.nodes) if (x !== checked && !this.stopped) void this.checkOne(x);
      });
      if (this.timer !== null && !this.stopped) {
        clearTimeout(this.timer);
        this.schedule();
      }
      return;
    }
    // Checked every second while there was none (from the start, too): back to the interval.
    if (this.timer !== null && !this.stopped) {
      clearTimeout(this.timer);
      this.schedule();
    }
    const previous = this.last;
    this.last = next;
    this.ops.info('upstream primary chosen: new sessions go to it', { primary: next.name, previous: previous === null || previous === next ? undefined : previous.name });
    this.releaseWaiters(next.address);
    if (previous !== next) {
      // The new primary's positions are what standbys follow now; its last one is the first.
      this.primaryWal.reset();
      if (next.lastWal !== null && next !== checked) this.recordPrimaryWal(next.lastWal.lsn, next.lastWal.began);
      this.events.primaryChanged(previous?.address ?? null, next.address);
    }
  }
}
