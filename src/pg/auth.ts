/**
 * Answering the server's Authentication requests: trust (AuthenticationOk straight away),
 * cleartext password, MD5 and SCRAM-SHA-256. Any other method is refused with an error that
 * names it. A SCRAM exchange must end with the server's proof that it knows the password: an
 * AuthenticationOk before that is refused (a server in the middle could otherwise skip it).
 *
 * @see https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-START-UP
 * @see https://www.postgresql.org/docs/15/sasl-authentication.html
 */
import { createHash } from 'node:crypto';
import { ProtocolError } from '../protocol/messages';
import { PgClientCode, PgClientError } from './errors';
import { encodePassword, encodeSaslInitialResponse, encodeSaslResponse, type AuthRequest } from './messages';
import { SCRAM_SHA_256, ScramClient } from './scram';

export interface AuthHost {
  send(data: Buffer): void;
  /** Authentication cannot succeed (unsupported method, no password, SCRAM refused). */
  failed(error: PgClientError): void;
  /** Still authenticating: a SCRAM step that finishes late looks before it sends. */
  authenticating(): boolean;
}

const METHOD_NAMES: Record<number, string> = { 2: 'Kerberos V5', 6: 'SCM credentials', 7: 'GSSAPI', 8: 'GSSAPI', 9: 'SSPI' };

export class Authenticator {
  private readonly user: string;
  private readonly password: string;
  private readonly host: AuthHost;
  private scram: ScramClient | null = null;
  /** Where the SCRAM exchange is: awaiting server-first, computing the proof, awaiting server-final, done. */
  private scramStep: 'first' | 'computing' | 'final' | 'done' = 'first';

  constructor(user: string, password: string, host: AuthHost) {
    this.user = user;
    this.password = password;
    this.host = host;
  }

  /**
   * One Authentication request: true at an AuthenticationOk that ends authentication, false while
   * more is to come (or after host.failed()). Throws ProtocolError for a request out of order.
   */
  onRequest(a: AuthRequest): boolean {
    switch (a.kind) {
      case 'ok':
        if (this.scram !== null && this.scramStep !== 'done') {
          this.fail('the server ended SCRAM authentication without proving it knows the password');
          return false;
        }
        return true;
      case 'cleartext':
        if (this.hasPassword('password')) this.host.send(encodePassword(this.password));
        return false;
      case 'md5':
        if (this.hasPassword('md5')) this.host.send(encodePassword(md5Password(this.user, this.password, a.salt)));
        return false;
      case 'sasl':
        if (this.scram !== null) throw new ProtocolError('AuthenticationSASL: a second SASL exchange');
        if (!a.mechanisms.includes(SCRAM_SHA_256)) {
          this.fail(`the server offers SASL mechanisms ${a.mechanisms.join(', ') || '(none)'}; this client speaks ${SCRAM_SHA_256} only`);
        } else if (this.hasPassword('scram-sha-256')) {
          this.scram = new ScramClient(this.password);
          this.host.send(encodeSaslInitialResponse(SCRAM_SHA_256, this.scram.initialResponse));
        }
        return false;
      case 'sasl-continue':
        this.serverFirst(a.data);
        return false;
      case 'sasl-final': {
        if (this.scram === null || this.scramStep !== 'final') throw new ProtocolError('AuthenticationSASLFinal out of order');
        try {
          this.scram.verify(a.data.toString('utf8'));
          this.scramStep = 'done';
        } catch (err) {
          this.fail(message(err));
        }
        return false;
      }
      case 'unsupported':
        this.fail(`the server asks for ${METHOD_NAMES[a.code] ?? 'an unknown'} authentication (request ${a.code}); this client supports trust, password, md5 and scram-sha-256`);
        return false;
    }
  }

  /** The server-first-message: the proof is computed off the event loop, then sent. */
  private serverFirst(data: Buffer): void {
    const scram = this.scram;
    if (scram === null || this.scramStep !== 'first') throw new ProtocolError('AuthenticationSASLContinue out of order');
    this.scramStep = 'computing';
    scram.respond(data.toString('utf8')).then(
      (final) => {
        if (!this.host.authenticating()) return;
        this.scramStep = 'final';
        this.host.send(encodeSaslResponse(Buffer.from(final, 'utf8')));
      },
      (err: unknown) => {
        if (this.host.authenticating()) this.fail(message(err));
      },
    );
  }

  /** False (and authentication failed) when the server asks for a password and none is set. */
  private hasPassword(method: string): boolean {
    if (this.password !== '') return true;
    this.fail(`the server asks for ${method} authentication and no password is set`);
    return false;
  }

  private fail(reason: string): void {
    this.host.failed(new PgClientError(PgClientCode.Auth, `authentication failed: ${reason}`));
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The MD5 password message: 'md5' + md5hex(md5hex(password + user) + salt).
 * @see https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-FLOW-START-UP (AuthenticationMD5Password)
 */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password, 'utf8').update(user, 'utf8').digest('hex');
  return 'md5' + createHash('md5').update(inner, 'latin1').update(salt).digest('hex');
}
