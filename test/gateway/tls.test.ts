/**
 * TLS listeners: the certificate a client gets is chosen by its SNI name
 * from a folder of pairs (with a default for clients without SNI), a
 * replaced certificate is served after a reload without restarting and
 * without dropping an open connection, only TLS 1.2+ with modern suites is
 * spoken, a plain listener with redirect_https sends clients to the TLS
 * one, and the admin API lists what is served. Certificates are made here
 * with openssl (test/helpers/certs.ts), signed by a throwaway CA that the
 * clients verify against.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { renameSync, writeFileSync, readFileSync } from 'node:fs';
import { request as httpsRequest, Agent } from 'node:https';
import { connect as tlsConnect, type ConnectionOptions, type PeerCertificate } from 'node:tls';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { HAS_OPENSSL, makeCa, makeCert, type TestCa } from '../helpers/certs.ts';
import { request, waitFor } from '../helpers/http.ts';
import { startGateway, type Gateway } from '../helpers/processes.ts';
import { suiteScope, tempDir } from '../helpers/scope.ts';
import { startUpstream, type EchoBody, type Upstream } from '../helpers/upstream.ts';

const files = suiteScope();
let ca: TestCa;
let gw: Gateway;
let up: Upstream;
let certs: string;
let single: { cert: string; key: string };
/** the TLS listener on the folder, the redirecting plain one, the TLS listener on one cert */
let dirPort: number;
let redirectUrl: string;
let singlePort: number;

/** The certificate the listener on `port` shows a client that asks for `servername` ('' sends no SNI). */
function peerCertificate(port: number, servername: string, opts: ConnectionOptions = {}): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: servername || undefined, rejectUnauthorized: false, ...opts }, () => {
      const cert = s.getPeerCertificate();
      s.end();
      resolve(cert);
    });
    s.once('error', reject);
  });
}

/** A GET over HTTPS that verifies the certificate for `host` against the test CA. */
function httpsGet(port: number, host: string, path: string, agent?: Agent): Promise<{ status: number; body: string; headers: Record<string, unknown>; socket: unknown }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, servername: host, headers: { host }, ca: ca.pem, agent: agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers, socket: res.socket }));
    });
    req.once('error', reject);
    req.end();
  });
}

before(async () => {
  if (!HAS_OPENSSL) return;
  const dir = tempDir(files);
  ca = makeCa(join(dir, 'ca'));
  certs = join(dir, 'certs');
  makeCert(ca, certs, 'a', ['a.test', '*.a.test']);
  // `.pem` + `-key.pem` naming, and a default pair for clients without SNI.
  makeCert(ca, certs, 'b', ['b.test'], { certName: 'b.pem', keyName: 'b-key.pem' });
  makeCert(ca, certs, 'default', ['default.test']);
  single = makeCert(ca, join(dir, 'single'), 'site', ['site.test']);
  up = await startUpstream(files, { name: 'echo' });
  gw = await startGateway(files, {
    gateway: {
      listeners: [
        { listen: '127.0.0.1:0', tls: { dir: certs } },
        { listen: '127.0.0.1:0', redirect_https: true },
        { listen: '127.0.0.1:0', tls: single },
      ],
    },
    admin: { listen: '127.0.0.1:0' },
    routes: [{ action: { type: 'proxy', upstream: up.url } }],
  });
  const urls = gw.logs.filter((l) => l.msg === 'gateway listening').map((l) => String(l.url));
  dirPort = Number(new URL(urls[0]).port);
  redirectUrl = urls[1];
  singlePort = Number(new URL(urls[2]).port);
});

describe('TLS listeners', { concurrency: false, timeout: 120_000, skip: HAS_OPENSSL ? false : 'openssl is not installed (it makes the test certificates)' }, () => {
  test('the SNI name picks the certificate from the folder; wildcards cover one label; clients without SNI, or with a name no pair covers, get the default', async () => {
    assert.equal((await peerCertificate(dirPort, 'a.test', { ca: ca.pem, rejectUnauthorized: true })).subject.CN, 'a.test');
    assert.equal((await peerCertificate(dirPort, 'www.a.test', { ca: ca.pem, rejectUnauthorized: true })).subject.CN, 'a.test', '*.a.test covers www.a.test');
    assert.equal((await peerCertificate(dirPort, 'x.www.a.test')).subject.CN, 'default.test', 'a wildcard covers one label only');
    assert.equal((await peerCertificate(dirPort, 'b.test', { ca: ca.pem, rejectUnauthorized: true })).subject.CN, 'b.test', 'b.pem + b-key.pem is a pair');
    assert.equal((await peerCertificate(dirPort, 'unknown.test')).subject.CN, 'default.test');
    assert.equal((await peerCertificate(dirPort, '')).subject.CN, 'default.test');
    assert.equal((await peerCertificate(singlePort, '')).subject.CN, 'site.test');
  });

  test('a request over TLS is routed and proxied like any other, with X-Forwarded-Proto https', async () => {
    const r = await httpsGet(dirPort, 'a.test', '/hello?x=1');
    assert.equal(r.status, 200);
    const seen = JSON.parse(r.body) as EchoBody;
    assert.equal(seen.url, '/hello?x=1');
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
  });

  test('only TLS 1.2 and 1.3 with forward-secret AEAD suites are accepted', async () => {
    await assert.rejects(peerCertificate(dirPort, 'a.test', { maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }), 'TLS 1.1 is refused');
    await assert.rejects(peerCertificate(dirPort, 'a.test', { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA' }), 'a CBC suite is refused');
    const ok = await peerCertificate(dirPort, 'a.test', { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' });
    assert.equal(ok.subject.CN, 'a.test');
  });

  test('redirect_https answers a plain request with a 308 to the same URL on the TLS listener; ACME challenges are not redirected', async () => {
    const r = await request(`${redirectUrl}/p/q?x=1`, { headers: { host: 'a.test:80' } });
    assert.equal(r.status, 308);
    assert.equal(r.headers.location, `https://a.test:${dirPort}/p/q?x=1`);
    const challenge = await request(`${redirectUrl}/.well-known/acme-challenge/abc`, { headers: { host: 'a.test' } });
    assert.equal(challenge.status, 200, 'served by the routes (the ACME responder answers these on the plain port)');
    assert.equal((await request(`${redirectUrl}/x`, { headers: { host: 'a.test, b.test' } })).status, 400, 'a Host that is not one host name is not redirected');
  });

  test('GET /api/certificates lists each certificate with its names, expiry, files and listener; the expiry gauge is on /metrics', async () => {
    const r = await request(`${gw.admin}/api/certificates`);
    assert.equal(r.status, 200);
    const list = (JSON.parse(r.text) as { certificates: Array<Record<string, unknown>> }).certificates;
    const a = list.find((c) => c.name === 'a')!;
    assert.deepEqual(a.names, ['a.test', '*.a.test']);
    assert.equal(a.file, join(certs, 'a.crt'));
    assert.equal(a.key_file, join(certs, 'a.key'));
    assert.match(String(a.listener), /^127\.0\.0\.1:0$/);
    assert.ok(Date.parse(String(a.not_after)) > Date.now());
    assert.equal(list.find((c) => c.name === 'default')!.default, true);
    assert.equal(list.find((c) => c.name === 'b')!.file, join(certs, 'b.pem'));
    const metrics = (await request(`${gw.admin}/metrics`)).text;
    assert.match(metrics, /hookgate_tls_certificate_expiry_seconds\{name="a",listener="127\.0\.0\.1:0"\} \d{10}/);
  });

  test('openssl s_client gets the certificate of the SNI name it sends', async () => {
    const out = await new Promise<string>((resolve) => {
      const p = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${dirPort}`, '-servername', 'b.test', '-CAfile', ca.cert, '-verify_return_error'], { timeout: 20_000 }, (_err, so, se) => resolve(`${so}${se}`));
      p.stdin!.end();
    });
    assert.match(out, /subject=CN ?= ?b\.test/);
    assert.match(out, /Verify return code: 0 \(ok\)/);
  });

  test('a replaced certificate is served after the reload, without a restart, and an open connection goes on', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await httpsGet(dirPort, 'a.test', '/before', agent);
      assert.equal(first.status, 200);
      const old = await peerCertificate(dirPort, 'a.test');
      // Written beside the folder and renamed into place, as a careful writer (ACME, certbot hooks) does.
      const fresh = makeCert(ca, join(certs, '..', 'staging'), 'a', ['a.test', '*.a.test'], { subject: 'a.test v2' });
      renameSync(fresh.key, join(certs, 'a.key'));
      renameSync(fresh.cert, join(certs, 'a.crt'));
      await waitFor(async () => (await peerCertificate(dirPort, 'a.test')).subject.CN === 'a.test v2', { what: 'the new certificate', timeoutMs: 20_000 });
      const after = await httpsGet(dirPort, 'a.test', '/after', agent);
      assert.equal(after.status, 200);
      assert.equal(after.socket, first.socket, 'the request went over the connection opened before the swap');
      assert.notEqual((await peerCertificate(dirPort, 'a.test')).serialNumber, old.serialNumber);
      assert.ok(gw.running(), 'the same process serves it');
    } finally {
      agent.destroy();
    }
  });

  test('a pair whose key does not match its certificate is refused and the one loaded before stays', async () => {
    const served = (await peerCertificate(dirPort, 'b.test')).serialNumber;
    const from = gw.logs.length;
    writeFileSync(join(certs, 'b-key.pem'), readFileSync(join(certs, 'default.key')));
    await gw.waitForLog((l) => l.msg === 'certificate pair skipped' && String(l.problem).includes('b-key.pem'), { from, timeoutMs: 20_000 });
    assert.equal((await peerCertificate(dirPort, 'b.test')).serialNumber, served);
  });

  test('SIGHUP reloads the certificates of a single-certificate listener', async () => {
    const fresh = makeCert(ca, join(single.cert, '..', 'next'), 'site', ['site.test'], { subject: 'site.test v2' });
    // Overwritten in place; the reload is asked for by SIGHUP (the folder watch may see it too).
    writeFileSync(single.key, readFileSync(fresh.key));
    writeFileSync(single.cert, readFileSync(fresh.cert));
    process.kill(gw.pid, 'SIGHUP');
    await waitFor(async () => (await peerCertificate(singlePort, '')).subject.CN === 'site.test v2', { what: 'the reloaded certificate', timeoutMs: 20_000 });
  });
});
