// pgscribe's own TLS to PostgreSQL (--upstream-tls, --upstream-tls-ca, --upstream-tls-cert/-key),
// against a real PostgreSQL 15 with ssl = on whose pg_hba.conf has only hostssl rules for TCP, so
// that nothing reaches it in plaintext. Certificates from test/harness/certs.ts.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { startCluster, USERS, PG_BIN, type PgCluster } from '../harness/pg-cluster';
import { run, type RunResult } from '../harness/run';
import { proxyFixture } from '../helpers/fixture';
import { type Proxy } from '../harness/proxy';
import { connectTls } from '../helpers/tls';
import { makeCerts, type KeyPair, type TestCerts } from '../harness/certs';
import { enc, errorsIn as errors, type BackendMessage } from '../harness/wire';
import { sleep } from '../harness/time';
import { cancelPsqlSleep } from '../helpers/psql-cancel';

const tool = (name: string) => (fs.existsSync(path.join(PG_BIN, name)) ? path.join(PG_BIN, name) : name);
const PSQL = tool('psql');
const PGBENCH = tool('pgbench');
const CERT_USER = 'cert_user';
const NO_FILE = '/nonexistent/pgscribe-test';

let pg: PgCluster;
let certs: TestCerts;
const fx = proxyFixture({ upstreamPort: () => pg.port, user: USERS.trust.user });
const { launch, stopProxy } = fx;

t.before(async () => {
  certs = makeCerts();
  pg = await startCluster({
    ssl: { cert: certs.server.cert, key: certs.server.key, ca: certs.ca, hostsslOnly: true },
    hba: [`hostssl all ${CERT_USER} 127.0.0.1/32 cert`],
  });
  // pg.psql connects over TCP with libpq's default sslmode=prefer, so over TLS.
  await pg.psql(`create role ${CERT_USER} login`);
  const init = await run(PGBENCH, ['-i', '-q', '-s', '1'], { env: pg.env(), timeoutMs: 120_000 });
  if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`);
});

t.teardown(async () => {
  await fx.cleanup();
  await pg?.stop();
});

// ---- helpers --------------------------------------------------------------------------------

function tlsArgs(pair: KeyPair, extra: string[] = []): string[] {
  return ['--tls-cert', pair.cert, '--tls-key', pair.key, ...extra];
}

function libpqEnv(port: number, user: string | undefined, extra: Record<string, string>): NodeJS.ProcessEnv {
  const e = pg.env(user);
  e.PGHOST = '127.0.0.1';
  e.PGPORT = String(port);
  for (const k of Object.keys(e)) if (k.startsWith('PGSSL') || k === 'PGCHANNELBINDING') delete e[k];
  e.PGSSLCERT = NO_FILE + '.crt';
  e.PGSSLKEY = NO_FILE + '.key';
  e.PGSSLROOTCERT = NO_FILE + '-root.crt';
  e.PGGSSENCMODE = 'disable';
  e.PGSSLMODE = 'disable';
  return { ...e, ...extra };
}

/** psql to a proxy; the client side in plaintext unless `env` says otherwise. */
function psql(p: Proxy, sql: string, o: { user?: string; env?: Record<string, string> } = {}): Promise<RunResult> {
  return run(PSQL, ['-X', '-w', '-A', '-t', '-c', sql], { env: libpqEnv(p.port, o.user, o.env ?? {}), timeoutMs: 30_000 });
}

/** What PostgreSQL says about the session's own connection: ssl|version|client_dn. */
const SSL_INFO = "select ssl || '|' || coalesce(version, '') || '|' || coalesce(client_dn, '') from pg_stat_ssl where pid = pg_backend_pid()";

interface Bench {
  result: RunResult;
  processed: number;
  failed: number | null;
}

async function pgbench(p: Proxy, env: Record<string, string> = {}): Promise<Bench> {
  const result = await run(PGBENCH, ['-n', '-c', '4', '-j', '2', '-T', '3', '-M', 'prepared'], { env: libpqEnv(p.port, 'postgres', env), timeoutMs: 60_000 });
  const done = /number of transactions actually processed: (\d+)/.exec(result.stdout);
  const failed = /number of failed transactions: (\d+)/.exec(result.stdout);
  return { result, processed: done ? Number(done[1]) : 0, failed: failed ? Number(failed[1]) : null };
}

const VERIFY_FULL_CLIENT = (): Record<string, string> => ({ PGSSLMODE: 'verify-full', PGSSLROOTCERT: certs.ca });

// ---- tests ------------------------------------------------------------------------------------

t.test('the server takes TLS only: pgscribe without --upstream-tls is refused by pg_hba.conf', async (t) => {
  const p = await launch([]);
  const r = await psql(p, 'select 1');
  t.not(r.code, 0, 'refused');
  t.match(r.stderr, /FATAL:  no pg_hba\.conf entry for host "127\.0\.0\.1", user "postgres", database "postgres", no encryption/);
  await stopProxy(p);
});

t.test('--upstream-tls require: PostgreSQL sees TLS from pgscribe; pgbench runs through with zero failures', async (t) => {
  const p = await launch(['--upstream-tls', 'require']);
  const info = await psql(p, SSL_INFO);
  t.equal(info.code, 0, info.stderr);
  t.match(info.stdout, /^true\|TLSv1\.3\|\n$/, 'the upstream session is TLS');
  const b = await pgbench(p);
  t.equal(b.result.code, 0, `pgbench exits 0: ${b.result.stderr}`);
  t.ok(b.processed > 0, `${b.processed} transactions`);
  t.equal(b.failed, 0, 'number of failed transactions: 0');
  const lines = p.logLines();
  t.ok(lines.some((l) => / E stmt=P_\d+ sql=UPDATE pgbench_accounts SET abalance = abalance \+ \$1 WHERE aid = \$2;$/.test(l)), 'pgbench statements in the query log');
  t.notMatch(p.stderr(), /WARN|ERROR/, 'nothing went wrong in the ops log');
  await stopProxy(p);
});

t.test('TLS on both sides with verify-full: psql and pgbench with zero failures, queries in clear text in the log', async (t) => {
  const p = await launch(tlsArgs(certs.server, ['--upstream-tls', 'verify-full', '--upstream-tls-ca', certs.ca]));
  const conn = await run(PSQL, ['-X', '-w', '-A', '-t', '-c', '\\conninfo', '-c', SSL_INFO], { env: libpqEnv(p.port, undefined, VERIFY_FULL_CLIENT()), timeoutMs: 30_000 });
  t.equal(conn.code, 0, conn.stderr);
  t.match(conn.stdout, /SSL connection \(protocol: TLSv1\.3/, 'psql -> pgscribe: TLS, verified');
  t.match(conn.stdout, /\ntrue\|TLSv1\.3\|\n$/, 'pgscribe -> PostgreSQL: TLS');
  const b = await pgbench(p, VERIFY_FULL_CLIENT());
  t.equal(b.result.code, 0, `pgbench exits 0: ${b.result.stderr}`);
  t.ok(b.processed > 0, `${b.processed} transactions`);
  t.equal(b.failed, 0, 'number of failed transactions: 0');
  t.ok(p.logLines().some((l) => / Q sql=select ssl \|\| '\|' \|\| coalesce\(version, ''\)/.test(l)), 'the query log shows the SQL');
  t.notMatch(p.stderr(), /WARN|ERROR/);
  await stopProxy(p);

  // The host name in the certificate: DNS:localhost matches an upstream given as localhost.
  const viaLocalhost = await launch(['--upstream', `localhost:${pg.port}`, '--upstream-tls', 'verify-full', '--upstream-tls-ca', certs.ca]);
  const r = await psql(viaLocalhost, "select 'by name'");
  t.equal(r.code, 0, `upstream localhost with verify-full: ${r.stderr}`);
  t.equal(r.stdout, 'by name\n');
  await stopProxy(viaLocalhost);
});

t.test('verification: the chain (verify-ca, and require with a CA file, as libpq) and the host name (verify-full)', async (t) => {
  for (const mode of ['verify-ca', 'require', 'prefer']) {
    const p = await launch(['--upstream-tls', mode, '--upstream-tls-ca', certs.otherCa]);
    const r = await psql(p, 'select 1');
    t.not(r.code, 0, `${mode} with a CA that did not sign the server's certificate: refused`);
    t.match(r.stderr, /FATAL:  pgscribe: could not connect to upstream server 127\.0\.0\.1:\d+: TLS handshake failed: (self-signed certificate|unable to verify the first certificate|unable to get local issuer certificate)/, mode);
    await p.waitStderr(new RegExp(`WARN TLS negotiation with upstream failed; refusing the client with 08001 conn=\\d+ client=127\\.0\\.0\\.1:\\d+ upstream=127\\.0\\.0\\.1:\\d+ upstream_tls=${mode} reason=`));
    await stopProxy(p);
  }

  // A pgscribe whose certificate (signed by the right CA) names wrong.example, in front of the
  // server: a second pgscribe verifying it with verify-full refuses, with verify-ca accepts.
  const front = await launch(tlsArgs(certs.wrongName, ['--upstream-tls', 'require']));
  const expectations: [string[], boolean][] = [
    [['--upstream-tls', 'verify-full', '--upstream-tls-ca', certs.ca], false],
    [['--upstream-tls', 'verify-ca', '--upstream-tls-ca', certs.ca], true],
    [['--upstream-tls', 'require'], true],
  ];
  for (const [args, ok] of expectations) {
    const p = await launch(args, front.port);
    const r = await psql(p, "select 'two hops'");
    if (ok) {
      t.equal(r.code, 0, `${args.slice(0, 2).join(' ')} accepts a certificate for another name: ${r.stderr}`);
      t.equal(r.stdout, 'two hops\n');
    } else {
      t.not(r.code, 0, `${args.slice(0, 2).join(' ')} refuses a certificate for another name`);
      t.match(r.stderr, /TLS handshake failed: Hostname\/IP does not match certificate's altnames: IP: 127\.0\.0\.1 is not in the cert's list/);
    }
    await stopProxy(p);
  }
  await stopProxy(front);
});

t.test('--upstream-tls-cert/--upstream-tls-key: PostgreSQL cert authentication of pgscribe', async (t) => {
  const withCert = await launch(['--upstream-tls', 'verify-full', '--upstream-tls-ca', certs.ca, '--upstream-tls-cert', certs.client.cert, '--upstream-tls-key', certs.client.key]);
  const r = await psql(withCert, `select current_user; ${SSL_INFO}`, { user: CERT_USER });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `${CERT_USER}\ntrue|TLSv1.3|/CN=${CERT_USER}\n`, 'logged in by certificate, as the certificate says');
  await stopProxy(withCert);

  const without = await launch(['--upstream-tls', 'verify-full', '--upstream-tls-ca', certs.ca]);
  const refused = await psql(without, 'select 1', { user: CERT_USER });
  t.not(refused.code, 0, 'no client certificate: the server refuses');
  t.match(refused.stderr, /FATAL:  connection requires a valid client certificate/);
  await stopProxy(without);
});

t.test('SIGHUP reloads the upstream CA; a CA file that does not load keeps the previous one', async (t) => {
  const dir = fs.mkdtempSync(path.join(certs.dir, 'upstream-reload-'));
  const ca = path.join(dir, 'ca.pem');
  fs.copyFileSync(certs.otherCa, ca);
  const p = await launch(['--upstream-tls', 'verify-full', '--upstream-tls-ca', ca]);
  const before = await psql(p, 'select 1');
  t.not(before.code, 0, 'the wrong CA: refused');
  fs.copyFileSync(certs.ca, ca);
  p.proc.kill('SIGHUP');
  await p.waitStderr(/INFO SIGHUP: TLS files for the upstream reloaded/);
  const after = await psql(p, "select 'reloaded'");
  t.equal(after.code, 0, `the right CA after SIGHUP: ${after.stderr}`);
  t.equal(after.stdout, 'reloaded\n');
  fs.writeFileSync(ca, 'half a file');
  p.proc.kill('SIGHUP');
  await p.waitStderr(/ERROR SIGHUP: cannot reload the TLS files for the upstream; new upstream connections keep the previous ones\. Fix the files and send SIGHUP again error="upstream-tls-ca: \S+ does not hold a PEM certificate/);
  const kept = await psql(p, "select 'kept'");
  t.equal(kept.code, 0, `the previous CA still in use: ${kept.stderr}`);
  await stopProxy(p);
});

// PostgreSQL offers SCRAM-SHA-256-PLUS on pgscribe's TLS connection. A plaintext client gets the
// list without it (libpq would give up seeing it offered without TLS). A TLS client with libpq's
// default channel_binding=prefer takes it and binds to the certificate pgscribe showed: the
// server accepts that only if it is its own certificate; else channel_binding=disable is needed.
t.test('SCRAM with --upstream-tls: plaintext clients log in; TLS clients need channel_binding=disable unless pgscribe shows the server\'s certificate', async (t) => {
  const scram = (p: Proxy, env: Record<string, string>) => psql(p, 'select current_user', { user: USERS.scram.user, env });

  const own = await launch(tlsArgs(certs.server2, ['--upstream-tls', 'require']));
  const plainClient = await scram(own, { PGSSLMODE: 'disable' });
  t.equal(plainClient.code, 0, `plaintext to pgscribe, TLS to PostgreSQL: ${plainClient.stderr}`);
  t.equal(plainClient.stdout, `${USERS.scram.user}\n`);
  const prefer = await scram(own, { PGSSLMODE: 'require' });
  t.not(prefer.code, 0, 'TLS on both legs with another certificate, channel_binding=prefer: the server refuses');
  t.match(prefer.stderr, /FATAL:  SCRAM channel binding check failed/);
  const disabled = await scram(own, { PGSSLMODE: 'require', PGCHANNELBINDING: 'disable' });
  t.equal(disabled.code, 0, `channel_binding=disable: ${disabled.stderr}`);
  t.equal(disabled.stdout, `${USERS.scram.user}\n`);
  const md5 = await psql(own, 'select current_user', { user: USERS.md5.user, env: { PGSSLMODE: 'require' } });
  t.equal(md5.code, 0, `md5 through TLS on both legs: ${md5.stderr}`);
  await stopProxy(own);

  // The same certificate on both legs: the binding (a hash of the server certificate) matches.
  const same = await launch(tlsArgs(certs.server, ['--upstream-tls', 'require']));
  const bound = await scram(same, { PGSSLMODE: 'require', PGCHANNELBINDING: 'require' });
  t.equal(bound.code, 0, `pgscribe showing PostgreSQL's own certificate, channel_binding=require: ${bound.stderr}`);
  await stopProxy(same);
});

/** Wait until PostgreSQL shows `n` active sessions of application_name `app`. */
async function waitActive(app: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if ((await pg.psql(`select count(*) from pg_stat_activity where application_name = '${app}' and state = 'active'`)) === '1') return;
    await sleep(50);
  }
  throw new Error(`no active session of ${app}`);
}

t.test('cancel requests reach a TLS-only server over TLS, whether the client cancels in TLS or in the clear', async (t) => {
  const p = await launch(tlsArgs(certs.server, ['--upstream-tls', 'require']));

  // A client that does everything in TLS, the cancel request too (as libpq 17's PQcancelCreate).
  const s = await connectTls(p.port, { ca: certs.ca });
  const started = await s.startup(USERS.trust.user, 'postgres', { application_name: 'tls_raw_cancel' });
  const k = started.find((m) => m.type === 'K');
  t.ok(k !== undefined, 'BackendKeyData');
  s.write(enc.query('select pg_sleep(30)'));
  await waitActive('tls_raw_cancel');
  const canceller = await connectTls(p.port, { ca: certs.ca });
  canceller.write(enc.cancel(k!.body.readInt32BE(0), k!.body.readInt32BE(4)));
  await canceller.waitClosed(5000);
  const msgs: BackendMessage[] = await s.readZ(1, 5000);
  t.equal(errors(msgs)[0]?.['C'], '57014', 'cancelled');
  t.ok((s.sock as tls.TLSSocket).encrypted, 'the session is TLS');
  await p.waitStderr(/INFO cancel request forwarded conn=\d+ client=127\.0\.0\.1:\d+ pid=\d+ tls=true/);
  s.end();

  // psql 15 (PQcancel) sends its cancel request in the clear: pgscribe forwards it over TLS.
  const { code, stderr: err, tookMs } = await cancelPsqlSleep({
    psql: PSQL,
    env: libpqEnv(p.port, undefined, { PGSSLMODE: 'require' }),
    pg,
    app: 'psql_cancel',
    settleMs: 300,
  });
  t.equal(code, 1, 'psql exits 1');
  t.match(err, /ERROR:  canceling statement due to user request/);
  t.ok(tookMs < 5000, 'cancelled at once');
  const forwarded = p.stderr().match(/cancel request forwarded [^\n]* tls=true/g) ?? [];
  t.equal(forwarded.length, 2, 'both cancel requests went to PostgreSQL over TLS');
  await stopProxy(p);
});
