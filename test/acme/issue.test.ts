/**
 * ACME against a real CA: Debian's pebble on loopback validates HTTP-01 by
 * connecting to a real listener that answers from the challenge files
 * (`serveChallenge`), issues, and the certificate stored verifies against
 * pebble's root for its domain. Files and modes as the storage promises.
 */

import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { connect, createServer as createTlsServer } from 'node:tls';
import { describe, test } from 'node:test';
import { silentLogger } from '../../src/core/log.ts';
import { serveChallenge } from '../../node-runner/gateway/acme-challenges.ts';
import { AcmeManager } from '../../node-runner/gateway/acme.ts';
import { createAlpnChallengeServer } from '../../node-runner/gateway/acme-tls-alpn.ts';
import { startPebble, type Pebble } from '../helpers/pebble.ts';
import { scope, tempDir, type Scope } from '../helpers/scope.ts';
import { waitFor } from '../helpers/http.ts';

/** A plain-HTTP listener that answers only ACME challenges from `dir` (404 for the rest); its port. */
async function challengeListener(s: Scope, dir: string): Promise<{ port: number; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(`${req.headers.host} ${req.url}`);
    if (!serveChallenge(dir, req, res)) res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  s.defer(() => new Promise<void>((r) => server.close(() => r())));
  s.defer(() => server.closeAllConnections());
  return { port: (server.address() as AddressInfo).port, hits };
}

/** Presents `cert`/`key` on a TLS server and connects to it as a client that trusts only `root`, for `servername`. */
async function verifyAsClient(s: Scope, certPem: string, keyPem: string, root: string, servername: string): Promise<{ authorized: boolean; error?: string; subject: string }> {
  const server = createTlsServer({ cert: certPem, key: keyPem }, (sock) => sock.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  s.defer(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port, servername, ca: root, rejectUnauthorized: false }, () => {
      const peer = sock.getPeerCertificate();
      resolve({ authorized: sock.authorized, error: sock.authorizationError?.toString(), subject: String(peer.subject?.CN ?? '') });
      sock.end();
    });
    sock.on('error', reject);
  });
}

/** One manager ordering `domain` from pebble by `challenge`; resolves once that order succeeded (fails the test when it failed). */
async function orderOnce(s: Scope, pebble: Pebble, storage: string, challenge: 'http-01' | 'tls-alpn-01', domain: string): Promise<void> {
  const manager = new AcmeManager({
    settings: { email: 'ops@a.test', directory: pebble.directory, ca: pebble.caFile, storage, key_type: 'ecdsa', challenge },
    logger: silentLogger,
    poll: { attempts: 30, minMs: 100, maxMs: 1000 },
  });
  s.defer(() => manager.stop());
  manager.start([domain]);
  await waitFor(() => manager.status()[0]?.cert_file || manager.status()[0]?.failures, { what: 'the order to end', timeoutMs: 60_000 });
  const [st] = manager.status();
  assert.equal(st.last_error, null, `the order failed: ${st.last_error}\n${pebble.output()}`);
}

describe('ACME with pebble', () => {
  test('pebble validates HTTP-01 against the listener and issues a certificate that a client verifies against pebble\'s root', async (t) => {
    const s = scope(t);
    const storage = join(tempDir(s), 'acme');
    const listener = await challengeListener(s, join(storage, 'challenges'));
    const pebble = await startPebble(s, { httpPort: listener.port });
    await orderOnce(s, pebble, storage, 'http-01', 'a.test');
    assert.ok(listener.hits.some((h) => h.startsWith('a.test:') && h.includes('/.well-known/acme-challenge/')), `pebble fetched the challenge from the listener: ${listener.hits.join(', ')}`);

    const certPem = readFileSync(join(storage, 'certs', 'a.test.crt'), 'utf8');
    const keyPem = readFileSync(join(storage, 'certs', 'a.test.key'), 'utf8');
    const leaf = new X509Certificate(certPem);
    assert.equal(leaf.checkHost('a.test'), 'a.test');
    assert.ok(leaf.checkPrivateKey(createPrivateKey(keyPem)));
    assert.equal(createPrivateKey(keyPem).asymmetricKeyType, 'ec');
    const verified = await verifyAsClient(s, certPem, keyPem, await pebble.root(), 'a.test');
    assert.equal(verified.authorized, true, `the chain verifies against pebble's root: ${verified.error}`);

    // Keys are private, the challenge is withdrawn, the storage dir is private.
    assert.equal(statSync(join(storage, 'certs', 'a.test.key')).mode & 0o777, 0o600);
    assert.equal(statSync(join(storage, 'account.key')).mode & 0o777, 0o600);
    assert.equal(statSync(storage).mode & 0o777, 0o700);
    assert.deepEqual(readdirSync(join(storage, 'challenges')), []);
    assert.deepEqual(readdirSync(join(storage, 'certs')).sort(), ['a.test.crt', 'a.test.key'], 'no temp files left');
  });
  test('TLS-ALPN-01: pebble validates against the acme-tls/1 responder serving the challenge files, and issues', async (t) => {
    const s = scope(t);
    const storage = join(tempDir(s), 'acme');
    const alpn = createAlpnChallengeServer(join(storage, 'alpn'));
    const handshakes: string[] = [];
    alpn.on('secureConnection', (sock) => handshakes.push(`${sock.servername} ${sock.alpnProtocol}`));
    await new Promise<void>((r) => alpn.listen(0, '127.0.0.1', () => r()));
    s.defer(() => new Promise<void>((r) => alpn.close(() => r())));
    // HTTP-01's port is closed: only TLS-ALPN-01 can pass.
    const pebble = await startPebble(s, { httpPort: 1, tlsPort: (alpn.address() as AddressInfo).port });
    await orderOnce(s, pebble, storage, 'tls-alpn-01', 'alpn.test');
    assert.ok(handshakes.includes('alpn.test acme-tls/1'), `pebble shook hands with acme-tls/1 for the domain: ${handshakes.join(', ')}`);
    const certPem = readFileSync(join(storage, 'certs', 'alpn.test.crt'), 'utf8');
    const verified = await verifyAsClient(s, certPem, readFileSync(join(storage, 'certs', 'alpn.test.key'), 'utf8'), await pebble.root(), 'alpn.test');
    assert.equal(verified.authorized, true, verified.error);
    assert.deepEqual(readdirSync(join(storage, 'alpn')), [], 'the challenge certificate is withdrawn');

    // The responder refuses other names and other protocols.
    const refused = await new Promise<string>((resolve) => {
      const sock = connect({ host: '127.0.0.1', port: (alpn.address() as AddressInfo).port, servername: 'other.test', ALPNProtocols: ['acme-tls/1'], rejectUnauthorized: false });
      sock.on('secureConnect', () => resolve('handshake'));
      sock.on('error', (err) => resolve(err.message));
    });
    assert.notEqual(refused, 'handshake');
  });
});
