/**
 * From pgoutput messages to committed transactions: which relations each one changed.
 *
 * One assembler per replication connection. pgoutput describes a relation (Relation message)
 * once per connection before its first change, and again after DDL; changes name it by oid
 * only. So the oid -> name map lives exactly as long as the connection, and a change to an oid
 * the map does not hold means the stream is not what pgoutput sends: WalDecodeError, and the
 * consumer starts over on a new connection (where every relation is described again).
 *
 * pgoutput sends only committed transactions, whole, in commit order (Begin, changes, Commit),
 * so nothing of a rolled-back transaction ever arrives, and nothing here is kept past a Commit.
 *
 * @see https://www.postgresql.org/docs/15/protocol-logical-replication.html
 */
import { pgTimeToMs } from './lsn';
import { WalDecodeError, type PgoutputMessage } from './pgoutput';

export interface ChangedRelation {
  oid: number;
  /** pgoutput's names at the time of the change: the leaf partition for a partitioned table. */
  schema: string;
  name: string;
}

export interface CommittedTransaction {
  xid: number;
  /** The commit record's LSN. */
  commitLsn: bigint;
  /** The end of the commit record: every change up to here is in this or an earlier transaction. */
  endLsn: bigint;
  /** The commit timestamp, Unix milliseconds, by the server's clock. */
  commitTimeMs: number;
  /** Every relation the transaction inserted into, updated, deleted from or truncated, once each. */
  relations: ChangedRelation[];
  /** A TRUNCATE was among the changes. */
  truncate: boolean;
}

interface Open {
  xid: number;
  relations: Map<number, ChangedRelation>;
  truncate: boolean;
}

export class TransactionAssembler {
  /** oid -> description; Map order is the eviction order (least recently described first). */
  private readonly relations = new Map<number, ChangedRelation>();
  private open: Open | null = null;
  /** Some description was dropped for room: an unknown oid may be that, not a server fault. */
  private evicted = false;

  /** maxRelations: the most descriptions kept (each ~100 bytes plus its names). */
  constructor(private readonly maxRelations: number) {}

  /** Between a Begin and its Commit. */
  get inTransaction(): boolean {
    return this.open !== null;
  }

  get relationCount(): number {
    return this.relations.size;
  }

  /**
   * Take one message. Returns the transaction at its Commit, otherwise null. Throws
   * WalDecodeError for a message out of place (a change outside a transaction, a Begin inside
   * one, a change to an undescribed relation).
   */
  apply(m: PgoutputMessage): CommittedTransaction | null {
    switch (m.type) {
      case 'begin':
        if (this.open !== null) throw new WalDecodeError(`pgoutput: Begin of xid ${m.xid} inside the transaction of xid ${this.open.xid}`);
        this.open = { xid: m.xid, relations: new Map(), truncate: false };
        return null;
      case 'commit': {
        const t = this.current('Commit');
        this.open = null;
        return {
          xid: t.xid,
          commitLsn: m.commitLsn,
          endLsn: m.endLsn,
          commitTimeMs: pgTimeToMs(m.commitTime),
          relations: [...t.relations.values()],
          truncate: t.truncate,
        };
      }
      case 'relation':
        this.describe({ oid: m.oid, schema: m.schema, name: m.name });
        return null;
      case 'insert':
      case 'update':
      case 'delete':
        this.changed(this.current(m.type), m.oid);
        return null;
      case 'truncate': {
        const t = this.current('Truncate');
        t.truncate = true;
        for (const oid of m.oids) this.changed(t, oid);
        return null;
      }
      case 'origin':
      case 'type':
      case 'message':
        // Origin: where a replayed transaction came from; Type: a type's name for the row
        // values, which are not read; Message: pg_logical_emit_message(), not asked for.
        return null;
    }
  }

  private current(what: string): Open {
    if (this.open === null) throw new WalDecodeError(`pgoutput: ${what} outside a transaction`);
    return this.open;
  }

  private describe(rel: ChangedRelation): void {
    // Re-described (after DDL, a rename): the newest names, and last in the eviction order.
    this.relations.delete(rel.oid);
    while (this.relations.size >= this.maxRelations) {
      const oldest = this.relations.keys().next();
      if (oldest.done === true) break;
      this.relations.delete(oldest.value);
      this.evicted = true;
    }
    this.relations.set(rel.oid, rel);
  }

  private changed(t: Open, oid: number): void {
    if (t.relations.has(oid)) return;
    const rel = this.relations.get(oid);
    if (rel === undefined) {
      throw new WalDecodeError(
        this.evicted
          ? `pgoutput: a change to relation ${oid}, whose description was dropped to keep at most ${this.maxRelations} (raise the limit)`
          : `pgoutput: a change to relation ${oid}, which no Relation message described`,
      );
    }
    t.relations.set(oid, rel);
  }
}
