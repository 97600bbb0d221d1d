/**
 * pgscribe's own login on the upstream (catalog-user): who its own connections log in as, and
 * where. Used by the catalogs and change streams (src/cache/), the health checks of several
 * upstreams (src/upstreams/) and the cache-invalidation `auto` check (main.ts).
 */
import type { Config, HostPort } from '../config';
import type { UpstreamTls } from '../tls';
import { PgConnection } from './connection';

export interface OwnLogin {
  /** Read at each connect: with several upstreams, the primary of the moment. */
  readonly upstream: HostPort;
  user: string;
  password: string;
  connectTimeoutMs: number;
  tls: UpstreamTls | null;
}

/**
 * The login the settings name; with several upstreams `primary()` says where (read at each
 * connection, so that own connections follow a failover).
 */
export function ownLogin(cfg: Config, tls: UpstreamTls | null, primary: () => HostPort = () => cfg.upstreams[0]!): OwnLogin {
  return {
    get upstream() {
      return primary();
    },
    user: cfg.catalog.user,
    password: cfg.catalog.password,
    connectTimeoutMs: cfg.limits.connectTimeoutMs,
    tls,
  };
}

/** The login plus more settings, keeping its `upstream` a getter (a spread would freeze it). */
export function withLogin<T extends object>(login: OwnLogin, more: T): OwnLogin & T {
  const o = { ...more } as OwnLogin & T;
  Object.defineProperties(o, Object.getOwnPropertyDescriptors(login));
  return o;
}

/** pgscribe's own connection to `database` (application_name 'pgscribe catalog'). */
export function connectOwn(s: OwnLogin, database: string, queryTimeoutMs?: number): Promise<PgConnection> {
  return PgConnection.connect({
    host: s.upstream.host,
    port: s.upstream.port,
    user: s.user,
    password: s.password,
    database,
    applicationName: 'pgscribe catalog',
    connectTimeoutMs: s.connectTimeoutMs,
    tls: s.tls,
    ...(queryTimeoutMs === undefined ? {} : { queryTimeoutMs }),
  });
}
