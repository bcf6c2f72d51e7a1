/**
 * Plugin host, push-only plugins as prox runs them: prox's SDK acks
 * `configure` and never sends `ready` for a plugin without hooks. Such a
 * plugin, bound to a route, is taken for push-only 1 s after its ack (the
 * clock is driven), so its route is served without 10 s of 503s; a push
 * alone proves nothing, a plugin that ever declared hooks is never taken
 * for push-only, and `hooks: []` in the config says it outright.
 */

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FakeClock } from '../helpers/fake-clock.ts';
import { waitFor } from '../helpers/http.ts';
import { config, Harness, request, route, statusOf } from '../helpers/plugin-host.ts';

// A hang bound: plugin start-ups on a loaded machine take seconds.
const T = { timeout: 60_000 };

const PUSH = JSON.stringify([{ method: 'set_targets', params: { route_id: 'lb', targets: ['10.0.0.1:80'] } }]);

/** A route `lb` with a balancer, bound to `plugin`, and a plain route `other`. */
function routes(plugin: string) {
  return [route('lb', [plugin], { balancer: {} }), route('other', [])];
}

test('a prox push-only plugin bound to a route (acks configure, pushes, never says ready): its route is served 1 s after the ack, and /readyz counts it ready', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const m = h.manager({ clock });
  await m.apply(config({ plugins: { prox: h.fixture('prox', { FIXTURE_START: 'ack-only', FIXTURE_PUSH: PUSH }) }, routes: routes('prox') }));
  await waitFor(() => m.pushes.targets('lb'), { what: 'the push' });

  // Acked and pushed, but within the grace it may still say ready with hooks: fail closed.
  assert.notEqual(m.hooksOf('lb'), 0);
  assert.equal((await m.onRequest('lb', request({ r: 'lb' }))).s, 503);
  assert.equal(statusOf(m, 'prox').ready, false);
  clock.advance(999);
  assert.notEqual(m.hooksOf('lb'), 0, 'not before the grace is over');

  clock.advance(1);
  assert.equal(m.hooksOf('lb'), 0, 'no hook calls for a push-only plugin');
  assert.equal((await m.onRequest('lb', request({ r: 'lb' }))).ok, true);
  const s = statusOf(m, 'prox');
  assert.equal(s.ready, true);
  assert.deepEqual(s.hooks, []);
  assert.equal(h.logs('treating it as push-only', { plugin: 'prox' }).length, 1);
  assert.equal(h.logs('sent no ready', { plugin: 'prox', level: 'error' }).length, 0, 'no error: this is how prox push plugins work');
  await m.whenReady('prox', 1000);
});

test('a plugin that acked and says ready after the grace: its hooks are called from then on, and the late ready is logged as an error', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const startFile = join(h.dir, 'start-mode');
  writeFileSync(startFile, 'ack-only');
  const m = h.manager({ clock, process: { stopGraceMs: 200, backoffBaseMs: 50, backoffMaxMs: 400 } });
  await m.apply(config({ plugins: { slow: h.fixture('slow', { FIXTURE_START_FILE: startFile }) }, routes: routes('slow') }));
  await waitFor(() => clock.pendingDelays().includes(1000), { what: 'the push-only grace to start' });
  clock.advance(1000);
  assert.equal(m.hooksOf('lb'), 0);

  // The same plugin now says ready with on_request (re-configured, e.g. by a config change).
  writeFileSync(startFile, 'normal');
  const pid = statusOf(m, 'slow').pid!;
  process.kill(pid, 'SIGKILL');
  await waitFor(() => h.logs('plugin will be restarted', { plugin: 'slow' }).length === 1, { what: 'a restart' });
  clock.advance(50);
  await waitFor(() => statusOf(m, 'slow').ready && statusOf(m, 'slow').pid !== pid, { what: 'the plugin to say ready' });
  assert.notEqual(m.hooksOf('lb'), 0);
  assert.equal(h.logs('said ready with hooks after it was taken for push-only', { plugin: 'slow', level: 'error' }).length, 1);
  assert.equal((await m.onRequest('lb', request({ r: 'lb' }))).ok, true, 'the fixture allows');
  assert.equal(h.records({ ev: 'call' }).length, 1, 'the hook was called');
});

test('a plugin that declared hooks once is never taken for push-only: acking without ready after a restart keeps its routes failing closed', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const startFile = join(h.dir, 'start-mode');
  const m = h.manager({ clock, process: { stopGraceMs: 200, backoffBaseMs: 50, backoffMaxMs: 400 } });
  await m.apply(config({ plugins: { auth: h.fixture('auth', { FIXTURE_START_FILE: startFile }) }, routes: routes('auth') }));
  await waitFor(() => statusOf(m, 'auth').ready, { what: 'the plugin to say ready' });
  const pid = statusOf(m, 'auth').pid!;

  writeFileSync(startFile, 'ack-only');
  process.kill(pid, 'SIGKILL');
  await waitFor(() => h.logs('plugin will be restarted', { plugin: 'auth' }).length === 1, { what: 'a restart' });
  clock.advance(50);
  await waitFor(() => h.records({ ev: 'configure' }).length === 2, { what: 'the restarted plugin to be configured' });
  await waitFor(() => clock.pendingDelays().includes(1000), { what: 'the push-only grace to start' });
  clock.advance(1000);

  assert.equal(h.logs('it declared hooks before, so its routes keep failing closed', { plugin: 'auth' }).length, 1);
  assert.notEqual(m.hooksOf('lb'), 0);
  const v = await m.onRequest('lb', request({ r: 'lb' }));
  assert.equal(v.ok, false);
  assert.equal(v.s, 503);
  assert.equal(statusOf(m, 'auth').ready, false);
});

test('a plugin that never acks its configure is not taken for push-only: its route keeps failing closed', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const m = h.manager({ clock });
  // Only {"result":...} starts the grace (a rejected configure does not either: sdk.test.ts).
  await m.apply(config({ plugins: { mute: h.fixture('mute', { FIXTURE_START: 'silent' }) }, routes: routes('mute') }));
  await waitFor(() => h.records({ ev: 'configure' }).length === 1, { what: 'the configure' });
  clock.advance(5000);
  assert.notEqual(m.hooksOf('lb'), 0);
  assert.equal((await m.onRequest('lb', request({ r: 'lb' }))).s, 503);
});

test('hooks: [] in the config declares a push-only plugin: its route is served from the start, and it is ready once it pushed', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const m = h.manager({ clock });
  const startFile = join(h.dir, 'start-mode');
  writeFileSync(startFile, 'silent');
  await m.apply(config({ plugins: { prox: h.fixture('prox', { FIXTURE_START_FILE: startFile, FIXTURE_PUSH: PUSH }, { hooks: [] }) }, routes: routes('prox') }));

  assert.equal(m.hooksOf('lb'), 0, 'known from the config: no fail-closed window');
  assert.equal((await m.onRequest('lb', request({ r: 'lb' }))).ok, true);
  await waitFor(() => h.records({ ev: 'configure' }).length === 1, { what: 'the configure' });
  assert.equal(statusOf(m, 'prox').ready, false, 'not ready before it has shown it works');
  assert.equal(h.logs('treating it as push-only', { plugin: 'prox' }).length, 0);
});

test('hooks: [] with a plugin that pushes: ready for /readyz at its first push', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const m = h.manager({ clock });
  await m.apply(config({ plugins: { prox: h.fixture('prox', { FIXTURE_START: 'ack-only', FIXTURE_PUSH: PUSH }, { hooks: [] }) }, routes: routes('prox') }));
  await waitFor(() => m.pushes.targets('lb'), { what: 'the push' });
  assert.equal(statusOf(m, 'prox').ready, true);
  await m.whenReady('prox', 1000);
});

test('an autostart push-only plugin without routes is ready for /readyz once its grace is over or it pushed, not merely because it runs', T, async (t) => {
  const h = new Harness(t);
  const clock = new FakeClock();
  const m = h.manager({ clock });
  await m.apply(config({ plugins: { feeder: h.fixture('feeder', { FIXTURE_START: 'ack-only' }, { autostart: true }) }, routes: [route('other', [])] }));
  await waitFor(() => clock.pendingDelays().includes(1000), { what: 'the ack to start the push-only grace' });
  assert.equal(statusOf(m, 'feeder').state, 'running');
  assert.equal(statusOf(m, 'feeder').ready, false, 'running and acked is not yet ready');
  clock.advance(1000);
  assert.equal(statusOf(m, 'feeder').ready, true);

  const pusher = h.manager({ clock });
  await pusher.apply(config({ plugins: { feeder: h.fixture('feeder2', { FIXTURE_START: 'ack-only', FIXTURE_PUSH: PUSH }, { autostart: true }) }, routes: [route('lb', [], { balancer: {} })] }));
  await waitFor(() => pusher.pushes.targets('lb'), { what: 'the push' });
  assert.equal(statusOf(pusher, 'feeder').ready, true, 'ready at its first push, before the grace');
});

test('hooks on an attached plugin belong in attach.hooks', () => {
  assert.throws(
    () => config({ plugins: { side: { attach: { socket: '/run/x.sock', hooks: ['on_request'] }, hooks: [] } }, routes: [] }),
    /plugins\.side: an attached plugin lists its hooks in "attach\.hooks", not "hooks"/,
  );
});
