/**
 * Rate limits do not slow the clients they do not match (issue 18: "another user's pgbench at the
 * same time keeps at least 0.9x of its tps without the flood"). `node build/bench/rate-limits.js`.
 *
 * One PostgreSQL (the test harness's), users `calm` and `flood`, and pgscribe with
 * `--rate-limits user=flood,qps=FLOOD_QPS,burst=10 --rate-limit-max-delay-ms 200`. Each round
 * runs calm's pgbench (select-only, -c CALM_CLIENTS) for DURATION seconds twice, alone and while
 * FLOOD_CLIENTS sessions of `flood` send the same read back to back through the same pgscribe,
 * in an order that alternates between rounds. The flood is not pgbench: pgbench aborts a client
 * at its first error, and a flood that stops at its first 53400 floods nothing; these sessions
 * go on after each refusal, as a misbehaving application would. Reported: calm's tps in both, their ratio per round and
 * the median ratio, flood's transactions and failures (its 53400s), and pgscribe's rate counters.
 * JSON in bench/results/rate-limits-YYYY-MM-DD-HHMM.json.
 *
 * Knobs (environment): ROUNDS (3), DURATION (10), CALM_CLIENTS (4), FLOOD_CLIENTS (8),
 * FLOOD_QPS (100).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PG_BIN, startCluster } from '../test/harness/pg-cluster';
import { startProxy } from '../test/harness/proxy';
import { run } from '../test/harness/run';
import { RawClient, errorsIn } from '../test/harness/wire';
import { envInt, machineInfo, median, repoRoot } from './lib/common';

const ROUNDS = envInt('ROUNDS', 3);
const DURATION = envInt('DURATION', 10);
const CALM_CLIENTS = envInt('CALM_CLIENTS', 4);
const FLOOD_CLIENTS = envInt('FLOOD_CLIENTS', 8);
const FLOOD_QPS = envInt('FLOOD_QPS', 100);
const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';

interface BenchRun {
  tps: number;
  transactions: number;
  failed: number;
}

function parsePgbench(stdout: string, stderr: string): BenchRun {
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(stdout)?.[1] ?? NaN);
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? 0);
  const failed = Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? 0);
  if (!Number.isFinite(tps)) throw new Error(`pgbench gave no tps: ${stdout.slice(-400)} ${stderr.slice(-400)}`);
  return { tps, transactions, failed };
}

async function main(): Promise<void> {
  const loadAtStart = os.loadavg();
  const pg = await startCluster();
  await pg.psql('create role calm login; create role flood login; grant pg_read_all_data to calm, flood');
  const init = await run(PGBENCH, ['-i', '-q', '-s', '1', '-h', pg.host, '-p', String(pg.port), '-U', 'postgres', 'postgres'], { timeoutMs: 120_000 });
  if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`);
  const proxy = await startProxy({
    upstreamPort: pg.port,
    args: ['--log', 'none', '--rate-limits', `user=flood,qps=${FLOOD_QPS},burst=10`, '--rate-limit-max-delay-ms', '200', '--stats-interval', '0'],
    detached: true,
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-ratebench-'));
  // pgbench's built-in select-only script, with the retry of errors off (a 53400 fails the transaction).
  const pgbench = (user: string, clients: number) =>
    run(PGBENCH, ['-n', '-S', '-M', 'prepared', '-c', String(clients), '-j', '1', '-T', String(DURATION), '-h', '127.0.0.1', '-p', String(proxy.port), '-U', user, 'postgres'], {
      timeoutMs: (DURATION + 60) * 1000,
      cwd: dir,
    });
  const rounds: { alone: BenchRun; withFlood: BenchRun; flood: BenchRun; ratio: number }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const floodFirst = r % 2 === 1;
    const measureAlone = async () => {
      const a = await pgbench('calm', CALM_CLIENTS);
      return parsePgbench(a.stdout, a.stderr);
    };
    const measureWithFlood = async () => {
      const [c, f] = await Promise.all([pgbench('calm', CALM_CLIENTS), flood(proxy.port, FLOOD_CLIENTS, DURATION * 1000)]);
      return { calm: parsePgbench(c.stdout, c.stderr), flood: f };
    };
    let alone: BenchRun;
    let both: { calm: BenchRun; flood: BenchRun };
    if (floodFirst) {
      both = await measureWithFlood();
      alone = await measureAlone();
    } else {
      alone = await measureAlone();
      both = await measureWithFlood();
    }
    const ratio = both.calm.tps / alone.tps;
    rounds.push({ alone, withFlood: both.calm, flood: both.flood, ratio });
    process.stdout.write(`round ${r + 1}: calm alone ${alone.tps.toFixed(0)} tps, with the flood ${both.calm.tps.toFixed(0)} tps (${ratio.toFixed(3)}x); flood ${both.flood.transactions} transactions, ${both.flood.failed} failed\n`);
  }
  const stats = await proxy.stats();
  await proxy.stop('SIGTERM', { killAfterMs: 5000 });
  await pg.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  const ratios = rounds.map((x) => x.ratio);
  const summary = {
    when: new Date().toISOString(),
    machine: machineInfo(loadAtStart),
    command: `ROUNDS=${ROUNDS} DURATION=${DURATION} CALM_CLIENTS=${CALM_CLIENTS} FLOOD_CLIENTS=${FLOOD_CLIENTS} FLOOD_QPS=${FLOOD_QPS} node build/bench/rate-limits.js`,
    rounds,
    medianRatio: median(ratios),
    minRatio: Math.min(...ratios),
    proxyCounters: Object.fromEntries(Object.entries(stats).filter(([k]) => k.startsWith('rate_limit'))),
  };
  process.stdout.write(`calm's tps with the flood / alone: median ${summary.medianRatio.toFixed(3)}x, lowest ${summary.minRatio.toFixed(3)}x over ${ROUNDS} rounds; pgscribe: ${JSON.stringify(summary.proxyCounters)}\n`);
  const stamp = new Date().toISOString().slice(0, 16).replace(/[-:]/g, '').replace('T', '-');
  const file = path.join(repoRoot(), 'bench', 'results', `rate-limits-${stamp.slice(0, 4)}-${stamp.slice(4, 6)}-${stamp.slice(6, 8)}-${stamp.slice(9)}.json`);
  fs.writeFileSync(file, JSON.stringify(summary, null, 2) + '\n');
  process.stdout.write(`written ${path.relative(repoRoot(), file)}\n`);
}

/** `clients` sessions of user flood, each sending the read back to back for ms, going on after errors. */
async function flood(port: number, clients: number, ms: number): Promise<BenchRun> {
  const until = Date.now() + ms;
  let ok = 0;
  let refused = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      const c = await RawClient.connect(port);
      c.sock.setNoDelay(true);
      await c.startup('flood', 'postgres');
      while (Date.now() < until) {
        const errs = errorsIn(await c.query('select abalance from pgbench_accounts where aid = 1', 30_000));
        if (errs.length === 0) ok++;
        else if (errs[0]!['C'] === '53400') refused++;
        else throw new Error(`flood: unexpected error ${JSON.stringify(errs[0])}`);
      }
      c.sock.destroy();
    }),
  );
  return { tps: ok / (ms / 1000), transactions: ok, failed: refused };
}

main().catch((err: Error) => {
  process.stderr.write(`rate-limits bench failed: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
