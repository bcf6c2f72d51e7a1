/**
 * The core's request checks as plain functions: the path normaliser (a
 * table of attacks and the path or refusal each gets), the match path
 * without `;` parameters, encoded slashes, request targets, Host headers,
 * WebSocket upgrades, header canonicalisation and stripping, and the group
 * key a balancer picks by.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Balancer } from '../../src/core/routing/balancer.ts';
import { hostHeaders } from '../../src/core/gateway/gateway.ts';
import { canonicalHeaderMap, isWebSocketUpgrade, stripPolicy, strippedByPolicy, withHeaderChanges } from '../../src/core/protocol/headers.ts';
import { hasEncodedSlash, matchPathOf, normalizePath, splitTarget, type PathProblem } from '../../src/core/routing/path.ts';
import { compilePath, hostProblem, matchProblems } from '../../src/core/routing/routing.ts';
import { groupKeyOf } from '../../src/core/state/state.ts';

/** raw path → the normal path, or the refusal's problem */
const TABLE: Array<[string, string | { refused: PathProblem }]> = [
  // already normal: returned as is
  ['/', '/'],
  ['/admin/users', '/admin/users'],
  ['/a/b/', '/a/b/'],
  ['/files/report%20final.pdf', '/files/report%20final.pdf'],
  ["/a/!$&'()*+,=:@~-._/b", "/a/!$&'()*+,=:@~-._/b"],
  ['/admin;x=1/users', '/admin;x=1/users'],
  // unreserved escapes decoded, other hex upper-cased
  ['/%61dmin/users', '/admin/users'],
  ['/%41%5a%30%2d%2e%5f%7e', '/AZ0-._~'],
  ['/a%3fb', '/a%3Fb'],
  ['/a%c3%a9', '/a%C3%A9'],
  ['/a%252e%252e/b', '/a%252e%252e/b'],
  // dot segments, also after decoding, never above "/"
  ['/public/../api/me', '/api/me'],
  ['/public/%2e%2e/api/me', '/api/me'],
  ['/public/.%2E/api/me', '/api/me'],
  ['/a/./b/.', '/a/b/'],
  ['/a/b/..', '/a/'],
  ['/../../etc/passwd', '/etc/passwd'],
  ['/..', '/'],
  ['/.', '/'],
  // duplicate slashes merged
  ['//admin/users', '/admin/users'],
  ['/a///b//', '/a/b/'],
  ['//', '/'],
  // encoded "/" and "\" stay encoded (the route decides), hex upper-cased
  ['/admin%2Fusers', '/admin%2Fusers'],
  ['/admin%2fusers', '/admin%2Fusers'],
  ['/a%5cb', '/a%5Cb'],
  // characters a path may not hold raw are encoded
  ['/a"<>`{|}^[]#b', '/a%22%3C%3E%60%7B%7C%7D%5E%5B%5D%23b'],
  ['/caf\u00c3\u00a9', '/caf%C3%A9'],
  // refusals
  ['/public/..%2Fapi/me', { refused: 'hidden-dot' }],
  ['/public/x%2F..%2Fapi', { refused: 'hidden-dot' }],
  ['/public/%2e%2e%5Capi', { refused: 'hidden-dot' }],
  ['/a%zz', { refused: 'bad-escape' }],
  ['/a%4', { refused: 'bad-escape' }],
  ['/a%', { refused: 'bad-escape' }],
  ['/a%4/b', { refused: 'bad-escape' }],
  ['/a%00b', { refused: 'nul' }],
  ['/a\u0000b', { refused: 'control' }],
  ['/a\tb', { refused: 'control' }],
  ['/a\u007fb', { refused: 'control' }],
  ['/a\\b', { refused: 'backslash' }],
  ['/public/..;/admin/users', { refused: 'dot-params' }],
  ['/public/%2e%2e;x/admin', { refused: 'dot-params' }],
  ['/.;/admin', { refused: 'dot-params' }],
  ['*', { refused: 'not-a-path' }],
  ['', { refused: 'not-a-path' }],
  ['admin/users', { refused: 'not-a-path' }],
];

describe('normalizePath', () => {
  for (const [raw, want] of TABLE) {
    test(`${JSON.stringify(raw)} → ${typeof want === 'string' ? JSON.stringify(want) : `refused (${want.refused})`}`, () => {
      const got = normalizePath(raw);
      if (typeof want === 'string') assert.equal(got, want);
      else {
        assert.equal(typeof got, 'object', `expected a refusal, got ${JSON.stringify(got)}`);
        assert.equal((got as { problem: string }).problem, want.refused);
      }
    });
  }

  test('an already normal path comes back as the same string', () => {
    const raw = '/api/v1/users/42;v=2';
    assert.equal(normalizePath(raw), raw);
  });

  test('normalising is idempotent over the table', () => {
    for (const [raw] of TABLE) {
      const once = normalizePath(raw);
      if (typeof once === 'string') assert.equal(normalizePath(once), once, raw);
    }
  });

  test("a refusal's message is one short line that never echoes the client's bytes", () => {
    for (const raw of ['/<script>%zz', '/\u0001x', '/a\\<b>', '/<b>/..;/x', '/<b>/..%2F']) {
      const r = normalizePath(raw);
      assert.equal(typeof r, 'object');
      const msg = (r as { message: string }).message;
      assert.match(msg, /^bad request: [^\n]+\n$/);
      assert.ok(!msg.includes('<'), msg);
    }
  });
});

describe('matchPathOf and hasEncodedSlash', () => {
  test('segments are compared without their ";" parameters', () => {
    assert.equal(matchPathOf('/admin;/users'), '/admin/users');
    assert.equal(matchPathOf('/admin;x=1/users;y'), '/admin/users');
    assert.equal(matchPathOf('/;x/admin/users'), '/admin/users', 'a segment that is only parameters is dropped');
    assert.equal(matchPathOf('/admin/;x'), '/admin/');
    assert.equal(matchPathOf('/;x'), '/');
    const plain = '/no/params';
    assert.equal(matchPathOf(plain), plain);
  });

  test('encoded slashes are found in a normal path', () => {
    assert.equal(hasEncodedSlash('/a%2Fb'), true);
    assert.equal(hasEncodedSlash('/a%5Cb'), true);
    assert.equal(hasEncodedSlash('/a%252Fb'), false);
    assert.equal(hasEncodedSlash('/a/b'), false);
  });
});

describe('path patterns', () => {
  test('a case-insensitive pattern matches any case and captures in the request\'s case', () => {
    const m = compilePath('/Admin/:who/*', { caseInsensitive: true });
    assert.deepEqual(m('/ADMIN/Alice/x'), { mp: '/Admin/:who/*', vars: { who: 'Alice' } });
    assert.deepEqual(m('/admin/bob'), { mp: '/Admin/:who/*', vars: { who: 'bob' } });
    assert.equal(compilePath('/Admin/*')('/ADMIN/x'), null, 'case-sensitive by default');
  });

  test('a pattern not in normal form, or with ";", is a config problem that says how to write it', () => {
    assert.deepEqual(matchProblems({ path: '/a//b' }), ['path: "/a//b": not in the normal form request paths are compared in; write it as "/a/b"']);
    assert.deepEqual(matchProblems({ path: '/%61dmin/*' }), ['path: "/%61dmin/*": not in the normal form request paths are compared in; write it as "/admin/*"']);
    assert.match(matchProblems({ path: '/a;b' })[0], /holds no ";"/);
    assert.match(matchProblems({ path: '/a%zz' })[0], /malformed percent-escape/);
  });

  test('a non-ASCII pattern matches its UTF-8 percent-encoding', () => {
    assert.ok(compilePath('/café/*')('/caf%C3%A9/menu'));
  });
});

describe('splitTarget', () => {
  test('origin form and absolute form', () => {
    assert.deepEqual(splitTarget('/a/b?x=1&y'), { authority: null, path: '/a/b', query: 'x=1&y' });
    assert.deepEqual(splitTarget('/a'), { authority: null, path: '/a', query: '' });
    assert.deepEqual(splitTarget('http://Api.Example.com:8080/a?x'), { authority: 'Api.Example.com:8080', path: '/a', query: 'x' });
    assert.deepEqual(splitTarget('HTTPS://h?x'), { authority: 'h', path: '/', query: 'x' });
    assert.deepEqual(splitTarget('*'), { authority: null, path: '*', query: '' });
  });
});

describe('hostProblem', () => {
  test('one host name, IPv4 or bracketed IPv6, with an optional port, is fine', () => {
    for (const h of ['example.com', 'API.Example.COM:8443', 'example.com.', 'x_y.internal', '127.0.0.1:8080', '[::1]', '[2001:db8::1]:443', 'localhost']) {
      assert.equal(hostProblem([h]), '', h);
    }
  });

  test('several Host headers, a list, userinfo, junk or no Host at all are refused', () => {
    assert.equal(hostProblem(['admin.example.com', 'www.example.com']), 'bad request: more than one Host header\n');
    assert.equal(hostProblem([]), 'bad request: missing Host header\n');
    assert.equal(hostProblem(['']), 'bad request: missing Host header\n');
    for (const h of ['admin.example.com,x.example.com', 'admin.example.com, x', 'user@admin.example.com', 'a b', 'a/b', 'a..b', '.a', 'a:99999', 'a:x', '[::1', 'a%2eb', 'caf\u00e9.com', 'a\r\nb']) {
      assert.match(hostProblem([h]), /^bad request: the Host header is not a host name/, h);
    }
  });

  test('hostHeaders keeps every Host of a raw header list', () => {
    assert.deepEqual(hostHeaders(['Host', 'a', 'X-Host', 'x', 'HOST', 'b', 'Accept', '*/*']), ['a', 'b']);
  });
});

describe('request headers', () => {
  test('only a GET asking for "websocket" is a tunnelled upgrade', () => {
    assert.equal(isWebSocketUpgrade('GET', 'websocket'), true);
    assert.equal(isWebSocketUpgrade('GET', 'WebSocket'), true);
    assert.equal(isWebSocketUpgrade('GET', 'h2c'), false);
    assert.equal(isWebSocketUpgrade('GET', 'foo'), false);
    assert.equal(isWebSocketUpgrade('POST', 'websocket'), false);
    assert.equal(isWebSocketUpgrade('GET', undefined), false);
  });

  test('canonicalHeaderMap returns a canonical map as it is, and merges names that differ in case', () => {
    const canonical = { 'X-User': 'alice', Authorization: 'Bearer t' };
    assert.equal(canonicalHeaderMap(canonical), canonical);
    assert.deepEqual(canonicalHeaderMap({ authorization: 'Bearer t', 'x-user': 'a', 'X-User': 'b' }), { Authorization: 'Bearer t', 'X-User': 'a, b' });
  });

  test("withHeaderChanges: a plugin's lower-case name replaces the client's canonical one; removals go first", () => {
    assert.deepEqual(withHeaderChanges({ 'X-User': 'admin', Accept: '*/*' }, { 'x-user': 'alice' }, []), { 'X-User': 'alice', Accept: '*/*' });
    assert.deepEqual(withHeaderChanges({ 'X-User': 'admin' }, {}, ['x-user']), {});
    assert.deepEqual(withHeaderChanges({ 'X-User': 'admin' }, { 'X-User': 'alice' }, ['X-User']), { 'X-User': 'alice' });
  });

  test('strip policy: listed names in any case, and names with "_" unless allowed', () => {
    const p = stripPolicy(['X-User'], ['x-tenant'], 'drop');
    assert.equal(strippedByPolicy('x-user', p), true);
    assert.equal(strippedByPolicy('X-TENANT', p), true);
    assert.equal(strippedByPolicy('x_user', p), true);
    assert.equal(strippedByPolicy('accept', p), false);
    assert.equal(strippedByPolicy('x_user', stripPolicy([], [], 'allow')), false);
  });
});

describe('group keys', () => {
  const byTenant = { from: 'header' as const, name: 'X-Tenant' };

  test("the verdict's header wins over the client's; the client's counts only when no plugin set one", () => {
    assert.equal(groupKeyOf(byTenant, { 'X-Tenant': 'a' }, 'b', {}), 'a');
    assert.equal(groupKeyOf(byTenant, { 'x-tenant': 'a' }, 'b', {}), 'a', 'found in any case');
    assert.equal(groupKeyOf(byTenant, {}, 'b', {}), 'b');
    assert.equal(groupKeyOf(byTenant, null, null, {}), undefined);
  });

  test('a var key comes from the route variables', () => {
    assert.equal(groupKeyOf({ from: 'var', name: 'region' }, { Region: 'x' }, null, { region: 'eu' }), 'eu');
    assert.equal(groupKeyOf({ from: 'var', name: 'toString' }, null, null, {}), undefined);
  });

  test('an unknown or absent key gets no target with "deny", every target with "all"', () => {
    const b = new Balancer('roundrobin', { targets: [], groups: { a: ['a:1'], b: ['b:1'] } });
    assert.equal(b.pick('a', 'deny')?.target, 'a:1');
    assert.equal(b.pick('zzz', 'deny'), null);
    assert.equal(b.pick(undefined, 'deny'), null);
    assert.ok(b.pick('zzz', 'all'));
    const flat = new Balancer('roundrobin', { targets: ['x:1'], groups: null });
    assert.equal(flat.pick('zzz', 'deny')?.target, 'x:1', 'a flat set has no groups to miss');
  });
});
