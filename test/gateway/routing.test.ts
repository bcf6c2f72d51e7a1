/**
 * Routing through the gateway: domain and path patterns choose the route
 * (first match wins), methods filter, no route is a short 404; route
 * variables (`set` and `:name` captures) expand in upstream templates;
 * static and redirect actions.
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { request } from '../helpers/http.ts';
import { baseConfig, startGateway, type Gateway } from '../helpers/processes.ts';
import { suiteScope } from '../helpers/scope.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';

/** A route that answers with its own id, so a test sees which route served it. */
const says = (id: string, match: Record<string, unknown>) => ({ id, match, action: { type: 'static', body: id } });

const files = suiteScope();
let gw: Gateway;
let up: Upstream;

before(async () => {
  up = await startUpstream(files, { name: 'app' });
  gw = await startGateway(
    files,
    baseConfig({
      routes: [
        says('api-v1', { domain: 'api.example.com', path: '/v1/*' }),
        says('wild', { domain: '*.example.com, example.org' }),
        says('cdn', { domain: 'cdn-*.example.net' }),
        says('deep', { domain: '**.internal' }),
        says('writes', { path: '/items/*', methods: ['post', 'PUT'] }),
        says('reads', { path: '/items/*' }),
        says('get-only', { path: '/get-only', methods: ['GET'] }),
        says('exact', { path: '/health' }),
        {
          id: 'users',
          match: { path: '/users/:id/posts/:post', allow_encoded_slash: true },
          set: { tenant: 'acme corp', id: 'overridden by the capture' },
          action: { type: 'proxy', upstream: `${up.url}/{tenant}/v2{path}?{query}&user={id}&post={post}` },
        },
        { id: 'shop', match: { path: '/shop/*' }, set: { region: 'eu' }, action: { type: 'proxy', upstream: `${up.url}/{region}` } },
        { id: 'tpl', match: { path: '/tpl/*' }, action: { type: 'proxy', upstream: `${up.url}/api{path}` } },
        { id: 'old', match: { path: '/old/*' }, action: { type: 'redirect', to: 'https://new.example.com{path}', status: 308 } },
        { id: 'legacy', match: { path: '/legacy/:page' }, action: { type: 'redirect', to: '/pages/{page}.html' } },
        {
          id: 'teapot',
          match: { path: '/teapot' },
          action: { type: 'static', status: 418, body: 'short and stout\n', headers: { 'Content-Type': 'text/plain', 'X-Static': 'yes' } },
        },
      ],
    }),
  );
});

const get = (host: string, path: string, method = 'GET') => request(`${gw.url}${path}`, { method, headers: { host } });

describe('routing', { concurrency: true, timeout: 60_000 }, () => {
  test('a domain and path pattern choose the route; a later route catches what the first does not', async () => {
    assert.equal((await get('api.example.com', '/v1/users')).text, 'api-v1');
    assert.equal((await get('api.example.com', '/v2/users')).text, 'wild', 'first match wins, the next route takes the rest');
    assert.equal((await get('www.example.com', '/v1/users')).text, 'wild');
  });

  test('domains match case-insensitively and ignore the port', async () => {
    assert.equal((await get('API.Example.COM:8443', '/v1/x')).text, 'api-v1');
  });

  test('domain alternatives and wildcards: "*" is one label, "cdn-*" an affix, "**" one or more labels', async () => {
    assert.equal((await get('example.org', '/')).text, 'wild');
    assert.equal((await get('a.b.example.com', '/')).status, 404, '"*" matches exactly one label');
    assert.equal((await get('cdn-eu.example.net', '/')).text, 'cdn');
    assert.equal((await get('cdn.example.net', '/')).status, 404);
    assert.equal((await get('x.y.internal', '/')).text, 'deep');
  });

  test('methods filter routes: a route for other methods is skipped', async () => {
    assert.equal((await get('shop.test', '/items/1', 'POST')).text, 'writes');
    assert.equal((await get('shop.test', '/items/1', 'PUT')).text, 'writes');
    assert.equal((await get('shop.test', '/items/1', 'GET')).text, 'reads');
    assert.equal((await get('shop.test', '/get-only', 'GET')).text, 'get-only');
    const post = await get('shop.test', '/get-only', 'POST');
    assert.equal(post.status, 404);
  });

  test('exact paths match only themselves', async () => {
    assert.equal((await get('any.test', '/health')).text, 'exact');
    assert.equal((await get('any.test', '/health/more')).status, 404);
  });

  test('no matching route answers 404 with a short plain-text body', async () => {
    const res = await get('nothing.test', '/nowhere');
    assert.equal(res.status, 404);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    assert.equal(res.text, 'no route matches this request\n');
    assert.ok(res.body.length < 100);
  });

  test('route variables from set and :name captures expand in the upstream template (captures win, values encoded; the route allows an encoded "/")', async () => {
    const res = await get('any.test', '/users/a%2Fb/posts/7?x=1');
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/acme%20corp/v2/users/a%2Fb/posts/7?x=1&user=a%2Fb&post=7');
  });

  test('a template without {path} gets the request path and query appended', async () => {
    const res = await get('any.test', '/shop/item?color=red');
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/eu/shop/item?color=red');
  });

  test('a template that places {path} but not {query} still gets the query string appended', async () => {
    const res = await get('any.test', '/tpl/item?q=1&r=2');
    assert.equal(res.status, 200);
    assert.equal(res.json().url, '/api/tpl/item?q=1&r=2');
  });

  test('a redirect action expands {path}, keeps the query, and uses its status', async () => {
    const res = await get('any.test', '/old/page?x=1');
    assert.equal(res.status, 308);
    assert.equal(res.headers.location, 'https://new.example.com/old/page?x=1');
    assert.equal(up.received.filter((r) => r.url.includes('/old/')).length, 0);
  });

  test('a redirect action expands captures and defaults to 302', async () => {
    const res = await get('any.test', '/legacy/about');
    assert.equal(res.status, 302);
    assert.equal(res.headers.location, '/pages/about.html');
  });

  test('a static action answers its status, body and headers', async () => {
    const res = await get('any.test', '/teapot');
    assert.equal(res.status, 418);
    assert.equal(res.text, 'short and stout\n');
    assert.equal(res.headers['x-static'], 'yes');
    assert.equal(res.headers['content-type'], 'text/plain');
  });
});
