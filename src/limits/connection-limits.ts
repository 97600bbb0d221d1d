/**
 * Per-user and per-database session limits (max-user-connections, max-db-connections), like
 * PgBouncer's max_user_connections and max_db_connections: the admitted sessions counted by the
 * user and the database of their StartupMessage. One process's Server keeps one; with
 * --processes N the primary keeps the one that counts (src/processes/primary.ts), and each
 * serving process's sessions are also tallied there, to be given back if that process dies.
 */

/** Which limit refused a session: 'connections' is max-connections. */
export type LimitRefusal = 'connections' | 'user' | 'database';

/** Who a session is, for the limits: the user and database of its StartupMessage. */
export interface SessionIdentity {
  readonly user: string;
  readonly database: string;
}

/** Counts by key; a key whose count falls to 0 is forgotten (users and databases come and go). */
class Counts {
  private readonly m = new Map<string, number>();
  get(k: string): number {
    return this.m.get(k) ?? 0;
  }
  add(k: string, d: number): void {
    const n = this.get(k) + d;
    if (n <= 0) this.m.delete(k);
    else this.m.set(k, n);
  }
  get size(): number {
    return this.m.size;
  }
}

export class ConnectionLimits {
  private readonly users = new Counts();
  private readonly databases = new Counts();

  constructor(
    /** 0: no limit. */
    private maxPerUser: number,
    /** 0: no limit. */
    private maxPerDatabase: number,
  ) {}

  /**
   * A reload changed the limits. Only between values that keep them on (or off): sessions admitted
   * while both were off were never counted, so turning them on or off live would count wrong
   * (config/live.ts keeps such a change for a restart). Sessions over a lowered limit stay; new
   * ones wait for the count to come down.
   */
  setLimits(maxPerUser: number, maxPerDatabase: number): void {
    if ((maxPerUser > 0 || maxPerDatabase > 0) !== this.active) throw new Error('internal error: the per-user and per-database limits cannot be turned on or off live');
    this.maxPerUser = maxPerUser;
    this.maxPerDatabase = maxPerDatabase;
  }

  /** Whether either limit is set (none: nothing to count). */
  get active(): boolean {
    return this.maxPerUser > 0 || this.maxPerDatabase > 0;
  }

  /** Count the session in, or say which limit it is over (then nothing is counted). Without limits, nothing is counted at all. */
  take(who: SessionIdentity): LimitRefusal | null {
    if (!this.active) return null;
    if (this.maxPerUser > 0 && this.users.get(who.user) >= this.maxPerUser) return 'user';
    if (this.maxPerDatabase > 0 && this.databases.get(who.database) >= this.maxPerDatabase) return 'database';
    this.users.add(who.user, 1);
    this.databases.add(who.database, 1);
    return null;
  }

  /** A session counted by take() ended. */
  release(who: SessionIdentity): void {
    if (!this.active) return;
    this.users.add(who.user, -1);
    this.databases.add(who.database, -1);
  }

  /** Sessions of this user / database counted now. */
  ofUser(user: string): number {
    return this.users.get(user);
  }
  ofDatabase(database: string): number {
    return this.databases.get(database);
  }

  /** Users and databases with a session (the maps hold no others). */
  get keys(): number {
    return this.users.size + this.databases.size;
  }
}

/**
 * The sessions one serving process holds, by (user, database), in the primary: when that process
 * dies they are given back to the one ConnectionLimits in one go.
 */
export class SessionTally {
  private readonly pairs = new Map<string, { who: SessionIdentity; n: number }>();

  add(who: SessionIdentity): void {
    const k = JSON.stringify([who.user, who.database]);
    const e = this.pairs.get(k);
    if (e === undefined) this.pairs.set(k, { who: { user: who.user, database: who.database }, n: 1 });
    else e.n++;
  }

  /** False when this pair holds nothing here (a message out of step: nothing is given back). */
  remove(who: SessionIdentity): boolean {
    const k = JSON.stringify([who.user, who.database]);
    const e = this.pairs.get(k);
    if (e === undefined) return false;
    if (--e.n === 0) this.pairs.delete(k);
    return true;
  }

  /** Everything held, emptied: for each (user, database) and how many. */
  drain(): { who: SessionIdentity; n: number }[] {
    const all = [...this.pairs.values()];
    this.pairs.clear();
    return all;
  }
}
