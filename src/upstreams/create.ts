/**
 * Wiring several upstream nodes into a running pgscribe: the node set with its health checks
 * (upstream-set.ts, health-check.ts), and what a failover or a switchover does to the cache and
 * to the sessions. One upstream: none of it (null).
 */
import type { CacheContext } from '../cache/session';
import { formatHostPort, type Config } from '../config';
import type { OpsLog } from '../log/ops';
import type { Server } from '../server';
import type { TlsSetup } from '../tls';
import { ownLogin } from '../pg/own-login';
import { checkNode } from './health-check';
import { probeNode } from './startup-probe';
import { UpstreamSet, type HealthOptions, type NodeCheck } from './upstream-set';

/** The health settings of the node set (at start, and again after a reload). */
export function healthOptionsOf(cfg: Config): HealthOptions {
  return {
    intervalMs: cfg.health.intervalMs,
    timeoutMs: cfg.health.timeoutMs,
    failures: cfg.health.failures,
    maxReplicaLagMs: cfg.replicas.listen === null ? null : cfg.replicas.maxLagMs,
    rolesFromSessions: cfg.catalog.user === '',
  };
}

/**
 * A node's health check: with catalog-user a login that asks pg_is_in_recovery() and the lag
 * (health-check.ts); without, a startup that stops at the password request (startup-probe.ts).
 */
function nodeCheck(cfg: Config, tls: TlsSetup): NodeCheck {
  if (cfg.catalog.user === '') {
    const probe = { user: cfg.health.user, database: cfg.catalog.database, tls: tls.upstream };
    return (node, timeoutMs) => probeNode(probe, node, timeoutMs);
  }
  const login = ownLogin(cfg, tls.upstream);
  return (node, timeoutMs) => checkNode(login, cfg.catalog.database, node, timeoutMs);
}

/**
 * With several --upstream nodes: their health checks and the choice of the primary. A new
 * primary drops the cache (it may lack commits the old one had); a node that left the primary
 * role gets its sessions closed (57P01), before their next write fails with 25006.
 */
export function createUpstreams(cfg: Config, ops: OpsLog, tls: TlsSetup, on: { cache: () => CacheContext | null; server: () => Server | null }): UpstreamSet | null {
  if (cfg.upstreams.length < 2) return null;
  const set: UpstreamSet = new UpstreamSet(
    cfg.upstreams,
    healthOptionsOf(cfg),
    nodeCheck(cfg, tls),
    ops,
    {
      primaryChanged: (from, to) => {
        const cache = on.cache();
        if (from === null || cache === null) return;
        // The catalog connections lost with the old primary connect to the new one now.
        cache.catalogs?.retryNow();
        if (!cache.cache) return;
        cache.layer.flush();
        ops.warn('upstream primary changed: every cached answer dropped (the new primary may lack commits the old one had)', { previous: formatHostPort(from), primary: formatHostPort(to) });
      },
      demoted: (node, primary) => {
        const closed = on.server()?.closeSessionsOn(node, primary) ?? 0;
        ops.warn('upstream node left the primary role (it is in recovery): its sessions closed with 57P01 so that they reconnect to the primary', {
          node: formatHostPort(node),
          primary: primary === null ? 'none yet' : formatHostPort(primary),
          sessions: closed,
        });
      },
    },
  );
  return set;
}

