/**
 * The cache layer the settings ask for: in the event loop thread (workers 0) or sharded over
 * worker threads, optionally in front of the shared Redis cache (--redis).
 */
import type * as tls from 'node:tls';
import type { OpsLog } from '../log/ops';
import { RedisClient } from '../redis/client';
import type { RespValue } from '../redis/resp';
import { RedisL2 } from './l2';
import { LocalCacheLayer, type CacheLayer, type LayerOptions } from './layer';
import { TieredCacheLayer } from './tiered-layer';
import { WorkerCacheLayer } from './worker-layer';

export interface RedisSettings {
  host: string;
  port: number;
  password: string;
  user: string;
  db: number;
  prefix: string;
  timeoutMs: number;
  /** Cross-instance singleflight. */
  singleflight: boolean;
  lockMs: number;
  /** --redis-key: the secret that signs entries. */
  key: Buffer;
  /** TLS options for both connections, or null for plaintext. */
  tls: tls.ConnectionOptions | null;
  /** Largest answer stored (cache-max-entry-bytes): larger replies from Redis are refused. */
  maxEntryBytes: number;
}

/** `onError`: operator-facing problems of the worker threads (one died; its keys are relayed). */
export function createCacheLayer(opts: LayerOptions, onError?: (message: string) => void, redis?: { settings: RedisSettings; ops: OpsLog }): CacheLayer {
  const inner = opts.workers > 0 ? new WorkerCacheLayer(opts, onError) : new LocalCacheLayer(opts);
  return redis === undefined ? inner : sharedLayer(inner, redis.settings, redis.ops);
}

const MESSAGE = Buffer.from('message');

/** A `message` push on a subscriber connection: [message, channel, payload]. */
function isMessage(v: RespValue): boolean {
  return Array.isArray(v) && v.length === 3 && Buffer.isBuffer(v[0]) && v[0].equals(MESSAGE);
}

/**
 * L1 in front of Redis: one connection for commands (pipelined), one subscribed to the events
 * channel (a subscribed connection can run nothing else).
 */
function sharedLayer(inner: CacheLayer, s: RedisSettings, ops: OpsLog): TieredCacheLayer {
  const common = { host: s.host, port: s.port, password: s.password, user: s.user, db: s.db, tls: s.tls };
  // An entry is at most the answer plus its generations and a few bytes of framing.
  const maxBulkBytes = s.maxEntryBytes + 64 * 1024;
  // The callbacks run only after connect(), below: l2 exists by then.
  const cmd = new RedisClient({
    ...common,
    timeoutMs: s.timeoutMs,
    maxBulkBytes,
    onReady: () => shared.linkReady(),
    onDown: (reason) => shared.linkDown(reason),
  });
  const shared = new RedisL2(cmd, { prefix: s.prefix, redisDb: s.db, lockMs: s.lockMs, address: cmd.address, key: s.key }, ops);
  const sub: RedisClient = new RedisClient({
    ...common,
    // Only SUBSCRIBE is sent here; a short timeout would just lose track of its reply.
    timeoutMs: Math.max(1000, s.timeoutMs),
    maxBulkBytes,
    isPush: isMessage,
    onPush: (v) => {
      const payload = (v as RespValue[])[2];
      if (Buffer.isBuffer(payload)) shared.message(payload);
    },
    onReady: () =>
      sub.call(['SUBSCRIBE', shared.eventsChannel], (f) => {
        // A lost reply (timeout) still subscribed; only a dropped connection did not.
        if (f === null || f.code === 'timeout') shared.subscribed();
      }),
  });
  const layer = new TieredCacheLayer(inner, shared, { remoteFlights: s.singleflight, lockMs: s.lockMs }, ops, () => {
    cmd.close();
    sub.close();
  });
  cmd.connect();
  sub.connect();
  return layer;
}
