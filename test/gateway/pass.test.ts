/**
 * L4 pass-through on a TLS listener: a TLS session whose SNI names a pass
 * route is relayed end to end to a TLS upstream (the client verifies the
 * upstream's own certificate: hookgate holds no key for it), on_connect
 * can refuse it (the connection closes before any handshake), and
 * on_disconnect reports bytes and duration. Other names are terminated
 * by the gateway as usual. Hostile ClientHellos (garbage, truncated,
 * oversize, too slow) are closed without an answer and the listener goes
 * on serving.
 */

import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { HAS_OPENSSL, makeCa, makeCert, type TestCa } from '../helpers/certs.ts';
import { waitFor } from '../helpers/http.ts';
import { VERDICT_PLUGIN } from '../helpers/paths.ts';
import { readJsonLines, startGateway, whenReady, type Gateway } from '../helpers/processes.ts';
import { suiteScope, tempDir } from '../helpers/scope.ts';

const files = suiteScope();
let ca: TestCa;
let gw: Gateway;
let port: number;
let upstreamPort: number;
let disconnects: string;
/** SNI names the TLS upstream saw, in order */
const upstreamSaw: string[] = [];

/** A TLS session to the gateway's listener asking for `servername`; resolves once the handshake is done. */
function session(servername: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, ca: ca.pem }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Writes `bytes` raw to the listener; resolves with what came back before the connection closed. */
function rawExchange(bytes: Buffer | null, opts: { end?: boolean } = {}): Promise<Buffer> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    const s = netConnect(port, '127.0.0.1', () => {
      if (bytes) s.write(bytes);
      if (opts.end) s.end();
    });
    s.on('data', (c: Buffer) => got.push(c));
    s.on('error', () => {});
    s.on('close', () => resolve(Buffer.concat(got)));
  });
}

before(async () => {
  if (!HAS_OPENSSL) return;
  const dir = tempDir(files);
  ca = makeCa(join(dir, 'ca'));
  const own = makeCert(ca, join(dir, 'gateway'), 'www', ['www.test']);
  const db = makeCert(ca, join(dir, 'upstream'), 'db', ['db.test', 'refused.test', 'pool.test']);
  // The TLS upstream: its own certificate; echoes, after saying which name it was asked for.
  const upstream = createTlsServer({ cert: readFileSync(db.cert), key: readFileSync(db.key) }, (s) => {
    upstreamSaw.push(String(s.servername));
    s.write(`upstream here for ${s.servername}\n`);
    s.pipe(s);
    s.on('error', () => {});
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  files.defer(() => new Promise<void>((r) => upstream.close(() => r())));
  upstreamPort = (upstream.address() as { port: number }).port;
  disconnects = join(dir, 'disconnects.jsonl');
  const plugin = (name: string, env: Record<string, string>) => ({
    path: VERDICT_PLUGIN,
    hooks: ['on_connect', 'on_disconnect'],
    env: { FIXTURE_NAME: name, FIXTURE_HOOKS: 'on_connect,on_disconnect', FIXTURE_DISCONNECT_FILE: disconnects, ...env },
  });
  gw = await startGateway(files, {
    // header_timeout is also how long a ClientHello may take to arrive (the slow-hello test is about it).
    gateway: { listen: '127.0.0.1:0', tls: own, header_timeout: '1s' },
    admin: { listen: '127.0.0.1:0' },
    routes: [
      { id: 'db', match: { domain: 'db.test' }, plugins: ['gatekeeper'], action: { type: 'pass', upstream: `127.0.0.1:${upstreamPort}` } },
      { id: 'refused', match: { domain: 'refused.test' }, plugins: ['bouncer'], action: { type: 'pass', upstream: `127.0.0.1:${upstreamPort}` } },
      { id: 'pool', match: { domain: 'pool.test' }, balancer: { targets: [`127.0.0.1:${upstreamPort}`] }, action: { type: 'pass', upstream: '{target}' } },
      { id: 'blocked', match: { domain: 'blocked.test' }, action: { type: 'drop' } },
      { id: 'www', match: { domain: 'www.test' }, action: { type: 'static', body: 'terminated here\n' } },
    ],
    plugins: { gatekeeper: plugin('gatekeeper', {}), bouncer: plugin('bouncer', { FIXTURE_CONNECT: 'deny' }) },
  });
  await whenReady(gw);
  port = Number(new URL(gw.url).port);
});

describe('pass (L4 TLS pass-through)', { concurrency: false, timeout: 120_000, skip: HAS_OPENSSL ? false : 'openssl is not installed (it makes the test certificates)' }, () => {
  test('a TLS session is relayed end to end: the client verifies the upstream certificate and talks to it; on_disconnect reports bytes and duration', async () => {
    const s = await session('db.test');
    assert.equal(s.getPeerCertificate().subject.CN, 'db.test', "the upstream's own certificate, verified against the CA");
    s.setEncoding('utf8');
    let got = '';
    s.on('data', (c: string) => (got += c));
    s.write('ping through the gateway\n');
    await waitFor(() => got.includes('ping through the gateway'), { what: 'the echo' });
    assert.match(got, /^upstream here for db\.test\n/);
    s.end();
    const line = await waitFor(() => readJsonLines<Record<string, unknown>>(disconnects).find((l) => l.r === 'db'), { what: 'on_disconnect' });
    assert.equal(line.tg, `127.0.0.1:${upstreamPort}`);
    assert.ok(Number(line.rx) > 200, 'rx counts the ClientHello and what followed');
    assert.ok(Number(line.tx) > 200, 'tx counts the upstream handshake and the echo');
    assert.equal(typeof line.ms, 'number');
    assert.match(String(line.a), /^127\.0\.0\.1:\d+$/);
  });

  test('on_connect refusing closes the connection before any handshake, and the upstream never sees it', async () => {
    const before = upstreamSaw.length;
    await assert.rejects(session('refused.test'), /socket disconnected|ECONNRESET|closed/i);
    assert.equal(upstreamSaw.length, before);
  });

  test('a drop route for the SNI name closes the connection before the handshake: no certificate is shown', async () => {
    let certificateSeen = false;
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port, servername: 'blocked.test', rejectUnauthorized: false }, () => ((certificateSeen = true), resolve(s)));
        s.once('error', reject);
        s.once('close', () => reject(new Error('closed')));
      }),
    );
    assert.equal(certificateSeen, false);
  });

  test('{target} relays to the balancer pick', async () => {
    const s = await session('pool.test');
    assert.equal(s.getPeerCertificate().subject.CN, 'db.test');
    s.destroy();
  });

  test('a name no pass route covers is terminated by the gateway and routed as HTTP', async () => {
    const s = await session('www.test');
    assert.equal(s.getPeerCertificate().subject.CN, 'www.test');
    s.setEncoding('utf8');
    let got = '';
    s.on('data', (c: string) => (got += c));
    s.write('GET / HTTP/1.1\r\nHost: www.test\r\nConnection: close\r\n\r\n');
    await new Promise((r) => s.on('close', r));
    assert.match(got, /^HTTP\/1\.1 200/);
    assert.match(got, /terminated here/);
  });

  test('hostile ClientHellos are closed without a byte, and the listener goes on serving', async () => {
    const hello = (len: number, body: Buffer) => Buffer.concat([Buffer.from([0x16, 3, 1, (len >> 8) & 0xff, len & 0xff]), body]);
    const cases: Array<[string, Buffer, boolean]> = [
      ['plain HTTP on the TLS port', Buffer.from('GET / HTTP/1.1\r\nHost: db.test\r\n\r\n'), false],
      ['a record that is not a handshake', Buffer.from([0x17, 3, 3, 0, 5, 1, 2, 3, 4, 5]), false],
      ['a handshake that is not a ClientHello', hello(8, Buffer.from([2, 0, 0, 4, 3, 3, 0, 0])), false],
      ['an oversize ClientHello (announced 1 MiB)', hello(16384, Buffer.concat([Buffer.from([1, 0x10, 0, 0]), Buffer.alloc(100)])), false],
      ['a truncated ClientHello, then the client ends', hello(300, Buffer.concat([Buffer.from([1, 0, 1, 0x28, 3, 3]), Buffer.alloc(30)])), true],
      ['a ClientHello with garbage lengths inside', hello(50, Buffer.concat([Buffer.from([1, 0, 0, 46, 3, 3]), Buffer.alloc(32), Buffer.from([200]), Buffer.alloc(11)])), false],
      ['an empty record', Buffer.from([0x16, 3, 1, 0, 0]), false],
    ];
    for (const [what, bytes, end] of cases) assert.equal((await rawExchange(bytes, { end })).length, 0, what);
    const s = await session('db.test');
    assert.equal(s.getPeerCertificate().subject.CN, 'db.test', 'still serving');
    s.destroy();
  });

  test('a ClientHello that does not arrive within header_timeout is closed', async () => {
    const t0 = performance.now();
    const got = await rawExchange(Buffer.from([0x16, 3, 1]));
    assert.equal(got.length, 0);
    assert.ok(performance.now() - t0 >= 900, 'closed by the deadline, not at once');
  });
});
