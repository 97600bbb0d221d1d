// The worker thread of FaultyWorkerCacheLayer: the production shard (shardHandler), with the
// faults of faulty-cache-layer.ts handled before a batch reaches it.

import { parentPort, workerData } from 'node:worker_threads';
import { shardHandler } from '../../src/cache/cache-worker';
import type { WorkerSetup } from '../../src/cache/worker-protocol';
import { Fault } from './faulty-cache-layer';

if (parentPort === null) throw new Error('faulty-cache-worker.js runs in a worker thread started by FaultyWorkerCacheLayer');
const port = parentPort;
const handle = shardHandler(workerData as WorkerSetup);

port.on('message', (m: unknown[]) => {
  if (m[0] === Fault.Throw) throw new Error('fault injected by the test');
  if (m[0] === Fault.Stall) {
    const until = Date.now() + (m[1] as number);
    while (Date.now() < until);
    return;
  }
  const out = handle(m);
  if (out.length > 0) port.postMessage(out);
});
