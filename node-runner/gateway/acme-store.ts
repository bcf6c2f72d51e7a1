/**
 * @module acme-store
 * What ACME keeps on disk, in its storage dir (`gateway.acme.storage`,
 * default `<state dir>/acme`), private like the state dir (0700, owned by
 * this user, not writable by others):
 *
 * ```
 * <storage>/account.key        the ACME account's private key (PEM, 0600)
 * <storage>/certs/<domain>.crt the certificate and its chain (PEM, leaf first)
 * <storage>/certs/<domain>.key its private key (PEM, 0600)
 * <storage>/challenges/<token> HTTP-01 responses in flight (acme-challenges.ts)
 * <storage>/alpn/<domain>.pem  TLS-ALPN-01 responses in flight (acme-tls-alpn.ts, 0600)
 * ```
 *
 * `certs/` is laid out as a TLS certificate dir (pairs by file name), so a
 * dir-based certificate store can serve it as it is. Every file is written
 * atomically (a temp file in the same dir, fsync, rename, fsync of the
 * dir): a reader sees the old file or the new one, never half of one; a
 * pair is written key first, then certificate, so a watcher that reloads
 * on the certificate finds its key already there.
 *
 * When to renew and how to talk to the CA is `acme.ts`'s business.
 */

import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ensurePrivateDir } from '../state-dir.ts';

/**
 * Writes `data` to `file` with `mode` so that readers see the old content
 * or the new, never a part: temp file beside it, fsync, rename, fsync of
 * the folder.
 *
 * @example
 * writeFileAtomic('/var/lib/hookgate/acme/certs/a.test.key', pem, 0o600);
 */
export function writeFileAtomic(file: string, data: string | Buffer, mode: number): void {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, file);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
  const dfd = openSync(dirname(file), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/**
 * Removes the files of `dir` that `names` picks (by file name), ignoring
 * what is already gone; a missing dir is empty.
 *
 * @example
 * removeFiles(challengesDir, (name) => name === token);
 */
export function removeFiles(dir: string, names: (name: string) => boolean): void {
  let found: string[];
  try {
    found = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of found) {
    if (!names(name)) continue;
    try {
      unlinkSync(join(dir, name));
    } catch {
      // already gone
    }
  }
}

/** A certificate on disk and what `acme.ts` schedules by. */
export interface StoredCert {
  domain: string;
  certFile: string;
  keyFile: string;
  /** ms since the epoch */
  notBefore: number;
  notAfter: number;
  /** hex, as openssl prints it */
  serial: string;
}

const DOMAIN_FILE = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$/;

/** The file paths of `domain`'s pair in `certsDir`. Throws for a name that is not a plain DNS name (it names files). */
export function certPaths(certsDir: string, domain: string): { certFile: string; keyFile: string } {
  if (!DOMAIN_FILE.test(domain)) throw new Error(`"${domain}" is not a DNS name an ACME certificate can be stored under`);
  return { certFile: join(certsDir, `${domain}.crt`), keyFile: join(certsDir, `${domain}.key`) };
}

/**
 * The ACME storage dir.
 *
 * Contract: `open()` before anything else; it makes the dirs (0700) or
 * refuses an existing one that is not private (`HookgateError`
 * `UNSAFE_PATH`). Reads return null for what is missing or unreadable
 * (never throw); writes throw on I/O errors. Synchronous, for one holder
 * (the runner that holds the state dir).
 */
export class AcmeStore {
  readonly dir: string;
  readonly certsDir: string;
  readonly challengesDir: string;
  /** TLS-ALPN-01 responses in flight (acme-tls-alpn.ts) */
  readonly alpnDir: string;

  constructor(dir: string) {
    this.dir = dir;
    this.certsDir = join(dir, 'certs');
    this.challengesDir = join(dir, 'challenges');
    this.alpnDir = join(dir, 'alpn');
  }

  open(): void {
    ensurePrivateDir(this.dir);
    mkdirSync(this.certsDir, { recursive: true, mode: 0o700 });
    mkdirSync(this.challengesDir, { recursive: true, mode: 0o700 });
    mkdirSync(this.alpnDir, { recursive: true, mode: 0o700 });
  }

  /** The account key (PEM), or null before the first order. */
  accountKey(): string | null {
    try {
      return readFileSync(join(this.dir, 'account.key'), 'utf8');
    } catch {
      return null;
    }
  }

  saveAccountKey(pem: string): void {
    writeFileAtomic(join(this.dir, 'account.key'), pem, 0o600);
  }

  /**
   * The certificate stored for `domain`, if it parses, names `domain` and
   * matches its key; null otherwise (it is then ordered anew).
   */
  read(domain: string): StoredCert | null {
    const { certFile, keyFile } = certPaths(this.certsDir, domain);
    try {
      const cert = new X509Certificate(readFileSync(certFile));
      if (!cert.checkHost(domain, { wildcards: false })) return null;
      if (!cert.checkPrivateKey(createPrivateKey(readFileSync(keyFile)))) return null;
      return { domain, certFile, keyFile, notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo), serial: cert.serialNumber };
    } catch {
      return null;
    }
  }

  /**
   * Stores a pair (key first, 0600; then the certificate chain, 0644) after
   * checking that the leaf names `domain` and matches the key. Throws
   * otherwise, leaving the stored pair as it was.
   */
  save(domain: string, certPem: string, keyPem: string): StoredCert {
    const { certFile, keyFile } = certPaths(this.certsDir, domain);
    const cert = new X509Certificate(certPem);
    if (!cert.checkHost(domain, { wildcards: false })) throw new Error(`the certificate issued for ${domain} does not name it (subject ${cert.subject}, names ${cert.subjectAltName ?? 'none'})`);
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) throw new Error(`the certificate issued for ${domain} does not match the key it was requested with`);
    writeFileAtomic(keyFile, keyPem, 0o600);
    writeFileAtomic(certFile, certPem, 0o644);
    return { domain, certFile, keyFile, notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo), serial: cert.serialNumber };
  }
}
