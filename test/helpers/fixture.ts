// Bookkeeping for tests that start proxies and open raw sessions: everything started through a
// fixture is tracked, so that `cleanup()` (from t.teardown) releases it whatever happened.
// The functions are plain closures, so a test file may destructure them.

import { startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { startProxy, type Exit, type Proxy } from '../harness/proxy';
import { describeMessages, RawClient, type BackendMessage } from '../harness/wire';

export interface Session {
  c: RawClient;
  /** Messages of the startup, through the first ReadyForQuery. */
  startup: BackendMessage[];
  /** From BackendKeyData (0 when there was none). */
  pid: number;
  secret: number;
}

export interface ProxyFixture {
  /** Start a proxy in front of upstreamPort (default: the fixture's upstream); `env` adds to its environment (NODE_OPTIONS, for one). */
  launch(args?: string[], upstreamPort?: number | null, env?: Record<string, string>): Promise<Proxy>;
  /** SIGTERM, and SIGKILL if the proxy has not exited 5 s later. */
  stopProxy(p: Proxy): Promise<void>;
  /** A raw connection with Nagle off. */
  connect(port: number): Promise<RawClient>;
  /** Connect and complete a trust startup (on `database`, default postgres); throws unless it ends in ReadyForQuery. */
  sessionWithKey(port: number, database?: string): Promise<Session>;
  /** sessionWithKey, the client alone. */
  session(port: number, database?: string): Promise<RawClient>;
  /**
   * Destroy every client still open and stop every proxy still tracked: with stopProxy, or with
   * `signal` straight away when given.
   */
  cleanup(signal?: NodeJS.Signals): Promise<void>;
}

/** `upstreamPort` is read at each launch (the cluster usually starts in t.before). */
export function proxyFixture(opts: { upstreamPort: () => number; user: string }): ProxyFixture {
  const proxies = new Set<Proxy>();
  const clients = new Set<RawClient>();

  const launch = async (args: string[] = [], upstreamPort: number | null = opts.upstreamPort(), env?: Record<string, string>): Promise<Proxy> => {
    const p = await startProxy({ upstreamPort, args, ...(env === undefined ? {} : { env }) });
    proxies.add(p);
    return p;
  };

  const stopProxy = async (p: Proxy): Promise<void> => {
    proxies.delete(p);
    if (!p.alive) return;
    await p.stop('SIGTERM', { killAfterMs: 5000 });
  };

  const connect = async (port: number): Promise<RawClient> => {
    const c = await RawClient.connect(port);
    c.sock.setNoDelay(true);
    clients.add(c);
    c.sock.on('close', () => clients.delete(c));
    return c;
  };

  const sessionWithKey = async (port: number, database = 'postgres'): Promise<Session> => {
    const c = await connect(port);
    const startup = await c.startup(opts.user, database);
    const last = startup[startup.length - 1];
    if (!last || last.type !== 'Z') throw new Error(`startup did not finish: ${describeMessages(startup)}`);
    const k = startup.find((m) => m.type === 'K');
    return { c, startup, pid: k ? k.body.readInt32BE(0) : 0, secret: k ? k.body.readInt32BE(4) : 0 };
  };

  const session = async (port: number, database?: string): Promise<RawClient> => (await sessionWithKey(port, database)).c;

  const cleanup = async (signal?: NodeJS.Signals): Promise<void> => {
    for (const c of clients) c.sock.destroy();
    for (const p of proxies) {
      if (signal === undefined) await stopProxy(p);
      else if (p.alive) await p.stop(signal);
    }
  };

  return { launch, stopProxy, connect, sessionWithKey, session, cleanup };
}

/**
 * The usual file setup: one throwaway cluster started in `tap.before`, a proxy fixture in front
 * of it for the trust user, and both torn down (proxies with SIGKILL) in `tap.teardown`.
 */
export function clusterAndProxies(tap: {
  before(fn: () => Promise<void>): void;
  teardown(fn: () => Promise<void>): void;
}): { pg: () => PgCluster; fx: ProxyFixture } {
  let pg: PgCluster | undefined;
  const fx = proxyFixture({ upstreamPort: () => pg!.port, user: USERS.trust.user });
  tap.before(async () => {
    pg = await startCluster();
  });
  tap.teardown(async () => {
    await fx.cleanup('SIGKILL');
    await pg?.stop();
  });
  return { pg: () => pg!, fx };
}

/**
 * Send SIGTERM now; the returned function waits up to timeoutMs for the exit and resolves with it,
 * or with null (after SIGKILL) when the proxy did not exit in time.
 */
export function sigterm(p: Proxy): (timeoutMs: number) => Promise<Exit | null> {
  const exited = p.stop('SIGTERM');
  return async (timeoutMs) => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
    const r = await Promise.race([exited, late]);
    clearTimeout(timer);
    if (r === null) {
      p.proc.kill('SIGKILL');
      await exited;
    }
    return r;
  };
}
