/**
 * The states of a client session and the transitions between them. The session's `state` field
 * changes only in its transition(), which checks this table; an illegal transition is a bug and
 * closes that one client.
 *
 * The design card's request cycle maps onto them: a client message arrives (client-request),
 * is logged (log) and forwarded upstream (forward) in Request; the server's answer is relayed
 * (response) in Response, until the ReadyForQuery that answers the last Query or Sync makes the
 * session Idle again. Waiting is the cache's detour: the request is held while the cache decides.
 */
import { Backend } from '../protocol/codes';

export const ClientState = {
  /** Waiting for the startup packet: SSL/GSS negotiation, CancelRequest or StartupMessage. */
  Startup: 'startup',
  /** SSLRequest answered 'S': the TLS handshake runs; then Startup again, encrypted. */
  TlsHandshake: 'tls-handshake',
  /** StartupMessage accepted; the upstream connection is being opened. */
  Connecting: 'connecting',
  /** StartupMessage relayed; authentication runs between client and server until ReadyForQuery. */
  Authenticating: 'authenticating',
  /** Nothing outstanding: the last Query/Sync has been answered by ReadyForQuery. */
  Idle: 'idle',
  /**
   * A cacheable request waits for the cache layer (a lookup in a worker thread, or another
   * client's identical query in flight); nothing of it went upstream. Later client messages wait too.
   */
  Waiting: 'waiting',
  /** The client has sent messages that the server has not started answering. */
  Request: 'request',
  /** The server is answering; lasts until the ReadyForQuery that answers the last Query/Sync. */
  Response: 'response',
  /** COPY FROM STDIN: the client streams CopyData until CopyDone or CopyFail. */
  CopyIn: 'copy-in',
  /** COPY TO STDOUT: the server streams CopyData until CopyDone. */
  CopyOut: 'copy-out',
  /** Replication streaming: CopyData both ways. */
  CopyBoth: 'copy-both',
  /** Being torn down; terminal. */
  Closing: 'closing',
} as const;
export type ClientState = (typeof ClientState)[keyof typeof ClientState];

const S = ClientState;

/** The transitions each state allows. */
export const ALLOWED: Readonly<Record<ClientState, readonly ClientState[]>> = {
  [S.Startup]: [S.TlsHandshake, S.Connecting, S.Closing],
  [S.TlsHandshake]: [S.Startup, S.Closing],
  [S.Connecting]: [S.Authenticating, S.Closing],
  [S.Authenticating]: [S.Idle, S.Closing],
  [S.Idle]: [S.Request, S.Response, S.Waiting, S.Closing],
  [S.Waiting]: [S.Idle, S.Closing],
  [S.Request]: [S.Response, S.Idle, S.CopyIn, S.CopyOut, S.CopyBoth, S.Closing],
  [S.Response]: [S.Idle, S.CopyIn, S.CopyOut, S.CopyBoth, S.Closing],
  [S.CopyIn]: [S.Response, S.Closing],
  [S.CopyOut]: [S.Response, S.Closing],
  [S.CopyBoth]: [S.Response, S.Closing],
  [S.Closing]: [],
};

/** Before the session is established: the startup packet, TLS, the upstream connect. */
export function inStartup(s: ClientState): boolean {
  return s === S.Startup || s === S.TlsHandshake || s === S.Connecting;
}

/**
 * The session only relays: accepted, not closing, without the cache or pgscribe's own request in
 * flight (cache and side null). Then a read's bytes are only ever queued for the other socket, so
 * its buffer may be reused once that queue is written (src/net/reused-reads.ts). Before
 * acceptance the recorder holds records (with views of Bind parameters) until the first
 * ReadyForQuery; the cache keeps what it captures.
 */
export function relaying(s: ClientState, cache: object | null, side: object | null): boolean {
  const steady = s === S.Idle || s === S.Request || s === S.Response || s === S.CopyIn || s === S.CopyOut || s === S.CopyBoth;
  return steady && cache === null && side === null;
}

/**
 * Where a relayed server message moves the session (null: nowhere). ReadyForQuery is not here:
 * where it leads depends on the requests still pending (the session decides). A message that
 * starts the answer moves Request to Response; COPY answers enter and leave the copy states; an
 * ErrorResponse ends a copy (the server gave up on it).
 */
export function afterServerMessage(state: ClientState, type: number): ClientState | null {
  switch (type) {
    case Backend.ReadyForQuery:
    case Backend.Authentication:
    case Backend.BackendKeyData:
    case Backend.ParameterStatus:
      return null;
    case Backend.CopyInResponse:
      return S.CopyIn;
    case Backend.CopyOutResponse:
      return S.CopyOut;
    case Backend.CopyBothResponse:
      return S.CopyBoth;
    case Backend.CopyDone:
      return state === S.CopyOut || state === S.CopyBoth ? S.Response : null;
    case Backend.ErrorResponse:
      return state === S.CopyIn || state === S.CopyOut || state === S.CopyBoth || state === S.Request ? S.Response : null;
    default:
      return state === S.Request ? S.Response : null;
  }
}
