// Real psql through pgscribe, compared with psql straight against the same cluster.
//
// One cluster and one shared proxy for the whole file (the SIGTERM test starts two short-lived
// proxies of its own, since it shuts them down). Every psql runs with -X (no ~/.psqlrc) and -w
// (never prompt). Outputs that do not depend on the path (proxy or direct) must be byte-for-byte
// identical; the only things that may differ are backend PIDs and the port in error messages.

import t from 'tap';
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCluster, USERS, PG_BIN, type PgCluster } from '../harness/pg-cluster';
import { run, type RunResult } from '../harness/run';
import { startProxy, type Proxy } from '../harness/proxy';
import { RawClient, enc, errorFields, type BackendMessage } from '../harness/wire';
import { sleep } from '../harness/time';
import { cancelPsqlSleep } from '../helpers/psql-cancel';

/** A PostgreSQL client program from the server's bin dir, else from $PATH. */
function pgTool(name: string): string {
  const p = path.join(PG_BIN, name);
  return fs.existsSync(p) ? p : name;
}
const PSQL = pgTool('psql');

let pg: PgCluster;
let proxy: Proxy;

/** A query log line: `<iso ts> conn=<n> <user>@<db> <host:port> <type> ... sql=<escaped sql>`. */
const LINE_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z conn=\d+ [^ @]+@[^ ]+ 127\.0\.0\.1:\d+ [QPBE] .*sql=/;

t.before(async () => {
  // log_connections: the server says which auth method it used ("connection authenticated").
  pg = await startCluster({ conf: { log_connections: 'on', log_line_prefix: '%m [%p] %a ' } });
  proxy = await startProxy({ upstreamPort: pg.port });
});

t.teardown(async () => {
  if (proxy) await proxy.stop();
  if (pg) await pg.stop();
});

type Target = 'proxy' | 'direct';

interface PsqlOpts {
  user?: string;
  via?: Target;
  input?: string;
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
}

/** Environment for libpq pointing at the proxy or straight at the cluster (PGPASSWORD set for password users). */
function envFor(via: Target, user?: string, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const e = pg.env(user);
  if (via === 'proxy') {
    e.PGHOST = proxy.host;
    e.PGPORT = String(proxy.port);
  }
  delete e.PGSSLMODE;
  delete e.PGGSSENCMODE;
  delete e.PGAPPNAME;
  delete e.PGOPTIONS;
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete e[k];
    else e[k] = v;
  }
  return e;
}

function psql(args: string[], o: PsqlOpts = {}): Promise<RunResult> {
  return run(PSQL, ['-X', '-w', ...args], {
    env: envFor(o.via ?? 'proxy', o.user, o.env),
    input: o.input,
    timeoutMs: o.timeoutMs ?? 60_000,
  });
}

/** The same psql invocation through the proxy and directly. */
async function both(args: string[], o: Omit<PsqlOpts, 'via'> = {}): Promise<{ proxy: RunResult; direct: RunResult }> {
  const viaProxy = await psql(args, { ...o, via: 'proxy' });
  const direct = await psql(args, { ...o, via: 'direct' });
  return { proxy: viaProxy, direct };
}

/** Wait until the query log holds a line matching `pred` (the log is written asynchronously). */
async function waitLog(pred: (line: string) => boolean, timeoutMs = 10_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = proxy.logLines();
    const hits = lines.filter(pred);
    if (hits.length > 0) return hits;
    if (Date.now() > deadline) throw new Error(`no query log line matched within ${timeoutMs} ms; log:\n${lines.slice(-20).join('\n')}`);
    await sleep(25);
  }
}

/** Let the asynchronous log writer catch up (lines already queued reach the file). */
async function logSettled(): Promise<string[]> {
  let prev = -1;
  for (let i = 0; i < 100; i++) {
    const n = proxy.logLines().length;
    if (n === prev) break;
    prev = n;
    await sleep(100);
  }
  return proxy.logLines();
}

function serverLog(): string {
  return fs.readFileSync(pg.logFile, 'utf8');
}

const sha256 = (s: string) => crypto.createHash('sha256').update(s).digest('hex');
const md5 = (s: string) => crypto.createHash('md5').update(s, 'utf8').digest('hex');

// ---------------------------------------------------------------------------------------------

t.test('SSL negotiation: sslmode prefer (default) and disable connect; require is refused cleanly', async (t) => {
  // A raw SSLRequest gets the single byte 'N' from the proxy, and the connection stays usable.
  const raw = await RawClient.connect(proxy.port);
  raw.write(enc.sslRequest());
  t.equal(await raw.readByte(), 'N', 'SSLRequest answered with N');
  const startup = await raw.startup('postgres');
  t.equal(startup[startup.length - 1]!.type, 'Z', 'startup after N completes');
  raw.write(enc.terminate());
  raw.end();

  for (const mode of ['prefer', 'disable', 'allow']) {
    const r = await psql(['-At', '-c', "select 'hello ' || current_user"], { env: { PGSSLMODE: mode } });
    t.equal(r.code, 0, `sslmode=${mode} exits 0: ${r.stderr}`);
    t.equal(r.stdout, 'hello postgres\n', `sslmode=${mode} result`);
  }
  // No PGSSLMODE at all: libpq's default (prefer) sends an SSLRequest first.
  const def = await psql(['-At', '-c', 'select 1']);
  t.equal(def.code, 0, def.stderr);
  t.equal(def.stdout, '1\n');

  // The proxy says N, so a client that insists on TLS gives up with libpq's own message.
  const req = await psql(['-At', '-c', 'select 1'], { env: { PGSSLMODE: 'require' } });
  t.not(req.code, 0, 'sslmode=require fails');
  t.match(req.stderr, /server does not support SSL, but SSL was required/);
  t.notMatch(proxy.stderr(), /protocol violation|internal error/, 'the proxy saw nothing wrong');
});

t.test('authentication is relayed: trust, SCRAM-SHA-256, md5', async (t) => {
  const sql = 'select current_user, session_user, pg_catalog.current_database()';
  for (const u of [USERS.trust.user, USERS.scram.user, USERS.md5.user]) {
    const app = `auth_${u}_${process.pid}`;
    const r = await both(['-At', '-c', sql], { user: u, env: { PGAPPNAME: app } });
    t.equal(r.proxy.code, 0, `${u} through the proxy: ${r.proxy.stderr}`);
    t.equal(r.proxy.stdout, `${u}|${u}|postgres\n`, `${u} is logged in through the proxy`);
    t.equal(r.proxy.stdout, r.direct.stdout, `${u}: identical to direct`);
    // The server itself ran the authentication exchange (the proxy knows no secrets).
    // %a is not known yet when the server logs the authentication: match by backend PID.
    const log = serverLog().split('\n');
    const pidOf = (l: string) => /^\S+ \S+ \S+ \[(\d+)\]/.exec(l)?.[1];
    const pids = new Set(log.filter((l) => l.includes(`LOG:  connection authorized: user=${u} database=postgres application_name=${app}`)).map(pidOf));
    t.equal(pids.size, 2, `${u}: two sessions (proxy, direct) in the server log`);
    const authLines = log.filter((l) => pids.has(pidOf(l)) && l.includes('LOG:  connection authenticated:'));
    if (u === USERS.trust.user) {
      t.equal(authLines.length, 0, 'trust: no authenticated identity');
    } else {
      const method = u === USERS.scram.user ? 'scram-sha-256' : 'md5';
      // Once through the proxy, once directly.
      t.equal(authLines.length, 2, `${u}: two authenticated connections in the server log`);
      for (const l of authLines) t.match(l, `identity="${u}" method=${method}`, `${u} authenticated with ${method}`);
    }
  }

  // Wrong and missing passwords fail through the proxy exactly as directly.
  for (const u of [USERS.scram.user, USERS.md5.user]) {
    const bad = await psql(['-At', '-c', 'select 1'], { user: u, env: { PGPASSWORD: 'wrong-password' } });
    t.not(bad.code, 0, `${u}: wrong password rejected`);
    t.match(bad.stderr, `FATAL:  password authentication failed for user "${u}"`);
    const none = await psql(['-At', '-c', 'select 1'], { user: u, env: { PGPASSWORD: undefined, PGPASSFILE: '/dev/null' } });
    t.not(none.code, 0, `${u}: missing password rejected`);
    t.match(none.stderr, /no password supplied/);
  }
  t.notMatch(proxy.stderr(), /protocol violation|internal error/);
});

/** Read the next backend message, failing the test on a wrong type. */
async function expectMsg(c: RawClient, type: string): Promise<BackendMessage> {
  const m = await c.read(5000);
  if (m.type !== type) {
    const detail = m.type === 'E' ? JSON.stringify(errorFields(m.body)) : m.body.toString('latin1');
    throw new Error(`expected '${type}', got '${m.type}': ${detail}`);
  }
  return m;
}

const passwordMessage = (body: Buffer) => enc.raw('p', body);

t.test('wrong passwords end in SQLSTATE 28P01 through the proxy (raw exchange)', async (t) => {
  // psql does not print the SQLSTATE of a connection failure, so drive the exchange by hand.

  // SCRAM-SHA-256 with a bogus ClientProof.
  {
    const c = await RawClient.connect(proxy.port);
    c.write(enc.startup({ user: USERS.scram.user, database: 'postgres' }));
    const sasl = await expectMsg(c, 'R');
    t.equal(sasl.body.readInt32BE(0), 10, 'AuthenticationSASL');
    t.match(sasl.body.toString('latin1', 4), /SCRAM-SHA-256/);
    const clientNonce = crypto.randomBytes(18).toString('base64');
    const first = Buffer.from(`n,,n=,r=${clientNonce}`);
    const len = Buffer.alloc(4);
    len.writeInt32BE(first.length);
    c.write(passwordMessage(Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), len, first])));
    const cont = await expectMsg(c, 'R');
    t.equal(cont.body.readInt32BE(0), 11, 'AuthenticationSASLContinue');
    const serverFirst = cont.body.toString('utf8', 4);
    const nonce = /(?:^|,)r=([^,]+)/.exec(serverFirst)![1]!;
    t.ok(nonce.startsWith(clientNonce), 'server nonce extends ours');
    const proof = Buffer.alloc(32).toString('base64');
    c.write(passwordMessage(Buffer.from(`c=biws,r=${nonce},p=${proof}`)));
    const err = await expectMsg(c, 'E');
    const f = errorFields(err.body);
    t.equal(f.C, '28P01', 'SCRAM: invalid_password');
    t.equal(f.S, 'FATAL');
    t.match(f.M!, `password authentication failed for user "${USERS.scram.user}"`);
    await c.waitClosed();
  }

  // md5 with a wrong hash.
  {
    const c = await RawClient.connect(proxy.port);
    c.write(enc.startup({ user: USERS.md5.user, database: 'postgres' }));
    const r = await expectMsg(c, 'R');
    t.equal(r.body.readInt32BE(0), 5, 'AuthenticationMD5Password');
    t.equal(r.body.length, 8, 'with a 4-byte salt');
    c.write(passwordMessage(Buffer.from('md5' + '0'.repeat(32) + '\0')));
    const err = await expectMsg(c, 'E');
    const f = errorFields(err.body);
    t.equal(f.C, '28P01', 'md5: invalid_password');
    t.match(f.M!, `password authentication failed for user "${USERS.md5.user}"`);
    await c.waitClosed();
  }
});

// COPY text format data with tabs, backslashes, newlines, NULLs and non-ASCII, written in the
// canonical escaping that COPY TO uses, so that COPY TO must give back exactly these bytes.
const COPY_ROWS = 3000;
function copyValue(i: number): string | null {
  if (i % 97 === 0) return null;
  switch (i % 5) {
    case 0:
      return `plain ${i}`;
    case 1:
      return `tab\there ${i}\t`;
    case 2:
      return `back\\slash ${i} \\N \\\\`;
    case 3:
      return `line\nbreak ${i}\r\n`;
    default:
      return `ünïcødé ${i} "quotes" 'single'`;
  }
}
function copyEscape(v: string | null): string {
  if (v === null) return '\\N';
  return v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}
const COPY_DATA = Array.from({ length: COPY_ROWS }, (_, k) => `${k + 1}\t${copyEscape(copyValue(k + 1))}\n`).join('');
const COPY_EXPECTED_MD5 = md5(
  Array.from({ length: COPY_ROWS }, (_, k) => `${k + 1}:${copyValue(k + 1) ?? '<null>'}`).join('|'),
);

// A psql script (fed on stdin, so COPY FROM STDIN data is read inline from the script).
const SCRIPT = [
  '\\set VERBOSITY verbose',
  'create table copy_t (id int primary key, v text);',
  'COPY copy_t FROM STDIN;',
  COPY_DATA + '\\.',
  "select count(*), count(v), md5(string_agg(id || ':' || coalesce(v, '<null>'), '|' order by id)) from copy_t;",
  // A COPY that the server rejects halfway: the error arrives while psql is still streaming.
  'COPY copy_t FROM STDIN;',
  '900001\tok',
  'not-a-number\tbad',
  '900002\tafter the bad row',
  '\\.',
  'select count(*) from copy_t;',
  // LISTEN here, NOTIFY from another session, then a trivial query delivers the notification.
  'LISTEN ch;',
  `\\! "${PSQL}" -X -w -q -c "NOTIFY ch, 'payload with spaces'"`,
  'select 1 as after_notify;',
  // An error inside a transaction: everything up to ROLLBACK fails with 25P02.
  'BEGIN;',
  'select no_such_column from copy_t;',
  'select 1;',
  'ROLLBACK;',
  'select 2 as after_rollback;',
  // NoticeResponse relayed.
  "do $$ begin raise notice 'notice % from plpgsql', 42; raise warning 'and a warning'; end $$;",
  'select 3 as the_end;',
  '',
].join('\n');

t.test('psql script: COPY in/out, LISTEN/NOTIFY, errors in a transaction, notices', async (t) => {
  await pg.psql('drop table if exists copy_t');
  const direct = await psql(['-f', '-'], { input: SCRIPT, via: 'direct' });
  await pg.psql('drop table copy_t');
  const viaProxy = await psql(['-f', '-'], { input: SCRIPT });
  t.equal(viaProxy.code, 0, 'script exits 0 through the proxy');
  t.equal(direct.code, 0, 'script exits 0 directly');

  const pidFree = (s: string) => s.replace(/server process with PID \d+/g, 'server process with PID <pid>');
  t.equal(pidFree(viaProxy.stdout), pidFree(direct.stdout), 'stdout identical to direct (up to the notifier PID)');
  t.equal(viaProxy.stderr, direct.stderr, 'stderr (errors, notices) identical to direct');

  const out = viaProxy.stdout;
  t.match(
    out,
    new RegExp(`\\n +${COPY_ROWS} \\| +${COPY_ROWS - Math.floor(COPY_ROWS / 97)} \\| ${COPY_EXPECTED_MD5}\\n`),
    'COPY FROM STDIN stored exactly the data sent',
  );
  t.match(out, /Asynchronous notification "ch" with payload "payload with spaces" received from server process with PID \d+\./);
  t.ok(out.indexOf('Asynchronous notification') > out.indexOf('after_notify'), 'the notification shows up after the trivial query');
  t.match(out, / after_rollback \n-+\n +2\n/, 'the session works after ROLLBACK');
  t.match(out, / the_end \n-+\n +3\n/, 'the script ran to the end');

  const err = viaProxy.stderr;
  t.match(err, /ERROR:  22P02: invalid input syntax for type integer: "not-a-number"\nCONTEXT:  COPY copy_t, line 2/, 'failed COPY reported');
  t.match(err, /ERROR:  42703: column "no_such_column" does not exist/);
  t.match(err, /ERROR:  25P02: current transaction is aborted, commands ignored until end of transaction block/);
  t.match(err, /NOTICE:  00000: notice 42 from plpgsql/, 'NoticeResponse passed through');
  t.match(err, /WARNING:  01000: and a warning/);
  // The rejected COPY stored nothing.
  t.match(out, new RegExp(`\\n +${COPY_ROWS}\\n\\(1 row\\)\\n`), 'count after the failed COPY is unchanged');
  t.equal(await pg.psql('select count(*) from copy_t'), String(COPY_ROWS));

  // COPY TO STDOUT: identical bytes through the proxy and directly, and exactly what went in.
  const copyOut = await both(['-c', 'COPY copy_t TO STDOUT']);
  t.equal(copyOut.proxy.code, 0, copyOut.proxy.stderr);
  t.equal(copyOut.proxy.stdout, copyOut.direct.stdout, 'COPY TO STDOUT identical to direct');
  t.equal(copyOut.proxy.stdout.length, COPY_DATA.length);
  t.ok(copyOut.proxy.stdout === COPY_DATA, 'COPY TO STDOUT gives back the bytes of COPY FROM STDIN');

  // Binary COPY through the proxy too (psql writes the raw CopyData bytes to stdout).
  const bin = await both(['-c', 'COPY copy_t TO STDOUT (FORMAT binary)']);
  t.equal(bin.proxy.code, 0, bin.proxy.stderr);
  t.equal(sha256(bin.proxy.stdout), sha256(bin.direct.stdout), 'binary COPY identical to direct');
  t.match(bin.proxy.stdout, /^PGCOPY\n/);

  // The query log has the statements psql sent, one line each.
  const lines = await waitLog((l) => l.endsWith(' Q sql=COPY copy_t FROM STDIN;'));
  t.equal(lines.length, 2, 'both COPY FROM STDIN statements logged');
  await waitLog((l) => l.endsWith(" Q sql=NOTIFY ch, 'payload with spaces'"));
  await waitLog((l) => l.endsWith(' Q sql=select 3 as the_end;'));
  const all = await logSettled();
  t.notOk(all.some((l) => l.includes('not-a-number') || l.includes('900001')), 'COPY data is not logged as queries');
  t.equal(all.filter((l) => l.endsWith(' Q sql=select no_such_column from copy_t;')).length, 1);
  t.equal(all.filter((l) => / Q sql=ROLLBACK;$/.test(l)).length, 1);
  t.equal(all.filter((l) => / Q sql=do \$\$ begin raise notice 'notice % from plpgsql', 42; raise warning 'and a warning'; end \$\$;$/.test(l)).length, 1);
});

t.test('multi-statement simple query: three results, one Q line in the log', async (t) => {
  const sql = "select 1 as one;\nselect 2 as two;\tselect 'x\\y' as three";
  const r = await both(['-At', '-c', sql]);
  t.equal(r.proxy.code, 0, r.proxy.stderr);
  t.equal(r.proxy.stdout, '1\n2\nx\\y\n', 'three results');
  t.equal(r.proxy.stdout, r.direct.stdout, 'identical to direct');

  // Control characters and backslashes escaped: the line is exactly this.
  const escaped = "select 1 as one;\\nselect 2 as two;\\tselect 'x\\\\y' as three";
  const hits = await waitLog((l) => l.includes('select 1 as one;'));
  await logSettled();
  const again = proxy.logLines().filter((l) => l.includes('select 1 as one;'));
  t.equal(again.length, 1, 'exactly one log line for the whole query string');
  t.match(hits[0]!, new RegExp(`^\\S+Z conn=\\d+ postgres@postgres 127\\.0\\.0\\.1:\\d+ Q sql=${escapeRe(escaped)}$`));
  t.ok(hits[0]!.endsWith(' Q sql=' + escaped), `line ends with the escaped SQL: ${hits[0]}`);
});

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

t.test('psql meta-commands that use the extended protocol or extra queries: \\gdesc, \\gset, \\gexec', async (t) => {
  // \gdesc prepares the query (Parse/Sync, then Describe/Sync) instead of running it.
  const input = [
    "select 1 as a, 'x'::text as b, now() as c \\gdesc",
    'select 42 as v \\gset',
    '\\echo v is :v',
    "select format('select %s * 2 as doubled', :v) \\gexec",
    'prepare s(int) as select $1 + 1 as plus_one;',
    'execute s(41);',
    '',
  ].join('\n');
  const r = await both(['-v', 'ON_ERROR_STOP=1'], { input });
  t.equal(r.proxy.code, 0, r.proxy.stderr);
  t.equal(r.proxy.stdout, r.direct.stdout, 'stdout identical to direct');
  t.equal(r.proxy.stderr, r.direct.stderr, 'stderr identical to direct');
  t.match(r.proxy.stdout, / a +\| integer\n b +\| text\n c +\| timestamp with time zone\n/, '\\gdesc describes the columns');
  t.match(r.proxy.stdout, /\nv is 42\n/, '\\gset');
  t.match(r.proxy.stdout, / doubled \n-+\n +84\n/, '\\gexec');
  t.match(r.proxy.stdout, / plus_one \n-+\n +42\n/, 'PREPARE/EXECUTE');
  const p = await waitLog((l) => / P sql=select 1 as a, 'x'::text as b, now\(\) as c ?$/.test(l));
  t.equal(p.length, 1, 'the \\gdesc Parse is logged as one P line (unnamed statement: no stmt=)');
  await waitLog((l) => l.endsWith(' Q sql=select 42 * 2 as doubled'));
});

t.test('startup parameters are relayed (PGOPTIONS, application_name, database)', async (t) => {
  const r = await psql(['-At', '-c', "show work_mem; show application_name; select current_database(); show search_path"], {
    user: USERS.trust.user,
    env: { PGOPTIONS: '-c work_mem=7MB -c search_path=pg_catalog', PGAPPNAME: 'relay check', PGDATABASE: 'template1' },
  });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '7MB\nrelay check\ntemplate1\npg_catalog\n');
  await waitLog((l) => / trust_user@template1 127\.0\.0\.1:\d+ Q sql=show work_mem; /.test(l));
  // A database that does not exist: the server's FATAL reaches psql unchanged.
  const bad = await psql(['-At', '-c', 'select 1'], { env: { PGDATABASE: 'no_such_db' } });
  t.not(bad.code, 0);
  t.match(bad.stderr, /FATAL:  database "no_such_db" does not exist/);
});

t.test('a 1e6-row result is identical through the proxy and directly', async (t) => {
  const sql = 'select g, md5(g::text) from generate_series(1,1000000) g';
  const r = await both(['-At', '-c', sql], { timeoutMs: 120_000 });
  t.equal(r.proxy.code, 0, r.proxy.stderr);
  t.equal(r.direct.code, 0, r.direct.stderr);
  t.equal(r.proxy.stdout.length, r.direct.stdout.length, 'same length');
  t.equal(sha256(r.proxy.stdout), sha256(r.direct.stdout), 'same sha256');
  t.ok(r.proxy.stdout.startsWith(`1|${md5('1')}\n2|${md5('2')}\n`), 'first rows');
  t.ok(r.proxy.stdout.endsWith(`1000000|${md5('1000000')}\n`), 'last row');

  // The same with FETCH_COUNT: psql wraps the query in BEGIN/DECLARE/FETCH.../CLOSE/COMMIT.
  const fc = await both(['-At', '-v', 'FETCH_COUNT=50000', '-c', sql], { timeoutMs: 120_000 });
  t.equal(fc.proxy.code, 0, fc.proxy.stderr);
  t.equal(sha256(fc.proxy.stdout), sha256(r.direct.stdout), 'FETCH_COUNT output identical too');
  await waitLog((l) => / Q sql=FETCH FORWARD 50000 FROM _psql_cursor$/.test(l));
  await logSettled();
  const fetches = proxy.logLines().filter((l) => / Q sql=FETCH FORWARD 50000 FROM _psql_cursor$/.test(l));
  t.equal(fetches.length, 21, '20 full fetches and one empty one, each logged');
});

t.test('CancelRequest: SIGINT to psql cancels pg_sleep(30) through the proxy', async (t) => {
  // Wait until the query is really running on the server (and psql a second old), then press ^C.
  const res = await cancelPsqlSleep({ psql: PSQL, env: envFor('proxy'), pg, app: 'cancel_me', minRunMs: 1000 });
  t.equal(res.signal, null, 'psql was not killed');
  t.equal(res.code, 1, 'psql exits with 1 (query failed)');
  t.match(res.stderr, /Cancel request sent/);
  t.match(res.stderr, /ERROR:  canceling statement due to user request/);
  t.equal(res.stdout, '');
  t.ok(res.tookMs < 5000, `psql finished ${res.tookMs} ms after SIGINT (well under 30 s)`);
  await proxy.waitStderr(/cancel request forwarded conn=\d+/);
  const left = await pg.psql("select count(*) from pg_stat_activity where application_name = 'cancel_me'");
  t.equal(left, '0', 'no backend left running pg_sleep');
});

t.test('replication connection: IDENTIFY_SYSTEM through the proxy', async (t) => {
  const direct = await psql(['-At', 'dbname=postgres replication=database', '-c', 'IDENTIFY_SYSTEM'], { via: 'direct' });
  t.equal(direct.code, 0, direct.stderr);
  const [sysid, timeline, , dbname] = direct.stdout.trim().split('|');
  t.match(sysid!, /^\d{10,}$/, 'direct systemid');

  for (const conn of ['dbname=postgres replication=database', 'replication=true']) {
    const r = await psql(['-At', conn, '-c', 'IDENTIFY_SYSTEM']);
    t.equal(r.code, 0, `${conn}: ${r.stderr}`);
    const f = r.stdout.trim().split('|');
    t.equal(f.length, 4, 'four columns');
    t.equal(f[0], sysid, `${conn}: same systemid as direct`);
    t.equal(f[1], timeline, 'same timeline');
    t.equal(f[3], conn.includes('dbname') ? dbname : '', 'dbname column');
  }
  // A replication command the walsender answers with a result set and then a CommandComplete.
  const show = await both(['-At', 'dbname=postgres replication=database', '-c', 'SHOW wal_level']);
  t.equal(show.proxy.code, 0, show.proxy.stderr);
  t.equal(show.proxy.stdout, show.direct.stdout);
  t.equal(show.proxy.stdout, 'logical\n', "the harness's default wal_level (for the change stream)");
  await waitLog((l) => / postgres@postgres .* Q sql=IDENTIFY_SYSTEM$/.test(l));
});

t.test('pg_basebackup -X stream through the proxy (CopyOut and CopyBoth streams)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-basebackup-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const target = path.join(dir, 'backup');
  const r = await run(pgTool('pg_basebackup'), ['-D', target, '-X', 'stream', '-c', 'fast', '--no-sync', '-w'], {
    env: envFor('proxy'),
    timeoutMs: 60_000,
  });
  t.equal(r.code, 0, `pg_basebackup exits 0: ${r.stderr}`);
  t.equal(fs.readFileSync(path.join(target, 'PG_VERSION'), 'utf8'), fs.readFileSync(path.join(pg.dataDir, 'PG_VERSION'), 'utf8'));
  const v = await run(pgTool('pg_verifybackup'), [target], { timeoutMs: 60_000 });
  t.equal(v.code, 0, `pg_verifybackup: ${v.stderr}`);
  t.match(v.stdout, /backup successfully verified/);
  await waitLog((l) => / Q sql=BASE_BACKUP \(/.test(l));
  await waitLog((l) => / Q sql=START_REPLICATION SLOT "pg_basebackup_\d+" /.test(l));
  t.notMatch(proxy.stderr(), /protocol violation|internal error|illegal client state/);
});

t.test('SIGTERM closes an idle psql session at once, also right after a failed COPY FROM STDIN', async (t) => {
  // psql sits idle, waiting for more script on stdin (it does not read its socket meanwhile, so
  // the proxy's close completes when its linger timer destroys the socket, about 5 s).
  // The grace period is far longer: a session the proxy still thinks is busy would wait for it.
  const GRACE_MS = 30_000;
  const PROMPT_MS = 9_000;
  // A COPY whose first row is bad: the server answers ErrorResponse + ReadyForQuery at once and
  // ignores the CopyData/CopyDone that psql keeps streaming afterwards (about 2 MB here).
  const failedCopy =
    'COPY copy_sigterm FROM STDIN;\nnot-a-number\tbad\n' +
    Array.from({ length: 150_000 }, (_, i) => `${i}\tvalue ${i}`).join('\n') +
    '\n\\.\n';
  await pg.psql('create table copy_sigterm (id int, v text)');
  t.teardown(() => pg.psql('drop table copy_sigterm'));
  const cases: [string, string][] = [
    ['after a query', 'select 1;\n'],
    ['after a failed COPY FROM STDIN', failedCopy],
  ];
  await Promise.all(
    cases.map(async ([name, sql]) => {
      const p = await startProxy({ upstreamPort: pg.port, args: ['--shutdown-grace', String(GRACE_MS)] });
      const child = spawn(PSQL, ['-X', '-w', '-v', 'VERBOSITY=verbose'], {
        env: { ...pg.env(), PGHOST: p.host, PGPORT: String(p.port) },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let err = '';
      child.stdout.resume();
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      child.stdin.on('error', () => {});
      const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      // \warn writes to stderr, unbuffered: psql has finished everything before it.
      child.stdin.write(sql + '\\warn READY\n');
      const deadline = Date.now() + 30_000;
      while (!err.includes('READY') && Date.now() < deadline) await sleep(20);
      t.match(err, /READY/, `${name}: psql is idle`);

      const start = Date.now();
      const stopped = p.stop('SIGTERM');
      const winner = await Promise.race([stopped.then(() => 'exited'), new Promise((r) => setTimeout(() => r('still running'), PROMPT_MS))]);
      const took = Date.now() - start;
      t.equal(winner, 'exited', `${name}: the proxy exits within ${PROMPT_MS} ms of SIGTERM (took ${took} ms; grace is ${GRACE_MS} ms)`);
      t.notMatch(p.stderr(), /grace period over/, `${name}: the session was not left for the grace period`);

      // psql's next query finds the connection closed, with the proxy's 57P01 FATAL.
      child.stdin.end('select 2;\n');
      const code = await closed;
      t.not(code, 0, `${name}: psql fails its next query`);
      t.match(err, /FATAL:  57P01: pgscribe: terminating connection because the proxy is shutting down/, `${name}: 57P01 reached psql`);
      const exit = await Promise.race([stopped, new Promise((r) => setTimeout(() => r(null), 10_000))]);
      if (exit === null) p.proc.kill('SIGKILL');
      await stopped;
    }),
  );
});

t.test('every query log line is well formed; the proxy reported no errors', async (t) => {
  const lines = await logSettled();
  t.ok(lines.length > 40, `${lines.length} lines`);
  const bad = lines.filter((l) => !LINE_RE.test(l));
  t.same(bad, [], 'all lines match the text format');
  // psql 15 uses the simple protocol, except for the Parse of \gdesc.
  const notQ = lines.filter((l) => !/ 127\.0\.0\.1:\d+ Q /.test(l));
  t.equal(notQ.length, 1, 'psql sent only Q messages, and one P for \\gdesc');
  t.match(notQ[0] ?? '', / P sql=select 1 as a, /);
  const users = new Set(lines.map((l) => / conn=\d+ ([^ ]+) /.exec(l)![1]));
  for (const u of ['postgres@postgres', `${USERS.trust.user}@postgres`, `${USERS.scram.user}@postgres`, `${USERS.md5.user}@postgres`]) {
    t.ok(users.has(u), `lines for ${u}`);
  }
  t.notMatch(proxy.stderr(), /\bERROR\b|internal error|illegal client state/, 'no errors in the ops log');
  const stopped = await proxy.stop();
  t.same(stopped, { code: 0, signal: null }, 'proxy shuts down cleanly');
});
