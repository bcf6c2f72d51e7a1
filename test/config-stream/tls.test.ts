/**
 * The config stream's transport (README "Security model"): a runner sends
 * its key only to a source it verified. It follows a TLS `hookgate
 * config-server` pinned by the SHA-256 of its certificate's public key (or
 * trusted through `--config-ca`); a certificate that matches no pin, or
 * that no trusted CA signed, is refused with a clear log line before any
 * request is written. Plain http is refused off loopback unless the
 * operator says `--insecure-config-url`. Certificates are made here with
 * `openssl` (self-signed, for 127.0.0.1).
 */

import assert from 'node:assert/strict';
import { execFileSync, execSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { freePort, request, waitFor } from '../helpers/http.ts';
import { runCli } from '../helpers/processes.ts';
import { scope, suiteScope, tempDir } from '../helpers/scope.ts';
import { put, SOURCE_KEY, startConfigServer, startSource, startStreamRunner, staticRoute } from './harness.ts';

interface Cert {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
  /** `sha256:<hex>` of the public key, computed with openssl as the README says */
  pin: string;
}

/** A self-signed certificate for 127.0.0.1 and its pin, made with openssl in `dir`. */
function selfSigned(dir: string, name: string): Cert {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  const digest = execSync(`openssl x509 -in '${certFile}' -noout -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -r`, { encoding: 'utf8' });
  return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), pin: `sha256:${digest.split(' ')[0].trim()}` };
}

const hello = (c: { send(e: string, d: unknown): void }) => c.send('put', put({ routes: { a: staticRoute('/a', 'over tls', 1) } }));

describe('config stream over TLS', { concurrency: true, timeout: 60_000 }, () => {
  const files = suiteScope();
  let server: Cert;
  let other: Cert;
  before(() => {
    const dir = tempDir(files);
    server = selfSigned(dir, 'server');
    other = selfSigned(dir, 'other');
  });

  test('a runner follows a TLS config-server pinned by its public key; the server logs the same pin', async (t) => {
    const s = scope(t);
    const file = join(tempDir(s), 'served.json5');
    writeFileSync(file, JSON.stringify({ routes: [{ id: 'a', match: { path: '/a' }, action: { type: 'static', body: 'A' } }] }));
    const cs = await startConfigServer(s, file, '127.0.0.1:0', ['--tls-cert', server.certFile, '--tls-key', server.keyFile]);
    assert.match(cs.url, /^https:\/\/127\.0\.0\.1:\d+\/v1\/stream$/);
    assert.equal(cs.pin, server.pin, 'the pin the server reports is the one openssl computes');
    const r = await startStreamRunner(s, cs.url, { args: ['--config-pin', server.pin] });
    await waitFor(async () => (await request(`${r.gateway}/a`)).text === 'A', { what: 'the pinned stream to be served' });
  });

  test('a certificate that matches no pin is refused with a clear error, and the key is never sent', async (t) => {
    const s = scope(t);
    const src = await startSource(s, hello, 0, { tls: server });
    const r = await startStreamRunner(s, src.url, { args: ['--config-pin', other.pin] });
    const refused = await r.waitForLog('failed TLS verification');
    assert.match(String(refused.why), new RegExp(`matches no --config-pin`));
    assert.match(String(refused.why), new RegExp(server.pin.slice(7)), 'the error shows the key the server has');
    assert.equal(src.requests.length, 0, 'no request (and so no key) reached the server');
    assert.equal((await request(`${r.gateway}/a`)).status, 503, 'nothing was applied');
  });

  test('without a pin the certificate must chain to a trusted CA: refused with the system CAs, followed with --config-ca', async (t) => {
    const s = scope(t);
    const src = await startSource(s, hello, 0, { tls: server });
    const untrusted = await startStreamRunner(s, src.url);
    const refused = await untrusted.waitForLog('failed TLS verification');
    assert.match(String(refused.why), /SELF_SIGNED|UNABLE_TO_VERIFY/);
    assert.equal(src.requests.length, 0, 'no key sent to an unverified server');

    const trusted = await startStreamRunner(s, src.url, { args: ['--config-ca', server.certFile] });
    await waitFor(async () => (await request(`${trusted.gateway}/a`)).text === 'over tls', { what: 'the verified stream to be served' });
    assert.deepEqual(src.requests.map((q) => q.authorization), [`Bearer ${SOURCE_KEY}`], 'only the verified runner sent its key');
  });

  test('plain http off loopback is refused at start, unless --insecure-config-url says so', async (t) => {
    const s = scope(t);
    const res = await runCli(['serve', '--config-url', 'http://192.0.2.10:9000/v1/stream', '--config-key-env', 'HG_UNSET']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /refusing plain http to 192\.0\.2\.10:9000, which is not a loopback address/);
    assert.match(res.stderr, /--insecure-config-url/);

    const pinned = await runCli(['serve', '--config-url', `http://127.0.0.1:${await freePort()}/v1/stream`, '--config-key-env', 'HG_UNSET', '--config-pin', server.pin]);
    assert.equal(pinned.code, 2, 'a pin over plain http would be a false comfort');
    assert.match(pinned.stderr, /--config-ca and --config-pin need an https --config-url/);

    await startStreamRunner(s, 'http://192.0.2.10:9000/v1/stream', { args: ['--insecure-config-url'] });
  });
});
