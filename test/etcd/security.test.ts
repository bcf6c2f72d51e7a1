/**
 * etcd over TLS with client certificates, and etcd's own authentication
 * (issue 13's connection flags): real etcd members, real runners and
 * `config push`. A runner or push without what the cluster requires fails
 * with a clear message and writes nothing; with it, the config arrives.
 * Certificates are made here with openssl (self-signed, for 127.0.0.1).
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { startEtcdCluster, type EtcdTls } from '../helpers/etcd.ts';
import { request, waitFor } from '../helpers/http.ts';
import { baseConfig, runCli, startGateway, writeConfig } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';

/** A self-signed certificate (its own CA) for 127.0.0.1, in `dir`. */
function selfSigned(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'subjectAltName=IP:127.0.0.1', '-addext', 'extendedKeyUsage=serverAuth,clientAuth', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert, key };
}

const CONFIG = { routes: [{ id: 'a', match: { path: '/a' }, action: { type: 'static', body: 'secure\n' } }] };

describe('etcd TLS and authentication', { concurrency: true, timeout: 120_000 }, () => {
  test('TLS with client certificates: push and serve with --etcd-cacert/--etcd-cert/--etcd-key; without a client certificate nothing is written', async (t) => {
    const s = scope(t);
    const dir = tempDir(s);
    const server = selfSigned(dir, 'etcd-server');
    const client = selfSigned(dir, 'hookgate-client');
    const tls: EtcdTls = { certFile: server.cert, keyFile: server.key, clientCaFile: client.cert, caFile: server.cert, clientCertFile: client.cert, clientKeyFile: client.key };
    const etcd = await startEtcdCluster(s, 1, { tls });
    assert.match(etcd.endpoints, /^https:/);
    const file = join(dir, 'c.json5');
    writeFileSync(file, JSON.stringify(CONFIG));
    const flags = ['--etcd-cacert', server.cert, '--etcd-cert', client.cert, '--etcd-key', client.key];

    const noCert = await runCli(['config', 'push', file, '--etcd', etcd.endpoints, '--etcd-cacert', server.cert], { timeoutMs: 60_000 });
    assert.equal(noCert.code, 1, noCert.stderr);
    assert.match(noCert.stderr, /^hookgate config: etcd at https:\/\/127\.0\.0\.1:\d+: .*bad certificate/m);

    const pushed = await runCli(['config', 'push', file, '--etcd', etcd.endpoints, ...flags]);
    assert.equal(pushed.code, 0, pushed.stderr);
    const gw = await startGateway(s, writeConfig(tempDir(s), baseConfig({})), { args: ['--config-etcd', etcd.endpoints, ...flags] });
    await waitFor(async () => (await request(`${gw.url}/a`)).text === 'secure\n', { timeoutMs: 30_000, what: 'the config over TLS' });
  });

  test('etcd authentication: --etcd-user with the password from --etcd-password-env; a wrong password is refused clearly', async (t) => {
    const s = scope(t);
    const etcd = await startEtcdCluster(s, 1);
    await etcd.enableAuth('root-password-123');
    const dir = tempDir(s);
    const file = join(dir, 'c.json5');
    writeFileSync(file, JSON.stringify(CONFIG));
    const env = (password: string) => ({ ...process.env, ETCD_PW: password });

    const wrong = await runCli(['config', 'push', file, '--etcd', etcd.endpoints, '--etcd-user', 'root', '--etcd-password-env', 'ETCD_PW'], { env: env('nope') });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /authentication failed/i);
    const anonymous = await runCli(['config', 'get', '--etcd', etcd.endpoints]);
    assert.equal(anonymous.code, 1, 'without credentials etcd refuses');

    const unset = await runCli(['config', 'get', '--etcd', etcd.endpoints, '--etcd-user', 'root', '--etcd-password-env', 'NO_SUCH_VAR_HG']);
    assert.equal(unset.code, 2);
    assert.match(unset.stderr, /the environment variable NO_SUCH_VAR_HG is not set/);

    const ok = await runCli(['config', 'push', file, '--etcd', etcd.endpoints, '--etcd-user', 'root', '--etcd-password-env', 'ETCD_PW'], { env: env('root-password-123') });
    assert.equal(ok.code, 0, ok.stderr);
    const gw = await startGateway(s, writeConfig(tempDir(s), baseConfig({})), {
      args: ['--config-etcd', etcd.endpoints, '--etcd-user', 'root', '--etcd-password-env', 'ETCD_PW'],
      env: { ETCD_PW: 'root-password-123' },
    });
    await waitFor(async () => (await request(`${gw.url}/a`)).text === 'secure\n', { timeoutMs: 30_000, what: 'the config with etcd authentication' });
  });
});
