// Headless Chromium for the dashboard tests and the README's screenshot (bench/dashboard-shot.ts):
// dump a page's DOM after its scripts ran, or take a screenshot. Each run gets a fresh temp
// profile (and HOME), removed afterwards, and runs in its own process group, which is SIGKILLed
// on timeout.
//
// How the page gets time to fetch its data: --virtual-time-budget. Chromium runs the page on a
// virtual clock and dumps the DOM once `budgetMs` of virtual time has passed; timers fast-forward,
// and the clock stands still while any network fetch is in flight (page load, fetch() of the
// JSON, and each response body until its last byte). So a page that polls every second sees about
// budgetMs / 1000 complete polls whatever the real latency of the server, and a server that never
// answers shows up as a timeout, not as a half-filled DOM. Checked against a local node:http
// server with 1.5 s response delays, bodies trickled in pieces 0.7 s apart, a 2.5 s page load and
// 8 runs at once: every dump held every poll.
//
// Never call these while the event loop of the same process is blocked (no spawnSync, no busy
// waits): the test's own HTTP server has to answer while Chromium waits.

import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

/** $CHROMIUM if set (and executable), else Debian's /usr/bin/chromium or chromium-browser; null when none is there. */
export function findChromium(): string | null {
  const env = process.env.CHROMIUM;
  const list = env ? [env] : CANDIDATES;
  for (const p of list) {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return null;
}

/**
 * Flags for every run. --no-sandbox: tests and CI run as root, where the sandbox refuses to start.
 * --disable-dev-shm-usage: containers often have a 64 MB /dev/shm, too small for rendering (Debian's
 * wrapper script means to add it but its check breaks when findmnt prints two lines).
 */
const COMMON = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--no-first-run',
  '--no-default-browser-check',
  '--disable-breakpad',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-extensions',
  '--mute-audio',
  '--hide-scrollbars',
];

interface RunOptions {
  timeoutMs: number;
}

/** Run Chromium with a fresh profile dir; resolve stdout, reject on timeout or nonzero exit (with stderr's tail). */
async function runChromium(args: string[], o: RunOptions): Promise<string> {
  const bin = findChromium();
  if (bin === null) throw new Error('chromium not found: apt-get install chromium, or set $CHROMIUM');
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'pgscribe-chromium-'));
  const profile = path.join(dir, 'profile');
  try {
    return await new Promise<string>((resolve, reject) => {
      const child = spawn(bin, [...COMMON, `--user-data-dir=${profile}`, ...args], {
        // HOME and XDG dirs inside the temp dir: nothing lands in the real home (crash reports, dconf, nssdb).
        env: { ...process.env, HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'config'), XDG_CACHE_HOME: path.join(dir, 'cache') },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true, // own process group: a timeout kills the renderer and GPU processes too
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout!.on('data', (b: Buffer) => out.push(b));
      child.stderr!.on('data', (b: Buffer) => err.push(b));
      let timedOut = false;
      const killGroup = (): void => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      };
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup();
      }, o.timeoutMs);
      // A test process that dies mid-run must not leave a browser behind.
      process.on('exit', killGroup);
      child.on('error', (e) => {
        clearTimeout(timer);
        process.removeListener('exit', killGroup);
        reject(new Error(`failed to spawn ${bin}: ${e.message}`));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        process.removeListener('exit', killGroup);
        const tail = Buffer.concat(err).toString('utf8').split('\n').slice(-15).join('\n');
        if (timedOut) reject(new Error(`chromium ${args.join(' ')}: no result after ${o.timeoutMs} ms; stderr:\n${tail}`));
        else if (code !== 0) reject(new Error(`chromium ${args.join(' ')}: exit code ${code}, signal ${signal}; stderr:\n${tail}`));
        else resolve(Buffer.concat(out).toString('utf8'));
      });
    });
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }
}

/**
 * The page's DOM, serialized, after `budgetMs` (default 3000) of virtual time: its timers and
 * fetches have run by then (see the top of this file). Rejects after `timeoutMs` (default 30000)
 * of real time, or when Chromium fails or prints nothing (e.g. the page could not be loaded).
 */
export async function dumpDom(url: string, opts: { timeoutMs?: number; budgetMs?: number } = {}): Promise<string> {
  const html = await runChromium([`--virtual-time-budget=${opts.budgetMs ?? 3000}`, '--dump-dom', url], {
    timeoutMs: opts.timeoutMs ?? 30_000,
  });
  if (!/<html[\s>]/i.test(html)) throw new Error(`chromium --dump-dom ${url}: no document in its output: ${JSON.stringify(html.slice(0, 200))}`);
  return html;
}

/**
 * A PNG of the viewport (`width` x `height`, default 1440 x 1100) after `budgetMs` (default 3000)
 * of virtual time. Rejects as dumpDom does, or when the file was not written.
 */
export async function screenshot(
  url: string,
  outPng: string,
  opts: { width?: number; height?: number; budgetMs?: number; timeoutMs?: number } = {},
): Promise<void> {
  const out = path.resolve(outPng);
  await fs.promises.rm(out, { force: true });
  await runChromium(
    [
      `--window-size=${opts.width ?? 1440},${opts.height ?? 1100}`,
      // Paint everything before the capture, so the frame shows what the DOM holds.
      '--run-all-compositor-stages-before-draw',
      `--virtual-time-budget=${opts.budgetMs ?? 3000}`,
      `--screenshot=${out}`,
      url,
    ],
    { timeoutMs: opts.timeoutMs ?? 30_000 },
  );
  const st = await fs.promises.stat(out).catch(() => null);
  if (st === null || st.size === 0) throw new Error(`chromium --screenshot ${url}: ${out} was not written`);
}
