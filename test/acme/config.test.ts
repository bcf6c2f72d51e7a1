/**
 * `gateway.acme` as configured: the schema's errors name the field, ACME
 * without anywhere to keep its files is a config error, the domains are
 * the routes' exact ones, relative paths resolve against the config file,
 * and the storage refuses what it must not keep or serve.
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, parseConfig } from '../../src/core/config/config.ts';
import { silentLogger } from '../../src/core/log.ts';
import { loadConfigFile } from '../../node-runner/config/config-file.ts';
import { ChallengeFiles, isChallengeToken } from '../../node-runner/gateway/acme-challenges.ts';
import { AcmeStore } from '../../node-runner/gateway/acme-store.ts';
import { acmeDomains, withAcmeStorage } from '../../node-runner/gateway/acme.ts';
import { listenersOf, Runner } from '../../node-runner/runner.ts';
import { writeConfig } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';

const acme = { email: 'ops@example.com', directory: 'https://acme.example/dir' };

function problems(input: unknown): string[] {
  try {
    parseConfig(input);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

/** A self-signed pair for `name` made with openssl in `dir`. */
function selfSigned(dir: string, name: string, san = `DNS:${name}`): { cert: string; key: string } {
  const certFile = join(dir, `${name}.pem`);
  const keyFile = join(dir, `${name}-key.pem`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', `subjectAltName=${san}`, '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}

describe('gateway.acme config', () => {
  test('a valid block gets its defaults; a bad one is refused with the path of each bad field', () => {
    const cfg = parseConfig({ gateway: { acme } });
    assert.equal(cfg.gateway.acme?.key_type, 'ecdsa');
    assert.equal(cfg.gateway.acme?.challenge, 'http-01');
    assert.equal(cfg.gateway.acme?.renew_before, undefined);
    assert.equal(parseConfig({ gateway: { acme: { ...acme, renew_before: '720h' } } }).gateway.acme?.renew_before, 720 * 3_600_000);
    assert.deepEqual(problems({ gateway: { acme: { email: 'nobody', directory: 'http://acme.example/dir', key_type: 'dsa', renew_before: 'soon', challenge: 'dns-01', extra: 1 } } }), [
      'gateway.acme.email: expected an email address, such as "ops@example.com"',
      'gateway.acme.directory: expected the https URL of an ACME directory',
      'gateway.acme.key_type: expected "ecdsa" or "rsa"',
      'gateway.acme.renew_before: expected a duration such as "2s", "500ms" or a number of milliseconds',
      'gateway.acme.challenge: expected "http-01" or "tls-alpn-01"',
      'gateway.acme.extra: unknown field',
    ]);
    assert.deepEqual(problems({ gateway: { acme: { email: 'ops@example.com' } } }), ['gateway.acme.directory: required field is missing']);
  });

  test('ACME with neither a state dir nor gateway.acme.storage is a config error; storage defaults to <state dir>/acme', async (t) => {
    const s = scope(t);
    assert.throws(() => withAcmeStorage({ acme: { ...acme, key_type: 'ecdsa' as const, challenge: 'http-01' as const } }, undefined), (err: ConfigError) => err.problems[0].startsWith('gateway.acme.storage: ACME keeps its account key'));
    assert.equal(withAcmeStorage({ acme: { ...acme, key_type: 'ecdsa' as const, challenge: 'http-01' as const } }, '/var/lib/hg').acme?.storage, '/var/lib/hg/acme');
    assert.equal(withAcmeStorage({ acme: { ...acme, key_type: 'ecdsa' as const, challenge: 'http-01' as const, storage: '/srv/acme' } }, '/var/lib/hg').acme?.storage, '/srv/acme');
    assert.equal(withAcmeStorage({}, undefined).acme, undefined);
    assert.throws(() => withAcmeStorage({ acme: { ...acme, key_type: 'ecdsa' as const, challenge: 'tls-alpn-01' as const } }, '/var/lib/hg'), (err: ConfigError) => err.problems[0].startsWith('gateway.acme.challenge: "tls-alpn-01" needs a TLS listener'));

    // A runner without a state dir refuses to start, leaving nothing listening.
    const config = parseConfig({ gateway: { listen: '127.0.0.1:0', acme }, admin: { listen: '127.0.0.1:0' } });
    const runner = new Runner({ logger: silentLogger });
    s.defer(() => runner.stop());
    await assert.rejects(runner.start(listenersOf(config), config), (err: ConfigError) => err.code === 'BAD_CONFIG' && /gateway\.acme\.storage/.test(err.problems[0]));
    assert.equal(runner.urls.admin, undefined);
  });

  test('relative storage and ca paths are against the config file\'s folder', async (t) => {
    const dir = tempDir(scope(t));
    const file = writeConfig(dir, { gateway: { acme: { ...acme, storage: 'acme-data', ca: 'certs/ca.pem' } } });
    const cfg = await loadConfigFile(file);
    assert.equal(cfg.gateway.acme?.storage, join(dir, 'acme-data'));
    assert.equal(cfg.gateway.acme?.ca, join(dir, 'certs/ca.pem'));
  });

  test('the domains are the exact DNS names among the routes\' match.domain, once each', () => {
    const cfg = parseConfig({
      routes: [
        { match: { domain: 'A.example.com, *.example.com, api.example.com' }, action: { type: 'static', body: 'x' } },
        { match: { domain: 'a.example.com, 10.0.0.1, [::1], localhost, cdn-*.example.net, **.example.org' }, action: { type: 'static', body: 'x' } },
        { match: { path: '/any-host' }, action: { type: 'static', body: 'x' } },
      ],
    });
    assert.deepEqual(acmeDomains(cfg), ['a.example.com', 'api.example.com']);
  });
});

describe('ACME storage', () => {
  test('a stored pair is used only when the certificate names the domain and matches its key', (t) => {
    const dir = tempDir(scope(t));
    const store = new AcmeStore(join(dir, 'acme'));
    store.open();
    const a = selfSigned(dir, 'a.test');
    const b = selfSigned(dir, 'b.test');
    assert.equal(store.read('a.test'), null, 'nothing stored yet');
    const saved = store.save('a.test', a.cert, a.key);
    assert.equal(store.read('a.test')?.serial, saved.serial);
    assert.throws(() => store.save('a.test', b.cert, b.key), /does not name it/);
    assert.throws(() => store.save('a.test', a.cert, b.key), /does not match the key/);
    assert.equal(readFileSync(join(dir, 'acme', 'certs', 'a.test.crt'), 'utf8'), a.cert, 'a refused pair leaves the stored one as it was');
    writeFileSync(join(dir, 'acme', 'certs', 'a.test.key'), b.key);
    assert.equal(store.read('a.test'), null, 'a key that does not match: ordered anew');
    writeFileSync(join(dir, 'acme', 'certs', 'a.test.crt'), 'garbage');
    assert.equal(store.read('a.test'), null, 'a certificate that does not parse: ordered anew');
    assert.throws(() => store.save('../a.test', a.cert, a.key), /not a DNS name/);
  });

  test('a storage dir that others can write to is refused', (t) => {
    const dir = join(tempDir(scope(t)), 'acme');
    mkdirSync(dir, { mode: 0o700 });
    chmodSync(dir, 0o777);
    assert.throws(() => new AcmeStore(dir).open(), (err: Error & { code?: string }) => err.code === 'UNSAFE_PATH');
  });

  test('challenge tokens are base64url only; anything else names no file', (t) => {
    const dir = join(tempDir(scope(t)), 'challenges');
    for (const bad of ['', '..', '../x', 'a/b', 'a.b', 'a%2fb', 'a\0b', 'a b', 'A'.repeat(257)]) {
      assert.equal(isChallengeToken(bad), false, JSON.stringify(bad));
      assert.throws(() => new ChallengeFiles(dir).put(bad, 'x'), /not base64url/);
    }
    assert.equal(isChallengeToken('evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA'), true);
  });
});
