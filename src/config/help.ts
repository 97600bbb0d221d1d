/** What pgscribe prints about its settings: --help, and the effective settings for --check. */
import { NAMES, SETTINGS, valueAt } from './settings';
import { clientTlsMode, type Config, type HostPort } from './types';
import { formatHostPort } from './parsers';

/** A setting value as shown by --help and --check: HOST:PORT for an address (IPv6 bracketed). */
function shown(v: unknown): unknown {
  if (Array.isArray(v) && v.length > 0 && v.every(isHostPort)) return v.map(formatHostPort).join(',');
  if (v === null || Array.isArray(v) || typeof v !== 'object') return v;
  return formatHostPort(v as HostPort);
}

function isHostPort(v: unknown): boolean {
  return typeof v === 'object' && v !== null && typeof (v as { host?: unknown }).host === 'string' && typeof (v as { port?: unknown }).port === 'number';
}


export function helpText(version: string): string {
  const lines = [
    `pgscribe ${version}: a PostgreSQL proxy that logs every query, one per line`,
    '',
    'Usage: pgscribe [--config FILE] [--NAME VALUE ...] [--check]',
    '',
    'Settings (also keys of the JSON object in --config FILE; flags win):',
  ];
  for (const n of NAMES) {
    const s = SETTINGS[n];
    const d = shown(s.default);
    // A null default is derived from other settings; the help text says how.
    const def = d === null ? '' : ` (default ${d === '' ? 'none' : typeof d === 'string' ? d : JSON.stringify(d)})`;
    lines.push(`  --${n.padEnd(22)} ${s.help}${def}`);
  }
  lines.push(
    '',
    'Commands:',
    '  --config FILE, -c     read settings from a JSON file',
    '  --check               validate the settings, print them, exit 0 (or 1 naming the bad key)',
    '  --help, -h            this text',
    '  --version, -V         print the version',
    '',
    'Signals: SIGHUP reopens the query log and reloads the TLS certificates and keys; SIGUSR2 prints',
    'a stats line (with cache counters);',
    'SIGTERM/SIGINT shut down gracefully.',
  );
  return lines.join('\n') + '\n';
}

/** The effective settings under their public names, for --check. */
export function describe(cfg: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const n of NAMES) out[n] = shown(valueAt(cfg, SETTINGS[n].path));
  if (cfg.admin.address === null) out['admin'] = 'off';
  if (cfg.replicas.listen === null) out['listen-replicas'] = 'off';
  // A secret is not printed, only whether it is set.
  if (cfg.admin.token !== '') out['admin-token'] = '(set)';
  if (cfg.redis.address === null) out['redis'] = 'off';
  if (cfg.redis.password !== '') out['redis-password'] = '(set)';
  if (cfg.redis.key !== '') out['redis-key'] = '(set)';
  if (cfg.catalog.password !== '') out['catalog-password'] = '(set)';
  out['tls-mode'] = clientTlsMode(cfg.tls.client);
  return out;
}

/**
 * How the cache decides what it may answer, and why (--check and the start-up line say it):
 * with the catalog, what each statement touches comes from PostgreSQL; without it, only what a
 * cache-rules entry allows is cached.
 */
export function cacheMode(cfg: Config): string {
  if (!cfg.cache.enabled && !cfg.cache.singleflight) return 'off';
  if (cfg.catalog.user !== '') return `catalog: what statements touch comes from PostgreSQL's catalog (catalog-user ${cfg.catalog.user})`;
  return 'rules-only: no catalog-user, so only statements a cache-rules entry allows are cached or shared';
}

/**
 * What drops answers whose rows changed outside pgscribe's sight, as it would run (--check and
 * the start-up line); null when the cache is off.
 */
export function invalidationMode(cfg: Config): string | null {
  if (!cfg.cache.enabled) return null;
  const pub = cfg.cache.walPublication === '' ? 'pgscribe_all (created and filled by pgscribe)' : `${cfg.cache.walPublication} (the operator's)`;
  const ttl = 'ttl: writes through pgscribe drop what they change; other changes only when the TTL passes';
  switch (cfg.cache.invalidation) {
    case 'ttl':
      return ttl;
    case 'wal':
      return `wal: PostgreSQL's change stream drops what any committed change touches (publication ${pub}); a database is not served from the cache while its stream is down`;
    case 'auto':
      if (cfg.catalog.user === '') return `${ttl} (auto: no catalog-user, so no change stream)`;
      return `auto: wal (publication ${pub}) if, at start, wal_level is logical, catalog-user ${cfg.catalog.user} has REPLICATION (or is a superuser) and the publication exists or may be created; else ttl, said in one line`;
  }
}
