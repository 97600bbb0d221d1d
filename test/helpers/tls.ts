// A raw TLS client for the protocol tests: SSLRequest, 'S', then a TLS session that the
// RawClient of wire.ts reads and writes like a plaintext one.

import * as fs from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { KeyPair } from '../harness/certs';
import { RawClient, enc } from '../harness/wire';

/**
 * Connect, send SSLRequest, expect 'S', and start TLS (no verification unless ca is given).
 * Resolves with a RawClient over the TLS session (its `sock` is the TLSSocket).
 */
export async function connectTls(port: number, opts: { ca?: string; cert?: KeyPair; servername?: string; plaintextAfterRequest?: Buffer } = {}): Promise<RawClient> {
  const raw = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => resolve(s));
    s.once('error', reject);
  });
  raw.setNoDelay(true);
  // plaintextAfterRequest: bytes sent in the clear right behind the SSLRequest (CVE-2021-23214).
  raw.write(opts.plaintextAfterRequest === undefined ? enc.sslRequest() : Buffer.concat([enc.sslRequest(), opts.plaintextAfterRequest]));
  const answer = await new Promise<Buffer>((resolve, reject) => {
    raw.once('data', resolve);
    raw.once('close', () => reject(new Error('closed before answering SSLRequest')));
  });
  if (answer.length !== 1 || answer[0] !== 0x53) {
    raw.destroy();
    throw new Error(`SSLRequest answered ${JSON.stringify(answer.toString('latin1'))}, not 'S'`);
  }
  const sock = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const t = tls.connect({
      socket: raw,
      ...(opts.ca === undefined ? { rejectUnauthorized: false } : { ca: fs.readFileSync(opts.ca), servername: opts.servername ?? 'localhost' }),
      ...(opts.cert === undefined ? {} : { cert: fs.readFileSync(opts.cert.cert), key: fs.readFileSync(opts.cert.key) }),
    });
    t.once('secureConnect', () => resolve(t));
    t.once('error', reject);
  });
  return new RawClient(sock);
}
