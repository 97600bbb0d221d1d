// Helpers for the cache and singleflight tests: extended-protocol request units, raw message
// bytes, the proxy's counters, PostgreSQL's own statement counts, and the cache modes to run in.

import type { PgCluster } from '../harness/pg-cluster';
import type { Proxy } from '../harness/proxy';
import { waitFor } from '../harness/time';
import { RawClient, describeMessages, enc, errorsIn, type BackendMessage } from '../harness/wire';

/**
 * The cache layer runs in the event loop thread (workers 0) or sharded over worker threads; every
 * cache test runs in both. PGSCRIBE_TEST_WORKERS=0 (or "2") narrows it when debugging.
 */
export const WORKER_MODES: number[] = (process.env.PGSCRIBE_TEST_WORKERS ?? '0,2').split(',').map(Number);

export function workerArgs(workers: number): string[] {
  return workers === 0 ? [] : ['--workers', String(workers)];
}

/**
 * pgscribe's own catalog connection, as the harness cluster's superuser (trust over TCP): without
 * it --cache and --singleflight answer only what cache-rules allow.
 */
export const CATALOG_ARGS: readonly string[] = ['--catalog-user', 'postgres'];

/** The flags of a cache test's pgscribe: the catalog connection and the worker threads. */
export function cacheArgs(workers: number): string[] {
  return [...CATALOG_ARGS, ...workerArgs(workers)];
}

export interface UnitOptions {
  /** Parse this SQL into the unnamed statement first (null: no Parse, Bind `statement`). */
  sql: string | null;
  params?: (string | Buffer | null)[];
  paramFormats?: number[];
  resultFormats?: number[];
  /** Statement to bind when sql is null ('' = the unnamed one). */
  statement?: string;
  /** Describe the portal (default true). */
  describe?: boolean;
}

/** `[P] B [D] E S` as one buffer, the shape libpq's PQexecParams/PQexecPrepared send. */
export function extUnit(o: UnitOptions): Buffer {
  const parts: Buffer[] = [];
  if (o.sql !== null) parts.push(enc.parse('', o.sql));
  parts.push(enc.bind('', o.sql !== null ? '' : (o.statement ?? ''), o.params ?? [], o.paramFormats ?? [], o.resultFormats ?? []));
  if (o.describe !== false) parts.push(enc.describe('P', ''));
  parts.push(enc.execute(''), enc.sync());
  return Buffer.concat(parts);
}

/** Send a unit and read its answer through ReadyForQuery. */
export async function runUnit(c: RawClient, o: UnitOptions, timeoutMs = 10000): Promise<BackendMessage[]> {
  c.write(extUnit(o));
  return c.readZ(1, timeoutMs);
}

/** The messages as the wire carried them: type, length, body. */
export function wireBytes(msgs: BackendMessage[]): Buffer {
  return Buffer.concat(
    msgs.map((m) => {
      const h = Buffer.alloc(5);
      h.write(m.type, 0, 'latin1');
      h.writeUInt32BE(m.body.length + 4, 1);
      return Buffer.concat([h, m.body]);
    }),
  );
}

/** Wait until the proxy's counter `name` reaches at least n. */
export function waitCounter(p: Proxy, name: string, n: number, timeoutMs = 10000): Promise<Record<string, number>> {
  let last: Record<string, number> = {};
  return waitFor(
    async () => {
      last = await p.stats();
      return (last[name] ?? 0) >= n ? last : undefined;
    },
    { timeoutMs, timeout: () => `counter ${name} stayed at ${last[name]} (< ${n})` },
  );
}

/** How many times PostgreSQL executed statements whose text is exactly `query` (pg_stat_statements). */
export async function calls(pg: PgCluster, query: string): Promise<number> {
  const q = query.replace(/'/g, "''");
  return Number(await pg.psql(`SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query = '${q}'`));
}

/** Until `sql` (a count query run directly on the cluster) returns n. */
export async function waitUntilCount(pg: PgCluster, sql: string, n: number, timeoutMs = 10000): Promise<void> {
  let got = NaN;
  await waitFor(
    async () => {
      got = Number(await pg.psql(sql));
      return got === n ? true : undefined;
    },
    { timeoutMs, intervalMs: 25, timeout: () => `${sql}: ${got}, expected ${n}` },
  );
}

/**
 * A direct session (not through a proxy) that holds an ACCESS EXCLUSIVE lock on `table` until
 * release(): a query on it blocks inside PostgreSQL, so that others can join its flight.
 */
export async function holdTableLock(pg: PgCluster, table: string): Promise<{ release(): Promise<void> }> {
  const c = await RawClient.connect(pg.port);
  await c.startup('postgres');
  const r = await c.query(`BEGIN; LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
  if (errorsIn(r).length > 0) throw new Error(`lock failed: ${describeMessages(r)}`);
  return {
    async release() {
      await c.query('COMMIT');
      c.sock.destroy();
    },
  };
}

/** Sessions of the cluster blocked on a lock while running a statement that starts with `prefix`. */
export function lockWaitersSql(prefix: string): string {
  return `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '${prefix.replace(/'/g, "''")}%'`;
}

/** Log lines of the proxy that carry `field` (e.g. 'flight=waiter'; sql=... is the line's last field). */
export function linesWith(p: Proxy, field: string): string[] {
  return p.logLines().filter((l) => l.includes(` ${field} `) || l.endsWith(` ${field}`));
}

/** Wait until the query log holds at least n lines carrying `field`. */
export function waitLines(p: Proxy, field: string, n: number, timeoutMs = 10000): Promise<string[]> {
  return waitFor(
    () => {
      const l = linesWith(p, field);
      return l.length >= n ? l : undefined;
    },
    { timeoutMs, timeout: () => `${linesWith(p, field).length} log lines with ${field}, expected ${n}` },
  );
}
