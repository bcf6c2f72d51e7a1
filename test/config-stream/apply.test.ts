/**
 * A runner following a config stream applies what it is sent: a put makes
 * routes serve (and says ready), unchanged plugins keep their process and
 * changed ones restart, the per-item version rules and tombstones hold, and
 * an invalid result is refused while the previous config keeps serving.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { request, waitFor } from '../helpers/http.ts';
import { AUTH_TS } from '../helpers/paths.ts';
import { sample } from '../helpers/metrics.ts';
import { readyz } from '../helpers/processes.ts';
import { scope } from '../helpers/scope.ts';
import { startUpstream } from '../helpers/upstream.ts';
import { put, startSource, startStreamRunner, staticRoute, type StreamRunner } from './harness.ts';

const body = async (r: StreamRunner, path: string, headers?: Record<string, string>) => {
  const res = await request(`${r.gateway}${path}`, { headers });
  return `${res.status} ${res.text}`;
};

/** pids of the "plugin started" lines of plugin `name`, in order. */
const pidsOf = (r: StreamRunner, name: string) => r.logs.filter((l) => l.msg === 'plugin started' && l.plugin === name).map((l) => Number(l.pid));

describe('config stream: applying events', { concurrency: true, timeout: 60_000 }, () => {
  test('before any config the gateway answers 503 and /readyz is not ready; a put makes static and proxy routes serve', async (t) => {
    const s = scope(t);
    const up = await startUpstream(s, { name: 'up' });
    const src = await startSource(s);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    src.onConnect = (c) =>
      void held.then(() =>
        c.send(
          'put',
          put({
            routes: { hello: staticRoute('/hello', 'hi from the stream', 1, 0), api: { match: { path: '/api/*' }, action: 'app', version: 2, order: 1 } },
            actions: { app: { type: 'proxy', upstream: up.url, version: 3 } },
          }),
        ),
      );
    const r = await startStreamRunner(s, src.url);
    await waitFor(() => src.requests.length > 0, { what: 'the runner to connect' });
    assert.equal((await readyz(r)).status, 503, 'not ready before the first put');
    assert.equal((await request(`${r.gateway}/hello`)).status, 503, 'the gateway has no config yet');

    release();
    await r.waitForLog('config applied from the stream');
    assert.equal(await body(r, '/hello'), '200 hi from the stream');
    const proxied = await request(`${r.gateway}/api/x`);
    assert.equal(proxied.status, 200);
    assert.equal(proxied.json().upstream, 'up');
    assert.equal((await readyz(r)).status, 200, 'ready after the first put');
    assert.equal(src.requests[0].authorization, 'Bearer stream-key-0123456789abcdef');
  });

  test('a plugin whose definition did not change keeps its process across puts; a changed one gets a new process', async (t) => {
    const s = scope(t);
    const src = await startSource(s);
    const auth = (tokens: string, version: number) => ({ path: AUTH_TS, env: { HOOKGATE_AUTH_TOKENS: tokens }, version });
    const routes = (extra: boolean) => ({
      api: { match: { path: '/api/*' }, plugins: ['auth'], action: { type: 'static', body: 'secret' }, version: 1, order: 0 },
      ...(extra ? { more: staticRoute('/more', 'more', 5, 1) } : {}),
    });
    src.onConnect = (c) => c.send('put', put({ routes: routes(false), plugins: { auth: auth('t1:alice', 2) } }));
    const r = await startStreamRunner(s, src.url, { bootstrap: { runner: { plugins_allowed: [AUTH_TS] } } });
    await waitFor(async () => (await readyz(r)).status === 200, { timeoutMs: 15_000, what: 'the plugin to be ready' });
    assert.equal(await body(r, '/api/x', { authorization: 'Bearer t1' }), '200 secret');
    const [first] = pidsOf(r, 'auth');
    assert.ok(first > 0, 'the plugin logged its pid');

    let mark = r.logs.length;
    src.conns[0].send('put', put({ routes: routes(true), plugins: { auth: auth('t1:alice', 2) } }));
    await r.waitForLog('config applied from the stream', { from: mark });
    assert.equal(await body(r, '/more'), '200 more', 'the new route serves');
    assert.equal(await body(r, '/api/x', { authorization: 'Bearer t1' }), '200 secret');
    assert.deepEqual(pidsOf(r, 'auth'), [first], 'the unchanged plugin was not restarted');

    mark = r.logs.length;
    src.conns[0].send('put', put({ routes: routes(true), plugins: { auth: auth('t2:bob', 6) } }));
    await r.waitForLog('plugin started', { from: mark, pred: (l) => l.plugin === 'auth', timeoutMs: 15_000 });
    const pids = pidsOf(r, 'auth');
    assert.equal(pids.length, 2);
    assert.notEqual(pids[1], first, 'the changed plugin runs in a new process');
    await waitFor(async () => (await body(r, '/api/x', { authorization: 'Bearer t2' })) === '200 secret', { timeoutMs: 15_000, what: 'the new token to be accepted' });
    assert.equal((await request(`${r.gateway}/api/x`, { headers: { authorization: 'Bearer t1' } })).status, 401, 'the old token is refused');
  });

  test('a patch or delete whose version is not greater than the one held is ignored; a deleted item keeps a tombstone', async (t) => {
    const s = scope(t);
    const src = await startSource(s, (c) => c.send('put', put({ routes: { a: staticRoute('/a', 'a5', 5) } })));
    const r = await startStreamRunner(s, src.url);
    await r.waitForLog('config applied from the stream');
    const c = src.conns[0];
    const step = async (event: string, data: unknown, expect: 'applied' | 'stale') => {
      const mark = r.logs.length;
      c.send(event, data);
      await r.waitForLog(expect === 'applied' ? 'config applied from the stream' : 'stale event ignored', { from: mark });
    };

    await step('patch', { path: 'routes/a', data: staticRoute('/a', 'a3', 3) }, 'stale');
    await step('patch', { path: 'routes/a', data: staticRoute('/a', 'a5-again', 5) }, 'stale');
    assert.equal(await body(r, '/a'), '200 a5', 'older and equal versions are ignored');

    await step('delete', { path: 'routes/a', version: 4 }, 'stale');
    assert.equal(await body(r, '/a'), '200 a5', 'an older delete is ignored');
    await step('delete', { path: 'routes/a', version: 6 }, 'applied');
    assert.equal((await request(`${r.gateway}/a`)).status, 404, 'deleted');

    await step('patch', { path: 'routes/a', data: staticRoute('/a', 'zombie', 6) }, 'stale');
    assert.equal((await request(`${r.gateway}/a`)).status, 404, 'a patch not newer than the delete does not bring it back');
    await step('patch', { path: 'routes/a', data: staticRoute('/a', 'a7', 7) }, 'applied');
    assert.equal(await body(r, '/a'), '200 a7', 'a newer patch does');
  });

  test('an invalid result is refused with a log line naming the item and field; the previous config keeps serving and the stream goes on', async (t) => {
    const s = scope(t);
    const src = await startSource(s, (c) => c.send('put', put({ routes: { a: staticRoute('/a', 'A', 1) } })));
    const r = await startStreamRunner(s, src.url);
    await r.waitForLog('config applied from the stream');
    const c = src.conns[0];

    let mark = r.logs.length;
    c.send('patch', { path: 'routes/bad', data: { match: { path: '/bad' }, action: 'nope', version: 2 } });
    const refused = await r.waitForLog('config from the stream refused', { from: mark });
    assert.equal(refused.path, 'routes/bad');
    assert.ok(
      (refused.problems as string[]).some((p) => p.startsWith('routes/bad.action') && p.includes('no action named "nope"')),
      `problems name the item and field: ${JSON.stringify(refused.problems)}`,
    );
    assert.equal(await body(r, '/a'), '200 A', 'the previous config keeps serving');
    assert.equal((await request(`${r.gateway}/bad`)).status, 404);

    mark = r.logs.length;
    c.send('put', put({ routes: { a: staticRoute('/a', 'A', 1), b: { match: { path: '/b' }, action: { type: 'static', status: 42 }, version: 3 } } }));
    const refusedPut = await r.waitForLog('config from the stream refused', { from: mark });
    assert.ok((refusedPut.problems as string[]).some((p) => p.startsWith('routes/b.action.status')), JSON.stringify(refusedPut.problems));

    mark = r.logs.length;
    c.send('patch', { path: 'routes/b', data: staticRoute('/b', 'B', 4, 1) });
    await r.waitForLog('config applied from the stream', { from: mark });
    assert.equal(await body(r, '/b'), '200 B', 'a later valid patch applies on the same stream');
    assert.equal(src.requests.length, 1, 'refusals did not restart the stream');

    // Each commit that changed the config, and each refusal, is a reload; the source is connected until it goes.
    const metric = async (name: string, labels: Record<string, string> = {}) => sample((await request(`${r.admin}/metrics`)).text, name, labels);
    assert.equal(await metric('hookgate_config_reloads_total', { result: 'applied' }), 2);
    assert.equal(await metric('hookgate_config_reloads_total', { result: 'refused' }), 2);
    assert.equal(await metric('hookgate_config_source_connected'), 1);
    src.status = 401;
    c.close();
    await waitFor(async () => (await metric('hookgate_config_source_connected')) === 0, { what: 'the source counted disconnected' });
  });
});
