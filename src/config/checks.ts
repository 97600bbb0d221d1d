/**
 * Checks for --check and start-up that look across settings or at the file system. Each throws a
 * ConfigError naming the key at fault.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from './config-error';
import { formatHostPort } from './parsers';
import { clientTlsMode, type Config, type TlsConfig } from './types';

/** Hosts that only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * The TLS settings that only make sense together. Whether the files hold what they should is
 * checked when they are loaded (src/tls.ts).
 */
function checkTlsSettings({ client, upstream }: TlsConfig): void {
  if ((client.cert === '') !== (client.key === '')) {
    const [set, missing] = client.cert === '' ? ['tls-key', 'tls-cert'] : ['tls-cert', 'tls-key'];
    throw new ConfigError(missing, `${set} is set but ${missing} is not: TLS for clients needs both a certificate and its key`);
  }
  const mode = clientTlsMode(client);
  if (mode !== 'disable' && client.cert === '') {
    throw new ConfigError('tls-mode', `${mode} needs tls-cert and tls-key (the certificate and key pgscribe shows to clients)`);
  }
  if (client.ca !== '' && client.cert === '') {
    throw new ConfigError('tls-ca', 'client certificates are checked only on TLS connections: tls-ca needs tls-cert and tls-key');
  }
  if ((upstream.cert === '') !== (upstream.key === '')) {
    const [set, missing] = upstream.cert === '' ? ['upstream-tls-key', 'upstream-tls-cert'] : ['upstream-tls-cert', 'upstream-tls-key'];
    throw new ConfigError(missing, `${set} is set but ${missing} is not: a client certificate for the upstream needs both`);
  }
  if (upstream.mode === 'disable') {
    const stray = upstream.ca !== '' ? 'upstream-tls-ca' : upstream.cert !== '' ? 'upstream-tls-cert' : null;
    if (stray !== null) throw new ConfigError(stray, 'has no effect while upstream-tls is disable: set --upstream-tls prefer, require, verify-ca or verify-full');
  }
  if ((upstream.mode === 'verify-ca' || upstream.mode === 'verify-full') && upstream.ca === '') {
    throw new ConfigError('upstream-tls', `${upstream.mode} needs upstream-tls-ca, the CA certificates to verify the upstream's certificate with (as libpq needs sslrootcert)`);
  }
}

/** The read-only listener needs standbys to send sessions to, and an address of its own. */
function checkReplicas(cfg: Config): void {
  const at = cfg.replicas.listen;
  if (at === null) return;
  if (cfg.upstreams.length < 2) {
    throw new ConfigError('listen-replicas', 'spreads sessions over the standbys among several upstream nodes: list the primary and its standbys in --upstream');
  }
  const anyAddress = (h: string) => h === '0.0.0.0' || h === '::';
  if (at.port !== 0 && at.port === cfg.listen.port && (at.host === cfg.listen.host || anyAddress(at.host) || anyAddress(cfg.listen.host))) {
    throw new ConfigError('listen-replicas', `${formatHostPort(at)} is the listen address: the read-only listener needs an address of its own`);
  }
  if (cfg.catalog.user === '') {
    throw new ConfigError('listen-replicas', "needs each standby's replay lag, which only a login can read: set catalog-user (and catalog-password), pgscribe's own user");
  }
  if (cfg.processes > 1) {
    throw new ConfigError('listen-replicas', 'is not yet served with --processes greater than 1: run one process, or a separate pgscribe for the read-only listener');
  }
}

/**
 * log-replay (docs/replay.md) writes what replay reads: JSON lines, a `done` line per query (they
 * pace the replay), and whole sessions. It turns log-completions on rather than refusing a
 * config without it: there is no replayable log without them, so asking for both says nothing
 * more. A log-sample rule with `sql` would keep only some of a session's lines, which cannot be
 * replayed: refused.
 */
function checkLogReplay(cfg: Config): void {
  const log = cfg.log;
  if (!log.replay) return;
  if (log.format !== 'json') {
    throw new ConfigError('log-replay', `writes the replayable log as JSON lines, and log-format is ${log.format}: set --log-format json`);
  }
  const i = log.sample.findIndex((r) => r.sql !== undefined);
  if (i >= 0) {
    throw new ConfigError('log-sample', `rule ${i + 1} has sql, which would keep only some of a session's lines; a replay needs sessions whole: with log-replay, sample by user, database and application_name only`);
  }
  log.completions = true;
}

/** A shorter secret is guessable offline from one entry; 32 characters of base64 are 192 bits. */
const MIN_REDIS_KEY_CHARS = 32;

/**
 * Workers need the cache or singleflight; Redis needs the cache; the admin server beyond
 * loopback needs a token; the TLS settings must fit together; log-replay needs JSON (and turns
 * log-completions on in cfg); the query log must be writable (its directory must exist).
 */
export function checkEnvironment(cfg: Config): void {
  const { cache, redis, admin } = cfg;
  if (cache.workers > 0 && !cache.enabled && !cache.singleflight) {
    throw new ConfigError('workers', `${cache.workers} worker threads would hold nothing: they need --cache or --singleflight`);
  }
  if (redis.address !== null && !cache.enabled) {
    throw new ConfigError('redis', 'the shared cache in Redis is a second level under the result cache: it needs --cache');
  }
  if (redis.address !== null && redis.key.length < MIN_REDIS_KEY_CHARS) {
    throw new ConfigError(
      'redis-key',
      `${redis.key === '' ? 'is not set' : `has ${redis.key.length} characters`}: every shared cache entry is signed with this secret, so that whoever answers pgscribe's Redis reads cannot forge an answer. Set PGSCRIBE_REDIS_KEY (or redis-key in the config file) to at least ${MIN_REDIS_KEY_CHARS} random characters, the same in every instance, e.g. from: openssl rand -base64 32`,
    );
  }
  if (redis.tls === 'verify-full' && redis.tlsCa === '') {
    throw new ConfigError('redis-tls', 'verify-full needs redis-tls-ca, the CA certificates to verify the Redis certificate with');
  }
  if (redis.singleflight && redis.address === null) {
    throw new ConfigError('redis-singleflight', 'elects the leader with a Redis lock: it needs --redis HOST:PORT');
  }
  if (admin.address !== null && !isLoopback(admin.address.host) && admin.token === '') {
    throw new ConfigError(
      'admin',
      `binding the admin server to ${admin.address.host} would let anyone who can reach it read every query's text and flush the cache: set --admin-token, or bind to 127.0.0.1`,
    );
  }
  checkReplicas(cfg);
  if (cache.invalidation === 'wal' && (!cache.enabled || cfg.catalog.user === '')) {
    throw new ConfigError('cache-invalidation', `wal reads PostgreSQL's change stream with pgscribe's own connection: it needs --cache and catalog-user${cache.enabled ? '' : ' (--cache is off)'}${cfg.catalog.user === '' ? ' (catalog-user is not set)' : ''}`);
  }
  if (cache.walPublication !== '' && cache.invalidation === 'ttl') {
    throw new ConfigError('cache-wal-publication', 'has no effect while cache-invalidation is ttl: set --cache-invalidation wal or auto');
  }
  checkTlsSettings(cfg.tls);
  checkLogReplay(cfg);
  const log = cfg.log.path;
  if (cfg.log.rotateBytes > 0 && (log === '-' || log === 'none')) {
    throw new ConfigError('log-rotate-bytes', `rotates the query log file, and --log ${log} writes ${log === '-' ? 'to stdout, which has no file to rotate' : 'no query log'}: set --log FILE, or leave log-rotate-bytes at 0`);
  }
  if (log === '-' || log === 'none') return;
  const dir = path.dirname(path.resolve(log));
  try {
    if (!fs.statSync(dir).isDirectory()) throw new Error('not a directory');
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (err) {
    throw new ConfigError('log', `directory ${dir} of the query log is not writable: ${(err as Error).message}`);
  }
  if (fs.existsSync(log)) {
    try {
      fs.accessSync(log, fs.constants.W_OK);
    } catch (err) {
      throw new ConfigError('log', `${log} is not writable: ${(err as Error).message}`);
    }
  }
}
