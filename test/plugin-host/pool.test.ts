/**
 * Plugin host, the Unix-socket connection pool as a plugin sees it: at most
 * `pool_size` connections, extra calls queued (bounded by `queue_limit`),
 * the queue wait counted against the deadline, and on_disconnect as
 * fire-and-forget.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock, settleTime } from '../helpers/fake-clock.ts';
import { waitFor } from '../helpers/http.ts';
import { applyReady, Harness, request, route } from '../helpers/plugin-host.ts';

// A hang bound: plugin start-ups on a loaded machine take seconds.
const T = { timeout: 60_000 };

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
  // How the calls split between the two follows timing (a free connection takes the next waiting call), so only the total is fixed.
  const calls = h.records({ ev: 'call' });
  assert.equal(calls.length, 10);
  assert.ok(calls.every((c) => conns.some((k) => k.conn === c.conn)), 'every call came over one of the two connections');
});

test('a call beyond queue_limit gets the on_error verdict at once (POOL_SATURATED)', T, async (t) => {
  const h = new Harness(t);
  // Deadlines stand still: the 300 ms calls ahead can take as long as the machine needs.
  const m = h.manager({ clock: new FakeClock() });
  await applyReady(m, {
    plugins: { p: h.fixture('p', { FIXTURE_DELAY_MS: '300' }, { pool_size: 1, queue_limit: 1 }) },
    routes: [route('api', ['p'], { plugin_timeout: '3s' }), route('lenient', [{ plugin: 'p', on_error: 'allow' }], { plugin_timeout: '3s' })],
  }, ['p']);

  const inFlight = m.onRequest('api', request({ r: 'api' }));
  let inFlightDone = false;
  void inFlight.finally(() => (inFlightDone = true));
  const queued = m.onRequest('api', request({ r: 'api' }));
  const rejected = await m.onRequest('api', request({ r: 'api' }));
  const rejectedFirst = !inFlightDone;
  const skipped = await m.onRequest('lenient', request({ r: 'lenient' }));

  assert.equal(rejected.ok, false);
  assert.equal(rejected.s, 503);
  assert.match(rejected.e, /all 1 connections busy and 1 calls already waiting/);
  assert.ok(rejectedFirst, 'saturation is reported at once, not after the 300 ms call ahead of it');
  assert.equal(skipped.ok, true, 'on_error allow skips a saturated plugin');
  assert.equal(h.logs('applying on_error', { plugin: 'p', code: 'POOL_SATURATED' }).length, 2);
  assert.equal((await inFlight).ok, true);
  assert.equal((await queued).ok, true);
  assert.equal(h.records({ ev: 'call' }).length, 2);
});

test('the time a call waits for a free connection counts against its deadline', T, async (t) => {
  const h = new Harness(t);
  // Deadlines are the subject: time is driven. Both calls hang; the first holds the only connection until its 400 ms deadline.
  const clock = new FakeClock();
  const m = h.manager({ clock });
  const hang = { 'X-Fixture-Reply': 'hang' };
  await applyReady(m, {
    plugins: { p: h.fixture('p', {}, { pool_size: 1 }) },
    routes: [route('first', ['p'], { plugin_timeout: '400ms' }), route('api', ['p'], { plugin_timeout: '500ms' })],
  }, ['p']);

  const first = m.onRequest('first', request({ r: 'first', h: hang }));
  const second = m.onRequest('api', request({ r: 'api', h: hang }));
  const secondAt = settleTime(clock, second);
  await waitFor(() => h.records({ ev: 'call' }).length === 1, { what: 'the first call to reach the plugin' });
  clock.advance(400);
  assert.match((await first).e, /no reply within/);
  await waitFor(() => h.records({ ev: 'call' }).length === 2, { what: 'the second call to get the connection after its 400 ms wait' });
  clock.advance(99);
  assert.equal(await secondAt(), null, 'the second call is still waiting for its reply at 499 ms');
  clock.advance(1);

  const v = await second;
  assert.equal(v.ok, false);
  assert.match(v.e, /no reply within/);
  assert.equal(await secondAt(), 500, 'the second call ended by its 500 ms deadline, not 400 + 500');
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
