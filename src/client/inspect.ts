/**
 * Which messages a session looks inside. The framers deliver these whole (assembled when they
 * straddle two reads); every other message streams through in pieces as it arrives, so a 1 GB
 * DataRow never sits in memory. Each feature adds only what it reads, and what is assembled is
 * bounded (the limits below).
 */
import { Backend, Frontend, MAX_STARTUP_PACKET_BYTES } from '../protocol/codes';
import type { FramerOptions } from '../protocol/framer';

/** Server messages are trusted more than client ones, but an inspected one is still bounded. */
export const SERVER_MAX_LENGTH = 0x7fffffff;
export const SERVER_MAX_INSPECT_ALLOC = 64 << 20;

/**
 * Largest message of a type pgscribe looks inside, before the server accepted the session:
 * PostgreSQL's own bound on what it reads from a client that has not authenticated
 * (PG_MAX_AUTH_TOKEN_LENGTH, 65535, plus the length word). Messages pipelined before
 * authentication are assembled here, so without it every unauthenticated socket could make
 * pgscribe hold max-message-bytes (64 MiB).
 */
export const MAX_UNAUTHENTICATED_MESSAGE_LENGTH = 65535 + 4;

/** Backend messages the session always looks inside. */
const SERVER_ALWAYS = [
  // Only during authentication (the SASL mechanism list, see scram-filter.ts).
  Backend.Authentication,
  Backend.ReadyForQuery,
  Backend.BackendKeyData,
  Backend.CopyInResponse,
  Backend.CopyOutResponse,
  Backend.CopyBothResponse,
  Backend.CopyDone,
  Backend.ErrorResponse,
];
/** With a ledger of statements (log, completions or cache): which Parses and Closes the server did. */
const SERVER_LEDGER = [Backend.ParseComplete, Backend.CloseComplete];
/**
 * With the cache on: the session parameters of the key, and the answers to Describe (a prepared
 * statement's result description is part of its answers' keys).
 */
const SERVER_CACHE = [Backend.ParameterStatus, Backend.RowDescription, Backend.NoData, Backend.ParameterDescription];
/** With completion tracking: the messages that end a query (completions.ts). */
const SERVER_COMPLETIONS = [Backend.CommandComplete, Backend.EmptyQueryResponse, Backend.PortalSuspended];

/** The backend messages a session with these features must see whole. */
export function serverInspect(f: { ledger: boolean; cache: boolean; completions: boolean; upstreams?: boolean }): number[] {
  const inspect: number[] = [...SERVER_ALWAYS];
  if (f.ledger) inspect.push(...SERVER_LEDGER);
  if (f.cache) inspect.push(...SERVER_CACHE);
  // Several upstreams: in_hot_standby at the session's start says it reached a standby.
  else if (f.upstreams === true) inspect.push(Backend.ParameterStatus);
  if (f.completions) inspect.push(...SERVER_COMPLETIONS);
  return inspect;
}

/**
 * Frontend messages the session looks inside or acts on (log, ledger, counting Sync/Query for
 * ReadyForQuery, copy and terminate bookkeeping). Each must arrive whole even when it straddles
 * two reads, so all of them are listed; the rest may stream through.
 */
const CLIENT_ALWAYS = [
  Frontend.Query,
  Frontend.Parse,
  Frontend.Bind,
  Frontend.Execute,
  Frontend.Close,
  Frontend.Sync,
  Frontend.FunctionCall,
  Frontend.Terminate,
  Frontend.CopyDone,
  Frontend.CopyFail,
];
/**
 * With the cache on, a request unit also needs its Describe and Flush whole (cache/unit.ts); with
 * log-replay, each of them is a line (Describe with its target).
 */
const CLIENT_WHOLE_DESCRIBE = [...CLIENT_ALWAYS, Frontend.Describe, Frontend.Flush];

/** The frontend messages a session must see whole. */
export function clientInspect(cache: boolean, replay = false): number[] {
  return cache || replay ? CLIENT_WHOLE_DESCRIBE : CLIENT_ALWAYS;
}

/**
 * Frontend messages that ask the server for something, moving an idle session to `request`
 * (1 by type byte). CopyData/CopyDone/CopyFail are not among them: outside COPY the server
 * ignores them (e.g. the rest of a COPY stream after the server rejected a row), so they must
 * not make a session busy.
 */
export const STARTS_REQUEST = new Uint8Array(256);
for (const t of [
  Frontend.Query,
  Frontend.Parse,
  Frontend.Bind,
  Frontend.Execute,
  Frontend.Describe,
  Frontend.Close,
  Frontend.Sync,
  Frontend.Flush,
  Frontend.FunctionCall,
]) {
  STARTS_REQUEST[t] = 1;
}

/** The client framer's options: startup packets first, then messages up to max-message-bytes. */
export function clientFramerOptions(maxMessageBytes: number, cache: boolean, replay: boolean): FramerOptions {
  return { maxLength: maxMessageBytes, maxStartupLength: MAX_STARTUP_PACKET_BYTES, inspect: clientInspect(cache, replay), startup: true };
}

/** The server framer's options: what serverInspect() says, bounded as above. */
export function serverFramerOptions(f: Parameters<typeof serverInspect>[0]): FramerOptions {
  return { maxLength: SERVER_MAX_LENGTH, maxInspectLength: SERVER_MAX_INSPECT_ALLOC, inspect: serverInspect(f) };
}
