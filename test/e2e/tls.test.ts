// TLS between clients and pgscribe (--tls-cert, --tls-key, --tls-ca, --tls-mode), the upstream
// negotiation against a plaintext server and against fake servers that answer SSLRequest oddly,
// SIGHUP reload, and the checks of the certificate settings. The upstream TLS against a real
// PostgreSQL with ssl = on and hostssl only is in tls-upstream.test.ts.
//
// Certificates come from test/harness/certs.ts (openssl, a throwaway CA). Every psql runs with -X -w
// and with PGSSLCERT/PGSSLKEY/PGSSLROOTCERT pointing at files that do not exist unless a test sets
// them, so nothing from ~/.postgresql takes part.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { startCluster, USERS, PG_BIN, type PgCluster } from '../harness/pg-cluster';
import { run, type RunResult } from '../harness/run';
import { proxyFixture } from '../helpers/fixture';
import { MAIN, type Proxy } from '../harness/proxy';
import { ConfigError, checkEnvironment, parseCommandLine } from '../../src/config';
import { loadTls } from '../../src/tls';
import { connectTls } from '../helpers/tls';
import { fingerprint, makeCerts, type KeyPair, type TestCerts } from '../harness/certs';
import { expectFatalAndClose, type Tap } from '../helpers/expect';
import { corruptMd5Rows, describeMessages as describe, enc, errorFields, errorsIn as errors, normalizeMessages as normalize, readZInBursts, value as firstValue, type BackendMessage, type RawClient } from '../harness/wire';
import { sleep } from '../harness/time';
import { cancelPsqlSleep } from '../helpers/psql-cancel';

const PSQL = fs.existsSync(path.join(PG_BIN, 'psql')) ? path.join(PG_BIN, 'psql') : 'psql';
const USER = USERS.trust.user;

let pg: PgCluster;
let certs: TestCerts;
/** pgscribe with --tls-cert/--tls-key only: tls-mode allow. */
let proxy: Proxy;
const fx = proxyFixture({ upstreamPort: () => pg.port, user: USER });
const { launch, stopProxy, connect, session } = fx;

t.before(async () => {
  certs = makeCerts();
  pg = await startCluster();
  proxy = await launch(tlsArgs(certs.server));
});

t.teardown(async () => {
  await fx.cleanup();
  await pg?.stop();
});

// ---- helpers --------------------------------------------------------------------------------

function tlsArgs(pair: KeyPair, extra: string[] = []): string[] {
  return ['--tls-cert', pair.cert, '--tls-key', pair.key, ...extra];
}

const NO_FILE = '/nonexistent/pgscribe-test';

interface PsqlOpts {
  port?: number;
  user?: string;
  /** libpq environment on top of the defaults (undefined removes a variable). */
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
}

function psqlEnv(o: PsqlOpts): NodeJS.ProcessEnv {
  const e = pg.env(o.user);
  e.PGHOST = '127.0.0.1';
  e.PGPORT = String(o.port ?? proxy.port);
  for (const k of Object.keys(e)) if (k.startsWith('PGSSL') || k === 'PGCHANNELBINDING' || k === 'PGGSSENCMODE') delete e[k];
  e.PGSSLCERT = NO_FILE + '.crt';
  e.PGSSLKEY = NO_FILE + '.key';
  e.PGSSLROOTCERT = NO_FILE + '-root.crt';
  e.PGGSSENCMODE = 'disable';
  for (const [k, v] of Object.entries(o.env ?? {})) {
    if (v === undefined) delete e[k];
    else e[k] = v;
  }
  return e;
}

function psql(args: string[], o: PsqlOpts = {}): Promise<RunResult> {
  return run(PSQL, ['-X', '-w', '-A', '-t', ...args], { env: psqlEnv(o), timeoutMs: o.timeoutMs ?? 30_000 });
}

/** psql's \conninfo second line when the connection is TLS. */
const SSL_LINE = /SSL connection \(protocol: TLSv1\.[23], cipher: \S+, (compression: off|bits: \d+)/;

async function waitLog(p: Proxy, pred: (l: string) => boolean, timeoutMs = 10_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hits = p.logLines().filter(pred);
    if (hits.length > 0) return hits;
    if (Date.now() > deadline) throw new Error(`no matching log line within ${timeoutMs} ms; last lines: ${p.logLines().slice(-5).join('\n')}`);
    await sleep(20);
  }
}

function sha256(s: string): string {
  return crypto.createHash('sha256').update(s).digest('hex');
}

// ---- psql through TLS -----------------------------------------------------------------------

t.test('psql with sslmode=require and verify-full logs in and queries through pgscribe; the query log is clear text', async (t) => {
  const req = await psql(['-c', '\\conninfo', '-c', "select 'via tls ' || 6 * 7 as answer"], { env: { PGSSLMODE: 'require' } });
  t.equal(req.code, 0, req.stderr);
  t.match(req.stdout, SSL_LINE, 'sslmode=require: psql reports a TLS connection');
  t.match(req.stdout, /\nvia tls 42\n$/, 'and the answer');

  for (const host of ['127.0.0.1', 'localhost']) {
    const full = await psql(['-c', '\\conninfo', '-c', `select 'verified ${host}'`], {
      env: { PGSSLMODE: 'verify-full', PGSSLROOTCERT: certs.ca, PGHOST: host },
    });
    t.equal(full.code, 0, `verify-full to ${host}: ${full.stderr}`);
    t.match(full.stdout, SSL_LINE, `verify-full to ${host}: TLS`);
    t.match(full.stdout, new RegExp(`\\nverified ${host}\\n$`));
  }

  // The same verification against a CA that did not sign pgscribe's certificate fails: psql
  // really checked the chain above.
  const wrongCa = await psql(['-c', 'select 1'], { env: { PGSSLMODE: 'verify-full', PGSSLROOTCERT: certs.otherCa } });
  t.not(wrongCa.code, 0, 'verify-full against another CA fails');
  t.match(wrongCa.stderr, /certificate verify failed/);

  // The query log shows the statements in clear text.
  const lines = await waitLog(proxy, (l) => l.endsWith(" Q sql=select 'via tls ' || 6 * 7 as answer"));
  t.equal(lines.length, 1, 'one line for the query sent through TLS');
  t.match(lines[0]!, /^\S+Z conn=\d+ postgres@postgres 127\.0\.0\.1:\d+ Q sql=select 'via tls ' \|\| 6 \* 7 as answer$/);
  await waitLog(proxy, (l) => l.endsWith(" Q sql=select 'verified 127.0.0.1'"));
  await waitLog(proxy, (l) => l.endsWith(" Q sql=select 'verified localhost'"));
});

t.test('a large result through TLS is byte for byte what PostgreSQL sends in plaintext', async (t) => {
  const sql = 'select g, md5(g::text) from generate_series(1, 200000) g';
  const [viaTls, direct] = await Promise.all([
    psql(['-c', sql], { env: { PGSSLMODE: 'require' }, timeoutMs: 60_000 }),
    psql(['-c', sql], { port: pg.port, env: { PGSSLMODE: 'disable' }, timeoutMs: 60_000 }),
  ]);
  t.equal(viaTls.code, 0, viaTls.stderr);
  t.equal(direct.code, 0, direct.stderr);
  t.equal(viaTls.stdout.length, direct.stdout.length, 'same length');
  t.equal(sha256(viaTls.stdout), sha256(direct.stdout), 'same sha256');
  t.ok(viaTls.stdout.endsWith(`200000|${crypto.createHash('md5').update('200000').digest('hex')}\n`), 'last row');
});

// The session's 'drain' listener must move to the TLS socket: while the client does not read,
// pgscribe pauses the upstream, and only 'drain' from the TLS socket resumes it.
t.test('a TLS client that reads in bursts gets every byte of a 10 MB result (backpressure through TLS)', async (t) => {
  const p = await launch(tlsArgs(certs.server, ['--log', 'none']));
  const c = await connectTls(p.port);
  await c.startup(USER);
  const ROWS = 16000;
  c.sock.pause();
  c.write(enc.query(`select g, repeat(md5(g::text), 20) from generate_series(1, ${ROWS}) g`));
  await sleep(1000);
  const msgs = await readZInBursts(c, 10);
  const rows = msgs.filter((m) => m.type === 'D');
  t.equal(rows.length, ROWS, 'every row arrived');
  t.equal(corruptMd5Rows(rows).count, 0, 'no row corrupted');
  t.equal(firstValue(await c.query("select 'after'")), 'after', 'the session goes on');
  c.end();
  await stopProxy(p);
});

t.test('SCRAM-SHA-256 and md5 pass through TLS; channel_binding=require cannot work through a terminating proxy', async (t) => {
  const scram = await psql(['-c', 'select current_user'], { user: USERS.scram.user, env: { PGSSLMODE: 'require' } });
  t.equal(scram.code, 0, scram.stderr);
  t.equal(scram.stdout, `${USERS.scram.user}\n`, 'SCRAM over TLS (channel_binding=prefer, the default)');
  const disable = await psql(['-c', 'select 1'], { user: USERS.scram.user, env: { PGSSLMODE: 'require', PGCHANNELBINDING: 'disable' } });
  t.equal(disable.code, 0, `channel_binding=disable: ${disable.stderr}`);
  const md5 = await psql(['-c', 'select current_user'], { user: USERS.md5.user, env: { PGSSLMODE: 'require' } });
  t.equal(md5.code, 0, md5.stderr);
  t.equal(md5.stdout, `${USERS.md5.user}\n`, 'md5 over TLS');
  const wrong = await psql(['-c', 'select 1'], { user: USERS.scram.user, env: { PGSSLMODE: 'require', PGPASSWORD: 'wrong' } });
  t.not(wrong.code, 0);
  t.match(wrong.stderr, /password authentication failed for user "scram_user"/, 'the server still checks the password');
  // The server sees pgscribe's plaintext connection and offers SCRAM-SHA-256 without -PLUS.
  const bound = await psql(['-c', 'select 1'], { user: USERS.scram.user, env: { PGSSLMODE: 'require', PGCHANNELBINDING: 'require' } });
  t.not(bound.code, 0, 'channel_binding=require fails');
  t.match(bound.stderr, /channel binding/);
});

// ---- raw protocol ----------------------------------------------------------------------------

t.test('startup negotiation with TLS on', async (t) => {
  await t.test('SSLRequest gets S; GSSENCRequest still gets N', async (t) => {
    const c = await connect(proxy.port);
    c.write(enc.gssencRequest());
    t.equal(await c.readByte(), 'N', 'GSSENCRequest: N');
    c.end();
    const s = await connectTls(proxy.port, { ca: certs.ca });
    t.ok((s.sock as import('node:tls').TLSSocket).authorized, 'pgscribe presents the CA-signed certificate');
    const msgs = await s.startup(USER);
    t.equal(msgs[msgs.length - 1]?.type, 'Z', 'startup through TLS ends in ReadyForQuery');
    t.equal(firstValue(await s.query('select 5')), '5');
    s.end();
  });

  await t.test('the same queries give the same bytes through TLS as in plaintext', async (t) => {
    const queries = ["select 1 as a, 'two' as b, null as c", 'select * from generate_series(1, 3000) g', 'select 1/0', "select repeat('x', 100000)"];
    const plain = await session(proxy.port);
    const secure = await connectTls(proxy.port);
    const started = await secure.startup(USER);
    t.equal(started[started.length - 1]?.type, 'Z');
    for (const q of queries) {
      const a = normalize(await plain.query(q));
      const b = normalize(await secure.query(q));
      t.same(b, a, `identical answer: ${q.slice(0, 40)}`);
    }
    plain.end();
    secure.end();
  });

  // Inside TLS the postmaster has had its SSLRequest (and no GSSENCRequest may follow an accepted
  // one): another is read as a StartupMessage of protocol 1234.5679 or 1234.5680.
  await t.test('SSLRequest or GSSENCRequest inside TLS: FATAL 0A000 unsupported frontend protocol, as PostgreSQL', async (t) => {
    for (const [name, req, version] of [
      ['SSLRequest', enc.sslRequest(), '1234.5679'],
      ['GSSENCRequest', enc.gssencRequest(), '1234.5680'],
    ] as const) {
      const s = await connectTls(proxy.port);
      s.write(req);
      const f = await expectFatalAndClose(t, s, '0A000', `${name} inside TLS`);
      t.equal(f['M'], `unsupported frontend protocol ${version}: server supports 3.0 to 3.0`);
    }
  });

  // CVE-2021-23214: bytes after SSLRequest and before the handshake are not protected by it. The
  // postmaster goes through the handshake and then refuses them, inside TLS.
  await t.test('plaintext pipelined after SSLRequest: the handshake, then FATAL 08P01 inside TLS', async (t) => {
    const cases: [string, Buffer][] = [
      ['a whole StartupMessage', enc.startup({ user: USER, database: 'postgres' })],
      ['three bytes', Buffer.from([0, 0, 0])],
    ];
    for (const [what, extra] of cases) {
      const c = await connectTls(proxy.port, { plaintextAfterRequest: extra });
      const f = await expectFatalAndClose(t, c, '08P01', what);
      t.equal(f['M'], 'received unencrypted data after SSL request', what);
      t.equal(f['D'], 'This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.', what);
    }
    await proxy.waitStderr(/client sent plaintext between SSLRequest and the TLS handshake; refusing it conn=\d+ client=127\.0\.0\.1:\d+/);
  });

  await t.test('a failed handshake is logged with the client address and leaves other sessions alone', async (t) => {
    const other = await connectTls(proxy.port);
    await other.startup(USER);
    const c = await connect(proxy.port);
    const localPort = c.sock.localPort!;
    c.write(enc.sslRequest());
    t.equal(await c.readByte(), 'S');
    c.write(Buffer.from('GET / HTTP/1.0\r\n\r\n'));
    await c.waitClosed(5000);
    t.ok(c.closed, 'the garbage handshake is closed');
    const line = await proxy.waitStderr(new RegExp(`WARN TLS handshake with client failed; closing it conn=\\d+ client=127\\.0\\.0\\.1:${localPort} error=\\S+`));
    t.match(line, /error=ERR_SSL_HTTP_REQUEST/, 'with the reason');
    t.equal(firstValue(await other.query("select 'still here'")), 'still here', 'the other TLS session still works');
    other.end();
    t.equal(proxy.proc.exitCode, null, 'proxy still running');
  });
});

// ---- --tls-mode require, --tls-ca ------------------------------------------------------------

t.test('--tls-mode require refuses plaintext startups with 28000; cancel still works', async (t) => {
  const p = await launch(tlsArgs(certs.server, ['--tls-mode', 'require']));
  const c = await connect(p.port);
  const localPort = c.sock.localPort;
  c.write(enc.startup({ user: USER, database: 'postgres' }));
  const f = await expectFatalAndClose(t, c, '28000', 'plaintext StartupMessage');
  t.equal(f['M'], 'pgscribe: this proxy accepts only TLS connections');
  t.equal(f['H'], 'Connect with sslmode=require, verify-ca or verify-full.');
  await p.waitStderr(new RegExp(`WARN plaintext client refused: --tls-mode require; it must connect with sslmode=require or stronger conn=\\d+ client=127\\.0\\.0\\.1:${localPort} user=${USER}`));

  // psql: sslmode=disable is refused; prefer (the default) asks for TLS and gets it.
  const off = await psql(['-c', 'select 1'], { port: p.port, env: { PGSSLMODE: 'disable' } });
  t.not(off.code, 0, 'sslmode=disable is refused');
  t.match(off.stderr, /FATAL:  pgscribe: this proxy accepts only TLS connections/);
  const prefer = await psql(['-c', '\\conninfo'], { port: p.port, env: { PGSSLMODE: 'prefer' } });
  t.equal(prefer.code, 0, `sslmode=prefer uses TLS: ${prefer.stderr}`);
  t.match(prefer.stdout, SSL_LINE);

  // psql 15 sends its cancel request in the clear (PQcancel); PostgreSQL accepts that whatever
  // pg_hba.conf says, and so does pgscribe with --tls-mode require.
  const { code, stderr: err, tookMs } = await cancelPsqlSleep({
    psql: PSQL,
    env: psqlEnv({ port: p.port, env: { PGSSLMODE: 'require' } }),
    pg,
    app: 'tls_cancel_me',
    settleMs: 300,
  });
  t.equal(code, 1, 'psql exits 1: the query was cancelled');
  t.match(err, /ERROR:  canceling statement due to user request/);
  t.ok(tookMs < 5000, 'well before pg_sleep(30) would end');
  await p.waitStderr(/cancel request forwarded conn=\d+/);
  await stopProxy(p);
});

t.test('--tls-ca: a client certificate signed by that CA is required', async (t) => {
  const p = await launch(tlsArgs(certs.server, ['--tls-ca', certs.ca]));
  const none = await psql(['-c', 'select 1'], { port: p.port, env: { PGSSLMODE: 'require' } });
  t.not(none.code, 0, 'no client certificate: refused');
  t.match(none.stderr, /FATAL:  pgscribe: a client certificate signed by a trusted CA is required \(no certificate\)/);
  await p.waitStderr(/WARN client certificate refused \(not signed by the --tls-ca certificates\); closing it conn=\d+ client=127\.0\.0\.1:\d+ reason="no certificate"/);

  const foreign = await psql(['-c', 'select 1'], {
    port: p.port,
    env: { PGSSLMODE: 'require', PGSSLCERT: certs.otherClient.cert, PGSSLKEY: certs.otherClient.key },
  });
  t.not(foreign.code, 0, 'a certificate from another CA: refused');
  t.match(foreign.stderr, /a client certificate signed by a trusted CA is required \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/);

  const good = await psql(['-c', '\\conninfo', '-c', 'select current_user'], {
    port: p.port,
    env: { PGSSLMODE: 'verify-full', PGSSLROOTCERT: certs.ca, PGSSLCERT: certs.client.cert, PGSSLKEY: certs.client.key },
  });
  t.equal(good.code, 0, `the CA's client certificate is accepted: ${good.stderr}`);
  t.match(good.stdout, SSL_LINE);
  t.match(good.stdout, /\npostgres\n$/);

  // Plaintext is still allowed (tls-mode allow): --tls-ca constrains TLS clients only.
  const plain = await psql(['-c', 'select 2'], { port: p.port, env: { PGSSLMODE: 'disable' } });
  t.equal(plain.code, 0, plain.stderr);
  await stopProxy(p);
});

// ---- SIGHUP ----------------------------------------------------------------------------------

t.test('SIGHUP reloads the certificate and key without dropping sessions; a bad reload keeps the old one', async (t) => {
  const dir = fs.mkdtempSync(path.join(certs.dir, 'reload-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const put = (pair: KeyPair) => {
    fs.copyFileSync(pair.cert, cert);
    fs.copyFileSync(pair.key, key);
  };
  put(certs.server);
  const p = await launch(['--tls-cert', cert, '--tls-key', key]);
  const peer = (c: RawClient) => (c.sock as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256;

  const before = await connectTls(p.port);
  await before.startup(USER);
  t.equal(peer(before), fingerprint(certs.server.cert), 'first certificate');

  put(certs.server2);
  p.proc.kill('SIGHUP');
  await p.waitStderr(/INFO SIGHUP: TLS for clients reloaded: certificate loaded cert=\S+ subject="CN=pgscribe-reloaded" expires=\S+/);
  const after = await connectTls(p.port, { ca: certs.ca });
  t.equal(peer(after), fingerprint(certs.server2.cert), 'a new connection gets the new certificate');
  await after.startup(USER);
  t.equal(firstValue(await after.query('select 1')), '1');
  t.equal(firstValue(await before.query("select 'old session'")), 'old session', 'the session from before the reload still works');

  // A key that does not belong to the certificate: the reload fails, the last good one stays.
  fs.copyFileSync(certs.server.key, key);
  p.proc.kill('SIGHUP');
  await p.waitStderr(/ERROR SIGHUP: cannot reload the TLS certificate for clients; new TLS clients keep getting the previous one\. Fix the files and send SIGHUP again error="tls-key: \S+ is not the private key of the certificate in \S+"/);
  const third = await connectTls(p.port);
  t.equal(peer(third), fingerprint(certs.server2.cert), 'still the last good certificate');
  await third.startup(USER);
  t.equal(firstValue(await third.query('select 3')), '3');
  for (const c of [before, after, third]) c.end();
  t.equal(p.proc.exitCode, null, 'proxy still running');
  await stopProxy(p);
});

// ---- settings --------------------------------------------------------------------------------

t.test('bad certificate settings fail --check and start-up with a message naming the setting', async (t) => {
  const junk = path.join(certs.dir, 'junk.pem');
  fs.writeFileSync(junk, 'not a certificate\n');
  const check = (args: string[]) => spawnSync(process.execPath, [MAIN, '--check', '--log', 'none', ...args], { encoding: 'utf8', timeout: 30_000 });
  // What main() does before --check prints or the proxy listens, in this process (a node start
  // per case would take seconds); the CLI itself is run for a few cases below.
  const settle = (args: string[]): string => {
    try {
      const cmd = parseCommandLine(['--log', 'none', ...args]);
      if (cmd.kind !== 'check' && cmd.kind !== 'run') return 'not a check';
      checkEnvironment(cmd.config);
      loadTls(cmd.config.tls);
      return 'ok';
    } catch (err) {
      return err instanceof ConfigError ? `invalid setting ${err.message}` : `unexpected ${String(err)}`;
    }
  };
  const cases: [string, string[], RegExp][] = [
    ['missing certificate file', ['--tls-cert', NO_FILE, '--tls-key', certs.server.key], /invalid setting tls-cert: cannot read the certificate \/nonexistent\/pgscribe-test: ENOENT/],
    ['a key as the certificate', ['--tls-cert', certs.server.key, '--tls-key', certs.server.key], /invalid setting tls-cert: \S+ does not hold a PEM certificate/],
    ['junk as the key', ['--tls-cert', certs.server.cert, '--tls-key', junk], /invalid setting tls-key: \S+ does not hold an unencrypted PEM private key/],
    ['the key of another certificate', ['--tls-cert', certs.server.cert, '--tls-key', certs.server2.key], /invalid setting tls-key: \S+ is not the private key of the certificate in \S+/],
    ['junk as the CA', [...tlsArgs(certs.server), '--tls-ca', junk], /invalid setting tls-ca: \S+ does not hold a PEM certificate/],
    ['a certificate without its key', ['--tls-cert', certs.server.cert], /invalid setting tls-key: tls-cert is set but tls-key is not/],
    ['require without a certificate', ['--tls-mode', 'require'], /invalid setting tls-mode: require needs tls-cert and tls-key/],
    ['tls-ca without a certificate', ['--tls-ca', certs.ca], /invalid setting tls-ca: /],
    ['verify-full without a CA', ['--upstream-tls', 'verify-full'], /invalid setting upstream-tls: verify-full needs upstream-tls-ca/],
    ['an upstream CA with upstream-tls disable', ['--upstream-tls-ca', certs.ca], /invalid setting upstream-tls-ca: has no effect while upstream-tls is disable/],
    ['a missing upstream CA', ['--upstream-tls', 'verify-ca', '--upstream-tls-ca', NO_FILE], /invalid setting upstream-tls-ca: cannot read the CA certificates/],
    ['an upstream client key that does not match', ['--upstream-tls', 'require', '--upstream-tls-cert', certs.client.cert, '--upstream-tls-key', certs.server.key], /invalid setting upstream-tls-key: \S+ is not the private key/],
    ['an unknown mode', ['--upstream-tls', 'allow'], /invalid setting --upstream-tls: expected one of disable, prefer, require, verify-ca, verify-full/],
  ];
  for (const [what, args, re] of cases) t.match(settle(args), re, what);
  const cli = check(['--tls-cert', certs.server.cert, '--tls-key', certs.server2.key]);
  t.equal(cli.status, 1, '--check with a key of another certificate: exit 1');
  t.equal(cli.stdout, '', 'nothing on stdout');
  t.match(cli.stderr, /^pgscribe: invalid setting tls-key: \S+ is not the private key of the certificate in \S+\nTry 'pgscribe --help'\.\n$/);

  const ok = check([...tlsArgs(certs.server), '--upstream-tls', 'verify-full', '--upstream-tls-ca', certs.ca, '--upstream-tls-cert', certs.client.cert, '--upstream-tls-key', certs.client.key]);
  t.equal(ok.status, 0, ok.stderr);
  const shown = JSON.parse(ok.stdout) as Record<string, unknown>;
  t.equal(shown['tls-mode'], 'allow', 'tls-mode derived: allow with a certificate and key');
  t.equal(shown['upstream-tls'], 'verify-full');
  t.equal((JSON.parse(check([]).stdout) as Record<string, unknown>)['tls-mode'], 'disable', 'and disable without');

  // Start-up (not --check) fails the same way, before listening.
  const start = spawnSync(process.execPath, [MAIN, '--listen', '127.0.0.1:0', '--log', 'none', '--tls-cert', certs.server.cert, '--tls-key', junk], { encoding: 'utf8', timeout: 30_000 });
  t.equal(start.status, 1, 'start-up exits 1');
  t.match(start.stderr, /invalid setting tls-key: /);
  t.notMatch(start.stderr, /listening/);
});

// ---- upstream negotiation --------------------------------------------------------------------

t.test('--upstream-tls against a server without SSL: prefer carries on in plaintext, require refuses with 08001', async (t) => {
  const prefer = await launch(['--upstream-tls', 'prefer']);
  const r = await psql(['-c', 'select 7'], { port: prefer.port, env: { PGSSLMODE: 'disable' } });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '7\n');
  const again = await psql(['-c', 'select 8'], { port: prefer.port, env: { PGSSLMODE: 'disable' } });
  t.equal(again.stdout, '8\n', again.stderr);
  await prefer.waitStderr(/INFO upstream does not support SSL; connecting in plaintext \(--upstream-tls prefer; said once\) conn=\d+/);
  t.equal(prefer.stderr().match(/upstream does not support SSL/g)?.length, 1, 'said once for two sessions');

  const req = await launch(['--upstream-tls', 'require']);
  const c = await connect(req.port);
  c.write(enc.startup({ user: USER, database: 'postgres' }));
  const f = await expectFatalAndClose(t, c, '08001', 'require against a plaintext server');
  t.match(f['M'] ?? '', /^pgscribe: could not connect to upstream server 127\.0\.0\.1:\d+: the server does not support SSL, but --upstream-tls require requires it$/);
  await req.waitStderr(/WARN TLS negotiation with upstream failed; refusing the client with 08001 conn=\d+ client=127\.0\.0\.1:\d+ upstream=127\.0\.0\.1:\d+ upstream_tls=require reason=/);
  await stopProxy(prefer);
  await stopProxy(req);
});

/** A fake upstream that answers the first read (the SSLRequest) with `answer`, then closes. */
async function fakeUpstream(answer: Buffer): Promise<{ port: number; close(): void; requests: Buffer[] }> {
  const requests: Buffer[] = [];
  const srv = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', (d) => {
      requests.push(d);
      s.end(answer);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as net.AddressInfo).port, close: () => srv.close(), requests };
}

function errorResponse(fields: [string, string][]): Buffer {
  const body = Buffer.concat([...fields.map(([k, v]) => Buffer.from(`${k}${v}\0`)), Buffer.from([0])]);
  const h = Buffer.alloc(5);
  h.write('E', 0);
  h.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([h, body]);
}

t.test('odd answers to the SSLRequest pgscribe sends upstream fail the client cleanly, as libpq fails', async (t) => {
  const serverError = errorResponse([['S', 'FATAL'], ['V', 'FATAL'], ['C', '53300'], ['M', 'sorry, too many clients already']]);
  const cases: [string, Buffer, (tt: Tap, msgs: BackendMessage[]) => void][] = [
    ['E and a protocol-3 ErrorResponse: passed on as the server sent it', serverError, (tt, msgs) => {
      tt.same(msgs.map((m) => m.type), ['E']);
      tt.same(errorFields(msgs[0]!.body), { S: 'FATAL', V: 'FATAL', C: '53300', M: 'sorry, too many clients already' });
    }],
    ['E and an old-style error text', Buffer.from('Ecould not fork new process for connection: out of memory\n\0'), (tt, msgs) => {
      tt.equal(errors(msgs)[0]?.['C'], '08001');
      tt.match(errors(msgs)[0]?.['M'] ?? '', /: the server sent an error during SSL negotiation: could not fork new process for connection: out of memory$/);
    }],
    ['an unknown byte', Buffer.from('X'), (tt, msgs) => {
      tt.equal(errors(msgs)[0]?.['C'], '08001');
      tt.match(errors(msgs)[0]?.['M'] ?? '', /: received invalid response to SSL negotiation: 'X' \(0x58\)$/);
    }],
    ['S followed by plaintext (CVE-2021-23222)', Buffer.concat([Buffer.from('S'), serverError]), (tt, msgs) => {
      tt.equal(errors(msgs)[0]?.['C'], '08001');
      tt.match(errors(msgs)[0]?.['M'] ?? '', /: received unencrypted data after the SSL response$/);
    }],
    ['S and then a close instead of a handshake', Buffer.from('S'), (tt, msgs) => {
      tt.equal(errors(msgs)[0]?.['C'], '08001');
      tt.match(errors(msgs)[0]?.['M'] ?? '', /: (TLS handshake failed: .*|the server closed the connection during the TLS handshake)$/);
    }],
    ['a close without an answer', Buffer.alloc(0), (tt, msgs) => {
      tt.equal(errors(msgs)[0]?.['C'], '08001');
      tt.match(errors(msgs)[0]?.['M'] ?? '', /: the server closed the connection during SSL negotiation$/);
    }],
  ];
  for (const [what, answer, check] of cases) {
    await t.test(what, async (t) => {
      const fake = await fakeUpstream(answer);
      t.teardown(() => fake.close());
      const p = await launch(['--upstream-tls', 'require'], fake.port);
      const c = await connect(p.port);
      c.write(enc.startup({ user: USER, database: 'postgres' }));
      const r = await c.readUntilClosed(8000);
      t.ok(r.closed, `closed (got ${describe(r.msgs)})`);
      t.equal(errors(r.msgs).length, 1, `one ErrorResponse (got ${describe(r.msgs)})`);
      check(t, r.msgs);
      t.same(fake.requests.map((b) => b.toString('hex')), [enc.sslRequest().toString('hex')], 'the upstream got an SSLRequest, and nothing else in the clear');
      // The proxy keeps serving.
      t.equal(p.proc.exitCode, null, 'proxy still running');
      await stopProxy(p);
    });
  }
});
