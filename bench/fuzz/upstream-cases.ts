/**
 * What the hostile-upstream fuzzer (upstream.ts) does on one connection: a case made from a seed,
 * for the fuzzed client and for the fake upstream behind pgscribe. Three kinds, picked by the seed:
 *
 * - session: a real session relayed to PostgreSQL, whose backend stream is corrupted at one
 *   message (counted from the first byte the server sends, authentication included): a byte
 *   flipped, the length word rewritten (short, < 4, 1 GiB, 0x7fffffff, 0xffffffff), a message
 *   injected out of order (DataRow before RowDescription, a second AuthenticationOk, ParseComplete
 *   with no Parse, CommandComplete with no query, BackendKeyData again, COPY answers nobody asked
 *   for, ReadyForQuery with a bad status, unknown types...), a storm of NotificationResponse,
 *   ParameterStatus or NoticeResponse, an oversized message (a DataRow claiming 1 GiB that never
 *   comes, or a valid one of several MB), the message cut short, a stall, a close or a half-close
 *   at a boundary. A fault past the end of the answers comes unsolicited.
 * - startup: no PostgreSQL behind; the fake server answers the StartupMessage with a script of
 *   authentication-phase messages: garbage, unknown or short authentication requests, SASL
 *   requests with bad lengths or lists, AuthenticationOk followed by messages in the wrong order,
 *   an old-protocol error text.
 * - ssl: pgscribe runs with --upstream-tls prefer, and the fake server answers its SSLRequest with
 *   garbage, a bad or cut 'E', 'S' followed by no TLS, or 'N' followed by a startup script.
 *
 * Every case ends with the fake upstream closing the connection (after a relay or a stall of
 * thenMs), since an upstream that only stalls is waited for by pgscribe as by any PostgreSQL
 * client. A case whose fault pgscribe must refuse by itself (mustDetect: a length word its framer
 * rejects) keeps the connection open instead, to see that it does.
 *
 * The same seed gives the same case, so a failure replays from the seed (FUZZ_ONLY).
 */
import { cstr, enc, i16, i32 } from '../../test/harness/wire';
import { prng } from '../../test/harness/prng';

export type Kind = 'session' | 'startup' | 'ssl';
export const KINDS: readonly Kind[] = ['session', 'startup', 'ssl'];

/** How the fake upstream ends the connection: FIN, RST, or FIN on its write side while it still reads. */
export type Ending = 'fin' | 'reset' | 'half-close';

/** What the fake upstream does to a relayed session's backend stream, at one message. */
export interface Fault {
  /** Index of the backend message it hits (0: the session's first; past the last answer it comes unsolicited). */
  at: number;
  /** What goes out instead of that message (m: its bytes; a CommandComplete when it comes unsolicited). */
  emit(m: Buffer): Buffer;
  /** After it: go on relaying for thenMs, or send nothing more. */
  then: 'relay' | 'stall';
}

/** A synthetic server's step: bytes to send, or wait for the next bytes pgscribe sends (a password, a query). */
export type Step = Buffer | 'await';

export interface UpstreamCase {
  seed: number;
  kind: Kind;
  what: string;
  /** The fuzzed client's requests: one batch after each ReadyForQuery it receives. */
  batches: Buffer[];
  /** session: the fault in the relayed stream. */
  fault: Fault | null;
  /** startup and ssl: what the fake server sends (ssl: its first step answers the SSLRequest). */
  script: Step[];
  /** ms the upstream lives on after the fault or the script (relaying or silent), before it ends. */
  thenMs: number;
  ending: Ending;
  /** pgscribe must refuse the fault by itself: the upstream stays open, the client must be closed anyway. */
  mustDetect: boolean;
  /**
   * The fake upstream never lies inside a well-formed message (it only cuts, stalls, closes or
   * breaks framing), so the case may ask the valid sessions' own queries and lead their flights:
   * whatever happens to it, they must still get right answers.
   */
  honest: boolean;
}

type Rand = () => number;

const int = (r: Rand, n: number): number => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)]!;
const msg = (type: string, body: Buffer): Buffer => enc.raw(type, body);

function randomBytes(r: Rand, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = int(r, 256);
  return b;
}

/** The largest message pgscribe's framer assembles for a type it looks into (src/client/session.ts). */
export const SERVER_MAX_INSPECT = 64 << 20;
/**
 * Backend types pgscribe always assembles to look inside (src/client/inspect.ts, SERVER_ALWAYS):
 * a length word over SERVER_MAX_INSPECT on one of them must be refused, whatever the flags.
 */
const ALWAYS_INSPECTED = new Set('RZKGHWcE');
/** Past what pgscribe accepts of any backend message (a signed 32-bit length). */
const SERVER_MAX_LENGTH = 0x7fffffff;

/** A length word pgscribe must refuse on a message of this type. */
export function refusedLength(type: string, length: number): boolean {
  return length < 4 || length > SERVER_MAX_LENGTH || (ALWAYS_INSPECTED.has(type) && length > SERVER_MAX_INSPECT);
}

// ---- backend messages, well-formed or not --------------------------------------------------------

const commandComplete = (tag: string): Buffer => msg('C', cstr(tag));
const ready = (status: number): Buffer => msg('Z', Buffer.from([status]));
const auth = (code: number, rest: Buffer = Buffer.alloc(0)): Buffer => msg('R', Buffer.concat([i32(code), rest]));
const dataRow = (values: Buffer[]): Buffer => msg('D', Buffer.concat([i16(values.length), ...values.flatMap((v) => [i32(v.length), v])]));
const errorFields = (fields: [string, string][]): Buffer => Buffer.concat([...fields.map(([k, v]) => Buffer.concat([Buffer.from(k, 'latin1'), cstr(v)])), Buffer.from([0])]);
const error = (severity: string, code: string, text: string): Buffer => msg('E', errorFields([['S', severity], ['V', severity], ['C', code], ['M', text]]));
const notice = (text: string): Buffer => msg('N', errorFields([['S', 'NOTICE'], ['V', 'NOTICE'], ['C', '00000'], ['M', text]]));
const parameterStatus = (name: string, value: string): Buffer => msg('S', Buffer.concat([cstr(name), cstr(value)]));
const notification = (pid: number, channel: string, payload: string): Buffer => msg('A', Buffer.concat([i32(pid), cstr(channel), cstr(payload)]));
const rowDescription = (fields: number, cut: boolean): Buffer => {
  const one = Buffer.concat([cstr('x'), i32(0), i16(0), i32(23), i16(4), i32(-1), i16(0)]);
  const body = Buffer.concat([i16(fields), ...Array.from({ length: cut ? 1 : fields }, () => one)]);
  return msg('T', cut ? body.subarray(0, body.length - 3) : body);
};

/** A message with its length word replaced (the bytes after it unchanged). */
function withLength(m: Buffer, length: number): Buffer {
  const b = Buffer.from(m);
  if (b.length >= 5) b.writeUInt32BE(length >>> 0, 1);
  return b;
}

/** The ParameterStatus names PostgreSQL reports, and some it never does. */
const PARAMETERS = ['client_encoding', 'DateStyle', 'TimeZone', 'search_path', 'server_version', 'standard_conforming_strings', 'integer_datetimes', 'application_name', 'is_superuser', 'session_authorization', 'IntervalStyle', 'in_hot_standby', 'x'.repeat(300), ''];

/** One message from PostgreSQL's backend vocabulary, or outside it, that may come at the wrong time. */
function stray(r: Rand): { what: string; bytes: Buffer } {
  switch (int(r, 26)) {
    case 0: return { what: 'DataRow out of order', bytes: dataRow([Buffer.from(String(int(r, 1000)))]) };
    case 1: return { what: 'DataRow of 0 columns', bytes: dataRow([]) };
    case 2: return { what: 'DataRow claiming 30000 columns', bytes: msg('D', Buffer.concat([i16(30000), i32(1), Buffer.from('x')])) };
    case 3: {
      const status = pick(r, [0x49, 0x54, 0x45, 0x00, 0x58, 0xff, int(r, 256)]);
      return { what: `ReadyForQuery status 0x${status.toString(16)}`, bytes: ready(status) };
    }
    case 4: return { what: 'ReadyForQuery with no status', bytes: msg('Z', Buffer.alloc(0)) };
    case 5: return { what: 'a second AuthenticationOk', bytes: auth(0) };
    case 6: return { what: 'AuthenticationSASL mid-session', bytes: auth(10, Buffer.concat([cstr('SCRAM-SHA-256'), Buffer.from([0])])) };
    case 7: return { what: 'AuthenticationCleartextPassword mid-session', bytes: auth(3) };
    case 8: return { what: 'ParseComplete with no Parse', bytes: msg('1', Buffer.alloc(0)) };
    case 9: return { what: 'BindComplete with no Bind', bytes: msg('2', Buffer.alloc(0)) };
    case 10: return { what: 'CloseComplete with no Close', bytes: msg('3', Buffer.alloc(0)) };
    case 11: return { what: 'CommandComplete with no query', bytes: commandComplete(pick(r, ['SELECT 1', 'INSERT 0 1', 'COMMIT', 'BEGIN', 'ROLLBACK', 'COPY 3', '', 'x'.repeat(500)])) };
    case 12: return { what: 'BackendKeyData again', bytes: msg('K', Buffer.concat([i32(int(r, 1 << 30)), i32(int(r, 1 << 30))])) };
    case 13: return { what: 'BackendKeyData short', bytes: msg('K', i32(int(r, 1 << 30))) };
    case 14: return { what: 'CopyInResponse unasked', bytes: msg('G', Buffer.concat([Buffer.from([0]), i16(1), i16(0)])) };
    case 15: return { what: 'CopyOutResponse unasked', bytes: msg('H', Buffer.concat([Buffer.from([0]), i16(1), i16(0)])) };
    case 16: return { what: 'CopyBothResponse unasked', bytes: msg('W', Buffer.concat([Buffer.from([0]), i16(0)])) };
    case 17: return { what: 'CopyData and CopyDone unasked', bytes: Buffer.concat([msg('d', randomBytes(r, int(r, 50))), msg('c', Buffer.alloc(0))]) };
    case 18: return { what: 'EmptyQueryResponse / PortalSuspended / NoData unasked', bytes: msg(pick(r, ['I', 's', 'n']), Buffer.alloc(0)) };
    case 19: return { what: 'ParameterDescription with a bad count', bytes: msg('t', Buffer.concat([i16(pick(r, [-1, 5, 32767])), i32(23)])) };
    case 20: return { what: 'RowDescription cut short', bytes: rowDescription(pick(r, [1, 3, 1600]), true) };
    case 21: return { what: 'ParameterStatus malformed', bytes: msg('S', pick(r, [Buffer.from('client_encoding'), cstr('client_encoding'), Buffer.alloc(0), randomBytes(r, 20)])) };
    case 22: return { what: 'ParameterStatus changed', bytes: parameterStatus(pick(r, PARAMETERS), pick(r, ['SQL_ASCII', 'UTF8', 'ISO, MDY', '"$user", public', 'evil', '', 'x'.repeat(1000)])) };
    case 23: {
      const fatal = int(r, 2) === 0;
      return { what: `ErrorResponse (${fatal ? 'FATAL' : 'ERROR'})`, bytes: error(fatal ? 'FATAL' : 'ERROR', pick(r, ['57P01', 'XX000', '08P01', '42601']), 'injected by the fuzzer') };
    }
    case 24: return { what: 'ErrorResponse malformed', bytes: msg('E', pick(r, [Buffer.from('SFATAL'), Buffer.alloc(0), Buffer.from('\0'), randomBytes(r, 30), Buffer.from('SFATAL\0C08P01\0Mno terminator')])) };
    default: {
      const type = pick(r, ['x', 'j', 'q', '\0', '\xff', 'v', 'Y', '!', String.fromCharCode(int(r, 256))]);
      return { what: `unknown type 0x${type.charCodeAt(0).toString(16)}`, bytes: msg(type, randomBytes(r, int(r, 60))) };
    }
  }
}

/** Many messages of one out-of-band kind: PostgreSQL may send these at any time. */
function storm(r: Rand): { what: string; bytes: Buffer } {
  const n = pick(r, [100, 1000, 5000, 20_000]);
  const type = pick(r, ['A', 'S', 'N'] as const);
  const size = pick(r, [0, 20, 200]);
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    if (type === 'A') parts.push(notification(int(r, 1 << 30), `chan${i % 7}`, 'p'.repeat(size)));
    else if (type === 'S') parts.push(parameterStatus(int(r, 2) === 0 ? `fuzz.param_${i}` : pick(r, PARAMETERS), 'v'.repeat(size)));
    else parts.push(notice('n'.repeat(size)));
  }
  return { what: `storm of ${n} ${type}`, bytes: Buffer.concat(parts) };
}

/** A message too big to assemble, or big and valid. */
function oversized(r: Rand): { what: string; bytes: Buffer; stall: boolean; refused?: boolean } {
  switch (int(r, 6)) {
    case 0: {
      // Claims 1 GiB, sends a little, then nothing: pgscribe streams DataRows, it must not reserve that.
      const head = Buffer.concat([Buffer.from('D'), i32(0x40000000), i16(1), i32(0x40000000 - 10), randomBytes(r, int(r, 65536))]);
      return { what: 'DataRow claiming 1 GiB, then nothing', bytes: head, stall: true };
    }
    case 1: {
      const mb = pick(r, [1, 4, 8]);
      return { what: `valid DataRow of ${mb} MB`, bytes: dataRow([Buffer.alloc(mb << 20, 0x61)]), stall: false };
    }
    case 2: return { what: 'valid NoticeResponse of 4 MB', bytes: notice('n'.repeat(4 << 20)), stall: false };
    case 3: return { what: 'valid ParameterStatus of 2 MB', bytes: parameterStatus('application_name', 'v'.repeat(2 << 20)), stall: false };
    case 4: {
      // An inspected type past the 64 MiB assembly bound: refused, nothing allocated.
      const type = pick(r, ['E', 'Z', 'K', 'R', 'G']);
      return { what: `${type} claiming 100 MiB`, bytes: Buffer.concat([Buffer.from(type), i32(100 << 20), randomBytes(r, 100)]), stall: true, refused: true };
    }
    default: return { what: 'valid RowDescription of 1600 columns', bytes: rowDescription(1600, false), stall: false };
  }
}

// ---- the fuzzed client's requests -----------------------------------------------------------------

/**
 * The valid sessions ask `select n::int + 1` (n often below SHARED_RANGE, so that flights and
 * cache entries are shared); an honest case may ask the same, a lying one asks `+ 2`, whose answers
 * the valid sessions never share.
 */
export const SHARED_RANGE = 50;

function batch(r: Rand, honest: boolean): Buffer {
  const add = honest ? 1 : 2;
  const n = int(r, SHARED_RANGE);
  switch (int(r, 9)) {
    case 0:
    case 1: return enc.query(`select ${n}::int + ${add}`);
    case 2:
    case 3: return Buffer.concat([enc.parse('', `select $1::int + ${add}`), enc.bind('', '', [String(n)]), enc.describe('P', ''), enc.execute(''), enc.sync()]);
    case 4: return enc.query('select g from generate_series(1, 40) g');
    case 5: return Buffer.concat([enc.parse('s1', 'select $1::text'), enc.bind('', 's1', ['x']), enc.execute(''), enc.close('S', 's1'), enc.sync()]);
    case 6: return enc.query("begin; select 1; commit");
    case 7: return enc.query('copy (select g from generate_series(1, 30) g) to stdout');
    default: return Buffer.concat([enc.query('copy fuzz_t from stdin'), enc.copyData('1\tx\n'), enc.copyDone()]);
  }
}

// ---- the three kinds -----------------------------------------------------------------------------

/** Messages PostgreSQL sends before a trust session's first ReadyForQuery (R, ~13 S, K, Z). */
const STARTUP_MESSAGES = 16;

function sessionFault(r: Rand): { fault: Fault; what: string; mustDetect: boolean; honest: boolean } {
  // A third of the faults hit the authentication phase, the rest the answers.
  const at = int(r, 3) === 0 ? int(r, STARTUP_MESSAGES) : STARTUP_MESSAGES + int(r, 60);
  switch (int(r, 9)) {
    case 0: {
      const where = r();
      const xor = 1 + int(r, 255);
      return { fault: { at, then: 'relay', emit: (m) => flip(m, where, xor) }, what: `flip a byte at ${(where * 100).toFixed(0)}%`, mustDetect: false, honest: false };
    }
    case 1: {
      const kind = int(r, 4);
      const value = pick(r, [[0, 1, 3], [-1, 1, 7], [0x40000000, 0x7fffffff], [0x80000000, 0xffffffff]][kind]!);
      // A refused length is decided on the message's type, only known when it comes.
      let refused = false;
      return {
        fault: {
          at,
          then: 'stall',
          emit: (m) => {
            const length = kind === 1 ? m.length - 1 + value : value;
            refused = refusedLength(String.fromCharCode(m[0]!), length);
            return withLength(m, length);
          },
        },
        what: `length word ${kind === 1 ? `${value > 0 ? '+' : ''}${value}` : `0x${value.toString(16)}`}`,
        get mustDetect() {
          return refused;
        },
        honest: kind !== 1,
      };
    }
    case 2: {
      const s = stray(r);
      return { fault: { at, then: 'relay', emit: (m) => Buffer.concat([s.bytes, m]) }, what: `inject ${s.what}`, mustDetect: false, honest: false };
    }
    case 3: {
      const s = storm(r);
      return { fault: { at, then: 'relay', emit: (m) => Buffer.concat([s.bytes, m]) }, what: `inject ${s.what}`, mustDetect: false, honest: false };
    }
    case 4: {
      const o = oversized(r);
      return { fault: { at, then: o.stall ? 'stall' : 'relay', emit: (m) => (o.stall ? o.bytes : Buffer.concat([o.bytes, m])) }, what: o.what, mustDetect: o.refused === true, honest: o.stall };
    }
    case 5: {
      const where = r();
      return { fault: { at, then: 'stall', emit: (m) => m.subarray(0, Math.max(1, Math.floor(where * m.length))) }, what: `cut at ${(where * 100).toFixed(0)}% of the message`, mustDetect: false, honest: true };
    }
    case 6: {
      const n = 1 + int(r, 5);
      const s = Array.from({ length: n }, () => stray(r));
      return { fault: { at, then: 'relay', emit: (m) => Buffer.concat([...s.map((x) => x.bytes), m]) }, what: `inject ${s.map((x) => x.what).join(', ')}`, mustDetect: false, honest: false };
    }
    case 7: {
      const s = stray(r);
      return { fault: { at, then: 'relay', emit: () => s.bytes }, what: `replace with ${s.what}`, mustDetect: false, honest: false };
    }
    default:
      // Nothing more from this message on: a stall, then the end (a close at a boundary).
      return { fault: { at, then: 'stall', emit: () => Buffer.alloc(0) }, what: 'stop at a boundary', mustDetect: false, honest: true };
  }
}

function flip(m: Buffer, where: number, xor: number): Buffer {
  const b = Buffer.from(m);
  const at = Math.min(b.length - 1, Math.floor(where * b.length));
  b[at] = b[at]! ^ xor;
  return b;
}

/** A synthetic server's answer to the StartupMessage: the authentication phase, gone wrong. */
function startupScript(r: Rand): { what: string; script: Step[]; mustDetect: boolean } {
  const ok = auth(0);
  const keyData = msg('K', Buffer.concat([i32(4242), i32(int(r, 1 << 30))]));
  const params = Buffer.concat([parameterStatus('client_encoding', 'UTF8'), parameterStatus('server_version', '15.0'), parameterStatus('DateStyle', 'ISO, MDY')]);
  const session = Buffer.concat([ok, params, keyData, ready(0x49)]);
  switch (int(r, 14)) {
    case 0: return { what: 'garbage', script: [randomBytes(r, 1 + int(r, 300))], mustDetect: false };
    case 1: {
      const code = pick(r, [1, 4, 6, 9, 13, 99, -1, 0x7fffffff]);
      return { what: `authentication code ${code}`, script: [auth(code)], mustDetect: false };
    }
    case 2: {
      const length = pick(r, [4, 5, 6, 7]);
      return { what: `authentication request of length ${length}`, script: [withLength(auth(0), length).subarray(0, 1 + length)], mustDetect: false };
    }
    case 3: return { what: 'authentication request claiming 0x7fffffff bytes', script: [withLength(auth(10, randomBytes(r, 50)), 0x7fffffff)], mustDetect: true };
    case 4: {
      const list = pick(r, [Buffer.alloc(0), Buffer.from('SCRAM-SHA-256'), Buffer.concat([cstr('SCRAM-SHA-256-PLUS'), Buffer.from([0])]), Buffer.concat([cstr('x'.repeat(5000)), Buffer.from([0])]), Buffer.from([0]), randomBytes(r, 40)]);
      return { what: `SASL mechanisms ${JSON.stringify(list.subarray(0, 24).toString('latin1'))}`, script: [auth(10, list), 'await'], mustDetect: false };
    }
    case 5: {
      const m = auth(10, Buffer.concat([cstr('SCRAM-SHA-256'), Buffer.from([0])]));
      const delta = pick(r, [-3, -1, 1, 9, 1000]);
      return { what: `SASL request with its length ${delta > 0 ? '+' : ''}${delta}`, script: [withLength(m, m.length - 1 + delta), params], mustDetect: false };
    }
    case 6: {
      const code = pick(r, [11, 12]);
      return { what: `SASL ${code === 11 ? 'continue' : 'final'} with no start`, script: [auth(code, randomBytes(r, int(r, 100)))], mustDetect: false };
    }
    case 7: {
      const next = stray(r);
      return { what: `cleartext password asked, then ${next.what}`, script: [auth(3), 'await', next.bytes], mustDetect: false };
    }
    case 8: {
      const next = Array.from({ length: 1 + int(r, 3) }, () => stray(r));
      return { what: `AuthenticationOk, then ${next.map((x) => x.what).join(', ')}`, script: [Buffer.concat([ok, ...next.map((x) => x.bytes)])], mustDetect: false };
    }
    case 9: return { what: 'AuthenticationOk, then ReadyForQuery of length 4', script: [Buffer.concat([ok, params, msg('Z', Buffer.alloc(0))])], mustDetect: true };
    case 10: {
      const answer = pick(r, [stray(r), storm(r)]);
      return { what: `a session, then the query answered by ${answer.what}`, script: [session, 'await', answer.bytes], mustDetect: false };
    }
    case 11:
      // A protocol-2 server's error: 'E' and text, no length word (it reads as about 1.1 GB).
      return { what: 'old-protocol error text', script: [Buffer.from('EFATAL:  sorry, too many clients already\n\0', 'latin1')], mustDetect: true };
    case 12: {
      const v = msg('v', Buffer.concat([i32(0x00030000), i32(pick(r, [-1, 1, 1000])), cstr('_pq_.x')]));
      return { what: 'NegotiateProtocolVersion with a bad count', script: [v, session], mustDetect: false };
    }
    default: return { what: 'nothing', script: [], mustDetect: false };
  }
}

/** The fake server's answer to pgscribe's SSLRequest (--upstream-tls prefer). */
function sslScript(r: Rand): { what: string; script: Step[]; mustDetect: boolean } {
  const err = error('FATAL', '53300', 'sorry, too many clients already');
  switch (int(r, 9)) {
    case 0: {
      const b = pick(r, [0x00, 0xff, 0x58, 0x47, 0x52, int(r, 256)]);
      return { what: `answer 0x${b.toString(16)}`, script: [Buffer.from([b])], mustDetect: false };
    }
    case 1: return { what: "'E' with a whole ErrorResponse", script: [err], mustDetect: false };
    case 2: {
      const length = pick(r, [0, 3, 7, 30001, 0x7fffffff]);
      return { what: `'E' with length ${length}`, script: [withLength(err, length)], mustDetect: false };
    }
    case 3: return { what: "'E' cut short", script: [err.subarray(0, 1 + int(r, err.length - 1))], mustDetect: false };
    case 4: return { what: "'S', then garbage for TLS", script: [Buffer.from('S'), randomBytes(r, 1 + int(r, 200))], mustDetect: false };
    case 5: return { what: "'S', then nothing", script: [Buffer.from('S')], mustDetect: false };
    case 6: return { what: "'S' with bytes after it", script: [Buffer.concat([Buffer.from('S'), randomBytes(r, 1 + int(r, 20))])], mustDetect: false };
    case 7: {
      const s = startupScript(r);
      return { what: `'N', then ${s.what}`, script: [Buffer.from('N'), 'await', ...s.script], mustDetect: s.mustDetect };
    }
    default: return { what: 'nothing', script: [], mustDetect: false };
  }
}

export function upstreamCase(seed: number): UpstreamCase {
  const r = prng(seed);
  const roll = r();
  const thenMs = pick(r, [0, 0, 100, 500, 1500]);
  const ending = pick(r, ['fin', 'fin', 'reset', 'half-close'] as const);
  if (roll < 0.6) {
    const f = sessionFault(r);
    const batches = Array.from({ length: 1 + int(r, 3) }, () => batch(r, f.honest));
    return {
      seed,
      kind: 'session',
      what: `session, message ${f.fault.at}: ${f.what}`,
      batches,
      fault: f.fault,
      script: [],
      thenMs,
      ending,
      // A getter: a length fault is refused or not by the type of the message it hits.
      get mustDetect() {
        return f.mustDetect;
      },
      honest: f.honest,
    };
  }
  const s = roll < 0.9 ? startupScript(r) : sslScript(r);
  return {
    seed,
    kind: roll < 0.9 ? 'startup' : 'ssl',
    what: `${roll < 0.9 ? 'startup' : 'ssl'}: ${s.what}`,
    batches: Array.from({ length: 1 + int(r, 2) }, () => batch(r, false)),
    fault: null,
    script: s.script,
    thenMs,
    ending,
    mustDetect: s.mustDetect,
    honest: false,
  };
}
