/**
 * HTTP/2 on TLS listeners (ALPN): h2 and HTTP/1.1 clients get the same
 * verdicts from the same plugin, which sees the same request info but for
 * `pr` ("HTTP/2.0"); pseudo-headers become the Host and target they stand
 * for, a Host that disagrees with :authority is refused, curl --http2
 * works, and `proto: "h2"` speaks h2c to an upstream.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect as h2connect, createServer as createH2Server, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { HAS_CURL_H2, HAS_OPENSSL, makeCa, makeCert, type TestCa } from '../helpers/certs.ts';
import { VERDICT_PLUGIN } from '../helpers/paths.ts';
import { startGateway, whenReady, type Gateway } from '../helpers/processes.ts';
import { scope, suiteScope, tempDir, type Scope } from '../helpers/scope.ts';
import { startUpstream, type EchoBody, type Upstream } from '../helpers/upstream.ts';

const files = suiteScope();
let ca: TestCa;
let gw: Gateway;
let up: Upstream;
let port: number;
let h2cPort: number;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP/2 session to the gateway, verifying its certificate for `host`; closed with the scope. */
function session(s: Scope, host = 'api.test'): ClientHttp2Session {
  const c = h2connect(`https://127.0.0.1:${port}`, { ca: ca.pem, servername: host });
  authorities.set(c, host);
  c.on('error', () => {});
  s.defer(() => void c.close());
  return c;
}

const authorities = new WeakMap<ClientHttp2Session, string>();

function h2get(c: ClientHttp2Session, path: string, headers: Record<string, string> = {}): Promise<Answer & { reset?: number }> {
  return new Promise((resolve, reject) => {
    const req = c.request({ ':path': path, ':authority': authorities.get(c)!, ...headers });
    let head: IncomingHttpHeaders = {};
    let body = '';
    req.setEncoding('utf8');
    req.on('response', (h) => (head = h));
    req.on('data', (d: string) => (body += d));
    // 'close' comes last, after the body or the reset.
    req.on('error', (err) => {
      if (!req.rstCode) reject(err);
    });
    req.on('close', () => resolve({ status: Number(head[':status'] ?? 0), headers: head, body, ...(req.rstCode ? { reset: req.rstCode } : {}) }));
    req.end();
  });
}

function h1get(path: string, headers: Record<string, string> = {}, host = 'api.test'): Promise<Answer & { socketError?: string }> {
  return new Promise((resolve) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, servername: host, headers: { host, ...headers }, ca: ca.pem, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.once('error', (err) => resolve({ status: 0, headers: {}, body: '', socketError: err.message }));
    req.end();
  });
}

/** Sends one HEADERS frame (HPACK literals, no Huffman) on a raw h2 connection; resolves with the frames the server sent until it closes or 2 s of quiet pass. */
function rawH2(port: number, headers: Array<[string, string]>): Promise<Array<{ type: number; stream: number }>> {
  return new Promise((resolve, reject) => {
    const lit = (x: string) => Buffer.concat([Buffer.from([x.length]), Buffer.from(x, 'latin1')]);
    const block = Buffer.concat(headers.map(([n, v]) => Buffer.concat([Buffer.from([0]), lit(n), lit(v)])));
    const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
      const h = Buffer.alloc(9);
      h.writeUIntBE(payload.length, 0, 3);
      h[3] = type;
      h[4] = flags;
      h.writeUInt32BE(stream, 5);
      return Buffer.concat([h, payload]);
    };
    const out: Array<{ type: number; stream: number }> = [];
    let buf = Buffer.alloc(0);
    const sock = tlsConnect({ host: '127.0.0.1', port, servername: 'api.test', ca: ca.pem, ALPNProtocols: ['h2'] }, () => {
      sock.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x5, 1, block)]));
    });
    let quiet = setTimeout(() => sock.end(), 2000);
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
        const len = buf.readUIntBE(0, 3);
        const f = { type: buf[3], stream: buf.readUInt32BE(5) & 0x7fffffff };
        out.push(f);
        if (f.type === 4 && !(buf[4] & 1)) sock.write(frame(4, 1, 0, Buffer.alloc(0)));
        buf = buf.subarray(9 + len);
        if ((f.type === 3 || f.type === 1 || f.type === 7) && f.stream <= 1) {
          clearTimeout(quiet);
          quiet = setTimeout(() => sock.end(), 100);
        }
      }
    });
    sock.on('error', reject);
    sock.on('close', () => {
      clearTimeout(quiet);
      resolve(out);
    });
  });
}

before(async () => {
  if (!HAS_OPENSSL) return;
  const dir = tempDir(files);
  ca = makeCa(join(dir, 'ca'));
  const certs = join(dir, 'certs');
  makeCert(ca, certs, 'api', ['api.test', 'h2up.test']);
  up = await startUpstream(files, { name: 'echo' });
  // An h2c (cleartext, prior knowledge) upstream that says how it was asked.
  const h2c = createH2Server((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ httpVersion: req.httpVersion, authority: req.headers[':authority'], path: req.url, user: req.headers['x-user'] ?? null }));
  });
  await new Promise<void>((r) => h2c.listen(0, '127.0.0.1', r));
  files.defer(() => new Promise<void>((r) => h2c.close(() => r())));
  h2cPort = (h2c.address() as { port: number }).port;
  gw = await startGateway(files, {
    gateway: { listen: '127.0.0.1:0', tls: { dir: certs } },
    admin: { listen: '127.0.0.1:0' },
    routes: [
      { match: { domain: 'h2up.test' }, plugins: ['verdicts'], action: { type: 'proxy', upstream: `http://127.0.0.1:${h2cPort}`, proto: 'h2' } },
      { match: { domain: 'api.test' }, plugins: ['verdicts'], action: { type: 'proxy', upstream: up.url } },
    ],
    plugins: { verdicts: { path: VERDICT_PLUGIN, env: { FIXTURE_NAME: 'verdicts', FIXTURE_HOOKS: 'on_request' } } },
  });
  await whenReady(gw);
  port = Number(new URL(gw.url).port);
});

describe('HTTP/2', { concurrency: true, timeout: 120_000, skip: HAS_OPENSSL ? false : 'openssl is not installed (it makes the test certificates)' }, () => {
  test('h2 and HTTP/1.1 clients get the same verdicts from the same plugin', async (t) => {
    const c = session(scope(t));
    for (const verdict of ['deny:401', 'deny:403', 'allow', 'header:X-User=alice']) {
      const [a, b] = await Promise.all([h2get(c, '/v?x=1', { 'x-test-verdict': verdict }), h1get('/v?x=1', { 'x-test-verdict': verdict })]);
      assert.equal(a.status, b.status, verdict);
      assert.equal(a.headers['x-denied-by'], b.headers['x-denied-by'], verdict);
      if (a.status === 200) {
        const ea = JSON.parse(a.body) as EchoBody;
        const eb = JSON.parse(b.body) as EchoBody;
        assert.equal(ea.url, eb.url);
        assert.equal(ea.headers['x-user'], eb.headers['x-user'], verdict);
        assert.equal(ea.headers.host, 'api.test', 'the upstream gets :authority as Host');
      } else assert.equal(a.body, b.body);
    }
  });

  test('the plugin sees the same request info either way, but pr is "HTTP/2.0"', async (t) => {
    const c = session(scope(t));
    const [a, b] = await Promise.all([h2get(c, '/info/p?q=2', { 'x-test-verdict': 'info', 'x-extra': 'yes' }), h1get('/info/p?q=2', { 'x-test-verdict': 'info', 'x-extra': 'yes' })]);
    const ia = JSON.parse(String((JSON.parse(a.body) as EchoBody).headers['x-seen-info'])) as Record<string, unknown>;
    const ib = JSON.parse(String((JSON.parse(b.body) as EchoBody).headers['x-seen-info'])) as Record<string, unknown>;
    assert.equal(ia.pr, 'HTTP/2.0');
    assert.equal(ib.pr, 'HTTP/1.1');
    for (const k of ['r', 'm', 'p', 'q', 'd', 'ho', 'md']) assert.deepEqual(ia[k], ib[k], k);
  });

  test('a drop verdict resets the h2 stream; the session serves the next request', async (t) => {
    const c = session(scope(t));
    const dropped = await h2get(c, '/d', { 'x-test-verdict': 'drop' });
    assert.equal(dropped.status, 0);
    assert.ok(dropped.reset, 'the stream was reset');
    assert.equal((await h2get(c, '/after')).status, 200);
  });

  test('a Host header that names another host than :authority is refused with 400', async (t) => {
    const c = session(scope(t));
    assert.equal((await h2get(c, '/x', { host: 'other.test' })).status, 400);
    assert.equal((await h2get(c, '/x', { host: 'API.test' })).status, 200, 'the same host in another case is the same host');
  });

  test('proto "h2" speaks HTTP/2 to an h2c upstream', async (t) => {
    const c = session(scope(t), 'h2up.test');
    const r = await h2get(c, '/up?z=1', { 'x-test-verdict': 'header:X-User=bob' });
    assert.equal(r.status, 200);
    const seen = JSON.parse(r.body) as { httpVersion: string; path: string; user: string };
    assert.equal(seen.httpVersion, '2.0');
    assert.equal(seen.path, '/up?z=1');
    assert.equal(seen.user, 'bob');
    const h1 = await h1get('/up', {}, 'h2up.test');
    assert.equal((JSON.parse(h1.body) as { httpVersion: string }).httpVersion, '2.0', 'whatever the client spoke');
  });

  test('a request carrying a connection-specific header (Transfer-Encoding, Connection, Upgrade) over h2 is reset, never forwarded', async () => {
    const control = await rawH2(port, [[':method', 'GET'], [':scheme', 'https'], [':path', '/control'], [':authority', 'api.test']]);
    assert.ok(control.some((f) => f.type === 1 && f.stream === 1), 'the same frames without the header get an answer');
    for (const [name, value] of [['transfer-encoding', 'chunked'], ['connection', 'keep-alive'], ['upgrade', 'websocket'], ['te', 'gzip']]) {
      const path = `/smuggle-${name}`;
      const frames = await rawH2(port, [[':method', 'GET'], [':scheme', 'https'], [':path', path], [':authority', 'api.test'], [name, value]]);
      assert.ok(frames.some((f) => (f.type === 3 && f.stream === 1) || f.type === 7), `${name}: the stream (or the session) is refused`);
      assert.ok(!frames.some((f) => f.type === 1 && f.stream === 1), `${name}: no response headers`);
      assert.ok(!up.received.some((r) => r.url === path), `${name}: the upstream never saw it`);
    }
  });

  test('curl --http2 negotiates h2 and gets the same answer', { skip: HAS_CURL_H2 ? false : 'curl with HTTP/2 is not installed' }, async () => {
    const out = await new Promise<string>((resolve, reject) =>
      execFile('curl', ['-s', '--http2', '--cacert', ca.cert, '--resolve', `api.test:${port}:127.0.0.1`, '-H', 'x-test-verdict: deny:401', '-w', '\n%{http_version} %{http_code}', `https://api.test:${port}/c`], { timeout: 20_000 }, (err, so) => (err ? reject(err) : resolve(so))),
    );
    assert.match(out, /\n2 401$/);
  });
});
