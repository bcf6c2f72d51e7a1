/**
 * @module gateway/cert-store
 * The certificates of one TLS listener: loaded from `tls: { cert, key }`
 * or from a folder of pairs (`tls: { dir }`, and folders added later, such
 * as ACME's), chosen per connection by the client's SNI name, and swapped
 * without dropping a connection when the files change (watched) or on
 * `reload()` (SIGHUP): connections that are open keep the context they
 * shook hands with; new handshakes get the new one.
 *
 * Folder naming, pairs by file name (`<name>` is the pair's name):
 *   certificate: `<name>.crt`, `<name>.pem`, `<name>.cert.pem` or `<name>.crt.pem`
 *   private key: `<name>.key`, `<name>.key.pem` or `<name>-key.pem`
 *   or one `<name>.pem` holding the certificate chain and the key.
 * Hidden files (`.name`) are ignored, so a writer can replace a pair
 * atomically by renaming temporary files into place.
 *
 * Choice by SNI: a name the certificate lists (its DNS subject alternative
 * names, else its common name), exact before wildcard (`*.example.com`
 * covers one label); among pairs naming the same, the first folder, then
 * the first file name wins. The default certificate (clients without SNI,
 * or with a name no pair covers): the pair `tls.default` names, else the
 * pair named `default`, else the first pair by file name.
 *
 * TLS 1.2 and 1.3 only, with forward-secret AEAD suites (`TLS_OPTIONS`).
 * Listening is `tls-listener.ts`'s.
 */

import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import type { TlsSettings } from '../../src/core/config/config-listeners.ts';
import type { Logger } from '../../src/core/log.ts';

/** TLS 1.2+; TLS 1.3's suites, then TLS 1.2's ECDHE with AES-GCM or ChaCha20-Poly1305 (Mozilla's "intermediate" minus DHE). */
export const TLS_OPTIONS: Pick<SecureContextOptions, 'minVersion' | 'ciphers'> = {
  minVersion: 'TLSv1.2',
  ciphers: [
    'TLS_AES_128_GCM_SHA256',
    'TLS_AES_256_GCM_SHA384',
    'TLS_CHACHA20_POLY1305_SHA256',
    'ECDHE-ECDSA-AES128-GCM-SHA256',
    'ECDHE-RSA-AES128-GCM-SHA256',
    'ECDHE-ECDSA-AES256-GCM-SHA384',
    'ECDHE-RSA-AES256-GCM-SHA384',
    'ECDHE-ECDSA-CHACHA20-POLY1305',
    'ECDHE-RSA-CHACHA20-POLY1305',
  ].join(':'),
};

/** One loaded certificate, as the admin API lists it. */
export interface CertificateInfo {
  /** the pair's name (file name without extension; for `tls.cert`, the cert file's) */
  name: string;
  file: string;
  key_file: string;
  /** the names it is chosen by (DNS SANs, else the CN) */
  names: string[];
  /** IP address SANs (listed, never chosen by SNI) */
  ips: string[];
  subject: string;
  issuer: string;
  /** ISO 8601 */
  not_before: string;
  not_after: string;
  /** whether clients without a matching SNI name get it */
  default: boolean;
}

interface Pair {
  info: CertificateInfo;
  cert: string;
  key: string;
  context: SecureContext;
  notAfter: number;
}

/** A complete, consistent set of pairs; swapped as a whole. */
interface Loaded {
  pairs: Pair[];
  exact: Map<string, Pair>;
  wildcard: Map<string, Pair>;
  fallback: Pair;
}

type Source = { kind: 'pair'; cert: string; key: string } | { kind: 'dir'; dir: string };

const CERT_SUFFIXES = ['.cert.pem', '.crt.pem', '.crt', '.pem'];
const KEY_SUFFIXES = ['.key.pem', '-key.pem', '.key'];

/** A certificate that cannot be loaded; the message names the file and says why. */
export class CertificateError extends Error {
  readonly code = 'BAD_CERTIFICATE';
}

/**
 * Makes `tls.cert`, `tls.key` and `tls.dir` of the gateway (and of each
 * listener) absolute against `baseDir`, in place (config-file.ts).
 */
export function resolveTlsPaths(gateway: { tls?: TlsSettings; listeners?: Array<{ tls?: TlsSettings }> }, baseDir: string): void {
  const at = (p: string | undefined) => (p === undefined || isAbsolute(p) ? p : resolve(baseDir, p));
  const fix = (t: TlsSettings | undefined) => {
    if (!t) return;
    if (t.cert !== undefined) t.cert = at(t.cert);
    if (t.key !== undefined) t.key = at(t.key);
    if (t.dir !== undefined) t.dir = at(t.dir);
  };
  fix(gateway.tls);
  for (const l of gateway.listeners ?? []) fix(l.tls);
}

/** The pair name and role of a file in a certificate folder, or null for a file that is neither. */
function roleOf(file: string): { name: string; role: 'cert' | 'key' } | null {
  if (file.startsWith('.')) return null;
  for (const s of KEY_SUFFIXES) if (file.endsWith(s) && file.length > s.length) return { name: file.slice(0, -s.length), role: 'key' };
  for (const s of CERT_SUFFIXES) if (file.endsWith(s) && file.length > s.length) return { name: file.slice(0, -s.length), role: 'cert' };
  return null;
}

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CertificateError(`${file}: cannot read the ${what} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** Loads one pair; throws CertificateError naming the file. */
function loadPair(name: string, certFile: string, keyFile: string): Pair {
  const cert = readPem(certFile, 'certificate');
  const key = keyFile === certFile ? cert : readPem(keyFile, 'private key');
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new CertificateError(`${certFile}: not a PEM certificate (${(err as Error).message})`);
  }
  let context: SecureContext;
  try {
    context = createSecureContext({ cert, key, ...TLS_OPTIONS });
  } catch (err) {
    const msg = (err as Error).message;
    throw new CertificateError(`${keyFile}: ${/mismatch/i.test(msg) ? 'the private key does not belong to the certificate ' + certFile : `cannot use this key with ${certFile} (${msg})`}`);
  }
  const dns: string[] = [];
  const ips: string[] = [];
  for (const part of (x509.subjectAltName ?? '').split(/,\s*/)) {
    if (part.startsWith('DNS:')) dns.push(part.slice(4).toLowerCase());
    else if (part.startsWith('IP Address:')) ips.push(part.slice(11));
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject)?.[1];
  const names = dns.length ? dns : cn ? [cn.toLowerCase()] : [];
  const notAfter = new Date(x509.validTo).getTime();
  return {
    info: { name, file: certFile, key_file: keyFile, names, ips, subject: x509.subject.replace(/\n/g, ', '), issuer: x509.issuer.replace(/\n/g, ', '), not_before: new Date(x509.validFrom).toISOString(), not_after: new Date(notAfter).toISOString(), default: false },
    cert,
    key,
    context,
    notAfter,
  };
}

/**
 * The pairs of a folder, by file name; bad or incomplete pairs are
 * reported through `skip`, not thrown, and one that loaded before
 * (`previous`, by certificate file) is kept while its files are being
 * replaced (a new certificate beside the old key).
 */
function loadDir(dir: string, skip: (why: string) => void, previous: ReadonlyMap<string, Pair> = new Map()): Pair[] {
  let files: string[];
  try {
    files = readdirSync(dir).sort();
  } catch (err) {
    throw new CertificateError(`${dir}: cannot read the certificate folder (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const byName = new Map<string, { cert?: string; key?: string }>();
  for (const f of files) {
    const r = roleOf(f);
    if (!r) continue;
    const e = byName.get(r.name) ?? {};
    // The first file of a role wins (sorted), e.g. `a.crt` over `a.pem`.
    if (r.role === 'cert') e.cert ??= join(dir, f);
    else e.key ??= join(dir, f);
    byName.set(r.name, e);
  }
  const out: Pair[] = [];
  for (const [name, e] of [...byName].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!e.cert) {
      skip(`${e.key}: a private key without a certificate (expected ${name}.crt or ${name}.pem beside it)`);
      continue;
    }
    let keyFile = e.key;
    if (!keyFile) {
      // One file with both, as some tools write them.
      let text = '';
      try {
        text = readFileSync(e.cert, 'utf8');
      } catch {
        // reported by loadPair
      }
      if (!/-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/.test(text)) {
        skip(`${e.cert}: a certificate without a private key (expected ${name}.key beside it)`);
        continue;
      }
      keyFile = e.cert;
    }
    try {
      out.push(loadPair(name, e.cert, keyFile));
    } catch (err) {
      const before = previous.get(e.cert);
      skip(`${(err as Error).message}${before ? '; still serving the one loaded before' : ''}`);
      if (before) out.push(before);
    }
  }
  return out;
}

export interface CertStoreOptions {
  tls: TlsSettings;
  /** the listener's address, for logs and the admin API */
  listener: string;
  logger: Logger;
  /** how long file events are gathered before one reload (default 100 ms; a writer replaces cert and key in two steps) */
  settleMs?: number;
}

/**
 * One listener's certificates.
 *
 * Contract: the constructor loads everything once and throws
 * `CertificateError` when there is nothing to serve (a bad `cert`/`key`,
 * an unreadable folder, a folder without a usable pair, an unknown
 * `default`). After that nothing throws: `reload()` (and a file change,
 * once `watch()` is on) builds a complete new set and swaps it in, or
 * logs why not and keeps the current one. `close()` stops watching;
 * idempotent.
 *
 * @example
 * const store = new CertStore({ tls: { dir: '/etc/hookgate/certs' }, listener: ':443', logger });
 * tls.createServer({ SNICallback: store.sniCallback, ...store.defaultOptions() });
 */
export class CertStore {
  readonly listener: string;
  #tls: TlsSettings;
  #log: Logger;
  #sources: Source[];
  #loaded: Loaded;
  #watchers: FSWatcher[] = [];
  #watching = false;
  #timer: NodeJS.Timeout | null = null;
  #settleMs: number;
  #listeners: Array<() => void> = [];
  /** bumped by every swap (tests and logs tell reloads apart by it) */
  generation = 0;

  constructor(opts: CertStoreOptions) {
    this.listener = opts.listener;
    this.#tls = opts.tls;
    this.#log = opts.logger;
    this.#settleMs = opts.settleMs ?? 100;
    const t = opts.tls;
    this.#sources = t.dir !== undefined ? [{ kind: 'dir', dir: t.dir }] : [{ kind: 'pair', cert: t.cert!, key: t.key! }];
    this.#loaded = this.#load(true);
  }

  /** Calls `fn` after each swap (the listener updates its default context). Returns the unsubscribe. */
  onChange(fn: () => void): () => void {
    this.#listeners.push(fn);
    return () => (this.#listeners = this.#listeners.filter((f) => f !== fn));
  }

  /** The certificates served now. */
  list(): CertificateInfo[] {
    return this.#loaded.pairs.map((p) => ({ ...p.info, default: p === this.#loaded.fallback }));
  }

  /** Options for a `tls.Server` (or `setSecureContext`) serving the default certificate. */
  defaultOptions(): SecureContextOptions {
    const d = this.#loaded.fallback;
    return { cert: d.cert, key: d.key, ...TLS_OPTIONS };
  }

  /** The context for a client's SNI name. */
  contextFor(servername: string): SecureContext {
    const l = this.#loaded;
    const name = servername.toLowerCase().replace(/\.$/, '');
    const exact = l.exact.get(name);
    if (exact) return exact.context;
    const dot = name.indexOf('.');
    const wild = dot > 0 ? l.wildcard.get(name.slice(dot + 1)) : undefined;
    return (wild ?? l.fallback).context;
  }

  /** `tls.Server`'s SNICallback. */
  readonly sniCallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => {
    cb(null, this.contextFor(servername));
  };

  /**
   * Adds a folder of pairs (ACME's, for one) after the configured ones,
   * loads it and, when watching, watches it. Adding a folder twice is not
   * an error. Throws `CertificateError` when the folder cannot be read.
   */
  addDir(dir: string): void {
    const abs = resolve(dir);
    if (this.#sources.some((s) => s.kind === 'dir' && s.dir === abs)) return void this.reload();
    loadDir(abs, () => {});
    this.#sources.push({ kind: 'dir', dir: abs });
    if (this.#watching) this.#watchSource({ kind: 'dir', dir: abs });
    this.reload();
  }

  /** Loads every source again and swaps the set in; false (logged) when it could not, and the current set stays. */
  reload(): boolean {
    let next: Loaded;
    try {
      next = this.#load(false);
    } catch (err) {
      this.#log.error({ listener: this.listener, err: (err as Error).message }, 'certificates not reloaded; still serving the previous ones');
      return false;
    }
    const before = this.#loaded.pairs.map((p) => `${p.info.file} ${p.info.not_after} ${p.info.names}`).join('\n');
    this.#loaded = next;
    this.generation++;
    const after = next.pairs.map((p) => `${p.info.file} ${p.info.not_after} ${p.info.names}`).join('\n');
    this.#log.info({ listener: this.listener, certificates: next.pairs.length, changed: before !== after, generation: this.generation }, 'certificates reloaded');
    for (const fn of this.#listeners) fn();
    return true;
  }

  /** Reloads when a certificate file changes (gathered for `settleMs`). Idempotent. */
  watch(): void {
    if (this.#watching) return;
    this.#watching = true;
    for (const s of this.#sources) this.#watchSource(s);
  }

  close(): void {
    this.#watching = false;
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #watchSource(s: Source): void {
    // Folders, not files: a file replaced by rename is a new inode a file watch would miss.
    const targets = s.kind === 'dir' ? [{ dir: s.dir, files: null }] : [...new Set([dirname(s.cert), dirname(s.key)])].map((dir) => ({ dir, files: new Set([basename(s.cert), basename(s.key)]) }));
    for (const t of targets) {
      try {
        const w = watch(t.dir, { persistent: false }, (_event, file) => {
          if (t.files && file && !t.files.has(String(file))) return;
          if (!t.files && file && !roleOf(String(file))) return;
          this.#schedule();
        });
        w.on('error', (err) => this.#log.warn({ listener: this.listener, dir: t.dir, err: err.message }, 'cannot watch certificate files; send SIGHUP to reload them'));
        this.#watchers.push(w);
      } catch (err) {
        this.#log.warn({ listener: this.listener, dir: t.dir, err: (err as Error).message }, 'cannot watch certificate files; send SIGHUP to reload them');
      }
    }
  }

  #schedule(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (this.#watching) this.reload();
    }, this.#settleMs);
    this.#timer.unref();
  }

  #load(first: boolean): Loaded {
    const pairs: Pair[] = [];
    const skipped: string[] = [];
    const previous = new Map<string, Pair>();
    if (!first) for (const p of this.#loaded.pairs) previous.set(p.info.file, p);
    for (const s of this.#sources) {
      if (s.kind === 'pair') pairs.push(loadPair(basename(s.cert).replace(/(\.cert\.pem|\.crt\.pem|\.crt|\.pem)$/, ''), s.cert, s.key));
      else pairs.push(...loadDir(s.dir, (why) => skipped.push(why), previous));
    }
    for (const why of skipped) this.#log[first ? 'error' : 'warn']({ listener: this.listener, problem: why }, 'certificate pair skipped');
    if (!pairs.length) {
      const where = this.#sources.map((s) => (s.kind === 'dir' ? s.dir : s.cert)).join(', ');
      throw new CertificateError(`${where}: no usable certificate pair${skipped.length ? ` (${skipped.join('; ')})` : ' (expected <name>.crt + <name>.key, or <name>.pem + <name>.key)'}`);
    }
    const exact = new Map<string, Pair>();
    const wildcard = new Map<string, Pair>();
    for (const p of pairs) {
      for (const n of p.info.names) {
        if (n.startsWith('*.')) {
          if (!wildcard.has(n.slice(2))) wildcard.set(n.slice(2), p);
        } else if (!exact.has(n)) exact.set(n, p);
      }
    }
    const wanted = this.#tls.default;
    let fallback = wanted !== undefined ? pairs.find((p) => p.info.name === wanted) : pairs.find((p) => p.info.name === 'default');
    if (!fallback && wanted !== undefined) throw new CertificateError(`tls.default: no pair named "${wanted}" in ${this.#sources.map((s) => (s.kind === 'dir' ? s.dir : s.cert)).join(', ')}`);
    fallback ??= pairs[0];
    const now = Date.now();
    for (const p of pairs) if (p.notAfter < now) this.#log.warn({ listener: this.listener, file: p.info.file, not_after: p.info.not_after }, 'certificate has expired; clients will refuse it');
    return { pairs, exact, wildcard, fallback };
  }
}
