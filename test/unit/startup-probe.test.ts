// The health check without credentials (src/upstreams/startup-probe.ts) against a scripted server:
// what each first answer to a StartupMessage means (up with the role unknown, up with the role
// known through trust, not serving, not PostgreSQL), the StartupMessage it sends, that it says
// Terminate after a trust login, and the trust answer split at every byte offset.
import t, { type Test } from 'tap';
import * as net from 'node:net';
import { probeNode } from '../../src/upstreams/startup-probe';
import { readStartupParams } from '../../src/protocol/messages';
import { i32, msg } from '../harness/wire';

const auth = (code: number) => msg('R', code === 10 ? Buffer.concat([i32(10), Buffer.from('SCRAM-SHA-256\0\0')]) : i32(code));
const param = (k: string, v: string) => msg('S', Buffer.from(`${k}\0${v}\0`));
const error = (code: string, text: string) => msg('E', Buffer.from(`SFATAL\0VFATAL\0C${code}\0M${text}\0\0`));
const ready = msg('Z', Buffer.from('I'));

/** A server whose answer to each connection's StartupMessage is written in the pieces given. */
async function server(t: Test, answer: () => Buffer[] | 'silent' | 'close') {
  const seen: { params: Map<string, string>; after: Buffer }[] = [];
  const srv = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    let started = false;
    const rec = { params: new Map<string, string>(), after: Buffer.alloc(0) };
    sock.on('error', () => {});
    sock.on('data', (d) => {
      if (started) {
        rec.after = Buffer.concat([rec.after, d]);
        return;
      }
      buf = Buffer.concat([buf, d]);
      if (buf.length < 4 || buf.length < buf.readUInt32BE(0)) return;
      started = true;
      rec.params = readStartupParams(buf, 0, buf.readUInt32BE(0));
      seen.push(rec);
      const a = answer();
      if (a === 'silent') return;
      if (a === 'close') return void sock.destroy();
      let i = 0;
      const next = () => {
        if (i < a.length && !sock.destroyed) {
          sock.write(a[i++]!);
          setTimeout(next, 2);
        }
      };
      next();
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  return { node: { host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port }, seen };
}

const login = { user: 'prober', database: 'meta', tls: null };

t.test('a password request: up, role unknown; the StartupMessage names health-user and the database', async (t) => {
  for (const code of [3, 5, 10]) {
    const s = await server(t, () => [auth(code)]);
    t.same(await probeNode(login, s.node, 1000), { inRecovery: null, replayLsn: null, replayLagMs: null, walLsn: null }, `authentication code ${code}`);
    t.equal(s.seen[0]!.params.get('user'), 'prober');
    t.equal(s.seen[0]!.params.get('database'), 'meta');
    t.equal(s.seen[0]!.params.get('application_name'), 'pgscribe health check');
  }
});

t.test('trust: the role from in_hot_standby, and Terminate before hanging up', async (t) => {
  for (const [value, inRecovery] of [['on', true], ['off', false]] as const) {
    const s = await server(t, () => [Buffer.concat([auth(0), param('server_version', '15.4'), param('in_hot_standby', value), msg('K', Buffer.alloc(8)), ready])]);
    t.match(await probeNode(login, s.node, 1000), { inRecovery }, `in_hot_standby ${value}`);
    await new Promise((r) => setTimeout(r, 50));
    t.same([...s.seen[0]!.after], [0x58, 0, 0, 0, 4], 'Terminate');
  }
  const old = await server(t, () => [Buffer.concat([auth(0), param('server_version', '13.1'), ready])]);
  t.match(await probeNode(login, old.node, 1000), { inRecovery: null }, 'PostgreSQL 13 says no in_hot_standby: unknown');
});

t.test('the trust answer split at every byte offset', async (t) => {
  const whole = Buffer.concat([auth(0), param('in_hot_standby', 'on'), ready]);
  let k = 0;
  const s = await server(t, () => [whole.subarray(0, k), whole.subarray(k)]);
  for (k = 1; k < whole.length; k++) {
    const r = await probeNode(login, s.node, 1000);
    if (r.inRecovery !== true) t.fail(`split at ${k}: ${JSON.stringify(r)}`);
  }
  t.equal(s.seen.length, whole.length - 1, `${whole.length - 1} splits, each read whole`);
});

t.test('errors: about who asks, the node is up; about the node, the check fails', async (t) => {
  for (const code of ['28000', '28P01', '3D000', '53300']) {
    const s = await server(t, () => [error(code, 'no')]);
    t.match(await probeNode(login, s.node, 1000), { inRecovery: null }, `${code}: up`);
  }
  for (const [code, text] of [['57P03', 'the database system is starting up'], ['57P01', 'terminating connection due to administrator command'], ['08P01', 'invalid startup packet layout']]) {
    const s = await server(t, () => [error(code!, text!)]);
    await t.rejects(probeNode(login, s.node, 1000), new RegExp(`^${code}: ${text}$`), `${code}: not serving`);
  }
});

t.test('not PostgreSQL, silence, a hang-up, a refused connection', async (t) => {
  const http = await server(t, () => [Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')]);
  await t.rejects(probeNode(login, http.node, 1000), /not a PostgreSQL answer/, 'an HTTP server');
  const silent = await server(t, () => 'silent');
  await t.rejects(probeNode(login, silent.node, 100), /no answer within 100 ms/, 'silence');
  const closes = await server(t, () => 'close');
  await t.rejects(probeNode(login, closes.node, 1000), /closed the connection during startup/, 'hung up');
  const port = closes.node.port;
  const gone = net.createServer();
  await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
  const free = (gone.address() as net.AddressInfo).port;
  await new Promise((r) => gone.close(r));
  t.not(free, port);
  await t.rejects(probeNode(login, { host: '127.0.0.1', port: free }, 1000), /ECONNREFUSED/, 'refused');
});
