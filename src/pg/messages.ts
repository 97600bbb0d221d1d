/**
 * The server messages pgscribe's own connection reads, and the client messages it writes.
 *
 * Each decoder takes one whole message as buf[start, end) with its 5-byte header (as the Framer
 * hands it over) and trusts nothing in it: counts and lengths are checked against `end`, a
 * message must end exactly where its last field does, and a fault throws ProtocolError without
 * reading past `end`. Values that outlive the call are copied (the view is the socket's chunk).
 *
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html
 */
import { StartupCode, type TxStatus } from '../protocol/codes';
import { ProtocolError, cstringEnd, decodeFields, encodeMessage, need } from '../protocol/messages';
import { PgError } from './errors';

/** Throws unless the message ends at off. */
function atEnd(off: number, end: number, what: string): void {
  if (off !== end) throw new ProtocolError(`${what}: ${end - off} unexpected bytes at the end`);
}

/** What an Authentication ('R') message asks for. */
export type AuthRequest =
  | { kind: 'ok' }
  | { kind: 'cleartext' }
  | { kind: 'md5'; salt: Buffer }
  | { kind: 'sasl'; mechanisms: string[] }
  | { kind: 'sasl-continue'; data: Buffer }
  | { kind: 'sasl-final'; data: Buffer }
  /** Kerberos (2), SCM credentials (6), GSSAPI (7, 8), SSPI (9), or a code unknown today. */
  | { kind: 'unsupported'; code: number };

/** The request codes of the Authentication messages, as the server numbers them. */
export const AuthCode = { Ok: 0, Cleartext: 3, Md5: 5, Sasl: 10, SaslContinue: 11, SaslFinal: 12 } as const;

/**
 * Authentication ('R'): AuthenticationOk, ...CleartextPassword, ...MD5Password (4-byte salt),
 * ...SASL (mechanism names, an empty name ends the list), ...SASLContinue and ...SASLFinal (the
 * mechanism's data: the rest of the message).
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (AuthenticationOk ff.)
 */
export function decodeAuthentication(buf: Buffer, start: number, end: number): AuthRequest {
  need(start + 5, 4, end, 'Authentication');
  const code = buf.readInt32BE(start + 5);
  const off = start + 9;
  switch (code) {
    case AuthCode.Ok:
      atEnd(off, end, 'AuthenticationOk');
      return { kind: 'ok' };
    case AuthCode.Cleartext:
      atEnd(off, end, 'AuthenticationCleartextPassword');
      return { kind: 'cleartext' };
    case AuthCode.Md5:
      need(off, 4, end, 'AuthenticationMD5Password');
      atEnd(off + 4, end, 'AuthenticationMD5Password');
      return { kind: 'md5', salt: Buffer.from(buf.subarray(off, off + 4)) };
    case AuthCode.Sasl: {
      const mechanisms: string[] = [];
      let p = off;
      for (;;) {
        const nul = cstringEnd(buf, p, end, 'AuthenticationSASL');
        if (nul === p) break;
        mechanisms.push(buf.toString('utf8', p, nul));
        p = nul + 1;
      }
      atEnd(p + 1, end, 'AuthenticationSASL');
      return { kind: 'sasl', mechanisms };
    }
    case AuthCode.SaslContinue:
      return { kind: 'sasl-continue', data: Buffer.from(buf.subarray(off, end)) };
    case AuthCode.SaslFinal:
      return { kind: 'sasl-final', data: Buffer.from(buf.subarray(off, end)) };
    default:
      return { kind: 'unsupported', code };
  }
}

/**
 * BackendKeyData ('K'): the backend's process id and the secret a CancelRequest needs.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (BackendKeyData)
 */
export function decodeBackendKeyData(buf: Buffer, start: number, end: number): { pid: number; secret: number } {
  need(start + 5, 8, end, 'BackendKeyData');
  atEnd(start + 13, end, 'BackendKeyData');
  return { pid: buf.readInt32BE(start + 5), secret: buf.readInt32BE(start + 9) };
}

/**
 * ReadyForQuery ('Z'): the transaction status, I, T or E.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (ReadyForQuery)
 */
export function decodeReadyForQuery(buf: Buffer, start: number, end: number): TxStatus {
  need(start + 5, 1, end, 'ReadyForQuery');
  atEnd(start + 6, end, 'ReadyForQuery');
  const s = buf[start + 5]!;
  if (s !== 0x49 && s !== 0x54 && s !== 0x45) throw new ProtocolError(`ReadyForQuery: unknown transaction status ${s}`);
  return s as TxStatus;
}

/**
 * CommandComplete ('C'): the command tag, e.g. `SELECT 3`, `INSERT 0 1`.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (CommandComplete)
 */
export function decodeCommandComplete(buf: Buffer, start: number, end: number): string {
  const nul = cstringEnd(buf, start + 5, end, 'CommandComplete');
  atEnd(nul + 1, end, 'CommandComplete');
  return buf.toString('utf8', start + 5, nul);
}

/** A RowDescription as this client uses it: the column names, and whether any is in binary. */
export interface RowShape {
  names: string[];
  binary: boolean;
}

/**
 * RowDescription ('T'): Int16 count, then per field its name and 18 bytes (table OID, column
 * number, type OID, type size, type modifier, format code).
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (RowDescription)
 */
export function decodeRowDescription(buf: Buffer, start: number, end: number): RowShape {
  need(start + 5, 2, end, 'RowDescription');
  const count = buf.readInt16BE(start + 5);
  if (count < 0) throw new ProtocolError(`RowDescription: negative field count ${count}`);
  const names: string[] = [];
  let binary = false;
  let off = start + 7;
  for (let i = 0; i < count; i++) {
    const nul = cstringEnd(buf, off, end, 'RowDescription');
    names.push(buf.toString('utf8', off, nul));
    need(nul + 1, 18, end, 'RowDescription');
    if (buf.readInt16BE(nul + 17) !== 0) binary = true;
    off = nul + 19;
  }
  atEnd(off, end, 'RowDescription');
  return { names, binary };
}

/**
 * DataRow ('D'): Int16 count, then per column an Int32 length (-1: NULL) and that many bytes,
 * read as UTF-8 text (the connection asks for client_encoding UTF8).
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (DataRow)
 */
export function decodeDataRow(buf: Buffer, start: number, end: number): (string | null)[] {
  need(start + 5, 2, end, 'DataRow');
  const count = buf.readInt16BE(start + 5);
  if (count < 0) throw new ProtocolError(`DataRow: negative column count ${count}`);
  const row: (string | null)[] = [];
  let off = start + 7;
  for (let i = 0; i < count; i++) {
    need(off, 4, end, 'DataRow');
    const len = buf.readInt32BE(off);
    off += 4;
    if (len === -1) {
      row.push(null);
      continue;
    }
    if (len < 0) throw new ProtocolError(`DataRow: invalid column length ${len}`);
    need(off, len, end, 'DataRow');
    row.push(buf.toString('utf8', off, off + len));
    off += len;
  }
  atEnd(off, end, 'DataRow');
  return row;
}

/**
 * CopyInResponse, CopyOutResponse, CopyBothResponse ('G', 'H', 'W'): the overall format (0 text,
 * 1 binary) and an Int16 format per column. Checked and returned; replication streams say 0, none.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (CopyBothResponse)
 */
export function decodeCopyResponse(buf: Buffer, start: number, end: number, what: string): { format: number; columns: number } {
  need(start + 5, 3, end, what);
  const format = buf[start + 5]!;
  if (format > 1) throw new ProtocolError(`${what}: unknown format ${format}`);
  const columns = buf.readInt16BE(start + 6);
  if (columns < 0) throw new ProtocolError(`${what}: negative column count ${columns}`);
  need(start + 8, 2 * columns, end, what);
  atEnd(start + 8 + 2 * columns, end, what);
  return { format, columns };
}

/**
 * ErrorResponse ('E') as a PgError (and NoticeResponse, checked the same way). The server
 * always sends the severity, the SQLSTATE and the message: a response without them is refused.
 * @see https://www.postgresql.org/docs/15/protocol-error-fields.html
 */
export function decodeError(buf: Buffer, start: number, end: number): PgError {
  const fields = decodeFields(buf, start, end);
  for (const f of ['S', 'C', 'M']) {
    if (!fields.has(f)) throw new ProtocolError(`ErrorResponse: no field '${f}'`);
  }
  return new PgError(fields);
}

/**
 * NegotiateProtocolVersion ('v'): the newest minor version the server speaks and the protocol
 * options it did not recognise.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (NegotiateProtocolVersion)
 */
export function decodeNegotiateProtocolVersion(buf: Buffer, start: number, end: number): { minor: number; unrecognized: string[] } {
  need(start + 5, 8, end, 'NegotiateProtocolVersion');
  const minor = buf.readInt32BE(start + 5);
  const count = buf.readInt32BE(start + 9);
  if (count < 0) throw new ProtocolError(`NegotiateProtocolVersion: negative option count ${count}`);
  const unrecognized: string[] = [];
  let off = start + 13;
  for (let i = 0; i < count; i++) {
    const nul = cstringEnd(buf, off, end, 'NegotiateProtocolVersion');
    unrecognized.push(buf.toString('utf8', off, nul));
    off = nul + 1;
  }
  atEnd(off, end, 'NegotiateProtocolVersion');
  return { minor, unrecognized };
}

// ---- encoders ---------------------------------------------------------------------------------

/** A C string: refuses an embedded NUL, which would end the string early on the server. */
function cstring(s: string, what: string): Buffer {
  if (s.includes('\0')) throw new ProtocolError(`${what} cannot contain a NUL character`);
  return Buffer.from(s + '\0', 'utf8');
}


/**
 * StartupMessage for protocol 3.0 with these parameters (user, database, options, ...).
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (StartupMessage)
 */
export function encodeStartup(params: ReadonlyMap<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of params) parts.push(cstring(k, 'a startup parameter name'), cstring(v, `startup parameter ${k}`));
  const body = Buffer.concat([...parts, Buffer.from([0])]);
  const out = Buffer.allocUnsafe(8 + body.length);
  out.writeUInt32BE(8 + body.length, 0);
  out.writeUInt32BE(StartupCode.ProtocolV3, 4);
  body.copy(out, 8);
  return out;
}

/**
 * PasswordMessage ('p'): a cleartext or md5-hashed password.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (PasswordMessage)
 */
export function encodePassword(password: string): Buffer {
  return encodeMessage(0x70, cstring(password, 'a password'));
}

/**
 * SASLInitialResponse ('p'): the chosen mechanism and its first message (Int32 length, bytes).
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (SASLInitialResponse)
 */
export function encodeSaslInitialResponse(mechanism: string, data: Buffer): Buffer {
  const len = Buffer.allocUnsafe(4);
  len.writeInt32BE(data.length, 0);
  return encodeMessage(0x70, Buffer.concat([cstring(mechanism, 'a SASL mechanism'), len, data]));
}

/**
 * SASLResponse ('p'): the mechanism's next message, the rest of the message.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (SASLResponse)
 */
export function encodeSaslResponse(data: Buffer): Buffer {
  return encodeMessage(0x70, data);
}

/**
 * Query ('Q'): a simple query string, one statement or several.
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (Query)
 */
export function encodeQuery(sql: string): Buffer {
  return encodeMessage(0x51, cstring(sql, 'a query string'));
}

/**
 * CopyFail ('f'): ends a COPY FROM STDIN with an error (this client sends no COPY data).
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html (CopyFail)
 */
export function encodeCopyFail(reason: string): Buffer {
  return encodeMessage(0x66, cstring(reason, 'a CopyFail reason'));
}
