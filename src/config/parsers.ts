/**
 * Parsers of setting values. Each takes the raw value (a string from the command line, any JSON
 * value from a config file) and the public name to blame, and returns the value or throws a
 * ConfigError naming that key.
 */
import * as os from 'node:os';
import { ConfigError } from './config-error';
import type { ClientTlsMode, HostPort } from './types';

/** Raw value and the key to name in errors -> value. */
export type Parser<T> = (raw: unknown, key: string) => T;

export function str(raw: unknown, key: string): string {
  if (typeof raw !== 'string') throw new ConfigError(key, `expected a string, got ${JSON.stringify(raw)}`);
  return raw;
}

export function parseHostPort(raw: unknown, key: string): HostPort {
  const s = str(raw, key).trim();
  const m = /^(?:\[([^\]]+)\]|([^:\s]*)):(\d+)$/.exec(s);
  if (!m) throw new ConfigError(key, `expected HOST:PORT (e.g. 127.0.0.1:6000 or [::1]:6000), got ${JSON.stringify(raw)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(key, `port ${port} is out of range 0-65535`);
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

/** HOST:PORT as the settings read it back ([::1]:5432 for an IPv6 host). */
export function formatHostPort(a: HostPort): string {
  return `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}

/** Most upstream nodes --upstream takes: beyond this a typo, not a cluster. */
export const MAX_UPSTREAMS = 16;

/**
 * --upstream: one HOST:PORT, or several separated by commas (libpq's multi-host form), each node
 * once. With several, pgscribe sends sessions to the one that is not in recovery (src/upstreams/).
 */
export function parseHostPortList(raw: unknown, key: string): HostPort[] {
  const items = Array.isArray(raw) ? raw : str(raw, key).split(',');
  if (items.length === 0 || items.length > MAX_UPSTREAMS) throw new ConfigError(key, `expected 1 to ${MAX_UPSTREAMS} HOST:PORT separated by commas, got ${items.length}`);
  const out: HostPort[] = [];
  for (const item of items) {
    const hp = parseHostPort(item, key);
    if (out.some((x) => x.host === hp.host && x.port === hp.port)) throw new ConfigError(key, `${hp.host}:${hp.port} is listed twice`);
    out.push(hp);
  }
  return out;
}

/** An integer in min..max (a number, or a string of digits). */
export function int(min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> {
  return (raw, key) => {
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(n)) throw new ConfigError(key, `expected an integer, got ${JSON.stringify(raw)}`);
    if (n < min || n > max) throw new ConfigError(key, `${n} is out of range ${min}-${max}`);
    return n;
  };
}

/** 0 (off), or an integer in min..max. */
export function zeroOrInt(min: number, max: number): Parser<number> {
  return (raw, key) => {
    const n = int(0, Number.MAX_SAFE_INTEGER)(raw, key);
    if (n !== 0 && (n < min || n > max)) throw new ConfigError(key, `${n} is out of range: 0 (off) or ${min}-${max}`);
    return n;
  };
}

/** Most processes --processes starts: beyond this a typo, not a machine. */
export const MAX_PROCESSES = 256;

/** --processes: N, or 'auto' for one per core (os.availableParallelism()). */
export function processCount(raw: unknown, key: string): number {
  if (raw === 'auto') return Math.min(MAX_PROCESSES, os.availableParallelism());
  return int(1, MAX_PROCESSES)(raw, key);
}

export function bool(raw: unknown, key: string): boolean {
  if (raw === true || raw === 'true') return true;
  if (raw === false || raw === 'false') return false;
  throw new ConfigError(key, `expected true or false, got ${JSON.stringify(raw)}`);
}

export function oneOf<T extends string>(...values: T[]): Parser<T> {
  return (raw, key) => {
    const s = str(raw, key);
    if (!(values as string[]).includes(s)) throw new ConfigError(key, `expected one of ${values.join(', ')}, got ${JSON.stringify(s)}`);
    return s as T;
  };
}

/** `admin`: "off", PORT (on 127.0.0.1), or HOST:PORT. A bare ":PORT" also means loopback. */
export function adminAddress(raw: unknown, key: string): HostPort | null {
  if (raw === null || raw === 'off' || raw === '') return null;
  if (typeof raw === 'number' || (typeof raw === 'string' && /^\s*\d+\s*$/.test(raw))) {
    return { host: '127.0.0.1', port: int(0, 65535)(raw, key) };
  }
  const s = str(raw, key).trim();
  return s.startsWith(':') ? { host: '127.0.0.1', port: parseHostPort('x' + s, key).port } : parseHostPort(s, key);
}

/** `redis`: HOST:PORT, or "off" (the default). */
export function redisAddress(raw: unknown, key: string): HostPort | null {
  if (raw === null || raw === 'off' || raw === '') return null;
  const a = parseHostPort(raw, key);
  if (a.port === 0) throw new ConfigError(key, 'port 0 is not an address to connect to');
  return a;
}

/** `listen-replicas`: HOST:PORT, or "off" (the default). */
export function optionalListen(raw: unknown, key: string): HostPort | null {
  if (raw === null || raw === 'off' || raw === '') return null;
  return parseHostPort(raw, key);
}

/** A file path; '' means none. */
export function filePath(raw: unknown, key: string): string {
  return str(raw, key);
}

/** `tls-mode`; JSON null (as in a file) leaves it to be derived from tls-cert and tls-key. */
export function tlsMode(raw: unknown, key: string): ClientTlsMode | null {
  if (raw === null) return null;
  return oneOf<ClientTlsMode>('disable', 'allow', 'require')(raw, key);
}

export function nonEmpty(raw: unknown, key: string): string {
  const s = str(raw, key);
  if (s === '') throw new ConfigError(key, 'must not be empty');
  return s;
}
