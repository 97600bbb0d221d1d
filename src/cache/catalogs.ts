/**
 * The catalog knowledge of every database the sessions use (src/catalog/), over pgscribe's own
 * connections (src/pg/): one per database, opened when the first session of that database asks,
 * with the catalog-user credentials, and opened again with backoff when it is lost. A database
 * whose knowledge is not ready is served nothing from the cache; each change of what the catalog
 * says (a reload, a lost connection) drops that database's cached answers. In wal mode each
 * database's change stream (change-streams.ts) starts with its knowledge.
 */
import type { HostPort } from '../config';
import type { OpsLog } from '../log/ops';
import { CatalogKnowledge } from '../catalog/knowledge';
import type { CatalogRows, CatalogSource } from '../catalog/source';
import type { PgConnection } from '../pg/connection';
import { connectOwn } from '../pg/own-login';
import type { UpstreamTls } from '../tls';
import { OWN_SQL_MARK } from './probe';
import type { ChangeStreams } from './change-streams';

export interface CatalogSettings {
  upstream: HostPort;
  user: string;
  password: string;
  pollMs: number;
  connectTimeoutMs: number;
  tls: UpstreamTls | null;
  /** wal mode: each database's change stream, started with its knowledge. Null or absent: ttl mode. */
  streams?: ChangeStreams | null;
}


/** The longest wait before connecting again. */
const MAX_BACKOFF_MS = 10_000;
/** More databases than this get no catalog connection (their sessions are not served). */
const MAX_DATABASES = 64;

/** One database: its connection (while up) and its knowledge. */
class DatabaseCatalog implements CatalogSource {
  readonly knowledge: CatalogKnowledge;
  /** Settles when the first load is over (whether it worked: knowledge.ready). */
  firstLoad: Promise<void> = Promise.resolve();
  /** The first load is over. */
  loaded = false;
  private conn: PgConnection | null = null;
  private connecting: Promise<PgConnection> | null = null;
  private backoffMs = 250;
  private down: string | null = null;
  private closed = false;

  constructor(
    private readonly db: string,
    private readonly settings: CatalogSettings,
    private readonly ops: OpsLog,
  ) {
    this.knowledge = new CatalogKnowledge(this, {
      pollMs: settings.pollMs,
      onError: (err) => this.trouble(err.message),
      publication: settings.streams?.publication ?? null,
    });
  }

  start(): void {
    this.firstLoad = this.knowledge.start().then(() => {
      this.loaded = true;
    });
  }

  async query(sql: string): Promise<CatalogRows> {
    const conn = await this.connection();
    const r = await conn.query(`${OWN_SQL_MARK} ${sql}`);
    return { fields: r.fields, rows: r.rows };
  }

  private connection(): Promise<PgConnection> {
    if (this.conn !== null) return Promise.resolve(this.conn);
    if (this.closed) return Promise.reject(new Error('the catalog connections are closed'));
    this.connecting ??= connectOwn(this.settings, this.db, 30_000).then(
      (conn) => {
        this.connecting = null;
        if (this.closed) {
          conn.close();
          throw new Error('the catalog connections are closed');
        }
        this.conn = conn;
        this.backoffMs = 250;
        conn.onClose((reason) => {
          this.conn = null;
          this.trouble(`connection lost: ${reason}`);
          this.retry();
        });
        if (this.down !== null) {
          this.down = null;
          this.ops.info('catalog: connection back; the cache serves this database again once its catalog is read', { db: this.db });
        }
        return conn;
      },
      (err: Error) => {
        this.connecting = null;
        this.retry();
        throw err;
      },
    );
    return this.connecting;
  }

  /** Said once per outage: what happened, for which database, and what it means. */
  private trouble(reason: string): void {
    if (this.down !== null || this.closed) return;
    this.down = reason;
    this.ops.warn('catalog: cannot read the catalog; answers of this database are not served from the cache until it can', {
      db: this.db,
      user: this.settings.user,
      reason,
    });
  }

  /** Connect again after a backoff, and reload the knowledge. */
  private retry(): void {
    if (this.closed) return;
    const wait = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    setTimeout(() => {
      if (!this.closed) void this.knowledge.refresh();
    }, wait).unref();
  }

  /** The upstream primary changed (a failover): connect to it now, not after the backoff grown while there was none. */
  retryNow(): void {
    if (this.closed || this.conn !== null) return;
    this.backoffMs = 250;
    void this.knowledge.refresh();
  }

  close(): void {
    this.closed = true;
    this.knowledge.stop();
    this.conn?.close();
    this.conn = null;
  }
}

export class Catalogs {
  private readonly dbs = new Map<string, DatabaseCatalog>();

  /** changed(db): what the catalog says of db changed; drop its cached answers. */
  constructor(
    private readonly settings: CatalogSettings,
    private readonly ops: OpsLog,
    private readonly changed: (db: string) => void,
  ) {}

  /** A new upstream primary: every database whose connection is down connects to it now. */
  retryNow(): void {
    for (const d of this.dbs.values()) d.retryNow();
  }

  /** The knowledge of db (connecting on first use), or null when there are too many databases. */
  of(db: string): CatalogKnowledge | null {
    return this.database(db)?.knowledge ?? null;
  }

  /**
   * While db's catalog is read for the first time: a promise settled when that is over (a
   * session's first cacheable read waits for it rather than being relayed); otherwise null.
   */
  firstLoad(db: string): Promise<void> | null {
    const d = this.database(db);
    return d === null || d.loaded ? null : d.firstLoad;
  }

  private database(db: string): DatabaseCatalog | null {
    let d = this.dbs.get(db);
    if (d === undefined) {
      if (this.dbs.size >= MAX_DATABASES) return null;
      d = new DatabaseCatalog(db, this.settings, this.ops);
      this.dbs.set(db, d);
      // The first load changes nothing: nothing of db was answered from the cache before it.
      // (Announcing it would also make the other instances sharing Redis drop their answers.)
      const first = d;
      d.knowledge.onChange(() => {
        if (first.loaded) this.changed(db);
      });
      d.start();
      this.settings.streams?.start(db, d.knowledge, d);
    }
    return d;
  }

  /**
   * At start-up: try pgscribe's own login on `database` once and say how it went, so that an
   * operator learns about wrong credentials at start rather than from an idle cache.
   */
  async check(database: string): Promise<void> {
    const s = this.settings;
    try {
      const conn = await connectOwn(s, database);
      const r = await conn.query(`${OWN_SQL_MARK} SELECT current_user, version()`);
      conn.close();
      this.ops.info('catalog: pgscribe\'s own connection works; the cache reads each database\'s catalog through it', {
        user: r.rows[0]?.[0] ?? s.user,
        database,
        server: r.rows[0]?.[1]?.split(' ').slice(0, 2).join(' ') ?? undefined,
      });
    } catch (err) {
      this.ops.warn('catalog: pgscribe\'s own connection fails; the cache serves nothing from a database whose catalog it cannot read. Check catalog-user and catalog-password', {
        user: s.user,
        database,
        reason: (err as Error).message,
      });
    }
  }

  close(): void {
    this.settings.streams?.close();
    for (const d of this.dbs.values()) d.close();
    this.dbs.clear();
  }
}
