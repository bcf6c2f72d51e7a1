/**
 * Request ids on the self-hosted gateway (issue 11): X-Request-Id is kept
 * when the client sent exactly one valid id, else made (a UUID); the
 * plugin sees it in the request headers, the upstream gets it, and the
 * client gets it back on every routed answer (a deny, a static action, a
 * proxied response whose upstream sent its own). Real `hookgate serve`,
 * real plugin, real upstream.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { requestIdOf } from '../../src/core/gateway/pipeline.ts';
import { request, waitFor } from '../helpers/http.ts';
import { VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, startGateway } from '../helpers/processes.ts';
import { scope } from '../helpers/scope.ts';
import { startUpstream } from '../helpers/upstream.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('request ids', { concurrency: true, timeout: 60_000 }, () => {
  test('kept when valid, made otherwise; seen by the plugin and the upstream, and returned on every answer', async (t) => {
    const s = scope(t);
    const up = await startUpstream(s, { headers: { 'X-Request-Id': 'the-upstreams-own' } });
    const gw = await startGateway(
      s,
      baseConfig({
        routes: [
          { id: 'api', match: { path: '/api/*' }, plugins: ['fx'], action: { type: 'proxy', upstream: up.url } },
          { id: 'static', match: { path: '/static' }, action: { type: 'static', body: 'hi\n' } },
        ],
        plugins: { fx: { path: VERDICT_PLUGIN, env: { FIXTURE_HOOKS: 'on_request' } } },
      }),
    );
    await waitFor(async () => (await request(`${gw.admin}/readyz`)).status === 200, { timeoutMs: 30_000, what: 'the plugin ready' });
    const saw = { 'x-test-verdict': 'saw:X-Request-Id' };
    const kept = await request(`${gw.url}/api/a`, { headers: { ...saw, 'x-request-id': 'abc-123_x.y' } });
    assert.equal(kept.status, 200, kept.text);
    const seen = kept.json().headers;
    assert.equal(seen['x-saw-x-request-id'], 'abc-123_x.y', 'the plugin saw it');
    assert.equal(seen['x-request-id'], 'abc-123_x.y', 'the upstream got it');
    assert.equal(kept.headers['x-request-id'], 'abc-123_x.y', "the client gets it back, not the upstream's own");

    for (const bad of ['has spaces', 'x'.repeat(129), 'semi;colon']) {
      const res = await request(`${gw.url}/api/b`, { headers: { ...saw, 'x-request-id': bad } });
      const id = String(res.headers['x-request-id']);
      assert.match(id, UUID, `"${bad.slice(0, 20)}" is replaced`);
      assert.equal(res.json().headers['x-request-id'], id);
      assert.equal(res.json().headers['x-saw-x-request-id'], id);
    }
    const made = await request(`${gw.url}/api/c`);
    assert.match(String(made.headers['x-request-id']), UUID);
    const denied = await request(`${gw.url}/api/d`, { headers: { 'x-test-verdict': 'deny' } });
    assert.equal(denied.status, 403);
    assert.match(String(denied.headers['x-request-id']), UUID, 'a deny carries it');
    assert.match(String((await request(`${gw.url}/static`)).headers['x-request-id']), UUID, 'a static answer carries it');
  });

  test('log.access: one access line per request with its request id, route, status and path without the query', async (t) => {
    const s = scope(t);
    const gw = await startGateway(s, baseConfig({ log: { access: true }, routes: [{ id: 'static', match: { path: '/static' }, action: { type: 'static', body: 'hi\n' } }] }));
    const res = await request(`${gw.url}/static?token=secret`, { headers: { 'x-request-id': 'follow-me-1' } });
    assert.equal(res.status, 200);
    const line = await gw.waitForLog((l) => l.msg === 'access' && l.request_id === 'follow-me-1');
    assert.equal(line.route, 'static');
    assert.equal(line.method, 'GET');
    assert.equal(line.status, 200);
    assert.equal(line.path, '/static', 'no query in the log');
    assert.ok(Number(line.duration_ms) >= 0 && Number(line.bytes_out) > 0, JSON.stringify(line));
    await request(`${gw.url}/nowhere`);
    const unrouted = await gw.waitForLog((l) => l.msg === 'access' && l.path === '/nowhere');
    assert.equal(unrouted.status, 404);
    assert.equal(unrouted.route, null);
  });

  test('requestIdOf: one valid id is kept; two, or an invalid one, are replaced by one new id', () => {
    assert.deepEqual(requestIdOf(['Host', 'a', 'x-request-id', 'ok-1']), { id: 'ok-1', headers: ['Host', 'a', 'x-request-id', 'ok-1'] });
    const two = requestIdOf(['X-Request-Id', 'a', 'X-Request-Id', 'b']);
    assert.match(two.id, UUID);
    assert.deepEqual(two.headers, ['X-Request-Id', two.id]);
    const none = requestIdOf(['Host', 'a']);
    assert.deepEqual(none.headers, ['Host', 'a', 'X-Request-Id', none.id]);
  });
});
