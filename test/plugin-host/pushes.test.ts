/**
 * Plugin host, pushes: `set_targets` and `set_speed` lines from a plugin's
 * stdout reach `manager.pushes` for the routes they address (one route,
 * "*" = every route with a balancer, or every route using an action);
 * invalid pushes are logged and ignored. Includes the push-only example
 * plugin in POSIX sh.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../helpers/fake-clock.ts';
import { waitFor } from '../helpers/http.ts';
import { PUSH_TARGETS_SH } from '../helpers/paths.ts';
import { applyReady, config, Harness, route, statusOf } from '../helpers/plugin-host.ts';

// A hang bound: plugin start-ups on a loaded machine take seconds.
const T = { timeout: 60_000 };

/** Three routes: a (action "api", balancer), b (inline action, balancer), c (action "api", no balancer). */
function routes(): { actions: Record<string, unknown>; routes: Record<string, unknown>[] } {
  return {
    actions: { api: { type: 'static' } },
    routes: [
      route('a', [], { action: 'api', balancer: { targets: ['127.0.0.1:1'] } }),
      route('b', [], { balancer: {} }),
      route('c', [], { action: 'api' }),
    ],
  };
}

test('set_targets and set_speed reach the routes they address: by route_id, "*" and action', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  const changes: unknown[] = [];
  m.pushes.subscribe((c) => changes.push(c));
  const push = [
    { method: 'set_targets', params: { route_id: '*', targets: ['10.0.0.1:80'] } },
    { method: 'set_targets', params: { action: 'api', groups: { eu: ['10.0.1.1:80'], us: ['10.0.2.1:80', '10.0.1.1:80'] } } },
    { method: 'set_targets', params: { route_id: 'b', targets: ['10.0.0.2:80', '[2001:db8::1]:443'] } },
    { method: 'set_speed', params: { action: 'api', download_mbps: 50, upload_mbps: 10, group_key: 'tenant' } },
  ];

  await applyReady(m, { ...routes(), plugins: { pusher: h.fixture('pusher', { FIXTURE_HOOKS: '', FIXTURE_PUSH: JSON.stringify(push) }, { autostart: true }) } }, ['pusher']);
  await waitFor(() => h.logs('set_speed applied').length === 1, { what: 'the pushes to be applied' });

  assert.deepEqual(m.pushes.targets('a'), { targets: ['10.0.1.1:80', '10.0.2.1:80'], groups: { eu: ['10.0.1.1:80'], us: ['10.0.2.1:80', '10.0.1.1:80'] } });
  assert.deepEqual(m.pushes.targets('b'), { targets: ['10.0.0.2:80', '[2001:db8::1]:443'], groups: null });
  assert.equal(m.pushes.targets('c'), undefined, '"*" and action addressing skip routes without a balancer');
  const speed = { download_mbps: 50, upload_mbps: 10, group_key: 'tenant' };
  assert.deepEqual(m.pushes.speed('a'), speed);
  assert.deepEqual(m.pushes.speed('c'), speed, 'set_speed needs no balancer');
  assert.equal(m.pushes.speed('b'), undefined);
  assert.deepEqual(changes, [
    { kind: 'targets', routes: ['a', 'b'], version: 1 },
    { kind: 'targets', routes: ['a'], version: 2 },
    { kind: 'targets', routes: ['b'], version: 3 },
    { kind: 'speed', routes: ['a', 'c'], version: 4 },
  ]);
  assert.deepEqual(h.logs('set_targets applied', { plugin: 'pusher' }).map((e) => e.routes), [['a', 'b'], ['a'], ['b']]);
  const s = statusOf(m, 'pusher');
  assert.equal(s.ready, true);
  assert.deepEqual(s.hooks, []);
  assert.equal(s.socket, null);
});

test('invalid pushes are logged and ignored; valid ones around them still apply', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  const push = [
    { method: 'set_targets', params: { route_id: 'a', targets: ['10.0.0.1:80'] } },
    { method: 'set_targets', params: { route_id: 'a', targets: ['not a target'] } },
    { method: 'set_targets', params: { route_id: 'a', targets: ['10.0.0.9:0'] } },
    { method: 'set_targets', params: { route_id: 'a', targets: ['10.0.0.9:80'], groups: { eu: ['10.0.0.8:80'] } } },
    { method: 'set_targets', params: { targets: ['10.0.0.9:80'] } },
    { method: 'set_targets', params: { route_id: 'c', targets: ['10.0.0.9:80'] } },
    { method: 'set_targets', params: { route_id: 'nosuch', targets: ['10.0.0.9:80'] } },
    { method: 'set_speed', params: { route_id: 'c', download_mbps: -1 } },
    { method: 'set_speed', params: { route_id: 'c', download_mbps: '50' } },
    { method: 'set_speed', params: { route_id: 'c', download_mbps: 5 } },
  ];

  await applyReady(m, { ...routes(), plugins: { pusher: h.fixture('pusher', { FIXTURE_HOOKS: '', FIXTURE_PUSH: JSON.stringify(push) }, { autostart: true }) } }, ['pusher']);
  await waitFor(() => h.logs('set_speed applied').length === 1, { what: 'the last push to be handled' });

  assert.deepEqual(m.pushes.targets('a'), { targets: ['10.0.0.1:80'], groups: null });
  assert.equal(m.pushes.targets('c'), undefined);
  assert.deepEqual(m.pushes.speed('c'), { download_mbps: 5, upload_mbps: 0, group_key: '' });
  assert.equal(m.pushes.version, 2);
  const ignored = h.logs('ignored', { plugin: 'pusher', level: 'warn' }).map((e) => String(e.err));
  assert.equal(ignored.length, 6);
  assert.match(ignored[0], /targets\[0\]: "not a target" is not "host:port"/);
  assert.match(ignored[1], /targets\[0\]: "10.0.0.9:0"/);
  assert.match(ignored[2], /exactly one of "targets" or "groups"/);
  assert.match(ignored[3], /expected "route_id" or "action"/);
  assert.match(ignored[4], /download_mbps: expected a number >= 0/);
  assert.match(ignored[5], /download_mbps: expected a number >= 0/);
  assert.equal(h.logs('set_targets: the route has no balancer', { route_id: 'c' }).length, 1);
  assert.equal(h.logs('set_targets: no such route', { route_id: 'nosuch' }).length, 1);
  assert.equal(statusOf(m, 'pusher').pid !== undefined, true, 'bad pushes never stop the plugin');
});

test('what was pushed for a route is dropped when a config change removes the route', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  const push = [{ method: 'set_targets', params: { route_id: '*', targets: ['10.0.0.1:80'] } }];
  const input = { ...routes(), plugins: { pusher: h.fixture('pusher', { FIXTURE_HOOKS: '', FIXTURE_PUSH: JSON.stringify(push) }, { autostart: true }) } };
  await applyReady(m, input, ['pusher']);
  await waitFor(() => m.pushes.targets('b'), { what: 'the push' });

  await m.apply(config({ ...input, routes: input.routes.slice(0, 1) }));

  assert.deepEqual(m.pushes.targets('a'), { targets: ['10.0.0.1:80'], groups: null });
  assert.equal(m.pushes.targets('b'), undefined);
});

test('a "*" or action push also fills balanced routes a later config adds, but not routes that have their own targets', T, async (t) => {
  const h = new Harness(t);
  const m = h.manager();
  const push = [
    { method: 'set_targets', params: { route_id: '*', targets: ['10.0.0.1:80'] } },
    { method: 'set_targets', params: { action: 'api', targets: ['10.0.0.9:80'] } },
  ];
  const input = { ...routes(), plugins: { pusher: h.fixture('pusher', { FIXTURE_HOOKS: '', FIXTURE_PUSH: JSON.stringify(push) }, { autostart: true }) } };
  await applyReady(m, input, ['pusher']);
  await waitFor(() => h.logs('set_targets applied').length === 2, { what: 'the pushes' });

  const more = [...input.routes, route('d', [], { balancer: {} }), route('e', [], { action: 'api', balancer: {} }), route('f', [], { action: 'api' })];
  await m.apply(config({ ...input, routes: more }));

  assert.deepEqual(m.pushes.targets('d'), { targets: ['10.0.0.1:80'], groups: null }, 'the new balanced route gets the "*" push');
  assert.deepEqual(m.pushes.targets('e'), { targets: ['10.0.0.9:80'], groups: null }, 'the new route of action "api" gets its last push');
  assert.equal(m.pushes.targets('f'), undefined, 'a route without a balancer gets none');
  assert.deepEqual(m.pushes.targets('a'), { targets: ['10.0.0.9:80'], groups: null }, 'routes that had targets keep them');
});

test('the push-only example push-targets.sh: autostarted without a route, it pushes targets and logs through the runner', T, async (t) => {
  const h = new Harness(t);
  // ready_timeout is driven: it passes once the plugin has talked, however long its start-up took.
  const clock = new FakeClock();
  const m = h.manager({ clock });
  const push = { path: PUSH_TARGETS_SH, autostart: true, ready_timeout: '300ms', env: { PUSH_ROUTE: 'b', PUSH_TARGETS: '10.1.0.1:8080, 10.1.0.2:8080' } };

  await m.apply(config({ ...routes(), plugins: { push } }));
  const targets = await waitFor(() => m.pushes.targets('b'), { what: 'the targets of route b' });
  // The log line is written after the push, and may be read in a later chunk.
  const logLine = () => h.logs('pushed 2 target(s)', { plugin: 'push', from: 'plugin' });
  await waitFor(() => logLine().length >= 1, { what: 'the plugin\'s log line' });
  clock.advance(300);
  await m.whenReady('push', 1000);

  assert.deepEqual(targets, { targets: ['10.1.0.1:8080', '10.1.0.2:8080'], groups: null });
  assert.equal(m.pushes.targets('a'), undefined);
  const s = statusOf(m, 'push');
  assert.equal(s.ready, true, 'a plugin that talks but never says ready is push-only after ready_timeout');
  assert.equal(h.logs('treating it as push-only', { plugin: 'push' }).length, 1);
  assert.deepEqual(s.hooks, []);
  assert.equal(m.hooksOf('b'), 0);
  const logged = logLine();
  assert.equal(logged.length, 1);
  assert.equal(logged[0].route_id, 'b');
  await m.stop();
  assert.deepEqual(h.logs('plugin stopped', { plugin: 'push' }).map((e) => e.code), [0], 'it exits 0 when stdin closes');
});

test('push-targets.sh with PUSH_GROUPS and no PUSH_ROUTE pushes groups to every route with a balancer', T, async (t) => {
  const h = new Harness(t);
  // Time stands still: a slow start-up cannot run into the ready_timeout and get the plugin killed.
  const m = h.manager({ clock: new FakeClock() });
  const push = { path: PUSH_TARGETS_SH, autostart: true, ready_timeout: '300ms', env: { PUSH_GROUPS: 'eu=10.2.0.1:80|10.2.0.2:80;us=10.3.0.1:80' } };

  await m.apply(config({ ...routes(), plugins: { push } }));
  await waitFor(() => m.pushes.targets('a') && m.pushes.targets('b'), { what: 'the targets of routes a and b' });

  const want = { targets: ['10.2.0.1:80', '10.2.0.2:80', '10.3.0.1:80'], groups: { eu: ['10.2.0.1:80', '10.2.0.2:80'], us: ['10.3.0.1:80'] } };
  assert.deepEqual(m.pushes.targets('a'), want);
  assert.deepEqual(m.pushes.targets('b'), want);
  assert.equal(m.pushes.targets('c'), undefined);
});

test('pushes from the old process of a plugin replaced by a config change are ignored', {
  ...T,
}, async (t) => {
  const h = new Harness(t);
  const m = h.manager({ process: { stopGraceMs: 2000, backoffBaseMs: 50 } });
  const pushTo = (targets: string[]) => JSON.stringify([{ method: 'set_targets', params: { route_id: 'b', targets } }]);
  const v1 = h.fixture('pusher', { FIXTURE_HOOKS: '', FIXTURE_PUSH: pushTo(['10.0.0.1:80']), FIXTURE_PUSH_ON_EOF: pushTo(['10.9.9.9:80']) }, { autostart: true });
  await applyReady(m, { ...routes(), plugins: { pusher: v1 } }, ['pusher']);
  await waitFor(() => m.pushes.targets('b'), { what: 'the first push' });
  const seen: string[][] = [];
  m.pushes.subscribe(() => seen.push(m.pushes.targets('b')?.targets ?? []));

  const v2 = h.fixture('pusher', { FIXTURE_HOOKS: '', FIXTURE_PUSH: pushTo(['10.0.0.2:80']) }, { autostart: true });
  await applyReady(m, { ...routes(), plugins: { pusher: v2 } }, ['pusher']);
  await waitFor(() => h.records({ ev: 'start' }).length === 2 && seen.some((s) => s[0] === '10.0.0.2:80'), { what: 'the new process to push' });

  assert.equal(h.records({ ev: 'stdin-end' }).length, 1, 'the old process got its stop request');
  assert.deepEqual(seen.filter((s) => s[0] === '10.9.9.9:80'), [], 'the replaced process\'s push must not be applied');
  assert.deepEqual(m.pushes.targets('b')?.targets, ['10.0.0.2:80']);
});
