/**
 * Replay's safety check: a replay runs the log's writes again, so it must not run against the
 * server the log was captured from. The log's `start` lines name the node each session reached
 * (`upstream`) and, when pgscribe could ask, its system identifier (`system`); the target is
 * asked for its own (`pg_control_system()`, executable by any user). A standby has its primary's
 * identifier, so a replica of the captured server is refused too.
 */
import * as dns from 'node:dns/promises';
import { PgConnection } from '../pg/connection';

export interface TargetIdentity {
  /** Its system identifier, or null when it could not be read (why in `unknownWhy`). */
  system: string | null;
  unknownWhy: string | null;
  /** The addresses the target's host name resolves to, with its port: "IP:port". */
  addresses: Set<string>;
}

/** Every "IP:port" a "host:port" may mean (a host that does not resolve stands for itself). */
export async function addressesOf(host: string, port: number): Promise<Set<string>> {
  try {
    const all = await dns.lookup(host, { all: true });
    const out = new Set(all.map((a) => `${a.address}:${port}`));
    // localhost may resolve to ::1 alone while the server was reached as 127.0.0.1.
    if (all.some((a) => a.address === '::1' || a.address === '127.0.0.1')) {
      out.add(`127.0.0.1:${port}`);
      out.add(`::1:${port}`);
    }
    return out;
  } catch {
    return new Set([`${host}:${port}`]);
  }
}

/** "host:port" or "[v6]:port" of a start line's upstream. */
export function splitHostPort(s: string): { host: string; port: number } | null {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(s);
  if (m === null) return null;
  return { host: m[1]!, port: Number(m[2]) };
}

export async function readTargetIdentity(o: { host: string; port: number; user: string; database: string; password: string; connectTimeoutMs: number }): Promise<TargetIdentity> {
  const addresses = await addressesOf(o.host, o.port);
  let conn: PgConnection | null = null;
  try {
    conn = await PgConnection.connect({ host: o.host, port: o.port, user: o.user, database: o.database, password: o.password, applicationName: 'pgscribe replay check', connectTimeoutMs: o.connectTimeoutMs, tls: null, queryTimeoutMs: o.connectTimeoutMs });
    const r = await conn.query('SELECT system_identifier::text FROM pg_control_system()');
    const v = r.rows[0]?.[0];
    return { system: typeof v === 'string' ? v : null, unknownWhy: typeof v === 'string' ? null : 'pg_control_system() returned nothing', addresses };
  } catch (err) {
    return { system: null, unknownWhy: (err as Error).message, addresses };
  } finally {
    conn?.close();
  }
}

/** Why the target may be the captured server (null: it is not, as far as the log tells). */
export async function sameServer(target: TargetIdentity, line: { system: string | null; upstream: string | null }): Promise<string | null> {
  if (line.system !== null) {
    if (target.system === line.system) return `the target's system identifier ${target.system} is the one the log was captured from (or a standby of it)`;
    if (target.system === null) return `the log records system identifier ${line.system} and the target's could not be read (${target.unknownWhy}), so replay cannot tell it is another server`;
    return null;
  }
  if (line.upstream !== null) {
    const hp = splitHostPort(line.upstream);
    if (hp === null) return null;
    const theirs = await addressesOf(hp.host, hp.port);
    for (const a of theirs) if (target.addresses.has(a)) return `the target is ${line.upstream}, the server the log was captured from (the log has no system identifier: capture with catalog-user set records it)`;
  }
  return null;
}
