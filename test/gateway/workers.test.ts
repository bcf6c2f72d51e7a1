/**
 * `gateway.workers: 2`, end to end: two gateway processes share the port;
 * a config reload and pushed targets reach both; a killed worker is
 * replaced while the other keeps serving; SIGTERM drains both; no worker
 * outlives its runner.
 *
 * Which worker takes a connection is the kernel's choice (SO_REUSEPORT
 * hashes each connection), so each check makes many requests, each on its
 * own connection: one worker left behind would show in some of them.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { request, waitFor } from '../helpers/http.ts';
import { join } from 'node:path';
import { CONFIGURABLE, PUSH_TARGETS_SH, VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, isAlive, readJsonLines, startGateway, whenReady, type Gateway } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';
import { startUpstream } from '../helpers/upstream.ts';

/** Requests on fresh connections: enough that both workers take some. */
const SPREAD = 24;

interface Readyz {
  ready: boolean;
  workers?: Array<{ pid: number; ready: boolean; restarts: number }>;
}

async function readyz(gw: Gateway): Promise<Readyz> {
  return (await request(`${gw.admin}/readyz`)).json<Readyz>();
}

/** The bodies of SPREAD requests to `path`, each on its own connection. */
async function spread(gw: Gateway, path: string): Promise<string[]> {
  return Promise.all(Array.from({ length: SPREAD }, async () => (await request(`${gw.url}${path}`)).text));
}

/** True while the pid exists at all, zombies included. */
function exists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const workers = (rest: Record<string, unknown>) => ({ ...baseConfig(rest), gateway: { listen: '127.0.0.1:0', workers: 2 } });

describe('gateway workers', { concurrency: true, timeout: 90_000 }, () => {
  test('two workers serve the port, each calling the plugin itself; /readyz lists both', async (t) => {
    const s = scope(t);
    const up = await startUpstream(s);
    const gw = await startGateway(
      s,
      workers({
        routes: [{ id: 'api', plugins: ['fx'], action: { type: 'proxy', upstream: up.url } }],
        plugins: { fx: { path: VERDICT_PLUGIN, env: { FIXTURE_HOOKS: 'on_request' } } },
      }),
    );
    await whenReady(gw);
    const r = await readyz(gw);
    assert.equal(r.workers?.length, 2);
    assert.ok(r.workers!.every((w) => w.ready && isAlive(w.pid) && w.pid !== gw.pid), JSON.stringify(r));
    const statuses = await Promise.all(Array.from({ length: SPREAD }, async () => (await request(`${gw.url}/x`)).status));
    assert.deepEqual(new Set(statuses), new Set([200]));
    // The fixture marks what it allowed: the hook ran for every request.
    const seen = await Promise.all(Array.from({ length: 4 }, async () => (await request(`${gw.url}/x`)).json().headers['x-plugin-pid']));
    assert.ok(seen.every((p) => p), 'every request went through the plugin');
  });

  test('a caching binding caches in each worker: many requests with one token reach the plugin once per worker at most', async (t) => {
    const s = scope(t);
    const dir = tempDir(s);
    const record = join(dir, 'record.jsonl');
    const up = await startUpstream(s);
    const gw = await startGateway(
      s,
      workers({
        routes: [{ id: 'api', plugins: ['auth'], action: { type: 'proxy', upstream: up.url } }],
        plugins: {
          auth: {
            path: CONFIGURABLE,
            env: { FIXTURE_NAME: 'auth', FIXTURE_DIR: dir, FIXTURE_RECORD: record, FIXTURE_HEADER: 'X-User=alice' },
            cache: { ttl: '1h', key: ['header:Authorization'] },
          },
        },
      }),
    );
    await whenReady(gw);
    const users = await Promise.all(
      Array.from({ length: SPREAD }, async () => (await request(`${gw.url}/x`, { headers: { authorization: 'Bearer t-alice' } })).json().headers['x-user']),
    );
    assert.deepEqual(new Set(users), new Set(['alice']));
    const calls = readJsonLines<{ ev: string; hook?: string }>(record).filter((r) => r.ev === 'call' && r.hook === 'on_request').length;
    assert.ok(calls >= 1 && calls <= 2, `${calls} plugin calls for ${SPREAD} requests with one token over 2 workers`);
  });

  test('a config reload reaches both workers', async (t) => {
    const s = scope(t);
    const config = (body: string) => workers({ routes: [{ id: 'a', action: { type: 'static', status: 200, body } }] });
    const gw = await startGateway(s, config('one\n'));
    await whenReady(gw);
    assert.deepEqual(new Set(await spread(gw, '/')), new Set(['one\n']));
    const mark = gw.logs.length;
    gw.rewrite(config('two\n'));
    await gw.waitForLog('config reloaded', { from: mark });
    await waitFor(async () => (await spread(gw, '/')).every((b) => b === 'two\n'), { what: `${SPREAD} requests on fresh connections all to see the new config` });
    assert.equal(gw.logs.filter((l) => l.msg === 'gateway listening').length, 1, 'the workers were not restarted');
  });

  test('targets a plugin pushes reach both workers', async (t) => {
    const s = scope(t);
    const [configured, pushed] = await Promise.all([startUpstream(s, { name: 'configured' }), startUpstream(s, { name: 'pushed' })]);
    const gw = await startGateway(
      s,
      workers({
        routes: [{ id: 'one', balancer: { targets: [configured.target] }, action: { type: 'proxy', upstream: 'http://{target}' } }],
        plugins: { pusher: { path: PUSH_TARGETS_SH, autostart: true, env: { PUSH_ROUTE: '*', PUSH_TARGETS: pushed.target } } },
      }),
    );
    await gw.waitForLog('set_targets applied');
    await whenReady(gw);
    const servedBy = async () => Promise.all(Array.from({ length: SPREAD }, async () => (await request(`${gw.url}/x`)).headers['x-served-by']));
    await waitFor(async () => (await servedBy()).every((n) => n === 'pushed'), { what: `${SPREAD} requests all to reach the pushed target` });
  });

  test('a killed worker is replaced while the other keeps serving', async (t) => {
    const s = scope(t);
    const gw = await startGateway(s, workers({ routes: [{ id: 'a', action: { type: 'static', status: 200, body: 'ok\n' } }] }));
    await whenReady(gw);
    const [victim, survivor] = (await readyz(gw)).workers!;
    process.kill(victim.pid, 'SIGKILL');
    // Gone for good (reaped by the runner), not only a zombie: the main thread
    // turns zombie while the process's other threads still hold its sockets.
    await waitFor(() => !exists(victim.pid), { what: 'the killed worker to be reaped' });
    // The dead worker's socket closed with it: every connection meets the live one (or its replacement).
    assert.deepEqual(new Set(await spread(gw, '/')), new Set(['ok\n']));
    const after = await waitFor(
      async () => {
        const r = await readyz(gw);
        return r.ready && r.workers!.length === 2 && !r.workers!.some((w) => w.pid === victim.pid) ? r : null;
      },
      { what: 'a new worker in the killed one\'s place' },
    );
    assert.ok(after.workers!.some((w) => w.pid === survivor.pid), 'the other worker kept running');
    assert.ok(after.workers!.some((w) => w.restarts === 1));
    assert.deepEqual(new Set(await spread(gw, '/')), new Set(['ok\n']));
  });

  test('SIGTERM drains both workers: requests in flight finish with 200, the runner exits 0, no worker remains', async (t) => {
    const s = scope(t);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let arrived = 0;
    let allArrived!: () => void;
    const inFlight = new Promise<void>((r) => (allArrived = r));
    const up = await startUpstream(s, {
      handler: (req, res) => {
        req.resume();
        if (++arrived === SPREAD) allArrived();
        void released.then(() => res.end('answered\n'));
      },
    });
    s.defer(() => release());
    const gw = await startGateway(s, workers({ routes: [{ id: 'api', action: { type: 'proxy', upstream: up.url } }] }));
    await whenReady(gw);
    const pids = (await readyz(gw)).workers!.map((w) => w.pid);
    const replies = Promise.all(Array.from({ length: SPREAD }, () => request(`${gw.url}/slow`, { timeoutMs: 60_000 })));
    await inFlight;
    const mark = gw.logs.length;
    const exit = gw.stop(60_000);
    await gw.waitForLog('stopping', { from: mark });
    release();
    const all = await replies;
    assert.deepEqual(new Set(all.map((r) => r.status)), new Set([200]));
    assert.deepEqual(await exit, { code: 0, signal: null });
    for (const pid of pids) assert.ok(!isAlive(pid), `worker ${pid} is gone`);
  });

  test('a runner killed with SIGKILL leaves no gateway worker behind', async (t) => {
    const s = scope(t);
    const gw = await startGateway(s, workers({ routes: [{ id: 'a', action: { type: 'static', status: 200, body: 'ok\n' } }] }));
    await whenReady(gw);
    const pids = (await readyz(gw)).workers!.map((w) => w.pid);
    await gw.kill();
    await waitFor(() => pids.every((p) => !isAlive(p)), { what: 'the workers to exit once their runner is gone' });
  });
});
