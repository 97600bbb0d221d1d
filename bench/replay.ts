/**
 * `make bench-replay` (also run by `make bench`): how fast `pgscribe replay` runs a large log, and
 * how much memory it takes doing it.
 *
 * It starts its own throwaway PostgreSQL, initialises pgbench data (scale 1), writes a synthetic
 * `--log-replay` log of LOG_MB megabytes (default 1024) in the exact shape pgscribe writes for
 * `pgbench -S -M prepared` clients (start, P/D/S once per session, then B/E/S and done per
 * transaction, end), with SESSIONS sessions (default 8) interleaved as concurrent clients would
 * be, and every SESSION_TX transactions a session ends and a new one starts. Then it runs
 * `dist/main.js replay LOG --speed max` against the server, samples the replay process's RSS every
 * 100 ms, and checks the report: every statement replayed, none failed, none changed.
 *
 * Output: statements/s, peak RSS, log size and read rate; a markdown table on stdout and JSON in
 * logs/bench-replay-<time>.json. Exit 1 when the replay failed its checks.
 *
 * Knobs: LOG_MB (default 1024), SESSIONS (8), SESSION_TX (5000).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCluster } from '../test/harness/pg-cluster';
import { rssBytes } from '../test/harness/proc';
import { MAIN } from '../test/harness/proxy';
import { run } from '../test/harness/run';
import { envInt, machineInfo, repoRoot } from './lib/common';
import type { ReplayReport } from '../src/replay/report-types';

const LOG_MB = envInt('LOG_MB', 1024);
const SESSIONS = envInt('SESSIONS', 8);
const SESSION_TX = envInt('SESSION_TX', 5000);
const SQL = 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;';

/** The lines of one logged session, as pgscribe --log-format json --log-replay writes them. */
class SyntheticSession {
  private seq = 0;
  private tx = 0;
  private readonly head: string;
  constructor(
    readonly conn: number,
    private readonly rand: () => number,
  ) {
    this.head = `"conn":${conn},"user":"postgres","db":"postgres","client":"127.0.0.1:${40000 + conn}"`;
  }
  private line(ts: string, body: string): string {
    return `{"ts":"${ts}",${this.head},${body}}\n`;
  }
  start(ts: string): string {
    let s = this.line(ts, `"type":"start","startup":{"application_name":"pgbench","client_encoding":"UTF8"},"protocol":"3.0","upstream":"10.255.255.1:5432"`);
    s += this.line(ts, `"type":"P","seq":${++this.seq},"stmt":"P_0","sql":${JSON.stringify(SQL)},"paramTypes":[]`);
    s += this.line(ts, `"type":"D","seq":${++this.seq},"kind":"S","name":"P_0"`);
    s += this.line(ts, `"type":"S","seq":${++this.seq}`);
    return s;
  }
  /** One transaction; null when the session is over (its end line returned instead). */
  transaction(ts: string): { text: string; ended: boolean } {
    if (this.tx++ >= SESSION_TX) return { text: this.line(ts, `"type":"end","reason":"terminate"`), ended: true };
    const aid = 1 + Math.floor(this.rand() * 100000);
    const b = ++this.seq;
    let s = this.line(ts, `"type":"B","seq":${b},"stmt":"P_0","portal":"","params":["${aid}"],"paramFormats":[],"resultFormats":[],"sql":${JSON.stringify(SQL)}`);
    const e = ++this.seq;
    s += this.line(ts, `"type":"E","seq":${e},"stmt":"P_0","portal":"","maxRows":0,"sql":${JSON.stringify(SQL)}`);
    s += this.line(ts, `"type":"S","seq":${++this.seq}`);
    s += this.line(ts, `"type":"done","seq":${e},"of":"E","ms":0.05,"rows":1,"status":"ok","sqlstate":null`);
    return { text: s, ended: false };
  }
}

/** Write the log; returns its statement count. */
function writeLog(file: string, bytes: number): { statements: number; sessions: number } {
  let seed = 42;
  const rand = (): number => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  const fd = fs.openSync(file, 'w');
  let written = 0;
  let statements = 0;
  let nextConn = 1;
  let sessions = 0;
  const live: SyntheticSession[] = [];
  let t = Date.parse('2026-12-01T00:00:00Z');
  let chunk = '';
  const open = (): void => {
    const s = new SyntheticSession(nextConn++, rand);
    sessions++;
    live.push(s);
    chunk += s.start(new Date(t).toISOString());
  };
  for (let i = 0; i < SESSIONS; i++) open();
  let turn = 0;
  while (written + chunk.length < bytes || live.length === 0) {
    const i = turn++ % live.length;
    const ts = new Date((t += 0.05)).toISOString();
    const r = live[i]!.transaction(ts);
    chunk += r.text;
    if (r.ended) {
      live.splice(i, 1);
      open();
    } else statements++;
    if (chunk.length > 1 << 20) {
      written += fs.writeSync(fd, chunk);
      chunk = '';
    }
  }
  // Every session ends.
  for (const s of live) chunk += `{"ts":"${new Date(t).toISOString()}","conn":${s.conn},"user":"postgres","db":"postgres","client":"x","type":"end","reason":"terminate"}\n`;
  written += fs.writeSync(fd, chunk);
  fs.closeSync(fd);
  return { statements, sessions };
}

async function main(): Promise<void> {
  const load = os.loadavg();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-bench-replay-'));
  const pg = await startCluster();
  try {
    await run('pgbench', ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', 'postgres']);
    const log = path.join(dir, 'queries.log');
    const w0 = performance.now();
    const { statements, sessions } = writeLog(log, LOG_MB * 1024 * 1024);
    const logBytes = fs.statSync(log).size;
    process.stderr.write(`bench-replay: wrote ${(logBytes / 1048576).toFixed(0)} MiB (${statements} statements, ${sessions} sessions) in ${((performance.now() - w0) / 1000).toFixed(1)} s\n`);
    const json = path.join(dir, 'report.json');
    const child = spawn(process.execPath, [MAIN, 'replay', log, '--target', `127.0.0.1:${pg.port}`, '--speed', 'max', '--json', json, '--quiet'], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, PGPASSWORD: '' } });
    let peak = 0;
    const samples: number[] = [];
    const sampler = setInterval(() => {
      const r = child.pid === undefined ? null : rssBytes(child.pid);
      if (r !== null) {
        samples.push(r);
        if (r > peak) peak = r;
      }
    }, 100);
    const t0 = performance.now();
    const code: number = await new Promise((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
    const wall = (performance.now() - t0) / 1000;
    clearInterval(sampler);
    const report = JSON.parse(fs.readFileSync(json, 'utf8')) as ReplayReport;
    const failures: string[] = [];
    if (code !== 0) failures.push(`replay exited ${code}`);
    if (report.statements.replayed !== statements) failures.push(`replayed ${report.statements.replayed} of ${statements} statements`);
    if (report.statements.errors !== 0) failures.push(`${report.statements.errors} errors`);
    if (report.statements.changed !== 0) failures.push(`${report.statements.changed} changed outcomes`);
    const result = {
      logMiB: Math.round(logBytes / 1048576),
      sessions,
      statements,
      replayed: report.statements.replayed,
      errors: report.statements.errors,
      seconds: Math.round(wall * 10) / 10,
      statementsPerSecond: Math.round(report.statements.rate),
      readMiBPerSecond: Math.round(logBytes / 1048576 / wall),
      peakRssMiB: Math.round(peak / 1048576),
      rssSamples: samples.length,
      failures,
    };
    const out = { when: new Date().toISOString(), knobs: { LOG_MB, SESSIONS, SESSION_TX }, machine: machineInfo(load), result };
    const file = path.join(repoRoot(), 'logs', `bench-replay-${out.when.replace(/:/g, '-').slice(0, 19)}.json`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
    process.stdout.write(
      `| log | sessions | statements | replay | statements/s | log read | peak RSS |\n|---|---|---|---|---|---|---|\n` +
        `| ${result.logMiB} MiB | ${sessions} | ${statements} | ${result.seconds} s | ${result.statementsPerSecond} | ${result.readMiBPerSecond} MiB/s | ${result.peakRssMiB} MiB |\n` +
        (failures.length > 0 ? `\nFAILED: ${failures.join('; ')}\n` : '') +
        `\n(${file})\n`,
    );
    if (failures.length > 0) process.exitCode = 1;
  } finally {
    await pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

void main();
