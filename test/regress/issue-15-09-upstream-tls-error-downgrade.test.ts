// Issue 15, security finding 9: with --upstream-tls verify-full, an upstream that answered the
// SSLRequest with 'E' had its error relayed, and then pgscribe carried on in plaintext: a fake
// upstream received the client's cleartext password and the session's queries. libpq treats that
// answer as the end of the connection; so does pgscribe now. The fake upstream answers with a
// whole ErrorResponse, then asks for a cleartext password, and records every byte it gets.
import t from 'tap';
import * as net from 'node:net';
import { makeCerts } from '../harness/certs';
import { startProxy, type Proxy } from '../harness/proxy';
import { RawClient, enc, errorsIn } from '../harness/wire';
import { sleep } from '../harness/time';

const ERROR = Buffer.from('E\0\0\0\0SFATAL\0VFATAL\0C53300\0Msorry, too many clients already\0\0', 'latin1');
ERROR.writeUInt32BE(ERROR.length - 1, 1);
/** AuthenticationCleartextPassword: what a hostile upstream would ask next. */
const ASK_PASSWORD = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]);

interface Fake {
  port: number;
  /** Bytes received after the 8-byte SSLRequest, per connection. */
  after: Buffer[];
  close(): Promise<void>;
}

/** split: the error in two writes, to check that pgscribe waits for the whole message. */
function fakeUpstream(split: boolean): Promise<Fake> {
  const after: Buffer[] = [];
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('close', () => socks.delete(s));
    s.on('error', () => {});
    let got = Buffer.alloc(0);
    const k = after.push(Buffer.alloc(0)) - 1;
    let answered = false;
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (!answered && got.length >= 8) {
        answered = true;
        if (split) {
          s.write(ERROR.subarray(0, 7));
          setTimeout(() => s.write(Buffer.concat([ERROR.subarray(7), ASK_PASSWORD])), 50);
        } else {
          s.write(Buffer.concat([ERROR, ASK_PASSWORD]));
        }
      }
      after[k] = got.subarray(8);
    });
  });
  return new Promise((resolve) => {
    srv.listen(0, '127.0.0.1', () => {
      resolve({
        port: (srv.address() as net.AddressInfo).port,
        after,
        close: () =>
          new Promise((r) => {
            for (const s of socks) s.destroy();
            srv.close(() => r());
          }),
      });
    });
  });
}

const certs = makeCerts();
const proxies: Proxy[] = [];
t.teardown(async () => {
  for (const p of proxies) if (p.alive) await p.stop('SIGTERM', { killAfterMs: 5000 });
});

for (const split of [false, true]) {
  for (const mode of ['verify-full', 'require']) {
    t.test(`--upstream-tls ${mode}, the error ${split ? 'in two writes' : 'in one'}: relayed, then the end; nothing in plaintext`, async (t) => {
      const fake = await fakeUpstream(split);
      t.teardown(() => fake.close());
      const p = await startProxy({ upstreamPort: fake.port, args: ['--upstream-tls', mode, '--upstream-tls-ca', certs.ca] });
      proxies.push(p);
      const c = await RawClient.connect(p.port);
      c.write(enc.startup({ user: 'victim', database: 'postgres' }));
      const r = await c.readUntilClosed(8000);
      t.ok(r.closed, 'the client connection is closed');
      t.same(r.msgs.map((m) => m.type), ['E'], 'exactly the server error, not its password request');
      t.equal(errorsIn(r.msgs)[0]?.['C'], '53300', "the server's own error");
      // A client that would answer the password request anyway: it must go nowhere.
      if (!c.sock.destroyed) c.write(Buffer.from([0x70, 0, 0, 0, 11, 0x73, 0x33, 0x63, 0x72, 0x33, 0]));
      await sleep(200);
      t.same(fake.after.map((b) => b.toString('latin1')), [''], 'the fake upstream got nothing after its SSLRequest: no startup packet, no password');
      await p.waitStderr(/WARN upstream answered the SSL request with an error; passing it on to the client and closing/);
      await p.stop('SIGTERM', { killAfterMs: 5000 });
    });
  }
}
