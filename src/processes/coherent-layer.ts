/**
 * One cache truth across --processes N: each process keeps its own cache (L1), and a write
 * committed through one of them must be gone from all of them before the client that wrote it
 * hears ReadyForQuery. This wraps a process's cache layer: a session's commit (invalidate with a
 * `shared` callback) drops the write's tables here and asks the primary to drop them in every
 * other process; `shared` runs once all have (the commit's ReadyForQuery waits for it, as it waits
 * for other instances through Redis).
 *
 * Only the sessions' writes go through this. What each process learns by itself is not relayed:
 * its catalog poll (every process polls), its own change stream in wal mode (every process runs
 * one), its TTLs.
 */
import type { CacheLayer, CacheRequest, FlightClient, SharedAnswer } from '../cache/layer';
import { TieredCacheLayer } from '../cache/tiered-layer';

/** The other processes (worker-link.ts). */
export interface InvalidationPeers {
  invalidateOthers(db: string, tables: readonly string[] | null, done: () => void): void;
}

export class ProcessCoherentLayer implements CacheLayer {
  constructor(
    private readonly inner: CacheLayer,
    private readonly peers: InvalidationPeers,
  ) {}

  lookup(req: CacheRequest, client: FlightClient): void {
    this.inner.lookup(req, client);
  }

  complete(flightId: number, answer: SharedAnswer | null, storeTtlMs: number, bypassMs: number): void {
    this.inner.complete(flightId, answer, storeTtlMs, bypassMs);
  }

  leave(flightId: number, client: FlightClient): void {
    this.inner.leave(flightId, client);
  }

  abandon(client: FlightClient): boolean {
    return this.inner.abandon(client);
  }

  /** A write through this process: here (and to Redis, when the inner layer shares), and in every other process. */
  invalidate(db: string, tables: readonly string[] | null, shared?: () => void): boolean {
    if (shared === undefined) {
      this.peers.invalidateOthers(db, tables, () => {});
      return this.inner.invalidate(db, tables);
    }
    let pending = 2;
    const oneDone = () => {
      if (--pending === 0) shared();
    };
    if (!this.inner.invalidate(db, tables, oneDone)) oneDone();
    this.peers.invalidateOthers(db, tables, oneDone);
    return true;
  }

  /** Another process's write: this process's L1 only (the writer already told Redis, if any). */
  invalidateForPeer(db: string, tables: readonly string[] | null): void {
    if (this.inner instanceof TieredCacheLayer) this.inner.remoteInvalidate(db, tables);
    else this.inner.invalidate(db, tables);
  }

  flush(): void {
    this.inner.flush();
  }

  counters(): Record<string, number> {
    return this.inner.counters();
  }

  close(): Promise<Record<string, number>> {
    return this.inner.close();
  }
}
