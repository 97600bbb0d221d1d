/**
 * What the protocol fuzzer sends on one connection: a byte stream made from a seed, and how to
 * cut it into writes. Three kinds, picked by the seed:
 *
 * - startup: a StartupMessage, SSLRequest, GSSENCRequest or CancelRequest, generated or mutated
 *   (lengths, codes, parameters, truncation), alone or two in a row;
 * - session: a valid startup, then a pipeline of frontend messages (every type pgscribe reads or
 *   relays: Q P B D E S H C X F d c f p), some of them mutated (a byte flipped, a length field
 *   changed, cut short, garbage inserted);
 * - garbage: random bytes from the first byte.
 *
 * The same seed gives the same bytes and the same cuts, so a failure replays from the seed.
 */
import { cstr, enc, i16, i32 } from '../../test/harness/wire';
import { prng } from '../../test/harness/prng';

export type Kind = 'startup' | 'session' | 'garbage';

export interface FuzzCase {
  seed: number;
  kind: Kind;
  /** The whole stream, and where it is cut into writes. */
  bytes: Buffer;
  cuts: number[];
  /** Half-close after the last write (the peer must then close within a bound). */
  eof: boolean;
  /** A short description, for the report. */
  what: string;
}

type Rand = () => number;

const int = (r: Rand, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)]!;

const SQL = [
  'select 1',
  "select $1::text || 'x'",
  'select g from generate_series(1, 50) g',
  'select * from fuzz_t where id = $1',
  'insert into fuzz_t values ($1, $2)',
  'begin',
  'commit',
  'rollback',
  'select pg_sleep(0.01)',
  "copy (select 1) to stdout",
  'copy fuzz_t from stdin',
  'select 1/0',
  'set search_path = public',
  'listen fuzz',
  '',
  'select ' + 'x'.repeat(3000),
];

function randomBytes(r: Rand, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = int(r, 256);
  return b;
}

function message(r: Rand): Buffer {
  const name = (): string => pick(r, ['', '', 's1', 'p1', 'x'.repeat(int(r, 80))]);
  switch (int(r, 15)) {
    case 0: return enc.query(pick(r, SQL));
    case 1: return enc.parse(name(), pick(r, SQL), int(r, 3) === 0 ? [23, 25] : []);
    case 2: {
      const params = Array.from({ length: int(r, 4) }, () => (int(r, 5) === 0 ? null : String(int(r, 1000))));
      return enc.bind(name(), name(), params, int(r, 3) === 0 ? [int(r, 3)] : [], int(r, 3) === 0 ? [1] : []);
    }
    case 3: return enc.describe(pick(r, ['S', 'P'] as const), name());
    case 4: return enc.execute(name(), int(r, 3) === 0 ? int(r, 5) : 0);
    case 5: return enc.sync();
    case 6: return enc.flush();
    case 7: return enc.close(pick(r, ['S', 'P'] as const), name());
    case 8: return enc.terminate();
    case 9: return enc.functionCall(pick(r, [1317, 2, 0, 1298]), [String(int(r, 100))]);
    case 10: return enc.copyData(randomBytes(r, int(r, 40)));
    case 11: return enc.copyDone();
    case 12: return enc.raw('f', cstr('fuzz'));
    case 13: return enc.raw('p', cstr('password'));
    default: return enc.raw(String.fromCharCode(int(r, 256)), randomBytes(r, int(r, 20)));
  }
}

function startupPacket(r: Rand, user: string): Buffer {
  switch (int(r, 6)) {
    case 0: return enc.sslRequest();
    case 1: return enc.gssencRequest();
    case 2: return enc.cancel(int(r, 1 << 30), int(r, 1 << 30));
    case 3: {
      const params: Record<string, string> = {};
      for (const k of ['user', 'database', 'application_name', 'options', 'replication', '_pq_.x', 'client_encoding']) {
        if (int(r, 3) === 0) params[k] = pick(r, [user, '', 'postgres', 'x'.repeat(int(r, 300)), 'database', 'true', '-c work_mem=1']);
      }
      return enc.startup(params, pick(r, [0x00030000, 0x00030000, 0x00030001, 0x00020000, 0x00040000, 80877103, 80877102, int(r, 2 ** 31)]));
    }
    case 4: return Buffer.concat([i32(int(r, 20)), randomBytes(r, int(r, 20))]);
    default: return enc.startup({ user, database: 'postgres' });
  }
}

/** A mutation of buf: a flipped byte, a length word changed, cut short, or bytes inserted. */
function mutate(r: Rand, buf: Buffer): Buffer {
  if (buf.length === 0) return buf;
  const b = Buffer.from(buf);
  switch (int(r, 5)) {
    case 0: b[int(r, b.length)] = int(r, 256); return b;
    case 1: {
      // The length word of a typed message is at 1, of a startup packet at 0.
      const at = b.length >= 5 && b[0]! >= 0x41 ? 1 : 0;
      if (b.length >= at + 4) b.writeInt32BE(pick(r, [0, 3, 4, 5, -1, 0x7fffffff, b.length + int(r, 100), int(r, 1 << 20)]), at);
      return b;
    }
    case 2: return b.subarray(0, int(r, b.length));
    case 3: {
      const at = int(r, b.length + 1);
      return Buffer.concat([b.subarray(0, at), randomBytes(r, 1 + int(r, 12)), b.subarray(at)]);
    }
    default: return Buffer.concat([b, i16(int(r, 65536) - 32768)]);
  }
}

export function fuzzCase(seed: number, user: string): FuzzCase {
  const r = prng(seed);
  const roll = r();
  let kind: Kind;
  let parts: Buffer[];
  let what: string;
  if (roll < 0.35) {
    kind = 'startup';
    parts = [startupPacket(r, user)];
    if (int(r, 3) === 0) parts.push(startupPacket(r, user));
    parts = parts.map((p) => (int(r, 2) === 0 ? mutate(r, p) : p));
    what = `startup: ${parts.map((p) => p.subarray(0, 8).toString('hex')).join(' + ')}`;
  } else if (roll < 0.9) {
    kind = 'session';
    const n = 1 + int(r, 12);
    const msgs = Array.from({ length: n }, () => message(r));
    const mutated = msgs.map((m) => (int(r, 4) === 0 ? mutate(r, m) : m));
    parts = [enc.startup({ user, database: 'postgres' }), ...mutated];
    what = `session: ${mutated.map((m) => (m.length > 0 ? String.fromCharCode(m[0]!) : '-')).join('')}`;
  } else {
    kind = 'garbage';
    parts = [randomBytes(r, 1 + int(r, 200))];
    what = 'garbage';
  }
  const bytes = Buffer.concat(parts);
  const cuts: number[] = [];
  const nCuts = int(r, 4);
  for (let i = 0; i < nCuts; i++) cuts.push(1 + int(r, Math.max(1, bytes.length - 1)));
  cuts.sort((a, b) => a - b);
  return { seed, kind, bytes, cuts, eof: int(r, 4) !== 0, what };
}
