// Issue 15, security finding 15: SIGUSR1 opened Node's inspector on 127.0.0.1:9229, and any local
// user who can signal the process or reach that port could then run code inside the proxy. Now
// the signal is refused with an operational line, and the process listens on nothing new.
import t from 'tap';
import * as fs from 'node:fs';
import { startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { proxyFixture } from '../helpers/fixture';
import { value as firstValue } from '../harness/wire';
import { sleep } from '../harness/time';

let pg: PgCluster;
const fx = proxyFixture({ upstreamPort: () => pg.port, user: USERS.trust.user });

t.before(async () => {
  pg = await startCluster();
});

t.teardown(async () => {
  await fx.cleanup();
  await pg?.stop();
});

/** The TCP ports a process listens on: its socket inodes matched with /proc/net/tcp{,6}. */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // the descriptor closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!fs.existsSync(table)) continue;
    for (const line of fs.readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address rem_address st ... inode (field 9); st 0A is LISTEN.
      if (f.length > 9 && f[3] === '0A' && inodes.has(f[9]!)) ports.push(Number.parseInt(f[1]!.split(':')[1]!, 16));
    }
  }
  return ports.sort((a, b) => a - b);
}

t.test('SIGUSR1 does not open the inspector', async (t) => {
  const p = await fx.launch([]);
  const pid = p.proc.pid!;
  t.same(listeningPorts(pid), [p.port], 'before: only the proxy port');
  p.proc.kill('SIGUSR1');
  await p.waitStderr(/WARN SIGUSR1 ignored: the Node inspector stays closed in pgscribe/);
  await sleep(300);
  t.same(listeningPorts(pid), [p.port], 'after: still only the proxy port');
  t.notMatch(p.stderr(), /Debugger listening/, 'no debugger announced');
  t.ok(p.alive, 'the proxy is still running');
  const { c } = await fx.sessionWithKey(p.port);
  t.equal(firstValue(await c.query('select 15')), '15', 'and serving');
  c.end();
});
