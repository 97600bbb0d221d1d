// Issue 15, security finding 2: Q/P/B/E sent before authentication completed were logged under
// the startup packet's user: `Q 'DROP DATABASE production'` with no password appeared as
// `scram_user@postgres ... Q sql=DROP DATABASE production`, although PostgreSQL refused it. Now
// a session's lines are held until PostgreSQL accepts it (its first ReadyForQuery): then they are
// logged, in order; a session that never gets there logs nothing, and an operational line counts
// what it sent.
import t from 'tap';
import { USERS } from '../harness/pg-cluster';
import { clusterAndProxies } from '../helpers/fixture';
import { RawClient, enc } from '../harness/wire';
import { sleep } from '../harness/time';

const { fx } = clusterAndProxies(t);

for (const user of [USERS.scram.user, USERS.md5.user]) {
  t.test(`${user} without its password, queries pipelined behind the startup: nothing logged`, async (t) => {
    const p = await fx.launch([]);
    const c = await RawClient.connect(p.port);
    c.write(
      Buffer.concat([
        enc.startup({ user, database: 'postgres' }),
        enc.query('DROP DATABASE production'),
        enc.parse('', 'DELETE FROM accounts'),
        enc.bind('', '', []),
        enc.execute(''),
        enc.sync(),
      ]),
    );
    const r = await c.readUntilClosed(8000);
    t.ok(r.closed, 'PostgreSQL refused the session and closed it');
    t.ok(r.msgs.some((m) => m.type === 'E'), 'with its error');
    await sleep(300);
    t.same(p.logLines().filter((l) => /DROP DATABASE|DELETE FROM/.test(l)), [], 'no line attributes the queries to the claimed user');
    await p.waitStderr(new RegExp(`WARN session ended before PostgreSQL accepted it; its queries were not logged, since its user was never confirmed conn=\\d+ client=127\\.0\\.0\\.1:\\d+ claimed_user=${user} messages=4`));
  });
}

t.test('trust: queries pipelined behind the startup are logged once the session is accepted, in order', async (t) => {
  const p = await fx.launch([]);
  const c = await RawClient.connect(p.port);
  c.write(Buffer.concat([enc.startup({ user: USERS.trust.user, database: 'postgres' }), enc.query('select 1 as first'), enc.query('select 2 as second')]));
  await c.readUntilReady();
  await c.readZ(2);
  c.end();
  let lines: string[] = [];
  for (let i = 0; i < 50 && lines.length < 2; i++) {
    await sleep(100);
    lines = p.logLines().filter((l) => / Q sql=select \d as /.test(l));
  }
  t.equal(lines.length, 2, 'both queries logged');
  t.match(lines[0]!, new RegExp(`${USERS.trust.user}@postgres .* Q sql=select 1 as first$`));
  t.match(lines[1]!, /Q sql=select 2 as second$/);
  t.notMatch(p.stderr(), /session ended before PostgreSQL accepted it/, 'no warning for an accepted session');
});
