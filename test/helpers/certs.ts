/**
 * Test certificates, made at test time with the `openssl` CLI (node:crypto
 * cannot sign X.509): a throwaway CA, and leaf certificates it signs for
 * the names a test needs, so clients verify them for real against the CA.
 * EC P-256 keys: fast to make.
 */

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Whether the openssl CLI is installed (the TLS tests skip without it). */
export const HAS_OPENSSL = spawnSync('openssl', ['version']).status === 0;

/** Whether curl with HTTP/2 is installed. */
export const HAS_CURL_H2 = (() => {
  const r = spawnSync('curl', ['--version'], { encoding: 'utf8' });
  return r.status === 0 && /HTTP2/.test(r.stdout);
})();

export interface TestCa {
  cert: string;
  key: string;
  /** the CA certificate's PEM, for clients' `ca` */
  pem: string;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A self-signed CA in `dir`. */
export function makeCa(dir: string, name = 'hookgate test CA'): TestCa {
  mkdirSync(dir, { recursive: true });
  const cert = join(dir, 'ca.crt');
  const key = join(dir, 'ca.key');
  execFileSync('openssl', ['req', '-x509', ...EC, '-days', '2', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign', '-keyout', key, '-out', cert], { stdio: 'pipe' });
  return { cert, key, pem: readFileSync(cert, 'utf8') };
}

/**
 * A leaf certificate signed by `ca` for `names` (DNS names, or IPs),
 * written as `<dir>/<file>.crt` and `<dir>/<file>.key` (or the file names
 * given); `subject` (default: the first name) tells two certificates for
 * the same names apart.
 */
export function makeCert(ca: TestCa, dir: string, file: string, names: string[], opts: { certName?: string; keyName?: string; subject?: string } = {}): { cert: string; key: string } {
  mkdirSync(dir, { recursive: true });
  const cert = join(dir, opts.certName ?? `${file}.crt`);
  const key = join(dir, opts.keyName ?? `${file}.key`);
  const san = names.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  execFileSync('openssl', ['req', '-x509', '-CA', ca.cert, '-CAkey', ca.key, ...EC, '-days', '2', '-subj', `/CN=${opts.subject ?? names[0]}`, '-addext', `subjectAltName=${san}`, '-keyout', key, '-out', cert], { stdio: 'pipe' });
  return { cert, key };
}
