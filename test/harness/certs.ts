// Certificates for tests and benchmarks, made with openssl in a temp dir (removed at exit): a CA; a server
// certificate for 127.0.0.1 and localhost (SAN IP:127.0.0.1, DNS:localhost) and a second one with
// the same names (to see a reload); a server certificate that names another host; a client
// certificate (CN=cert_user); and from another CA, a client certificate that must be refused.
// Keys are EC P-256 (fast to make), unencrypted PEM, mode 0600 as libpq and PostgreSQL want them.

import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface KeyPair {
  cert: string;
  key: string;
}

export interface TestCerts {
  dir: string;
  /** The test CA's certificate (what sslrootcert, --tls-ca and --upstream-tls-ca name). */
  ca: string;
  /** Another CA: verification against it must fail. */
  otherCa: string;
  /** Signed by ca, for 127.0.0.1 and localhost. */
  server: KeyPair;
  /** Signed by ca, same names, another key and CN=pgscribe-reloaded (for the SIGHUP test). */
  server2: KeyPair;
  /** Signed by ca, for wrong.example only (verify-full must refuse it). */
  wrongName: KeyPair;
  /** Signed by ca, CN=cert_user, clientAuth. */
  client: KeyPair;
  /** Signed by otherCa, CN=cert_user. */
  otherClient: KeyPair;
}

const OPENSSL = fs.existsSync('/usr/bin/openssl') ? '/usr/bin/openssl' : 'openssl';

function openssl(args: string[], cwd: string): void {
  execFileSync(OPENSSL, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function newKey(dir: string, name: string): string {
  const key = path.join(dir, `${name}.key`);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key], dir);
  fs.chmodSync(key, 0o600);
  return key;
}

function makeCa(dir: string, name: string): { cert: string; key: string } {
  const key = newKey(dir, name);
  const cert = path.join(dir, `${name}.crt`);
  openssl(
    ['req', '-x509', '-new', '-key', key, '-out', cert, '-days', '3', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  return { cert, key };
}

let serial = 1000;

function issue(dir: string, ca: { cert: string; key: string }, name: string, cn: string, ext: string[]): KeyPair {
  const key = newKey(dir, name);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.crt`);
  const extFile = path.join(dir, `${name}.ext`);
  fs.writeFileSync(extFile, ['basicConstraints=CA:FALSE', ...ext].join('\n') + '\n');
  openssl(['req', '-new', '-key', key, '-out', csr, '-subj', `/CN=${cn}`], dir);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', String(serial++), '-days', '2', '-out', cert, '-extfile', extFile], dir);
  return { cert, key };
}

const SERVER_EXT = ['keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth', 'subjectAltName=IP:127.0.0.1,DNS:localhost'];
const CLIENT_EXT = ['keyUsage=critical,digitalSignature', 'extendedKeyUsage=clientAuth'];

/** Make the whole set (about a second of openssl). */
export function makeCerts(): TestCerts {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-certs-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  // Readable by the postgres OS user, which copies nothing from here (pg-cluster copies as root).
  fs.chmodSync(dir, 0o755);
  const ca = makeCa(dir, 'ca');
  const other = makeCa(dir, 'other-ca');
  return {
    dir,
    ca: ca.cert,
    otherCa: other.cert,
    server: issue(dir, ca, 'server', 'localhost', SERVER_EXT),
    server2: issue(dir, ca, 'server2', 'pgscribe-reloaded', SERVER_EXT),
    wrongName: issue(dir, ca, 'wrong-name', 'wrong.example', ['keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth', 'subjectAltName=DNS:wrong.example']),
    client: issue(dir, ca, 'client', 'cert_user', CLIENT_EXT),
    otherClient: issue(dir, other, 'other-client', 'cert_user', CLIENT_EXT),
  };
}

/** SHA-256 fingerprint of a PEM certificate file, as TLSSocket.getPeerCertificate() shows it. */
export function fingerprint(certFile: string): string {
  return new crypto.X509Certificate(fs.readFileSync(certFile)).fingerprint256;
}
