/**
 * The config rules of listeners, TLS and pass routes (src/core/config-listeners.ts):
 * each problem names its field and says what to do.
 */

import assert from 'node:assert/strict';
import { problemsOf } from '../helpers/config.ts';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/core/config/config.ts';
import { gatewayListeners } from '../../src/core/config/config-listeners.ts';


const pass = (extra: Record<string, unknown> = {}) => ({ match: { domain: 'db.example.com' }, action: { type: 'pass', upstream: '10.0.0.1:5432' }, ...extra });

describe('listeners', () => {
  test('gateway.listen/gateway.tls are the shorthand of one listener', () => {
    const c = parseConfig({ gateway: { listen: '0.0.0.0:443', tls: { cert: 'c.pem', key: 'k.pem' } } });
    assert.deepEqual(gatewayListeners(c.gateway), [{ listen: '0.0.0.0:443', tls: { cert: 'c.pem', key: 'k.pem' } }]);
    const l = parseConfig({ gateway: { listeners: [{ listen: '0.0.0.0:443', tls: { dir: 'certs' } }, { listen: '0.0.0.0:80', redirect_https: true }] } });
    assert.equal(gatewayListeners(l.gateway).length, 2);
  });

  test('tls is { cert, key } or { dir }, with default only for a dir', () => {
    for (const [tls, re] of [
      [{ cert: 'c.pem' }, /gateway\.tls: expected both "cert" and "key"/],
      [{ cert: 'c.pem', key: 'k.pem', dir: 'd' }, /gateway\.tls: expected either \{ cert, key \} or \{ dir \}/],
      [{ cert: 'c.pem', key: 'k.pem', default: 'x' }, /gateway\.tls: "default" picks a pair of "dir"/],
      [{ dir: 'd', ciphers: 'RC4' }, /gateway\.tls\.ciphers: unknown field/],
    ] as const) {
      const problems = problemsOf({ gateway: { tls } });
      assert.ok(problems.some((p) => re.test(p)), `${JSON.stringify(tls)}: ${problems.join('; ')}`);
    }
  });

  test('listeners and the shorthand together, redirect_https without a TLS listener or on one, and a listen address twice are refused', () => {
    assert.deepEqual(problemsOf({ gateway: { listen: '127.0.0.1:80', listeners: [{ listen: '127.0.0.1:443', tls: { dir: 'd' } }] } }), [
      'gateway.listen: gateway.listeners lists every listener; move this one into it (gateway.listen/gateway.tls are the shorthand for a single listener)',
    ]);
    assert.match(problemsOf({ gateway: { listeners: [{ listen: '127.0.0.1:80', redirect_https: true }] } })[0], /gateway\.listeners\[0\]\.redirect_https: no listener has tls/);
    assert.match(problemsOf({ gateway: { listeners: [{ listen: '127.0.0.1:443', tls: { dir: 'd' }, redirect_https: true }] } })[0], /redirect_https: this listener speaks TLS itself/);
    assert.match(problemsOf({ gateway: { listeners: [{ listen: '127.0.0.1:80' }, { listen: '127.0.0.1:80' }] } })[0], /gateway\.listeners\[1\]\.listen: "127\.0\.0\.1:80" is already gateway\.listeners\[0\]\.listen/);
  });
});

describe('pass routes', () => {
  test('a pass route matched by domain with on_connect plugins is accepted', () => {
    const c = parseConfig({ routes: [pass({ plugins: ['gate'] })], plugins: { gate: { path: '/bin/gate', hooks: ['on_connect', 'on_disconnect'] } } });
    assert.equal(c.routes[0].action && typeof c.routes[0].action === 'object' && c.routes[0].action.type, 'pass');
  });

  test('a pass route needs a domain and may not match by path or methods', () => {
    assert.match(problemsOf({ routes: [{ action: { type: 'pass', upstream: '10.0.0.1:1' } }] })[0], /routes\[0\]\.match\.domain: a pass route is chosen by the TLS client's SNI name/);
    const problems = problemsOf({ routes: [pass({ match: { domain: 'db.example.com', path: '/x', methods: ['GET'] } })] });
    assert.deepEqual(problems.map((p) => p.slice(0, p.indexOf(':'))), ['routes[0].match.path', 'routes[0].match.methods']);
  });

  test('a pass route bound to a plugin with on_request or on_response is refused, naming the route and the plugin', () => {
    const problems = problemsOf({ routes: [pass({ plugins: ['auth'] })], plugins: { auth: { path: '/bin/auth', hooks: ['on_request', 'on_connect'] } } });
    assert.deepEqual(problems, ['routes[0].plugins[0]: plugin "auth" implements on_request, but a pass route sees no HTTP request (only on_connect and on_disconnect are called)']);
  });

  test('upstream is "host:port" or "{target}" with a balancer; a pass action is no fallback', () => {
    assert.match(problemsOf({ routes: [pass({ action: { type: 'pass', upstream: 'http://x:1/' } })] })[0], /routes\[0\]\.action\.upstream: expected "host:port" or "\{target\}"/);
    assert.match(problemsOf({ routes: [pass({ action: { type: 'pass', upstream: '{target}' } })] })[0], /routes\[0\]\.balancer: the pass upstream uses \{target\}/);
    assert.match(
      problemsOf({ routes: [{ action: { type: 'proxy', upstream: 'http://a', fallback: 'p' } }], actions: { p: { type: 'pass', upstream: 'a:1' } } })[0],
      /fallback: "p" is a pass; a fallback must be static or redirect/,
    );
  });
});
