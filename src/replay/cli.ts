/**
 * `pgscribe replay LOG... --target HOST:PORT [options]`: the command line of the replay tool
 * (docs/replay.md), its help, and the run: the text report on stdout, the HTML report and the
 * report's JSON to files, progress on stderr. Exit status: 0 when the replay ran (whatever it
 * found), 1 when it could not run or was refused, 2 for a command line it does not understand.
 */
import * as fs from 'node:fs';
import { Passwords } from './passfile';
import { replay, ReplayRefused, type ReplayOptions, type SessionFilter } from './replayer';
import { renderHtmlReport } from './report-html';
import { renderTextReport } from './report-text';

export const REPLAY_HELP = `Usage: pgscribe replay LOG... --target HOST:PORT [options]

Replays a query log written with --log-format json --log-replay against another server, one
connection per logged session, and compares each statement's outcome and latency with the
original's. A log file F is read with its rotated files F.N ... F.1 first.

  --target HOST:PORT          the server to replay against (required)
  --speed N|max               the original timing divided by N (default 1); max: no waiting
  --sessions-in-order         one session at a time, in log order
  --sessions RULE             replay only sessions matching RULE: user=RE,database=RE,application=RE
                              (regexes; repeat for several rules, any may match)
  --from TIME, --to TIME      only sessions that started in this window (ISO 8601)
  --database NAME             every session to this database (default: its own)
  --user NAME                 every session as this user (default: its own)
  --map-database OLD=NEW      one database to another (repeatable)
  --map-user OLD=NEW          one user to another (repeatable)
  --passfile FILE             passwords in .pgpass format (default PGPASSFILE, ~/.pgpass);
                              PGPASSWORD wins when set. Passwords never come from the log.
  --read-only                 replay reads only: writes are left out, with what depends on them
  --force                     replay even against the server the log was captured from
  --slower N                  a digest whose p50 grew N times (and by 1 ms) is a regression (default 2)
  --report FILE               write the HTML report to FILE
  --json FILE                 write the report as JSON to FILE
  --connect-timeout-ms N      per session, up to its first ReadyForQuery (default 10000)
  --quiet                     no progress line on stderr
`;

class UsageError extends Error {}

interface Parsed {
  options: ReplayOptions;
  html: string | null;
  json: string | null;
}

function splitPair(v: string, what: string): [string, string] {
  const i = v.indexOf('=');
  if (i <= 0) throw new UsageError(`${what} wants OLD=NEW, got '${v}'`);
  return [v.slice(0, i), v.slice(i + 1)];
}

function regex(v: string, what: string): RegExp {
  try {
    return new RegExp(v);
  } catch (err) {
    throw new UsageError(`${what}: ${(err as Error).message}`);
  }
}

function sessionRule(v: string): SessionFilter {
  const f: SessionFilter = {};
  for (const part of v.split(',')) {
    const [k, re] = splitPair(part, '--sessions');
    if (k === 'user') f.user = regex(re, '--sessions user');
    else if (k === 'database') f.database = regex(re, '--sessions database');
    else if (k === 'application') f.application = regex(re, '--sessions application');
    else throw new UsageError(`--sessions: unknown key '${k}' (user, database, application)`);
  }
  return f;
}

function time(v: string, what: string): number {
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new UsageError(`${what}: not a time: '${v}'`);
  return t;
}

export function parseReplayArgs(argv: readonly string[]): Parsed {
  const logs: string[] = [];
  let target: string | null = null;
  let speed: number | 'max' = 1;
  let inOrder = false;
  const filters: SessionFilter[] = [];
  let from: number | null = null;
  let to: number | null = null;
  let user: string | null = null;
  let database: string | null = null;
  const mapUser = new Map<string, string>();
  const mapDatabase = new Map<string, string>();
  let passfile: string | null = null;
  let readOnly = false;
  let force = false;
  let slower = 2;
  let html: string | null = null;
  let json: string | null = null;
  let connectTimeoutMs = 10_000;
  let quiet = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const name = eq > 0 ? a.slice(0, eq) : a;
    const value = (): string => {
      if (eq > 0) return a.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${name} needs a value`);
      return v;
    };
    switch (name) {
      case '--target': target = value(); break;
      case '--speed': {
        const v = value();
        if (v === 'max') speed = 'max';
        else {
          const n = Number(v);
          if (!(n > 0) || !Number.isFinite(n)) throw new UsageError(`--speed wants a positive number or max, got '${v}'`);
          speed = n;
        }
        break;
      }
      case '--sessions-in-order': inOrder = true; break;
      case '--sessions': filters.push(sessionRule(value())); break;
      case '--from': from = time(value(), '--from'); break;
      case '--to': to = time(value(), '--to'); break;
      case '--user': user = value(); break;
      case '--database': database = value(); break;
      case '--map-user': { const [k, v] = splitPair(value(), '--map-user'); mapUser.set(k, v); break; }
      case '--map-database': { const [k, v] = splitPair(value(), '--map-database'); mapDatabase.set(k, v); break; }
      case '--passfile': passfile = value(); break;
      case '--read-only': readOnly = true; break;
      case '--force': force = true; break;
      case '--slower': {
        const n = Number(value());
        if (!(n > 1)) throw new UsageError('--slower wants a factor above 1');
        slower = n;
        break;
      }
      case '--report': html = value(); break;
      case '--json': json = value(); break;
      case '--connect-timeout-ms': {
        const n = Number(value());
        if (!Number.isInteger(n) || n <= 0) throw new UsageError('--connect-timeout-ms wants a positive integer');
        connectTimeoutMs = n;
        break;
      }
      case '--quiet': quiet = true; break;
      default:
        if (a.startsWith('-')) throw new UsageError(`unknown option ${a}`);
        logs.push(a);
    }
  }
  if (logs.length === 0) throw new UsageError('no log file given');
  if (target === null) throw new UsageError('--target HOST:PORT is required');
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(target);
  if (m === null) throw new UsageError(`--target wants HOST:PORT, got '${target}'`);
  let passwords: Passwords;
  try {
    passwords = new Passwords(passfile);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const progress = quiet ? null : (line: string): void => void process.stderr.write(line + '\n');
  return {
    options: { logs, host: m[1]!, port: Number(m[2]), speed, inOrder, filters, from, to, user, database, mapUser, mapDatabase, passwords, readOnly, force, slower, connectTimeoutMs, progress },
    html,
    json,
  };
}

/** Run `pgscribe replay` (argv after the word replay); resolves with the exit status. */
export async function runReplay(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(REPLAY_HELP);
    return 0;
  }
  let parsed: Parsed;
  try {
    parsed = parseReplayArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`pgscribe replay: ${err.message}\n(pgscribe replay --help lists the options)\n`);
    return 2;
  }
  try {
    for (const f of parsed.options.logs) fs.accessSync(f, fs.constants.R_OK);
  } catch (err) {
    process.stderr.write(`pgscribe replay: cannot read the log: ${(err as Error).message}\n`);
    return 1;
  }
  try {
    const report = await replay(parsed.options);
    process.stdout.write(renderTextReport(report));
    if (parsed.html !== null) fs.writeFileSync(parsed.html, renderHtmlReport(report));
    if (parsed.json !== null) fs.writeFileSync(parsed.json, JSON.stringify(report, null, 1) + '\n');
    return 0;
  } catch (err) {
    const what = err instanceof ReplayRefused ? 'refused' : 'failed';
    process.stderr.write(`pgscribe replay ${what}: ${(err as Error).message}\n`);
    return 1;
  }
}
