/**
 * What the Node data plane (node-runner/gateway/http-plane.ts) writes itself,
 * without Web Response objects in between: the upstream's headers as it
 * sent them (repeated ones kept apart, names in their case), and the
 * core's own answers framed so that the connection stays usable.
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { rawRequest } from '../helpers/http.ts';
import { baseConfig, startGateway, type Gateway } from '../helpers/processes.ts';
import { suiteScope } from '../helpers/scope.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const files = suiteScope();
let gw: Gateway;
let up: Upstream;

before(async () => {
  up = await startUpstream(files, {
    name: 'cookies',
    handler: (_req, res) => {
      res.writeHead(200, [
        ['Set-Cookie', 'a=1; Path=/'],
        ['Set-Cookie', 'b=2; Path=/'],
        ['X-Upstream-Case', 'kept'],
        ['Content-Length', '2'],
      ].flat());
      res.end('ok');
    },
  });
  gw = await startGateway(
    files,
    baseConfig({
      routes: [
        { id: 'static', match: { path: '/static' }, action: { type: 'static', status: 200, body: 'hello\n' } },
        { id: 'up', match: { path: '/up' }, action: { type: 'proxy', upstream: up.url } },
      ],
    }),
  );
});

describe('the Node data plane', { concurrency: true, timeout: 60_000 }, () => {
  test('repeated upstream headers reach the client apart, with their names as the upstream wrote them', async () => {
    const host = new URL(gw.url).host;
    const raw = await rawRequest(gw.url, `GET /up HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    const head = raw.slice(0, raw.indexOf('\r\n\r\n')).split('\r\n');
    assert.match(head[0], /^HTTP\/1\.1 200/);
    assert.deepEqual(head.filter((l) => l.startsWith('Set-Cookie:')), ['Set-Cookie: a=1; Path=/', 'Set-Cookie: b=2; Path=/']);
    assert.ok(head.includes('X-Upstream-Case: kept'), head.join('\n'));
    assert.ok(raw.endsWith('\r\n\r\nok'));
  });

  test("the core's answers (404, static) carry their length, so the next request on the connection is served", async () => {
    const host = new URL(gw.url).host;
    const raw = await rawRequest(
      gw.url,
      `GET /nowhere HTTP/1.1\r\nHost: ${host}\r\n\r\nGET /static HTTP/1.1\r\nHost: ${host}\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
    );
    const statuses = [...raw.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [404, 200, 404]);
    assert.match(raw, /content-length: 6\r\n[\s\S]*\r\n\r\nhello\n/i);
  });
});
