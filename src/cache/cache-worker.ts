/**
 * A cache worker thread: one CacheShard behind the MessagePort of WorkerCacheLayer. Each batch of
 * requests is handled in order and answered with one batch of replies, in the same order (see
 * worker-protocol.ts), ending with the shard-side figures when the batch changed them.
 */
import { parentPort, workerData } from 'node:worker_threads';

import { CacheShard } from './shard';
import { Op, Reply, type ShardState, type WorkerSetup } from './worker-protocol';

/** A shard, and the function that answers one batch of requests for it with one batch of replies. */
export function shardHandler(setup: WorkerSetup): (batch: unknown[]) => unknown[] {
  const shard = new CacheShard(setup);

  const state = (): ShardState => {
    const c = shard.counters;
    return [c.stores, c.stale_skips, c.evictions, c.expirations, c.invalidated_entries, shard.size, shard.byteSize];
  };

  /** Changes whenever a shard-side figure does (entries and bytes only move with one of these). */
  const signature = (): number => {
    const c = shard.counters;
    return c.stores + c.stale_skips + c.evictions + c.expirations + c.invalidated_entries;
  };

  return (m) => {
    const out: unknown[] = [];
    const before = signature();
    for (let i = 0; i < m.length; ) {
      switch (m[i] as number) {
        case Op.Lookup: {
          const v = shard.lookup(m[i + 1] as string, m[i + 2] as string, m[i + 3] as string[], m[i + 4] as number, m[i + 5] as number, Date.now());
          i += 6;
          switch (v.kind) {
            case 'hit':
              // The entry's bytes live in a SharedArrayBuffer: the event loop thread gets a view
              // of the same memory, no copy. Nobody writes to an entry once stored.
              out.push(Reply.Hit, v.bytes, v.hasParse);
              break;
            case 'lead':
              out.push(Reply.Lead);
              break;
            case 'wait':
              out.push(Reply.Wait, v.flightId);
              break;
            case 'bypass':
              out.push(Reply.Bypass);
              break;
          }
          break;
        }
        case Op.Complete: {
          const b = m[i + 2] as Uint8Array | null;
          // Shared memory, a copy made for the cache alone: kept as it is.
          const store = b === null ? null : { bytes: Buffer.from(b.buffer, b.byteOffset, b.byteLength), hasParse: m[i + 3] as boolean, ttlMs: m[i + 4] as number };
          out.push(Reply.Done, shard.complete(m[i + 1] as number, store, m[i + 5] as number, Date.now()));
          i += 6;
          break;
        }
        case Op.Leave:
          shard.leave(m[i + 1] as number, m[i + 2] as number);
          i += 3;
          break;
        case Op.Invalidate:
          shard.invalidate(m[i + 1] as string, m[i + 2] as string[] | null);
          i += 3;
          break;
        case Op.Flush:
          out.push(Reply.Flushed, shard.clear());
          i += 1;
          break;
        case Op.Counters:
          out.push(Reply.Counters, state());
          i += 1;
          break;
        default:
          throw new Error(`unknown request tag ${String(m[i])} at ${i}`);
      }
    }
    if (signature() !== before) out.push(Reply.State, state());
    return out;
  };
}

// The worker thread's entry point. (A test's worker thread loads this module for shardHandler
// alone, and wires its own port.)
if (require.main === module) {
  if (parentPort === null) throw new Error('cache-worker.js runs in a worker thread started by WorkerCacheLayer');
  const port = parentPort;
  const handle = shardHandler(workerData as WorkerSetup);
  port.on('message', (m: unknown[]) => {
    const out = handle(m);
    if (out.length > 0) port.postMessage(out);
  });
}
