// `pgscribe replay` against a target that misbehaves (src/replay/replay-connection.ts,
// session-player.ts): garbage instead of messages, an impossible length, a close mid-message,
// answers nobody asked for, a FATAL, silence at startup. Each ends its session with a reason in
// the report; nothing throws, and the statements that never ran are counted on the log's side.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { replay } from '../../src/replay/replayer';
import { Passwords } from '../../src/replay/passfile';
import { msg } from '../harness/wire';

const R = (code: number): Buffer => { const b = Buffer.alloc(4); b.writeInt32BE(code); return msg('R', b); };
const Z = msg('Z', Buffer.from('I'));
const fatal = msg('E', Buffer.from('SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0'));
const error = msg('E', Buffer.from('SERROR\0VERROR\0C42501\0Mpermission denied\0\0'));

type Script = (sock: net.Socket, n: number) => void;

/** A server: answers each StartupMessage per `startup`, then calls `after` at its first message. */
async function target(t: Test, startup: (sock: net.Socket) => void, after: Script): Promise<number> {
  let n = 0;
  const srv = net.createServer((sock) => {
    const conn = n++;
    let started = false;
    let buf = Buffer.alloc(0);
    sock.on('error', () => {});
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!started) {
        if (buf.length < 4 || buf.length < buf.readUInt32BE(0)) return;
        started = true;
        buf = buf.subarray(buf.readUInt32BE(0));
        // The safety check's own connection: its query is refused, so the target's identity is unknown.
        if (conn === 0) {
          sock.write(Buffer.concat([R(0), Z]));
          return;
        }
        startup(sock);
        return;
      }
      if (conn === 0) {
        sock.write(Buffer.concat([error, Z]));
        return;
      }
      if (buf.length > 0) after(sock, conn);
      buf = Buffer.alloc(0);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  return (srv.address() as net.AddressInfo).port;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'replay-hostile-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const head = '"conn":1,"user":"u","db":"d","client":"x"';
const log = path.join(dir, 'q.log');
fs.writeFileSync(log, [
  `{"ts":"2026-12-05T10:00:00.000Z",${head},"type":"start","startup":{},"protocol":"3.0","upstream":"10.255.255.1:5432"}`,
  `{"ts":"2026-12-05T10:00:00.001Z",${head},"type":"Q","seq":1,"sql":"select 1"}`,
  `{"ts":"2026-12-05T10:00:00.002Z",${head},"type":"done","seq":1,"of":"Q","ms":0.1,"rows":1,"status":"ok","sqlstate":null}`,
  `{"ts":"2026-12-05T10:00:00.003Z",${head},"type":"Q","seq":2,"sql":"select 2"}`,
  `{"ts":"2026-12-05T10:00:00.004Z",${head},"type":"done","seq":2,"of":"Q","ms":0.1,"rows":1,"status":"ok","sqlstate":null}`,
  `{"ts":"2026-12-05T10:00:00.005Z",${head},"type":"end","reason":"terminate"}`,
  '',
].join('\n'));

function run(port: number) {
  return replay({
    logs: [log], host: '127.0.0.1', port, speed: 'max', inOrder: false, filters: [], from: null, to: null, user: null, database: null,
    mapUser: new Map(), mapDatabase: new Map(), passwords: new Passwords(null, ''), readOnly: false, force: false, slower: 2, connectTimeoutMs: 1500, progress: null,
  });
}

const ready = (sock: net.Socket): void => void sock.write(Buffer.concat([R(0), Z]));

const cases: { name: string; startup?: (s: net.Socket) => void; after: Script; failed: number; cut: number }[] = [
  { name: 'garbage instead of an answer', after: (s) => s.write(Buffer.from('this is not the protocol at all')), failed: 0, cut: 1 },
  { name: 'an impossible length', after: (s) => s.write(Buffer.from([0x44, 0, 0, 0, 2])), failed: 0, cut: 1 },
  { name: 'a close in the middle of a message', after: (s) => s.end(Buffer.from([0x54, 0, 0, 0, 50, 0, 1])), failed: 0, cut: 1 },
  { name: 'a FATAL', after: (s) => s.end(fatal), failed: 0, cut: 1 },
  { name: 'answers nobody asked for, then the real ones', after: (s) => s.write(Buffer.concat([msg('1', Buffer.alloc(0)), msg('3', Buffer.alloc(0)), msg('n', Buffer.alloc(0)), msg('C', Buffer.from('SELECT 1\0')), Z])), failed: 0, cut: 0 },
  { name: 'silence at startup', startup: () => {}, after: () => {}, failed: 1, cut: 0 },
  { name: 'an authentication method nobody speaks', startup: (s) => s.write(R(7)), after: () => {}, failed: 1, cut: 0 },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    const port = await target(t, c.startup ?? ready, c.after);
    const report = await run(port);
    t.equal(report.sessions.total, 1);
    t.equal(report.sessions.failed, c.failed, 'failed sessions');
    t.equal(report.sessions.cut, c.cut, 'cut sessions');
    const d = report.digests.reduce((n, x) => n + x.original, 0);
    t.equal(d, 2, 'both statements are in the comparison, on the log\'s side at least');
  });
}

t.test('a conn id that starts again without its end line (a restarted pgscribe): both sessions run, the replay ends', async (t) => {
  const answer: Script = (s) => s.write(Buffer.concat([msg('C', Buffer.from('SELECT 1\0')), Z]));
  const port = await target(t, ready, answer);
  const again = path.join(dir, 'again.log');
  const lines = fs.readFileSync(log, 'utf8').split('\n').filter((l) => l !== '' && !l.includes('"type":"end"'));
  fs.writeFileSync(again, [...lines, ...lines.map((l) => l.replace('10:00:00.', '10:00:01.')), ''].join('\n'));
  const report = await Promise.race([
    replay({
      logs: [again], host: '127.0.0.1', port, speed: 'max', inOrder: false, filters: [], from: null, to: null, user: null, database: null,
      mapUser: new Map(), mapDatabase: new Map(), passwords: new Passwords(null, ''), readOnly: false, force: false, slower: 2, connectTimeoutMs: 1500, progress: null,
    }),
    new Promise<null>((r) => setTimeout(() => r(null), 10_000)),
  ]);
  t.not(report, null, 'the replay ended');
  t.equal(report?.sessions.total, 2);
  t.equal(report?.sessions.replayed, 2);
  t.equal(report?.statements.replayed, 4);
  t.equal(report?.statements.changed, 0);
});
