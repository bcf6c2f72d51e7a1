/**
 * Plugin host, verdicts: what one plugin answers, and how the answers of
 * several plugins on one route merge (module doc of node-runner/plugin/manager.ts).
 * Real plugin processes, real Unix sockets.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HOOK_BIT } from '../../src/core/protocol/protocol.ts';
import { waitFor } from '../helpers/http.ts';
import { AUTH_TS } from '../helpers/paths.ts';
import { applyReady, Harness, request, route } from '../helpers/plugin-host.ts';

// A hang bound: plugin start-ups on a loaded machine take seconds.
const T = { timeout: 60_000 };

describe('one plugin', () => {
  test('an allow verdict passes with the headers the plugin injected', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, { plugins: { p: h.fixture('p', { FIXTURE_HEADER: 'X-Injected=yes' }) }, routes: [route('api', ['p'])] }, ['p']);

    const v = await m.onRequest('api', request({ r: 'api' }));

    assert.equal(v.ok, true);
    assert.deepEqual(v.h, { 'X-Injected': 'yes' });
    assert.equal(v.e, '');
  });

  test('a deny verdict is returned as the plugin gave it: status, body and client headers', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    const env = { FIXTURE_REPLY: 'deny', FIXTURE_STATUS: '418', FIXTURE_BODY: 'short and stout\n', FIXTURE_HEADER: 'Retry-After=7' };
    await applyReady(m, { plugins: { p: h.fixture('p', env) }, routes: [route('api', ['p'])] }, ['p']);

    const v = await m.onRequest('api', request({ r: 'api' }));

    assert.equal(v.ok, false);
    assert.equal(v.s, 418);
    assert.equal(v.b, 'short and stout\n');
    assert.deepEqual(v.h, { 'Retry-After': '7' });
    assert.equal(v.e, '', 'a real deny is not an on_error verdict');
  });

  test('the plugin receives the request info and header names exactly as sent', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, { plugins: { p: h.fixture('p') }, routes: [route('api', ['p'])] }, ['p']);
    const headers = { Authorization: 'Bearer abc', 'X-Forwarded-For': '198.51.100.7', 'Content-Type': 'application/json' };

    await m.onRequest('api', request({ r: 'api', m: 'POST', p: '/v1/items', q: 'a=1', cl: 12, h: headers, v: { tenant: 'acme' } }));

    const [call] = h.records({ ev: 'call' });
    const data = call.data as Record<string, unknown>;
    assert.equal(call.hook, 'on_request');
    assert.deepEqual(data.h, headers);
    assert.equal(data.m, 'POST');
    assert.equal(data.p, '/v1/items');
    assert.equal(data.q, 'a=1');
    assert.equal(data.cl, 12);
    assert.equal(data.r, 'api');
    assert.deepEqual(data.v, { tenant: 'acme' });
  });

  test('the example auth plugin reads the canonical Authorization header, whatever case the caller used: allow with X-User, deny 401', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, { plugins: { auth: { path: AUTH_TS, env: { HOOKGATE_AUTH_TOKENS: 's3cret:alice' } } }, routes: [route('api', ['auth'])] }, ['auth']);

    const allowed = await m.onRequest('api', request({ r: 'api', h: { Authorization: 'Bearer s3cret' } }));
    const lowerCase = await m.onRequest('api', request({ r: 'api', h: { authorization: 'Bearer s3cret' } }));
    const wrong = await m.onRequest('api', request({ r: 'api', h: { Authorization: 'Bearer nope' } }));

    assert.equal(allowed.ok, true);
    assert.deepEqual(allowed.h, { 'X-User': 'alice' });
    assert.equal(lowerCase.ok, true, 'plugins look headers up by canonical name; the manager canonicalizes what any caller sends');
    assert.deepEqual(lowerCase.h, { 'X-User': 'alice' });
    assert.equal(wrong.ok, false);
    assert.equal(wrong.s, 401);
    assert.equal(wrong.e, '');
  });

  test('hooksOf reports the hooks the plugin declared in ready', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, {
      plugins: { p: h.fixture('p', { FIXTURE_HOOKS: 'on_request,on_connect' }) },
      routes: [route('api', ['p']), route('bare', [])],
    }, ['p']);

    assert.equal(m.hooksOf('api'), HOOK_BIT.on_request | HOOK_BIT.on_connect);
    assert.equal(m.hooksOf('bare'), 0);
    assert.equal(m.hooksOf('no-such-route'), 0);
  });

  for (const [mode, what] of [
    ['forbidden', 'a hop-by-hop header (Transfer-Encoding)'],
    ['crlf', 'a header value with CR/LF'],
  ] as const) {
    test(`a verdict carrying ${what} yields the on_error verdict, never the header`, T, async (t) => {
      const h = new Harness(t);
      const m = h.manager();
      await applyReady(m, {
        plugins: { p: h.fixture('p', { FIXTURE_REPLY: mode }) },
        routes: [route('strict', ['p']), route('lenient', [{ plugin: 'p', on_error: 'allow' }])],
      }, ['p']);

      const strict = await m.onRequest('strict', request({ r: 'strict' }));
      const lenient = await m.onRequest('lenient', request({ r: 'lenient' }));

      assert.equal(strict.ok, false);
      assert.equal(strict.s, 503);
      assert.match(strict.e, /plugin "p": forbidden verdict/);
      assert.equal(lenient.ok, true);
      assert.deepEqual(lenient.h, {}, 'the skipped plugin adds nothing');
      assert.ok(h.logs('applying on_error', { plugin: 'p', code: 'BAD_VERDICT' }).length >= 2);
    });
  }

  test('an unknown route is denied with 503 and says why', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, { routes: [route('api', [])] });

    const v = await m.onRequest('ghost', request({ r: 'ghost' }));

    assert.equal(v.ok, false);
    assert.equal(v.s, 503);
    assert.match(v.e, /unknown route "ghost"/);
  });
});

describe('several plugins on one route', () => {
  test('on_request runs plugins in binding order; later plugins see the headers earlier ones added; headers merge', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, {
      plugins: {
        first: h.fixture('first', { FIXTURE_HEADER: 'X-From-First=1' }),
        second: h.fixture('second', { FIXTURE_HEADER: 'X-Shared=second' }),
        third: h.fixture('third', { FIXTURE_HEADER: 'X-Shared=third' }),
      },
      routes: [route('api', ['first', 'second', 'third'])],
    }, ['first', 'second', 'third']);

    const v = await m.onRequest('api', request({ r: 'api', h: { Authorization: 'Bearer x' } }));

    assert.equal(v.ok, true);
    assert.deepEqual(v.h, { 'X-From-First': '1', 'X-Shared': 'third' }, 'a later plugin overrides an earlier value');
    const calls = h.records({ ev: 'call' });
    assert.deepEqual(calls.map((c) => c.name), ['first', 'second', 'third']);
    const seen = calls.map((c) => (c.data as { h: Record<string, string> }).h);
    assert.deepEqual(seen[0], { Authorization: 'Bearer x' });
    assert.deepEqual(seen[1], { Authorization: 'Bearer x', 'X-From-First': '1' });
    assert.deepEqual(seen[2], { Authorization: 'Bearer x', 'X-From-First': '1', 'X-Shared': 'second' });
  });

  test('the first deny short-circuits: later plugins are never called and earlier headers are not leaked', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, {
      plugins: {
        first: h.fixture('first', { FIXTURE_HEADER: 'X-From-First=1' }),
        gate: h.fixture('gate', { FIXTURE_REPLY: 'deny', FIXTURE_STATUS: '403', FIXTURE_BODY: 'no\n' }),
        never: h.fixture('never'),
      },
      routes: [route('api', ['first', 'gate', 'never'])],
    }, ['first', 'gate', 'never']);

    const v = await m.onRequest('api', request({ r: 'api' }));

    assert.equal(v.ok, false);
    assert.equal(v.s, 403);
    assert.equal(v.b, 'no\n');
    assert.deepEqual(v.h, {});
    assert.deepEqual(h.records({ ev: 'call' }).map((c) => c.name), ['first', 'gate']);
  });

  test('on_response modifications merge: last non-zero status, headers set and removed in order', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    const hooks = { FIXTURE_HOOKS: 'on_response' };
    await applyReady(m, {
      plugins: {
        one: h.fixture('one', { ...hooks, FIXTURE_RESPONSE: JSON.stringify({ s: 201, h: { 'X-One': '1', 'X-Shared': 'one' }, rm: ['Server'] }) }),
        two: h.fixture('two', { ...hooks, FIXTURE_RESPONSE: JSON.stringify({ h: { 'X-Two': '2', 'X-Shared': 'two' }, rm: ['X-One'] }) }),
        three: h.fixture('three', { ...hooks, FIXTURE_RESPONSE: JSON.stringify({ s: 202, h: { Server: 'three' } }) }),
      },
      routes: [route('api', ['one', 'two', 'three'])],
    }, ['one', 'two', 'three']);

    const res = await m.onResponse('api', { req: request({ r: 'api' }), resp: { s: 200, h: { Server: 'upstream', 'Content-Type': 'text/plain' } } });

    assert.equal(res.s, 202);
    assert.deepEqual(res.h, { 'X-Shared': 'two', 'X-Two': '2', Server: 'three' });
    assert.deepEqual(res.rm, ['X-One'], 'Server was removed, then set again by a later plugin');
    assert.equal(res.e, '');
    const calls = h.records({ ev: 'call' });
    assert.deepEqual(calls.map((c) => c.name), ['one', 'two', 'three']);
    const resp = (i: number) => (calls[i].data as { resp: { s: number; h: Record<string, string> } }).resp;
    assert.deepEqual(resp(0), { s: 200, h: { Server: 'upstream', 'Content-Type': 'text/plain' } });
    assert.deepEqual(resp(1), { s: 201, h: { 'Content-Type': 'text/plain', 'X-One': '1', 'X-Shared': 'one' } });
    assert.deepEqual(resp(2), { s: 201, h: { 'Content-Type': 'text/plain', 'X-Shared': 'two', 'X-Two': '2' } });
  });

  test('on_connect: the first refusal wins and later plugins are not asked', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    const hooks = { FIXTURE_HOOKS: 'on_connect' };
    await applyReady(m, {
      plugins: {
        yes: h.fixture('yes', hooks),
        no: h.fixture('no', { ...hooks, FIXTURE_CONNECT: 'deny' }),
        later: h.fixture('later', hooks),
      },
      routes: [route('ws', ['yes', 'no', 'later']), route('open', ['yes', 'later'])],
    }, ['yes', 'no', 'later']);

    const refused = await m.onConnect('ws', { r: 'ws', d: 'app.example.com', a: '192.0.2.1', md: '', mg: '' });
    const calledForRefused = h.records({ ev: 'call' }).map((c) => c.name);
    const allowed = await m.onConnect('open', { r: 'open', d: 'app.example.com', a: '192.0.2.1', md: '', mg: '' });

    assert.deepEqual(refused, { ok: false, e: '', s: 0, b: '' });
    assert.deepEqual(calledForRefused, ['yes', 'no']);
    assert.deepEqual(allowed, { ok: true, e: '', s: 0, b: '' });
  });

  test('a plugin that did not declare a hook is not called for it', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, {
      plugins: { req: h.fixture('req'), resp: h.fixture('resp', { FIXTURE_HOOKS: 'on_response' }) },
      routes: [route('api', ['req', 'resp'])],
    }, ['req', 'resp']);

    await m.onRequest('api', request({ r: 'api' }));
    await m.onResponse('api', { req: request({ r: 'api' }), resp: { s: 200, h: {} } });

    await waitFor(() => h.records({ ev: 'call' }).length === 2, { what: 'two calls' });
    assert.deepEqual(h.records({ ev: 'call' }).map((c) => [c.name, c.hook]), [['req', 'on_request'], ['resp', 'on_response']]);
  });
});

describe('with_body', () => {
  const body = new TextEncoder().encode('{"item":1}');

  test('on_request: only bindings with with_body receive the request body, in either order', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, {
      plugins: { wants: h.fixture('wants'), plain: h.fixture('plain') },
      routes: [route('body-first', [{ plugin: 'wants', with_body: true }, 'plain']), route('body-last', ['plain', { plugin: 'wants', with_body: true }])],
    }, ['wants', 'plain']);

    await m.onRequest('body-first', request({ r: 'body-first', bd: body, cl: body.length }));
    await m.onRequest('body-last', request({ r: 'body-last', bd: body, cl: body.length }));

    assert.deepEqual(h.records({ ev: 'call' }).map((c) => [c.name, c.body]), [
      ['wants', '{"item":1}'],
      ['plain', null],
      ['plain', null],
      ['wants', '{"item":1}'],
    ]);
    assert.equal(m.wantsBody('body-first'), true);
  });

  test('on_response: only bindings with with_body receive the request body, in either order', {
    ...T,
  }, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    const hooks = { FIXTURE_HOOKS: 'on_response' };
    await applyReady(m, {
      plugins: { wants: h.fixture('wants', hooks), plain: h.fixture('plain', hooks) },
      routes: [route('body-first', [{ plugin: 'wants', with_body: true }, 'plain']), route('body-last', ['plain', { plugin: 'wants', with_body: true }])],
    }, ['wants', 'plain']);
    const resp = { s: 200, h: {} };

    await m.onResponse('body-first', { req: request({ r: 'body-first', bd: body }), resp });
    await m.onResponse('body-last', { req: request({ r: 'body-last', bd: body }), resp });

    assert.deepEqual(h.records({ ev: 'call' }).map((c) => [c.name, c.body]), [
      ['wants', '{"item":1}'],
      ['plain', null],
      ['plain', null],
      ['wants', '{"item":1}'],
    ]);
  });
});
