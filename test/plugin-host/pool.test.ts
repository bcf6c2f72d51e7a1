/**
 * Plugin host, the Unix-socket connection pool as a plugin sees it: at most
 * `pool_size` connections, extra calls queued (bounded by `queue_limit`),
 * the queue wait counted against the deadline, and on_disconnect as
 * fire-and-forget.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '../helpers/http.ts';
import { applyReady, Harness, request, route } from '../helpers/plugin-host.ts';

const T = { timeout: 10_000 };

test('more concurrent calls than pool_size all complete, over at most pool_size connections', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  await applyReady(m, {
    plugins: { p: h.fixture('p', { FIXTURE_DELAY_MS: '60' }, { pool_size: 2 }) },
    routes: [route('api', ['p'], { plugin_timeout: '5s' })],
  }, ['p']);

  const verdicts = await Promise.all(Array.from({ length: 10 }, () => m.onRequest('api', request({ r: 'api' }))));

  assert.deepEqual(verdicts.map((v) => v.ok), Array(10).fill(true));
  const conns = h.records({ ev: 'conn' });
  assert.equal(conns.length, 2, 'connections are reused, not re-dialled');
  assert.ok(Math.max(...conns.map((c) => c.open as number)) <= 2);
  const perConn = new Map<unknown, number>();
  for (const c of h.records({ ev: 'call' })) perConn.set(c.conn, (perConn.get(c.conn) ?? 0) + 1);
  assert.deepEqual([...perConn.values()].sort(), [5, 5]);
});

test('a call beyond queue_limit gets the on_error verdict at once (POOL_SATURATED)', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  await applyReady(m, {
    plugins: { p: h.fixture('p', { FIXTURE_DELAY_MS: '300' }, { pool_size: 1, queue_limit: 1 }) },
    routes: [route('api', ['p'], { plugin_timeout: '3s' }), route('lenient', [{ plugin: 'p', on_error: 'allow' }], { plugin_timeout: '3s' })],
  }, ['p']);

  const inFlight = m.onRequest('api', request({ r: 'api' }));
  const queued = m.onRequest('api', request({ r: 'api' }));
  const started = performance.now();
  const rejected = await m.onRequest('api', request({ r: 'api' }));
  const took = performance.now() - started;
  const skipped = await m.onRequest('lenient', request({ r: 'lenient' }));

  assert.equal(rejected.ok, false);
  assert.equal(rejected.s, 503);
  assert.match(rejected.e, /all 1 connections busy and 1 calls already waiting/);
  assert.ok(took < 250, `saturation is reported at once, not after the 300 ms call ahead of it (took ${Math.round(took)} ms)`);
  assert.equal(skipped.ok, true, 'on_error allow skips a saturated plugin');
  assert.equal(h.logs('applying on_error', { plugin: 'p', code: 'POOL_SATURATED' }).length, 2);
  assert.equal((await inFlight).ok, true);
  assert.equal((await queued).ok, true);
  assert.equal(h.records({ ev: 'call' }).length, 2);
});

test('the time a call waits for a free connection counts against its deadline', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  await applyReady(m, {
    plugins: { p: h.fixture('p', { FIXTURE_DELAY_MS: '400' }, { pool_size: 1 }) },
    routes: [route('api', ['p'], { plugin_timeout: '500ms' })],
  }, ['p']);

  const started = performance.now();
  const [first, second] = await Promise.all([m.onRequest('api', request({ r: 'api' })), m.onRequest('api', request({ r: 'api' }))]);
  const took = performance.now() - started;

  assert.equal(first.ok, true);
  assert.equal(second.ok, false);
  assert.match(second.e, /no reply within/);
  assert.ok(took < 750, `the second call ended by its 500 ms deadline, not 400 + 500 (took ${Math.round(took)} ms)`);
});

test('a deadline hit after waiting in the queue is reported in whole milliseconds', {
  ...T,
}, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  await applyReady(m, {
    plugins: { p: h.fixture('p', { FIXTURE_DELAY_MS: '250' }, { pool_size: 1 }) },
    routes: [route('api', ['p'], { plugin_timeout: '400ms' })],
  }, ['p']);

  const [, second] = await Promise.all([m.onRequest('api', request({ r: 'api' })), m.onRequest('api', request({ r: 'api' }))]);

  assert.match(second.e, /no reply within \d+ ms /);
});

test('on_disconnect is fire-and-forget: onDisconnect returns at once, the plugin gets the data, other calls are unaffected', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  await applyReady(m, {
    plugins: {
      ws: h.fixture('ws', { FIXTURE_HOOKS: 'on_request,on_disconnect' }),
      plain: h.fixture('plain'),
    },
    routes: [route('ws', ['ws', 'plain'])],
  }, ['ws', 'plain']);
  const info = { r: 'ws', tg: '10.0.0.1:3000', a: '192.0.2.1', rx: 1234, tx: 5678, ms: 42 };

  const returned = m.onDisconnect('ws', info);
  m.onDisconnect('no-such-route', info);

  assert.equal(returned, undefined);
  const rec = await waitFor(() => h.records({ ev: 'call', hook: 'on_disconnect' })[0], { what: 'the plugin to receive on_disconnect' });
  assert.equal(rec.name, 'ws');
  assert.deepEqual(rec.data, info);
  const v = await m.onRequest('ws', request({ r: 'ws' }));
  assert.equal(v.ok, true);
  assert.deepEqual(h.records({ ev: 'call', name: 'plain', hook: 'on_disconnect' }), [], 'a plugin that did not declare on_disconnect is not told');
});
