/**
 * The cache layer the settings ask for: in the event loop thread (workers 0) or sharded over
 * worker threads.
 */
import { LocalCacheLayer, type CacheLayer, type LayerOptions } from './layer';
import { WorkerCacheLayer } from './worker-layer';

/** `onError`: operator-facing problems of the worker threads (one died; its keys are relayed). */
export function createCacheLayer(opts: LayerOptions, onError?: (message: string) => void): CacheLayer {
  if (opts.workers > 0) return new WorkerCacheLayer(opts, onError);
  return new LocalCacheLayer(opts);
}
