/**
 * `make dashboard-shot`: the README's dashboard screenshot, taken from a real run. Starts a
 * throwaway PostgreSQL, pgscribe with --cache --singleflight --admin, runs pgbench's TPC-B script
 * (rate-limited: a few writes) and the hot-set read through it, and screenshots the dashboard in
 * headless Chromium while they run. Output: bench/results/dashboard.png (or the path in OUT).
 *
 * Chromium's --virtual-time-budget fast-forwards the page's timers but stands still while a
 * request is in flight; the page computes queries/s between polls from the server's clock. So the
 * page is served through a relay that holds each answer for a second of real time: each poll
 * then covers about a real second, as in a browser, and the sparkline shows real throughput.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { screenshot } from '../test/harness/chromium';
import { startCluster } from '../test/harness/pg-cluster';
import { startProxy } from '../test/harness/proxy';
import { run } from '../test/harness/run';
import { sleep } from '../test/harness/time';
import { repoRoot } from './lib/common';

async function main(): Promise<void> {
  const out = process.env['OUT'] ?? path.join(repoRoot(), 'bench/results/dashboard.png');
  const pg = await startCluster();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-shot-'));
  try {
    const init = await run('pgbench', ['-i', '-q', '-s', '2', '-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', 'postgres']);
    if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`);
    const p = await startProxy({ upstreamPort: pg.port, args: ['--cache', '--singleflight', '--catalog-user', 'postgres', '--admin', '127.0.0.1:0'] });
    const line = await p.waitStderr(/admin server listening admin=(\S+)/);
    const admin = /admin=(\S+)/.exec(line)![1]!;
    const relay = http.createServer((req, res) => {
      setTimeout(() => {
        const up = http.request(admin.replace(/\/$/, '') + (req.url ?? '/'), { method: req.method }, (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        });
        up.on('error', () => res.destroy());
        up.end();
      }, req.url === '/' ? 0 : 1000);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(relay.address() as { port: number }).port}/`;
    const hot = path.join(dir, 'hot.sql');
    fs.writeFileSync(hot, '\\set aid random(1, 1000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n');
    const bench = (args: string[]) =>
      spawn('pgbench', ['-n', '-T', '40', '-h', '127.0.0.1', '-p', String(p.port), '-U', 'postgres', ...args, 'postgres'], { stdio: 'ignore' });
    const runs = [bench(['-c', '1', '-R', '40', '-M', 'prepared']), bench(['-c', '6', '-M', 'extended', '-f', hot]), bench(['-c', '2', '-S', '-M', 'simple'])];
    await sleep(10_000);
    await screenshot(url, out, { width: 1440, height: 1000, budgetMs: 20_000, timeoutMs: 60_000 });
    relay.close();
    await Promise.all(runs.map((c) => new Promise((r) => c.on('exit', r))));
    await p.stop('SIGTERM');
    process.stdout.write(`${path.relative(repoRoot(), out)}\n`);
  } finally {
    await pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
