// SCRAM-SHA-256 for pgscribe's own PostgreSQL client (src/pg/scram.ts): the RFC 7677 test vector,
// the refusal of malformed server messages, SASLprep, and a whole SCRAM exchange through the
// session against a server side written here from RFC 5802 (node:crypto, nothing from src/).
import t from 'tap';
import * as crypto from 'node:crypto';
import { MAX_ITERATIONS, ScramClient, ScramError, parseServerFinal, parseServerFirst, saslPrep, scramProof } from '../../src/pg/scram';
import { PgClientError } from '../../src/pg/errors';
import { PgSession, type SessionHost } from '../../src/pg/session';
import { be } from '../helpers/pg-backend';

// RFC 7677 section 3.
const RFC = {
  user: 'user',
  password: 'pencil',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

function scramThrows(tt: { ok(v: unknown, m: string): unknown }, fn: () => unknown, name: string, pattern?: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  tt.ok(thrown instanceof ScramError && (pattern === undefined || pattern.test(thrown.message)), `${name}: ScramError${pattern ? ` ${pattern}` : ''} (got ${String(thrown)})`);
}

t.test('the RFC 7677 test vector', async (tt) => {
  const c = new ScramClient(RFC.password, { user: RFC.user, nonce: RFC.clientNonce });
  tt.equal(c.initialResponse.toString(), RFC.clientFirst);
  tt.equal(await c.respond(RFC.serverFirst), RFC.clientFinal);
  tt.doesNotThrow(() => c.verify(RFC.serverFinal), 'the RFC server signature verifies');
  const wrong = Buffer.from(RFC.serverFinal.slice(2), 'base64');
  wrong[0]! ^= 1;
  scramThrows(tt, () => c.verify(`v=${wrong.toString('base64')}`), 'a server signature one bit off', /does not know the password/);

  const salted = crypto.pbkdf2Sync('pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), 4096, 32, 'sha256');
  const auth = `n=user,r=${RFC.clientNonce},${RFC.serverFirst},c=biws,r=${RFC.serverFirst.slice(2, RFC.serverFirst.indexOf(','))}`;
  const { proof, serverSignature } = scramProof(salted, auth);
  tt.equal(proof.toString('base64'), 'dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=');
  tt.equal(serverSignature.toString('base64'), RFC.serverFinal.slice(2));
});

t.test("PostgreSQL's form: no user name, a fresh random nonce, no channel binding", async (tt) => {
  const a = new ScramClient('pw').initialResponse.toString();
  const b = new ScramClient('pw').initialResponse.toString();
  tt.match(a, /^n,,n=,r=[A-Za-z0-9+/]{24}$/);
  tt.not(a, b, 'each exchange has its own nonce');
  scramThrows(tt, () => new ScramClient('pw').verify(RFC.serverFinal), 'server-final before respond()', /before the client-final/);
});

t.test('a malformed server-first-message is refused before any computing', async (tt) => {
  const n = RFC.clientNonce;
  const cases: [string, string, RegExp][] = [
    ['a nonce that does not extend ours', 'r=XOprNGfwEbeRWgbNEkqO%hv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096', /does not extend/],
    ["a nonce that is only ours", `r=${n},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`, /does not extend/],
    ['a nonce with a space', `r=${n}a b,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`, /characters SCRAM does not allow/],
    ['a nonce with a non-ASCII character', `r=${n}é,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`, /characters SCRAM does not allow/],
    ['no nonce', 's=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096', /no nonce/],
    ['a mandatory extension', `m=ext,r=${n}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`, /extension \(m=\)/],
    ['salt without padding', `r=${n}x,s=W22ZaJ0SNY7soEsUEjb6gQ,i=4096`, /salt is not valid base64/],
    ['salt with junk', `r=${n}x,s=W22Z!J0SNY7soEsUEjb6gQ==,i=4096`, /salt is not valid base64/],
    ['salt with a space', `r=${n}x,s=W22Z J0SNY7soEsUEjb6gQ==,i=4096`, /salt is not valid base64/],
    ['an empty salt', `r=${n}x,s=,i=4096`, /salt is not valid base64/],
    ['no salt', `r=${n}x,i=4096`, /no salt/],
    ['iteration count 0', `r=${n}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0`, /iteration count/],
    ['a negative iteration count', `r=${n}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1`, /iteration count/],
    ['a leading zero', `r=${n}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=04096`, /iteration count/],
    ['a count with junk', `r=${n}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096x`, /iteration count/],
    ['no iteration count', `r=${n}x,s=W22ZaJ0SNY7soEsUEjb6gQ==`, /iteration count/],
    ['a count over the bound', `r=${n}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=${MAX_ITERATIONS + 1}`, /over/],
    ['attributes out of order', `s=W22ZaJ0SNY7soEsUEjb6gQ==,r=${n}x,i=4096`, /no nonce/],
    ['an empty message', '', /no nonce/],
  ];
  for (const [name, msg, pattern] of cases) scramThrows(tt, () => parseServerFirst(msg, n), name, pattern);
  tt.strictSame(parseServerFirst(`${RFC.serverFirst},x=extension`, n).iterations, 4096, 'extensions after the iteration count are allowed');
  const c = new ScramClient('pencil', { nonce: n });
  await tt.rejects(c.respond(`r=${n},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`), { code: 'PGSCRIBE_SCRAM' }, 'respond() rejects too');
});

t.test('server-final-message', async (tt) => {
  tt.equal(parseServerFinal(RFC.serverFinal).toString('base64'), RFC.serverFinal.slice(2));
  tt.equal(parseServerFinal(`${RFC.serverFinal},x=ext`).length, 32, 'extensions after the verifier');
  scramThrows(tt, () => parseServerFinal('e=invalid-proof'), 'a server error', /SCRAM error: invalid-proof/);
  scramThrows(tt, () => parseServerFinal('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4'), 'a signature without padding', /not valid base64/);
  scramThrows(tt, () => parseServerFinal(`v=${Buffer.alloc(31).toString('base64')}`), 'a 31-byte signature', /31 bytes/);
  scramThrows(tt, () => parseServerFinal('x=abc'), 'no verifier', /no verifier/);
  scramThrows(tt, () => parseServerFinal(''), 'an empty message', /no verifier/);
});

t.test('SASLprep (RFC 4013 examples), as PostgreSQL uses it', async (tt) => {
  tt.equal(saslPrep('pencil'), 'pencil');
  tt.equal(saslPrep('a\u0007b'), 'a\u0007b', 'ASCII is used as it is, control characters too');
  tt.equal(saslPrep('I\u00adX'), 'IX', 'soft hyphen mapped to nothing');
  tt.equal(saslPrep('\u00aa'), 'a', 'NFKC');
  tt.equal(saslPrep('\u2168'), 'IX', 'NFKC');
  tt.equal(saslPrep('a\u00a0b\u3000c'), 'a b c', 'non-ASCII spaces become spaces');
  tt.equal(saslPrep('é\u0007'), 'é\u0007', 'a prohibited character: the password is used unprepared, as PostgreSQL does');
  tt.equal(saslPrep('\u00ad'), '\u00ad', 'empty after mapping: unprepared');
});

// ---- through the session, against a server side written from RFC 5802 ------------------------

class Host implements SessionHost {
  sent: Buffer[] = [];
  readies = 0;
  losses: { reason: string; error: Error }[] = [];
  private waiters: (() => void)[] = [];
  send(data: Buffer): void {
    this.sent.push(Buffer.from(data));
    for (const w of this.waiters.splice(0)) w();
  }
  ready(): void {
    this.readies++;
  }
  lost(reason: string, error: Error): void {
    this.losses.push({ reason, error });
    for (const w of this.waiters.splice(0)) w();
  }
  cancel(): Promise<void> {
    return Promise.resolve();
  }
  /** The next message sent (SCRAM's proof is computed off the event loop). */
  next(): Promise<Buffer | undefined> {
    const n = this.sent.length;
    return new Promise((resolve) => this.waiters.push(() => resolve(this.sent[n])));
  }
}

const hmac = (key: Buffer, s: string) => crypto.createHmac('sha256', key).update(s).digest();
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest();

/** Run one exchange; `finish` gives what the server answers to a correct client-final-message. */
async function exchange(password: string, finish: (signature: string) => Buffer): Promise<Host> {
  const host = new Host();
  const s = new PgSession({ user: 'u', password, startupParams: new Map([['user', 'u']]), maxMessageBytes: 1 << 20 }, host);
  s.start();
  s.push(be.authSasl(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']));
  const initial = host.sent[1]!;
  const mech = initial.toString('utf8', 5, initial.indexOf(0, 5));
  const clientFirst = initial.toString('utf8', initial.indexOf(0, 5) + 5);
  if (mech !== 'SCRAM-SHA-256' || !clientFirst.startsWith('n,,n=,r=')) throw new Error(`unexpected SASLInitialResponse ${mech} ${clientFirst}`);
  const nonce = `${clientFirst.slice(8)}serverpart`;
  const salt = crypto.randomBytes(16);
  const serverFirst = `r=${nonce},s=${salt.toString('base64')},i=4096`;
  const reply = host.next();
  s.push(be.saslContinue(serverFirst));
  const final = (await reply)!.toString('utf8', 5);
  const [c, r, p] = final.split(',');
  const salted = crypto.pbkdf2Sync('pencil', salt, 4096, 32, 'sha256');
  const auth = `${clientFirst.slice(3)},${serverFirst},${c},${r}`;
  const storedKey = sha256(hmac(salted, 'Client Key'));
  const signature = hmac(storedKey, auth);
  const clientKey = Buffer.from(Buffer.from(p!.slice(2), 'base64').map((x, k) => x ^ signature[k]!));
  const proofOk = c === 'c=biws' && r === `r=${nonce}` && sha256(clientKey).equals(storedKey);
  s.push(proofOk ? finish(hmac(hmac(salted, 'Server Key'), auth).toString('base64')) : be.sqlError('28P01', 'password authentication failed for user "u"', 'FATAL'));
  return host;
}

t.test('a SCRAM exchange through the session', async (tt) => {
  const ok = await exchange('pencil', (sig) => Buffer.concat([be.saslFinal(`v=${sig}`), be.authOk(), be.keyData(1, 2), be.ready()]));
  tt.equal(ok.readies, 1, 'the right password authenticates, and the server signature verifies');
  tt.strictSame(ok.losses, []);

  const wrongPassword = await exchange('pencil!', (sig) => be.saslFinal(`v=${sig}`));
  tt.equal((wrongPassword.losses[0]?.error as { code?: string } | undefined)?.code, '28P01', 'a wrong password: the proof is refused');

  const badSignature = await exchange('pencil', () => Buffer.concat([be.saslFinal(`v=${Buffer.alloc(32, 7).toString('base64')}`), be.authOk(), be.ready()]));
  tt.equal(badSignature.readies, 0);
  tt.match(badSignature.losses[0]?.reason, /authentication failed: the server signature is wrong/);
  tt.ok(badSignature.losses[0]?.error instanceof PgClientError);

  const skipped = await exchange('pencil', () => Buffer.concat([be.authOk(), be.ready()]));
  tt.equal(skipped.readies, 0);
  tt.match(skipped.losses[0]?.reason, /ended SCRAM authentication without proving/, 'AuthenticationOk without the server signature is refused');

  const serverError = await exchange('pencil', () => be.saslFinal('e=other-error'));
  tt.match(serverError.losses[0]?.reason, /SCRAM error: other-error/);
});

t.test('a malformed server-first-message through the session ends it with a reason', async (tt) => {
  const host = new Host();
  const s = new PgSession({ user: 'u', password: 'pw', startupParams: new Map([['user', 'u']]), maxMessageBytes: 1 << 20 }, host);
  s.start();
  s.push(be.authSasl(['SCRAM-SHA-256']));
  const lost = new Promise<void>((r) => {
    const check = () => (host.losses.length > 0 ? r() : setImmediate(check));
    check();
  });
  s.push(be.saslContinue('r=someone-elses-nonce,s=c2FsdA==,i=4096'));
  await lost;
  tt.match(host.losses[0]?.reason, /authentication failed: the server's nonce does not extend the client's/);
  tt.equal(host.readies, 0);
});
