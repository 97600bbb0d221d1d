/**
 * Channel binding cannot span two TLS sessions. When pgscribe's connection to the server is TLS,
 * PostgreSQL offers SCRAM-SHA-256-PLUS; libpq on a plaintext client connection gives up on that
 * offer (it takes it for stripped TLS). So a plaintext client is offered what it can use, plain
 * SCRAM-SHA-256, which the server accepts from a client without TLS.
 *
 * @see https://www.postgresql.org/docs/15/sasl-authentication.html#SASL-SCRAM-SHA-256
 */
import { ProtocolError, decodeSaslMechanisms, encodeAuthenticationSasl } from '../protocol/messages';

/** The SASL mechanism with channel binding (tls-server-end-point). */
const SCRAM_PLUS = 'SCRAM-SHA-256-PLUS';

/**
 * An Authentication message from the server (whole, at buf[start, end)): the AuthenticationSASL
 * to send the client instead, or null to relay it as it is. Throws ProtocolError when malformed.
 */
export function withoutChannelBinding(buf: Buffer, start: number, end: number): Buffer | null {
  const mechanisms = decodeSaslMechanisms(buf, start, end);
  if (mechanisms === null || !mechanisms.includes(SCRAM_PLUS)) return null;
  const offered = mechanisms.filter((m) => m !== SCRAM_PLUS);
  return offered.length > 0 ? encodeAuthenticationSasl(offered) : null;
}

/** withoutChannelBinding(), with a malformed message's fault returned as a string (the session fails with 08006). */
export function offerOrFault(buf: Buffer, start: number, end: number): Buffer | string | null {
  try {
    return withoutChannelBinding(buf, start, end);
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    return err.message;
  }
}
