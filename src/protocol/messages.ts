/**
 * Decoders for the few messages pgscribe looks inside, and encoders for the ones it makes itself.
 * Every decoder takes a whole message as buf[start, end) with its header and validates bounds:
 * a malformed message throws ProtocolError, never reads past end.
 *
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html
 */
import { StartupCode } from './codes';

export class ProtocolError extends Error {
  readonly code = 'PGSCRIBE_PROTOCOL';
}

/** Index of the NUL ending the C string at off; throws when it runs past end. */
export function cstringEnd(buf: Buffer, off: number, end: number, what: string): number {
  const nul = buf.indexOf(0, off);
  if (nul < 0 || nul >= end) throw new ProtocolError(`${what}: missing string terminator`);
  return nul;
}

/** A typed message: type byte, Int32 length (itself included), body. */
export function encodeMessage(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

/** Throws unless n more bytes from off fit before end. */
export function need(off: number, n: number, end: number, what: string): void {
  if (off + n > end) throw new ProtocolError(`${what}: message too short`);
}

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; pid: number; secret: number }
  | { kind: 'startup'; major: number; minor: number; params: Map<string, string> }
  | { kind: 'unsupported'; code: number };

/**
 * An untyped startup-phase packet: SSLRequest, GSSENCRequest, CancelRequest or StartupMessage.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (StartupMessage)
 */
export function decodeStartup(buf: Buffer, start: number, end: number): StartupPacket {
  need(start, 8, end, 'startup packet');
  const code = buf.readUInt32BE(start + 4);
  switch (code) {
    case StartupCode.SSLRequest:
      return { kind: 'ssl' };
    case StartupCode.GSSENCRequest:
      return { kind: 'gssenc' };
    case StartupCode.CancelRequest:
      need(start, 16, end, 'CancelRequest');
      return { kind: 'cancel', pid: buf.readInt32BE(start + 8), secret: buf.readInt32BE(start + 12) };
  }
  const major = code >>> 16;
  if (major !== 3) return { kind: 'unsupported', code };
  const params = new Map<string, string>();
  let off = start + 8;
  while (off < end) {
    if (buf[off] === 0) break; // terminator
    const k = cstringEnd(buf, off, end, 'StartupMessage');
    const v = cstringEnd(buf, k + 1, end, 'StartupMessage');
    params.set(buf.toString('utf8', off, k), buf.toString('utf8', k + 1, v));
    off = v + 1;
  }
  if (off >= end) throw new ProtocolError('StartupMessage: missing terminator');
  return { kind: 'startup', major, minor: code & 0xffff, params };
}

/**
 * A StartupMessage's parameters read as the postmaster reads them, whatever its protocol version
 * and even when malformed: name/value strings until an empty name, a name without a value, or the
 * end. pgscribe relays such a packet and lets PostgreSQL judge it; this only names the session.
 */
export function readStartupParams(buf: Buffer, start: number, end: number): Map<string, string> {
  const params = new Map<string, string>();
  let off = start + 8;
  while (off < end && buf[off] !== 0) {
    let nameEnd = buf.indexOf(0, off);
    if (nameEnd < 0 || nameEnd > end) nameEnd = end;
    if (nameEnd + 1 >= end) break; // a name without its value
    let valueEnd = buf.indexOf(0, nameEnd + 1);
    if (valueEnd < 0 || valueEnd > end) valueEnd = end;
    params.set(buf.toString('utf8', off, nameEnd), buf.toString('utf8', nameEnd + 1, valueEnd));
    off = valueEnd + 1;
  }
  return params;
}

/**
 * ParameterStatus ('S' from the server): a run-time parameter's name and current value.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (ParameterStatus)
 */
export function decodeParameterStatus(buf: Buffer, start: number, end: number): { name: string; value: string } {
  const n1 = cstringEnd(buf, start + 5, end, 'ParameterStatus');
  const n2 = cstringEnd(buf, n1 + 1, end, 'ParameterStatus');
  return { name: buf.toString('utf8', start + 5, n1), value: buf.toString('utf8', n1 + 1, n2) };
}

/** Authentication request code of AuthenticationSASL. */
export const AUTH_SASL = 10;

/**
 * AuthenticationSASL ('R', code 10): the SASL mechanisms the server offers, in order; null for
 * another Authentication request.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (AuthenticationSASL)
 */
export function decodeSaslMechanisms(buf: Buffer, start: number, end: number): string[] | null {
  need(start + 5, 4, end, 'Authentication');
  if (buf.readInt32BE(start + 5) !== AUTH_SASL) return null;
  const out: string[] = [];
  let off = start + 9;
  for (;;) {
    const nul = cstringEnd(buf, off, end, 'AuthenticationSASL');
    if (nul === off) return out;
    out.push(buf.toString('utf8', off, nul));
    off = nul + 1;
  }
}

/**
 * AuthenticationSASL ('R', code 10) offering these mechanisms.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (AuthenticationSASL)
 */
export function encodeAuthenticationSasl(mechanisms: readonly string[]): Buffer {
  let size = 4 + 4 + 1;
  for (const m of mechanisms) size += Buffer.byteLength(m) + 1;
  const out = Buffer.alloc(1 + size);
  out[0] = 0x52;
  out.writeUInt32BE(size, 1);
  out.writeInt32BE(AUTH_SASL, 5);
  let off = 9;
  for (const m of mechanisms) off += out.write(m, off, 'utf8') + 1;
  return out;
}

/** ReadyForQuery ('Z') with status idle, as the cache replays it. */
export const READY_IDLE = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);

/** Field values of an ErrorResponse or NoticeResponse, by field code ('S', 'V', 'C', 'M', ...). */
export function decodeFields(buf: Buffer, start: number, end: number): Map<string, string> {
  const fields = new Map<string, string>();
  let off = start + 5;
  while (off < end && buf[off] !== 0) {
    const code = String.fromCharCode(buf[off]!);
    const nul = cstringEnd(buf, off + 1, end, 'ErrorResponse');
    fields.set(code, buf.toString('utf8', off + 1, nul));
    off = nul + 1;
  }
  if (off >= end) throw new ProtocolError('ErrorResponse: missing terminator');
  return fields;
}

/** True when an ErrorResponse carries severity FATAL or PANIC (the server is about to close). */
export function isFatalError(buf: Buffer, start: number, end: number): boolean {
  try {
    const f = decodeFields(buf, start, end);
    const sev = f.get('V') ?? f.get('S');
    return sev === 'FATAL' || sev === 'PANIC';
  } catch {
    return false;
  }
}

export interface ErrorFields {
  severity: 'ERROR' | 'FATAL';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/**
 * ErrorResponse ('E') made by the proxy itself.
 * @see https://www.postgresql.org/docs/15/protocol-error-fields.html
 */
export function encodeErrorResponse(e: ErrorFields): Buffer {
  const parts: [string, string][] = [
    ['S', e.severity],
    ['V', e.severity],
    ['C', e.code],
    ['M', e.message],
  ];
  if (e.detail !== undefined) parts.push(['D', e.detail]);
  if (e.hint !== undefined) parts.push(['H', e.hint]);
  let size = 4 + 1;
  for (const [, v] of parts) size += 1 + Buffer.byteLength(v) + 1;
  const out = Buffer.allocUnsafe(1 + size);
  out[0] = 0x45;
  out.writeUInt32BE(size, 1);
  let off = 5;
  for (const [k, v] of parts) {
    out[off++] = k.charCodeAt(0);
    off += out.write(v, off, 'utf8');
    out[off++] = 0;
  }
  out[off] = 0;
  return out;
}

/** The single-byte answer to SSLRequest/GSSENCRequest meaning "not supported, carry on in plaintext". */
export const NEGOTIATION_REFUSED = Buffer.from('N');

/** The single-byte answer to SSLRequest meaning "go ahead with the TLS handshake". */
export const SSL_ACCEPTED = Buffer.from('S');

/**
 * SSLRequest packet, sent to the upstream before its StartupMessage or CancelRequest.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (SSLRequest)
 */
export function encodeSslRequest(): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeInt32BE(8, 0);
  b.writeInt32BE(StartupCode.SSLRequest, 4);
  return b;
}

/** Terminate ('X'), sent upstream when a client vanishes without saying goodbye. */
export const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);

/**
 * CancelRequest packet for the upstream.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (CancelRequest)
 */
export function encodeCancelRequest(pid: number, secret: number): Buffer {
  const b = Buffer.allocUnsafe(16);
  b.writeInt32BE(16, 0);
  b.writeInt32BE(StartupCode.CancelRequest, 4);
  b.writeInt32BE(pid, 8);
  b.writeInt32BE(secret, 12);
  return b;
}

/**
 * A RowDescription ('T', whole at buf[start, end)) as a result shape: its bytes as latin1 with
 * every column's format code set to 0. A Describe of a statement gives 0 for formats not chosen
 * yet, a Describe of a portal the formats its Bind chose; the shape (names, tables, types,
 * modifiers) is what a statement's Parse fixes. A malformed one is returned as it is.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (RowDescription)
 */
export function rowShape(buf: Buffer, start: number, end: number): string {
  if (end - start < 7) return buf.toString('latin1', start, end);
  const copy = Buffer.from(buf.subarray(start, end));
  const n = copy.readInt16BE(5);
  let off = 7;
  for (let i = 0; i < n; i++) {
    const nul = copy.indexOf(0, off);
    if (nul < 0 || nul + 19 > copy.length) return buf.toString('latin1', start, end);
    // After the name: table OID (4), column number (2), type OID (4), type size (2), type modifier (4), format (2).
    copy.writeInt16BE(0, nul + 17);
    off = nul + 19;
  }
  return copy.toString('latin1');
}
