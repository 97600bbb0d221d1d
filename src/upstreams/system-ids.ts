/**
 * The system identifier of each upstream node (pg_control_system()), for log-replay's start
 * lines: with it a replay refuses to run against the cluster the log came from (docs/replay.md).
 * It is read once per node over pgscribe's own login (catalog-user), in the background: a
 * session never waits for it, and the start lines of sessions that begin before it is known go
 * without it. A failed read is said once per node and tried again later, backing off.
 */
import { formatHostPort, type Config, type HostPort } from '../config';
import type { OpsLog } from '../log/ops';
import { connectOwn, ownLogin, type OwnLogin } from '../pg/own-login';
import type { UpstreamTls } from '../tls';
import type { SystemIdSource } from '../client/session-start';

/** Reads one node's system identifier (decimal text); rejects with why it could not. */
export type AskSystemId = (node: HostPort) => Promise<string>;

/** After a failed read, the next waits this long, doubling up to RETRY_MAX_MS. */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 60_000;

const QUERY = 'SELECT system_identifier FROM pg_control_system()';

interface NodeState {
  readonly node: HostPort;
  id: string | undefined;
  asking: boolean;
  /** Not asked again before this time (Date.now()). */
  retryAt: number;
  retryMs: number;
  /** A failure was said (once per node, and once more when it is read at last). */
  failed: boolean;
}

export class SystemIds implements SystemIdSource {
  private readonly nodes = new Map<string, NodeState>();

  constructor(
    private readonly ask: AskSystemId,
    private readonly ops: OpsLog | null,
    private readonly now: () => number = Date.now,
  ) {}

  /** Start reading the identifiers of these nodes (the --upstream list, at start). */
  learn(nodes: readonly HostPort[]): void {
    for (const n of nodes) this.lookup(this.stateOf(formatHostPort(n), n));
  }

  get(node: string): string | undefined {
    let st = this.nodes.get(node);
    if (st === undefined) {
      // A node added by a reload: its name is the session's HOST:PORT.
      const hp = parseName(node);
      if (hp === null) return undefined;
      st = this.stateOf(node, hp);
    }
    if (st.id === undefined) this.lookup(st);
    return st.id;
  }

  private stateOf(name: string, node: HostPort): NodeState {
    let st = this.nodes.get(name);
    if (st === undefined) {
      st = { node, id: undefined, asking: false, retryAt: 0, retryMs: RETRY_FIRST_MS, failed: false };
      this.nodes.set(name, st);
    }
    return st;
  }

  private lookup(st: NodeState): void {
    if (st.id !== undefined || st.asking || this.now() < st.retryAt) return;
    st.asking = true;
    this.ask(st.node).then(
      (id) => {
        st.asking = false;
        st.id = id;
        if (st.failed) this.ops?.info('log-replay: read the system identifier of the upstream node at last', { upstream: formatHostPort(st.node), system: id });
      },
      (err: Error) => {
        st.asking = false;
        st.retryAt = this.now() + st.retryMs;
        st.retryMs = Math.min(st.retryMs * 2, RETRY_MAX_MS);
        if (st.failed) return;
        st.failed = true;
        this.ops?.warn("log-replay: cannot read the upstream node's system identifier with catalog-user; start lines go without it (a replay then tells the clusters apart by address) until it is read. catalog-user must be able to log in to that node and run pg_control_system() (any role can unless EXECUTE was revoked)", {
          upstream: formatHostPort(st.node),
          error: err.message,
        });
      },
    );
  }
}

/** HOST:PORT or [V6]:PORT, as formatHostPort writes it. */
function parseName(name: string): HostPort | null {
  const colon = name.lastIndexOf(':');
  if (colon <= 0) return null;
  const port = Number(name.slice(colon + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535) return null;
  const host = name.slice(0, colon);
  return { host: host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host, port };
}

/** Asks over pgscribe's own login, to `database`, within timeoutMs. */
export function systemIdAsker(login: OwnLogin, database: string, timeoutMs: number): AskSystemId {
  return async (node) => {
    const conn = await connectOwn({ ...login, upstream: node, connectTimeoutMs: timeoutMs }, database, timeoutMs);
    try {
      const r = await conn.query(QUERY);
      const id = r.rows[0]?.[0];
      if (id === null || id === undefined || !/^\d+$/.test(id)) throw new Error(`pg_control_system() gave no system identifier (${String(id)})`);
      return id;
    } finally {
      conn.close();
    }
  };
}

/**
 * The source log-replay's start lines read, reading every --upstream node from now on; null
 * without log-replay, or without catalog-user (no login to ask with: the lines go without).
 */
export function systemIdsOf(cfg: Config, tls: UpstreamTls | null, ops: OpsLog): SystemIds | null {
  if (!cfg.log.replay || cfg.catalog.user === '') return null;
  const ids = new SystemIds(systemIdAsker(ownLogin(cfg, tls), cfg.catalog.database, cfg.limits.connectTimeoutMs), ops);
  ids.learn(cfg.upstreams);
  return ids;
}
