/**
 * Allow and deny through the gateway with the example auth plugins (the
 * TypeScript SDK one and the Python SDK one), and what the upstream and
 * the client see of forwarding headers and hop-by-hop headers.
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { parseRaw, rawRequest, request } from '../helpers/http.ts';
import { AUTH_PY, AUTH_TS } from '../helpers/paths.ts';
import { baseConfig, startGateway, whenReady, type Gateway } from '../helpers/processes.ts';
import { suiteScope } from '../helpers/scope.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

const files = suiteScope();
let gw: Gateway;
let up: Upstream;

before(async () => {
  up = await startUpstream(files, { name: 'app' });
  gw = await startGateway(
    files,
    baseConfig({
      routes: [
        { id: 'ts', match: { path: '/ts/*' }, plugins: ['auth-ts'], action: 'app' },
        { id: 'py', match: { path: '/py/*' }, plugins: ['auth-py'], action: 'app' },
      ],
      actions: { app: { type: 'proxy', upstream: up.url } },
      plugins: {
        'auth-ts': { path: AUTH_TS, env: { HOOKGATE_AUTH_TOKENS: 's3cret:alice,other:bob' } },
        'auth-py': { path: AUTH_PY, env: { HOOKGATE_AUTH_TOKENS: 's3cret:alice,other:bob' } },
      },
    }),
  );
  await whenReady(gw);
});

const received = (path: string) => up.received.filter((r) => r.url === path);

for (const [lang, prefix] of [
  ['TypeScript', '/ts'],
  ['Python', '/py'],
] as const) {
  describe(`the ${lang} auth plugin`, { concurrency: true, timeout: 60_000 }, () => {
    test('denies a request without a token with 401 and Www-Authenticate, and the upstream never sees it', async () => {
      const res = await request(`${gw.url}${prefix}/no-token`);
      assert.equal(res.status, 401);
      assert.equal(res.headers['www-authenticate'], 'Bearer');
      assert.equal(res.text, 'unauthorized\n');
      assert.equal(received(`${prefix}/no-token`).length, 0);
    });

    test('denies an unknown token with 401', async () => {
      const res = await request(`${gw.url}${prefix}/bad-token`, { headers: { authorization: 'Bearer nope' } });
      assert.equal(res.status, 401);
      assert.equal(res.headers['www-authenticate'], 'Bearer');
      assert.equal(received(`${prefix}/bad-token`).length, 0);
    });

    test('allows a known token and the upstream sees X-User', async () => {
      const alice = await request(`${gw.url}${prefix}/me`, { headers: { authorization: 'Bearer s3cret' } });
      assert.equal(alice.status, 200);
      assert.equal(alice.json().headers['x-user'], 'alice');
      const bob = await request(`${gw.url}${prefix}/me?who=bob`, { headers: { authorization: 'Bearer other' } });
      assert.equal(bob.status, 200);
      assert.equal(bob.json().headers['x-user'], 'bob');
      assert.equal(bob.json().url, `${prefix}/me?who=bob`);
    });

    test('a client cannot forge X-User: the plugin overwrites it', async () => {
      const res = await request(`${gw.url}${prefix}/forge`, { headers: { authorization: 'Bearer other', 'x-user': 'admin' } });
      assert.equal(res.status, 200);
      assert.equal(res.json().headers['x-user'], 'bob');
    });

    test('the upstream sees X-Forwarded-For (appended), X-Forwarded-Proto and X-Forwarded-Host', async () => {
      const res = await request(`${gw.url}${prefix}/fwd`, {
        headers: { authorization: 'Bearer s3cret', host: 'app.example.com:8443', 'x-forwarded-for': '203.0.113.7' },
      });
      assert.equal(res.status, 200);
      const seen = res.json().headers;
      assert.equal(seen['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
      assert.equal(seen['x-forwarded-proto'], 'http');
      assert.equal(seen['x-forwarded-host'], 'app.example.com:8443');

      const plain = await request(`${gw.url}${prefix}/fwd2`, { headers: { authorization: 'Bearer s3cret' } });
      assert.equal(plain.json().headers['x-forwarded-for'], '127.0.0.1');
    });

    test("hop-by-hop headers are removed both ways: the client's never reach the upstream, the upstream's never reach the client", async () => {
      const upstreamHeaders = JSON.stringify({
        Connection: 'X-Up-Secret',
        'X-Up-Secret': 'upstream-private',
        'Keep-Alive': 'timeout=99, max=7',
        'Proxy-Authenticate': 'Basic realm="up"',
        'X-Up-Kept': 'yes',
      });
      const raw = await rawRequest(
        gw.url,
        `GET ${prefix}/hop HTTP/1.1\r\n` +
          'Host: app.example.com\r\n' +
          'Authorization: Bearer s3cret\r\n' +
          'Connection: close, X-Secret\r\n' +
          'X-Secret: client-private\r\n' +
          'Keep-Alive: timeout=5\r\n' +
          'TE: trailers\r\n' +
          'Proxy-Authorization: Basic Zm9vOmJhcg==\r\n' +
          'Proxy-Connection: keep-alive\r\n' +
          'X-Kept: yes\r\n' +
          `X-Up-Headers: ${upstreamHeaders}\r\n` +
          '\r\n',
      );
      const [seen] = received(`${prefix}/hop`);
      assert.ok(seen, 'the upstream got the request');
      assert.equal(seen.headers['x-kept'], 'yes');
      for (const h of ['x-secret', 'keep-alive', 'te', 'proxy-authorization', 'proxy-connection']) {
        assert.equal(seen.headers[h], undefined, `${h} reached the upstream`);
      }
      assert.ok(!/x-secret/i.test(String(seen.headers.connection ?? '')), 'the client Connection tokens reached the upstream');

      const res = parseRaw(raw);
      assert.equal(res.status, 200);
      const names = res.headers.map(([n]) => n);
      assert.ok(names.includes('x-up-kept'), 'an end-to-end upstream header reached the client');
      assert.ok(!names.includes('x-up-secret'), 'a header the upstream named in Connection reached the client');
      assert.ok(!names.includes('proxy-authenticate'), 'Proxy-Authenticate reached the client');
      assert.ok(!res.headers.some(([n, v]) => n === 'keep-alive' && v.includes('timeout=99')), "the upstream's Keep-Alive reached the client");
      assert.ok(!/x-up-secret/i.test(res.headers.find(([n]) => n === 'connection')?.[1] ?? ''), "the upstream's Connection tokens reached the client");
    });
  });
}
