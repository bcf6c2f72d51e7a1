/**
 * Plugin host, verdict cache: a real plugin process that records every
 * call it gets, behind bindings with `cache` settings. Time is driven
 * (FakeClock), so TTLs and stale windows are exact; everything else waits
 * for the verdict it asks for.
 */

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { RequestInfo } from '../../src/core/protocol/protocol.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { waitFor } from '../helpers/http.ts';
import { applyReady, config, Harness, request, route, statusOf } from '../helpers/plugin-host.ts';

// A hang bound: plugin start-ups on a loaded machine take seconds.
const T = { timeout: 60_000 };
/** Restarts wait an hour of driven time: a killed plugin stays down while a test moves the clock. */
const SLOW_RESTART = { stopGraceMs: 200, backoffBaseMs: 3_600_000, backoffMaxMs: 3_600_000 };

const calls = (h: Harness, hook = 'on_request') => h.records({ ev: 'call', hook }).length;
const bearer = (token: string, more: Record<string, string> = {}) => ({ h: { Authorization: `Bearer ${token}`, ...more } });

test('an allow is reused within ttl without a call, and after ttl the plugin is asked once', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const m = h.manager({ clock });
  await applyReady(m, { plugins: { p: h.fixture('p', { FIXTURE_HEADER: 'X-User=alice' }, { cache: { ttl: '30s' } }) }, routes: [route('api', ['p'])] }, ['p']);

  const first = await m.onRequest('api', request({ r: 'api', ...bearer('t1') }));
  assert.deepEqual(first.h, { 'X-User': 'alice' });
  for (let i = 0; i < 5; i++) {
    clock.advance(5_000);
    const again = await m.onRequest('api', request({ r: 'api', ...bearer('t1') }));
    assert.deepEqual(again.h, { 'X-User': 'alice' }, 'a hit carries the plugin\'s headers');
  }
  assert.equal(calls(h), 1, 'hits within 30 s make no call');
  clock.advance(5_000);
  await m.onRequest('api', request({ r: 'api', ...bearer('t1') }));
  await m.onRequest('api', request({ r: 'api', ...bearer('t1') }));
  assert.equal(calls(h), 2, 'after the ttl, one call, then hits again');
});

test('denies are reused for negative_ttl, and not at all without it', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const m = h.manager({ clock });
  const deny = bearer('bad', { 'X-Fixture-Reply': 'deny' });
  await applyReady(m, {
    plugins: { p: h.fixture('p', { FIXTURE_STATUS: '401', FIXTURE_BODY: 'who are you' }, { cache: { ttl: '30s', negative_ttl: '5s' } }) },
    routes: [route('neg', ['p']), route('pos', [{ plugin: 'p', cache: { negative_ttl: 0 } }])],
  }, ['p']);

  const v = await m.onRequest('neg', request({ r: 'neg', ...deny }));
  assert.equal(v.ok, false);
  assert.equal(v.s, 401);
  clock.advance(4_999);
  const hit = await m.onRequest('neg', request({ r: 'neg', ...deny }));
  assert.deepEqual([hit.ok, hit.s, String(hit.b)], [false, 401, 'who are you'], 'the cached deny is the plugin\'s, status and body');
  assert.equal(calls(h), 1);
  clock.advance(1);
  await m.onRequest('neg', request({ r: 'neg', ...deny }));
  assert.equal(calls(h), 2, 'after negative_ttl the plugin is asked again');

  await m.onRequest('pos', request({ r: 'pos', ...deny }));
  await m.onRequest('pos', request({ r: 'pos', ...deny }));
  assert.equal(calls(h), 4, 'the route switched negative caching off for its binding');
});

test('distinct values of any part of the default key never share a verdict, nor do routes', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager({ clock: new FakeClock() });
  await applyReady(m, {
    plugins: { p: h.fixture('p', {}, { cache: { ttl: '1h' } }) },
    routes: [route('api', [{ plugin: 'p', with_body: true }]), route('other', ['p'])],
  }, ['p']);
  const base = { r: 'api', m: 'POST', d: 'a.example.com', ho: 'a.example.com', p: '/v1/x', q: 'q=1', a: '192.0.2.1:1000', h: { Authorization: 'Bearer t1', 'X-Tenant': 'acme' }, bd: new TextEncoder().encode('one') };
  const variants: Array<Partial<RequestInfo>> = [
    {},
    { m: 'PUT' },
    { d: 'b.example.com', ho: 'b.example.com' },
    { p: '/v1/y' },
    { q: 'q=2' },
    { a: '192.0.2.2:1000' },
    { h: { Authorization: 'Bearer t2', 'X-Tenant': 'acme' } },
    { h: { Authorization: 'Bearer t1', 'X-Tenant': 'evil' } },
    { h: { Authorization: 'Bearer t1' } },
    { bd: new TextEncoder().encode('two') },
  ];
  for (const v of variants) await m.onRequest('api', request({ ...base, ...v }));
  assert.equal(calls(h), variants.length, 'every variant is a call of its own');
  for (const v of variants) await m.onRequest('api', request({ ...base, ...v }));
  assert.equal(calls(h), variants.length, 'and each is then a hit');
  await m.onRequest('api', request({ ...base, a: '192.0.2.1:2000', h: { ...base.h, 'X-Request-Id': 'abc', Traceparent: '00-1-2-01' } }));
  assert.equal(calls(h), variants.length, 'the client\'s port, X-Request-Id and traceparent are not in the key');
  await m.onRequest('other', request({ ...base, r: 'other' }));
  assert.equal(calls(h), variants.length + 1, 'another route has a cache of its own');
});

test('a key of one header shares a verdict across everything else, and only that', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager({ clock: new FakeClock() });
  await applyReady(m, { plugins: { p: h.fixture('p', {}, { cache: { ttl: '1h', key: ['header:Authorization'] } }) }, routes: [route('api', ['p'])] }, ['p']);
  await m.onRequest('api', request({ r: 'api', p: '/a', ...bearer('t1') }));
  await m.onRequest('api', request({ r: 'api', p: '/b', m: 'DELETE', a: '198.51.100.7:9', ...bearer('t1', { Cookie: 'x' }) }));
  assert.equal(calls(h), 1);
  await m.onRequest('api', request({ r: 'api', p: '/a', ...bearer('t2') }));
  await m.onRequest('api', request({ r: 'api', p: '/a' }));
  assert.equal(calls(h), 3, 'another token, and no token, are keys of their own');
});

test('a SIGKILLed plugin: stale verdicts within stale_if_error, then the binding\'s on_error', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const m = h.manager({ clock, process: SLOW_RESTART });
  await applyReady(m, {
    plugins: { p: h.fixture('p', { FIXTURE_HEADER: 'X-User=alice' }, { cache: { ttl: '10s', stale_if_error: '1m' } }) },
    routes: [route('api', ['p'])],
  }, ['p']);
  await m.onRequest('api', request({ r: 'api', ...bearer('t1') }));
  const pid = statusOf(m, 'p').pid!;
  process.kill(pid, 'SIGKILL');
  await waitFor(() => statusOf(m, 'p').state === 'backoff', { what: 'the runner to see the plugin die' });

  const fresh = await m.onRequest('api', request({ r: 'api', ...bearer('t1') }));
  assert.deepEqual([fresh.ok, fresh.h, fresh.nc], [true, { 'X-User': 'alice' }, undefined], 'within ttl: a plain hit');
  clock.advance(10_000);
  const stale = await m.onRequest('api', request({ r: 'api', ...bearer('t1') }));
  assert.deepEqual([stale.ok, stale.h, stale.nc], [true, { 'X-User': 'alice' }, true], 'past ttl, plugin down: the stale verdict, marked not cacheable');
  assert.equal(h.logs('serving a cached verdict past its ttl', { plugin: 'p' }).length, 1);
  clock.advance(59_999);
  assert.equal((await m.onRequest('api', request({ r: 'api', ...bearer('t1') }))).ok, true, 'still within stale_if_error');
  const other = await m.onRequest('api', request({ r: 'api', ...bearer('t2') }));
  assert.deepEqual([other.ok, other.s], [false, 503], 'a key with no verdict gets on_error');
  clock.advance(1);
  const late = await m.onRequest('api', request({ r: 'api', ...bearer('t1') }));
  assert.deepEqual([late.ok, late.s], [false, 503]);
  assert.match(late.e, /^plugin "p": plugin is restarting/, 'after stale_if_error: the on_error verdict');
  assert.equal(calls(h), 1);
});

test('100 concurrent misses on one key make one plugin call', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager({ clock: new FakeClock() });
  await applyReady(m, { plugins: { p: h.fixture('p', { FIXTURE_HEADER: 'X-User=alice', FIXTURE_DELAY_MS: '50' }, { cache: { ttl: '1m' } }) }, routes: [route('api', ['p'])] }, ['p']);
  const verdicts = await Promise.all(Array.from({ length: 100 }, () => m.onRequest('api', request({ r: 'api', ...bearer('t1') }))));
  assert.equal(calls(h), 1);
  assert.ok(verdicts.every((v) => v.ok && v.h['X-User'] === 'alice'));
});

test('a reload that changes the plugin\'s config or the binding serves no old verdict; an unchanged one keeps them', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager({ clock: new FakeClock() });
  const cfg = (header: string, ttl = '1h', onError = 'deny') => ({
    plugins: { p: h.fixture('p', { FIXTURE_HEADER: `X-Version=${header}` }, { cache: { ttl }, on_error: onError }) },
    routes: [route('api', ['p'])],
  });
  const ask = () => m.onRequest('api', request({ r: 'api', ...bearer('t1') }));
  await applyReady(m, cfg('1'), ['p']);
  assert.equal((await ask()).h['X-Version'], '1');
  await applyReady(m, cfg('1'), ['p']);
  assert.equal((await ask()).h['X-Version'], '1');
  assert.equal(calls(h), 1, 'an unchanged reload keeps the cache');

  await applyReady(m, cfg('2'), ['p']);
  assert.equal((await ask()).h['X-Version'], '2', 'the restarted plugin is asked, not the old verdict');
  assert.equal(calls(h), 2);

  await applyReady(m, cfg('2', '1h', 'allow'), ['p']);
  await ask();
  assert.equal(calls(h), 3, 'a settings change without a restart empties the cache too');
  await applyReady(m, cfg('2', '2h', 'allow'), ['p']);
  await ask();
  assert.equal(calls(h), 4, 'so does a change of the cache settings');
});

test('a reload that restarts a plugin whose code changed serves no old verdict', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager({ clock: new FakeClock() });
  const code = join(h.dir, 'plugin-lib.txt');
  writeFileSync(code, 'v1\n');
  const cfg = { plugins: { p: h.fixture('p', {}, { cache: { ttl: '1h' }, watch: [code] }) }, routes: [route('api', ['p'])] };
  const ask = () => m.onRequest('api', request({ r: 'api', ...bearer('t1') }));
  await applyReady(m, cfg, ['p']);
  await ask();
  await ask();
  assert.equal(calls(h), 1);
  writeFileSync(code, 'version 2\n');
  const changes = await m.apply(config(cfg));
  assert.deepEqual(changes.restarted, [{ plugin: 'p', why: 'code changed' }]);
  await m.whenReady('p', 60_000);
  await ask();
  assert.equal(calls(h), 2, 'the new code is asked');
});

test('a flood of distinct keys keeps the cache at max_entries', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager({ clock: new FakeClock() });
  await applyReady(m, { plugins: { p: h.fixture('p', {}, { cache: { ttl: '1h', max_entries: 50 } }) }, routes: [route('api', ['p'])] }, ['p']);
  for (let i = 0; i < 400; i++) await m.onRequest('api', request({ r: 'api', ...bearer(`flood-${i}`) }));
  assert.deepEqual(m.cacheEntries(), [{ route: 'api', plugin: 'p', entries: 50 }]);
  await m.onRequest('api', request({ r: 'api', ...bearer('flood-399') }));
  await m.onRequest('api', request({ r: 'api', ...bearer('flood-0') }));
  assert.equal(calls(h), 401, 'the newest is kept, the oldest was dropped');
});

test('failures are never cached, only on_request is, and a cached binding sits beside an uncached one', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager({ clock: new FakeClock() });
  await applyReady(m, {
    plugins: {
      a: h.fixture('a', { FIXTURE_HEADER: 'X-User=alice', FIXTURE_HOOKS: 'on_request,on_response' }, { cache: { ttl: '1h' } }),
      b: h.fixture('b', { FIXTURE_HEADER: 'X-B=1' }),
    },
    routes: [route('api', ['a', 'b']), route('lenient', [{ plugin: 'a', on_error: 'allow' }])],
  }, ['a', 'b']);
  const callsOf = (name: string, hook = 'on_request') => h.records({ ev: 'call', hook, name }).length;

  for (let i = 0; i < 3; i++) {
    const v = await m.onRequest('api', request({ r: 'api', ...bearer('t1') }));
    assert.deepEqual(v.h, { 'X-User': 'alice', 'X-B': '1' });
    assert.equal(v.nc, undefined);
  }
  assert.deepEqual([callsOf('a'), callsOf('b')], [1, 3], 'a answers from its cache, b is asked every time');
  const bSaw = h.records({ ev: 'call', name: 'b' }).map((r) => (r.data as { h: Record<string, string> }).h['X-User']);
  assert.deepEqual(bSaw, ['alice', 'alice', 'alice'], 'b sees what a cached verdict added, as it saw the live one');

  await m.onResponse('api', { req: request({ r: 'api' }), resp: { s: 200, h: {} } });
  await m.onResponse('api', { req: request({ r: 'api' }), resp: { s: 200, h: {} } });
  assert.equal(callsOf('a', 'on_response'), 2, 'on_response is never cached');

  const garbage = bearer('t1', { 'X-Fixture-Reply': 'garbage' });
  assert.equal((await m.onRequest('api', request({ r: 'api', ...garbage }))).s, 503);
  assert.equal((await m.onRequest('api', request({ r: 'api', ...garbage }))).s, 503);
  assert.equal(callsOf('a'), 3, 'a failed call is not cached');
  const skipped = await m.onRequest('lenient', request({ r: 'lenient', ...garbage }));
  assert.deepEqual([skipped.ok, skipped.e, skipped.nc], [true, '', true], 'an on_error allow skip marks the merged verdict not cacheable for an edge');
});
