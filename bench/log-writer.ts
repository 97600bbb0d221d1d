/**
 * Micro-benchmark of the query log writer: how many log lines per second the file logger
 * sustains, compared with the idiomatic Node way of writing a file (fs.createWriteStream).
 *
 * Cases (each writes LINES lines into a fresh file, on the filesystem of the repo's logs/):
 *  - `FileSink raw`: preformatted lines -> FileSink.write(); when write() returns false, wait
 *    for onDrain() (the real backpressure contract); then `await sink.flush()`.
 *  - `createWriteStream raw`: the same lines -> stream.write(); on false, wait for 'drain';
 *    then end() and wait for 'finish'.
 *  - `SinkLogger text` / `SinkLogger json`: the full log path as the proxy runs it: one
 *    SinkLogger.log(session, record) per query message (format + write), over a FileSink with
 *    the production default buffer (8 MiB), honouring backpressure the same way.
 *
 * Time is wall-clock from the first write until everything is handed to the OS (flush resolved /
 * 'finish'); opening and closing the file are outside it. The lines are ~2000 distinct pgbench-like
 * records (Q with literals, P/B/E with parameters, some SQL and parameters containing newlines
 * that the formatter escapes), cycled. After every run the file is checked: exactly LINES lines and
 * the expected byte count (and, for the preformatted cases, the expected SHA-256). A run that fails
 * the check is reported as INVALID and the exit code is 1; otherwise the exit code is 0 whether or
 * not the 1,000,000 lines/s target (judged on `SinkLogger text`, the default) is met.
 *
 * Each case runs REPEATS times (rounds interleave the cases, after one short warm-up round) and
 * the median is reported: a markdown table on stdout and the same as JSON, with machine info, in
 * logs/bench-log-writer-<ISO timestamp, ':' as '-'>.json.
 *
 * Run: `make bench-log` (compiles into build/ then runs `node build/bench/log-writer.js`).
 * Knobs (environment): LINES (default 2000000), REPEATS (default 3).
 *   LINES=500000 REPEATS=5 make bench-log
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

import { SinkLogger } from '../src/log/client-logger';
import { FileSink } from '../src/log/file-sink';
import { jsonFormatter, textFormatter, type LineFormatter, type QueryRecord, type SessionInfo } from '../src/log/format';
import { envInt, machineInfo, median, repoRoot } from './lib/common';

const LINES = envInt('LINES', 2_000_000);
const REPEATS = envInt('REPEATS', 3);
const DISTINCT = 2000;
const WARMUP_LINES = Math.min(LINES, 100_000);
const TARGET_LINES_PER_SEC = 1_000_000;
const TARGET_CASE = 'SinkLogger text';
const BASELINE_CASE = 'createWriteStream raw';
/** The proxy's defaults (--log-params true, --log-param-max-bytes 256). */
const FORMAT_OPTIONS = { params: true, paramMaxBytes: 256 };


// ---------------------------------------------------------------------------------------------
// Workload: pgbench-like sessions and query records
// ---------------------------------------------------------------------------------------------

/** Small seeded PRNG (mulberry32) so every run logs the same lines. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Entry {
  session: SessionInfo;
  record: QueryRecord;
}

/** A prepared statement as pgbench -M prepared (or an application) sends it. */
interface Prepared {
  name: string;
  sql: string;
  args: (rnd: () => number) => (string | null)[];
}

function makeWorkload(): Entry[] {
  const rnd = prng(42);
  const int = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));
  const sessions: SessionInfo[] = [];
  for (let id = 1; id <= 32; id++) {
    sessions.push({ id, user: 'postgres', database: 'postgres', client: `127.0.0.1:${int(32768, 60999)}` });
  }
  const prepared: Prepared[] = [
    {
      name: 'P_1',
      sql: 'UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;',
      args: () => [String(int(-5000, 5000)), String(int(1, 10_000_000))],
    },
    { name: 'P_2', sql: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;', args: () => [String(int(1, 10_000_000))] },
    {
      name: 'P_3',
      sql: 'UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;',
      args: () => [String(int(-5000, 5000)), String(int(1, 1000))],
    },
    {
      name: 'P_5',
      sql: 'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);',
      args: () => [String(int(1, 1000)), String(int(1, 100)), String(int(1, 10_000_000)), String(int(-5000, 5000))],
    },
    {
      // Multi-line SQL and a parameter with a newline and a quote: both are escaped by the formatter.
      name: 'orders_by_customer',
      sql: 'SELECT o.id, o.total\n  FROM orders o\n WHERE o.customer_id = $1 AND o.note <> $2\n LIMIT 20',
      args: () => [String(int(1, 999_999)), int(0, 3) === 0 ? null : `gift\nwrap, it's #${int(1, 99)}`],
    },
  ];
  const simple = (): string => {
    switch (int(0, 4)) {
      case 0:
        return `SELECT abalance FROM pgbench_accounts WHERE aid = ${int(1, 10_000_000)};`;
      case 1:
        return `UPDATE pgbench_accounts SET abalance = abalance + ${int(-5000, 5000)} WHERE aid = ${int(1, 10_000_000)};`;
      case 2:
        return `UPDATE pgbench_branches SET bbalance = bbalance + ${int(-5000, 5000)} WHERE bid = ${int(1, 100)};`;
      case 3:
        return (
          'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) ' +
          `VALUES (${int(1, 1000)}, ${int(1, 100)}, ${int(1, 10_000_000)}, ${int(-5000, 5000)}, CURRENT_TIMESTAMP);`
        );
      default:
        return `SELECT id, email\n  FROM customers\n WHERE id = ${int(1, 999_999)}\n\tFOR UPDATE;`;
    }
  };

  const out: Entry[] = [];
  while (out.length < DISTINCT) {
    const session = sessions[int(0, sessions.length - 1)]!;
    if (rnd() < 0.4) {
      out.push({ session, record: { type: 'Q', statement: null, portal: null, sql: simple(), params: null } });
      continue;
    }
    // Extended protocol: Parse (sometimes; a prepared statement is parsed once), Bind, Execute.
    const st = prepared[int(0, prepared.length - 1)]!;
    if (rnd() < 0.3) out.push({ session, record: { type: 'P', statement: st.name, portal: null, sql: st.sql, params: null } });
    const values = st.args(rnd).map((v) => (v === null ? null : Buffer.from(v, 'utf8')));
    const params = { formats: [], values };
    out.push({ session, record: { type: 'B', statement: st.name, portal: '', sql: st.sql, params } });
    out.push({ session, record: { type: 'E', statement: st.name, portal: '', sql: st.sql, params: null } });
  }
  return out.slice(0, DISTINCT);
}

// ---------------------------------------------------------------------------------------------
// The cases: each writes `lines` lines into `file` and returns the timed milliseconds
// ---------------------------------------------------------------------------------------------

type Runner = (file: string, lines: number) => Promise<number>;

function fileSinkRaw(texts: readonly string[]): Runner {
  return async (file, lines) => {
    const sink = new FileSink({ path: file });
    const t0 = performance.now();
    for (let i = 0, j = 0; i < lines; i++, j = j + 1 === texts.length ? 0 : j + 1) {
      if (!sink.write(texts[j]!)) await new Promise<void>((resolve) => sink.onDrain(resolve));
    }
    await sink.flush();
    const ms = performance.now() - t0;
    await sink.close();
    return ms;
  };
}

function writeStreamRaw(texts: readonly string[]): Runner {
  return async (file, lines) => {
    const ws = fs.createWriteStream(file, { flags: 'a', mode: 0o600 });
    await once(ws, 'ready');
    const t0 = performance.now();
    for (let i = 0, j = 0; i < lines; i++, j = j + 1 === texts.length ? 0 : j + 1) {
      if (!ws.write(texts[j]!)) await once(ws, 'drain');
    }
    ws.end();
    await once(ws, 'finish');
    const ms = performance.now() - t0;
    if (!ws.closed) await once(ws, 'close');
    return ms;
  };
}

function sinkLogger(entries: readonly Entry[], format: LineFormatter): Runner {
  return async (file, lines) => {
    const logger = new SinkLogger(new FileSink({ path: file }), format);
    const t0 = performance.now();
    for (let i = 0, j = 0; i < lines; i++, j = j + 1 === entries.length ? 0 : j + 1) {
      const e = entries[j]!;
      if (!logger.log(e.session, e.record)) await new Promise<void>((resolve) => logger.onDrain(resolve));
    }
    await logger.flush();
    const ms = performance.now() - t0;
    await logger.close();
    return ms;
  };
}

// ---------------------------------------------------------------------------------------------
// Checking what was written
// ---------------------------------------------------------------------------------------------

interface Expected {
  lines: number;
  bytes: number;
  /** Only when the content is deterministic (preformatted lines; the loggers stamp Date.now()). */
  sha256: string | null;
}

/** What writing `lines` lines cycling through `texts` must produce. Timestamps are fixed-width. */
function expected(texts: readonly string[], lines: number, withDigest: boolean): Expected {
  const sizes = texts.map((t) => Buffer.byteLength(t, 'utf8'));
  const cycleBytes = sizes.reduce((a, b) => a + b, 0);
  const full = Math.floor(lines / texts.length);
  const rest = lines % texts.length;
  let bytes = full * cycleBytes;
  for (let j = 0; j < rest; j++) bytes += sizes[j]!;
  let sha256: string | null = null;
  if (withDigest) {
    const hash = createHash('sha256');
    const cycle = Buffer.from(texts.join(''), 'utf8');
    for (let k = 0; k < full; k++) hash.update(cycle);
    hash.update(texts.slice(0, rest).join(''), 'utf8');
    sha256 = hash.digest('hex');
  }
  return { lines, bytes, sha256 };
}

/** Null when the file is exactly as expected, otherwise what is wrong. */
async function verify(file: string, exp: Expected): Promise<string | null> {
  let lines = 0;
  let bytes = 0;
  const hash = exp.sha256 === null ? null : createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
    const buf = chunk as Buffer;
    bytes += buf.length;
    for (let k = buf.indexOf(10); k !== -1; k = buf.indexOf(10, k + 1)) lines++;
    hash?.update(buf);
  }
  const problems: string[] = [];
  if (lines !== exp.lines) problems.push(`${lines} lines, expected ${exp.lines}`);
  if (bytes !== exp.bytes) problems.push(`${bytes} bytes, expected ${exp.bytes}`);
  if (hash !== null && hash.digest('hex') !== exp.sha256) problems.push('content differs (SHA-256)');
  return problems.length === 0 ? null : problems.join('; ');
}

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

interface Case {
  name: string;
  description: string;
  run: Runner;
  /** Expected file for a given line count. */
  expect: (lines: number) => Expected;
}

interface CaseResult {
  case: string;
  description: string;
  linesPerSec: number;
  mbPerSec: number;
  /** lines/s divided by createWriteStream raw's lines/s. */
  ratioVsCreateWriteStream: number;
  bytes: number;
  avgLineBytes: number;
  runsMs: number[];
  runsLinesPerSec: number[];
  /** False when any run produced a wrong file; the figures are then meaningless. */
  verified: boolean;
  problems: string[];
}



const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  const root = repoRoot();
  const logsDir = path.join(root, 'logs');
  const tmpDir = fs.mkdtempSync(path.join(logsDir, 'bench-log-writer-'));
  const cleanup = (): void => fs.rmSync(tmpDir, { recursive: true, force: true });
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });

  const entries = makeWorkload();
  const now = Date.now();
  const text = textFormatter(FORMAT_OPTIONS);
  const json = jsonFormatter(FORMAT_OPTIONS);
  const textLines = entries.map((e) => text(e.session, e.record, now));
  const jsonLines = entries.map((e) => json(e.session, e.record, now));
  const sizes = textLines.map((t) => Buffer.byteLength(t, 'utf8'));
  const avgText = sizes.reduce((a, b) => a + b, 0) / sizes.length;
  const avgJson = jsonLines.reduce((a, t) => a + Buffer.byteLength(t, 'utf8'), 0) / jsonLines.length;

  const rawExpected = new Map<number, Expected>();
  const rawExpect = (lines: number): Expected => {
    let e = rawExpected.get(lines);
    if (e === undefined) rawExpected.set(lines, (e = expected(textLines, lines, true)));
    return e;
  };
  const cases: Case[] = [
    { name: 'FileSink raw', description: 'preformatted text lines -> FileSink', run: fileSinkRaw(textLines), expect: rawExpect },
    {
      name: BASELINE_CASE,
      description: 'preformatted text lines -> fs.createWriteStream (default options)',
      run: writeStreamRaw(textLines),
      expect: rawExpect,
    },
    {
      name: TARGET_CASE,
      description: 'SinkLogger.log(): textFormatter + FileSink (the default log path)',
      run: sinkLogger(entries, text),
      expect: (lines) => expected(textLines, lines, false),
    },
    {
      name: 'SinkLogger json',
      description: 'SinkLogger.log(): jsonFormatter + FileSink',
      run: sinkLogger(entries, json),
      expect: (lines) => expected(jsonLines, lines, false),
    },
  ];

  console.log(`# log writer benchmark: ${fmtInt(LINES)} lines x ${REPEATS} repeats per case`);
  const loadAtStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown cpu'} x${os.cpus().length}, load average ${loadAtStart.join(' ')}`);
  console.log(`files in ${tmpDir}`);
  console.log(
    `${DISTINCT} distinct records; text lines ${Math.min(...sizes)}-${Math.max(...sizes)} bytes ` +
      `(avg ${avgText.toFixed(1)}), json lines avg ${avgJson.toFixed(1)} bytes\n`,
  );

  const runs = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  const problems = new Map<string, string[]>(cases.map((c) => [c.name, []]));
  let fileNo = 0;
  const runOnce = async (c: Case, lines: number, label: string): Promise<number> => {
    const file = path.join(tmpDir, `run-${++fileNo}.log`);
    const ms = await c.run(file, lines);
    const problem = await verify(file, c.expect(lines));
    fs.rmSync(file, { force: true });
    const rate = lines / (ms / 1000);
    console.log(`${label} ${c.name.padEnd(22)} ${ms.toFixed(0).padStart(6)} ms  ${fmtInt(rate).padStart(11)} lines/s${problem ? '  INVALID: ' + problem : ''}`);
    if (problem) problems.get(c.name)!.push(`${label}: ${problem}`);
    return ms;
  };

  try {
    for (const c of cases) await runOnce(c, WARMUP_LINES, 'warm-up ');
    for (let r = 1; r <= REPEATS; r++) {
      for (const c of cases) runs.get(c.name)!.push(await runOnce(c, LINES, `run ${r}/${REPEATS}`));
    }
  } finally {
    cleanup();
  }

  const baselineRate = LINES / (median(runs.get(BASELINE_CASE)!) / 1000);
  const results: CaseResult[] = cases.map((c) => {
    const ms = runs.get(c.name)!;
    const secs = median(ms) / 1000;
    const bytes = c.expect(LINES).bytes;
    return {
      case: c.name,
      description: c.description,
      linesPerSec: LINES / secs,
      mbPerSec: bytes / 1e6 / secs,
      ratioVsCreateWriteStream: LINES / secs / baselineRate,
      bytes,
      avgLineBytes: bytes / LINES,
      runsMs: ms.map((x) => Math.round(x * 10) / 10),
      runsLinesPerSec: ms.map((x) => Math.round(LINES / (x / 1000))),
      verified: problems.get(c.name)!.length === 0,
      problems: problems.get(c.name)!,
    };
  });

  console.log(`\n| case | lines/s | MB/s | ratio vs createWriteStream |`);
  console.log(`|---|---:|---:|---:|`);
  for (const r of results) {
    const name = r.verified ? r.case : `${r.case} (INVALID: lost/wrong output)`;
    console.log(`| ${name} | ${fmtInt(r.linesPerSec)} | ${r.mbPerSec.toFixed(1)} | ${r.ratioVsCreateWriteStream.toFixed(2)}x |`);
  }
  console.log(`\nMedian of ${REPEATS}; MB = 10^6 bytes; time = first write until all bytes are handed to the OS.`);

  const target = results.find((r) => r.case === TARGET_CASE)!;
  const pass = target.verified && target.linesPerSec >= TARGET_LINES_PER_SEC;
  console.log(
    `target: file logger (${TARGET_CASE}) >= ${fmtInt(TARGET_LINES_PER_SEC)} lines/s: ` +
      `${pass ? 'PASS' : 'FAIL'} (${fmtInt(target.linesPerSec)} lines/s)`,
  );

  const date = new Date();
  const stamp = date.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-'); // e.g. 2026-11-23T10-15-02Z
  const report = {
    benchmark: 'log-writer',
    date: date.toISOString(),
    machine: machineInfo(loadAtStart),
    config: {
      lines: LINES,
      repeats: REPEATS,
      warmupLines: WARMUP_LINES,
      distinctRecords: DISTINCT,
      avgTextLineBytes: avgText,
      avgJsonLineBytes: avgJson,
      formatOptions: FORMAT_OPTIONS,
      fileSink: 'defaults (highWaterMark 8 MiB, maxWrite 1 MiB)',
      createWriteStream: 'defaults (highWaterMark 16 KiB)',
    },
    target: { case: TARGET_CASE, linesPerSec: TARGET_LINES_PER_SEC, measured: target.linesPerSec, pass },
    results,
  };
  const out = path.join(logsDir, `bench-log-writer-${stamp}.json`);
  fs.writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
  console.log(`results: ${path.relative(process.cwd(), out) || out}`);

  // A benchmark, not a test: missing the target is not an error; a wrong file is.
  if (results.some((r) => !r.verified)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
