/**
 * What the hostile Redis (bench/fuzz/redis.ts) does to one of pgscribe's Redis connections: a
 * plan made from a seed (a kind of trouble, how often it strikes, how long the connection lives),
 * the mutations themselves, and the small RESP toolkit the man in the middle needs to cut the
 * real server's stream into replies, read pgscribe's commands and build replies of its own.
 *
 * The kinds, applied to a reply with the plan's rate:
 *
 *   clean             nothing (the connection only ends at the end of its life)
 *   flip              1-3 bytes of the reply flipped
 *   bulk-length       a bulk or array length made wrong by a little
 *   huge-length       the reply replaced by a huge declared length ($2147483647, *1048576, ...)
 *   deep              arrays nested 2 to 1000 deep
 *   unknown-type      a type byte that is not RESP2
 *   resp3             a RESP3 value (null, boolean, double, map, set, push, verbatim, ...)
 *   split             the reply written one byte per write
 *   stall             the reply (and those after it) held back 100 ms to 6 s
 *   trickle           the reply written one byte every 20-300 ms
 *   reorder           replies held in windows of 2-4 and written permuted
 *   extra             a reply nobody asked for before this one (a copy of an earlier one, +OK, :0, ...)
 *   missing           the reply dropped
 *   reset             part of the reply, then a TCP reset
 *   half-close        part of the reply, then FIN
 *   wrong-value       an MGET's entry replaced: copied from another key, random bytes of the same
 *                     length, one byte changed, cut short
 *   wrong-generation  an MGET's generation replaced by one never seen before (another key's with a
 *                     suffix, random) or missing
 *   pubsub-garbage    pushes nobody published: `message` with forged events and random payloads,
 *                     wrong arity, `pmessage`, `subscribe`, nested arrays (on the command
 *                     connection they are replies to no command)
 *
 * Not among them: an entry, or a generation, copied back under its own key from an older reply (a
 * replay of an old state: a stale entry with the generation it was stored under reads as
 * current). That is a Redis forging its own state, which no client of it can tell from the truth;
 * the checksum covers who an entry is for, not when. So a forged generation is never used twice:
 * pgscribe stores the answer of a miss under the generations the lookup read, and a Redis that
 * reports the same forged value again (or an old true one: early versions of wrong-generation
 * did both, and 10-minute runs found 2 and 4 stale reads) has frozen the generation, which no
 * client can tell from the truth either.
 *
 * The same seed gives the same plan and the same decisions for the same sequence of replies;
 * which replies a connection sees depends on timing, so a replay is close, not exact.
 */
import { prng } from '../../test/harness/prng';

export const MITM_KINDS = [
  'clean',
  'flip',
  'bulk-length',
  'huge-length',
  'deep',
  'unknown-type',
  'resp3',
  'split',
  'stall',
  'trickle',
  'reorder',
  'extra',
  'missing',
  'reset',
  'half-close',
  'wrong-value',
  'wrong-generation',
  'pubsub-garbage',
] as const;
export type MitmKind = (typeof MITM_KINDS)[number];

type Rand = () => number;

const int = (r: Rand, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)]!;

export interface MitmPlan {
  seed: number;
  kind: MitmKind;
  /** Chance that a reply is touched. */
  rate: number;
  /** The connection is reset after this long (ms), whatever happened. */
  lifeMs: number;
  /** The plan's own random numbers: every decision on the connection. */
  rand: Rand;
}

/**
 * The kinds a plan picks from: the ones that put a wrong answer within reach (an entry that is
 * not the one asked for) three times as often as the others.
 */
const WEIGHTED: readonly MitmKind[] = [...MITM_KINDS, 'wrong-value', 'wrong-value', 'flip'];

export function mitmPlan(seed: number, only?: MitmKind): MitmPlan {
  const rand = prng(seed);
  const kind = only ?? pick(rand, WEIGHTED);
  const rate = pick(rand, [0.01, 0.03, 0.1, 0.3, 1]);
  const lifeMs = 200 + int(rand, 1300);
  return { seed, kind, rate, lifeMs, rand };
}

// ---- RESP -----------------------------------------------------------------------------------

const CRLF = '\r\n';

/** End (exclusive) of the RESP2 value that starts at `off`, or -1 when it is not all there. */
export function replyEnd(buf: Buffer, off: number): number {
  let need = 1;
  let i = off;
  while (need > 0) {
    if (i >= buf.length) return -1;
    const nl = buf.indexOf(10, i);
    if (nl < 0) return -1;
    const type = buf[i];
    const n = Number(buf.toString('latin1', i + 1, nl - 1));
    i = nl + 1;
    need--;
    if (type === 0x24 && n >= 0) {
      // '$'
      i += n + 2;
      if (i > buf.length) return -1;
    } else if (type === 0x2a && n > 0) {
      // '*'
      need += n;
    }
  }
  return i;
}

/** The items of an array of bulk strings and nulls (a command, an MGET reply); null for any other shape. */
export function bulkArray(b: Buffer): (Buffer | null)[] | null {
  if (b[0] !== 0x2a) return null;
  let nl = b.indexOf(10);
  const n = Number(b.toString('latin1', 1, nl - 1));
  if (!(n >= 0)) return null;
  const out: (Buffer | null)[] = [];
  let i = nl + 1;
  for (let k = 0; k < n; k++) {
    if (b[i] !== 0x24) return null;
    nl = b.indexOf(10, i);
    const len = Number(b.toString('latin1', i + 1, nl - 1));
    i = nl + 1;
    if (len < 0) {
      out.push(null);
      continue;
    }
    out.push(b.subarray(i, i + len));
    i += len + 2;
  }
  return out;
}

export function encodeBulk(v: Buffer | string | null): Buffer {
  if (v === null) return Buffer.from(`$-1${CRLF}`);
  const b = typeof v === 'string' ? Buffer.from(v, 'latin1') : v;
  return Buffer.concat([Buffer.from(`$${b.length}${CRLF}`), b, Buffer.from(CRLF)]);
}

export function encodeArray(items: readonly (Buffer | string | null)[]): Buffer {
  return Buffer.concat([Buffer.from(`*${items.length}${CRLF}`), ...items.map(encodeBulk)]);
}

// ---- mutations ------------------------------------------------------------------------------

/** Replies of other keys and the generations seen so far, for the wrong-value kinds (bounded). */
export class Seen {
  readonly values = new Map<string, Buffer>();
  /** Generations seen, with the key each was read under. */
  readonly gens: [string, string][] = [];

  value(key: string, v: Buffer): void {
    if (this.values.size >= 256) this.values.delete(this.values.keys().next().value!);
    this.values.set(key, Buffer.from(v));
  }

  gen(key: string, g: string): void {
    if (this.gens.length >= 256) this.gens.shift();
    this.gens.push([key, g]);
  }

  private forged = 0;

  /** A generation never seen before that looks like one: another key's with a suffix. */
  newGen(r: Rand, key: string): string {
    const others = this.gens.filter(([k]) => k !== key);
    return `${others.length === 0 ? 'fz' : pick(r, others)[1]}.${(++this.forged).toString(36)}`;
  }

  /**
   * A value stored under another key than `key` (null: none yet). With `like`, one that looks
   * most like it when there is one: the same header and generations, the same last message, so
   * that only the checksum can tell them apart.
   */
  otherValue(r: Rand, key: string, like: Buffer | null): Buffer | null {
    const keys = [...this.values.keys()].filter((k) => k !== key);
    if (keys.length === 0) return null;
    if (like !== null) {
      const look = lookOf(like);
      const same = keys.filter((k) => lookOf(this.values.get(k)!) === look);
      if (same.length > 0) return this.values.get(pick(r, same))!;
    }
    return this.values.get(pick(r, keys))!;
  }
}

/** An entry's header and generations (l2-value.ts's layout) and its last 6 bytes before the checksum. */
function lookOf(v: Buffer): string {
  if (v.length < 27) return '';
  let off = 7;
  for (let i = 0; i < v[6]! && off < v.length; i++) off += 1 + v[off]!;
  return v.toString('latin1', 0, off) + v.toString('latin1', v.length - 22, v.length - 16);
}

function flip(r: Rand, b: Buffer): Buffer {
  const out = Buffer.from(b);
  for (let n = 1 + int(r, 3); n > 0; n--) {
    const i = int(r, out.length);
    out[i] = out[i]! ^ (1 << int(r, 8));
  }
  return out;
}

/** A length in a header line made wrong: the first `$` (or `*`) header's number moved a little. */
function wrongLength(r: Rand, b: Buffer): Buffer {
  const s = b.toString('latin1');
  const at = [...s.matchAll(/[$*](-?\d+)\r\n/g)];
  if (at.length === 0) return flip(r, b);
  const m = pick(r, at);
  const n = Number(m[1]);
  const wrong = pick(r, [n + 1, n - 1, n + 2 + int(r, 10), Math.max(0, n - 2 - int(r, 10)), 0, -2, n * 2 + 1]);
  return Buffer.from(s.slice(0, m.index! + 1) + String(wrong) + s.slice(m.index! + 1 + m[1]!.length), 'latin1');
}

const HUGE = ['$2147483647', '*1048576', '*2147483647', '$536870912', '$9223372036854775807', '*1048577', '$99999999999999999999', '$1000000', '*-7', '$-2', '*99999'];

const RESP3 = [
  '_\r\n',
  '#t\r\n',
  '#f\r\n',
  ',3.14\r\n',
  ',inf\r\n',
  '(12345678901234567890\r\n',
  '=15\r\ntxt:Some string\r\n',
  '%1\r\n+a\r\n:1\r\n',
  '~2\r\n:1\r\n:2\r\n',
  '>3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\ny\r\n',
  '!21\r\nSYNTAX invalid syntax\r\n',
  '|1\r\n+key-popularity\r\n%0\r\n',
  '$?\r\n;4\r\nHell\r\n;0\r\n',
  '*?\r\n:1\r\n.\r\n',
];

/** A push nobody published: forged events, random payloads, wrong shapes. */
export function garbagePush(r: Rand, channel: string): Buffer {
  const inst = pick(r, ['x', 'AAAAAAAAAAAA', Buffer.from([int(r, 256)]).toString('latin1'), '']);
  const payloads = [
    `i\0${inst}\0postgres\0fz_owned`,
    `i\0${inst}\0postgres\0fz_fixed`,
    `i\0${inst}\0postgres`,
    `I\0${inst}\0postgres`,
    `I\0${inst}\0nodb\0extra`,
    `a\0${inst}`,
    `a`,
    `f\0${inst}\0${Buffer.from(Array.from({ length: 32 }, () => int(r, 256))).toString('base64url')}`,
    `f\0${inst}`,
    '',
    '\0\0\0',
    Buffer.from(Array.from({ length: int(r, 200) }, () => int(r, 256))).toString('latin1'),
  ];
  const ch = r() < 0.7 ? channel : pick(r, ['other', '', 'pgscribe:events@1']);
  switch (int(r, 8)) {
    case 0:
      return encodeArray(['message']);
    case 1:
      return encodeArray(['message', ch, pick(r, payloads), 'extra']);
    case 2:
      return encodeArray(['pmessage', '*', ch, pick(r, payloads)]);
    case 3:
      return Buffer.concat([Buffer.from(`*3${CRLF}`), encodeBulk('subscribe'), encodeBulk(ch), Buffer.from(`:1${CRLF}`)]);
    case 4:
      return Buffer.concat([Buffer.from(`*3${CRLF}`), encodeBulk('message'), Buffer.from(`:7${CRLF}`), Buffer.from(`*1${CRLF}+x${CRLF}`)]);
    case 5:
      return Buffer.concat([Buffer.from(`*3${CRLF}`), encodeBulk('message'), encodeBulk(ch), Buffer.from(`$-1${CRLF}`)]);
    default:
      return encodeArray(['message', ch, pick(r, payloads)]);
  }
}

/** What the man in the middle sends in place of one reply. */
export type Out =
  | { kind: 'bytes'; bytes: Buffer; delayMs?: number; gapMs?: number }
  /** Write these bytes first, then reset (RST) or half-close (FIN) the connection. */
  | { kind: 'reset' | 'end'; bytes: Buffer };

export interface ReplyContext {
  /** The command this reply answers (by order), when known. */
  cmd: string[] | null;
  /** Replies of this connection so far, for copies. */
  earlier: Buffer[];
  seen: Seen;
  channel: string;
}

/** The MGET of an entry: `MGET <prefix>db:D:v:H <generation keys>`. */
function isEntryMget(cmd: string[] | null): cmd is string[] {
  return cmd !== null && cmd[0]?.toUpperCase() === 'MGET' && /:v:/.test(cmd[1] ?? '');
}

/**
 * What to send for one reply under the plan's kind (reorder is the caller's: it spans replies).
 * Called only when the plan's rate picked this reply.
 */
export function mutateReply(p: MitmPlan, reply: Buffer, ctx: ReplyContext): Out[] {
  const r = p.rand;
  switch (p.kind) {
    case 'clean':
    case 'reorder':
      return [{ kind: 'bytes', bytes: reply }];
    case 'flip':
      return [{ kind: 'bytes', bytes: flip(r, reply) }];
    case 'bulk-length':
      return [{ kind: 'bytes', bytes: wrongLength(r, reply) }];
    case 'huge-length':
      return [{ kind: 'bytes', bytes: Buffer.concat([Buffer.from(pick(r, HUGE) + CRLF), reply.subarray(0, int(r, Math.min(reply.length, 64)))]) }];
    case 'deep': {
      const depth = pick(r, [2, 8, 9, 64, 1000]);
      return [{ kind: 'bytes', bytes: Buffer.from('*1\r\n'.repeat(depth) + pick(r, [':1\r\n', '$-1\r\n', '*0\r\n', '+OK\r\n'])) }];
    }
    case 'unknown-type': {
      const b = Buffer.from(reply);
      let t = int(r, 256);
      while ('+-:$*'.includes(String.fromCharCode(t))) t = int(r, 256);
      if (r() < 0.5) b[0] = t;
      else return [{ kind: 'bytes', bytes: Buffer.concat([Buffer.from([t]), Buffer.from(`1${CRLF}`), reply]) }];
      return [{ kind: 'bytes', bytes: b }];
    }
    case 'resp3':
      return [{ kind: 'bytes', bytes: Buffer.from(pick(r, RESP3)) }];
    case 'split':
      return [{ kind: 'bytes', bytes: reply, gapMs: 0 }];
    case 'stall':
      return [{ kind: 'bytes', bytes: reply, delayMs: pick(r, [100, 300, 1000, 3000, 6000]) }];
    case 'trickle':
      return [{ kind: 'bytes', bytes: reply, gapMs: pick(r, [20, 100, 300]) }];
    case 'extra': {
      const extra =
        ctx.earlier.length > 0 && r() < 0.5
          ? pick(r, ctx.earlier)
          : Buffer.from(pick(r, ['+OK\r\n', ':0\r\n', ':1\r\n', '$-1\r\n', '*-1\r\n', '-ERR fuzz\r\n', '+PONG\r\n', '*0\r\n', '$3\r\nabc\r\n']));
      return [
        { kind: 'bytes', bytes: extra },
        { kind: 'bytes', bytes: reply },
      ];
    }
    case 'missing':
      return [];
    case 'reset':
    case 'half-close':
      return [{ kind: p.kind === 'reset' ? 'reset' : 'end', bytes: reply.subarray(0, int(r, reply.length + 1)) }];
    case 'wrong-value': {
      const items = isEntryMget(ctx.cmd) ? bulkArray(reply) : null;
      if (items === null || items.length === 0) return [{ kind: 'bytes', bytes: reply }];
      const v = items[0] ?? null;
      const other = ctx.seen.otherValue(r, ctx.cmd![1]!, v);
      let wrong: Buffer | null;
      switch (int(r, 6)) {
        case 0:
        case 4:
        case 5:
          wrong = other ?? v;
          break;
        case 1:
          wrong = v === null ? other : Buffer.from(Array.from({ length: v.length }, () => int(r, 256)));
          break;
        case 2:
          wrong = v === null ? other : flip(r, v);
          break;
        default:
          wrong = v === null ? other : v.subarray(0, int(r, v.length));
      }
      return [{ kind: 'bytes', bytes: encodeArray([wrong, ...items.slice(1)]) }];
    }
    case 'wrong-generation': {
      const items = isEntryMget(ctx.cmd) ? bulkArray(reply) : null;
      if (items === null || items.length < 2) return [{ kind: 'bytes', bytes: reply }];
      const i = 1 + int(r, items.length - 1);
      const g = r() < 0.7 ? ctx.seen.newGen(r, ctx.cmd![i + 1]!) : null;
      const out = [...items];
      out[i] = g === null ? null : Buffer.from(g, 'latin1');
      return [{ kind: 'bytes', bytes: encodeArray(out) }];
    }
    case 'pubsub-garbage':
      return [
        { kind: 'bytes', bytes: garbagePush(r, ctx.channel) },
        { kind: 'bytes', bytes: reply },
      ];
  }
}
