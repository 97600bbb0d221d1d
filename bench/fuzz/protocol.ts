/**
 * The protocol fuzzer's run (bench/fuzz-protocol.ts, `make fuzz`, and a short run in the e2e
 * tests): a throwaway PostgreSQL, pgscribe in front of it (query log and cache on), a few valid
 * sessions that keep checking their answers, and fuzz connections sending cases.ts's streams,
 * cut at the case's offsets.
 *
 * The oracle:
 * - pgscribe stays up;
 * - every valid session's answer is right, all along;
 * - a fuzzed connection that half-closes is closed by pgscribe within EOF_CLOSE_MS, and one that
 *   stops in the startup phase within the startup timeout (plus a margin): never a hang;
 * - RSS stays bounded: the result has its start and its peak, for the caller to judge.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCluster, USERS, type PgCluster } from '../../test/harness/pg-cluster';
import { startProxy, type Proxy } from '../../test/harness/proxy';
import { sleep } from '../../test/harness/time';
import { fuzzCase, type FuzzCase, type Kind } from './cases';
import { RssSampler, validLoop, type FuzzFinding, type FuzzRunOptions } from './shared';

export type FuzzOptions = FuzzRunOptions;
export type Finding = FuzzFinding<Kind>;

export interface FuzzResult {
  seed: number;
  durationS: number;
  cases: number;
  byKind: Record<Kind, number>;
  /** Fuzzed connections pgscribe left open past the bound. */
  hangs: Finding[];
  /** Valid sessions that got a wrong answer or lost their connection. */
  wrongAnswers: string[];
  validQueries: number;
  pgscribeExited: string | null;
  rssStartBytes: number;
  rssMaxBytes: number;
  rssEndBytes: number;
}

const STARTUP_TIMEOUT_MS = 2000;
/** After the fuzzer's EOF, pgscribe must have closed within this. */
const EOF_CLOSE_MS = 5000;
const USER = USERS.trust.user;

/** Send a case; resolves with a problem, or null. */
function runCase(port: number, c: FuzzCase): Promise<string | null> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    sock.setNoDelay(true);
    let closed = false;
    let timer: NodeJS.Timeout | null = null;
    const finish = (problem: string | null): void => {
      if (timer !== null) clearTimeout(timer);
      sock.destroy();
      resolve(problem);
    };
    // A startup case that was a valid startup ends in a session (ReadyForQuery): not a hang.
    let tail = Buffer.alloc(0);
    let established = false;
    const READY = Buffer.from([0x5a, 0, 0, 0, 5]);
    sock.on('data', (d: Buffer) => {
      if (established) return;
      tail = Buffer.concat([tail, d]).subarray(-64 * 1024);
      if (tail.includes(READY)) {
        established = true;
        if (timer !== null && c.kind !== 'session' && !c.eof) finish(null);
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      closed = true;
      finish(null);
    });
    sock.on('connect', async () => {
      let from = 0;
      for (const cut of [...c.cuts, c.bytes.length]) {
        if (closed) return;
        if (cut > from) sock.write(c.bytes.subarray(from, cut));
        from = cut;
        await new Promise((r) => setImmediate(r));
      }
      if (closed) return;
      if (c.eof) {
        sock.end();
        timer = setTimeout(() => finish(`still open ${EOF_CLOSE_MS} ms after the client's EOF`), EOF_CLOSE_MS);
      } else if (c.kind !== 'session' && !established) {
        // A connection still in its startup phase must be dropped at the startup timeout.
        timer = setTimeout(() => finish(`still open ${STARTUP_TIMEOUT_MS + 3000} ms into its startup phase`), STARTUP_TIMEOUT_MS + 3000);
      } else {
        // A session may rightly wait for the rest of a message: give it a moment, then go.
        timer = setTimeout(() => finish(null), 300);
      }
    });
  });
}


export async function runProtocolFuzz(o: FuzzOptions): Promise<FuzzResult> {
  let pg: PgCluster | null = null;
  let proxy: Proxy | null = null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-fuzz-'));
  const byKind: Record<Kind, number> = { startup: 0, session: 0, garbage: 0 };
  const hangs: Finding[] = [];
  const wrongAnswers: string[] = [];
  let cases = 0;
  let validQueries = 0;
  try {
    pg = await startCluster();
    await pg.psql('create table fuzz_t (id int, v text); grant all on fuzz_t to public');
    proxy = await startProxy({
      upstreamPort: pg.port,
      args: ['--log', path.join(dir, 'queries.log'), '--cache', '--singleflight', '--startup-timeout', String(STARTUP_TIMEOUT_MS), '--max-connections', String(o.concurrency + o.validSessions + 20), ...o.args],
      stderrLimit: 1 << 20,
    });
    const pid = proxy.proc.pid!;
    const rss = new RssSampler(pid);
    const started = Date.now();
    const deadline = started + o.durationS * 1000;
    const stop = (): boolean => Date.now() >= deadline || !proxy!.alive;
    o.log(`fuzz-protocol: seed ${o.seed}, ${o.durationS} s, ${o.concurrency} fuzz connections at once, ${o.validSessions} valid sessions; replay one case with FUZZ_ONLY=<case seed>`);

    const valid = Array.from({ length: o.validSessions }, (_, i) => validLoop(proxy!.port, USER, o.seed * 7 + i, stop, wrongAnswers, () => validQueries++, (r) => Math.floor(r() * 1_000_000)));
    let next = 0;
    const worker = async (): Promise<void> => {
      while (!stop()) {
        const caseSeed = o.only ?? (o.seed * 1_000_003 + next++) >>> 0;
        const c = fuzzCase(caseSeed, USER);
        cases++;
        byKind[c.kind]++;
        const problem = await runCase(proxy!.port, c);
        if (problem !== null) {
          hangs.push({ seed: caseSeed, kind: c.kind, what: c.what, problem });
          if (hangs.length <= 5) o.log(`fuzz-protocol: HANG case ${caseSeed} (${c.what}): ${problem}`);
        }
        if (o.only !== undefined) return;
      }
    };
    const progress = setInterval(() => o.log(`fuzz-protocol: ${Math.round((deadline - Date.now()) / 1000)} s left, ${cases} cases, ${hangs.length} hangs, ${validQueries} valid queries, ${wrongAnswers.length} wrong, rss ${(rss.maxBytes / 2 ** 20).toFixed(0)} MiB max`), 30_000);
    await Promise.all([...Array.from({ length: o.only !== undefined ? 1 : o.concurrency }, worker), ...(o.only !== undefined ? [] : valid)]);
    clearInterval(progress);
    rss.stop();
    await sleep(1000);
    const rssEndBytes = rss.sample();
    return {
      seed: o.seed,
      durationS: Math.round((Date.now() - started) / 1000),
      cases,
      byKind,
      hangs,
      wrongAnswers,
      validQueries,
      pgscribeExited: proxy.alive ? null : `${JSON.stringify(proxy.exit)}: ${proxy.stderr().slice(-2000)}`,
      rssStartBytes: rss.startBytes,
      rssMaxBytes: rss.maxBytes,
      rssEndBytes,
    };
  } finally {
    if (proxy?.alive) await proxy.stop('SIGTERM', { killAfterMs: 5000 });
    await pg?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
