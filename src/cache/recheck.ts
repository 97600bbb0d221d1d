/**
 * The check of an unnamed statement the cache kept from the server. A request answered from the
 * cache with an unnamed Parse never reached PostgreSQL, so the server does not have the statement
 * the client believes in. Before a later request runs it without a Parse, pgscribe parses it on
 * the server in a request of its own and describes it: the same result description as the client
 * was given means the server now has the client's statement; another means PostgreSQL would have
 * refused the client's Bind, because a prepared statement's result type is fixed at its Parse.
 *
 * @see https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY
 */
import { Backend, Frontend, SqlState } from '../protocol/codes';
import { encodeErrorResponse, encodeMessage, rowShape } from '../protocol/messages';
import type { StatementDef } from '../client/ledger';


/** Parse of the unnamed statement as the client defined it, Describe of it, Sync. */
export function recheckBatch(def: StatementDef): Buffer {
  return Buffer.concat([
    encodeMessage(Frontend.Parse, Buffer.concat([Buffer.from([0]), Buffer.from(def.definition, 'latin1')])),
    encodeMessage(Frontend.Describe, Buffer.from([0x53, 0])), // 'S', unnamed
    encodeMessage(Frontend.Sync, Buffer.alloc(0)),
  ]);
}

/** What PostgreSQL answers a Bind of a statement whose result type changed since its Parse. */
const CHANGED = encodeErrorResponse({ severity: 'ERROR', code: SqlState.FeatureNotSupported, message: 'cached plan must not change result type' });

/**
 * The check's answer (whole messages up to its ReadyForQuery) against the description the client
 * was given: null when they agree; otherwise the ErrorResponse the client's request gets
 * (PostgreSQL's own when the Parse failed, 0A000 when the description differs).
 */
export function recheckRefusal(answer: Buffer, description: string): Buffer | null {
  let off = 0;
  while (off + 5 <= answer.length) {
    const type = answer[off]!;
    const end = off + 1 + answer.readUInt32BE(off + 1);
    if (end > answer.length || end < off + 5) break;
    if (type === Backend.ErrorResponse) return Buffer.from(answer.subarray(off, end));
    if (type === Backend.RowDescription) return rowShape(answer, off, end) === description ? null : CHANGED;
    if (type === Backend.NoData) return description === 'n' ? null : CHANGED;
    off = end;
  }
  return CHANGED;
}
