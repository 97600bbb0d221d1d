#!/usr/bin/env node
/**
 * pgscribe entry point: parse the command line, load the TLS certificates, open the query log,
 * start the Server, and wire the signals (SIGHUP reloads the settings (reload.ts), reopens the log and reloads the certificates,
 * SIGTERM/SIGINT shut down gracefully, SIGUSR2 prints the stats line, SIGUSR1 is refused).
 */
import { ConfigError, cacheMode, clientTlsMode, describe, formatHostPort, helpText, invalidationMode, type Command, type Config } from './config';
import { createCacheLayer } from './cache/create';
import { Catalogs } from './cache/catalogs';
import { connectOwn, ownLogin, withLogin } from './pg/own-login';
import { systemIdsOf } from './upstreams/system-ids';
import { ChangeStreams } from './cache/change-streams';
import { DEFAULT_PUBLICATION } from './wal/setup';
import { walReadiness } from './wal/readiness';
import { fingerprintInterner, type CacheContext } from './cache/session';
import type { ClientLogger } from './log/client-logger';
import type { FileSink, StdoutSink } from './log/file-sink';
import { createLogger, createSink } from './log/open-log';
import { AdminServer } from './admin/server';
import { LocalSource, insightOptions, type AdminSource } from './admin/source';
import { ProcessesSource } from './processes/admin-source';
import { Insight } from './insight';
import { streamOpsLog, type OpsLog } from './log/ops';
import { cacheFields, readingsOf, statsLine } from './metrics';
import { Server } from './server';
import { type CertInfo, type TlsSetup } from './tls';
import { cachePolicyOf, readSettings, reloadSettings } from './reload';
import { LOG_PIPE_FD, PROCESS_INDEX_ENV } from './processes/ipc';
import { Primary } from './processes/primary';
import { WorkerLink, type Channel } from './processes/worker-link';
import { ProcessCoherentLayer } from './processes/coherent-layer';
import { createUpstreams } from './upstreams/create';
import { runReplay } from './replay/cli';
import type { HostPort } from './config';

import * as fs from 'node:fs';
import * as net from 'node:net';
import type * as tls from 'node:tls';
import * as path from 'node:path';

/** The version in the package.json above this file (dist/ in production, build/src/ in tests). */
function readVersion(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const p = path.join(dir, 'package.json');
    if (fs.existsSync(p)) return (JSON.parse(fs.readFileSync(p, 'utf8')) as { version: string }).version;
    if (path.dirname(dir) === dir) return 'unknown';
  }
}
const VERSION = readVersion();

/**
 * tls.connect options for --redis-tls: require encrypts without checking who answers (like
 * libpq's sslmode=require); verify-full checks the certificate against redis-tls-ca and the host
 * name (or IP address) against it. Null: plaintext.
 */
function redisTls(redis: Config['redis']): tls.ConnectionOptions | null {
  if (redis.tls === 'disable') return null;
  if (redis.tls === 'require') return { rejectUnauthorized: false };
  return { ca: fs.readFileSync(redis.tlsCa), rejectUnauthorized: true, ...(net.isIP(redis.address!.host) === 0 ? { servername: redis.address!.host } : {}) };
}

/**
 * Whether the change stream drops answers (wal) or only the TTL bounds what changed out of
 * pgscribe's sight (ttl). auto asks the server once, over pgscribe's own connection to
 * catalog-database, and says in one line what is missing when it falls back to ttl.
 */
export async function resolveInvalidation(cfg: Config, ops: OpsLog, tls: TlsSetup, primary?: () => HostPort): Promise<'wal' | 'ttl'> {
  const { cache, catalog } = cfg;
  if (!cache.enabled || catalog.user === '' || cache.invalidation === 'ttl') return 'ttl';
  if (cache.invalidation === 'wal') return 'wal';
  let missing: string;
  try {
    const conn = await connectOwn(ownLogin(cfg, tls.upstream, primary), catalog.database, 30_000);
    try {
      const r = await walReadiness(conn, DEFAULT_PUBLICATION, cache.walPublication);
      if (r.ok) {
        ops.info('cache invalidation: auto chose wal: the change stream drops what any committed change touches', { database: catalog.database });
        return 'wal';
      }
      missing = r.missing;
    } finally {
      conn.close();
    }
  } catch (err) {
    missing = `pgscribe's own connection failed (${(err as Error).message})`;
  }
  ops.warn(`cache invalidation: auto chose ttl: changes made outside pgscribe are dropped only when the TTL passes. Missing: ${missing}`, { database: catalog.database, user: catalog.user });
  return 'ttl';
}

/** The cache/singleflight layer the settings ask for, or null. */
export function createCacheContext(
  cfg: Config,
  ops: OpsLog,
  tls: TlsSetup,
  invalidation: 'wal' | 'ttl' = 'ttl',
  link: WorkerLink | null = null,
  primary: () => HostPort = () => cfg.upstreams[0]!,
): CacheContext | null {
  const { cache, redis } = cfg;
  if (!cache.enabled && !cache.singleflight) return null;
  const layer = createCacheLayer(
    {
      cache: cache.enabled,
      singleflight: cache.singleflight,
      maxBytes: cache.maxBytes,
      maxEntries: cache.maxEntries,
      workers: cache.workers,
    },
    (message) => ops.error(`cache worker thread problem: ${message}; its share of the cache is relayed uncached from now on`, { workers: cache.workers }),
    redis.address === null
      ? undefined
      : {
          ops,
          settings: {
            host: redis.address.host,
            port: redis.address.port,
            password: redis.password,
            key: Buffer.from(redis.key, 'utf8'),
            tls: redisTls(redis),
            user: redis.user,
            db: redis.db,
            prefix: redis.prefix,
            timeoutMs: redis.timeoutMs,
            singleflight: redis.singleflight,
            lockMs: redis.lockMs,
            maxEntryBytes: cache.maxEntryBytes,
          },
        },
  );
  const { catalog } = cfg;
  const common = ownLogin(cfg, tls.upstream, primary);
  const changes =
    catalog.user === '' || !cache.enabled || invalidation !== 'wal'
      ? null
      : new ChangeStreams(
          withLogin(common, { publication: cache.walPublication === '' ? DEFAULT_PUBLICATION : cache.walPublication, own: cache.walPublication === '', waitMs: cache.walWaitMs }),
          ops,
          (db, tables) => layer.invalidate(db, tables),
        );
  // What the catalog says of a database changed (or can no longer be known): its answers go.
  const catalogs =
    catalog.user === ''
      ? null
      : new Catalogs(withLogin(common, { pollMs: catalog.pollMs, streams: changes }), ops, (db) => layer.invalidate(db, null));
  return {
    // The sessions' writes also leave every other process's cache (--processes N); the catalog's
    // and the change stream's invalidations stay here: every process has its own.
    layer: link === null ? layer : new ProcessCoherentLayer(layer, link),
    policy: cachePolicyOf(cfg, catalogs === null),
    catalogs,
    changes,
    cache: cache.enabled,
    singleflight: cache.singleflight,
    maxEntryBytes: cache.maxEntryBytes,
    bypassMs: Math.max(cache.ttlMs, 1000),
    intern: fingerprintInterner(),
  };
}

/** Say which certificates are in use, and warn about one that has expired. */
function reportCert(ops: OpsLog, what: string, cert: CertInfo): void {
  ops.info(`${what}: certificate loaded`, { cert: cert.file, subject: cert.subject, expires: cert.expires });
  if (cert.expired) {
    ops.warn(`${what}: the certificate has expired; peers that verify it will refuse to connect. Renew it and send SIGHUP`, { cert: cert.file, expires: cert.expires });
  }
  if ((cert.keyMode & 0o077) !== 0) {
    ops.warn(`${what}: the private key can be read by other users (PostgreSQL refuses such a key file); run chmod 600 on it`, { key: cert.keyFile, mode: cert.keyMode.toString(8).padStart(4, '0') });
  }
}

/**
 * SIGHUP: read the certificate, key and CA files again. New handshakes use them; sessions already
 * encrypted keep theirs. A failed reload keeps the previous certificates.
 */
export function reloadTls(tls: TlsSetup, ops: OpsLog): void {
  if (tls.client !== null) {
    try {
      reportCert(ops, 'SIGHUP: TLS for clients reloaded', tls.client.reload());
    } catch (err) {
      ops.error('SIGHUP: cannot reload the TLS certificate for clients; new TLS clients keep getting the previous one. Fix the files and send SIGHUP again', {
        error: (err as Error).message,
      });
    }
  }
  if (tls.upstream !== null && tls.upstream.hasFiles) {
    try {
      tls.upstream.reload();
      ops.info('SIGHUP: TLS files for the upstream reloaded');
      if (tls.upstream.cert !== null) reportCert(ops, 'SIGHUP: TLS client certificate for the upstream', tls.upstream.cert);
    } catch (err) {
      ops.error('SIGHUP: cannot reload the TLS files for the upstream; new upstream connections keep the previous ones. Fix the files and send SIGHUP again', {
        error: (err as Error).message,
      });
    }
  }
}

/** Listen for clients, or say why not and exit: nothing can be served. */
async function listenOrExit(listen: () => Promise<net.AddressInfo>, address: HostPort, ops: OpsLog): Promise<net.AddressInfo> {
  try {
    return await listen();
  } catch (err) {
    ops.error('cannot listen', { listen: formatHostPort(address), error: (err as Error).message });
    process.exit(1);
  }
}

/** The admin server when --admin asks for one (in the process that listens: the only one, or the primary), or exit if it cannot bind. */
async function startAdmin(cfg: Config, ops: OpsLog, source: AdminSource): Promise<AdminServer | null> {
  const address = cfg.admin.address;
  if (address === null) return null;
  const admin = new AdminServer(source, ops, { address, token: cfg.admin.token, version: VERSION });
  try {
    const a = await admin.listen();
    ops.info('admin server listening', { admin: `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/`, token: cfg.admin.token !== '' });
  } catch (err) {
    ops.error('cannot listen for the admin server; pick a free --admin address or turn it off', {
      admin: `${address.host}:${address.port}`,
      error: (err as Error).message,
    });
    process.exit(1);
  }
  return admin;
}

/** With --processes N, this process is one of the primary's serving processes (its link), else null. */
function servingProcessLink(): WorkerLink | null {
  const index = process.env[PROCESS_INDEX_ENV];
  if (index === undefined || process.send === undefined) return null;
  return new WorkerLink(Number(index), process as unknown as Channel);
}

/** Each line of a serving process says which one it is. */
function taggedOps(ops: OpsLog, index: number): OpsLog {
  return {
    info: (m, f) => ops.info(m, { process: index, ...f }),
    warn: (m, f) => ops.warn(m, { process: index, ...f }),
    error: (m, f) => ops.error(m, { process: index, ...f }),
  };
}

async function run(cfg: Config, tls: TlsSetup, argv: string[]): Promise<void> {
  const link = servingProcessLink();
  if (link === null && cfg.processes > 1) return runPrimary(cfg);
  const ops = link === null ? streamOpsLog() : taggedOps(streamOpsLog(), link.index);
  // Node opens its inspector on 127.0.0.1:9229 at SIGUSR1 unless the signal has a listener: any
  // local user could then run code inside the proxy, with its sessions and secrets.
  process.on('SIGUSR1', () => ops.warn('SIGUSR1 ignored: the Node inspector stays closed in pgscribe (send SIGUSR2 for the stats line)'));
  let logger: ClientLogger;
  try {
    logger = createLogger(cfg, ops, link === null ? null : LOG_PIPE_FD);
  } catch (err) {
    ops.error('cannot open the query log', { log: cfg.log.path, error: (err as Error).message });
    process.exit(1);
  }
  // The health checks start first: the catalog and change-stream connections go to the primary.
  const late: { server: Server | null; cache: CacheContext | null } = { server: null, cache: null };
  const upstreams = createUpstreams(cfg, ops, tls, { cache: () => late.cache, server: () => late.server });
  upstreams?.start();
  // pgscribe's own connections go to the primary; during a gap without one, to the last one
  // (its catalog connection then fails and retries), never to a guess among the others.
  const primary = () => upstreams?.primary ?? upstreams?.lastPrimary ?? cfg.upstreams[0]!;
  // The first round of checks (at most health-timeout-ms), so that the start-up's own
  // connections (the cache-invalidation auto check) go to the primary.
  if (upstreams !== null) await upstreams.whenTarget(cfg.health.timeoutMs + 100, false);
  const cache = createCacheContext(cfg, ops, tls, await resolveInvalidation(cfg, ops, tls, primary), link, primary);
  late.cache = cache;
  // With --processes N each serving process keeps its own, and the primary's admin server sums them.
  const insight = cfg.admin.address === null ? null : new Insight(insightOptions(cfg));
  const server = new Server(cfg, logger, ops, cache, tls, insight, link, upstreams);
  late.server = server;
  if (logger.enabled) server.systemIds = systemIdsOf(cfg, tls.upstream, ops);
  const redis = cfg.redis.address;
  // Before the listening line: whoever reads it may send SIGUSR2 at once (its default kills).
  const printStats = () => ops.info('stats', statsLine(server));
  process.on('SIGUSR2', printStats);
  const fields = {
    upstream: cfg.upstreams.map(formatHostPort).join(','),
    log: cfg.log.path,
    cache: cfg.cache.enabled,
    singleflight: cfg.cache.singleflight,
    workers: cache === null ? undefined : cfg.cache.workers,
    cache_mode: cache === null ? undefined : cacheMode(cfg),
    cache_invalidation: cache === null || !cfg.cache.enabled ? undefined : cache.changes ? 'wal' : 'ttl',
    redis: redis === null ? undefined : formatHostPort(redis),
    tls: tls.client === null ? undefined : clientTlsMode(cfg.tls.client) + (tls.client.verifyClients ? '+client-cert' : ''),
    upstream_tls: tls.upstream === null ? undefined : cfg.tls.upstream.mode,
    version: VERSION,
  };
  if (link === null) {
    const addr = await listenOrExit(() => server.listen(), cfg.listen, ops);
    ops.info('listening', { listen: `${addr.address}:${addr.port}`, ...fields });
    const readOnly = cfg.replicas.listen;
    if (readOnly !== null) {
      const at = await listenOrExit(() => server.listenReplicas(readOnly), readOnly, ops);
      ops.info('read-only listener: its sessions go to the standby with the fewest sessions', { listen_replicas: `${at.address}:${at.port}`, max_replica_lag_ms: cfg.replicas.maxLagMs, replica_fallback: cfg.replicas.fallback });
    }
  } else {
    ops.info('serving process ready: the primary hands it connections', { pid: process.pid, ...fields });
  }
  if (cache?.catalogs) void cache.catalogs.check(cfg.catalog.database);
  if (tls.client !== null) reportCert(ops, 'TLS for clients', tls.client.cert);
  if (tls.upstream?.cert) reportCert(ops, 'TLS client certificate for the upstream', tls.upstream.cert);
  // A serving process answers the primary's admin server over IPC instead.
  const admin = link === null && insight !== null ? await startAdmin(cfg, ops, new LocalSource(server, insight)) : null;

  // With --processes N the primary asks for every process's line at once, then prints the total.
  if (cfg.statsIntervalMs > 0 && link === null) setInterval(printStats, cfg.statsIntervalMs).unref();

  // SIGHUP, or the primary's word with --processes N: the settings, the log file, the certificates.
  const reloadAll = () => {
    reloadSettings(argv, { cfg, ops, server, upstreams, logger, cache });
    reloadTls(tls, ops);
  };
  const reopen = () => {
    ops.info('SIGHUP: reopening the query log', { log: cfg.log.path });
    logger.reopen();
    reloadAll();
  };
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      ops.warn(`${signal} again while shutting down; still waiting for sessions`, { sessions: server.clients.size });
      return;
    }
    stopping = true;
    link?.draining();
    ops.info(`${signal}: shutting down`, { sessions: server.clients.size, grace_ms: cfg.limits.shutdownGraceMs });
    let cacheCounters: Record<string, number> = {};
    server
      .shutdown(cfg.limits.shutdownGraceMs)
      .then(async () => {
        await admin?.close();
        upstreams?.stop();
        if (cache !== null) {
          cache.catalogs?.close();
          cacheCounters = cacheFields(await cache.layer.close());
        }
        await logger.close();
      })
      .then(async () => {
        ops.info('shutdown complete', { query_log_lines: logger.lines, ...cacheCounters });
        await link?.bye(logger.lines);
        process.exit(0);
      })
      .catch((err: Error) => {
        ops.error('shutdown failed', { error: err.message });
        logger.flushSync();
        process.exit(1);
      });
  };
  if (link === null) {
    process.on('SIGHUP', reopen);
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  } else {
    // The primary relays SIGHUP, SIGINT and SIGTERM; a terminal's signal to the whole group is its to act on.
    process.on('SIGHUP', () => {});
    process.on('SIGINT', () => {});
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('disconnect', () => {
      // The primary is gone: nobody writes the log or hands out connections any more.
      ops.error('the primary process is gone; shutting down this serving process');
      stop('disconnect');
      setTimeout(() => process.exit(1), cfg.limits.shutdownGraceMs + 5000).unref();
    });
    link.serve({
      connection: (sock, id) => server.adopt(sock, id),
      cancel: (pid, secret, from) => server.keys.cancelOwn(pid, secret, from),
      invalidate: (db, tables, done) => {
        if (cache === null) return done();
        (cache.layer as ProcessCoherentLayer).invalidateForPeer(db, tables);
        // wal mode: what the commit's triggers and cascades wrote reaches this process through its
        // own stream; the ack waits until that stream has passed the server's WAL position now,
        // as the writer's own hold does. A whole-database write may be DDL: the catalog is read
        // again first, so that nothing is cached here under the old catalog.
        const held = () => {
          if (!cache.changes?.hold(db, done)) done();
        };
        const reload = tables === null ? cache.catalogs?.of(db)?.refresh() : undefined;
        if (reload === undefined) held();
        else reload.then(held, held);
      },
      reload: reloadAll,
      stats: () => {
        const line = statsLine(server);
        ops.info('stats', line);
        return line;
      },
      admin: (q) => {
        switch (q) {
          case 'readings':
            return readingsOf(server);
          case 'digests':
            return insight?.digestPart() ?? { records: [], evictions: 0 };
          case 'tables':
            return insight?.tablePart() ?? { records: [], evictions: 0 };
          case 'flush':
            if (cache?.cache) cache.layer.flush();
            return cache?.cache === true;
          case 'upstreams':
            return upstreams?.views(server.sessionsByNode()) ?? null;
        }
      },
      stop,
    });
  }
  process.on('uncaughtException', (err) => {
    // A bug, not bad input: say so loudly, keep what the log holds, and exit non-zero.
    ops.error('internal error; exiting', { error: err.stack ?? err.message });
    logger.flushSync();
    process.exit(70);
  });
}

/**
 * --processes N: this process is the primary (processes/primary.ts). It serves no session: it
 * starts the serving processes, listens, hands out the connections, and writes the query log.
 */
async function runPrimary(cfg: Config): Promise<void> {
  const ops = streamOpsLog();
  process.on('SIGUSR1', () => ops.warn('SIGUSR1 ignored: the Node inspector stays closed in pgscribe (send SIGUSR2 for the stats line)'));
  let sink: FileSink | StdoutSink | null = null;
  try {
    if (cfg.log.path !== 'none') sink = createSink(cfg, ops, null);
  } catch (err) {
    ops.error('cannot open the query log', { log: cfg.log.path, error: (err as Error).message });
    process.exit(1);
  }
  const primary = new Primary({ cfg, ops, sink, script: process.argv[1]!, argv: process.argv.slice(2) });
  process.on('SIGUSR2', () => primary.printStats());
  if (cfg.statsIntervalMs > 0) setInterval(() => primary.printStats(), cfg.statsIntervalMs).unref();
  try {
    await primary.start();
  } catch (err) {
    ops.error('a serving process failed to start; see its lines above', { error: (err as Error).message });
    process.exit(1);
  }
  const addr = await listenOrExit(() => primary.listen(), cfg.listen, ops);
  ops.info('listening', { listen: `${addr.address}:${addr.port}`, upstream: cfg.upstreams.map(formatHostPort).join(','), log: cfg.log.path, processes: cfg.processes, version: VERSION });
  const admin = await startAdmin(cfg, ops, new ProcessesSource(primary, cfg, () => sink?.bufferedBytes ?? 0));
  process.on('SIGHUP', () => {
    // The primary's own settings (the session limits are counted here); each process reloads its own.
    reloadSettings(process.argv.slice(2), { cfg, ops, server: primary, upstreams: null, logger: null, cache: null });
    primary.reload();
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      ops.warn(`${signal} again while shutting down; still waiting for the serving processes`);
      return;
    }
    stopping = true;
    ops.info(`${signal}: shutting down every serving process`, { processes: cfg.processes, grace_ms: cfg.limits.shutdownGraceMs });
    primary
      .stop(signal)
      .then(async (counts) => {
        await admin?.close();
        return counts;
      })
      .then(({ handed, written }) => {
        // The processes' own counts, summed, and what reached the file: equal unless one died mid-line.
        ops.info('shutdown complete', { query_log_lines: handed, query_log_lines_written: written });
        process.exit(0);
      })
      .catch((err: Error) => {
        ops.error('shutdown failed', { error: err.message });
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('uncaughtException', (err) => {
    ops.error('internal error in the primary; exiting (the serving processes follow)', { error: err.stack ?? err.message });
    sink?.flushSync();
    process.exit(70);
  });
}

export function main(argv: string[]): void {
  // A subcommand of the same bin (docs/replay.md): it shares nothing with the proxy's settings.
  if (argv[0] === 'replay') {
    void runReplay(argv.slice(1)).then((status) => {
      process.exitCode = status;
    });
    return;
  }
  let cmd: Command;
  let tls: TlsSetup = { client: null, upstream: null };
  try {
    // The same reading and checks as a reload (SIGHUP): --check answers what a reload would.
    ({ cmd, tls } = readSettings(argv));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`pgscribe: invalid setting ${err.message}\nTry 'pgscribe --help'.\n`);
      process.exit(1);
    }
    throw err;
  }
  switch (cmd.kind) {
    case 'help':
      process.stdout.write(helpText(VERSION));
      return;
    case 'version':
      process.stdout.write(`pgscribe ${VERSION}\n`);
      return;
    case 'check': {
      process.stdout.write(JSON.stringify(describe(cmd.config), null, 2) + '\n');
      // Not a setting, so not in the JSON (which reads back as a config file): said beside it.
      const mode = cacheMode(cmd.config);
      if (mode !== 'off') process.stderr.write(`pgscribe: cache mode: ${mode}\n`);
      const inv = invalidationMode(cmd.config);
      if (inv !== null) process.stderr.write(`pgscribe: cache invalidation: ${inv}\n`);
      return;
    }
    case 'run':
      void run(cmd.config, tls, argv);
  }
}

if (require.main === module) main(process.argv.slice(2));
