// Live reload (issue 18): SIGHUP re-reads --config while pgbench runs through pgscribe, in front of
// real streaming replication (a primary and two standbys). A changed upstream list, connection
// limit, cache rules and log settings take effect for new sessions and queries with no failed
// transaction; a setting that only a restart changes is reported and kept; a broken file changes
// nothing and says why, the same words --check gives for it.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startReplicaSet, type ReplicaNode, type ReplicaSet } from '../harness/pg-replication';
import { PG_BIN } from '../harness/pg-cluster';
import { MAIN } from '../harness/proxy';
import { proxyFixture } from '../helpers/fixture';
import { errorsIn, value } from '../harness/wire';
import { run } from '../harness/run';
import { sleep, waitFor } from '../harness/time';

const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';

let rs: ReplicaSet;
const fx = proxyFixture({ upstreamPort: () => rs.primary.port, user: 'postgres' });

t.before(async () => {
  rs = await startReplicaSet({ standbys: 2 });
  await rs.primary.psql('create table rl (id serial primary key, v bigint); create table rl_static (id int primary key); insert into rl_static values (1), (2)');
  for (const s of rs.standbys) await s.catchUpWith(rs.primary);
});

t.teardown(async () => {
  await fx.cleanup('SIGKILL');
  await rs?.stopAll();
});

const node = (n: ReplicaNode) => `127.0.0.1:${n.port}`;

t.test('SIGHUP under pgbench: upstreams, max-connections, cache rules and log settings change live; 0 failed transactions; a broken file changes nothing', async (t) => {
  const [s1, s2] = rs.standbys as [ReplicaNode, ReplicaNode];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-reload-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'pgscribe.json');
  const base = {
    'catalog-user': 'postgres',
    'health-interval-ms': 300,
    'health-failures': 2,
    cache: true,
    'cache-ttl': 60000,
    admin: '127.0.0.1:0',
  };
  const write = (o: Record<string, unknown>) => fs.writeFileSync(file, JSON.stringify({ ...base, ...o }, null, 2));
  write({ upstream: `${node(rs.primary)},${node(s1)}`, 'max-connections': 40, 'max-user-connections': 50, 'log-param-max-bytes': 256 });
  const p = await fx.launch(['--config', file], null);
  const adminLine = await p.waitStderr(/admin server listening admin=http:\/\/127\.0\.0\.1:(\d+)\//);
  const admin = `http://127.0.0.1:${/admin=http:\/\/127\.0\.0\.1:(\d+)\//.exec(adminLine)![1]}`;
  await p.waitStderr(new RegExp(`upstream primary chosen: new sessions go to it primary=${node(rs.primary)}`), 15_000);

  // Before: a read of rl_static comes from the cache.
  const STATIC = 'select count(*)::text from rl_static';
  const staticHit = async (): Promise<boolean> => {
    const c = await fx.session(p.port);
    let hit = false;
    for (let i = 0; i < 3; i++) {
      t.equal(value(await c.query(STATIC)), '2');
      await sleep(30);
    }
    const lines = p.logLines().filter((l) => l.includes(STATIC));
    hit = / Q cache=hit /.test(lines[lines.length - 1] ?? '');
    c.sock.destroy();
    return hit;
  };
  await waitFor(async () => ((await staticHit()) ? true : undefined), { timeoutMs: 10_000, timeout: () => 'rl_static never came from the cache before the reload' });
  t.pass('before the reload: rl_static reads come from the cache');

  fs.writeFileSync(path.join(dir, 'w.sql'), '\\set v random(100000000, 999999999)\ninsert into rl (v) values (:v);\nselect v from rl where id = 1;\n');
  const bench = run(PGBENCH, ['-n', '-M', 'prepared', '-f', path.join(dir, 'w.sql'), '-h', '127.0.0.1', '-p', String(p.port), '-U', 'postgres', '-c', '4', '-j', '1', '-T', '8', 'postgres'], { timeoutMs: 60_000 });
  await sleep(1500);

  // 1. A good file: three nodes, lower limits, a rate rule, a cache rule, shorter parameters; and
  //    stats-interval, which only a restart changes.
  const good = {
    upstream: `${node(rs.primary)},${node(s1)},${node(s2)}`,
    'max-connections': 35,
    'max-user-connections': 30,
    'rate-limits': [{ application_name: 'ratey', qps: 1, burst: 1 }],
    'rate-limit-max-delay-ms': 100,
    'log-param-max-bytes': 4,
    'cache-rules': [{ pattern: 'rl_static', ttl: 'never' }],
    'stats-interval': 60000,
  };
  write(good);
  const hupAt = p.stderr().length;
  p.proc.kill('SIGHUP');
  const applied = await p.waitStderr(/SIGHUP: settings reloaded; new sessions and queries use them changed="[^"]+"/, 10_000);
  t.match(applied, /changed="upstream,log-param-max-bytes,max-connections,max-user-connections,rate-limits,rate-limit-max-delay-ms,cache-rules"$/, 'the live settings that changed, by name (in --help order)');
  t.match(p.stderr().slice(hupAt), /WARN SIGHUP: these settings change only at a restart; they keep their running values settings=stats-interval/, 'stats-interval: reported and kept');
  await waitFor(async () => {
    const ups = (await (await fetch(`${admin}/upstreams`)).json()) as { upstreams: { node: string; state: string }[] };
    return ups.upstreams.length === 3 && ups.upstreams[2]!.state === 'standby' ? ups : undefined;
  }, { timeoutMs: 10_000, timeout: () => `the third node was not checked: ${p.stderr().slice(-1500)}` });
  t.pass('/upstreams: the new node is listed and checked');
  await sleep(1500);

  // 2. A broken file, then one with a value out of range: nothing changes, each says why.
  fs.writeFileSync(file, '{ "max-connections": 5, ');
  p.proc.kill('SIGHUP');
  const broken = await p.waitStderr(/ERROR SIGHUP: the settings were not reloaded.*error="invalid setting config: [^"]*is not valid JSON[^"]*"/, 10_000);
  write({ ...good, 'max-connections': 0 });
  p.proc.kill('SIGHUP');
  await p.waitStderr(/ERROR SIGHUP: the settings were not reloaded.*error="invalid setting max-connections: 0 is out of range 1-100000"/, 10_000);
  t.pass('a file out of range: refused, saying which setting');

  const r = await bench;
  t.equal(r.code, 0, `pgbench exit 0 (${r.stderr.slice(-500)})`);
  t.match(r.stdout, /number of failed transactions: 0 /, 'no failed transaction');
  t.notMatch(r.stderr, /aborted|error/i, 'no client aborted');
  const done = Number(/number of transactions actually processed: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  t.ok(done > 100, `pgbench ran throughout (${done} transactions)`);

  // The new per-user limit holds (30, under max-connections 35), not the old 50: the 31st
  // session of postgres gets 53300 naming it.
  const held = [];
  for (let i = 0; i < 30; i++) held.push(await fx.session(p.port));
  const over = await fx.connect(p.port);
  const refused = errorsIn(await over.startup('postgres', 'postgres'))[0];
  t.equal(refused?.['C'], '53300', 'max-user-connections 30 after the reload: the 31st session is refused');
  t.match(refused?.['M'], /too many connections for role "postgres" \(max-user-connections is 30\)/, "in PostgreSQL's words, naming the limit");
  for (const c of held) c.sock.destroy();

  // The new rate rule: a session of application ratey gets one query a second; a second one at
  // once would wait about a second, past the 100 ms bound: 53400.
  const ratey = await fx.connect(p.port);
  await ratey.startup('postgres', 'postgres', { application_name: 'ratey' });
  t.same(errorsIn(await ratey.query('select 1')), [], 'ratey: the first query goes through');
  t.equal(errorsIn(await ratey.query('select 2'))[0]?.['C'], '53400', 'ratey: the second at once is over the new rule: 53400');
  ratey.sock.destroy();

  // Parameters cut at 4 bytes after the reload, whole before it.
  const binds = p.logLines().filter((l) => / B /.test(l) && l.includes('insert into rl'));
  t.ok(binds.some((l) => /params=\('\d{9}'\)/.test(l)), 'before: the 9-digit parameter whole');
  t.ok(binds.some((l) => /params=\('\d{4}'\.\.\.\(\+5 bytes\)\)/.test(l)), 'after: cut at log-param-max-bytes 4');

  // The new rule: rl_static is never cached any more (the cache was also emptied).
  t.notOk(await staticHit(), 'after the reload: rl_static is relayed (rule ttl never)');

  // --check on the broken file says what the reload said.
  fs.writeFileSync(file, '{ "max-connections": 5, ');
  const check = await run(process.execPath, [MAIN, '--config', file, '--check'], { timeoutMs: 10_000 });
  t.equal(check.code, 1, '--check refuses the broken file');
  const reason = /error="invalid setting ([^"]*)"/.exec(broken)![1]!;
  t.ok(check.stderr.includes(`invalid setting ${reason}`), `--check gives the reload's reason: ${check.stderr.trim()}`);
  t.notMatch(p.stderr(), /25006|uncaught|internal error/i, 'nothing went wrong meanwhile');
});
