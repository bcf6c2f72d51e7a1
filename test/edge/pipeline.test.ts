/**
 * The edge worker's request pipeline, end to end: the built worker in
 * Miniflare routes by the runner's state and asks the runner's plugins
 * (the example auth plugin, the SDK fixture) what to do, over either hook
 * transport: `http` (one POST per call) and `ws` (the RunnerLink Durable
 * Object's WebSocket). One runner and one upstream serve both.
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { AUTH_TS, EDGE_PLUGIN } from '../helpers/paths.ts';
import { runnerConfig, startRunner, type RunnerProcess } from '../helpers/processes.ts';
import { suiteScope } from '../helpers/scope.ts';
import { startUpstream, type EchoBody, type Upstream } from '../helpers/upstream.ts';
import { assertWorkerBuilt, startEdge, type Edge } from './harness.ts';

const s = suiteScope();
let runner: RunnerProcess;
let up: Upstream;

before(async () => {
  assertWorkerBuilt();
  // X-Upstream-Secret is what the fixture's on_response removes.
  up = await startUpstream(s, { name: 'app', headers: { 'X-Upstream-Secret': 's3cret' } });
  runner = await startRunner(
    s,
    runnerConfig({
      routes: [
        { id: 'health', match: { path: '/health' }, action: { type: 'static', body: 'ok\n', headers: { 'X-Static': 'yes' } } },
        { id: 'api', match: { path: '/api/*' }, plugins: ['auth'], action: 'app' },
        { id: 'shop', match: { path: '/shop/*' }, plugins: ['auth', 'fixture'], action: 'app' },
      ],
      actions: { app: { type: 'proxy', upstream: up.url } },
      plugins: {
        auth: { path: AUTH_TS, env: { HOOKGATE_AUTH_TOKENS: 'tok-alice:alice' } },
        fixture: { path: EDGE_PLUGIN, env: { FIXTURE_NAME: 'fx', FIXTURE_HOOKS: 'on_request,on_response' } },
      },
    }),
  );
});

const alice = { authorization: 'Bearer tok-alice' };

for (const transport of ['http', 'ws'] as const) {
  describe(`over the ${transport} hook transport`, () => {
    let edge: Edge;
    before(async () => {
      edge = await startEdge(s, { runners: [runner.url], transport });
    });

    test('a request the plugin allows reaches the upstream with the plugin\'s header, X-Forwarded-For and X-Forwarded-Proto', async () => {
      const res = await edge.fetch(`/api/${transport}/me?x=1`, { headers: { ...alice, 'x-forwarded-for': '203.0.113.7' } });
      assert.equal(res.status, 200, res.text);
      const seen = res.json<EchoBody>();
      assert.equal(seen.upstream, 'app');
      assert.equal(seen.url, `/api/${transport}/me?x=1`);
      assert.equal(seen.headers['x-user'], 'alice', 'the verdict\'s header is added upstream');
      assert.match(String(seen.headers['x-forwarded-for']), /^203\.0\.113\.7, (127\.0\.0\.1|::1)$/, 'the client\'s address is appended');
      assert.equal(seen.headers['x-forwarded-proto'], 'http');
      assert.equal(res.headers.get('x-served-by'), 'app');
    });

    test('X-Request-Id: a valid one from the client reaches the upstream and comes back; otherwise the edge makes one', async () => {
      const kept = await edge.fetch(`/api/${transport}/rid`, { headers: { ...alice, 'x-request-id': 'edge-req-42' } });
      assert.equal(kept.status, 200, kept.text);
      assert.equal(kept.json<EchoBody>().headers['x-request-id'], 'edge-req-42');
      assert.equal(kept.headers.get('x-request-id'), 'edge-req-42');
      const made = await edge.fetch(`/api/${transport}/rid`, { headers: { ...alice, 'x-request-id': 'has spaces in it' } });
      const id = made.headers.get('x-request-id');
      assert.match(String(id), /^[0-9a-f-]{36}$/);
      assert.equal(made.json<EchoBody>().headers['x-request-id'], id);
      const denied = await edge.fetch(`/api/${transport}/rid`, { headers: { authorization: 'Bearer wrong' } });
      assert.match(String(denied.headers.get('x-request-id')), /^[0-9a-f-]{36}$/, 'answers from a verdict carry it too');
    });

    test('a request the plugin denies gets the plugin\'s status, body and headers, and never reaches the upstream', async () => {
      const path = `/api/${transport}/denied`;
      const res = await edge.fetch(path, { headers: { authorization: 'Bearer wrong' } });
      assert.equal(res.status, 401);
      assert.equal(res.text, 'unauthorized\n');
      assert.equal(res.headers.get('www-authenticate'), 'Bearer');
      assert.equal(up.received.filter((r) => r.url === path).length, 0);
    });

    test('with two plugins on a route, both headers arrive upstream, and a deny by the second is what the client gets', async () => {
      const res = await edge.fetch(`/shop/${transport}/cart`, { headers: alice });
      assert.equal(res.status, 200, res.text);
      const seen = res.json<EchoBody>();
      assert.equal(seen.headers['x-user'], 'alice');
      assert.equal(seen.headers['x-fixture'], 'fx');

      const denied = await edge.fetch(`/shop/${transport}/deny`, { headers: alice });
      assert.equal(denied.status, 403);
      assert.equal(denied.text, 'denied by fixture\n');
      assert.equal(denied.headers.get('x-denied-by'), 'fx');
    });

    test('on_response changes what the client gets: headers set and removed, status replaced, body untouched', async () => {
      const plain = await edge.fetch(`/shop/${transport}/page`, { headers: alice });
      assert.equal(plain.status, 200);
      assert.equal(plain.headers.get('x-fixture-response'), 'fx');
      assert.equal(plain.headers.get('x-upstream-secret'), null, 'removed by the plugin');
      assert.equal(plain.headers.get('x-served-by'), 'app', 'other upstream headers pass');

      const teapot = await edge.fetch(`/shop/${transport}/teapot`, { headers: alice });
      assert.equal(teapot.status, 418);
      assert.equal(teapot.json<EchoBody>().url, `/shop/${transport}/teapot`, 'the upstream\'s body is passed on');
    });

    test('a route without plugins is served from the routing state alone', async () => {
      const res = await edge.fetch('/health');
      assert.equal(res.status, 200);
      assert.equal(res.text, 'ok\n');
      assert.equal(res.headers.get('x-static'), 'yes');
    });

    test('a request no route matches gets 404', async () => {
      const res = await edge.fetch('/nowhere');
      assert.equal(res.status, 404);
    });
  });
}

describe('the access log (ACCESS_LOG = "1")', () => {
  test('one access line per request through console.log: request id, route, status, bytes, upstream with its time, the hook\'s time and verdict; no query', async () => {
    const edge = await startEdge(s, { runners: [runner.url], transport: 'http', bindings: { ACCESS_LOG: '1', LOG_LEVEL: 'info' } });
    const ok = await edge.fetch('/api/log/me?token=secret', { headers: { ...alice, 'x-request-id': 'edge-access-1' } });
    assert.equal(ok.status, 200, ok.text);
    const denied = await edge.fetch('/api/log/me', { headers: { 'x-request-id': 'edge-access-2' } });
    assert.equal(denied.status, 401);
    assert.equal((await edge.fetch('/health', { headers: { 'x-request-id': 'edge-access-3' } })).status, 200);
    const line = (id: string) => edge.logs.find((l) => l.msg === 'access' && l.request_id === id);
    const a = line('edge-access-1');
    assert.ok(a, JSON.stringify(edge.logs));
    assert.equal(a.level, 'info');
    assert.equal(a.route, 'api');
    assert.equal(a.method, 'GET');
    assert.equal(a.path, '/api/log/me');
    assert.equal(a.query, undefined, 'no query unless ACCESS_LOG_QUERY');
    assert.equal(a.status, 200);
    assert.equal(a.bytes_out, ok.text.length, 'the body sent, counted');
    assert.equal(a.upstream, up.url.replace(/\/$/, ''));
    assert.ok(Number(a.upstream_ms) >= 0 && Number(a.on_request_ms) >= 0 && Number(a.duration_ms) >= 0, JSON.stringify(a));
    assert.equal(a.on_request_verdict, 'allow');
    const d = line('edge-access-2');
    assert.equal(d?.status, 401);
    assert.equal(d?.on_request_verdict, 'deny');
    assert.equal(d?.upstream, null);
    const h = line('edge-access-3');
    assert.equal(h?.route, 'health');
    assert.equal(h?.on_request_verdict, null, 'no hook on this route');
    assert.equal(h?.bytes_out, 'ok\n'.length);
  });
});
