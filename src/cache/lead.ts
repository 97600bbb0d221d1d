/**
 * What a session's request is to the cache layer: the request it hands over (Request), and, when
 * the session runs it upstream for everyone (the leader of a flight), the capture of its answer
 * (Lead).
 */
import type { CacheRequest } from './layer';
import type { ResponseCapture } from './response';

/** A cacheable request and how to replay its answer. */
export interface Request extends CacheRequest {
  kind: 'Q' | 'X';
  hasParse: boolean;
  hasDescribe: boolean;
  ttlMs: number;
  /**
   * The result description an answer must carry to be served (a statement parsed earlier, whose
   * description PostgreSQL fixed at its Parse); null: any.
   */
  description: string | null;
}

/** This session leads a flight: its answer is captured for the waiters and the cache. */
export interface Lead {
  flightId: number;
  kind: 'Q' | 'X';
  hasParse: boolean;
  hasDescribe: boolean;
  ttlMs: number;
  capture: ResponseCapture;
}
