/**
 * What log-replay's start line says of a session (docs/replay.md): the startup parameters a
 * replay must send again, the protocol version, the node it reached and that node's system
 * identifier. Built once per session, when PostgreSQL accepts it, and only with log-replay.
 */
import { readStartupParams } from '../protocol/messages';
import type { SessionStart } from '../log/format';

/** The nodes' system identifiers as far as known (src/log/system-ids.ts). */
export interface SystemIdSource {
  /** The system identifier of the node at HOST:PORT, or undefined while unknown. */
  get(node: string): string | undefined;
}

/**
 * The start line of a session from its StartupMessage (length word first), read as it arrives
 * (the packet is a view of a socket read, not kept); upstream and system are filled in by
 * reached() once PostgreSQL accepts the session.
 */
export function sessionStart(packet: Buffer): SessionStart {
  // No prototype: a parameter named __proto__ is a key like any other.
  const startup = Object.create(null) as Record<string, string>;
  for (const [name, value] of readStartupParams(packet, 0, packet.length)) {
    // user and database are in every line's head; a replay maps them (--map-user, --map-database).
    if (name !== 'user' && name !== 'database') startup[name] = value;
  }
  const code = packet.readUInt32BE(4);
  return { startup, protocol: `${code >>> 16}.${code & 0xffff}`, upstream: '', system: undefined };
}

/** The session reached the node at upstream (HOST:PORT) and PostgreSQL accepted it. */
export function reached(start: SessionStart, upstream: string, systemIds: SystemIdSource | null): SessionStart {
  start.upstream = upstream;
  start.system = systemIds === null ? undefined : systemIds.get(upstream);
  return start;
}
