/**
 * Plugin host, config changes: `apply()` keeps unchanged plugins running,
 * restarts changed ones, stops removed ones, and re-sends `configure` only
 * to plugins whose bound routes changed.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '../helpers/http.ts';
import { applyReady, config, Harness, request, route, statusOf } from '../helpers/plugin-host.ts';
import { isAlive } from '../helpers/processes.ts';

// A hang bound: plugin start-ups on a loaded machine take seconds.
const T = { timeout: 60_000 };

test('apply(): an unchanged plugin keeps its process, a changed one is restarted, a removed one is stopped', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  await applyReady(m, {
    plugins: { keep: h.fixture('keep'), change: h.fixture('change', { FIXTURE_HEADER: 'X-Version=1' }), gone: h.fixture('gone') },
    routes: [route('r1', ['keep', 'change']), route('r2', ['gone'])],
  }, ['keep', 'change', 'gone']);
  const before = { keep: statusOf(m, 'keep').pid!, change: statusOf(m, 'change').pid!, gone: statusOf(m, 'gone').pid! };

  await m.apply(config({
    plugins: { keep: h.fixture('keep'), change: h.fixture('change', { FIXTURE_HEADER: 'X-Version=2' }) },
    routes: [route('r1', ['keep', 'change'])],
  }));

  assert.equal(isAlive(before.gone), false, 'apply resolves once removed plugins have stopped');
  assert.equal(isAlive(before.change), false, 'the old process of a changed plugin is stopped');
  assert.deepEqual(m.status().map((s) => s.name).sort(), ['change', 'keep']);
  assert.equal(statusOf(m, 'keep').pid, before.keep);
  await m.whenReady('change', 5000);
  assert.notEqual(statusOf(m, 'change').pid, before.change);
  assert.deepEqual((await m.onRequest('r1', request({ r: 'r1' }))).h, { 'X-Version': '2' });
  assert.equal((await m.onRequest('r2', request({ r: 'r2' }))).s, 503, 'the removed route is unknown');
  assert.deepEqual(h.records({ ev: 'configure', pid: before.keep }).length, 1, 'the unchanged plugin is not re-configured');
});

test('apply(): configure is re-sent, for every bound route, when the routes bound to a plugin change', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  const plugins = { keep: h.fixture('keep'), other: h.fixture('other') };
  await applyReady(m, { plugins, routes: [route('r1', ['keep', 'other'])] }, ['keep', 'other']);
  const pid = statusOf(m, 'keep').pid!;

  await m.apply(config({
    plugins,
    routes: [route('r1', ['keep', 'other']), route('r3', ['keep'], { match: { domain: '*.example.com', path: '/v1/*', methods: ['get'] } })],
  }));
  await waitFor(() => h.records({ ev: 'configure', name: 'keep' }).length === 3, { what: 'the new configure lines' });

  assert.equal(statusOf(m, 'keep').pid, pid, 'a route change does not restart the plugin');
  assert.deepEqual(h.records({ ev: 'configure', name: 'keep' }).map((r) => r.params), [
    { route_id: 'r1' },
    { route_id: 'r1' },
    { route_id: 'r3', match: { domain: '*.example.com', path: '/v1/*' } },
  ]);
  assert.deepEqual(h.records({ ev: 'configure', name: 'other' }).map((r) => r.params), [{ route_id: 'r1' }], 'a plugin whose routes did not change is not re-configured');
  assert.equal((await m.onRequest('r3', request({ r: 'r3' }))).ok, true);
});

test('apply(): a binding-only change (on_error) takes effect without restarting the plugin', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  const plugins = { p: h.fixture('p', { FIXTURE_REPLY: 'hang' }) };
  await applyReady(m, { plugins, routes: [route('api', ['p'], { plugin_timeout: '100ms' })] }, ['p']);
  const pid = statusOf(m, 'p').pid;
  assert.equal((await m.onRequest('api', request({ r: 'api' }))).ok, false);

  await m.apply(config({ plugins, routes: [route('api', [{ plugin: 'p', on_error: 'allow' }], { plugin_timeout: '100ms' })] }));

  assert.equal((await m.onRequest('api', request({ r: 'api' }))).ok, true);
  assert.equal(statusOf(m, 'p').pid, pid);
});

test('apply(): a change to the plugin\'s own on_error or pool_size keeps its process; the new on_error applies at once', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  const p = h.fixture('p', { FIXTURE_REPLY: 'hang' });
  await applyReady(m, { plugins: { p }, routes: [route('api', ['p'], { plugin_timeout: '100ms' })] }, ['p']);
  const pid = statusOf(m, 'p').pid;
  assert.equal((await m.onRequest('api', request({ r: 'api' }))).ok, false);

  await m.apply(config({ plugins: { p: { ...p, on_error: 'allow', pool_size: 4 } }, routes: [route('api', ['p'], { plugin_timeout: '100ms' })] }));

  assert.equal(statusOf(m, 'p').pid, pid, 'not restarted');
  assert.equal((await m.onRequest('api', request({ r: 'api' }))).ok, true, 'the plugin default on_error now allows');
});

test('a plugin bound to no route and not autostarted is not started', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();

  await m.apply(config({ plugins: { idle: h.fixture('idle') }, routes: [route('api', [])] }));

  assert.deepEqual(m.status(), []);
  await assert.rejects(m.whenReady('idle', 100), /no plugin named "idle" is running/);
});

test('apply() after stop() is refused with STOPPED and starts nothing', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  await m.stop();

  await assert.rejects(m.apply(config({ plugins: { p: h.fixture('p') }, routes: [route('api', ['p'])] })), { code: 'STOPPED' });

  assert.deepEqual(m.status(), []);
  assert.deepEqual(h.records(), []);
});
