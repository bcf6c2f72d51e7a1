/**
 * Plugin host, attached plugins: a plugin that something else runs (here,
 * the test itself) is reached at its socket with its hooks from the config.
 * The runner health-checks the socket, gives on_error verdicts while it is
 * unreachable, comes back when it does, maps a socket path seen differently
 * by the plugin (`socket_host_path`), and never signals the plugin.
 */

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { resolvePluginPaths } from '../../node-runner/config/config-file.ts';
import { ConfigError } from '../../src/core/config/config.ts';
import { HOOK_BIT } from '../../src/core/protocol/protocol.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { sleep, waitFor } from '../helpers/http.ts';
import { config, Harness, request, route, statusOf } from '../helpers/plugin-host.ts';
import { isAlive } from '../helpers/processes.ts';

// A hang bound: plugin start-ups on a loaded machine take seconds.
const T = { timeout: 60_000 };
const ATTACHED_PLUGIN = fileURLToPath(new URL('../fixtures/plugins/attached-plugin.ts', import.meta.url));

/** Starts the fixture plugin the way systemd or a sidecar would (not through the manager); killed at the end of the test. */
async function runOutside(h: Harness, socket: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [ATTACHED_PLUGIN], {
    env: { ...process.env, ATTACHED_SOCKET: socket },
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
  });
  h.killAtEnd(child.pid!);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      out += d;
      if (out.includes('listening')) resolve();
    });
    child.once('exit', (code, signal) => reject(new Error(`the attached plugin exited (${code ?? signal}) before listening`)));
  });
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

function attached(socket: string, extra: Record<string, unknown> = {}, plugin: Record<string, unknown> = {}): Record<string, unknown> {
  return { attach: { socket, hooks: ['on_request'], health_interval: '100ms', ...extra }, ...plugin };
}

test('an attached plugin serves calls while its socket is up: allows and denies come from it, status is ready with no pid', T, async (t) => {
  const h = new Harness(t);
  const socket = join(h.dir, 'side.sock');
  const plugin = await runOutside(h, socket);
  // Health checks run only when driven: a slow connect on a loaded machine cannot fail one.
  const m = h.manager({ clock: new FakeClock() });
  await m.apply(config({ plugins: { side: attached(socket) }, routes: [route('api', ['side'])] }));
  await m.whenReady('side', 5000);

  const allowed = await m.onRequest('api', request({ r: 'api', p: '/ok' }));
  const denied = await m.onRequest('api', request({ r: 'api', p: '/deny' }));

  assert.equal(allowed.ok, true);
  assert.equal(allowed.h['X-Attached-Pid'], String(plugin.pid));
  assert.equal(denied.ok, false);
  assert.equal(denied.s, 401);
  assert.equal(denied.b, 'denied by attached\n');
  const s = statusOf(m, 'side');
  assert.equal(s.ready, true);
  assert.equal(s.state, 'attached');
  assert.equal(s.pid, undefined);
  assert.deepEqual(s.hooks, ['on_request']);
  assert.equal(s.socket, socket);
});

test('an attached plugin that goes away gets on_error verdicts and is not ready; back on the same socket, calls succeed again', T, async (t) => {
  const h = new Harness(t);
  const socket = join(h.dir, 'side.sock');
  const first = await runOutside(h, socket);
  // Health checks are driven: one per advance of health_interval (100 ms).
  const clock = new FakeClock();
  const m = h.manager({ clock });
  await m.apply(config({
    plugins: { side: attached(socket) },
    routes: [route('strict', ['side']), route('lenient', [{ plugin: 'side', on_error: 'allow' }])],
  }));
  await m.whenReady('side', 5000);
  assert.equal((await m.onRequest('strict', request({ r: 'strict' }))).ok, true);

  await kill(first);
  const strict = await m.onRequest('strict', request({ r: 'strict' }));
  const lenient = await m.onRequest('lenient', request({ r: 'lenient' }));

  assert.equal(strict.ok, false);
  assert.equal(strict.s, 503);
  assert.match(strict.e, /^plugin "side": /);
  assert.equal(lenient.ok, true);
  assert.equal(lenient.h['X-Attached-Pid'], undefined, 'the plugin is skipped, not asked');
  const down = await waitFor(() => {
    const s = statusOf(m, 'side');
    return !s.ready && s.state === 'down' ? s : null;
  }, { what: 'the plugin to be reported down' });
  assert.match(down.lastError, /cannot connect to .*side\.sock \((ECONNREFUSED|ENOENT)\)/);
  assert.equal(down.socket, null);
  const whileDown = await m.onRequest('strict', request({ r: 'strict' }));
  assert.match(whileDown.e, /attached plugin is down/);
  for (const n of [2, 3]) {
    clock.advance(100);
    await waitFor(() => statusOf(m, 'side').failures >= n, { what: `failed health check ${n}` });
  }

  const second = await runOutside(h, socket);
  clock.advance(100);
  await waitFor(() => statusOf(m, 'side').ready, { what: 'the plugin to be reachable again at the next health check' });
  const again = await m.onRequest('strict', request({ r: 'strict' }));

  assert.equal(again.ok, true);
  assert.equal(again.h['X-Attached-Pid'], String(second.pid));
  assert.equal(h.logs('attached plugin unreachable', { plugin: 'side' }).length, 1, 'going down is logged once, not once per check');
});

test('a call that cannot reach an attached plugin marks it down at once, without waiting for the next health check', T, async (t) => {
  const h = new Harness(t);
  const socket = join(h.dir, 'side.sock');
  const plugin = await runOutside(h, socket);
  // Health checks run only when driven: a slow connect on a loaded machine cannot fail one.
  const m = h.manager({ clock: new FakeClock() });
  await m.apply(config({ plugins: { side: attached(socket, { health_interval: '60s' }) }, routes: [route('api', ['side'])] }));
  await m.whenReady('side', 5000);

  await kill(plugin);
  const v = await m.onRequest('api', request({ r: 'api' }));

  assert.equal(v.s, 503);
  await waitFor(() => statusOf(m, 'side').state === 'down', { what: 'the failed call to mark the plugin down' });
  assert.equal(statusOf(m, 'side').ready, false);
});

test('an attached plugin whose socket is not there yet fails its calls with on_error until it appears', T, async (t) => {
  const h = new Harness(t);
  const socket = join(h.dir, 'late.sock');
  const clock = new FakeClock();
  const m = h.manager({ clock });
  await m.apply(config({ plugins: { late: attached(socket) }, routes: [route('api', ['late'])] }));

  await waitFor(() => statusOf(m, 'late').failures >= 1, { what: 'a failed health check' });
  const before = await m.onRequest('api', request({ r: 'api' }));
  assert.equal(before.s, 503);
  assert.match(before.e, /ENOENT/);
  assert.equal(statusOf(m, 'late').ready, false);
  assert.deepEqual(statusOf(m, 'late').hooks, ['on_request'], 'hooks come from the config, known from the start');
  assert.equal(m.hooksOf('api'), HOOK_BIT.on_request);

  await runOutside(h, socket);
  clock.advance(100);
  await m.whenReady('late', 2000);
  assert.equal((await m.onRequest('api', request({ r: 'api' }))).ok, true);
});

test('socket_host_path: the plugin names its socket as it sees it, the runner connects where it sees it', T, async (t) => {
  const h = new Harness(t);
  const hostPath = join(h.dir, 'mapped.sock');
  const plugin = await runOutside(h, hostPath);
  // Health checks run only when driven: a slow connect on a loaded machine cannot fail one.
  const m = h.manager({ clock: new FakeClock() });
  await m.apply(config({
    plugins: { side: attached('/plugin/in/container.sock', { socket_host_path: hostPath }) },
    routes: [route('api', ['side'])],
  }));
  await m.whenReady('side', 5000);

  const v = await m.onRequest('api', request({ r: 'api' }));

  assert.equal(v.ok, true);
  assert.equal(v.h['X-Attached-Pid'], String(plugin.pid));
  assert.equal(statusOf(m, 'side').socket, hostPath);
});

test('a plugin with both path and attach is refused, naming the plugin', () => {
  assert.throws(
    () => config({ plugins: { side: { path: '/usr/local/bin/side', attach: { socket: '/run/side.sock', hooks: ['on_request'] } } } }),
    (err: unknown) => err instanceof ConfigError && /plugins\.side: expected exactly one of "path", "command" or "attach"/.test(err.message),
  );
});

test('relative attach socket paths resolve against the config folder', () => {
  const c = config({ plugins: { side: attached('run/side.sock', { socket_host_path: './host/side.sock' }) } });
  resolvePluginPaths(c.plugins, '/etc/hookgate');
  assert.equal(c.plugins.side.attach?.socket, '/etc/hookgate/run/side.sock');
  assert.equal(c.plugins.side.attach?.socket_host_path, '/etc/hookgate/host/side.sock');
});

test('stopping the manager leaves the attached plugin running and listening', T, async (t) => {
  const h = new Harness(t);
  const socket = join(h.dir, 'side.sock');
  const plugin = await runOutside(h, socket);
  // Health checks run only when driven: a slow connect on a loaded machine cannot fail one.
  const m = h.manager({ clock: new FakeClock() });
  await m.apply(config({ plugins: { side: attached(socket) }, routes: [route('api', ['side'])] }));
  await m.whenReady('side', 5000);
  assert.equal((await m.onRequest('api', request({ r: 'api' }))).ok, true);

  await m.stop();
  await sleep(300);

  assert.ok(isAlive(plugin.pid!), 'the plugin process is still alive');
  assert.equal(plugin.signalCode, null);
  await new Promise<void>((resolve, reject) => {
    const s = connect(socket, () => {
      s.destroy();
      resolve();
    });
    s.on('error', reject);
  });
  assert.deepEqual(m.status(), []);
});
