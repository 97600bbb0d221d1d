// Issue 15, security finding 18, three of its smaller items:
// - the query log was opened with 'a', which follows a symbolic link: whoever could write the
//   log's directory could point pgscribe's writes (every query, every parameter) anywhere;
// - an existing log file that others could read stayed so, without a word;
// - the TLS private key's permissions were not checked (PostgreSQL refuses a key others can read).
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from '../harness/run';
import { MAIN, startProxy, type Proxy } from '../harness/proxy';
import { freePort } from '../harness/free-port';
import { makeCerts } from '../harness/certs';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-logfile-'));
const proxies: Proxy[] = [];
t.teardown(async () => {
  for (const p of proxies) if (p.alive) await p.stop('SIGTERM', { killAfterMs: 5000 });
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('a symbolic link as the log file is refused at start; its target is not written', async (t) => {
  const target = path.join(dir, 'elsewhere.txt');
  fs.writeFileSync(target, 'untouched\n');
  const link = path.join(dir, 'queries-link.log');
  fs.symlinkSync(target, link);
  const r = await run(process.execPath, [MAIN, '--listen', `127.0.0.1:${await freePort()}`, '--upstream', '127.0.0.1:1', '--log', link], { timeoutMs: 15_000 });
  t.equal(r.code, 1, 'exits 1');
  t.match(r.stderr, /ERROR cannot open the query log .*ELOOP/, `says why: ${r.stderr.trim()}`);
  t.equal(fs.readFileSync(target, 'utf8'), 'untouched\n', 'the link target is unchanged');
});

t.test('a new log file is 0600; an existing one that others can read is said once', async (t) => {
  const fresh = path.join(dir, 'fresh.log');
  const p1 = await startProxy({ upstreamPort: 1, args: ['--log', fresh] });
  proxies.push(p1);
  t.equal(fs.statSync(fresh).mode & 0o777, 0o600, 'created 0600');
  t.notMatch(p1.stderr(), /can be read by other users/, 'no warning for it');
  await p1.stop('SIGTERM', { killAfterMs: 5000 });

  const shared = path.join(dir, 'shared.log');
  fs.writeFileSync(shared, '');
  fs.chmodSync(shared, 0o644);
  const p2 = await startProxy({ upstreamPort: 1, args: ['--log', shared] });
  proxies.push(p2);
  await p2.waitStderr(/WARN the query log can be read by other users than pgscribe's; .* run chmod 600 on it log=\S+shared\.log mode=0644/);
  t.equal(fs.statSync(shared).mode & 0o777, 0o644, "the operator's file is left as it is");
  await p2.stop('SIGTERM', { killAfterMs: 5000 });
});

t.test('a TLS private key others can read is said at start; a 0600 one is not', async (t) => {
  const certs = makeCerts();
  const key = path.join(dir, 'server.key');
  fs.copyFileSync(certs.server.key, key);
  for (const [mode, warned] of [
    [0o644, true],
    [0o600, false],
  ] as const) {
    fs.chmodSync(key, mode);
    const p = await startProxy({ upstreamPort: 1, args: ['--tls-cert', certs.server.cert, '--tls-key', key] });
    proxies.push(p);
    await p.waitStderr(/TLS for clients: certificate loaded/);
    if (warned) await p.waitStderr(/WARN TLS for clients: the private key can be read by other users \(PostgreSQL refuses such a key file\); run chmod 600 on it key=\S+server\.key mode=0644/);
    else t.notMatch(p.stderr(), /private key can be read by other users/, 'no warning for 0600');
    t.pass(`mode ${mode.toString(8)}: ${warned ? 'warned' : 'quiet'}`);
    await p.stop('SIGTERM', { killAfterMs: 5000 });
  }
});
