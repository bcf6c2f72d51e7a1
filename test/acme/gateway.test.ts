/**
 * `gateway.acme` end to end: `hookgate serve` with ACME on, pebble on
 * loopback validating HTTP-01 against the gateway's own plain-HTTP port
 * (through a forwarder standing for the port-80 NAT in front of a
 * gateway), certificates in `<state dir>/acme/certs/`. With
 * `gateway.workers: 2` the runner holds ACME and the workers answer the
 * challenges from the files it writes. The challenge path's attacks are
 * answered before routing, without reaching a route.
 */

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { describe, test } from 'node:test';
import { rawRequest, request, waitFor } from '../helpers/http.ts';
import { HAS_OPENSSL, makeCa, makeCert } from '../helpers/certs.ts';
import { startPebble } from '../helpers/pebble.ts';
import { baseConfig, startGateway, whenReady, type Gateway } from '../helpers/processes.ts';
import { scope, tempDir, type Scope } from '../helpers/scope.ts';

/**
 * A TCP forwarder on a port of its own, to a target set later: pebble is
 * told this port before the gateway (whose config names pebble) has one.
 */
async function forwarder(s: Scope): Promise<{ port: number; target(port: number): void }> {
  let to = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    const up = connect(to, '127.0.0.1');
    sockets.add(up);
    client.pipe(up).pipe(client);
    const end = () => {
      client.destroy();
      up.destroy();
      sockets.delete(client);
      sockets.delete(up);
    };
    client.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  s.defer(() => {
    for (const c of sockets) c.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { port: (server.address() as AddressInfo).port, target: (p) => (to = p) };
}

const portOf = (url: string) => Number(new URL(url).port);

const routes = [
  { id: 'site', match: { domain: 'a.test, b.test, *.wild.test' }, action: { type: 'static', body: 'site\n' } },
  { id: 'other', match: { domain: '127.0.0.1' }, action: { type: 'static', body: 'ip\n' } },
];

async function acmeGateway(s: Scope, gateway: Record<string, unknown>) {
  const fwd = await forwarder(s);
  const pebble = await startPebble(s, { httpPort: fwd.port });
  const config = baseConfig({
    gateway: { ...(gateway.listeners ? {} : { listen: '127.0.0.1:0' }), ...gateway, acme: { email: 'ops@a.test', directory: pebble.directory, ca: pebble.caFile } },
    routes,
  });
  const gw = await startGateway(s, config, { env: { HOOKGATE_ACME_POLL_MS: '100' } });
  fwd.target(portOf(gw.url));
  return { gw, pebble, config, certs: join(gw.dir, '.hookgate-state', 'acme', 'certs') };
}

async function certificatesIssued(gw: Gateway, n: number): Promise<void> {
  await waitFor(() => gw.logs.filter((l) => l.msg === 'ACME: certificate stored').length >= n, { what: `${n} certificates stored`, timeoutMs: 90_000 });
}

describe('gateway.acme', () => {
  test('the gateway obtains a certificate for each exact domain of its routes, validated over HTTP-01 on its own port', async (t) => {
    const s = scope(t);
    const { gw, pebble, config, certs } = await acmeGateway(s, {});
    await certificatesIssued(gw, 2);
    const failed = gw.logs.filter((l) => l.msg.startsWith('ACME: the order failed'));
    assert.deepEqual(failed, [], `no order failed:\n${gw.stderr().slice(-3000)}\n${pebble.output().slice(-2000)}`);
    const root = new X509Certificate(await pebble.root());
    for (const domain of ['a.test', 'b.test']) {
      const pem = readFileSync(join(certs, `${domain}.crt`), 'utf8');
      const chain = pem.split(/(?<=-----END CERTIFICATE-----\n?)/).filter((p) => p.includes('BEGIN')).map((p) => new X509Certificate(p));
      assert.equal(chain[0].checkHost(domain), domain);
      assert.ok(chain[chain.length - 1].verify(root.publicKey), `${domain}: the chain ends in a certificate signed by pebble's root`);
      assert.equal(statSync(join(certs, `${domain}.key`)).mode & 0o777, 0o600);
    }
    assert.equal(existsSync(join(certs, 'wild.test.crt')), false, 'a wildcard domain gets no HTTP-01 certificate');
    assert.equal(existsSync(join(certs, '127.0.0.1.crt')), false, 'an IP address gets none');
    // Traffic was served all along.
    assert.equal((await request(`${gw.url}/`, { headers: { host: 'a.test' } })).text, 'site\n');
    assert.match((await request(`${gw.admin}/metrics`)).text, /^hookgate_acme_renewals_total\{result="success"\} 2$/m);
    const api = JSON.parse((await request(`${gw.admin}/api/acme`)).text) as { enabled: boolean; certificates: Array<{ domain: string; not_after: string; next_order: string; failures: number }> };
    assert.equal(api.enabled, true);
    assert.deepEqual(api.certificates.map((c) => [c.domain, c.failures]), [['a.test', 0], ['b.test', 0]]);
    for (const c of api.certificates) assert.ok(Date.parse(c.next_order) < Date.parse(c.not_after) && Date.parse(c.next_order) > Date.now(), 'renewal is due before expiry, in the future');

    // A reload that adds a route's domain orders its certificate.
    gw.rewrite({ ...config, routes: [...routes, { id: 'new', match: { domain: 'c.test' }, action: { type: 'static', body: 'c\n' } }] });
    await certificatesIssued(gw, 3);
    assert.equal(new X509Certificate(readFileSync(join(certs, 'c.test.crt'))).checkHost('c.test'), 'c.test');
  });

  test('a TLS listener serves the certificates ACME obtained, by SNI, beside its own default certificate', { skip: HAS_OPENSSL ? false : 'openssl is not installed (it makes the default certificate)' }, async (t) => {
    const s = scope(t);
    const dir = tempDir(s, 'hookgate-acme-tls-');
    const ca = makeCa(join(dir, 'ca'));
    const own = makeCert(ca, join(dir, 'own'), 'default', ['default.test']);
    const { gw, pebble } = await acmeGateway(s, { listeners: [{ listen: '127.0.0.1:0' }, { listen: '127.0.0.1:0', tls: own }] });
    await certificatesIssued(gw, 2);
    const tlsUrl = gw.logs.filter((l) => l.msg === 'gateway listening').map((l) => String(l.url)).find((u) => u.startsWith('https:'));
    assert.ok(tlsUrl, `a TLS listener logged its URL:\n${gw.stderr().slice(-2000)}`);
    const root = await pebble.root();
    const hello = (servername: string, ca: string) =>
      new Promise<{ subject: string; body: string }>((resolve, reject) => {
        const socket = tlsConnect({ host: '127.0.0.1', port: portOf(tlsUrl), servername, ca, ALPNProtocols: ['http/1.1'] }, () => {
          const subject = socket.getPeerX509Certificate()?.subjectAltName ?? '';
          socket.write(`GET / HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`);
          let body = '';
          socket.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ subject, body }));
        });
        socket.on('error', reject);
      });
    // The store watches ACME's folder: the pairs written a moment ago are picked up without a reload (each write
    // settles before the store reloads, so the second pair may come a reload after the first).
    const served = async (name: string) => (await hello(name, root).catch(() => null)) !== null;
    await waitFor(async () => (await served('a.test')) && (await served('b.test')), { what: 'a.test and b.test served with certificates pebble signed', timeoutMs: 30_000 });
    const a = await hello('a.test', root);
    assert.match(a.subject, /DNS:a\.test/);
    assert.match(a.body, /^HTTP\/1\.1 200 [\s\S]*site\n$/);
    assert.match((await hello('b.test', root)).subject, /DNS:b\.test/);
    // A name ACME has no certificate for gets the listener's own default.
    assert.match((await hello('default.test', ca.pem)).subject, /DNS:default\.test/);
    const listed = JSON.parse((await request(`${gw.admin}/api/certificates`)).text) as { certificates: Array<{ names: string[] }> };
    assert.deepEqual(listed.certificates.flatMap((c) => c.names).sort(), ['a.test', 'b.test', 'default.test']);
  });

  test('with gateway.workers: 2 the runner holds ACME and the workers answer the challenges', async (t) => {
    const s = scope(t);
    const { gw, certs } = await acmeGateway(s, { workers: 2 });
    await certificatesIssued(gw, 2);
    assert.ok(existsSync(join(certs, 'a.test.crt')) && existsSync(join(certs, 'b.test.crt')));
    const orders = gw.logs.filter((l) => l.msg === 'ACME: ordering a certificate');
    assert.equal(orders.length, 2, 'one order per domain, from the runner alone (not one per worker)');
  });

  test('the challenge path refuses traversal and odd tokens before routing, and a second start reuses the stored certificates', async (t) => {
    const s = scope(t);
    const { gw } = await acmeGateway(s, {});
    await certificatesIssued(gw, 2);
    const attacks = [
      '/.well-known/acme-challenge/../../../etc/passwd',
      '/.well-known/acme-challenge/..%2f..%2faccount.key',
      '/.well-known/acme-challenge/%2e%2e',
      '/.well-known/acme-challenge/',
      '/.well-known/acme-challenge/a.b',
      '/.well-known/acme-challenge/..',
      `/.well-known/acme-challenge/${'A'.repeat(300)}`,
      '/.well-known/acme-challenge/nosuchtoken',
      '/.well-known/acme-challenge/tok%00en',
    ];
    for (const path of attacks) {
      const raw = await rawRequest(gw.url, `GET ${path} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n`);
      assert.match(raw, /^HTTP\/1\.1 404 /, `${path}: 404`);
      assert.doesNotMatch(raw, /BEGIN|PRIVATE|site/, `${path}: no file content, no route reached`);
    }
    const post = await rawRequest(gw.url, 'POST /.well-known/acme-challenge/abc HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    assert.match(post, /^HTTP\/1\.1 404 /);
    // Outside the prefix, routing as usual.
    assert.equal((await request(`${gw.url}/.well-known/other`, { headers: { host: 'a.test' } })).text, 'site\n');

    const before = readFileSync(join(gw.dir, '.hookgate-state', 'acme', 'certs', 'a.test.crt'), 'utf8');
    await gw.stop();
    const again = await startGateway(s, gw.configFile);
    await again.waitForLog((l) => l.msg === 'ACME certificate found in storage' && l.domain === 'b.test');
    await whenReady(again);
    assert.equal(again.logs.filter((l) => l.msg === 'ACME: ordering a certificate').length, 0, 'nothing is ordered while the stored certificates are good');
    assert.equal(readFileSync(join(again.dir, '.hookgate-state', 'acme', 'certs', 'a.test.crt'), 'utf8'), before);
  });
});
