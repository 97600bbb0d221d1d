/**
 * A socket to PostgreSQL for pgscribe's own use (its connection, and CancelRequests for it):
 * TCP, then, when upstream TLS is configured, SSLRequest and the handshake with the same sslmode
 * meanings as the sessions' upstream legs (negotiateUpstream in src/tls.ts).
 *
 * @see https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-SSL
 */
import * as net from 'node:net';
import { negotiateUpstream, type UpstreamTls } from '../tls';
import { PgClientCode, PgClientError, type PgError } from './errors';
import { decodeError } from './messages';

export type Opened = { socket: net.Socket } | { error: PgClientError | PgError };

function connectError(target: string, reason: string): PgClientError {
  return new PgClientError(PgClientCode.Connect, `cannot connect to ${target}: ${reason}`);
}

/**
 * The server answered the SSLRequest with an ErrorResponse (too many connections, say): its
 * error when the message is whole in `data`, otherwise the text as libpq shows an old-style one.
 */
function negotiationError(target: string, data: Buffer): PgClientError | PgError {
  if (data.length >= 5) {
    const len = data.readUInt32BE(1);
    if (len >= 4 && len + 1 <= data.length) {
      try {
        return decodeError(data, 0, len + 1);
      } catch {
        // not a protocol-3 error: fall through
      }
    }
  }
  const text = data.toString('utf8', 1, Math.min(data.length, 200)).replace(/\0[\s\S]*$/, '').trim();
  return connectError(target, `the server sent an error during SSL negotiation: ${text}`);
}

/**
 * Open the socket; `done` is called once, with the socket to speak the protocol over or the
 * error. The caller adds its 'error' and 'data' listeners at once, then calls resume() (after
 * SSL negotiation that fell back to plaintext the socket is paused). Returns the TCP
 * socket, which the caller destroys to give up (its timeout).
 */
export function openSocket(host: string, port: number, tls: UpstreamTls | null, done: (r: Opened) => void): net.Socket {
  const target = `${host}:${port}`;
  const raw = net.connect({ host, port });
  raw.setNoDelay(true);
  raw.setKeepAlive(true, 60_000);
  let finished = false;
  const finish = (r: Opened): void => {
    if (finished) {
      if ('socket' in r) r.socket.destroy();
      return;
    }
    finished = true;
    raw.off('error', onError);
    if ('error' in r) raw.destroy();
    done(r);
  };
  const onError = (err: Error): void => finish({ error: connectError(target, err.message) });
  raw.on('error', onError);
  if (tls === null) {
    raw.once('connect', () => finish({ socket: raw }));
    return raw;
  }
  negotiateUpstream(raw, host, tls, (n) => {
    switch (n.kind) {
      case 'tls':
        finish({ socket: n.socket });
        return;
      case 'plain':
        finish({ socket: raw });
        return;
      case 'error':
        finish({ error: negotiationError(target, n.data) });
        return;
      case 'failed':
        finish({ error: connectError(target, n.reason) });
        return;
    }
  });
  return raw;
}
