import t from 'tap';
import * as fs from 'fs';
import * as path from 'path';
import { startCluster, USERS, PgCluster, PG_BIN } from '../harness/pg-cluster';
import { run } from '../harness/run';
import { freePort } from '../harness/free-port';

const PSQL = fs.existsSync(path.join(PG_BIN, 'psql')) ? path.join(PG_BIN, 'psql') : 'psql';

t.test('run() and freePort()', async (t) => {
  const ok = await run('/bin/sh', ['-c', 'cat; echo err >&2; exit 3'], { input: 'hello' });
  t.equal(ok.code, 3);
  t.equal(ok.stdout, 'hello');
  t.equal(ok.stderr, 'err\n');
  const slow = await run('sleep', ['10'], { timeoutMs: 200 });
  t.equal(slow.signal, 'SIGKILL', 'child killed on timeout');
  const port = await freePort();
  t.ok(port > 0 && port < 65536);
});

t.test('throwaway cluster', async (t) => {
  const pg: PgCluster = await startCluster({ conf: { search_path: '"$user", public', work_mem: '8MB' } });
  t.teardown(() => pg.stop());

  t.equal(pg.host, '127.0.0.1');
  t.ok(fs.existsSync(path.join(pg.dataDir, 'PG_VERSION')), 'data dir exists');
  t.match(fs.readFileSync(path.join(pg.dataDir, 'PG_VERSION'), 'utf8'), /^\d+/);

  t.equal(await pg.psql('select 1'), '1', 'select 1 as postgres');
  t.equal(await pg.psql('show port'), String(pg.port));
  t.equal(await pg.psql('show search_path'), '"$user", public', 'opts.conf applied (value quoted)');
  t.equal(await pg.psql('show work_mem'), '8MB', 'opts.conf applied (plain value)');
  t.equal(await pg.psql('select rolreplication and rolsuper from pg_roles where rolname = current_user'), 't');

  t.equal(
    await pg.psql('select current_user', { user: USERS.trust.user }),
    USERS.trust.user,
    'trust_user logs in without a password',
  );

  t.equal(
    await pg.psql(
      `select rolname || ':' || (rolpassword like 'md5%') || ':' || (rolpassword like 'SCRAM-SHA-256$%')` +
        ` from pg_authid where rolname in ('scram_user', 'md5_user') order by 1`,
    ),
    'md5_user:true:false\nscram_user:false:true',
    'passwords stored as md5 / scram',
  );

  // scram_user over TCP with the right and a wrong password
  t.equal(await pg.psql('select current_user', { user: USERS.scram.user }), USERS.scram.user, 'scram_user logs in');
  const sargs = ['-X', '-A', '-t', '-w', '-c', 'select current_user'];
  const scram = await run(PSQL, sargs, { env: { ...pg.env(USERS.scram.user), PGPASSWORD: 'scram_pass' }, timeoutMs: 20_000 });
  t.equal(scram.code, 0, scram.stderr);
  t.equal(scram.stdout.trim(), 'scram_user');
  const bad = await run(PSQL, sargs, { env: { ...pg.env(USERS.scram.user), PGPASSWORD: 'wrong' }, timeoutMs: 20_000 });
  t.not(bad.code, 0, 'wrong scram password rejected');
  t.match(bad.stderr, /password authentication failed for user "scram_user"/);
  const nopw = pg.env(USERS.scram.user);
  delete nopw.PGPASSWORD;
  const none = await run(PSQL, sargs, { env: nopw, timeoutMs: 20_000 });
  t.not(none.code, 0, 'missing scram password rejected');

  // md5_user
  t.equal(await pg.psql('select current_user', { user: USERS.md5.user }), USERS.md5.user, 'md5_user logs in');
  await t.rejects(
    run(PSQL, sargs, { env: { ...pg.env(USERS.md5.user), PGPASSWORD: 'nope' } }).then((r) => {
      if (r.code !== 0) throw new Error(r.stderr);
    }),
    /password authentication failed for user "md5_user"/,
    'wrong md5 password rejected',
  );

  // the test roles can create tables in public
  await pg.psql('create table scram_t (x int); drop table scram_t', { user: USERS.scram.user });

  // psql errors reject with stderr
  await t.rejects(pg.psql('select * from no_such_table'), /relation "no_such_table" does not exist/);

  t.match(await pg.psql('select count(*) from pg_stat_statements'), /^\d+$/, 'pg_stat_statements works');

  // env() points straight at the cluster
  const e = pg.env();
  t.equal(e.PGHOST, '127.0.0.1');
  t.equal(e.PGPORT, String(pg.port));
  t.equal(e.PGUSER, 'postgres');
  t.equal(e.PGDATABASE, 'postgres');
  t.equal(e.PGPASSWORD, undefined);
  t.equal(pg.env(USERS.md5.user).PGPASSWORD, 'md5_pass');

  t.ok(fs.statSync(pg.logFile).isFile(), 'server log exists');

  await pg.stop();
  t.notOk(fs.existsSync(pg.dataDir), 'stop() removes the data dir');
  t.notOk(fs.existsSync(pg.socketDir), 'stop() removes the socket dir');
  await pg.stop(); // idempotent
  const after = await run(PSQL, ['-X', '-A', '-t', '-w', '-c', 'select 1'], { env: pg.env(), timeoutMs: 20_000 });
  t.not(after.code, 0, 'server is gone');
});
