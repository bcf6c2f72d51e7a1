/**
 * `dropRequest` on HTTP/2 (node-runner/gateway/drop.ts), on a real
 * node:http2 server and client over loopback: the dropped request's stream
 * is reset before any HEADERS, and the other streams of the connection go
 * on. (The HTTP/1.1 drop is tested on the real gateway, test/gateway/serve.test.ts.)
 */

import assert from 'node:assert/strict';
import { connect, constants, createServer, type ClientHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { dropRequest } from '../node-runner/gateway/drop.ts';

test('an h2 drop resets only its stream: no headers for it, and the session serves the next request', async (t) => {
  const server = createServer((req, res) => {
    if (req.url === '/drop') return dropRequest(req);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const session: ClientHttp2Session = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  t.after(() => session.destroy());

  const dropped = await new Promise<{ headers: boolean; code: number }>((resolve) => {
    const stream = session.request({ ':path': '/drop' });
    let headers = false;
    stream.on('response', () => (headers = true));
    stream.on('error', () => {});
    stream.on('close', () => resolve({ headers, code: stream.rstCode }));
    stream.end();
  });
  assert.equal(dropped.headers, false);
  assert.equal(dropped.code, constants.NGHTTP2_INTERNAL_ERROR);

  const ok = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const stream = session.request({ ':path': '/ok' });
    let status = 0;
    let body = '';
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.setEncoding('utf8').on('data', (c: string) => (body += c));
    stream.on('end', () => resolve({ status, body }));
    stream.on('error', reject);
    stream.end();
  });
  assert.deepEqual(ok, { status: 200, body: 'ok' });
});
