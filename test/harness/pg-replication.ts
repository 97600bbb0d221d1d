// A streaming-replication set for the failover tests (issue 18): one primary made by
// startCluster() and N hot standbys cloned from it with pg_basebackup, each a server of its own
// (temp dir, port, socket dir, log), plus the moves a failover test makes: crash a node, promote a
// standby, re-point a node at a new primary, pause replay, start a stale primary again (split brain).
//
// Teardown is pg-cluster.ts's: every node's temp dir is tracked by its 'exit' hook and a watchdog,
// so no server outlives the test process, however it dies.
//
// Re-pointing (demoteToStandbyOf) always goes through pg_rewind, so one recipe serves every case:
//   stop the node cleanly (if it runs) -> CHECKPOINT on the new primary (pg_rewind reads its
//   timeline from pg_control) -> pg_rewind from the new primary -> put back the node's own
//   port and socket dir (pg_rewind copies the source's config files) -> standby.signal and a
//   primary_conninfo naming the new primary -> start -> wait until it streams from it.
// pg_rewind says "no rewind required" for a standby that had not gone past the new primary's fork
// point, rewinds a stale primary that had (writes after the fork, or WAL it never sent before a
// crash), and first runs crash recovery on a node stopped with -m immediate. It needs
// wal_log_hints and full_page_writes on, which a replica set turns on (startCluster turns
// full_page_writes off for speed).

import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  asPg,
  clusterHandle,
  giveToServerUser,
  newServerDirs,
  pgCtlStart,
  pgCtlStop,
  pgTool,
  startCluster,
  startOnFreePort,
  stopSync,
  toolEnv,
  writeLocalConf,
  type PgCluster,
  type ServerDirs,
} from './pg-cluster';
import { run } from './run';
import { waitFor } from './time';

/** How long a node may take to reach a state (streaming, out of recovery, caught up). */
const STATE_TIMEOUT_MS = 30_000;

export interface ReplicaNode extends PgCluster {
  /** 'primary', 'standby1', 'standby2'...: the role it was created with (it keeps the name after a failover). */
  readonly name: string;
  /** pg_is_in_recovery(): true on a standby. */
  isInRecovery(): Promise<boolean>;
  /** pg_current_wal_insert_lsn() of a primary: the end of the last record written. */
  currentLsn(): Promise<string>;
  /** pg_last_wal_replay_lsn() of a standby: the end of the last record replayed. */
  replayLsn(): Promise<string>;
  /** Wait until this standby has replayed up to lsn. */
  waitForReplayOf(lsn: string, timeoutMs?: number): Promise<void>;
  /** Wait until this standby has replayed everything `primary` has written so far. */
  catchUpWith(primary: ReplicaNode, timeoutMs?: number): Promise<void>;
  /** Wait until this node is in recovery with its WAL receiver streaming from `primary`. */
  waitForStreamingFrom(primary: ReplicaNode, timeoutMs?: number): Promise<void>;
  /** pg_ctl stop -m immediate: a crash, as far as the data dir can tell. The data dir is kept. */
  stopImmediate(): Promise<void>;
  /** pg_ctl stop -m fast: a clean shutdown (shutdown checkpoint written). The data dir is kept. */
  stopClean(): Promise<void>;
  /** pg_ctl start on the node's port, in whatever role its data dir says (standby.signal or not). */
  start(): Promise<void>;
  /** pg_ctl promote -w, then wait until pg_is_in_recovery() is false. */
  promote(): Promise<void>;
  /** Make this node a standby streaming from `newPrimary`: the pg_rewind recipe in this file's header. */
  demoteToStandbyOf(newPrimary: ReplicaNode): Promise<void>;
  /** Start without standby.signal: after crash recovery it takes writes, whatever else is primary (split brain). */
  startAsPrimaryAgain(): Promise<void>;
  /** pg_wal_replay_pause(): WAL keeps arriving, but no record is replayed until resumeReplay(). */
  pauseReplay(): Promise<void>;
  /** pg_wal_replay_resume(). */
  resumeReplay(): Promise<void>;
}

export interface ReplicaSet {
  /** The node created as primary (after a failover it may be down, a standby, or a stale primary). */
  primary: ReplicaNode;
  /** The nodes created as standbys, standby1 first. */
  standbys: ReplicaNode[];
  /** primary and standbys. */
  nodes: ReplicaNode[];
  /** Bytes of WAL `primary` has written that `standby` has not replayed yet. */
  replayLagBytes(standby: ReplicaNode, primary?: ReplicaNode): Promise<number>;
  /** Stop every node and remove its temp dir. Idempotent. */
  stopAll(): Promise<void>;
}

/**
 * Settings every node needs. The standbys copy the primary's postgresql.conf, so these reach
 * them too; `conf` passed to startReplicaSet goes after them and wins.
 */
const REPLICATION_CONF: Record<string, string> = {
  hot_standby: 'on',
  // pg_rewind refuses a target without hint-bit logging (there are no data checksums) and a source
  // without full page writes.
  wal_log_hints: 'on',
  full_page_writes: 'on',
  // There are no replication slots: keep enough WAL for a rewound node to catch up from.
  wal_keep_size: '256MB',
  // The primary's pg_stat_replication is fresher than the 10 s default would make it.
  wal_receiver_status_interval: '1s',
  // A commit's WAL is flushed, hence sendable, when the commit returns (startCluster's off would
  // leave it to the WAL writer): a row written is on its way to the standbys at once.
  synchronous_commit: 'on',
};

/** A primary and `standbys` hot standbys streaming from it, each ready (streaming) when this resolves. */
export async function startReplicaSet(opts: { standbys: number; conf?: Record<string, string> }): Promise<ReplicaSet> {
  const cluster = await startCluster({ conf: { ...REPLICATION_CONF, ...opts.conf } });
  const primaryDirs = { base: path.dirname(cluster.dataDir), dataDir: cluster.dataDir };
  const primary = replicaNode('primary', cluster, primaryDirs, { unix_socket_directories: `'${cluster.socketDir}'` });
  const made = await Promise.allSettled(
    Array.from({ length: opts.standbys }, (_, i) => cloneStandby(`standby${i + 1}`, primary)),
  );
  const standbys = made.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const nodes = [primary, ...standbys];
  let stopped: Promise<void> | undefined;
  const set: ReplicaSet = {
    primary,
    standbys,
    nodes,
    async replayLagBytes(standby, from = primary) {
      const written = await from.currentLsn();
      const replayed = await standby.replayLsn();
      return Number(await from.psql(`select pg_wal_lsn_diff('${written}', '${replayed}')`));
    },
    stopAll() {
      stopped ??= Promise.all(nodes.map((n) => n.stop())).then(() => undefined);
      return stopped;
    },
  };
  const failure = made.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) {
    await set.stopAll();
    throw failure.reason;
  }
  return set;
}

/** pg_basebackup of `primary` into a new temp dir, started as a hot standby on a free port. */
async function cloneStandby(name: string, primary: ReplicaNode): Promise<ReplicaNode> {
  const { base, dataDir, socketDir, logFile, live: l } = newServerDirs();
  try {
    fs.mkdirSync(socketDir, { mode: 0o700 });
    giveToServerUser(socketDir);
    // -c fast: the backup starts with an immediate checkpoint instead of waiting for a spread one.
    // -R writes standby.signal (the primary_conninfo it writes is replaced below, to name the node).
    const backup = asPg(pgTool('pg_basebackup'), [
      '-R', '-X', 'stream', '-c', 'fast', '--no-sync',
      '-D', dataDir, '-h', primary.host, '-p', String(primary.port), '-U', 'postgres',
    ]);
    const r = await run(backup[0], backup[1], { env: toolEnv(), cwd: base, timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`pg_basebackup for ${name} failed (code ${r.code}, signal ${r.signal}):\n${r.stderr}${r.stdout}`);
    setPrimaryConninfo(dataDir, name, primary);
    // The copied postgresql.conf names the primary's socket dir: each node gets its own.
    const localSettings = { unix_socket_directories: `'${socketDir}'` };
    const port = await startOnFreePort(l, logFile, localSettings);
    const node = replicaNode(name, clusterHandle(l, port, socketDir, logFile), l, localSettings);
    await node.waitForStreamingFrom(primary);
    return node;
  } catch (e) {
    stopSync(l);
    throw e;
  }
}

/**
 * Point the data dir's WAL receiver at `primary` in postgresql.auto.conf (read after postgresql.conf,
 * so it wins), dropping any earlier primary_conninfo (pg_basebackup -R's, or one pg_rewind copied).
 * application_name is the node's name, as pg_stat_replication on the primary shows it.
 */
function setPrimaryConninfo(dataDir: string, name: string, primary: ReplicaNode): void {
  const file = path.join(dataDir, 'postgresql.auto.conf');
  const kept = fs.existsSync(file)
    ? fs.readFileSync(file, 'utf8').split('\n').filter((line) => line !== '' && !/^\s*primary_conninfo\s*=/.test(line))
    : [];
  const conninfo = `host=${primary.host} port=${primary.port} user=postgres application_name=${name}`;
  fs.writeFileSync(file, [...kept, `primary_conninfo = '${conninfo}'`, ''].join('\n'));
  giveToServerUser(file);
}

/** The end of a server log, for an error message that has to say why a node did not get somewhere. */
function logTail(logFile: string, lines = 20): string {
  try {
    return `--- last lines of ${logFile} ---\n` + fs.readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return `(no server log at ${logFile})`;
  }
}

function writeSignal(dataDir: string, signal: 'standby.signal'): void {
  const file = path.join(dataDir, signal);
  fs.writeFileSync(file, '');
  giveToServerUser(file);
}

function removeRecoverySignals(dataDir: string): void {
  for (const signal of ['standby.signal', 'recovery.signal']) fs.rmSync(path.join(dataDir, signal), { force: true });
}

/**
 * The node's moves around a PgCluster handle. `localSettings` are the settings of the node's own
 * include file (besides its port), rewritten after pg_rewind has copied another node's.
 */
function replicaNode(name: string, handle: PgCluster, dirs: ServerDirs, localSettings: Record<string, string>): ReplicaNode {
  const waitTrue = async (what: string, sql: string, timeoutMs: number): Promise<void> => {
    let last = '';
    await waitFor(
      async () => {
        try {
          last = await handle.psql(sql);
        } catch (e) {
          last = (e as Error).message; // not accepting connections yet: keep trying
        }
        return last === 't' ? true : undefined;
      },
      {
        timeoutMs,
        intervalMs: 100,
        timeout: () => `${name} (port ${handle.port}): ${what} not reached in ${timeoutMs} ms (last answer: ${last})\n${logTail(handle.logFile)}`,
      },
    );
  };

  const start = async (): Promise<void> => {
    const r = await pgCtlStart(dirs, handle.logFile);
    if (!r.ok) throw new Error(`${name} (port ${handle.port}): ${r.message}`);
  };

  const node: ReplicaNode = {
    ...handle,
    name,
    async isInRecovery() {
      return (await handle.psql('select pg_is_in_recovery()')) === 't';
    },
    currentLsn: () => handle.psql('select pg_current_wal_insert_lsn()'),
    replayLsn: () => handle.psql('select pg_last_wal_replay_lsn()'),
    waitForReplayOf(lsn, timeoutMs = STATE_TIMEOUT_MS) {
      return waitTrue(`replay of ${lsn}`, `select coalesce(pg_last_wal_replay_lsn() >= '${lsn}'::pg_lsn, false)`, timeoutMs);
    },
    async catchUpWith(primary, timeoutMs = STATE_TIMEOUT_MS) {
      await node.waitForReplayOf(await primary.currentLsn(), timeoutMs);
    },
    waitForStreamingFrom(primary, timeoutMs = STATE_TIMEOUT_MS) {
      return waitTrue(
        `streaming from ${primary.name} (port ${primary.port})`,
        `select pg_is_in_recovery() and exists (select from pg_stat_wal_receiver where status = 'streaming' and sender_port = ${primary.port})`,
        timeoutMs,
      );
    },
    stopImmediate: () => pgCtlStop(dirs, 'immediate'),
    stopClean: () => pgCtlStop(dirs, 'fast'),
    start,
    async promote() {
      const pgctl = asPg(pgTool('pg_ctl'), ['-D', dirs.dataDir, 'promote', '-w', '-t', '60']);
      const r = await run(pgctl[0], pgctl[1], { env: toolEnv(), cwd: dirs.base, timeoutMs: 90_000 });
      if (r.code !== 0) throw new Error(`pg_ctl promote of ${name} failed (code ${r.code}):\n${r.stderr}${r.stdout}`);
      await waitTrue('the end of recovery', 'select not pg_is_in_recovery()', STATE_TIMEOUT_MS);
    },
    async demoteToStandbyOf(newPrimary) {
      if (newPrimary === node) throw new Error(`${name} cannot be a standby of itself`);
      // pg_rewind wants the target stopped; a clean stop spares it the crash recovery it would
      // otherwise run first (single-user mode).
      await pgCtlStop(dirs, 'fast');
      // pg_rewind reads the source's timeline from its pg_control, which a promoted standby updates
      // only at its first checkpoint: without one, pg_rewind sees one timeline and rewinds nothing.
      await newPrimary.psql('checkpoint');
      const rewind = asPg(pgTool('pg_rewind'), [
        '-D', dirs.dataDir, '--no-sync',
        `--source-server=host=${newPrimary.host} port=${newPrimary.port} user=postgres dbname=postgres`,
      ]);
      const r = await run(rewind[0], rewind[1], { env: toolEnv(), cwd: dirs.base, timeoutMs: 120_000 });
      if (r.code !== 0) throw new Error(`pg_rewind of ${name} from ${newPrimary.name} failed (code ${r.code}):\n${r.stderr}${r.stdout}`);
      // pg_rewind copied the source's config files, its port and socket dir among them.
      writeLocalConf(dirs.dataDir, handle.port, localSettings);
      setPrimaryConninfo(dirs.dataDir, name, newPrimary);
      writeSignal(dirs.dataDir, 'standby.signal');
      await start();
      await node.waitForStreamingFrom(newPrimary);
    },
    async startAsPrimaryAgain() {
      removeRecoverySignals(dirs.dataDir);
      await start();
      await waitTrue('the end of recovery', 'select not pg_is_in_recovery()', STATE_TIMEOUT_MS);
    },
    async pauseReplay() {
      await handle.psql('select pg_wal_replay_pause()');
    },
    async resumeReplay() {
      await handle.psql('select pg_wal_replay_resume()');
    },
  };
  return node;
}
