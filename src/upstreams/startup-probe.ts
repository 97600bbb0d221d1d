/**
 * One health check of one upstream node without credentials (no catalog-user): connect (with
 * SSLRequest as --upstream-tls says), send a StartupMessage as health-user, and read the first
 * answer. HAProxy's pgsql-check does the same.
 *
 * - An authentication request (password, md5, SCRAM): the node is up and accepts sessions. The
 *   probe hangs up before answering it; PostgreSQL logs nothing for a client that leaves without
 *   offering a password. Whether the node is in recovery is not known (inRecovery null): the
 *   sessions say (in_hot_standby, see upstream-set.ts).
 * - AuthenticationOk (trust for health-user): the probe reads on to ReadyForQuery; PostgreSQL 14
 *   and later report in_hot_standby on the way, so the role is known, as with a login.
 * - An ErrorResponse about the login (28000 no such role or no pg_hba.conf entry, 28P01, 3D000,
 *   53300 too many connections): the node is up; PostgreSQL checked who asked, so it runs.
 *   Note that PostgreSQL logs a FATAL line for each of those: choose a health-user that may connect.
 * - 57P03 (starting up, shutting down, in recovery without hot standby), any other class 57 or
 *   08 error, a refused or silent connection: the check fails.
 *
 * @see https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-START-UP
 */
import type * as net from 'node:net';
import type { HostPort } from '../config';
import { decodeError, encodeStartup } from '../pg/messages';
import { openSocket } from '../pg/socket';
import { decodeParameterStatus } from '../protocol/messages';
import { Framer } from '../protocol/framer';
import type { UpstreamTls } from '../tls';
import type { NodeReport } from './health-check';

export interface ProbeLogin {
  user: string;
  database: string;
  tls: UpstreamTls | null;
}

const AUTHENTICATION = 0x52; // 'R'
const ERROR_RESPONSE = 0x45; // 'E'
const PARAMETER_STATUS = 0x53; // 'S'
const READY_FOR_QUERY = 0x5a; // 'Z'
const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);
/** The answers to a startup are small; anything larger is not PostgreSQL. */
const MAX_MESSAGE = 64 * 1024;

/** SQLSTATEs that say the node does not take sessions now (not: who asked may not log in). */
function meansNotServing(code: string): boolean {
  return code.startsWith('57') || code.startsWith('08') || code.startsWith('XX');
}

/** Probes `node` within timeoutMs; rejects with the reason it does not take sessions. */
export function probeNode(login: ProbeLogin, node: HostPort, timeoutMs: number): Promise<NodeReport> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket | null = null;
    let settled = false;
    let loggedIn = false;
    let hotStandby: boolean | null = null;
    const finish = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (socket !== null) {
        if (loggedIn && err === null && socket.writable) socket.end(TERMINATE);
        else socket.end();
        const s = socket;
        setTimeout(() => s.destroy(), 1000).unref();
      }
      raw.destroy();
      if (err !== null) reject(err);
      else resolve({ inRecovery: hotStandby, replayLsn: null, replayLagMs: null, walLsn: null });
    };
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    const framer = new Framer(
      {
        onMessage(type, buf, start, end) {
          if (settled) return;
          try {
            if (type === AUTHENTICATION) {
              if (end - start < 9) return finish(new Error('a malformed authentication request'));
              if (buf.readInt32BE(start + 5) !== 0) return finish(null); // a password is asked: up
              loggedIn = true;
            } else if (type === ERROR_RESPONSE) {
              const e = decodeError(buf, start, end);
              if (meansNotServing(e.code)) return finish(new Error(`${e.code}: ${e.message}`));
              return finish(null);
            } else if (type === PARAMETER_STATUS && loggedIn) {
              const p = decodeParameterStatus(buf, start, end);
              if (p.name === 'in_hot_standby') hotStandby = p.value === 'on';
            } else if (type === READY_FOR_QUERY && loggedIn) {
              finish(null);
            }
          } catch (err) {
            finish(new Error(`not a PostgreSQL answer: ${(err as Error).message}`));
          }
        },
        onPassthrough() {
          // Every type is assembled (inspect below): nothing passes through.
        },
        onFramingError(reason) {
          finish(new Error(`not a PostgreSQL answer: ${reason}`));
        },
      },
      { maxLength: MAX_MESSAGE, inspect: Array.from({ length: 256 }, (_, i) => i) },
    );
    const raw = openSocket(node.host, node.port, login.tls, (r) => {
      if ('error' in r) return finish(new Error(r.error.message));
      if (settled) return void r.socket.destroy();
      socket = r.socket;
      socket.on('error', (err: Error) => finish(new Error(err.message)));
      socket.on('close', () => finish(new Error('the server closed the connection during startup')));
      socket.on('data', (chunk: Buffer) => framer.push(chunk));
      socket.resume();
      socket.write(encodeStartup(new Map([['user', login.user], ['database', login.database], ['application_name', 'pgscribe health check']])));
    });
  });
}
