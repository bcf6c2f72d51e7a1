/**
 * Route matching: domain and path patterns, the Router's choice of route,
 * and the problems reported for bad patterns.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Route } from '../../src/core/config/config.ts';
import { isHookgateError } from '../../src/core/errors.ts';
import { Router, compileDomain, compilePath, hostOf, matchProblems } from '../../src/core/routing/routing.ts';

/** The Router reads only `id`, `index` and `match`; the rest of a Route is the config's business. */
function route(index: number, match?: Route['match'], id = `r${index}`): Route {
  return { id, index, match, plugins: [], set: {}, action: 'a', actionName: 'a' } as unknown as Route;
}

function throwsBadConfig(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isHookgateError(err, 'BAD_CONFIG'), `expected BAD_CONFIG, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

describe('hostOf', () => {
  const cases: Array<[string, string]> = [
    ['example.com', 'example.com'],
    ['Example.COM:8080', 'example.com'],
    ['[::1]:8080', '[::1]'],
    ['[::1]', '[::1]'],
    ['[FE80::1]:443', '[fe80::1]'],
    ['localhost', 'localhost'],
    ['127.0.0.1:3000', '127.0.0.1'],
    ['example.com.', 'example.com'],
    ['example.com.:8080', 'example.com'],
    ['', ''],
  ];
  for (const [input, expected] of cases) {
    test(`${JSON.stringify(input)} gives ${JSON.stringify(expected)}`, () => {
      assert.equal(hostOf(input), expected);
    });
  }
});

describe('compileDomain', () => {
  test('an exact pattern matches only that host and reports an empty glob', () => {
    const m = compileDomain('api.example.com');
    assert.deepEqual(m('api.example.com'), { md: 'api.example.com', mg: '' });
    assert.equal(m('example.com'), null);
    assert.equal(m('x.api.example.com'), null);
    assert.equal(m('api.example.co'), null);
    assert.equal(m('api.example.comm'), null);
  });

  test('"*" matches exactly one label', () => {
    const m = compileDomain('*.example.com');
    assert.deepEqual(m('api.example.com'), { md: '*.example.com', mg: 'api' });
    assert.equal(m('example.com'), null);
    assert.equal(m('a.b.example.com'), null);
    assert.equal(m('.example.com'), null);
    assert.equal(m('api.example.org'), null);
  });

  test('"*" in the middle captures that label', () => {
    const m = compileDomain('api.*.example.com');
    assert.deepEqual(m('api.eu.example.com'), { md: 'api.*.example.com', mg: 'eu' });
    assert.equal(m('api.example.com'), null);
    assert.equal(m('api.a.b.example.com'), null);
  });

  test('several wildcards report their texts joined with "." in pattern order', () => {
    const m = compileDomain('*.*.example.com');
    assert.deepEqual(m('a.b.example.com'), { md: '*.*.example.com', mg: 'a.b' });
    const n = compileDomain('**.cdn-*.example.com');
    assert.deepEqual(n('x.y.cdn-eu.example.com'), { md: '**.cdn-*.example.com', mg: 'x.y.eu' });
  });

  test('a label with a prefix before "*" matches labels with that prefix and a non-empty rest', () => {
    const m = compileDomain('cdn-*.example.com');
    assert.deepEqual(m('cdn-eu.example.com'), { md: 'cdn-*.example.com', mg: 'eu' });
    assert.equal(m('cdn-.example.com'), null);
    assert.equal(m('cdn.example.com'), null);
    assert.equal(m('xcdn-eu.example.com'), null);
    assert.equal(m('cdn-eu.x.example.com'), null);
  });

  test('a label with a suffix after "*" matches labels with that suffix and a non-empty rest', () => {
    const m = compileDomain('*-prod.example.com');
    assert.deepEqual(m('api-prod.example.com'), { md: '*-prod.example.com', mg: 'api' });
    assert.equal(m('-prod.example.com'), null);
    assert.equal(m('api-prod2.example.com'), null);
  });

  test('a label with text on both sides of "*" needs both', () => {
    const m = compileDomain('a*z.example.com');
    assert.deepEqual(m('abcz.example.com'), { md: 'a*z.example.com', mg: 'bc' });
    assert.equal(m('az.example.com'), null);
    assert.equal(m('abc.example.com'), null);
  });

  test('a leading "**" matches one or more leading labels', () => {
    const m = compileDomain('**.example.com');
    assert.deepEqual(m('a.example.com'), { md: '**.example.com', mg: 'a' });
    assert.deepEqual(m('a.b.example.com'), { md: '**.example.com', mg: 'a.b' });
    assert.equal(m('example.com'), null);
    assert.equal(m('.example.com'), null);
    assert.equal(m('a..example.com'), null);
    assert.equal(m('aexample.com'), null);
    assert.equal(m('a.example.org'), null);
  });

  test('a trailing "**" matches one or more trailing labels', () => {
    const m = compileDomain('example.**');
    assert.deepEqual(m('example.com'), { md: 'example.**', mg: 'com' });
    assert.deepEqual(m('example.co.uk'), { md: 'example.**', mg: 'co.uk' });
    assert.equal(m('example'), null);
    assert.equal(m('example.'), null);
    assert.equal(m('www.example.com'), null);
    assert.equal(m('examples.com'), null);
  });

  test('"**" alone matches any host', () => {
    const m = compileDomain('**');
    assert.deepEqual(m('localhost'), { md: '**', mg: 'localhost' });
    assert.deepEqual(m('a.b.c'), { md: '**', mg: 'a.b.c' });
    assert.equal(m(''), null);
  });

  test('"*" alone matches single-label hosts only', () => {
    const m = compileDomain('*');
    assert.deepEqual(m('localhost'), { md: '*', mg: 'localhost' });
    assert.equal(m('example.com'), null);
  });

  test('matching is case-insensitive and md keeps the pattern as written', () => {
    const m = compileDomain('*.Example.COM');
    assert.deepEqual(m('API.example.com'), { md: '*.Example.COM', mg: 'api' });
    assert.deepEqual(compileDomain('Example.com')('EXAMPLE.COM'), { md: 'Example.com', mg: '' });
  });

  test('the port of the host is ignored', () => {
    assert.deepEqual(compileDomain('*.example.com')('api.example.com:8443'), { md: '*.example.com', mg: 'api' });
    assert.deepEqual(compileDomain('example.com')('example.com:80'), { md: 'example.com', mg: '' });
  });

  test('a bracketed IPv6 literal matches that host with or without port', () => {
    const m = compileDomain('[::1]');
    assert.deepEqual(m('[::1]:8080'), { md: '[::1]', mg: '' });
    assert.deepEqual(m('[::1]'), { md: '[::1]', mg: '' });
    assert.equal(m('[::2]'), null);
  });

  test('IPv4 hosts match label by label', () => {
    assert.deepEqual(compileDomain('10.0.0.*')('10.0.0.7:80'), { md: '10.0.0.*', mg: '7' });
  });

  test('the first matching alternative wins and whitespace around commas is ignored', () => {
    const m = compileDomain(' example.com ,  *.example.com,**.example.com ');
    assert.deepEqual(m('example.com'), { md: 'example.com', mg: '' });
    assert.deepEqual(m('api.example.com'), { md: '*.example.com', mg: 'api' });
    assert.deepEqual(m('a.b.example.com'), { md: '**.example.com', mg: 'a.b' });
    assert.equal(m('example.org'), null);
  });

  test('a matcher gives the same answers when called again and again', () => {
    const m = compileDomain('**.cdn-*.example.com');
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(m('p.q.cdn-x.example.com'), { md: '**.cdn-*.example.com', mg: 'p.q.x' });
      assert.equal(m('cdn-x.example.com'), null);
      assert.deepEqual(m('r.cdn-yy.example.com'), { md: '**.cdn-*.example.com', mg: 'r.yy' });
    }
  });

  const invalid: Array<[string, RegExp]> = [
    ['a..b', /^domain: "a\.\.b": empty label$/],
    ['.example.com', /empty label/],
    ['example.com.', /empty label/],
    ['', /empty alternative/],
    ['a.com,', /"": empty alternative/],
    ['a.**.com', /"\*\*" may only be the first or the last label/],
    ['**.example.**', /not both/],
    ['a**.com', /more than one "\*"/],
    ['*a*.com', /more than one "\*"/],
    ['example.com:8080', /has no port/],
    ['exa mple.com', /may hold only letters/],
    ['bücher.de', /xn--/],
  ];
  for (const [pattern, message] of invalid) {
    test(`${JSON.stringify(pattern)} is refused with BAD_CONFIG`, () => {
      throwsBadConfig(() => compileDomain(pattern), message);
    });
  }
});

describe('compilePath', () => {
  test('an exact pattern matches only that path', () => {
    const m = compilePath('/health');
    assert.deepEqual(m('/health'), { mp: '/health', vars: {} });
    assert.equal(m('/health/'), null);
    assert.equal(m('/healthz'), null);
    assert.equal(m('/'), null);
  });

  test('"/" matches only the root', () => {
    const m = compilePath('/');
    assert.deepEqual(m('/'), { mp: '/', vars: {} });
    assert.equal(m('/a'), null);
  });

  test('a prefix pattern matches the base, the base with a slash and everything below it', () => {
    const m = compilePath('/v1/*');
    assert.deepEqual(m('/v1'), { mp: '/v1/*', vars: {} });
    assert.deepEqual(m('/v1/'), { mp: '/v1/*', vars: {} });
    assert.deepEqual(m('/v1/users/42'), { mp: '/v1/*', vars: {} });
    assert.equal(m('/v1x'), null);
    assert.equal(m('/v1x/y'), null);
    assert.equal(m('/v'), null);
    assert.equal(m('/v2/v1'), null);
  });

  test('"/*" matches every path', () => {
    const m = compilePath('/*');
    assert.deepEqual(m('/'), { mp: '/*', vars: {} });
    assert.deepEqual(m('/anything/at/all'), { mp: '/*', vars: {} });
  });

  test('":name" captures one non-empty segment', () => {
    const m = compilePath('/users/:id');
    assert.deepEqual(m('/users/42'), { mp: '/users/:id', vars: { id: '42' } });
    assert.equal(m('/users/'), null);
    assert.equal(m('/users'), null);
    assert.equal(m('/users/42/posts'), null);
    assert.equal(m('/people/42'), null);
  });

  test('several captures are all reported', () => {
    const m = compilePath('/orgs/:org/repos/:repo');
    assert.deepEqual(m('/orgs/acme/repos/gate'), { mp: '/orgs/:org/repos/:repo', vars: { org: 'acme', repo: 'gate' } });
    assert.equal(m('/orgs/acme/repo/gate'), null);
  });

  test('captures combine with a prefix', () => {
    const m = compilePath('/users/:id/*');
    assert.deepEqual(m('/users/42'), { mp: '/users/:id/*', vars: { id: '42' } });
    assert.deepEqual(m('/users/42/'), { mp: '/users/:id/*', vars: { id: '42' } });
    assert.deepEqual(m('/users/42/posts/7'), { mp: '/users/:id/*', vars: { id: '42' } });
    assert.equal(m('/users/'), null);
    assert.equal(m('/users'), null);
  });

  test('a capture as the first segment', () => {
    assert.deepEqual(compilePath('/:tenant/*')('/acme/x'), { mp: '/:tenant/*', vars: { tenant: 'acme' } });
  });

  test('captured values are percent-decoded; a malformed escape keeps the raw text', () => {
    const m = compilePath('/files/:name');
    assert.deepEqual(m('/files/a%20b%2Fc'), { mp: '/files/:name', vars: { name: 'a b/c' } });
    assert.deepEqual(m('/files/caf%C3%A9'), { mp: '/files/:name', vars: { name: 'café' } });
    assert.deepEqual(m('/files/100%'), { mp: '/files/:name', vars: { name: '100%' } });
    assert.deepEqual(m('/files/%E0%A4%A'), { mp: '/files/:name', vars: { name: '%E0%A4%A' } });
  });

  test('matching is case-sensitive and compares the raw, still encoded path', () => {
    const m = compilePath('/Admin/*');
    assert.equal(m('/admin'), null);
    assert.ok(m('/Admin/x'));
    const e = compilePath('/a%20b');
    assert.deepEqual(e('/a%20b'), { mp: '/a%20b', vars: {} });
    assert.equal(e('/a b'), null);
  });

  test('the first matching alternative wins and mp names it', () => {
    const m = compilePath('/health, /v1/*,/users/:id');
    assert.deepEqual(m('/health'), { mp: '/health', vars: {} });
    assert.deepEqual(m('/v1/x'), { mp: '/v1/*', vars: {} });
    assert.deepEqual(m('/users/7'), { mp: '/users/:id', vars: { id: '7' } });
    assert.equal(m('/other'), null);
  });

  test('each match gets its own vars object', () => {
    const m = compilePath('/users/:id');
    const a = m('/users/1');
    const b = m('/users/2');
    assert.deepEqual([a?.vars, b?.vars], [{ id: '1' }, { id: '2' }]);
    assert.notEqual(compilePath('/x')('/x')?.vars, compilePath('/x')('/x')?.vars);
  });

  test('the same name may be used in different alternatives', () => {
    const m = compilePath('/a/:id, /b/:id');
    assert.deepEqual(m('/b/9'), { mp: '/b/:id', vars: { id: '9' } });
  });

  const invalid: Array<[string, RegExp]> = [
    ['v1/*', /^path: "v1\/\*": must start with "\/"$/],
    ['', /empty alternative/],
    ['/a,', /empty alternative/],
    ['/a/*/b', /may only be the last segment/],
    ['/v1*', /must be a whole segment/],
    ['/a/*x', /must be a whole segment/],
    ['/users/:', /needs a name/],
    ['/users/:id/:id', /"id" is used twice/],
    ['/users/:1d', /capture name "1d"/],
    ['/users/:a-b', /capture name "a-b"/],
    ['/search?q=1', /no whitespace, query or fragment/],
  ];
  for (const [pattern, message] of invalid) {
    test(`${JSON.stringify(pattern)} is refused with BAD_CONFIG`, () => {
      throwsBadConfig(() => compilePath(pattern), message);
    });
  }
});

describe('matchProblems', () => {
  test('a good match block has no problems', () => {
    assert.deepEqual(matchProblems({ domain: '*.example.com, example.com', path: '/v1/*', methods: ['GET'] }), []);
    assert.deepEqual(matchProblems({}), []);
  });

  test('empty or blank domain and path mean "anything" and are fine', () => {
    assert.deepEqual(matchProblems({ domain: '', path: '  ' }), []);
  });

  test('every problem is reported, each naming its field and alternative', () => {
    assert.deepEqual(matchProblems({ domain: 'a..b, ok.com, x.**.y', path: 'v1/*, /a/:', methods: ['GET', 'NOT A METHOD'] }), [
      'domain: "a..b": empty label',
      'domain: "x.**.y": "**" may only be the first or the last label',
      'path: "v1/*": must start with "/"',
      'path: "/a/:": ":" needs a name, as in "/users/:id"',
      'methods[1]: "NOT A METHOD" is not an HTTP method',
    ]);
  });
});

describe('Router', () => {
  test('the first matching route wins, in route order', () => {
    const router = new Router([
      route(0, { path: '/v1/special' }),
      route(1, { path: '/v1/*' }),
      route(2, { path: '/v1/special' }),
    ]);
    assert.equal(router.match('GET', 'example.com', '/v1/special')?.route.id, 'r0');
    assert.equal(router.match('GET', 'example.com', '/v1/other')?.route.id, 'r1');
  });

  test('a route without match, or with an empty one, is a catch-all', () => {
    for (const match of [undefined, {}, { domain: '', path: '', methods: [] }]) {
      const router = new Router([route(0, { path: '/only' }), route(1, match)]);
      const m = router.match('DELETE', 'any.host:1234', '/whatever');
      assert.deepEqual(m && { id: m.route.id, md: m.md, mg: m.mg, mp: m.mp, vars: m.vars }, { id: 'r1', md: '', mg: '', mp: '', vars: {} });
    }
  });

  test('no matching route gives null', () => {
    const router = new Router([route(0, { domain: 'example.com' }), route(1, { path: '/x' })]);
    assert.equal(router.match('GET', 'other.com', '/y'), null);
    assert.equal(new Router([]).match('GET', 'example.com', '/'), null);
  });

  test('domain, path and methods must all match', () => {
    const router = new Router([
      route(0, { domain: '*.example.com', path: '/users/:id', methods: ['GET', 'HEAD'] }),
      route(1, {}),
    ]);
    assert.equal(router.match('GET', 'api.example.com', '/users/1')?.route.id, 'r0');
    assert.equal(router.match('POST', 'api.example.com', '/users/1')?.route.id, 'r1');
    assert.equal(router.match('GET', 'example.com', '/users/1')?.route.id, 'r1');
    assert.equal(router.match('GET', 'api.example.com', '/users')?.route.id, 'r1');
  });

  test('a match reports the route, md, mg, mp and the path captures', () => {
    const r = route(0, { domain: 'example.com, cdn-*.example.com', path: '/health, /users/:id/*' });
    const m = new Router([r]).match('GET', 'CDN-EU.Example.com:8443', '/users/a%40b/posts');
    assert.deepEqual(m, { route: r, md: 'cdn-*.example.com', mg: 'eu', mp: '/users/:id/*', vars: { id: 'a@b' } });
  });

  test('methods are compared upper-case on both sides', () => {
    const router = new Router([route(0, { methods: ['post', 'Patch'] })]);
    assert.ok(router.match('POST', 'h', '/'));
    assert.ok(router.match('patch', 'h', '/'));
    assert.equal(router.match('GET', 'h', '/'), null);
  });

  test('the raw Host header is reduced to the host: port, case and trailing dot do not matter', () => {
    const router = new Router([route(0, { domain: 'api.example.com' })]);
    for (const host of ['api.example.com', 'API.EXAMPLE.COM:443', 'api.example.com.', 'api.example.com.:80']) {
      assert.equal(router.match('GET', host, '/')?.route.id, 'r0', host);
    }
    assert.equal(router.match('GET', '', '/'), null);
  });

  test('an IPv6 Host header matches a bracketed pattern', () => {
    const router = new Router([route(0, { domain: '[::1]' })]);
    assert.equal(router.match('GET', '[::1]:8080', '/')?.route.id, 'r0');
  });

  test('routes is the list it was built from', () => {
    const routes = [route(0, {}), route(1, {})];
    assert.equal(new Router(routes).routes, routes);
  });

  test('a bad pattern is refused with BAD_CONFIG naming the route field', () => {
    throwsBadConfig(() => new Router([route(0, {}), route(1, { domain: 'a..b' })]), /^routes\[1\]\.match\.domain: "a\.\.b": empty label$/);
    throwsBadConfig(() => new Router([route(0, { path: 'v1' })]), /^routes\[0\]\.match\.path: "v1": must start with "\/"$/);
  });

  test('every bad pattern of every route is reported at once', () => {
    throwsBadConfig(
      () => new Router([route(0, { domain: 'a..b', path: '/x/*/y' }), route(1, {}), route(2, { path: '/:' })]),
      /routes\[0\]\.match\.domain: .*\n.*routes\[0\]\.match\.path: .*\n.*routes\[2\]\.match\.path: /,
    );
  });
});
