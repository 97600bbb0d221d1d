// A scripted walsender on a real socket (port 0, in the test process), for the change stream's
// tests of what a real server will not do on demand: malformed messages, a stream that falls
// silent, a keepalive at a chosen point, a slot-name clash. It speaks just enough of the protocol:
// trust authentication, the setup queries the change stream sends, START_REPLICATION (then
// CopyBoth: the test sends CopyData, the fake records the status updates it gets).
import * as net from 'node:net';
import { be } from './pg-backend';
import { readStatus, type StatusUpdate } from './pgoutput-wire';
import { enc, i16 } from '../harness/wire';

export interface FakeConnection {
  socket: net.Socket;
  /** The Query strings, in order. */
  queries: string[];
  /** Standby status updates received while streaming. */
  statuses: StatusUpdate[];
  streaming: boolean;
  /** Send a CopyData with this body (XLogData or keepalive). */
  copyData(body: Buffer): void;
  send(bytes: Buffer): void;
}

export interface FakeWalsender {
  port: number;
  connections: FakeConnection[];
  /** CancelRequests received. */
  cancels: number;
  /**
   * How to answer a query; return undefined for the default answer. The default:
   * synchronous_standby_names is empty, pg_publication
   * says pgscribe_all publishes everything, CREATE_REPLICATION_SLOT succeeds at 0/1000000,
   * START_REPLICATION streams.
   */
  answer: (sql: string, c: FakeConnection) => Buffer | undefined;
  /** Called for each status update received. */
  onStatus: (s: StatusUpdate, c: FakeConnection) => void;
  close(): Promise<void>;
}

export const CONSISTENT_POINT = 0x1000000n;

function defaultAnswer(sql: string, c: FakeConnection): Buffer {
  if (sql === 'SHOW synchronous_standby_names') {
    return Buffer.concat([be.rowDesc(['synchronous_standby_names']), be.dataRow(['']), be.complete('SHOW'), be.ready()]);
  }
  if (/FROM pg_catalog\.pg_publication/.test(sql)) {
    const cols = ['pubname', 'puballtables', 'pubinsert', 'pubupdate', 'pubdelete', 'pubtruncate', 'pubviaroot'];
    return Buffer.concat([be.rowDesc(cols), be.dataRow(['pgscribe_all', 't', 't', 't', 't', 't', 'f']), be.complete('SELECT 1'), be.ready()]);
  }
  const slot = /^CREATE_REPLICATION_SLOT (\S+)/.exec(sql);
  if (slot !== null) {
    return Buffer.concat([be.rowDesc(['slot_name', 'consistent_point', 'snapshot_name', 'output_plugin']), be.dataRow([slot[1]!, '0/1000000', null, 'pgoutput']), be.complete('CREATE_REPLICATION_SLOT'), be.ready()]);
  }
  if (/^START_REPLICATION/.test(sql)) {
    c.streaming = true;
    return enc.raw('W', Buffer.concat([Buffer.from([0]), i16(0)]));
  }
  return Buffer.concat([be.sqlError('42601', `the fake walsender does not know ${sql}`), be.ready()]);
}

export async function startFakeWalsender(): Promise<FakeWalsender> {
  const fake: FakeWalsender = {
    port: 0,
    connections: [],
    cancels: 0,
    answer: () => undefined,
    onStatus: () => {},
    close: () => new Promise<void>((resolve) => {
      for (const c of fake.connections) c.socket.destroy();
      server.close(() => resolve());
    }),
  };
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    const c: FakeConnection = {
      socket,
      queries: [],
      statuses: [],
      streaming: false,
      copyData: (body) => c.send(enc.copyData(body)),
      send: (bytes) => {
        if (!socket.destroyed) socket.write(bytes);
      },
    };
    fake.connections.push(c);
    let buf = Buffer.alloc(0);
    let started = false;
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (!started) {
          if (buf.length < 4) return;
          const len = buf.readUInt32BE(0);
          if (buf.length < len) return;
          if (len >= 8 && buf.readUInt32BE(4) === 80877102) {
            // A CancelRequest: not a connection of the stream.
            fake.connections.splice(fake.connections.indexOf(c), 1);
            fake.cancels++;
            socket.destroy();
            return;
          }
          buf = buf.subarray(len);
          started = true;
          c.send(Buffer.concat([be.authOk(), be.param('server_version', '15.4'), be.keyData(1000 + fake.connections.length, 7), be.ready()]));
          continue;
        }
        if (buf.length < 5) return;
        const len = buf.readUInt32BE(1);
        if (buf.length < len + 1) return;
        const type = String.fromCharCode(buf[0]!);
        const body = buf.subarray(5, len + 1);
        buf = buf.subarray(len + 1);
        if (type === 'Q') {
          const sql = body.toString('utf8', 0, body.length - 1);
          c.queries.push(sql);
          c.send(fake.answer(sql, c) ?? defaultAnswer(sql, c));
        } else if (type === 'd') {
          const s = readStatus(body);
          c.statuses.push(s);
          fake.onStatus(s, c);
        } else if (type === 'X') {
          socket.end();
          return;
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.port = (server.address() as net.AddressInfo).port;
  return fake;
}
