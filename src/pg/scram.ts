/**
 * The client side of SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash), as PostgreSQL speaks it:
 * no channel binding (gs2 header `n,,`: this client does not support it, so a server offering
 * SCRAM-SHA-256-PLUS over TLS sees no downgrade), and an empty user name in the client-first
 * message (the server takes the startup packet's).
 *
 * The server's messages are checked before anything is computed from them: its nonce must extend
 * ours, the salt must be strict base64, the iteration count a positive number below a bound (the
 * PBKDF2 runs on the thread pool, but a hostile count would still tie it up), and its final
 * signature must prove it knows the password too.
 *
 * @see https://www.postgresql.org/docs/15/sasl-authentication.html
 * @see https://www.rfc-editor.org/rfc/rfc5802 (SCRAM)
 * @see https://www.rfc-editor.org/rfc/rfc7677 (SCRAM-SHA-256)
 */
import * as crypto from 'node:crypto';

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';

/** Above this the server's iteration count is refused (PostgreSQL's default is 4096). */
export const MAX_ITERATIONS = 10_000_000;

const GS2_HEADER = 'n,,';
const KEY_LENGTH = 32;

export class ScramError extends Error {
  readonly code = 'PGSCRIBE_SCRAM';
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** RFC 5802 `printable`: %x21-2B / %x2D-7E (no comma). */
const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/;

/** Strict base64 (Buffer.from would skip junk and accept missing padding). */
function base64(s: string, what: string): Buffer {
  if (s === '' || !BASE64.test(s)) throw new ScramError(`${what} is not valid base64`);
  return Buffer.from(s, 'base64');
}

/** What the server-first-message says. */
export interface ServerFirst {
  /** The combined nonce: ours, then the server's part. */
  nonce: string;
  salt: Buffer;
  iterations: number;
}

/**
 * server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions]
 * @see https://www.rfc-editor.org/rfc/rfc5802#section-7
 */
export function parseServerFirst(message: string, clientNonce: string): ServerFirst {
  const attrs = message.split(',');
  if (attrs[0]?.startsWith('m=')) throw new ScramError('the server-first-message requires a SCRAM extension (m=) this client does not support');
  const [r, s, i] = attrs;
  if (r === undefined || !r.startsWith('r=')) throw new ScramError('the server-first-message has no nonce');
  const nonce = r.slice(2);
  if (!nonce.startsWith(clientNonce) || nonce.length === clientNonce.length) throw new ScramError("the server's nonce does not extend the client's");
  if (!PRINTABLE.test(nonce)) throw new ScramError("the server's nonce has characters SCRAM does not allow");
  if (s === undefined || !s.startsWith('s=')) throw new ScramError('the server-first-message has no salt');
  const salt = base64(s.slice(2), 'the salt');
  if (i === undefined || !/^i=[1-9][0-9]{0,9}$/.test(i)) throw new ScramError('the server-first-message has no valid iteration count');
  const iterations = Number(i.slice(2));
  if (iterations > MAX_ITERATIONS) throw new ScramError(`the iteration count ${iterations} is over ${MAX_ITERATIONS}`);
  return { nonce, salt, iterations };
}

/**
 * server-final-message = (server-error / verifier) ["," extensions]: the server's signature, or
 * a ScramError carrying the server's `e=` reason.
 * @see https://www.rfc-editor.org/rfc/rfc5802#section-7
 */
export function parseServerFinal(message: string): Buffer {
  const first = message.split(',')[0]!;
  if (first.startsWith('e=')) throw new ScramError(`the server reports a SCRAM error: ${first.slice(2)}`);
  if (!first.startsWith('v=')) throw new ScramError('the server-final-message has no verifier');
  const signature = base64(first.slice(2), 'the server signature');
  if (signature.length !== KEY_LENGTH) throw new ScramError(`the server signature has ${signature.length} bytes, not ${KEY_LENGTH}`);
  return signature;
}

const hmac = (key: Buffer, data: string | Buffer): Buffer => crypto.createHmac('sha256', key).update(data).digest();

/**
 * ClientProof and ServerSignature for a SaltedPassword and an AuthMessage (RFC 5802 section 3):
 * ClientKey = HMAC(SaltedPassword, "Client Key"), StoredKey = H(ClientKey),
 * ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage),
 * ServerSignature = HMAC(HMAC(SaltedPassword, "Server Key"), AuthMessage).
 */
export function scramProof(saltedPassword: Buffer, authMessage: string): { proof: Buffer; serverSignature: Buffer } {
  const clientKey = hmac(saltedPassword, 'Client Key');
  const storedKey = crypto.createHash('sha256').update(clientKey).digest();
  const clientSignature = hmac(storedKey, authMessage);
  const proof = Buffer.allocUnsafe(KEY_LENGTH);
  for (let k = 0; k < KEY_LENGTH; k++) proof[k] = clientKey[k]! ^ clientSignature[k]!;
  return { proof, serverSignature: hmac(hmac(saltedPassword, 'Server Key'), authMessage) };
}

/** SaltedPassword = Hi(Normalize(password), salt, i): PBKDF2-HMAC-SHA-256, on the thread pool. */
export function saltPassword(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    crypto.pbkdf2(Buffer.from(saslPrep(password), 'utf8'), salt, iterations, KEY_LENGTH, 'sha256', (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** One SCRAM exchange: initialResponse, then respond(server-first), then verify(server-final). */
export class ScramClient {
  private readonly password: string;
  private readonly clientFirstBare: string;
  private readonly nonce: string;
  private serverSignature: Buffer | null = null;

  /** `user` and `nonce` are for the RFC's test vector; PostgreSQL gets '' and 18 random bytes. */
  constructor(password: string, o: { user?: string; nonce?: string } = {}) {
    this.password = password;
    this.nonce = o.nonce ?? crypto.randomBytes(18).toString('base64');
    // saslname: ',' and '=' are escaped (RFC 5802 section 5.1).
    const user = (o.user ?? '').replace(/=/g, '=3D').replace(/,/g, '=2C');
    this.clientFirstBare = `n=${user},r=${this.nonce}`;
  }

  /** The client-first-message, for SASLInitialResponse. */
  get initialResponse(): Buffer {
    return Buffer.from(GS2_HEADER + this.clientFirstBare, 'utf8');
  }

  /** The client-final-message answering this server-first-message; throws ScramError when it is malformed. */
  async respond(serverFirstMessage: string): Promise<string> {
    const first = parseServerFirst(serverFirstMessage, this.nonce);
    const salted = await saltPassword(this.password, first.salt, first.iterations);
    const withoutProof = `c=${Buffer.from(GS2_HEADER).toString('base64')},r=${first.nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirstMessage},${withoutProof}`;
    const { proof, serverSignature } = scramProof(salted, authMessage);
    this.serverSignature = serverSignature;
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Check the server-final-message: throws ScramError unless the server proved it knows the password. */
  verify(serverFinalMessage: string): void {
    if (this.serverSignature === null) throw new ScramError('server-final-message before the client-final-message');
    const got = parseServerFinal(serverFinalMessage);
    if (!crypto.timingSafeEqual(got, this.serverSignature)) throw new ScramError('the server signature is wrong: the server does not know the password');
  }
}

// ---- SASLprep (RFC 4013), as PostgreSQL applies it to passwords --------------------------------

/** RFC 3454 C.1.2, non-ASCII spaces: mapped to a space. */
const NON_ASCII_SPACE = /[\u00a0\u1680\u2000-\u200b\u202f\u205f\u3000]/g;
/** RFC 3454 B.1, commonly mapped to nothing. */
const MAPPED_TO_NOTHING = /[\u00ad\u034f\u1806\u180b-\u180d\u200c\u200d\u2060\ufe00-\ufe0f\ufeff]/g;
/** RFC 3454 C.2 to C.9: control, private use, non-characters, surrogates, and the like. */
const PROHIBITED =
  /[\u{0}-\u{1f}\u{7f}-\u{9f}\u{340}\u{341}\u{6dd}\u{70f}\u{180e}\u{200e}\u{200f}\u{2028}-\u{202e}\u{2060}-\u{2063}\u{206a}-\u{206f}\u{2ff0}-\u{2ffb}\u{d800}-\u{dfff}\u{e000}-\u{f8ff}\u{fdd0}-\u{fdef}\u{fff9}-\u{ffff}\u{1d173}-\u{1d17a}\u{e0001}\u{e0020}-\u{e007f}\u{f0000}-\u{10ffff}]/u;

/**
 * The password as PostgreSQL hashes it: pure ASCII unchanged; otherwise spaces mapped, ignorable
 * characters removed, NFKC. Where SASLprep refuses the result (prohibited characters, or empty),
 * PostgreSQL uses the password as it is, and so does this. Not done: the bidirectional-text and
 * unassigned-code-point checks, so a password with right-to-left text may be hashed differently.
 */
export function saslPrep(password: string): string {
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  const out = password.replace(NON_ASCII_SPACE, ' ').replace(MAPPED_TO_NOTHING, '').normalize('NFKC');
  if (out === '' || PROHIBITED.test(out)) return password;
  return out;
}
