/**
 * wal mode (cache-invalidation wal, or auto when the server allows it): one change stream
 * (src/wal/) per database the cache serves, started with that database's catalog knowledge
 * (catalogs.ts), with the same credentials and TLS, closed at shutdown.
 *
 * - Each committed transaction drops the cached answers that read a relation it changed (by the
 *   same names judge.ts gives dependsOn: renderQuoted of the last name component), through the
 *   layer's invalidate(), which with --redis also tells the other instances (each of which reads
 *   the stream itself too).
 * - Each new slot is a gap (what committed before it was not seen): the database's answers go
 *   before it is served again.
 * - While the stream is not streaming (not yet, or down) the database is held: its reads are not
 *   answered from the cache (CatalogKnowledge.hold, the gate SessionCatalog.reads asks).
 * - pgscribe's own publication is kept current (src/wal/publication.ts) each time the catalog
 *   changes: a table given a key since is added, and then cached once the snapshot shows it; a
 *   listed table that lost its key is dropped, or PostgreSQL would refuse its UPDATEs and DELETEs.
 */
import type { HostPort } from '../config';
import type { CatalogKnowledge } from '../catalog/knowledge';
import type { CatalogSource } from '../catalog/source';
import { LatencyHistogram } from '../insight/histogram';
import type { OpsLog } from '../log/ops';
import { PgError } from '../pg/connection';
import { renderQuoted } from '../sql/names';
import type { UpstreamTls } from '../tls';
import { ChangeStream, type CommitInfo } from '../wal/change-stream';
import { CommitFence } from './commit-fence';
import { CommitSettling, SNAPSHOT_SQL } from './commit-settling';
import { namesStandby } from '../wal/sync-standby';
import { formatLsn, parseLsn } from '../wal/lsn';
import { addTablesSql, dropTablesSql, tablesToAddSql, tablesToDropSql } from '../wal/publication';

export interface StreamSettings {
  upstream: HostPort;
  user: string;
  password: string;
  connectTimeoutMs: number;
  tls: UpstreamTls | null;
  /** The publication read: pgscribe's own (filled by it) or the operator's (used as it is). */
  publication: string;
  /** The publication is pgscribe's own: created when missing, tables added to it. */
  own: boolean;
  /** Read-your-writes: how long a commit's ReadyForQuery waits for the stream (0: it does not wait). */
  waitMs: number;
  /** Test hooks for the stream's timers (defaults: the stream's own). */
  stallTimeoutMs?: number;
  backoffMaxMs?: number;
}

/** Why a database is held before its first stream is up. */
const NOT_YET = 'the change stream is not streaming yet';
/** Who holds a database in CatalogKnowledge: the stream (down, not up yet), a read-your-writes wait past its bound. */
const STREAM = 'change stream';
const BEHIND = 'read-your-writes';
const SETTLING = 'commit visibility';
const LEAVING = 'publication';
/** After a failed sync, when the next one runs: a table that lost its key has its writes refused until it is dropped. */
const SYNC_RETRY_MS = 5_000;
/** After a wait past its bound, how long the database stays held at most while the stream catches up. */
const CATCH_UP_MS = 600_000;

/** The stream of one database and what it keeps current. */
class DatabaseStream {
  readonly stream: ChangeStream;
  private syncing = false;
  private syncAgain = false;
  private syncWarned = false;
  private syncRetry: NodeJS.Timeout | null = null;
  private closed = false;
  private unsubscribe: () => void = () => undefined;
  /** Waits past their bound still catching up (the database is held while above 0). */
  private behind = 0;
  /** Read-your-writes: commits' ReadyForQuery held until the stream passes them (null: waitMs 0). */
  private readonly fence: CommitFence | null;
  /** Streamed commits not yet visible to other sessions, invalidated again once they are. */
  readonly settling: CommitSettling;

  constructor(
    private readonly db: string,
    private readonly knowledge: CatalogKnowledge,
    private readonly source: CatalogSource,
    private readonly s: StreamSettings,
    private readonly ops: OpsLog,
    private readonly owner: ChangeStreams,
  ) {
    knowledge.hold(STREAM, NOT_YET);
    this.settling = new CommitSettling({
      ask: async () => {
        const row = (await source.query(SNAPSHOT_SQL)).rows[0] ?? [];
        return { snapshot: row[0] ?? '', syncStandbyNames: row[1] ?? '' };
      },
      onSettled: (names) => owner.settled(db, names),
      onFailed: (reason) => {
        if (reason === null) knowledge.release(SETTLING);
        else knowledge.hold(SETTLING, `cannot tell whether streamed commits are visible yet: ${reason}`);
      },
      onSyncStandbyNames: (setting) => {
        if (namesStandby(setting, this.stream.applicationName)) {
          this.stream.interrupt(`synchronous_standby_names changed to '${setting}', which would make pgscribe's change stream a synchronous standby; name only the real standbys`);
        }
      },
    });
    this.stream = new ChangeStream({
      // Getters: with several upstreams each attempt goes to the primary of the moment.
      get host() {
        return s.upstream.host;
      },
      get port() {
        return s.upstream.port;
      },
      user: s.user,
      password: s.password,
      database: db,
      tls: s.tls,
      publication: s.own ? null : s.publication,
      connectTimeoutMs: s.connectTimeoutMs,
      ...(s.stallTimeoutMs === undefined ? {} : { stallTimeoutMs: s.stallTimeoutMs }),
      ...(s.backoffMaxMs === undefined ? {} : { backoffMaxMs: s.backoffMaxMs }),
      ops,
      onCommit: (c) => this.settling.add(c.xid, owner.commit(db, c)),
      onReady: () => {
        // A gap: what committed before this slot was never seen. Drop first, then serve.
        owner.gap(db);
        knowledge.release(STREAM);
        this.sync();
      },
      onDown: (reason) => knowledge.hold(STREAM, `the change stream is down: ${reason}`),
    });
    if (s.own) this.unsubscribe = knowledge.onChange(() => this.sync());
    this.fence =
      s.waitMs <= 0
        ? null
        : new CommitFence({
            currentLsn: () => this.currentLsn(),
            stream: () => this.stream,
            holdMs: s.waitMs,
            onLapse: (reason, lsn, commits) => this.lapse(reason, lsn, commits),
          });
  }

  start(): void {
    this.stream.start();
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    if (this.syncRetry !== null) clearTimeout(this.syncRetry);
    this.syncRetry = null;
    this.fence?.close();
    this.stream.close();
    this.settling.close();
  }

  /**
   * Read-your-writes after a commit through pgscribe: true when `done` runs later, once the
   * stream has handed over every change committed so far (the WAL insert position read on the
   * catalog connection after the commit; commit-fence.ts batches those questions). false: not
   * held (no fence, or a lapse at once).
   */
  hold(done: () => void): boolean {
    return this.fence !== null && this.fence.hold(done);
  }

  /**
   * The server's WAL insert position, on the catalog connection. The same answer's snapshot
   * settles the streamed commits that arrived before the question and had finished: the commit
   * the fence asks for is among them when it streamed before it was visible (commit-settling.ts).
   */
  private async currentLsn(): Promise<bigint> {
    const upTo = this.settling.lastSeq;
    const row = (await this.source.query('SELECT pg_catalog.pg_current_wal_insert_lsn(), pg_catalog.pg_current_snapshot()::text')).rows[0] ?? [];
    this.settling.settleWith(row[1] ?? '', upTo);
    const text = row[0] ?? '';
    const lsn = parseLsn(text);
    if (lsn === null) throw new Error(`pg_current_wal_insert_lsn() answered ${JSON.stringify(text)}`);
    return lsn;
  }

  /**
   * Commits were released before the stream confirmed them (past waitMs, the stream down, the
   * position unreadable): the database's answers go, and while the stream is up but behind, the
   * database is held until it reaches the position (asked again when unknown), said once each way.
   * A stream that is down holds the database itself.
   */
  private lapse(reason: string, lsn: bigint | null, commits: number): void {
    this.owner.lapsed(commits);
    this.owner.gap(this.db, false);
    if (!this.stream.healthy) return;
    if (this.behind++ === 0) {
      this.knowledge.hold(BEHIND, 'the change stream is behind a commit made through pgscribe');
      this.ops.warn('change stream: a commit through pgscribe was not applied within cache-wal-wait-ms; this database\'s answers were dropped and it is not served from the cache until the stream catches up', {
        db: this.db,
        wait_ms: this.s.waitMs,
        reason,
        ...(lsn === null ? {} : { lsn: formatLsn(lsn) }),
      });
    }
    const target = lsn !== null ? Promise.resolve(lsn) : this.currentLsn();
    void target
      .then((l) => this.stream.waitFor(l, CATCH_UP_MS), () => false)
      .then((caught) => {
        if (--this.behind > 0) return;
        // Not caught up (the stream went down or stalled): its own gap and hold take over; anything
        // cached meanwhile was judged under this hold, so nothing was.
        if (!caught) this.owner.gap(this.db, false);
        this.knowledge.release(BEHIND);
        this.ops.info('change stream: caught up with the commits made through pgscribe; this database is served from the cache again', { db: this.db });
      });
  }

  /**
   * Drop the tables that lost their replica identity, add those that may be published and are
   * not yet (one run at a time; a call meanwhile runs it again).
   */
  private sync(): void {
    if (!this.s.own) return;
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    if (this.syncRetry !== null) clearTimeout(this.syncRetry);
    this.syncRetry = null;
    this.syncing = true;
    this.syncAgain = false;
    void this.syncTables().finally(() => {
      this.syncing = false;
      if (this.syncAgain) this.sync();
    });
  }

  private async syncTables(): Promise<void> {
    try {
      if (await this.dropTables()) return;
      const r = await this.source.query(tablesToAddSql(this.s.publication));
      const tables = r.rows.map((row) => row[0] ?? '').filter((t) => t !== '');
      this.syncWarned = false;
      if (tables.length === 0) return;
      for (const sql of addTablesSql(this.s.publication, tables)) await this.source.query(sql);
      this.owner.added += tables.length;
      // Read the catalog now rather than at the next poll: the tables are cached from then on.
      void this.knowledge.refresh();
    } catch (err) {
      // The publication is not there yet: the stream creates it, and its onReady syncs again.
      if (err instanceof PgError && err.code === '42704') return;
      // The catalog connection is lost: catalogs.ts says so, and the next load syncs again.
      if (!this.knowledge.ready) return;
      // Until a sync works, a table that lost its key stays listed and its writes are refused:
      // try again soon rather than at the next change of the catalog, which may never come.
      if (!this.closed) {
        this.syncRetry = setTimeout(() => this.sync(), SYNC_RETRY_MS);
        this.syncRetry.unref();
      }
      if (this.syncWarned) return;
      this.syncWarned = true;
      this.ops.warn('change stream: cannot keep the publication current; reads of the tables not in it are relayed, not cached, and a table in it that lost its key has its UPDATEs and DELETEs refused by PostgreSQL until it leaves', {
        db: this.db,
        publication: this.s.publication,
        reason: (err as Error).message,
      });
    }
  }

  /**
   * Drop from the publication the tables that lost their replica identity; true when it dropped
   * some (the catalog is read again, whose change syncs again for the tables to add). Until the
   * snapshot no longer lists them, their changes are not streamed but their reads would still be
   * cached: the database is held from before the drop until the catalog is read again, and that
   * reload drops everything of the database cached so far (catalogs.ts).
   */
  private async dropTables(): Promise<boolean> {
    const r = await this.source.query(tablesToDropSql(this.s.publication));
    const tables = r.rows.map((row) => row[0] ?? '').filter((t) => t !== '');
    if (tables.length === 0) return false;
    this.knowledge.hold(LEAVING, 'a table is leaving the publication');
    // Some table left (or may have): what the snapshot says is published is out of date.
    let changed = false;
    try {
      for (const sql of dropTablesSql(this.s.publication, tables)) {
        await this.source.query(sql);
        changed = true;
      }
      this.owner.dropped += tables.length;
      this.ops.info('change stream: tables lost their replica identity and left the publication; their reads are relayed from now on', {
        db: this.db,
        publication: this.s.publication,
        tables: tables.join(', '),
      });
    } catch (err) {
      // 42704: another instance dropped one first; the reload below syncs again for the rest.
      if (err instanceof PgError && err.code === '42704') changed = true;
      else throw err;
    } finally {
      // Not after a failure that dropped nothing: the reload would sync again at once, and fail
      // again; syncTables retries after SYNC_RETRY_MS instead.
      if (changed) await this.knowledge.refresh();
      this.knowledge.release(LEAVING);
    }
    return true;
  }
}

export class ChangeStreams {
  private readonly dbs = new Map<string, DatabaseStream>();
  private readonly lag = new LatencyHistogram();
  private commits = 0;
  private invalidations = 0;
  private settledInvalidations = 0;
  private gaps = 0;
  private waits = 0;
  private waitTimeouts = 0;
  /** Tables added to pgscribe's publication. */
  added = 0;
  /** Tables dropped from it (they lost their replica identity). */
  dropped = 0;
  private closed = false;

  /** invalidate(db, names | null): the cache layer's (which with --redis tells the other instances). */
  constructor(
    private readonly settings: StreamSettings,
    private readonly ops: OpsLog,
    private readonly invalidate: (db: string, tables: readonly string[] | null) => void,
  ) {}

  /** The publication the snapshot checks reads against. */
  get publication(): string {
    return this.settings.publication;
  }

  /** Start db's stream (once), holding db until it streams. */
  start(db: string, knowledge: CatalogKnowledge, source: CatalogSource): void {
    if (this.closed || this.dbs.has(db)) return;
    const d = new DatabaseStream(db, knowledge, source, this.settings, this.ops, this);
    this.dbs.set(db, d);
    d.start();
  }

  /** A committed transaction of db: drop what read the relations it changed; their names (to drop again once the commit is visible). */
  commit(db: string, c: CommitInfo): string[] {
    this.commits++;
    this.lag.record(c.lagMs);
    if (c.relations.length === 0) return [];
    const names: string[] = [];
    for (const r of c.relations) {
      const n = renderQuoted(r.name);
      if (!names.includes(n)) names.push(n);
    }
    this.invalidations++;
    this.invalidate(db, names);
    return names;
  }

  /** Streamed commits of db are visible now: drop again what read what they changed (commit-settling.ts). */
  settled(db: string, names: readonly string[]): void {
    this.settledInvalidations++;
    this.invalidate(db, names);
  }

  /** Drop everything of db: its stream (re)started on a new slot (counted as a gap), or a read-your-writes wait failed. */
  gap(db: string, newSlot = true): void {
    if (newSlot) this.gaps++;
    this.invalidate(db, null);
  }

  /**
   * Read-your-writes: true when `done` runs later, once db's stream has applied every commit so
   * far or the wait lapsed (then db's answers were dropped; see DatabaseStream.lapse). false, and
   * `done` never runs: no stream for db, waitMs 0, or a lapse at once.
   */
  hold(db: string, done: () => void): boolean {
    const d = this.dbs.get(db);
    if (d === undefined || this.settings.waitMs <= 0) return false;
    this.waits++;
    return d.hold(done);
  }

  /** Commits released before the stream confirmed them. */
  lapsed(commits: number): void {
    this.waitTimeouts += commits;
  }

  /** For the stats line and /metrics (wal_ prefix). */
  counters(): Record<string, number> {
    let up = 0;
    let unsettled = 0;
    for (const d of this.dbs.values()) {
      if (d.stream.healthy) up++;
      unsettled += d.settling.pending;
    }
    const q = (x: number): number => (this.lag.count === 0 ? 0 : Math.round(this.lag.quantile(x) * 1000) / 1000);
    return {
      streams: this.dbs.size,
      streams_up: up,
      commits: this.commits,
      invalidations: this.invalidations,
      settled_invalidations: this.settledInvalidations,
      commits_unsettled: unsettled,
      gaps: this.gaps,
      tables_added: this.added,
      tables_dropped: this.dropped,
      commit_waits: this.waits,
      commit_wait_timeouts: this.waitTimeouts,
      lag_p50_ms: q(0.5),
      lag_p99_ms: q(0.99),
      lag_max_ms: this.lag.count === 0 ? 0 : this.lag.maxMs,
    };
  }

  close(): void {
    this.closed = true;
    for (const d of this.dbs.values()) d.close();
    this.dbs.clear();
  }
}
