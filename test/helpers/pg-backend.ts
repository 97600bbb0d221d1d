// Server messages built by hand, for the tests of pgscribe's own PostgreSQL client (src/pg/).
// Independent of src/: each message is written out field by field from the protocol docs.
import { cstr, enc, i16, i32 } from '../harness/wire';

const fieldsBody = (fields: [string, string][]): Buffer =>
  Buffer.concat([...fields.map(([k, v]) => Buffer.concat([Buffer.from(k, 'latin1'), cstr(v)])), Buffer.from([0])]);

export const be = {
  authOk: () => enc.raw('R', i32(0)),
  authCode: (code: number, rest: Buffer = Buffer.alloc(0)) => enc.raw('R', Buffer.concat([i32(code), rest])),
  authCleartext: () => enc.raw('R', i32(3)),
  authMd5: (salt: Buffer) => enc.raw('R', Buffer.concat([i32(5), salt])),
  authSasl: (mechanisms: string[]) => enc.raw('R', Buffer.concat([i32(10), ...mechanisms.map(cstr), Buffer.from([0])])),
  saslContinue: (data: string) => enc.raw('R', Buffer.concat([i32(11), Buffer.from(data, 'utf8')])),
  saslFinal: (data: string) => enc.raw('R', Buffer.concat([i32(12), Buffer.from(data, 'utf8')])),
  keyData: (pid: number, secret: number) => enc.raw('K', Buffer.concat([i32(pid), i32(secret)])),
  param: (name: string, value: string) => enc.raw('S', Buffer.concat([cstr(name), cstr(value)])),
  ready: (status: 'I' | 'T' | 'E' = 'I') => enc.raw('Z', Buffer.from(status, 'latin1')),
  /** RowDescription with text columns (type 25) unless `format` says otherwise. */
  rowDesc: (names: string[], format = 0) =>
    enc.raw('T', Buffer.concat([i16(names.length), ...names.flatMap((n, k) => [cstr(n), i32(16384), i16(k + 1), i32(25), i16(-1), i32(-1), i16(format)])])),
  dataRow: (values: (string | null)[]) =>
    enc.raw('D', Buffer.concat([i16(values.length), ...values.flatMap((v) => (v === null ? [i32(-1)] : [i32(Buffer.byteLength(v)), Buffer.from(v, 'utf8')]))])),
  complete: (tag: string) => enc.raw('C', cstr(tag)),
  emptyQuery: () => enc.raw('I', Buffer.alloc(0)),
  error: (fields: [string, string][]) => enc.raw('E', fieldsBody(fields)),
  notice: (fields: [string, string][]) => enc.raw('N', fieldsBody(fields)),
  /** An ERROR with severity, SQLSTATE and message, as PostgreSQL sends them. */
  sqlError: (code: string, message: string, severity = 'ERROR') => enc.raw('E', fieldsBody([['S', severity], ['V', severity], ['C', code], ['M', message]])),
  negotiate: (minor: number, options: string[]) => enc.raw('v', Buffer.concat([i32(minor), i32(options.length), ...options.map(cstr)])),
  copyIn: () => enc.raw('G', Buffer.concat([Buffer.from([0]), i16(1), i16(0)])),
  copyOut: () => enc.raw('H', Buffer.concat([Buffer.from([0]), i16(1), i16(0)])),
  copyData: (data: string) => enc.raw('d', Buffer.from(data, 'utf8')),
  copyDone: () => enc.raw('c', Buffer.alloc(0)),
};
