/**
 * pgscribe's replication connection to one database: its own connection (src/pg/) with the
 * startup parameter `replication=database`, which makes the backend a walsender that takes
 * replication commands (IDENTIFY_SYSTEM, CREATE_REPLICATION_SLOT, START_REPLICATION) and, since
 * PostgreSQL 10, ordinary SQL too. START_REPLICATION enters CopyBoth mode: the walsender's
 * CopyData (XLogData, keepalives) is decoded here and handed over; status updates go back.
 *
 * Nothing the server sends throws out of here: a malformed wrapper ends the connection, and
 * onEnd() says why.
 *
 * @see https://www.postgresql.org/docs/15/protocol-replication.html
 */
import { PgConnection, type PgConnectOptions, type QueryResult } from '../pg/connection';
import { formatLsn, parseLsn } from './lsn';
import { decodeReplicationMessage, encodeStandbyStatusUpdate, type PrimaryKeepalive, type StandbyStatus, type XLogData } from './pgoutput';

/** The connection's options; `replication=database` is added to the startup parameters. */
export type ReplicationConnectOptions = Omit<PgConnectOptions, 'startupParams'>;

/** IDENTIFY_SYSTEM's answer. */
export interface SystemIdentity {
  systemId: string;
  timeline: number;
  /** The WAL flush position when asked. */
  xlogPos: bigint;
  /** The database the walsender is connected to (null for a physical one). */
  database: string | null;
}

export interface CreatedSlot {
  name: string;
  /** Where the slot's decoding starts: transactions committed later are streamed. */
  consistentPoint: bigint;
}

/** What the stream hands over, in the order the walsender sent it. */
export interface StreamHandler {
  /**
   * CopyBothResponse: streaming starts. Called before the CopyData that may follow it in the same
   * read is handed over (the startReplication() promise settles only later, in a microtask).
   */
  onStreaming(): void;
  /** One XLogData: the plugin's message is buf[x.payloadStart, x.payloadEnd), a view (copy what you keep). */
  onXLogData(x: XLogData, buf: Buffer): void;
  onKeepalive(k: PrimaryKeepalive): void;
}

/** Slot names are limited to lower-case letters, digits and '_', at most NAMEDATALEN - 1 bytes. */
const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

/** A string literal of the replication grammar and of SQL (standard_conforming_strings: no backslash escapes). */
export function quoteLiteral(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/** An identifier, quoted (`"` doubled) so that any name keeps its case and characters. */
export function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

export class ReplicationConnection {
  private readonly conn: PgConnection;
  private endListener: ((reason: string) => void) | null = null;
  /** Why it ended (not set when close() ended it). */
  private endReason: string | null = null;
  private closedByUs = false;
  /** A setup command is in flight (for close(): a walsender inside one does not read its socket). */
  private commands = 0;

  /** Connect as a walsender; rejects as PgConnection.connect() does (a role without REPLICATION: 42501). */
  static async connect(opts: ReplicationConnectOptions): Promise<ReplicationConnection> {
    const conn = await PgConnection.connect({ ...opts, startupParams: { replication: 'database' } });
    return new ReplicationConnection(conn);
  }

  private constructor(conn: PgConnection) {
    this.conn = conn;
    conn.onClose((reason) => this.end(reason));
  }

  /** The walsender's process id (pg_stat_replication.pid). */
  get backendPid(): number {
    return this.conn.backendPid;
  }

  /** The server's major version (15 for 15.4), from its server_version parameter; 0 if unknown. */
  get serverMajor(): number {
    const v = Number.parseInt(this.conn.parameters.get('server_version') ?? '', 10);
    return Number.isFinite(v) ? v : 0;
  }

  /**
   * Call cb once when the connection or its stream ends other than by close(): the connection
   * lost, the server ended the stream, a malformed message. Called at once when already over.
   */
  onEnd(cb: (reason: string) => void): void {
    const reason = this.endReason;
    if (reason !== null) queueMicrotask(() => cb(reason));
    else if (!this.closedByUs) this.endListener = cb;
  }

  /** A simple query (SQL, or a replication command); timeoutMs 0: none (the query is cancelled on timeout). */
  query(sql: string, timeoutMs: number): Promise<QueryResult> {
    this.commands++;
    return this.conn.query(sql, { timeoutMs }).finally(() => this.commands--);
  }

  /** IDENTIFY_SYSTEM: which cluster, timeline, WAL position and database. */
  async identifySystem(timeoutMs: number): Promise<SystemIdentity> {
    const r = await this.query('IDENTIFY_SYSTEM', timeoutMs);
    const row = r.rows[0];
    const xlogPos = parseLsn(row?.[2] ?? '');
    if (row === undefined || row.length < 4 || xlogPos === null) throw new Error('IDENTIFY_SYSTEM: an answer without system, timeline and position');
    return { systemId: row[0] ?? '', timeline: Number(row[1]), xlogPos, database: row[3] ?? null };
  }

  /**
   * A TEMPORARY logical slot for `plugin`, which the server drops when this connection ends (so
   * a pgscribe that dies holds no WAL), without exporting a snapshot (nobody reads one). The
   * server answers once decoding can start: after every transaction running now has ended.
   * @see https://www.postgresql.org/docs/15/protocol-replication.html (CREATE_REPLICATION_SLOT)
   */
  async createTemporarySlot(name: string, plugin: string, timeoutMs: number): Promise<CreatedSlot> {
    if (!SLOT_NAME.test(name)) throw new Error(`not a valid replication slot name: ${JSON.stringify(name)}`);
    if (!/^[a-z0-9_]+$/.test(plugin)) throw new Error(`not a valid output plugin name: ${JSON.stringify(plugin)}`);
    // PostgreSQL 15 has the option list; the older keyword is what 10 to 14 understand.
    const noSnapshot = this.serverMajor >= 15 ? "(SNAPSHOT 'nothing')" : 'NOEXPORT_SNAPSHOT';
    const r = await this.query(`CREATE_REPLICATION_SLOT ${name} TEMPORARY LOGICAL ${plugin} ${noSnapshot}`, timeoutMs);
    const row = r.rows[0];
    const consistentPoint = parseLsn(row?.[1] ?? '');
    if (row?.[0] !== name || consistentPoint === null) throw new Error(`CREATE_REPLICATION_SLOT: an unexpected answer ${JSON.stringify(row ?? null)}`);
    return { name, consistentPoint };
  }

  /**
   * START_REPLICATION SLOT slot LOGICAL startLsn (options): resolves when the server streams
   * (CopyBothResponse); rejects when it refuses or does not answer within timeoutMs. From then
   * on every CopyData goes to the handler, until onEnd().
   */
  startReplication(slot: string, startLsn: bigint, options: ReadonlyMap<string, string>, handler: StreamHandler, timeoutMs: number): Promise<void> {
    if (!SLOT_NAME.test(slot)) return Promise.reject(new Error(`not a valid replication slot name: ${JSON.stringify(slot)}`));
    for (const k of options.keys()) {
      if (!/^[a-z_][a-z0-9_]*$/.test(k)) return Promise.reject(new Error(`not a valid plugin option name: ${JSON.stringify(k)}`));
    }
    const opts = [...options].map(([k, v]) => `${k} ${quoteLiteral(v)}`).join(', ');
    const sql = `START_REPLICATION SLOT ${slot} LOGICAL ${formatLsn(startLsn)}${opts === '' ? '' : ` (${opts})`}`;
    return new Promise((resolve, reject) => {
      let streaming = false;
      this.conn
        .copyBoth(
          sql,
          {
            started: () => {
              streaming = true;
              handler.onStreaming();
              resolve();
            },
            data: (buf, start, end) => this.onCopyData(handler, buf, start, end),
          },
          { timeoutMs },
        )
        .then(
          (r) => {
            if (!streaming) reject(new Error(`START_REPLICATION ended without streaming (${r.command})`));
            else this.end(`the server ended the stream (${r.command || 'no command tag'})`);
          },
          (err: Error) => {
            if (!streaming) reject(err);
            else this.end(`the stream ended: ${err.message}`);
          },
        );
    });
  }

  /** A standby status update; false when the stream is not running (nothing sent). */
  sendStatus(s: StandbyStatus): boolean {
    return this.conn.sendCopyData(encodeStandbyStatusUpdate(s));
  }

  /** Terminate and close (a command in flight is cancelled first); onEnd is not called. */
  close(): void {
    if (this.closedByUs) return;
    this.closedByUs = true;
    this.endListener = null;
    if (this.commands > 0 && !this.conn.closed) void this.conn.cancel();
    this.conn.close();
  }

  private onCopyData(handler: StreamHandler, buf: Buffer, start: number, end: number): void {
    let m;
    try {
      m = decodeReplicationMessage(buf, start + 5, end);
    } catch (err) {
      this.fail(`the walsender sent a malformed message: ${(err as Error).message}`);
      return;
    }
    if (m.kind === 'xlog') handler.onXLogData(m, buf);
    else handler.onKeepalive(m);
  }

  /** Give up the connection because of what came over it (the owner's verdict too); onEnd says why. */
  fail(reason: string): void {
    this.end(reason);
  }

  private end(reason: string): void {
    if (this.endReason !== null || this.closedByUs) return;
    this.endReason = reason;
    if (this.commands > 0 && !this.conn.closed) void this.conn.cancel();
    this.conn.close();
    const cb = this.endListener;
    this.endListener = null;
    cb?.(reason);
  }
}
