/**
 * The messages between the primary (primary.ts) and its serving processes (worker-link.ts) with
 * --processes N, over Node's IPC channel (JSON). One type per message; `t` names it.
 *
 * The primary owns what must be one across processes: the listening socket and who gets each
 * connection (with its conn id), the max-connections count, the query log file, and the relay of
 * what one process must tell the others (cancel requests, invalidations).
 */

/** Where the query log's bytes arrive in the primary: fd 4 of each serving process (a pipe). */
export const LOG_PIPE_FD = 4;

/** The environment variable that makes a pgscribe process a serving process, and its index. */
export const PROCESS_INDEX_ENV = 'PGSCRIBE_PROCESS_INDEX';

// ---- primary -> serving process ------------------------------------------------------------

/** A client connection (the socket is the message's handle), and the conn id it goes by. */
export interface ConnMessage { t: 'conn'; id: number }
/**
 * The answer to an AdmitMessage: whether the session fits under max-connections, and when it
 * does not fit under max-user-connections or max-db-connections, which (`limit`).
 */
export interface AdmittedMessage { t: 'admitted'; req: number; ok: boolean; limit?: 'user' | 'database' }
/** Another process received a CancelRequest whose key is not its own: act on it if it is yours. */
export interface CancelMessage { t: 'cancel'; req: number; pid: number; secret: number; from: string }
/**
 * A write committed through another process: drop what it changed from this process's cache,
 * then ack (in wal mode, once this process's change stream has passed the server's current WAL
 * position, so that what the commit's triggers and cascades wrote is gone here too).
 */
export interface InvalidateMessage { t: 'invalidate'; req: number; db: string; tables: string[] | null }
/** Every other process acknowledged this process's InvalidateMessage `req`. */
export interface InvalidatedMessage { t: 'invalidated'; req: number }
/** SIGHUP reached the primary: reload the settings and the TLS files. */
export interface HupMessage { t: 'hup' }
/** SIGUSR2 reached the primary: print this process's stats line and send its figures. */
export interface StatsRequestMessage { t: 'stats'; req: number }
/**
 * What the admin server, which runs in the primary, needs of every process: its figures (the
 * metrics' Readings), its query digests or its table heat as plain data, or a cache flush.
 */
export type AdminQuery = 'readings' | 'digests' | 'tables' | 'flush' | 'upstreams';
/** Answer the admin server's question (AdminAnswerMessage). */
export interface AdminAskMessage { t: 'admin'; req: number; q: AdminQuery }
/** Shut down as on SIGTERM (the primary waits for the exit). */
export interface StopMessage { t: 'stop'; signal: string }

export type ToWorker = ConnMessage | AdmittedMessage | CancelMessage | InvalidateMessage | InvalidatedMessage | HupMessage | StatsRequestMessage | AdminAskMessage | StopMessage;

// ---- serving process -> primary ------------------------------------------------------------

/** Listening for connections from the primary (the cache, the log and the catalog are set up). */
export interface ReadyMessage { t: 'ready' }
/**
 * A StartupMessage arrived: may the session start (one of max-connections)? With
 * max-user-connections or max-db-connections set, its user and database are counted too.
 */
export interface AdmitMessage { t: 'admit'; req: number; user?: string; db?: string }
/** A connection ended; `admitted`: it held one of max-connections (and, with user and db, one of their limits). */
export interface GoneMessage { t: 'gone'; admitted: boolean; user?: string; db?: string }
/** An admission came back yes for a client that had already gone: give the slot back (with user and db: theirs too). */
export interface ReleaseMessage { t: 'release'; user?: string; db?: string }
/** A CancelRequest whose key no session of this process holds: ask the others. */
export interface CancelAskMessage { t: 'cancel'; req: number; pid: number; secret: number; from: string }
/** The answer to a CancelMessage: whether this process held the key. */
export interface CancelAnswerMessage { t: 'cancel-answer'; req: number; found: boolean }
/** Drop what a write through this process changed from every other process's cache. */
export interface InvalidateAskMessage { t: 'invalidate'; req: number; db: string; tables: string[] | null }
/** Done with the primary's InvalidateMessage `req`. */
export interface InvalidateAckMessage { t: 'invalidate-ack'; req: number }
/** The figures of this process's stats line, answering StatsRequestMessage `req`. */
export interface StatsMessage { t: 'stats'; req: number; fields: Record<string, number | string | boolean | undefined> }
/** The answer to AdminAskMessage `req` (Readings, InsightPart, or for a flush whether the cache is on). */
export interface AdminAnswerMessage { t: 'admin-answer'; req: number; data: unknown }
/** This process is shutting down (SIGTERM sent to it, or the primary's stop): hand it no more connections. */
export interface DrainingMessage { t: 'draining' }
/** Shut down: the query log lines this process handed to the primary in all. */
export interface ByeMessage { t: 'bye'; lines: number }

export type ToPrimary = ReadyMessage | AdmitMessage | GoneMessage | ReleaseMessage | CancelAskMessage | CancelAnswerMessage | InvalidateAskMessage | InvalidateAckMessage | StatsMessage | AdminAnswerMessage | DrainingMessage | ByeMessage;

/** A message of the right shape from the other side (anything else is ignored, and is a bug). */
export function isMessage<T extends { t: string }>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string';
}
