/**
 * Routing as a request meets it (`Pipeline.route`): the Host is checked
 * and the raw path normalised once, then the first matching route wins by
 * domain, path and method. Hostile paths that try to get past a route's
 * guard (`/%61dmin`, `//admin`, `/admin;x`, dot segments plain and
 * encoded, double encoding, encoded slashes and backslashes) either reach
 * the guarded route or are refused with 400, and the plugin and the
 * upstream see one and the same normal path.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RequestInfo } from '../../src/core/protocol/protocol.ts';
import { allow, deny } from '../../node-runner/sdk/index.ts';
import { answerOf, bodyText, coreGateway, proxyOf, type Planned } from '../helpers/core.ts';

const UP = 'http://10.0.0.1:3000';
const proxy = { type: 'proxy', upstream: UP };

/** A guard that denies everything with 401, on /admin/* and admin.example.com; `fx` allows and records. */
const gw = coreGateway(
  {
    routes: [
      { id: 'admin-host', match: { domain: 'admin.example.com' }, plugins: ['guard'], action: proxy },
      { id: 'admin', match: { path: '/admin/*' }, plugins: ['guard'], action: proxy },
      { id: 'caseless', match: { path: '/caseless/*', case_insensitive: true }, plugins: ['guard'], action: proxy },
      { id: 'files', match: { path: '/files/*', allow_encoded_slash: true }, action: proxy },
      { id: 'writes', match: { path: '/api/*', methods: ['post', 'PUT'] }, action: { type: 'static', body: 'write\n' } },
      { id: 'reads', match: { path: '/api/*' }, action: { type: 'static', body: 'read\n' } },
      { id: 'cdn', match: { domain: 'cdn-*.example.com, **.assets.example.com', path: '/static/*' }, action: { type: 'static', body: 'cdn\n' } },
      { id: 'exact', match: { path: '/health' }, action: { type: 'static', body: 'healthy\n' } },
      { id: 'public', match: { domain: '*.example.com', path: '/public/*' }, plugins: ['fx'], action: proxy },
      { id: 'rest', match: { domain: '*.example.com' }, action: proxy },
    ],
    plugins: { guard: { path: '/bin/true' }, fx: { path: '/bin/true' } },
  },
  { guard: { on_request: () => deny(401, 'unauthorized\n') }, fx: { on_request: () => allow() } },
);

const routeOf = (p: Planned) => (p.at === 'route' ? null : p.facts.plan.route.id);

describe('matching: the first route that matches domain, path and method', () => {
  test('a later route catches what the first does not', async () => {
    assert.equal(routeOf(await gw.plan({ target: '/health' })), 'exact');
    assert.equal(routeOf(await gw.plan({ target: '/health/x' })), 'rest', 'an exact path matches only itself');
    assert.equal(routeOf(await gw.plan({ target: '/anything' })), 'rest');
  });

  test('methods filter routes: a route for other methods is skipped', async () => {
    assert.equal(bodyText(answerOf(await gw.plan({ method: 'POST', target: '/api/x' }))), 'write\n');
    assert.equal(bodyText(answerOf(await gw.plan({ method: 'PUT', target: '/api/x' }))), 'write\n');
    assert.equal(bodyText(answerOf(await gw.plan({ method: 'GET', target: '/api/x' }))), 'read\n');
  });

  test('domains match case-insensitively, without the port or a trailing dot', async () => {
    for (const host of ['admin.example.com', 'ADMIN.Example.COM', 'admin.example.com:8443', 'admin.example.com.']) {
      assert.equal(routeOf(await gw.plan({ target: '/x', host })), 'admin-host', host);
    }
  });

  test('"cdn-*" is an affix of one label, "**" one or more labels', async () => {
    for (const host of ['cdn-eu.example.com', 'a.assets.example.com', 'a.b.assets.example.com']) assert.equal(routeOf(await gw.plan({ target: '/static/x', host })), 'cdn', host);
    for (const host of ['cdn-.example.com', 'assets.example.com', 'x.cdn-eu.example.com']) assert.notEqual(routeOf(await gw.plan({ target: '/static/x', host })), 'cdn', host);
  });

  test('no matching route answers 404 with a short plain-text body', async () => {
    const a = answerOf(await gw.plan({ target: '/x', host: 'other.test' }));
    assert.equal(a.status, 404);
    assert.equal(bodyText(a), 'no route matches this request\n');
  });
});

describe('hostile paths are normalised once, before routing', () => {
  for (const attack of ['/%61dmin/users', '/%61%64%6d%69%6e/users', '//admin/users', '/admin;/users', '/admin;x=1/users', '/;x/admin/users', '/public/../admin/users', '/public/%2e%2e/admin/users', '/public/.%2E/admin/users', '/./admin/users', '/x/../../admin/users']) {
    test(`${attack} reaches the /admin/* route, whose guard denies it`, async () => {
      const p = await gw.plan({ target: attack });
      assert.equal(routeOf(p), 'admin');
      assert.equal(answerOf(p).status, 401);
    });
  }

  for (const [attack, why] of [
    ['/admin%2Fusers', 'encoded "/" in the path is not allowed on this route'],
    ['/admin%2fusers', 'encoded "/" in the path is not allowed on this route'],
    ['/admin%5Cusers', 'encoded "/" in the path is not allowed on this route'],
    ['/public/..%2Fadmin/users', 'dot segment next to an encoded "/" or "\\" in the path'],
    ['/public/%2e%2e%2Fadmin/users', 'dot segment next to an encoded "/" or "\\" in the path'],
    ['/files/..%2F..%2Fadmin', 'dot segment next to an encoded "/" or "\\" in the path'],
    ['/public/..;/admin/users', 'dot segment with ";" parameters in the path'],
    ['/public/a%zz', 'malformed percent-escape in the path'],
    ['/public/a%00', 'encoded NUL in the path'],
  ] as const) {
    test(`${attack} is refused with 400 (${why})`, async () => {
      const a = answerOf(await gw.plan({ target: attack }));
      assert.equal(a.status, 400);
      assert.equal(bodyText(a), `bad request: ${why}\n`);
    });
  }

  test('a raw "\\" or a control character in the path is refused with 400', async () => {
    assert.equal(answerOf(await gw.plan({ target: '/public/a\\b' })).status, 400);
    assert.equal(answerOf(await gw.plan({ target: '/public/a\tb' })).status, 400);
  });

  test('double encoding is decoded once only: %252e%252e stays a name, never a dot segment', async () => {
    const p = await gw.plan({ target: '/public/%252e%252e/admin/users' });
    assert.equal(routeOf(p), 'public');
    assert.equal(proxyOf(p).url, `${UP}/public/%252e%252e/admin/users`);
  });

  test('the plugin and the upstream see exactly the normal path; the query goes as sent', async () => {
    const before = gw.hooks.callsOf('fx').length;
    const p = await gw.plan({ target: '/public/%7euser/./a//b/%2e/c%3f;v=1/../d?x=%2e%2e&y=a//b' });
    const info = gw.hooks.callsOf('fx')[before].data as RequestInfo;
    assert.equal(info.p, '/public/~user/a/b/d');
    assert.equal(info.q, 'x=%2e%2e&y=a//b');
    assert.equal(info.mp, '/public/*');
    assert.equal(proxyOf(p).url, `${UP}/public/~user/a/b/d?x=%2e%2e&y=a//b`);
  });

  test('";" parameters stay in the path the plugin and the upstream see, and do not change the route', async () => {
    const p = await gw.plan({ target: '/public;jsessionid=1/cart' });
    assert.equal(routeOf(p), 'public');
    assert.equal(proxyOf(p).url, `${UP}/public;jsessionid=1/cart`);
  });

  test('a route with allow_encoded_slash passes %2F through, encoded, with upper-case hex', async () => {
    assert.equal(proxyOf(await gw.plan({ target: '/files/a%2fb%2Fc' })).url, `${UP}/files/a%2Fb%2Fc`);
  });

  test('paths are case-sensitive by default; a case_insensitive route takes any case', async () => {
    assert.equal(routeOf(await gw.plan({ target: '/ADMIN/users' })), 'rest');
    for (const t of ['/caseless/x', '/CASELESS/x', '/CaseLess/x']) assert.equal(answerOf(await gw.plan({ target: t })).status, 401, t);
  });
});

describe('the Host and the request target', () => {
  test('an absolute-form target naming another host than Host is refused; the same host routes as usual', async () => {
    const other = answerOf(await gw.plan({ target: 'http://admin.example.com/x', host: 'www.example.com' }));
    assert.equal(other.status, 400);
    assert.equal(bodyText(other), 'bad request: the request target names another host than the Host header\n');
    assert.equal(routeOf(await gw.plan({ target: 'http://admin.example.com/x', host: 'admin.example.com' })), 'admin-host');
  });

  test('two Host headers, a comma-joined Host, userinfo or junk in Host, or none: 400', async () => {
    const route = (hosts: string[]) => gw.pipeline.route('GET', { target: '/x', hosts }, [], { remoteAddr: '192.0.2.1:1', ip: '192.0.2.1', protocol: 'HTTP/1.1', tls: false });
    for (const hosts of [['www.example.com', 'admin.example.com'], ['admin.example.com,x.example.com'], ['user@admin.example.com'], ['admin.example.com/x'], []]) {
      const a = route(hosts);
      assert.equal(a.kind, 'answer', JSON.stringify(hosts));
      assert.equal(a.kind === 'answer' && a.status, 400, JSON.stringify(hosts));
    }
  });
});
