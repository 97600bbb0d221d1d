// Throwaway PostgreSQL cluster for tests and benchmarks.
//
// startCluster() runs initdb into a fresh temp dir, starts the server on a free
// 127.0.0.1 port, creates the test roles (see USERS) and pg_stat_statements,
// and returns a handle whose stop() tears everything down again. The server
// never outlives the test process: a process 'exit' handler stops it
// synchronously, and a small detached watchdog shell stops it if the test
// process dies without running 'exit' handlers (signal, SIGKILL).
//
// Layout of the temp dir (one per cluster, named pgscribe-pg-XXXXXX):
//   <base>/data        data directory
//   <base>/sock        unix socket directory
//   <base>/server.log  server log
//
// The building blocks are exported for harnesses that make other data dirs (pg-replication.ts
// clones standbys): running tools as the server user, tracking a temp dir for teardown, starting
// a server on a free port, and the PgCluster handle.

import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './free-port';
import { run, type RunResult } from './run';
import { watchdog, type Watchdog } from './watchdog';

export const USERS = {
  trust: { user: 'trust_user' },
  scram: { user: 'scram_user', password: 'scram_pass' },
  md5: { user: 'md5_user', password: 'md5_pass' },
} as const;

const PASSWORDS: Record<string, string> = {
  [USERS.scram.user]: USERS.scram.password,
  [USERS.md5.user]: USERS.md5.password,
};

function findPgBin(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const preferred = '/usr/lib/postgresql/15/bin';
  if (fs.existsSync(path.join(preferred, 'initdb'))) return preferred;
  let best: { v: number; dir: string } | undefined;
  try {
    for (const name of fs.readdirSync('/usr/lib/postgresql')) {
      const dir = path.join('/usr/lib/postgresql', name, 'bin');
      const v = Number.parseFloat(name);
      if (!Number.isFinite(v) || !fs.existsSync(path.join(dir, 'initdb'))) continue;
      if (!best || v > best.v) best = { v, dir };
    }
  } catch {
    // no /usr/lib/postgresql
  }
  return best ? best.dir : preferred;
}

export const PG_BIN: string = findPgBin();

export function pgTool(name: string): string {
  const p = path.join(PG_BIN, name);
  return fs.existsSync(p) ? p : name; // fall back to $PATH (e.g. psql from postgresql-client)
}

export interface PgCluster {
  host: string;
  port: number;
  dataDir: string;
  socketDir: string;
  logFile: string;
  /** process.env plus PGHOST/PGPORT/PGUSER/PGDATABASE (and PGPASSWORD for the password users), pointing directly at the cluster. */
  env(user?: string): NodeJS.ProcessEnv;
  /**
   * Run `psql -X -A -t -w -v ON_ERROR_STOP=1 -c sql` (against the cluster, or host/port if given, e.g. a proxy).
   * Resolves stdout with trailing newlines removed; rejects with stderr on nonzero exit.
   */
  psql(sql: string, opts?: { user?: string; db?: string; port?: number; host?: string }): Promise<string>;
  /**
   * pg_ctl restart -m fast, on the same port and data: every connection ends (walsenders after
   * their clients confirmed what was sent), temporary replication slots are gone.
   */
  restart(): Promise<void>;
  /** pg_ctl stop -m immediate, then remove the temp dir. Idempotent. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Running server-side tools as the postgres OS user when we are root.

const isRoot = process.getuid?.() === 0;

function findRunuser(): string | undefined {
  for (const p of ['/usr/sbin/runuser', '/sbin/runuser', '/usr/bin/runuser', '/bin/runuser']) {
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

/** [cmd, args] that runs `bin args` as the postgres OS user when root, directly otherwise. */
export function asPg(bin: string, args: string[]): [string, string[]] {
  if (!isRoot) return [bin, args];
  const runuser = findRunuser();
  if (runuser) return [runuser, ['-u', 'postgres', '--', bin, ...args]];
  return ['su', ['postgres', '-s', '/bin/sh', '-c', 'exec "$0" "$@"', bin, ...args]];
}

let pgIds: { uid: number; gid: number } | undefined;
function postgresIds(): { uid: number; gid: number } {
  if (!pgIds) {
    try {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      pgIds = { uid, gid };
    } catch {
      throw new Error('running as root but there is no "postgres" OS user to run the PostgreSQL server as');
    }
  }
  return pgIds;
}

/** Environment for server-side tools: no libpq connection variables leaking in from outside. */
export function toolEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C' };
  for (const k of Object.keys(env)) {
    if (k.startsWith('PG')) delete env[k];
  }
  return env;
}

/** A file we wrote into a data dir: the server, running as the postgres OS user, must own it. */
export function giveToServerUser(file: string): void {
  if (!isRoot) return;
  const { uid, gid } = postgresIds();
  fs.chownSync(file, uid, gid);
}

/** mkdtemp a base dir that the server user can use. */
export function makeBaseDir(): string {
  const candidates = [os.tmpdir(), '/tmp'];
  for (const tmp of candidates) {
    const base = fs.mkdtempSync(path.join(tmp, 'pgscribe-pg-'));
    if (!isRoot) return base;
    const { uid, gid } = postgresIds();
    fs.chownSync(base, uid, gid);
    fs.chmodSync(base, 0o700);
    const [cmd, args] = asPg('/bin/sh', ['-c', 'test -w "$0" && test -x "$0"', base]);
    if (spawnSync(cmd, args, { stdio: 'ignore' }).status === 0) return base;
    fs.rmSync(base, { recursive: true, force: true }); // a parent dir not traversable by postgres: try /tmp
  }
  throw new Error('no temp directory usable by the postgres OS user');
}

// ---------------------------------------------------------------------------
// Teardown bookkeeping.

/** A server's temp dir (pg_ctl runs there) and the data dir inside it. */
export interface ServerDirs {
  base: string;
  dataDir: string;
}

/** A server's dirs, tracked so that it is stopped and removed even if the test process dies. */
export interface Live extends ServerDirs {
  watchdog?: Watchdog | undefined;
}
const live = new Set<Live>();
let exitHookInstalled = false;

function readPostmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number.parseInt(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]!, 10);
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function killWatchdog(l: Live): void {
  l.watchdog?.cancel();
  l.watchdog = undefined;
}

/** Stop the server (immediate) and remove its temp dir, synchronously: for 'exit' handlers and failed starts. */
export function stopSync(l: Live): void {
  killWatchdog(l);
  const pid = readPostmasterPid(l.dataDir);
  if (pid !== undefined) {
    const [cmd, args] = asPg(pgTool('pg_ctl'), ['-D', l.dataDir, 'stop', '-m', 'immediate', '-w', '-t', '10']);
    try {
      execFileSync(cmd, args, { stdio: 'ignore', timeout: 15000, env: toolEnv(), cwd: l.base });
    } catch {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  fs.rmSync(l.base, { recursive: true, force: true });
  live.delete(l);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const l of [...live]) {
      try {
        stopSync(l);
      } catch {
        // best effort
      }
    }
  });
}

/**
 * A watchdog (see watchdog.ts) that stops the cluster and removes its dir once this process is gone.
 * Paths are passed in the environment so the watchdog's command line does not mention the temp dir.
 */
function startWatchdog(l: Live): void {
  const stopCmd = isRoot
    ? `"$PGS_RUNUSER" -u postgres -- "$PGS_PGCTL" -D "$PGS_DATA" stop -m immediate -w -t 10`
    : `"$PGS_PGCTL" -D "$PGS_DATA" stop -m immediate -w -t 10`;
  const script = [
    'pid=$(head -n 1 "$PGS_DATA/postmaster.pid" 2>/dev/null || true)',
    `if [ -n "$pid" ]; then cd "$PGS_BASE" 2>/dev/null; ${stopCmd} >/dev/null 2>&1 || kill -9 "$pid" 2>/dev/null; fi`,
    'cd /; rm -rf "$PGS_BASE"',
  ].join('\n');
  l.watchdog = watchdog(script, {
    ...toolEnv(),
    PGS_BASE: l.base,
    PGS_DATA: l.dataDir,
    PGS_PGCTL: pgTool('pg_ctl'),
    PGS_RUNUSER: findRunuser() ?? 'runuser',
  });
}

/**
 * Track a server's temp dir from now on: the 'exit' hook and a watchdog stop the server and
 * remove the dir unless a handle's stop() (see clusterHandle) did so first.
 */
/** A new server's paths under a fresh temp dir (data, socket dir, log), tracked for teardown from now on. */
export function newServerDirs(): { base: string; dataDir: string; socketDir: string; logFile: string; live: Live } {
  const base = makeBaseDir();
  const dataDir = path.join(base, 'data');
  return { base, dataDir, socketDir: path.join(base, 'sock'), logFile: path.join(base, 'server.log'), live: trackServer(base, dataDir) };
}

export function trackServer(base: string, dataDir: string): Live {
  installExitHook();
  const l: Live = { base, dataDir };
  live.add(l);
  startWatchdog(l);
  return l;
}

// ---------------------------------------------------------------------------
// Starting a server whose data dir is ready.

/**
 * The file postgresql.conf includes last, so its settings win: those that belong to one data dir
 * alone (its port; for a copied data dir, its own socket dir too). Rewritten before every start.
 */
const LOCAL_CONF = 'pgscribe_port.conf';

/** (Re)write the data dir's LOCAL_CONF with port plus `settings` (values written as given). */
export function writeLocalConf(dataDir: string, port: number, settings: Record<string, string> = {}): void {
  const file = path.join(dataDir, LOCAL_CONF);
  const lines = [`port = ${port}`, ...Object.entries(settings).map(([k, v]) => `${k} = ${v}`)];
  fs.writeFileSync(file, lines.join('\n') + '\n');
  giveToServerUser(file);
}

/** pg_ctl start -w on the port LOCAL_CONF names. On failure: the message, and whether the port was taken. */
export async function pgCtlStart(l: ServerDirs, logFile: string): Promise<{ ok: true } | { ok: false; message: string; portClash: boolean }> {
  const logStart = fs.existsSync(logFile) ? fs.statSync(logFile).size : 0;
  const pgctl = asPg(pgTool('pg_ctl'), ['-D', l.dataDir, '-l', logFile, '-w', '-t', '60', 'start']);
  const sr = await run(pgctl[0], pgctl[1], { env: toolEnv(), cwd: l.base, timeoutMs: 90_000 });
  if (sr.code === 0) return { ok: true };
  let log = '';
  try {
    log = fs.readFileSync(logFile, 'utf8').slice(logStart);
  } catch {
    // no log
  }
  return {
    ok: false,
    message: `pg_ctl start failed (code ${sr.code}):\n${sr.stderr}${sr.stdout}\n--- server log ---\n${log}`,
    portClash: /could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(log),
  };
}

/** pg_ctl stop -m mode -w, keeping the data dir. A server that is not running is not an error. */
export async function pgCtlStop(l: ServerDirs, mode: 'fast' | 'immediate'): Promise<void> {
  if (readPostmasterPid(l.dataDir) === undefined) return;
  const pgctl = asPg(pgTool('pg_ctl'), ['-D', l.dataDir, 'stop', '-m', mode, '-w', '-t', '60']);
  const r = await run(pgctl[0], pgctl[1], { env: toolEnv(), cwd: l.base, timeoutMs: 90_000 });
  if (r.code !== 0) throw fail(`pg_ctl stop -m ${mode}`, r);
}

/**
 * Start the server on a free port (written to LOCAL_CONF with `localSettings`), trying another
 * port when another process took it between freePort() and the bind. Resolves the port.
 */
export async function startOnFreePort(l: ServerDirs, logFile: string, localSettings: Record<string, string> = {}): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    writeLocalConf(l.dataDir, port, localSettings);
    const r = await pgCtlStart(l, logFile);
    if (r.ok) return port;
    if (!r.portClash || attempt >= 3) throw new Error(`port ${port}: ${r.message}`);
  }
}

// ---------------------------------------------------------------------------

function confValue(v: string): string {
  if (/^'.*'$/s.test(v) || /^[A-Za-z0-9_.+-]+$/.test(v)) return v;
  return `'${v.replace(/'/g, "''")}'`;
}

function fail(what: string, r: RunResult): Error {
  return new Error(`${what} failed (code ${r.code}, signal ${r.signal}):\n${r.stderr}${r.stdout}`);
}

/** TLS for a test cluster: PEM files (copied into the data directory, owned by the server user). */
export interface ClusterSsl {
  cert: string;
  key: string;
  /** ssl_ca_file: client certificates are checked against it (for `cert` authentication). */
  ca?: string;
  /** The default TCP rules become `hostssl`: plaintext TCP connections are refused. */
  hostsslOnly?: boolean;
}

/**
 * Start a throwaway cluster. `conf` entries are appended to postgresql.conf as `key = value`
 * (values that are not a plain word/number are single-quoted); `hba` lines go before the default
 * rules; `ssl` turns TLS on (ssl = on), optionally for TCP connections only.
 */
export async function startCluster(opts: { conf?: Record<string, string>; hba?: string[]; ssl?: ClusterSsl } = {}): Promise<PgCluster> {
  const { base, dataDir, socketDir, logFile, live: l } = newServerDirs();

  try {
    fs.mkdirSync(socketDir, { mode: 0o700 });
    giveToServerUser(socketDir);

    const initdb = asPg(pgTool('initdb'), [
      '-D', dataDir, '--no-sync', '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C',
    ]);
    const ir = await run(initdb[0], initdb[1], { env: toolEnv(), cwd: base, timeoutMs: 120_000 });
    if (ir.code !== 0) throw fail('initdb', ir);

    const host = opts.ssl?.hostsslOnly ? 'hostssl' : 'host';
    const hba = [
      ...(opts.hba ?? []),
      'local all all trust',
      `${host} all ${USERS.scram.user} 127.0.0.1/32 scram-sha-256`,
      `${host} all ${USERS.md5.user} 127.0.0.1/32 md5`,
      `${host} all all 127.0.0.1/32 trust`,
      `${host} replication all 127.0.0.1/32 trust`,
    ];
    fs.writeFileSync(path.join(dataDir, 'pg_hba.conf'), hba.join('\n') + '\n');

    const baseConf: Record<string, string> = {
      listen_addresses: "'127.0.0.1'",
      unix_socket_directories: `'${socketDir}'`,
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      max_connections: '300',
      shared_preload_libraries: "'pg_stat_statements'",
      'pg_stat_statements.track': 'all',
      password_encryption: "'scram-sha-256'",
      logging_collector: 'off',
      // pgscribe's change stream (src/wal/) decodes the WAL: logical decoding needs this level.
      // max_wal_senders and max_replication_slots keep their defaults (10 each).
      wal_level: 'logical',
    };
    if (opts.ssl) {
      // The server refuses a key file that others can read, or that another user owns.
      const files: [string, string | undefined, number][] = [
        ['server.crt', opts.ssl.cert, 0o644],
        ['server.key', opts.ssl.key, 0o600],
        ['root.crt', opts.ssl.ca, 0o644],
      ];
      for (const [name, src, mode] of files) {
        if (src === undefined) continue;
        const dst = path.join(dataDir, name);
        fs.copyFileSync(src, dst);
        fs.chmodSync(dst, mode);
        giveToServerUser(dst);
      }
      baseConf['ssl'] = 'on';
      baseConf['ssl_cert_file'] = "'server.crt'";
      baseConf['ssl_key_file'] = "'server.key'";
      if (opts.ssl.ca !== undefined) baseConf['ssl_ca_file'] = "'root.crt'";
    }
    const confLines = [
      '',
      '# --- pgscribe test cluster ---',
      ...Object.entries(baseConf).map(([k, v]) => `${k} = ${v}`),
      ...Object.entries(opts.conf ?? {}).map(([k, v]) => `${k} = ${confValue(v)}`),
      // The port goes in an included file (last, so it wins) that is rewritten on a port-clash retry.
      `include '${LOCAL_CONF}'`,
      '',
    ];
    fs.appendFileSync(path.join(dataDir, 'postgresql.conf'), confLines.join('\n'));

    const port = await startOnFreePort(l, logFile);

    const cluster = clusterHandle(l, port, socketDir, logFile);
    await cluster.psql(
      [
        'CREATE EXTENSION IF NOT EXISTS pg_stat_statements;',
        `CREATE ROLE ${USERS.trust.user} LOGIN;`,
        "SET password_encryption = 'scram-sha-256';",
        `CREATE ROLE ${USERS.scram.user} LOGIN PASSWORD '${USERS.scram.password}';`,
        "SET password_encryption = 'md5';",
        `CREATE ROLE ${USERS.md5.user} LOGIN PASSWORD '${USERS.md5.password}';`,
        `GRANT CREATE ON SCHEMA public TO ${USERS.trust.user}, ${USERS.scram.user}, ${USERS.md5.user};`,
        `GRANT CONNECT ON DATABASE postgres TO ${USERS.trust.user}, ${USERS.scram.user}, ${USERS.md5.user};`,
        'ALTER ROLE postgres WITH REPLICATION;',
      ].join('\n'),
    );
    return cluster;
  } catch (e) {
    stopSync(l);
    throw e;
  }
}

/** The PgCluster handle of a tracked server listening on 127.0.0.1:port (also for data dirs not made by startCluster). */
export function clusterHandle(l: Live, port: number, socketDir: string, logFile: string): PgCluster {
  const host = '127.0.0.1';
  let stopped: Promise<void> | undefined;

  const env = (user?: string): NodeJS.ProcessEnv => {
    const u = user ?? 'postgres';
    const e: NodeJS.ProcessEnv = {
      ...process.env,
      PGHOST: host,
      PGPORT: String(port),
      PGUSER: u,
      PGDATABASE: 'postgres',
    };
    delete e.PGPASSWORD;
    delete e.PGSERVICE;
    delete e.PGPASSFILE;
    if (PASSWORDS[u] !== undefined) e.PGPASSWORD = PASSWORDS[u];
    return e;
  };

  return {
    host,
    port,
    dataDir: l.dataDir,
    socketDir,
    logFile,
    env,
    async psql(sql, o = {}) {
      const e = env(o.user);
      if (o.db !== undefined) e.PGDATABASE = o.db;
      if (o.host !== undefined) e.PGHOST = o.host;
      if (o.port !== undefined) e.PGPORT = String(o.port);
      const r = await run(pgTool('psql'), ['-X', '-A', '-t', '-w', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
        env: e,
        timeoutMs: 60_000,
      });
      if (r.code !== 0) {
        throw new Error(r.stderr.trim() || `psql exited with code ${r.code}, signal ${r.signal}`);
      }
      return r.stdout.replace(/\n+$/, '');
    },
    async restart() {
      if (stopped) throw new Error('restart() of a stopped cluster');
      // -l again: without it the new postmaster would write to pg_ctl's stdout, a pipe run() waits on.
      const pgctl = asPg(pgTool('pg_ctl'), ['-D', l.dataDir, '-l', logFile, '-m', 'fast', '-w', '-t', '60', 'restart']);
      const r = await run(pgctl[0], pgctl[1], { env: toolEnv(), cwd: l.base, timeoutMs: 90_000 });
      if (r.code !== 0) throw fail('pg_ctl restart', r);
    },
    stop() {
      if (!stopped) {
        stopped = (async () => {
          killWatchdog(l);
          const pid = readPostmasterPid(l.dataDir);
          if (pid !== undefined) {
            const pgctl = asPg(pgTool('pg_ctl'), ['-D', l.dataDir, 'stop', '-m', 'immediate', '-w', '-t', '30']);
            const r = await run(pgctl[0], pgctl[1], { env: toolEnv(), cwd: l.base, timeoutMs: 40_000 });
            if (r.code !== 0) {
              try {
                process.kill(pid, 'SIGKILL');
              } catch {
                // already gone
              }
            }
          }
          await fs.promises.rm(l.base, { recursive: true, force: true });
          live.delete(l);
        })();
      }
      return stopped;
    },
  };
}
