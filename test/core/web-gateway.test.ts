/**
 * The pipeline on Web Request/Response (src/core/gateway.ts, the edge's
 * data plane and the WebSocket planner of both), run in this process:
 * `app.fetch` with Requests, a real hook client over in-process plugins,
 * and an `UpstreamFetch` that answers from a function. Bodies stream both
 * ways; only a `with_body` binding gets a copy of the first 64 KiB, and
 * the upstream still gets every byte; every answer carries the request id.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HookgateError } from '../../src/core/errors.ts';
import { createGateway, type Gateway, type UpstreamRequest } from '../../src/core/gateway/gateway.ts';
import { silentLogger } from '../../src/core/log.ts';
import { MAX_BODY_COPY, type RequestInfo } from '../../src/core/protocol/protocol.ts';
import { allow, deny, drop, rewritePath } from '../../node-runner/sdk/index.ts';
import { CLIENT, coreGateway } from '../helpers/core.ts';
import type { MemoryHooks, MemoryPlugin } from '../helpers/memory-hooks.ts';

interface Seen {
  url: string;
  method: string;
  headers: Headers;
  body: string;
}

/**
 * A gateway for route `r` (plugin `p` bound as `binding`) proxying to
 * http://up.internal, whose upstream answers with `answer` (or throws it).
 */
function webGateway(p: MemoryPlugin | null, opts: { binding?: unknown; route?: Record<string, unknown>; answer?: (r: UpstreamRequest) => Response | Promise<Response> } = {}) {
  const core = coreGateway(
    {
      routes: [{ id: 'r', plugins: p ? [opts.binding ?? 'p'] : [], action: { type: 'proxy', upstream: 'http://up.internal', fallback: 'sorry' }, ...opts.route }],
      actions: { sorry: { type: 'static', body: 'fallback page\n' } },
      plugins: { p: { path: '/bin/true' } },
    },
    p ? { p } : {},
  );
  const seen: Seen[] = [];
  let dropped = 0;
  const gateway: Gateway<never> = createGateway<never>({
    state: () => core.state,
    hooks: core.hooks,
    logger: silentLogger,
    pipeline: core.pipeline,
    client: () => CLIENT,
    drop: () => {
      dropped++;
      return new Response(null, { status: 403, headers: { connection: 'close' } });
    },
    upstream: async (r) => {
      seen.push({ url: r.url, method: r.method, headers: r.headers, body: r.body ? await new Response(r.body).text() : '' });
      return opts.answer ? opts.answer(r) : new Response('hello from upstream\n', { status: 200, headers: { 'content-type': 'text/plain', 'x-upstream': 'yes' } });
    },
  });
  const fetch = (path: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    if (!headers.has('host')) headers.set('host', 'app.example.com');
    return gateway.app.fetch(new Request(`http://app.example.com${path}`, { ...init, headers }));
  };
  return { fetch, gateway, seen, hooks: core.hooks as MemoryHooks, dropped: () => dropped };
}

describe('answers', () => {
  test('a deny is the plugin\'s status, body and headers, with the request id; the upstream is not asked', async () => {
    const gw = webGateway({ on_request: () => deny(401, 'who are you?\n', { 'WWW-Authenticate': 'Bearer' }) });
    const res = await gw.fetch('/me', { headers: { 'x-request-id': 'req-1' } });
    assert.equal(res.status, 401);
    assert.equal(await res.text(), 'who are you?\n');
    assert.equal(res.headers.get('www-authenticate'), 'Bearer');
    assert.equal(res.headers.get('x-request-id'), 'req-1');
    assert.equal(gw.seen.length, 0);
  });

  test('a drop verdict is the data plane\'s drop, and the body is not read', async () => {
    const gw = webGateway({ on_request: () => drop() });
    const res = await gw.fetch('/', { method: 'POST', body: 'x' });
    assert.equal(gw.dropped(), 1);
    assert.equal(res.status, 403);
    assert.equal(res.headers.get('connection'), 'close');
  });

  test('answers before routing (404, 400) carry no request id: only routed requests have one', async () => {
    const gw = webGateway(null, { route: { match: { path: '/only/*' } } });
    const res = await gw.fetch('/elsewhere');
    assert.equal(res.status, 404);
    assert.equal(res.headers.get('x-request-id'), null);
    assert.equal((await gw.fetch('/only/%2e%2e%2Fetc')).status, 400);
  });
});

describe('proxying', () => {
  test('the upstream gets the method, the URL, the verdict\'s headers and the streamed body; the client gets its answer and the request id', async () => {
    const gw = webGateway({ on_request: () => rewritePath(allow({ 'X-User': 'alice' }), '/v2/items') });
    const res = await gw.fetch('/items?a=1', { method: 'PUT', body: 'payload', headers: { connection: 'keep-alive', 'x-user': 'forged' } });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'hello from upstream\n');
    assert.equal(res.headers.get('x-upstream'), 'yes');
    const id = res.headers.get('x-request-id');
    assert.ok(id);
    const [up] = gw.seen;
    assert.equal(up.url, 'http://up.internal/v2/items?a=1');
    assert.equal(up.method, 'PUT');
    assert.equal(up.body, 'payload');
    assert.equal(up.headers.get('x-user'), 'alice');
    assert.equal(up.headers.get('connection'), null);
    assert.equal(up.headers.get('x-request-id'), id);
    assert.equal(up.headers.get('x-forwarded-for'), CLIENT.ip);
  });

  test('a with_body plugin gets the first 64 KiB; the upstream gets the whole body', async () => {
    const body = 'abcdefgh'.repeat((MAX_BODY_COPY * 2) / 8 + 3);
    const gw = webGateway({ on_request: () => allow() }, { binding: { plugin: 'p', with_body: true } });
    const res = await gw.fetch('/upload', { method: 'POST', body });
    assert.equal(res.status, 200);
    const bd = (gw.hooks.callsOf('p', 'on_request')[0].data as RequestInfo).bd!;
    assert.equal(bd.length, MAX_BODY_COPY);
    assert.equal(new TextDecoder().decode(bd), body.slice(0, MAX_BODY_COPY));
    assert.equal(gw.seen[0].body, body);
  });

  test('on_response changes the status and headers; hop-by-hop headers and the upstream\'s request id never reach the client', async () => {
    const gw = webGateway(
      { on_response: () => ({ s: 203, h: { 'Cache-Control': 'no-store' }, rm: ['Server'] }) },
      { answer: () => new Response('body\n', { headers: { server: 'nginx', 'keep-alive': 'timeout=5', 'x-request-id': 'from-upstream' } }) },
    );
    const res = await gw.fetch('/');
    assert.equal(res.status, 203);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.equal(res.headers.get('server'), null);
    assert.equal(res.headers.get('keep-alive'), null);
    assert.notEqual(res.headers.get('x-request-id'), 'from-upstream');
    assert.equal(await res.text(), 'body\n');
  });

  test('HEAD and 204 answers carry no body', async () => {
    const gw = webGateway(null, { answer: (r) => new Response(r.method === 'HEAD' ? 'should not be sent' : null, { status: r.method === 'HEAD' ? 200 : 204 }) });
    const head = await gw.fetch('/', { method: 'HEAD' });
    assert.equal(head.body, null);
    const empty = await gw.fetch('/');
    assert.equal(empty.status, 204);
    assert.equal(empty.body, null);
  });

  test('an unreachable upstream serves the action\'s fallback; a timed-out one without a fallback is 504', async () => {
    const down = webGateway(null, { answer: () => Promise.reject(new HookgateError('UPSTREAM_CONNECT', 'ECONNREFUSED')) });
    const res = await down.fetch('/');
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'fallback page\n');
    const slow = webGateway(null, { route: { action: { type: 'proxy', upstream: 'http://up.internal' } }, answer: () => Promise.reject(new HookgateError('UPSTREAM_TIMEOUT', 'no headers')) });
    assert.equal((await slow.fetch('/')).status, 504);
  });
});

describe('WebSocket upgrades (the plan; the transport is the data plane\'s)', () => {
  const upgradeRequest = () => new Request('http://app.example.com/ws?room=1', { headers: { host: 'app.example.com', upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
  const wsRoute = { balancer: { targets: ['10.0.0.5:8080'] }, action: { type: 'proxy', upstream: 'http://{target}' } };

  test('on_request and on_connect allow: proxy to the picked target with Upgrade headers', async () => {
    const gw = webGateway({ on_request: () => allow({ 'X-User': 'alice' }), on_connect: () => true }, { route: wsRoute });
    const plan = await gw.gateway.upgrade(upgradeRequest(), CLIENT);
    assert.equal(plan.kind, 'proxy');
    if (plan.kind !== 'proxy') return;
    assert.equal(plan.url, 'http://10.0.0.5:8080/ws?room=1');
    assert.equal(plan.target, '10.0.0.5:8080');
    assert.equal(plan.headers.get('upgrade'), 'websocket');
    assert.equal(plan.headers.get('x-user'), 'alice');
    plan.release();
    const [conn] = gw.hooks.callsOf('p', 'on_connect');
    assert.deepEqual(conn.data, { r: 'r', d: 'app.example.com', a: CLIENT.remoteAddr, md: '', mg: '' });
  });

  test('an on_connect refusal answers 403; an on_request deny answers as any deny', async () => {
    const refused = await webGateway({ on_request: () => allow(), on_connect: () => false }, { route: wsRoute }).gateway.upgrade(upgradeRequest(), CLIENT);
    assert.equal(refused.kind === 'respond' && refused.response.status, 403);
    const denied = await webGateway({ on_request: () => deny(401), on_connect: () => true }, { route: wsRoute }).gateway.upgrade(upgradeRequest(), CLIENT);
    assert.equal(denied.kind === 'respond' && denied.response.status, 401);
  });

  test('an upstream that does not switch protocols: its answer goes through on_response', async () => {
    const gw = webGateway({ on_response: () => ({ h: { 'X-Checked': '1' } }) }, { route: wsRoute });
    const plan = await gw.gateway.upgrade(upgradeRequest(), CLIENT);
    assert.ok(plan.kind === 'proxy');
    const res = await plan.refused(new Response('no websockets here\n', { status: 426, headers: { connection: 'close' } }));
    assert.equal(res.status, 426);
    assert.equal(res.headers.get('x-checked'), '1');
    assert.equal(res.headers.get('connection'), null);
    plan.release();
  });
});
