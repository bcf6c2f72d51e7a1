/**
 * The request pipeline (src/core/pipeline.ts) as both data planes run it,
 * with a real hook client over in-process plugins: the plan a request
 * gets for each verdict and action (deny, drop, fallback, static,
 * redirect, proxy with its URL and headers, path rewrite, query cleaning,
 * speed limits, balancer targets), what a failed upstream gets, what
 * on_response does to the upstream's answer, identity headers stripped
 * before plugins and the upstream, and the request id.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HookgateError } from '../../src/core/errors.ts';
import { listGet } from '../../src/core/protocol/headers.ts';
import type { HeaderList, ProxyStep } from '../../src/core/gateway/pipeline.ts';
import type { RequestInfo } from '../../src/core/protocol/protocol.ts';
import { allow, cleanQuery, deny, drop, fallback, limitSpeed, rewritePath } from '../../node-runner/sdk/index.ts';
import { answerOf, bodyText, coreGateway, proxyOf, type CoreGateway } from '../helpers/core.ts';
import type { MemoryPlugin } from '../helpers/memory-hooks.ts';

const UPSTREAM = 'http://10.0.0.1:3000';

/** One route `r` (any path) with plugin `p` bound, proxying to UPSTREAM with the fallback `sorry`, plus `more` routes first. */
function gateway(p: MemoryPlugin | null, route: Record<string, unknown> = {}, more: unknown[] = []): CoreGateway {
  return coreGateway(
    {
      routes: [...more, { id: 'r', plugins: p ? ['p'] : [], action: 'app', ...route }],
      actions: {
        app: { type: 'proxy', upstream: UPSTREAM, fallback: 'sorry' },
        bare: { type: 'proxy', upstream: UPSTREAM },
        sorry: { type: 'static', status: 200, body: 'fallback page\n', headers: { 'X-Fallback': 'yes' } },
      },
      plugins: { p: { path: '/bin/true' } },
    },
    p ? { p } : {},
  );
}

/** The header names of a list, lower case, in order. */
const namesOf = (list: HeaderList) => list.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());

describe('on_request verdicts decide the plan', () => {
  test('deny: the plugin\'s status, body and headers, and no upstream step', async () => {
    const gw = gateway({ on_request: () => deny(401, 'who are you?\n', { 'WWW-Authenticate': 'Bearer' }) });
    const p = await gw.plan({ target: '/me' });
    assert.equal(p.at, 'authorize');
    const a = answerOf(p);
    assert.equal(a.status, 401);
    assert.equal(bodyText(a), 'who are you?\n');
    assert.equal(listGet(a.headers, 'www-authenticate'), 'Bearer');
    assert.equal(listGet(a.headers, 'content-type'), 'text/plain; charset=utf-8');
  });

  test('deny without a status answers 403', async () => {
    const a = answerOf(await gateway({ on_request: () => deny() }).plan({ target: '/' }));
    assert.equal(a.status, 403);
  });

  test('drop: the data plane closes the connection, nothing is answered', async () => {
    const p = await gateway({ on_request: () => drop() }).plan({ target: '/' });
    assert.equal(p.at === 'authorize' && p.authorized.kind, 'drop');
  });

  test('fallback: the action\'s fallback answers instead of the upstream', async () => {
    const a = answerOf(await gateway({ on_request: () => fallback() }).plan({ target: '/' }));
    assert.equal(a.status, 200);
    assert.equal(bodyText(a), 'fallback page\n');
    assert.equal(listGet(a.headers, 'x-fallback'), 'yes');
  });

  test('fallback on an action without one answers 503', async () => {
    const a = answerOf(await gateway({ on_request: () => fallback() }, { action: 'bare' }).plan({ target: '/' }));
    assert.equal(a.status, 503);
  });

  test('a failing plugin (on_error deny) answers 503 with the configured body only, never the reason', async () => {
    const a = answerOf(await gateway({ on_request: () => { throw new Error('secret detail'); } }).plan({ target: '/' }));
    assert.equal(a.status, 503);
    assert.equal(bodyText(a), 'service unavailable\n');
  });

  test('a route whose plugins did not declare on_request makes no call', async () => {
    const gw = gateway({ on_response: () => ({}) });
    const p = proxyOf(await gw.plan({ target: '/x' }));
    assert.equal(p.url, `${UPSTREAM}/x`);
    assert.equal(gw.hooks.callsOf('p', 'on_request').length, 0);
  });
});

describe('what the plugin is told', () => {
  test('on_request gets the route, method, normal path, raw query, domain, Host, protocol, address, length, patterns and variables', async () => {
    const gw = gateway(
      { on_request: () => allow() },
      { match: { domain: '*.example.com', path: '/items/:item' }, set: { tier: 'gold' } },
    );
    await gw.plan({ method: 'POST', target: '/items/%61bc?b=2&a=1', host: 'App.Example.com:8443', headers: ['Content-Length', '5', 'accept', '*/*'] });
    const [call] = gw.hooks.callsOf('p', 'on_request');
    const info = call.data as RequestInfo;
    assert.equal(info.r, 'r');
    assert.equal(info.m, 'POST');
    assert.equal(info.p, '/items/abc');
    assert.equal(info.q, 'b=2&a=1');
    assert.equal(info.d, 'app.example.com');
    assert.equal(info.ho, 'App.Example.com:8443');
    assert.equal(info.pr, 'HTTP/1.1');
    assert.equal(info.a, '192.0.2.10:50000');
    assert.equal(info.cl, 5);
    assert.equal(info.md, '*.example.com');
    assert.equal(info.mg, 'app');
    assert.equal(info.mp, '/items/:item');
    assert.deepEqual(info.v, { tier: 'gold', item: 'abc' });
    assert.equal(info.h.Accept, '*/*');
    assert.equal(info.bd, null, 'no body copy without with_body');
  });

  test('a with_body binding gets the body copy of a POST, never of a GET', async () => {
    const gw = coreGateway(
      { routes: [{ id: 'r', plugins: [{ plugin: 'p', with_body: true }], action: { type: 'static' } }], plugins: { p: { path: '/bin/true' } } },
      { p: { on_request: () => allow() } },
    );
    await gw.plan({ method: 'POST', target: '/', body: new TextEncoder().encode('hello') });
    await gw.plan({ method: 'GET', target: '/' });
    const [post, get] = gw.hooks.callsOf('p', 'on_request').map((c) => (c.data as RequestInfo).bd);
    assert.equal(new TextDecoder().decode(post!), 'hello');
    assert.equal(get, null);
  });
});

describe('actions', () => {
  test('static: its status, body and headers, text/plain when it names no type', async () => {
    const gw = gateway(null, { action: { type: 'static', status: 418, body: 'teapot\n', headers: { 'X-Brew': 'tea' } } });
    const a = answerOf(await gw.plan({ target: '/' }));
    assert.equal(a.status, 418);
    assert.equal(bodyText(a), 'teapot\n');
    assert.equal(listGet(a.headers, 'x-brew'), 'tea');
    assert.equal(listGet(a.headers, 'content-type'), 'text/plain; charset=utf-8');
  });

  test('static 204 has no body', async () => {
    const a = answerOf(await gateway(null, { action: { type: 'static', status: 204, body: 'ignored' } }).plan({ target: '/' }));
    assert.equal(a.status, 204);
    assert.equal(a.body, null);
  });

  test('redirect: the template expands {path}, the query is kept, the status is the action\'s', async () => {
    const gw = gateway(null, { action: { type: 'redirect', to: 'https://new.example.com{path}', status: 301 } });
    const a = answerOf(await gw.plan({ target: '/old/page?x=1' }));
    assert.equal(a.status, 301);
    assert.equal(listGet(a.headers, 'location'), 'https://new.example.com/old/page?x=1');
    assert.equal(a.body, null);
  });

  test('redirect: a verdict\'s rewrite and query cleaning apply to the location', async () => {
    const gw = gateway({ on_request: () => cleanQuery(rewritePath(allow(), '/moved')) }, { action: { type: 'redirect', to: 'https://new.example.com{path}' } });
    const a = answerOf(await gw.plan({ target: '/old?x=1' }));
    assert.equal(a.status, 302);
    assert.equal(listGet(a.headers, 'location'), 'https://new.example.com/moved');
  });

  test('proxy: the upstream URL is the action\'s upstream with the normal path and the query as sent', async () => {
    const s = proxyOf(await gateway(null).plan({ target: '/a/./b//c/%7euser?q=%20x&y' }));
    assert.equal(s.url, `${UPSTREAM}/a/b/c/~user?q=%20x&y`);
    assert.equal(s.timeoutMs, 30_000);
    assert.deepEqual(s.limits, { key: 'app', maxConnections: 1024, queueTimeoutMs: 5000 });
  });

  test('proxy: a template that places {path} and route variables expands them', async () => {
    const gw = gateway(null, { match: { path: '/u/:name/*' }, set: { v: '2' }, action: { type: 'proxy', upstream: 'http://users.internal/v{v}/{name}{path}' } });
    const s = proxyOf(await gw.plan({ target: '/u/bob/x?q=1' }));
    assert.equal(s.url, 'http://users.internal/v2/bob/u/bob/x?q=1');
  });

  test('proxy: the request headers lose hop-by-hop ones and get the verdict\'s changes and X-Forwarded-*', async () => {
    const gw = gateway({ on_request: () => allow({ 'X-User': 'alice' }, ['Cookie']) });
    const s = proxyOf(
      await gw.plan({
        target: '/',
        headers: ['Connection', 'keep-alive, X-Hop', 'X-Hop', '1', 'Keep-Alive', 'timeout=5', 'TE', 'trailers', 'Cookie', 'sid=1', 'X-User', 'forged', 'X-Forwarded-For', '203.0.113.7', 'Accept', '*/*'],
      }),
    );
    const names = namesOf(s.headers);
    for (const gone of ['connection', 'x-hop', 'keep-alive', 'te', 'cookie']) assert.ok(!names.includes(gone), `${gone} is not forwarded`);
    assert.equal(listGet(s.headers, 'x-user'), 'alice');
    assert.equal(listGet(s.headers, 'accept'), '*/*');
    assert.equal(listGet(s.headers, 'host'), 'app.example.com');
    assert.equal(listGet(s.headers, 'x-forwarded-for'), '203.0.113.7, 192.0.2.10');
    assert.equal(listGet(s.headers, 'x-forwarded-proto'), 'http');
    assert.equal(listGet(s.headers, 'x-forwarded-host'), 'app.example.com');
  });

  test('proxy: a path rewrite replaces the path and keeps the query; query cleaning drops it', async () => {
    assert.equal(proxyOf(await gateway({ on_request: () => rewritePath(allow(), '/v2/me') }).plan({ target: '/me?a=1' })).url, `${UPSTREAM}/v2/me?a=1`);
    assert.equal(proxyOf(await gateway({ on_request: () => cleanQuery(allow()) }).plan({ target: '/me?token=secret' })).url, `${UPSTREAM}/me`);
    assert.equal(proxyOf(await gateway({ on_request: () => cleanQuery(rewritePath(allow(), '/v2')) }).plan({ target: '/me?a=1' })).url, `${UPSTREAM}/v2`);
  });

  test('proxy: a verdict\'s speed limit gives token buckets; the same group key shares one', async () => {
    const gw = gateway({ on_request: () => limitSpeed(allow(), 8, 16, 'tenant-a') });
    const one = proxyOf(await gw.plan({ target: '/' }));
    const two = proxyOf(await gw.plan({ target: '/' }));
    assert.ok(one.download && one.upload);
    assert.equal(one.download, two.download, 'one budget for the group');
    assert.equal(proxyOf(await gateway(null).plan({ target: '/' })).download, null, 'no limit, no bucket');
  });

  test('proxy with a balancer: targets are picked in turn and each pick is released by the data plane', async () => {
    const gw = gateway(null, { balancer: { targets: ['10.0.0.1:80', '10.0.0.2:80'] }, action: { type: 'proxy', upstream: 'http://{target}' } });
    const picked: string[] = [];
    for (let i = 0; i < 4; i++) {
      const s = proxyOf(await gw.plan({ target: '/x' }));
      picked.push(s.url);
      s.pick?.release();
    }
    assert.deepEqual(picked, ['http://10.0.0.1:80/x', 'http://10.0.0.2:80/x', 'http://10.0.0.1:80/x', 'http://10.0.0.2:80/x']);
  });

  test('a balancer without targets serves the fallback, or 503 without one', async () => {
    const lb = { balancer: { targets: [] } };
    assert.equal(bodyText(answerOf(await gateway(null, { ...lb, action: { type: 'proxy', upstream: 'http://{target}', fallback: 'sorry' } }).plan({ target: '/' }))), 'fallback page\n');
    const a = answerOf(await gateway(null, { ...lb, action: { type: 'proxy', upstream: 'http://{target}' } }).plan({ target: '/' }));
    assert.equal(a.status, 503);
    assert.equal(bodyText(a), 'no upstream target available\n');
  });

  test('a grouped balancer picks from the group the plugin\'s header names, not the client\'s', async () => {
    const gw = gateway(
      { on_request: () => allow({ 'X-Tenant': 'a' }) },
      { balancer: { group_by: 'header:X-Tenant' }, action: { type: 'proxy', upstream: 'http://{target}' } },
    );
    gw.state.setTargets('r', { targets: [], groups: { a: ['10.0.1.1:80'], b: ['10.0.2.1:80'] } });
    assert.equal(proxyOf(await gw.plan({ target: '/', headers: ['X-Tenant', 'b'] })).target, '10.0.1.1:80');
  });
});

describe('a failed upstream exchange', () => {
  async function failed(err: unknown, opts: { fallback?: boolean; clientGone?: boolean } = {}) {
    const gw = gateway(null, { action: opts.fallback ? 'app' : 'bare' });
    const p = await gw.plan({ target: '/' });
    assert.equal(p.at, 'step');
    if (p.at !== 'step') throw new Error('unreachable');
    return gw.pipeline.upstreamFailed(p.facts, p.step as ProxyStep, err, false, opts.clientGone ?? false);
  }

  test('unreachable: 502; timed out: 504; busy: 503 with Retry-After', async () => {
    const unreachable = await failed(new HookgateError('UPSTREAM_CONNECT', 'ECONNREFUSED'));
    assert.equal(unreachable?.kind === 'answer' && unreachable.status, 502);
    const timedOut = await failed(new HookgateError('UPSTREAM_TIMEOUT', 'no headers in 30 s'));
    assert.equal(timedOut?.kind === 'answer' && timedOut.status, 504);
    const busy = await failed(new HookgateError('UPSTREAM_BUSY', 'queue full'));
    assert.ok(busy?.kind === 'answer');
    assert.equal(busy.status, 503);
    assert.equal(listGet(busy.headers, 'retry-after'), '1');
  });

  test('with a fallback the fallback action runs instead', async () => {
    const next = await failed(new HookgateError('UPSTREAM_CONNECT', 'ECONNREFUSED'), { fallback: true });
    assert.equal(next?.kind, 'fallback');
  });

  test('a client that went away gets nothing: no answer, no error', async () => {
    assert.equal(await failed(new Error('aborted'), { clientGone: true }), null);
  });
});

describe('on_response', () => {
  async function respond(p: MemoryPlugin | null, upstream: HeaderList, status = 200) {
    const gw = gateway(p);
    const planned = await gw.plan({ target: '/r' });
    assert.equal(planned.at, 'step');
    if (planned.at !== 'step') throw new Error('unreachable');
    const s = planned.step as ProxyStep;
    return { gw, r: await gw.pipeline.respond(planned.facts, planned.authorized.info, s.target, status, upstream) };
  }

  test('without on_response the upstream\'s answer passes, minus hop-by-hop headers and its own X-Request-Id', async () => {
    const { r } = await respond(null, ['Content-Type', 'text/plain', 'Connection', 'close, X-Internal', 'X-Internal', '1', 'Transfer-Encoding', 'chunked', 'X-Request-Id', 'upstream-id', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2']);
    assert.deepEqual(r, { kind: 'respond', status: 200, headers: ['Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2'] });
  });

  test('the plugin sets the status, sets and removes headers; it saw the upstream\'s status and headers', async () => {
    const { gw, r } = await respond({ on_response: () => ({ s: 203, h: { 'Cache-Control': 'no-store' }, rm: ['server'] }) }, ['Server', 'nginx', 'Cache-Control', 'max-age=60', 'Content-Type', 'text/plain'], 200);
    assert.ok(r.kind === 'respond');
    assert.equal(r.status, 203);
    assert.deepEqual(r.headers, ['Content-Type', 'text/plain', 'Cache-Control', 'no-store']);
    const [call] = gw.hooks.callsOf('p', 'on_response');
    assert.deepEqual((call.data as { resp: unknown }).resp, { s: 200, h: { Server: 'nginx', 'Cache-Control': 'max-age=60', 'Content-Type': 'text/plain' } });
  });

  test('a failing on_response (on_error deny) replaces the answer with 503', async () => {
    const { r } = await respond({ on_response: () => { throw new Error('boom'); } }, ['Content-Type', 'text/html']);
    assert.ok(r.kind === 'answer');
    assert.equal(r.status, 503);
    assert.equal(bodyText(r), 'service unavailable\n');
  });

  test('a 1xx status from on_response is the plugin\'s error: 503, not a 500', async () => {
    const { r } = await respond({ on_response: () => ({ s: 100 }) }, []);
    assert.ok(r.kind === 'answer');
    assert.equal(r.status, 503);
  });
});

describe('identity headers the route strips', () => {
  const stripping = (p: MemoryPlugin | null, binding: unknown = 'p') =>
    coreGateway(
      {
        gateway: { strip_request_headers: ['X-Internal-Auth'] },
        routes: [{ id: 'r', plugins: p ? [binding] : [], strip_request_headers: ['X-User'], action: { type: 'proxy', upstream: UPSTREAM } }],
        plugins: { p: { path: '/bin/true' } },
      },
      p ? { p } : {},
    );
  const forged = ['X-User', 'admin', 'x-internal-auth', 'yes', 'X_User', 'admin', 'Accept', '*/*'];

  test('the plugin never sees them (listed names in any case, and names with "_")', async () => {
    const gw = stripping({ on_request: () => allow() });
    await gw.plan({ target: '/', headers: forged });
    const info = gw.hooks.callsOf('p', 'on_request')[0].data as RequestInfo;
    assert.deepEqual(Object.keys(info.h).sort(), ['Accept', 'Host', 'X-Request-Id']);
  });

  test('with the plugin down and on_error allow, they still do not reach the upstream', async () => {
    const gw = stripping({ on_request: () => allow() }, { plugin: 'p', on_error: 'allow' });
    gw.hooks.down('p');
    const s = proxyOf(await gw.plan({ target: '/', headers: forged }));
    assert.deepEqual(namesOf(s.headers).filter((n) => n.includes('user') || n.includes('internal')), []);
  });

  test('a plugin may set one: the upstream gets the plugin\'s value only', async () => {
    const gw = stripping({ on_request: () => allow({ 'X-User': 'alice' }) });
    const s = proxyOf(await gw.plan({ target: '/', headers: forged }));
    assert.equal(listGet(s.headers, 'x-user'), 'alice');
  });
});

describe('request ids', () => {
  const idOf = (list: HeaderList) => listGet(list, 'x-request-id');

  test('a client\'s one valid X-Request-Id is kept, and the plugin and the upstream see it', async () => {
    const gw = gateway({ on_request: () => allow() });
    const p = await gw.plan({ target: '/', headers: ['X-Request-Id', 'abc-123'] });
    assert.equal(p.at === 'step' && p.facts.requestId, 'abc-123');
    assert.equal((gw.hooks.callsOf('p')[0].data as RequestInfo).h['X-Request-Id'], 'abc-123');
    assert.equal(idOf(proxyOf(p).headers), 'abc-123');
  });

  for (const [what, headers] of [
    ['none', []],
    ['an invalid one', ['X-Request-Id', 'bad id with spaces']],
    ['one too long', ['X-Request-Id', 'a'.repeat(129)]],
    ['two', ['X-Request-Id', 'one', 'x-request-id', 'two']],
  ] as const) {
    test(`a client that sent ${what} gets one new id, the same for the plugin and the upstream`, async () => {
      const gw = gateway({ on_request: () => allow() });
      const p = await gw.plan({ target: '/', headers: [...headers] });
      assert.ok(p.at === 'step');
      const id = p.facts.requestId;
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.equal((gw.hooks.callsOf('p')[0].data as RequestInfo).h['X-Request-Id'], id);
      const s = proxyOf(p);
      assert.equal(idOf(s.headers), id);
      assert.equal(namesOf(s.headers).filter((n) => n === 'x-request-id').length, 1);
    });
  }

  test('two requests get two ids', async () => {
    const gw = gateway(null);
    const a = await gw.plan({ target: '/' });
    const b = await gw.plan({ target: '/' });
    assert.ok(a.at === 'step' && b.at === 'step');
    assert.notEqual(a.facts.requestId, b.facts.requestId);
  });
});
