// Fault injection for the worker cache layer, kept out of the production code: a WorkerCacheLayer
// whose workers run faulty-cache-worker.js, the real shard plus two faults the test can post
// straight to a worker (ahead of the batch the layer posts at setImmediate), and terminate().

import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { WorkerCacheLayer } from '../../src/cache/worker-layer';
import type { WorkerSetup } from '../../src/cache/worker-protocol';

/** Messages only faulty-cache-worker.js understands (the real worker would throw on them). */
export const Fault = {
  /** The handler throws, as a bug in the shard would. */
  Throw: 'fault:throw',
  /** ms: the worker busy-waits (a slow shard), then handles what comes next. */
  Stall: 'fault:stall',
} as const;

export type Crash = 'throw' | 'terminate';

const FAULTY_WORKER_FILE = path.join(__dirname, 'faulty-cache-worker.js');

export class FaultyWorkerCacheLayer extends WorkerCacheLayer {
  // `declare`: no initializer, which would run after the base constructor and forget the workers.
  private declare workers: Worker[] | undefined;

  protected override createWorker(setup: WorkerSetup): Worker {
    const w = new Worker(FAULTY_WORKER_FILE, { workerData: setup, execArgv: [] });
    (this.workers ??= []).push(w);
    return w;
  }

  /** Make shard i die: an exception inside its message handler, or terminate() from outside. */
  crashShard(i: number, how: Crash): void {
    const w = this.workers![i]!;
    if (how === 'throw') w.postMessage([Fault.Throw]);
    else void w.terminate();
  }

  /** Shard i busy-waits for ms before it handles anything posted after this. */
  stallShard(i: number, ms: number): void {
    this.workers![i]!.postMessage([Fault.Stall, ms]);
  }
}
