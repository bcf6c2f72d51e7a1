/**
 * The verdict rules (node-runner/plugin/manager.ts's module doc), through a
 * real hook client: the dispatcher over in-process plugins whose every
 * call and reply crosses the codec (test/helpers/memory-hooks.ts). Merge
 * order, short-circuit on the first verdict that is not an allow, the
 * binding's on_error (deny 503 by default, allow skips), the header
 * mutation rules a plugin's reply must pass, on_response and on_connect.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/core/config/config.ts';
import { HOOK_BIT, type ResponsePair } from '../../src/core/protocol/protocol.ts';
import { allow, cleanQuery, deny, drop, fallback, limitSpeed, rewritePath, withHeader } from '../../node-runner/sdk/index.ts';
import { FakeClock, settleTime } from '../helpers/fake-clock.ts';
import { MemoryHooks, rawReply, type MemoryPlugin } from '../helpers/memory-hooks.ts';
import { requestInfo } from '../helpers/protocol.ts';

const STATIC = { type: 'static', status: 200, body: 'ok\n' };

/** A hook client for one route `r` binding `bindings` (names or binding objects), with these plugins. */
function hooksFor(bindings: unknown[], plugins: Record<string, MemoryPlugin>, more: { plugin_timeout?: string; clock?: FakeClock } = {}): MemoryHooks {
  const names = new Set<string>();
  for (const b of bindings) names.add(typeof b === 'string' ? b : (b as { plugin: string }).plugin);
  const config = parseConfig({
    routes: [{ id: 'r', plugins: bindings, action: STATIC, ...(more.plugin_timeout ? { plugin_timeout: more.plugin_timeout } : {}) }],
    plugins: Object.fromEntries([...names].map((n) => [n, { path: '/bin/true' }])),
  });
  return new MemoryHooks({ config, plugins, clock: more.clock });
}

const info = (h: Record<string, string> = {}) => requestInfo({ r: 'r', m: 'GET', p: '/x', q: 'a=1', d: 'app.example.com', ho: 'app.example.com', h });

describe('on_request: plugins in binding order, one merged verdict', () => {
  test('headers merge by canonical name: a later plugin overrides an earlier one and the client', async () => {
    const hooks = hooksFor(['first', 'second'], {
      first: { on_request: () => allow({ 'x-user': 'alice', 'X-Team': 'red' }) },
      second: { on_request: () => allow({ 'X-USER': 'bob' }) },
    });
    const v = await hooks.onRequest('r', info({ 'X-User': 'forged' }));
    assert.equal(v.ok, true);
    assert.deepEqual(v.h, { 'X-User': 'bob', 'X-Team': 'red' });
  });

  test('a later plugin sees the headers earlier plugins set and removed, under canonical names', async () => {
    const hooks = hooksFor(['first', 'second'], {
      first: { on_request: () => allow({ 'x-user': 'alice' }, ['cookie']) },
      second: { on_request: () => allow() },
    });
    await hooks.onRequest('r', info({ 'X-User': 'forged', Cookie: 'sid=1', Accept: '*/*' }));
    assert.deepEqual(hooks.callsOf('second', 'on_request')[0].data, { ...info({ 'X-User': 'alice', Accept: '*/*' }) });
  });

  test('rm drops what an earlier plugin set and goes to the upstream; a later h sets the header again', async () => {
    const hooks = hooksFor(['a', 'b', 'c'], {
      a: { on_request: () => allow({ 'X-Plan': 'free', 'X-Keep': '1' }) },
      b: { on_request: () => allow({}, ['x-plan', 'Authorization']) },
      c: { on_request: () => allow({ 'X-Authorization-Checked': 'yes', Authorization: 'Bearer internal' }) },
    });
    const v = await hooks.onRequest('r', info({ Authorization: 'Bearer client' }));
    assert.deepEqual(v.h, { 'X-Keep': '1', 'X-Authorization-Checked': 'yes', Authorization: 'Bearer internal' });
    assert.deepEqual(v.rm, ['X-Plan', 'Authorization']);
  });

  test('a rewrite and a speed limit take the last non-empty value; query cleaning sticks', async () => {
    const hooks = hooksFor(['a', 'b', 'c'], {
      a: { on_request: () => cleanQuery(rewritePath(limitSpeed(allow(), 10), '/first')) },
      b: { on_request: () => rewritePath(limitSpeed(allow(), 20, 5, 'g'), '/second') },
      c: { on_request: () => allow() },
    });
    const v = await hooks.onRequest('r', info());
    assert.equal(v.rp, '/second');
    assert.equal(v.cq, true);
    assert.deepEqual(v.sp, { dl: 20, ul: 5, gk: 'g' });
  });

  test('the first deny wins as the plugin gave it, and later plugins are not asked', async () => {
    const hooks = hooksFor(['first', 'guard', 'last'], {
      first: { on_request: () => allow({ 'X-User': 'alice' }) },
      guard: { on_request: () => deny(401, 'who are you?\n', { 'WWW-Authenticate': 'Bearer' }) },
      last: { on_request: () => allow() },
    });
    const v = await hooks.onRequest('r', info());
    assert.equal(v.ok, false);
    assert.equal(v.s, 401);
    assert.equal(v.b, 'who are you?\n');
    assert.deepEqual(v.h, { 'WWW-Authenticate': 'Bearer' }, 'the deny carries its own headers, not the merged allow headers');
    assert.equal(v.e, '', 'a plugin deny is not a failure');
    assert.equal(hooks.callsOf('last').length, 0);
  });

  test('drop and fallback short-circuit like a deny', async () => {
    for (const [name, verdict] of [['drop', drop()], ['fallback', fallback()]] as const) {
      const hooks = hooksFor(['a', 'b'], { a: { on_request: () => verdict }, b: { on_request: () => allow() } });
      const v = await hooks.onRequest('r', info());
      assert.equal(name === 'drop' ? v.dr : v.fb, true, name);
      assert.equal(hooks.callsOf('b').length, 0, `${name}: the next plugin is not asked`);
    }
  });

  test('a plugin that did not declare on_request is not called, and a route of such plugins makes no call', async () => {
    const hooks = hooksFor(['auth', 'logger'], { auth: { on_request: () => allow({ 'X-A': '1' }) }, logger: { on_response: () => ({}) } });
    assert.equal(hooks.hooksOf('r'), HOOK_BIT.on_request | HOOK_BIT.on_response);
    const v = await hooks.onRequest('r', info());
    assert.deepEqual(v.h, { 'X-A': '1' });
    assert.equal(hooks.callsOf('logger').length, 0);
    const only = hooksFor(['logger'], { logger: { on_response: () => ({}) } });
    assert.equal(only.hooksOf('r') & HOOK_BIT.on_request, 0);
  });

  test('an empty reply ({}) is a deny with 403, as the protocol defines zero values', async () => {
    const hooks = hooksFor(['a'], { a: { on_request: () => ({}) } });
    const v = await hooks.onRequest('r', info());
    assert.equal(v.ok, false);
    assert.equal(v.s, 0);
  });

  test('header maps plugins get are canonical whoever called', async () => {
    const hooks = hooksFor(['a'], { a: { on_request: () => allow() } });
    await hooks.onRequest('r', info({ authorization: 'Bearer t', 'x-forwarded-for': '1.1.1.1' }));
    assert.deepEqual(hooks.callsOf('a')[0].data, info({ Authorization: 'Bearer t', 'X-Forwarded-For': '1.1.1.1' }));
  });

  test('only a binding with with_body gets the body copy', async () => {
    const hooks = hooksFor([{ plugin: 'reader', with_body: true }, 'blind'], { reader: { on_request: () => allow() }, blind: { on_request: () => allow() } });
    assert.equal(hooks.wantsBody('r'), true);
    await hooks.onRequest('r', { ...info(), bd: new TextEncoder().encode('{"a":1}') });
    const reader = hooks.callsOf('reader')[0].data as { bd: Uint8Array | null };
    const blind = hooks.callsOf('blind')[0].data as { bd: Uint8Array | null };
    assert.equal(new TextDecoder().decode(reader.bd!), '{"a":1}');
    assert.equal(blind.bd, null);
  });

  test('an unknown route gets a failure verdict (503): the caller\'s routing state is out of date', async () => {
    const hooks = hooksFor(['a'], { a: { on_request: () => allow() } });
    const v = await hooks.onRequest('gone', info());
    assert.equal(v.ok, false);
    assert.equal(v.s, 503);
    assert.match(v.e, /unknown route "gone"/);
  });
});

describe('on_error: a plugin that fails gives its binding\'s verdict', () => {
  const failures: Array<[string, MemoryPlugin | null]> = [
    ['a plugin that is down', null],
    ['a handler that throws (the plugin closes the connection)', { on_request: () => { throw new Error('boom'); } }],
    ['a handler that rejects', { on_request: () => Promise.reject(new Error('boom')) }],
    ['a reply that is not msgpack', { on_request: () => rawReply(new Uint8Array([0xc1, 0xc1])) }],
    ['a reply that is not a map', { on_request: () => rawReply(new Uint8Array([0x93, 1, 2, 3])) }],
  ];
  for (const [what, plugin] of failures) {
    test(`${what}: 503 "service unavailable" by default, with the reason in e`, async () => {
      const hooks = hooksFor(['p', 'next'], { ...(plugin ? { p: plugin } : {}), next: { on_request: () => allow({ 'X-Next': '1' }) } });
      const v = await hooks.onRequest('r', info());
      assert.equal(v.ok, false);
      assert.equal(v.s, 503);
      assert.equal(v.b, 'service unavailable\n');
      assert.match(v.e, /^plugin "p": /);
      assert.equal(hooks.callsOf('next').length, 0, 'a failure short-circuits like a deny');
      assert.equal(hooks.failures.length, 1);
    });

    test(`${what}: with on_error "allow" the plugin is skipped and the verdict is marked not cacheable`, async () => {
      const hooks = hooksFor([{ plugin: 'p', on_error: 'allow' }, 'next'], { ...(plugin ? { p: plugin } : {}), next: { on_request: () => allow({ 'X-Next': '1' }) } });
      const v = await hooks.onRequest('r', info());
      assert.equal(v.ok, true);
      assert.deepEqual(v.h, { 'X-Next': '1' });
      assert.equal(v.nc, true);
    });
  }

  test('a plugin slower than the route\'s plugin_timeout: 503 at the deadline, not before', async () => {
    const clock = new FakeClock();
    const hooks = hooksFor(['slow'], { slow: { on_request: () => new Promise(() => {}) } }, { plugin_timeout: '300ms', clock });
    const call = hooks.onRequest('r', info());
    const settledAt = settleTime(clock, call);
    clock.advance(299);
    assert.equal(await settledAt(), null);
    clock.advance(1);
    assert.equal(await settledAt(), 300);
    const v = await call;
    assert.equal(v.s, 503);
    assert.match(v.e, /no reply within 300 ms/);
    assert.equal(hooks.failures[0].error.message.includes('300 ms'), true);
  });

  test('a plugin taken down and brought back answers again', async () => {
    const hooks = hooksFor(['p'], { p: { on_request: () => allow() } });
    hooks.down('p');
    assert.equal((await hooks.onRequest('r', info())).s, 503);
    hooks.down('p', true);
    assert.equal((await hooks.onRequest('r', info())).ok, true);
  });

  test('a reply cannot claim to be a failure: e (and nc) are the runner\'s fields', async () => {
    const hooks = hooksFor(['p'], { p: { on_request: () => ({ ok: true, e: 'fake failure', nc: true }) as never } });
    const v = await hooks.onRequest('r', info());
    assert.equal(v.ok, true);
    assert.equal(v.e, '');
    assert.equal(v.nc, undefined);
  });
});

describe('header mutation rules: a verdict a plugin may not give is its error (on_error)', () => {
  const forbidden: Array<[string, MemoryPlugin['on_request']]> = [
    ['setting Connection (hop-by-hop)', () => allow({ Connection: 'close' })],
    ['setting Transfer-Encoding (hop-by-hop)', () => allow({ 'Transfer-Encoding': 'chunked' })],
    ['setting Upgrade (hop-by-hop)', () => allow({ upgrade: 'h2c' })],
    ['setting Host', () => allow({ Host: 'internal.example' })],
    ['setting Content-Length', () => allow({ 'Content-Length': '0' })],
    ['a value with CR LF (header injection)', () => allow({ 'X-User': 'alice\r\nX-Admin: yes' })],
    ['a value with a bare LF', () => allow({ 'X-User': 'alice\nX-Admin: yes' })],
    ['a value with NUL', () => allow({ 'X-User': 'alice\u0000' })],
    ['a name that is not a token', () => allow({ 'X User': 'alice' })],
    ['a name with a colon', () => allow({ 'X-User:': 'alice' })],
    ['removing Host', () => allow({}, ['Host'])],
    ['removing a hop-by-hop header', () => allow({}, ['Keep-Alive'])],
    ['a deny whose headers carry CR LF', () => deny(401, '', { 'WWW-Authenticate': 'Bearer\r\nSet-Cookie: a=b' })],
    ['a rewrite that is not a path', () => rewritePath(allow(), 'admin')],
    ['a rewrite to another host ("//")', () => rewritePath(allow(), '//evil.example/x')],
    ['a rewrite with a query', () => rewritePath(allow(), '/x?admin=1')],
    ['a rewrite with a space', () => rewritePath(allow(), '/x y')],
    ['a status that is not HTTP', () => deny(1000)],
  ];
  for (const [what, on_request] of forbidden) {
    test(`${what}: 503 with on_error deny, skipped with on_error allow`, async () => {
      const denying = hooksFor(['p'], { p: { on_request } });
      const v = await denying.onRequest('r', info());
      assert.equal(v.ok, false);
      assert.equal(v.s, 503);
      assert.match(v.e, /forbidden verdict/);
      const allowing = hooksFor([{ plugin: 'p', on_error: 'allow' }], { p: { on_request } });
      const a = await allowing.onRequest('r', info());
      assert.equal(a.ok, true);
      assert.deepEqual(a.h, {});
      assert.deepEqual(a.rm, []);
      assert.equal(a.rp, '');
    });
  }

  test('ordinary headers, Latin-1 values and a plain rewrite pass', async () => {
    const hooks = hooksFor(['p'], { p: { on_request: () => rewritePath(withHeader(allow({ 'X-User': 'Zoë' }), 'X-Forwarded-Prefix', '/api'), '/v2/users;x=1') } });
    const v = await hooks.onRequest('r', info());
    assert.equal(v.ok, true, v.e);
    assert.deepEqual(v.h, { 'X-User': 'Zoë', 'X-Forwarded-Prefix': '/api' });
    assert.equal(v.rp, '/v2/users;x=1');
  });
});

describe('on_response and on_connect', () => {
  const pair = (h: Record<string, string> = {}, s = 200): ResponsePair => ({ req: info(), resp: { s, h } });

  test('on_response: each plugin sees the response as earlier plugins left it; the merged change applies them all', async () => {
    const hooks = hooksFor(['a', 'b'], {
      a: { on_response: () => ({ s: 201, h: { 'x-cache': 'miss', 'X-Drop-Later': '1' }, rm: ['Server'] }) },
      b: { on_response: () => ({ h: { 'X-Seen': '1' }, rm: ['x-drop-later'] }) },
    });
    const mod = await hooks.onResponse('r', pair({ Server: 'nginx', 'Content-Type': 'text/plain' }));
    assert.deepEqual(hooks.callsOf('b')[0].data, { ...pair({ 'Content-Type': 'text/plain', 'X-Cache': 'miss', 'X-Drop-Later': '1' }, 201) });
    assert.equal(mod.s, 201);
    assert.deepEqual(mod.h, { 'X-Cache': 'miss', 'X-Seen': '1' });
    assert.deepEqual(mod.rm, ['Server', 'X-Drop-Later']);
    assert.equal(mod.e, '');
  });

  test('on_response: a handler that returns nothing keeps the response', async () => {
    const hooks = hooksFor(['a'], { a: { on_response: () => {} } });
    assert.deepEqual(await hooks.onResponse('r', pair({ Server: 'x' })), { s: 0, h: {}, rm: [], e: '', b: '' });
  });

  for (const [what, on_response] of [
    ['a 1xx status', () => ({ s: 101 })],
    ['a CRLF header value', () => ({ h: { 'X-A': '1\r\nX-B: 2' } })],
    ['a Transfer-Encoding header', () => ({ h: { 'Transfer-Encoding': 'identity' } })],
  ] as const) {
    test(`on_response with ${what}: a failure (503) with on_error deny, unchanged with on_error allow`, async () => {
      const denying = hooksFor(['p'], { p: { on_response } });
      const mod = await denying.onResponse('r', pair());
      assert.equal(mod.s, 503);
      assert.match(mod.e, /forbidden verdict/);
      const allowing = hooksFor([{ plugin: 'p', on_error: 'allow' }], { p: { on_response } });
      assert.deepEqual(await allowing.onResponse('r', pair()), { s: 0, h: {}, rm: [], e: '', b: '' });
    });
  }

  test('on_connect: the first refusal wins and later plugins are not asked; a failing plugin gets its on_error', async () => {
    const conn = { r: 'r', d: 'app.example.com', a: '192.0.2.10:5000', md: '', mg: '' };
    const refusing = hooksFor(['yes', 'no', 'late'], { yes: { on_connect: () => true }, no: { on_connect: () => false }, late: { on_connect: () => true } });
    assert.deepEqual(await refusing.onConnect('r', conn), { ok: false, e: '', s: 0, b: '' });
    assert.equal(refusing.callsOf('late').length, 0);
    const failing = hooksFor(['p'], { p: { on_connect: () => { throw new Error('boom'); } } });
    const failed = await failing.onConnect('r', conn);
    assert.equal(failed.ok, false);
    assert.equal(failed.s, 503);
    const lenient = hooksFor([{ plugin: 'p', on_error: 'allow' }], { p: { on_connect: () => { throw new Error('boom'); } } });
    assert.equal((await lenient.onConnect('r', conn)).ok, true);
  });

  test('on_disconnect is a notification: the plugin gets the session\'s numbers and nothing waits for it', async () => {
    let told: unknown = null;
    const hooks = hooksFor(['p'], { p: { on_disconnect: (d) => { told = d; } } });
    hooks.onDisconnect('r', { r: 'r', tg: '10.0.0.1:80', a: '192.0.2.10:5000', rx: 10, tx: 20, ms: 30 });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(told, { r: 'r', tg: '10.0.0.1:80', a: '192.0.2.10:5000', rx: 10, tx: 20, ms: 30 });
  });
});
