/**
 * @module acme-tls-alpn
 * ACME TLS-ALPN-01 challenge responses (RFC 8737): for each domain being
 * validated, a self-signed certificate carrying the key authorization's
 * digest (made by acme-client), presented to a TLS client that asks for
 * that domain by SNI and offers only the ALPN protocol `acme-tls/1`.
 *
 * Like HTTP-01's (acme-challenges.ts), they go through files the ACME
 * holder (the runner) writes, `<storage>/alpn/<domain>.pem` (certificate
 * and key, 0600), so every gateway process answers alike.
 *
 * `createAlpnChallengeServer` is the answering side: a `tls.Server` that
 * negotiates `acme-tls/1` only and presents the challenge certificate for
 * the SNI name, or fails the handshake. A TLS listener that sees
 * `acme-tls/1` among the ALPN protocols of a peeked ClientHello hands the
 * connection to it (`server.emit('connection', socket)`, the hello
 * unshifted); nothing else is served there, and a connection for a domain
 * without a challenge in flight is closed.
 */

import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext, createServer, type SecureContext, type Server } from 'node:tls';
import { removeFiles, writeFileAtomic } from './acme-store.ts';

/** The ALPN protocol of TLS-ALPN-01 validation. */
export const ACME_TLS_ALPN = 'acme-tls/1';

const DOMAIN = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$/;

/**
 * The TLS-ALPN-01 responses the ACME holder publishes, as files in `dir`.
 *
 * Contract: `put` returns once the file is in place; `remove` and `clear`
 * never throw for files already gone. A domain that is not a plain DNS
 * name is refused (it names a file).
 */
export class AlpnChallengeFiles {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  put(domain: string, certPem: string, keyPem: string): void {
    if (!DOMAIN.test(domain)) throw new Error(`"${domain}" is not a DNS name a TLS-ALPN-01 challenge can be stored under`);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeFileAtomic(join(this.dir, `${domain}.pem`), `${certPem.trim()}\n${keyPem.trim()}\n`, 0o600);
  }

  remove(domain: string): void {
    if (DOMAIN.test(domain)) removeFiles(this.dir, (name) => name === `${domain}.pem`);
  }

  clear(): void {
    removeFiles(this.dir, (name) => name.endsWith('.pem'));
  }
}

/**
 * The secure context presenting `servername`'s challenge certificate from
 * `dir`, or null when there is none (or the name is no DNS name).
 *
 * @example
 * alpnChallengeContext('/var/lib/hookgate/acme/alpn', 'example.com')
 */
export function alpnChallengeContext(dir: string, servername: string): SecureContext | null {
  const name = servername.toLowerCase().replace(/\.$/, '');
  if (!DOMAIN.test(name)) return null;
  let pem: string;
  try {
    pem = readFileSync(join(dir, `${name}.pem`), 'utf8');
  } catch {
    return null;
  }
  return createSecureContext({ cert: pem, key: pem, minVersion: 'TLSv1.2' });
}

/**
 * A TLS server answering TLS-ALPN-01 validations from the files in `dir`:
 * ALPN `acme-tls/1` only, the challenge certificate for the SNI name, and
 * the connection closed once the handshake is done (a validation reads
 * the certificate, nothing else). A handshake for a name without a
 * challenge, or without SNI, fails. The caller listens or feeds it
 * connections, and closes it.
 *
 * @example
 * const alpn = createAlpnChallengeServer(join(storage, 'alpn'));
 * tlsListener.onAcmeHello = (socket) => alpn.emit('connection', socket);
 */
export function createAlpnChallengeServer(dir: string): Server {
  const server = createServer({
    ALPNProtocols: [ACME_TLS_ALPN],
    minVersion: 'TLSv1.2',
    SNICallback: (servername, cb) => {
      const ctx = alpnChallengeContext(dir, servername);
      if (ctx) cb(null, ctx);
      else cb(new Error(`no TLS-ALPN-01 challenge for ${servername}`));
    },
  });
  server.on('secureConnection', (socket) => {
    if (socket.alpnProtocol !== ACME_TLS_ALPN) return void socket.destroy();
    socket.end();
  });
  server.on('tlsClientError', (_err, socket) => socket.destroy());
  return server;
}
