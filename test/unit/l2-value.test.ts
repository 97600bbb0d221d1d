// The shared cache's entry format and its circuit breaker, without Redis: an entry is accepted
// only whole, unchanged, signed with the instance's key, for the request it was stored for and
// before its expiry; the breaker opens, probes and closes as its comment says.
import t from 'tap';
import { decodeEntry, encodeEntry, identityDigest, keyPart } from '../../src/cache/l2-value';
import { Breaker, type BreakerState } from '../../src/redis/breaker';

// A real answer shape: RowDescription-less DataRow/CommandComplete/ReadyForQuery bytes are enough here.
const ANSWER = Buffer.concat([
  Buffer.from([0x44, 0, 0, 0, 13, 0, 1, 0, 0, 0, 3]),
  Buffer.from('one'),
  Buffer.from([0x43, 0, 0, 0, 13]),
  Buffer.from('SELECT 1\0'),
  Buffer.from([0x5a, 0, 0, 0, 5, 0x49]),
]);
const GENS = ['AbCdEfGhIjKl.1', 'AbCdEfGhIjKl.2', 'zz.9k'];
const SCOPE = 'db\0user\0\0\0TimeZone=UTC';
const DIGEST = identityDigest(SCOPE, "Qselect v from t where id = 1");
const KEY = Buffer.from('unit-test-key-0123456789abcdef0123456789');
const NOW = 1_780_000_000_000;
const LATER = NOW + 60_000;

const encode = (digest: Buffer, bytes: Buffer, hasParse: boolean, gens: string[], key = KEY, expiresAt = LATER) => encodeEntry(key, digest, { bytes, hasParse }, gens, expiresAt);
const decode = (digest: Buffer, v: Buffer, key = KEY, now = NOW) => decodeEntry(key, digest, v, now);

t.test('an entry decodes to exactly what was encoded', async (t) => {
  for (const hasParse of [false, true]) {
    const v = encode(DIGEST, ANSWER, hasParse, GENS)!;
    const d = decode(DIGEST, v);
    t.ok(d.ok, 'accepted');
    if (!d.ok) continue;
    t.same(d.entry.bytes, ANSWER, 'answer bytes');
    t.equal(d.entry.hasParse, hasParse, 'hasParse');
    t.same(d.generations, GENS, 'generations');
    t.equal(d.expiresAt, LATER, 'expiry');
    t.equal(d.entry.bytes.buffer.byteLength, ANSWER.length, 'the answer is a copy of its own, not a view of the value');
  }
  const empty = decode(DIGEST, encode(DIGEST, Buffer.alloc(0), false, [])!);
  t.ok(empty.ok && empty.entry.bytes.length === 0 && empty.generations.length === 0, 'no generations, empty answer');
});

t.test('any single changed byte, any truncation, any extension is refused', async (t) => {
  const v = encode(DIGEST, ANSWER, false, GENS)!;
  let accepted = 0;
  for (let i = 0; i < v.length; i++) {
    for (const x of [0x01, 0x80, 0xff]) {
      const w = Buffer.from(v);
      w[i]! ^= x;
      if (decode(DIGEST, w).ok) accepted++;
    }
  }
  t.equal(accepted, 0, `all ${v.length * 3} one-byte changes refused`);
  let truncated = 0;
  for (let n = 0; n < v.length; n++) if (decode(DIGEST, v.subarray(0, n)).ok) truncated++;
  t.equal(truncated, 0, `all ${v.length} truncations refused`);
  t.notOk(decode(DIGEST, Buffer.concat([v, Buffer.from([0])])).ok, 'a byte appended is refused');
});

t.test('a value is refused for any other request: the checksum binds it to its identity', async (t) => {
  const v = encode(DIGEST, ANSWER, false, GENS)!;
  const others = [
    identityDigest(SCOPE, 'Qselect v from t where id = 2'),
    identityDigest('db\0other_user\0\0\0TimeZone=UTC', 'Qselect v from t where id = 1'),
    identityDigest(SCOPE + '\0', 'Qselect v from t where id = 1'),
  ];
  for (const d of others) {
    const r = decode(d, v);
    t.same(r, { ok: false, why: 'corrupt' }, 'refused as corrupt');
  }
});

t.test('a value signed with another key is refused: without the key no one forges an entry', async (t) => {
  const forged = encode(DIGEST, ANSWER, false, GENS, Buffer.from('a guessed key, or the unkeyed scheme'))!;
  t.same(decode(DIGEST, forged), { ok: false, why: 'corrupt' }, 'refused as corrupt');
  t.ok(decode(DIGEST, forged, Buffer.from('a guessed key, or the unkeyed scheme')).ok, 'accepted only by an instance holding that key');
});

t.test('an entry past the expiry it was stored with is no answer, whatever Redis says of its TTL', async (t) => {
  const v = encode(DIGEST, ANSWER, false, GENS)!;
  t.ok(decode(DIGEST, v, KEY, LATER - 1).ok, 'accepted 1 ms before its expiry');
  t.same(decode(DIGEST, v, KEY, LATER), { ok: false, why: 'expired' }, 'expired at its expiry');
  t.same(decode(DIGEST, v, KEY, LATER + 86_400_000), { ok: false, why: 'expired' }, 'and a day later (a replay)');
});

t.test('another format, version or program is foreign', async (t) => {
  const v = encode(DIGEST, ANSWER, false, GENS)!;
  const version = Buffer.from(v);
  version[4] = 1;
  t.same(decode(DIGEST, version), { ok: false, why: 'foreign' }, 'format version 1 (unkeyed, before issue 15)');
  t.same(decode(DIGEST, Buffer.from('{"rows":[["one"]]}')), { ok: false, why: 'foreign' }, 'JSON from another program');
  t.same(decode(DIGEST, Buffer.alloc(0)), { ok: false, why: 'foreign' }, 'empty');
});

t.test('generations that do not fit are not encoded', async (t) => {
  t.equal(encode(DIGEST, ANSWER, false, ['x'.repeat(256)]), null, 'a 256-byte generation');
  t.equal(encode(DIGEST, ANSWER, false, Array.from({ length: 256 }, () => 'g')), null, '256 generations');
  t.ok(encode(DIGEST, ANSWER, false, Array.from({ length: 255 }, () => 'x'.repeat(255))), '255 of 255 bytes fit');
});

t.test('keyPart keeps distinct names distinct', async (t) => {
  t.equal(keyPart('plain_name'), 'plain_name');
  t.equal(keyPart('a:b'), 'a%3Ab');
  t.equal(keyPart('50%'), '50%25');
  const names = ['a:gen:b', 'a%3Agen%3Ab', 'a', 'gen:b', 'a:gen', 'b'];
  t.equal(new Set(names.map(keyPart)).size, names.length, 'no two names encode alike');
});

t.test('breaker: opens after the threshold, probes after the cooldown, doubles it on failure', async (t) => {
  let now = 0;
  const changes: [BreakerState, string][] = [];
  const b = new Breaker({ threshold: 3, minCooldownMs: 500, maxCooldownMs: 2000, now: () => now, onChange: (s, r) => changes.push([s, r]) });
  t.equal(b.state, 'open', 'starts open: nothing is known to work');
  t.ok(b.probeDue(), 'the first probe is due at once');
  t.equal(b.state, 'half-open');
  b.probeResult(true, 'PONG');
  t.equal(b.state, 'closed');
  b.failure('timeout');
  b.failure('timeout');
  b.success();
  b.failure('timeout');
  b.failure('timeout');
  t.equal(b.state, 'closed', 'a success in between resets the count');
  b.failure('timeout');
  t.equal(b.state, 'open', 'three failures in a row open it');
  t.match(b.reason, /3 failures in a row, the last: timeout/);
  b.success();
  t.equal(b.state, 'open', 'a late success of a command sent before does not close it');
  now += 499;
  t.notOk(b.probeDue(), 'not before the cooldown');
  now += 1;
  t.ok(b.probeDue(), 'after 500 ms');
  b.probeResult(false, 'timeout');
  t.equal(b.state, 'open');
  t.equal(b.msUntilProbe, 1000, 'the cooldown doubled');
  now += 1000;
  t.ok(b.probeDue());
  b.probeResult(false, 'timeout');
  now += 2000;
  t.ok(b.probeDue());
  b.probeResult(false, 'timeout');
  t.equal(b.msUntilProbe, 2000, 'capped at maxCooldownMs');
  now += 2000;
  t.ok(b.probeDue());
  b.probeResult(true, 'PONG');
  t.equal(b.state, 'closed');
  b.open('connection lost');
  t.equal(b.msUntilProbe, 500, 'closing reset the cooldown');
  b.open('again');
  t.same(
    changes.map((c) => c[0]),
    ['half-open', 'closed', 'open', 'half-open', 'open', 'half-open', 'open', 'half-open', 'open', 'half-open', 'closed', 'open'],
    'each change reported once; open() while open reports nothing',
  );
});
