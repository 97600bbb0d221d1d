// Issue 15, finding 20 (the hostile-upstream fuzzer, bench/fuzz/upstream.ts): a server message
// that the session's state cannot take (a COPY answer during authentication, ReadyForQuery in the
// middle of COPY FROM STDIN, COPY TO STDOUT that nobody asked for) made pgscribe log "internal
// error: illegal client state transition" and drop the client without a word. It is the server's
// protocol violation, not a pgscribe bug: the client now gets pgscribe's 08006 "upstream server
// sent an invalid message" before the close, as for any other invalid server message, and the
// operator reads that in the log. The fake upstream plays a trust login, then the fault.
import t from 'tap';
import * as net from 'node:net';
import { startProxy, type Proxy } from '../harness/proxy';
import { RawClient, describeMessages, enc, errorsIn } from '../harness/wire';

const msg = (type: string, body: Buffer): Buffer => enc.raw(type, body);
const AUTH_OK = msg('R', Buffer.from([0, 0, 0, 0]));
const KEY = msg('K', Buffer.from([0, 0, 0, 1, 0, 0, 0, 2]));
const READY = msg('Z', Buffer.from('I'));
/** CopyInResponse / CopyOutResponse: text format, one column. */
const COPY_IN = msg('G', Buffer.from([0, 0, 1, 0, 0]));
const COPY_OUT = msg('H', Buffer.from([0, 0, 1, 0, 0]));

interface Fault {
  name: string;
  /** Sent after the StartupMessage. */
  login: Buffer;
  /** Sent when the client's query arrives (null: the login alone is the fault). */
  answer: Buffer | null;
}

const FAULTS: Fault[] = [
  { name: 'CopyOutResponse during authentication', login: Buffer.concat([AUTH_OK, COPY_OUT]), answer: null },
  { name: 'ReadyForQuery in the middle of COPY FROM STDIN', login: Buffer.concat([AUTH_OK, KEY, READY]), answer: Buffer.concat([COPY_IN, READY]) },
  { name: 'CopyOutResponse while idle', login: Buffer.concat([AUTH_OK, KEY, READY, COPY_OUT]), answer: null },
];

/** A fake upstream playing one fault on every connection. */
function fakeUpstream(f: Fault): Promise<{ port: number; close(): Promise<void> }> {
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('close', () => socks.delete(s));
    s.on('error', () => {});
    let startup = true;
    s.on('data', () => {
      if (startup) {
        startup = false;
        s.write(f.login);
      } else if (f.answer !== null) {
        s.write(f.answer);
      }
    });
  });
  return new Promise((resolve) => {
    srv.listen(0, '127.0.0.1', () =>
      resolve({
        port: (srv.address() as net.AddressInfo).port,
        close: () =>
          new Promise((r) => {
            for (const s of socks) s.destroy();
            srv.close(() => r());
          }),
      }),
    );
  });
}

const proxies: Proxy[] = [];
t.teardown(async () => {
  for (const p of proxies) if (p.alive) await p.stop('SIGTERM', { killAfterMs: 5000 });
});

for (const f of FAULTS) {
  t.test(`${f.name}: the client gets 08006 from pgscribe, the log blames the upstream`, async (t) => {
    const fake = await fakeUpstream(f);
    t.teardown(() => fake.close());
    // The fake upstream stays open: pgscribe must end the session by itself.
    const p = await startProxy({ upstreamPort: fake.port });
    proxies.push(p);
    const c = await RawClient.connect(p.port);
    c.write(enc.startup({ user: 'u', database: 'postgres' }));
    const login = await c.readUntilReady();
    if (f.answer !== null) c.write(enc.query('copy t from stdin'));
    const r = await c.readUntilClosed(5000);
    const msgs = [...login, ...r.msgs];
    t.ok(r.closed || c.closed, `pgscribe closed the client (${describeMessages(msgs)})`);
    const errors = errorsIn(msgs);
    t.equal(errors.length, 1, 'one ErrorResponse before the close');
    t.equal(errors[0]?.['C'], '08006', 'SQLSTATE 08006');
    t.match(errors[0]?.['M'] ?? '', /upstream server sent an invalid message/, 'it says the upstream misbehaved');
    t.match(p.stderr(), /upstream sent an invalid message/, 'the operations log names the upstream');
    t.notMatch(p.stderr(), /internal error/, 'and no internal error');
    t.equal(p.alive, true, 'pgscribe is up');
  });
}
