// pgscribe's Server inside the test process: no child process, no query log file. The test
// plugs in the ClientLogger (a RecordingLogger unless it brings its own) and reads what the Server
// did from that logger and from the Server object itself; clients connect to a real port.

import { parseCommandLine, type Config } from '../../src/config';
import type { ClientLogger } from '../../src/log/client-logger';
import type { OpsLog, OpsFields } from '../../src/log/ops';
import { Server } from '../../src/server';
import type { Test } from 'tap';
import { USERS } from './pg-cluster';
import { RecordingLogger } from './recording-logger';
import { RawClient, type BackendMessage } from './wire';

export interface InProcessOptions<L extends ClientLogger> {
  upstreamPort: number;
  upstreamHost?: string;
  /** More pgscribe flags, read as its command line reads them (--listen and --upstream are set here). */
  args?: string[];
  /** The query logger to plug in (default: a new RecordingLogger). */
  logger?: L;
}

/** One line of the ops log, kept instead of printed. */
export interface OpsLine {
  level: 'INFO' | 'WARN' | 'ERROR';
  msg: string;
  fields: OpsFields | undefined;
}

export interface InProcessProxy<L extends ClientLogger> {
  server: Server;
  logger: L;
  /** What the Server said on its ops log. */
  ops: OpsLine[];
  host: string;
  port: number;
  /** Shut the Server down (sessions closed after graceMs, default 1 s) and close the logger. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * The one place a test builds a Server: when its constructor changes, only this changes.
 * Everything else the Server can take (cache, TLS, insight) is left at its default: off.
 */
function buildServer(config: Config, logger: ClientLogger, ops: OpsLog): Server {
  return new Server(config, logger, ops);
}

/** Build a Server in front of upstreamPort with the given (or a recording) logger, listening on 127.0.0.1:0. */
export async function startInProcess<L extends ClientLogger = RecordingLogger>(opts: InProcessOptions<L>): Promise<InProcessProxy<L>> {
  const cmd = parseCommandLine(['--listen', '127.0.0.1:0', '--upstream', `${opts.upstreamHost ?? '127.0.0.1'}:${opts.upstreamPort}`, '--log', 'none', ...(opts.args ?? [])]);
  if (cmd.kind !== 'run') throw new Error(`not a run command: ${cmd.kind}`);
  const logger = opts.logger ?? (new RecordingLogger() as ClientLogger as L);
  const lines: OpsLine[] = [];
  const keep = (level: OpsLine['level']) => (msg: string, fields?: OpsFields) => void lines.push({ level, msg, fields });
  const server = buildServer(cmd.config, logger, { info: keep('INFO'), warn: keep('WARN'), error: keep('ERROR') });
  const addr = await server.listen();
  let stopped: Promise<void> | null = null;
  return {
    server,
    logger,
    ops: lines,
    host: '127.0.0.1',
    port: addr.port,
    stop(graceMs = 1000) {
      stopped ??= server.shutdown(graceMs).then(() => logger.close());
      return stopped;
    },
  };
}

/**
 * An in-process proxy in front of upstreamPort, recording its query log, and one raw session
 * through it started as the trust user; both end with the test. `startup` is what the session's
 * startup got back, for the test to check.
 */
export async function rawSessionThrough(
  t: Test,
  upstreamPort: number,
): Promise<{ ip: InProcessProxy<RecordingLogger>; c: RawClient; startup: BackendMessage[] }> {
  const ip = await startInProcess({ upstreamPort });
  t.teardown(() => ip.stop());
  const c = await RawClient.connect(ip.port);
  t.teardown(() => c.sock.destroy());
  const startup = await c.startup(USERS.trust.user);
  return { ip, c, startup };
}
