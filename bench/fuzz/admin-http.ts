/**
 * The admin HTTP server's fuzzer (issue 15, part 2): malformed requests, slowloris, huge headers
 * and bodies, pipelined and garbage requests from a seed, against pgscribe's --admin, while a
 * control client asks GET /health every 200 ms.
 *
 * The oracle:
 * - pgscribe stays up, and /health answers 200 to the control client every time (the fuzz keeps
 *   fewer sockets open than the server's 64 slots, so none may be held past its timeout);
 * - a fuzz connection that stops sending is closed by the server within CLOSE_BOUND_MS (its
 *   request timeout, 10 s, plus the check interval, with a margin);
 * - RSS stays bounded: the result has its start and its peak, for the caller to judge.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { startCluster, type PgCluster } from '../../test/harness/pg-cluster';
import { startProxy, type Proxy } from '../../test/harness/proxy';
import { rssBytes } from '../../test/harness/proc';
import { prng } from '../../test/harness/prng';
import { sleep } from '../../test/harness/time';

export interface AdminFuzzOptions {
  durationS: number;
  seed: number;
  concurrency: number;
  log(line: string): void;
}

export interface AdminFuzzResult {
  seed: number;
  durationS: number;
  cases: number;
  /** Fuzz connections the server left open past CLOSE_BOUND_MS after their last byte. */
  hangs: { seed: number; what: string }[];
  /** Control requests to /health that did not get a 200 in time. */
  healthFailures: string[];
  healthChecks: number;
  pgscribeExited: string | null;
  rssStartBytes: number;
  rssMaxBytes: number;
}

/** requestTimeout (10 s, a body that never comes) plus the 1 s check interval, with a margin. */
const CLOSE_BOUND_MS = 15_000;
type Rand = () => number;
const int = (r: Rand, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)]!;

interface AdminCase {
  what: string;
  /** Written in order, with a pause of pauseMs before each piece after the first. */
  pieces: Buffer[];
  pauseMs: number;
  /** Half-close after the last piece. */
  eof: boolean;
}

function adminCase(seed: number, port: number): AdminCase {
  const r = prng(seed);
  const method = pick(r, ['GET', 'GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'G\0T', 'X'.repeat(int(r, 300))]);
  const path = pick(r, ['/', '/health', '/metrics', '/stats', '/queries?sort=mean&limit=5', '/queries?limit=-1', `/queries?sort=${'x'.repeat(int(r, 3000))}`, '/tables', '/cache/flush', '/nope', `/${'a'.repeat(int(r, 20_000))}`, '*', 'http://evil/']);
  const version = pick(r, ['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/9', '']);
  const headers: string[] = [pick(r, [`Host: 127.0.0.1:${port}`, `Host: 127.0.0.1:${port}`, 'Host: attacker.example', ''])];
  for (let i = int(r, 6); i > 0; i--) {
    headers.push(
      pick(r, [
        `X-Big: ${'b'.repeat(int(r, 40_000))}`,
        'Content-Length: 5',
        'Content-Length: -1',
        `Content-Length: ${int(r, 2 ** 31)}`,
        'Transfer-Encoding: chunked',
        'Origin: http://attacker.example',
        'Connection: keep-alive',
        'Expect: 100-continue',
        `Authorization: Bearer ${'t'.repeat(int(r, 100))}`,
        'bad header line',
        `X-Ctl: \x01\x7f\u2028`,
      ]),
    );
  }
  let body = '';
  if (int(r, 3) === 0) body = pick(r, ['hello', '5\r\nhello\r\n0\r\n\r\n', 'zz\r\n', 'x'.repeat(int(r, 200_000))]);
  const request = `${method} ${path} ${version}\r\n${headers.join('\r\n')}\r\n\r\n${body}`;
  let bytes = Buffer.from(request, 'latin1');
  if (int(r, 5) === 0) bytes = Buffer.concat([bytes, bytes]); // pipelined twice
  if (int(r, 8) === 0) bytes = Buffer.from(Array.from({ length: 1 + int(r, 300) }, () => int(r, 256)));
  const slow = int(r, 6) === 0;
  const cut = slow ? Math.max(1, int(r, Math.min(bytes.length, 200))) : bytes.length;
  // Slowloris: a start, then silence (the server must drop it); otherwise a few pieces.
  const pieces = slow ? [bytes.subarray(0, cut)] : splitAt(r, bytes);
  return { what: `${slow ? 'slow ' : ''}${method.slice(0, 10)} ${path.slice(0, 40)} ${version} (${bytes.length} bytes)`, pieces, pauseMs: int(r, 3) === 0 ? int(r, 50) : 0, eof: !slow && int(r, 2) === 0 };
}

function splitAt(r: Rand, b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (let n = int(r, 4); n > 0 && from < b.length; n--) {
    const to = from + 1 + int(r, b.length - from);
    out.push(b.subarray(from, to));
    from = to;
  }
  if (from < b.length) out.push(b.subarray(from));
  return out;
}

function runAdminCase(port: number, c: AdminCase): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let timer: NodeJS.Timeout | null = null;
    let done = false;
    const finish = (closedInTime: boolean): void => {
      if (done) return;
      done = true;
      if (timer !== null) clearTimeout(timer);
      sock.destroy();
      resolve(closedInTime);
    };
    sock.on('data', () => {});
    sock.on('error', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('connect', async () => {
      for (let i = 0; i < c.pieces.length && !done; i++) {
        if (i > 0 && c.pauseMs > 0) await sleep(c.pauseMs);
        if (!done) sock.write(c.pieces[i]!);
      }
      if (done) return;
      if (c.eof) sock.end();
      // Whether it answered or not, the server must not keep the socket past its timeouts: a
      // keep-alive connection is closed at keepAliveTimeout (5 s), a slow one at headersTimeout.
      timer = setTimeout(() => finish(false), CLOSE_BOUND_MS);
    });
  });
}

function health(port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/health', agent: false, timeout: 3000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 ? null : `status ${res.statusCode}`));
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 3 s')));
    req.on('error', (err) => resolve(err.message));
  });
}

export async function runAdminFuzz(o: AdminFuzzOptions): Promise<AdminFuzzResult> {
  let pg: PgCluster | null = null;
  let proxy: Proxy | null = null;
  const hangs: { seed: number; what: string }[] = [];
  const healthFailures: string[] = [];
  let cases = 0;
  let healthChecks = 0;
  try {
    pg = await startCluster();
    proxy = await startProxy({ upstreamPort: pg.port, args: ['--admin', '127.0.0.1:0', '--cache'], stderrLimit: 1 << 20 });
    const line = await proxy.waitStderr(/admin server listening admin=http:\/\/127\.0\.0\.1:(\d+)\//);
    const port = Number(/:(\d+)\/$/.exec(line)![1]);
    const pid = proxy.proc.pid!;
    const rssStartBytes = rssBytes(pid) ?? 0;
    let rssMaxBytes = rssStartBytes;
    const started = Date.now();
    const deadline = started + o.durationS * 1000;
    const stop = (): boolean => Date.now() >= deadline || !proxy!.alive;
    o.log(`fuzz-admin: seed ${o.seed}, ${o.durationS} s, ${o.concurrency} fuzz connections at once`);
    const control = (async () => {
      while (!stop()) {
        const problem = await health(port);
        healthChecks++;
        if (problem !== null) healthFailures.push(`${new Date().toISOString()}: ${problem}`);
        rssMaxBytes = Math.max(rssMaxBytes, rssBytes(pid) ?? 0);
        await sleep(200);
      }
    })();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (!stop()) {
        const caseSeed = (o.seed * 1_000_003 + next++) >>> 0;
        const c = adminCase(caseSeed, port);
        cases++;
        if (!(await runAdminCase(port, c))) {
          hangs.push({ seed: caseSeed, what: c.what });
          if (hangs.length <= 5) o.log(`fuzz-admin: HANG case ${caseSeed}: ${c.what}`);
        }
      }
    };
    await Promise.all([control, ...Array.from({ length: o.concurrency }, worker)]);
    return {
      seed: o.seed,
      durationS: Math.round((Date.now() - started) / 1000),
      cases,
      hangs,
      healthFailures,
      healthChecks,
      pgscribeExited: proxy.alive ? null : `${JSON.stringify(proxy.exit)}: ${proxy.stderr().slice(-2000)}`,
      rssStartBytes,
      rssMaxBytes,
    };
  } finally {
    if (proxy?.alive) await proxy.stop('SIGTERM', { killAfterMs: 5000 });
    await pg?.stop();
  }
}
