// The startup phase answered exactly as the postmaster answers it: every fault of the table below
// is sent straight to PostgreSQL and through pgscribe, and the bytes each sends back and whether
// it closes must be the same. The table follows ProcessStartupPacket (postmaster.c in 15,
// backend_startup.c from 17): which faults it reports to the client (a FATAL ErrorResponse, or
// NegotiateProtocolVersion and on), and which it only logs (COMMERROR) before closing in silence.
// docs/protocol.md has the table in prose.
import t from 'tap';
import * as net from 'node:net';
import { startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { proxyFixture } from '../helpers/fixture';
import { type Proxy } from '../harness/proxy';
import { enc, i32 } from '../harness/wire';

const USER = USERS.trust.user;
/** How long a connection may stay quiet before the exchange counts as "left open". */
const QUIET_MS = 1500;

let pg: PgCluster;
let proxy: Proxy;
const fx = proxyFixture({ upstreamPort: () => pg.port, user: USER });

t.before(async () => {
  // authentication_timeout 1 s: the server's own limit for a client that never finishes its
  // startup; pgscribe's --startup-timeout is set to the same.
  pg = await startCluster({ conf: { authentication_timeout: '1s' } });
  proxy = await fx.launch(['--startup-timeout', '1000']);
});

t.teardown(async () => {
  await fx.cleanup();
  await pg?.stop();
});

interface Exchange {
  /** What came back, BackendKeyData's key zeroed (it differs per backend). */
  hex: string;
  /**
   * 'closed', or 'open' (nothing for QUIET_MS and still open). A reset counts as closed: the
   * postmaster's close is a reset when bytes it never read were left in its socket (it reads 8 KiB
   * at a time), pgscribe has read them all and closes with a FIN; a client sees the end either way.
   */
  end: 'closed' | 'open';
}

interface Case {
  name: string;
  /**
   * pgscribe answers this fault itself (only the postmaster's negotiation state sees it): its
   * FATAL has PostgreSQL's severity, code, message and detail, but not the F, L and R fields
   * (the server's source file, line and function), which are left out of the comparison.
   */
  pgscribeSpeaks?: boolean;
  /** Written one after the other; a step waits until the peer's answer to the previous one is in. */
  steps: Buffer[];
  /** Half-close after the last step (an early EOF). */
  eof?: boolean;
  /** Wait this long for the peer before giving up (the timeout cases). */
  quietMs?: number;
}

function zeroKeys(b: Buffer): Buffer {
  const out = Buffer.from(b);
  for (let i = out.indexOf('K\0\0\0\x0c', 0, 'latin1'); i >= 0; i = out.indexOf('K\0\0\0\x0c', i + 1, 'latin1')) out.fill(0, i + 5, Math.min(out.length, i + 13));
  return out;
}

function exchange(port: number, c: Case): Promise<Exchange> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    sock.setNoDelay(true);
    const got: Buffer[] = [];
    let timer: NodeJS.Timeout | null = null;
    let step = 0;
    let done = false;
    const finish = (end: Exchange['end']): void => {
      if (done) return;
      done = true;
      if (timer !== null) clearTimeout(timer);
      sock.destroy();
      resolve({ hex: zeroKeys(Buffer.concat(got)).toString('hex'), end });
    };
    const quiet = (): void => {
      if (timer !== null) clearTimeout(timer);
      timer = setTimeout(() => finish('open'), c.quietMs ?? QUIET_MS);
    };
    const next = (): void => {
      if (step < c.steps.length) sock.write(c.steps[step++]!);
      if (step === c.steps.length && c.eof === true) sock.end();
    };
    sock.on('connect', () => {
      next();
      quiet();
    });
    sock.on('data', (d) => {
      got.push(d);
      next();
      quiet();
    });
    sock.on('error', () => finish('closed'));
    sock.on('close', () => finish('closed'));
  });
}

/** An exchange for a failure message: the answer as text where it is text, and how it ended. */
function readable(x: Exchange): string {
  const b = Buffer.from(x.hex, 'hex');
  const shown = b.length > 300 ? `${b.subarray(0, 300).toString('latin1')}... (${b.length} bytes)` : b.toString('latin1');
  return `${JSON.stringify(shown)} then ${x.end}`;
}

/** The exchange with the F, L and R fields taken out of its last message, an ErrorResponse. */
function withoutSourceFields(x: Exchange): Exchange {
  const b = Buffer.from(x.hex, 'hex');
  for (let i = 0; i < b.length; i++) {
    if (b[i] !== 0x45 || i + 5 > b.length || b.readUInt32BE(i + 1) !== b.length - i - 1) continue;
    const kept: Buffer[] = [];
    for (let off = i + 5; off < b.length && b[off] !== 0; ) {
      const nul = b.indexOf(0, off);
      if (!'FLR'.includes(String.fromCharCode(b[off]!))) kept.push(b.subarray(off, nul + 1));
      off = nul + 1;
    }
    const body = Buffer.concat([...kept, Buffer.from([0])]);
    const head = Buffer.from([0x45, 0, 0, 0, 0]);
    head.writeUInt32BE(body.length + 4, 1);
    return { hex: Buffer.concat([b.subarray(0, i), head, body]).toString('hex'), end: x.end };
  }
  return x;
}

const SSL = enc.sslRequest();
const GSS = enc.gssencRequest();
const GOOD = enc.startup({ user: USER, database: 'postgres' });

function packet(code: number, body: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([i32(8 + body.length), i32(code), body]);
}

/** A StartupMessage whose body is given raw (no terminator added). */
function rawStartup(body: Buffer, code = 0x00030000): Buffer {
  return packet(code, body);
}

const z = (s: string): Buffer => Buffer.from(`${s}\0`, 'utf8');

/** A StartupMessage exactly `total` bytes long (application_name pads it). */
function startupOfLength(total: number): Buffer {
  const fixed = enc.startup({ user: USER, database: 'postgres', application_name: '' }).length;
  return enc.startup({ user: USER, database: 'postgres', application_name: 'a'.repeat(total - fixed) });
}

const CASES: Case[] = [
  // ---- lengths and early EOF (COMMERROR: logged, nothing sent, closed) ----
  { name: 'connect and close at once', steps: [], eof: true },
  ...Array.from({ length: GOOD.length - 1 }, (_, n) => ({ name: `EOF after ${n + 1} of the StartupMessage's ${GOOD.length} bytes`, steps: [GOOD.subarray(0, n + 1)], eof: true })),
  { name: 'Terminate before any startup packet (node-postgres: connect() then end())', steps: [enc.terminate()] },
  { name: 'Terminate before any startup packet, then EOF', steps: [enc.terminate()], eof: true },
  ...[0, 4, 7].map((len) => ({ name: `startup packet length ${len}`, steps: [Buffer.concat([i32(len), i32(0x00030000)])] })),
  { name: 'startup packet length 0x7fffffff', steps: [Buffer.concat([i32(0x7fffffff), i32(0x00030000)])] },
  { name: 'startup packet length -1', steps: [Buffer.concat([i32(-1), i32(0x00030000)])] },
  { name: 'startup packet of 10005 bytes (over the 10000-byte body limit)', steps: [startupOfLength(10005)] },
  { name: 'startup packet of 10004 bytes (the largest accepted): a long application_name', steps: [startupOfLength(10004)] },
  { name: 'length says 100 bytes, 20 arrive, then EOF', steps: [Buffer.concat([i32(100), i32(0x00030000), z('user'), z('x')])], eof: true },
  // ---- CancelRequest ----
  { name: 'CancelRequest of 12 bytes (bad length)', steps: [packet(80877102, i32(1))] },
  { name: 'CancelRequest of 20 bytes (bad length)', steps: [packet(80877102, Buffer.concat([i32(1), i32(2), i32(3)]))] },
  { name: 'CancelRequest for no session', steps: [enc.cancel(4242, 4242)] },
  { name: 'CancelRequest for pid 0', steps: [enc.cancel(0, 0)] },
  // ---- protocol versions ----
  { name: 'protocol 2.0', steps: [enc.startup({ user: USER, database: 'postgres' }, 0x00020000)] },
  { name: 'protocol 4.0', steps: [enc.startup({ user: USER, database: 'postgres' }, 0x00040000)] },
  { name: 'protocol 0.0', steps: [enc.startup({ user: USER, database: 'postgres' }, 0)] },
  { name: "CancelRequest's code with a StartupMessage's body", steps: [enc.startup({ user: USER }, (1234 << 16) | 5678)] },
  { name: 'protocol 1234.5681 (no such request code)', steps: [enc.startup({ user: USER }, (1234 << 16) | 5681)] },
  { name: 'protocol 3.1: NegotiateProtocolVersion, then the session', steps: [enc.startup({ user: USER, database: 'postgres' }, 0x00030001)] },
  { name: 'protocol 3.0 with a _pq_ option: NegotiateProtocolVersion', steps: [enc.startup({ user: USER, database: 'postgres', '_pq_.compression': 'on' })] },
  // ---- SSLRequest (no TLS on either side; GSSENCRequest is in its own test below) ----
  { name: 'SSLRequest, then the StartupMessage', steps: [SSL, GOOD] },
  { name: 'SSLRequest twice', steps: [SSL, SSL], pgscribeSpeaks: true },
  { name: 'SSLRequest and a StartupMessage in one write', steps: [Buffer.concat([SSL, GOOD])], pgscribeSpeaks: true },
  { name: 'SSLRequest and garbage in one write', steps: [Buffer.concat([SSL, Buffer.from('GET / HTTP/1.1\r\n\r\n')])], pgscribeSpeaks: true },
  { name: 'SSLRequest and 3 bytes in one write', steps: [Buffer.concat([SSL, Buffer.from([0, 0, 0])])], pgscribeSpeaks: true },
  { name: 'SSLRequest, then EOF', steps: [SSL], eof: true },
  { name: 'SSLRequest, then CancelRequest', steps: [SSL, enc.cancel(1, 2)] },
  { name: 'SSLRequest of 12 bytes, then the StartupMessage', steps: [packet(80877103, i32(0)), GOOD] },
  // ---- the StartupMessage's parameters ----
  { name: 'no user', steps: [enc.startup({ database: 'postgres' })] },
  { name: 'empty user', steps: [enc.startup({ user: '', database: 'postgres' })] },
  { name: 'no parameters at all', steps: [enc.startup({})] },
  { name: 'no terminator', steps: [rawStartup(Buffer.concat([z('user'), z(USER)]))] },
  { name: 'a name without its value', steps: [rawStartup(Buffer.concat([z('user'), z(USER), z('database')]))] },
  { name: 'a value without its NUL', steps: [rawStartup(Buffer.concat([z('user'), Buffer.from(USER)]))] },
  { name: 'bytes after the terminator', steps: [rawStartup(Buffer.concat([z('user'), z(USER), Buffer.from([0, 0x41, 0])]))] },
  { name: 'replication=bogus', steps: [enc.startup({ user: USER, replication: 'bogus' })] },
  { name: 'an unknown setting', steps: [enc.startup({ user: USER, no_such_setting: '1' })] },
  { name: 'a user name of 200 characters (truncated to 63)', steps: [enc.startup({ user: 'u'.repeat(200) })] },
  { name: 'a database that does not exist', steps: [enc.startup({ user: USER, database: 'no_such_db' })] },
  { name: 'a role that does not exist', steps: [enc.startup({ user: 'no_such_role', database: 'postgres' })] },
  // ---- time ----
  { name: 'nothing sent: the startup timeout', steps: [], quietMs: 4000 },
  { name: 'half a startup packet, then silence: the startup timeout', steps: [GOOD.subarray(0, 6)], quietMs: 4000 },
  { name: 'SSLRequest, then silence: the startup timeout', steps: [SSL], quietMs: 4000 },
];

t.test('the startup phase: the same bytes and the same close as PostgreSQL, fault by fault', async (t) => {
  // In batches: a few hundred connections at once would meet the server's max_connections.
  const BATCH = 16;
  for (let i = 0; i < CASES.length; i += BATCH) {
    const batch = CASES.slice(i, i + BATCH);
    const results = await Promise.all(batch.map(async (c) => [await exchange(pg.port, c), await exchange(proxy.port, c)] as const));
    batch.forEach((c, k) => {
      const [direct, via] = c.pgscribeSpeaks === true ? results[k]!.map(withoutSourceFields) : results[k]!;
      t.ok(via.hex === direct.hex && via.end === direct.end, c.name, { through_pgscribe: readable(via), from_postgresql: readable(direct) });
    });
  }
  t.ok(proxy.alive, 'pgscribe is still running');
});

// The test server is built with GSSAPI and answers GSSENCRequest with 'G'; pgscribe cannot carry
// GSSAPI encryption and answers 'N', as a server built without it does. What follows is what the
// postmaster's own logic (ssl_done, gss_done) gives for such a server.
t.test("GSSENCRequest: refused with N, and the postmaster's rules for a second request", async (t) => {
  const N = Buffer.from('N').toString('hex');
  const unsupported = (version: string): string =>
    Buffer.from(`E\0\0\0\0SFATAL\0VFATAL\0C0A000\0Munsupported frontend protocol ${version}: server supports 3.0 to 3.0\0\0`, 'latin1').toString('hex');
  const withLength = (hex: string): string => {
    const b = Buffer.from(hex, 'hex');
    b.writeUInt32BE(b.length - 1, 1);
    return b.toString('hex');
  };
  const session = await exchange(pg.port, { name: 'a plain session', steps: [GOOD] });
  const cases: [string, Case, Exchange][] = [
    ['GSSENCRequest, then the StartupMessage', { name: '', steps: [GSS, GOOD] }, { hex: N + session.hex, end: 'open' }],
    ['GSSENCRequest twice', { name: '', steps: [GSS, GSS] }, { hex: N + withLength(unsupported('1234.5680')), end: 'closed' }],
    ['GSSENCRequest, SSLRequest, then the StartupMessage', { name: '', steps: [GSS, SSL, GOOD] }, { hex: N + N + session.hex, end: 'open' }],
    ['SSLRequest, GSSENCRequest, SSLRequest: each refusal re-arms the other request', { name: '', steps: [SSL, GSS, SSL, GOOD] }, { hex: N + N + N + session.hex, end: 'open' }],
    ['SSLRequest, SSLRequest after a GSSENCRequest', { name: '', steps: [GSS, SSL, SSL] }, { hex: N + N + withLength(unsupported('1234.5679')), end: 'closed' }],
    ['GSSENCRequest and a StartupMessage in one write', { name: '', steps: [Buffer.concat([GSS, GOOD])] }, {
      hex: N + withLength(Buffer.from('E\0\0\0\0SFATAL\0VFATAL\0C08P01\0Mreceived unencrypted data after GSSAPI encryption request\0DThis could be either a client-software bug or evidence of an attempted man-in-the-middle attack.\0\0', 'latin1').toString('hex')),
      end: 'closed',
    }],
  ];
  for (const [name, c, want] of cases) {
    const got = await exchange(proxy.port, c);
    t.ok(got.hex === want.hex && got.end === want.end, name, { through_pgscribe: readable(got), expected: readable(want) });
  }
});
