/**
 * What pgscribe knows about one database's catalog, kept current: a snapshot (snapshot.ts)
 * loaded at start, reloaded when a cheap fingerprint of the catalogs moves (polled every pollMs,
 * default 1000 ms; any DDL by anyone inserts, updates or deletes catalog rows) and when told
 * (refresh(): DDL through pgscribe). Each reload, and each loss of the catalog connection, bumps
 * `generation` and calls the listeners: answers cached under the old knowledge may be wrong now.
 *
 * Verdicts are synchronous, from the current snapshot (judge.ts). Before the first load, and
 * while the last query failed, `ready` is false and every verdict is "unknown": not cacheable,
 * writes of the whole database, calls not known stable.
 */
import { CUSTOM_SETTING_NAME } from '../sql/sql-class';
import { callsOnlyStable, judgeRead, writeTargets, type ReadVerdict } from './judge';
import { CatalogSnapshot, readFingerprint } from './snapshot';
import type { CatalogSource } from './source';
import type { StatementFacts } from '../sql/statement-facts';

export interface KnowledgeOptions {
  /** How often the fingerprint is polled (ms); 0: never (refresh() and poll() only). Default 1000. */
  pollMs?: number;
  /** A query failed (the knowledge is not ready until a load succeeds). */
  onError?: (err: Error) => void;
  /**
   * wal mode: the publication the change stream reads. Reads of a relation it does not stream are
   * not cacheable, and a change of what it streams reloads the snapshot. Null (default): ttl mode.
   */
  publication?: string | null;
}

const NOT_READY: ReadVerdict = { cacheable: false, reason: 'catalog knowledge not ready', dependsOn: [] };

export class CatalogKnowledge {
  private snap: CatalogSnapshot | null = null;
  private failed = false;
  private gen = 0;
  private queue: Promise<void> = Promise.resolve();
  /** A reload queued and not begun yet: a later refresh() joins it (its read starts after both DDLs). */
  private queuedLoad: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private readonly pollMs: number;
  private readonly onError: ((err: Error) => void) | undefined;
  private readonly listeners = new Set<(generation: number) => void>();
  private readonly customNames = new Set<string>();
  private readonly publication: string | null;
  /** Why the cache may not answer for this database now although the catalog is known, by who holds it (the change stream, a read-your-writes wait). */
  private readonly holds = new Map<string, string>();

  constructor(private readonly source: CatalogSource, opts: KnowledgeOptions = {}) {
    this.pollMs = opts.pollMs ?? 1000;
    this.onError = opts.onError;
    this.publication = opts.publication ?? null;
  }

  /**
   * Reads may be answered from the cache: the catalog is known and nothing holds the database
   * (in wal mode: a change stream that is down or not streaming yet, a read-your-writes wait that
   * timed out).
   */
  get serving(): boolean {
    return this.ready && this.holds.size === 0;
  }

  /** Why the database is held (null: it is not). */
  get held(): string | null {
    for (const reason of this.holds.values()) return reason;
    return null;
  }

  /** Serve nothing of this database from the cache until `holder` releases it. */
  hold(holder: string, reason: string): void {
    this.holds.set(holder, reason);
  }

  /** `holder` lets go; the database is served again once no one holds it. */
  release(holder: string): void {
    this.holds.delete(holder);
  }

  /** A snapshot is loaded and the last query succeeded. */
  get ready(): boolean {
    return this.snap !== null && !this.failed;
  }

  /** Bumped by every reload and every loss of readiness. */
  get generation(): number {
    return this.gen;
  }

  /** The current snapshot, or null when not ready. */
  get snapshot(): CatalogSnapshot | null {
    return this.ready ? this.snap : null;
  }

  /** Loads the catalog and starts polling; resolves after the first load (ready says how it went). */
  start(): Promise<void> {
    this.running = true;
    const first = this.refresh();
    void first.then(() => this.schedule());
    return first;
  }

  /** Stops polling (a load in flight still completes). */
  stop(): void {
    this.running = false;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Reloads now (after a DDL through pgscribe); resolves when done. Loads run one at a time, in order. */
  refresh(): Promise<void> {
    // Each DDL of a schema script asks for a reload; one that has not begun covers them all, so
    // the knowledge catches up after one load, not one per DDL.
    this.queuedLoad ??= this.enqueue(() => {
      this.queuedLoad = null;
      return this.load();
    });
    return this.queuedLoad;
  }

  /** Compares the fingerprint once and reloads when it moved (or when not ready); resolves when done. */
  poll(): Promise<void> {
    return this.enqueue(() => this.check());
  }

  /**
   * Every custom setting (app.tenant) a role or database default has named in any load so far:
   * a session that started under a default RESET since still has the value, so the cache's probe
   * keeps asking for it.
   */
  get customSettingNames(): ReadonlySet<string> {
    return this.customNames;
  }

  /** Calls listener(generation) after each bump; returns the unsubscribe function. */
  onChange(listener: (generation: number) => void): () => void {
    this.listeners.add(listener);
    return () => { this.listeners.delete(listener); };
  }

  /** See judge.ts; not cacheable when not ready. */
  judgeRead(facts: StatementFacts, schemas: readonly string[]): ReadVerdict {
    const s = this.snapshot;
    return s === null ? { ...NOT_READY, dependsOn: [] } : judgeRead(s, facts, schemas);
  }

  /** See judge.ts; null (the whole database) when not ready. */
  writeTargets(facts: StatementFacts, schemas: readonly string[]): string[] | null {
    const s = this.snapshot;
    return s === null ? null : writeTargets(s, facts, schemas);
  }

  /** See judge.ts; false when not ready. */
  callsOnlyStable(facts: StatementFacts, schemas: readonly string[], opts: { harmless?: boolean } = {}): boolean {
    const s = this.snapshot;
    return s !== null && callsOnlyStable(s, facts, schemas, opts);
  }

  /**
   * The role and database defaults a new session of `role` starts with (ALTER ROLE / DATABASE
   * ... SET), as `name=value`, lowest precedence first (a later entry overrides an earlier one);
   * null when not ready.
   */
  defaultSettings(role: string): string[] | null {
    const s = this.snapshot;
    if (s === null) return null;
    return s.roleSettings.filter((r) => r.role === '' || r.role === role).map((r) => r.setting);
  }

  private enqueue(fn: () => Promise<void>): Promise<void> {
    const p = this.queue.then(fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private schedule(): void {
    if (!this.running || this.pollMs <= 0 || this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.poll().then(() => this.schedule());
    }, this.pollMs);
    this.timer.unref();
  }

  private async load(): Promise<void> {
    try {
      this.snap = await CatalogSnapshot.load(this.source, this.publication);
      for (const r of this.snap.roleSettings) {
        const name = r.setting.slice(0, Math.max(0, r.setting.indexOf('='))).toLowerCase();
        if (CUSTOM_SETTING_NAME.test(name)) this.customNames.add(name);
      }
      this.failed = false;
      this.bump();
    } catch (err) {
      this.lost(err);
    }
  }

  private async check(): Promise<void> {
    if (!this.ready) return this.load();
    let fingerprint: string;
    try {
      fingerprint = await readFingerprint(this.source, this.publication);
    } catch (err) {
      this.lost(err);
      return;
    }
    if (fingerprint !== this.snap!.fingerprint) await this.load();
  }

  /** A query failed: not ready; if it was, what was cached under it can no longer be kept current. */
  private lost(err: unknown): void {
    const was = this.ready;
    this.failed = true;
    this.onError?.(err instanceof Error ? err : new Error(String(err)));
    if (was) this.bump();
  }

  private bump(): void {
    this.gen++;
    for (const l of this.listeners) {
      try {
        l(this.gen);
      } catch (err) {
        this.onError?.(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }
}
