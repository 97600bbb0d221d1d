/**
 * The cache layer the settings ask for: in the event loop thread (workers 0) or sharded over
 * worker threads.
 */
import { LocalCacheLayer, type CacheLayer, type LayerOptions } from './layer';

export function createCacheLayer(opts: LayerOptions): CacheLayer {
  if (opts.workers === 0) return new LocalCacheLayer(opts);
  throw new Error('worker threads are not available yet');
}
