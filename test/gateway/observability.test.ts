/**
 * Operating the self-hosted gateway (issue 11), the parts beyond the
 * admin API: the metrics of upstream time, bytes, connections and pools;
 * the hook API's counts and key rejections; one request id followed from
 * the client through the plugin and the upstream into its access line;
 * and `metrics.requests: false`. Real `hookgate serve`, real plugin, real
 * upstream. (The `log` section's level and format: test/cli.test.ts.)
 */

import assert from 'node:assert/strict';
import { Agent, request as httpRequest } from 'node:http';
import { describe, test } from 'node:test';
import { encodeHookFrame } from '../../src/core/protocol/codec.ts';
import { postFrames } from '../helpers/hook-api.ts';
import { request, waitFor } from '../helpers/http.ts';
import { sample } from '../helpers/metrics.ts';
import { VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, KEY, runnerConfig, startGateway, startRunner } from '../helpers/processes.ts';
import { scope } from '../helpers/scope.ts';
import { startUpstream } from '../helpers/upstream.ts';

const fx = { path: VERDICT_PLUGIN, env: { FIXTURE_HOOKS: 'on_request,on_response', FIXTURE_NAME: 'fx' } };

/** One request on `agent` (keep-alive), its body read. */
function onAgent(agent: Agent, url: string, body?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent, method: body ? 'POST' : 'GET', headers: body ? { 'content-length': String(body.length) } : {} }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('observability', { concurrency: true, timeout: 90_000 }, () => {
  test('one request id from the client to the plugin, the upstream, the answer and its access line (upstream, hook times and verdicts)', async (t) => {
    const s = scope(t);
    const up = await startUpstream(s);
    const gw = await startGateway(
      s,
      baseConfig({
        log: { access: true },
        routes: [{ id: 'api', match: { path: '/api/*' }, plugins: ['fx'], action: { type: 'proxy', upstream: up.url } }],
        plugins: { fx },
      }),
    );
    await waitFor(async () => (await request(`${gw.admin}/readyz`)).status === 200, { timeoutMs: 30_000, what: 'the plugin ready' });
    const id = 'follow-me-through-all';
    const res = await request(`${gw.url}/api/items?token=secret`, { headers: { 'x-request-id': id, 'x-test-verdict': 'saw:X-Request-Id' } });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json().headers['x-saw-x-request-id'], id, 'the plugin saw it');
    assert.equal(res.json().headers['x-request-id'], id, 'the upstream got it');
    assert.equal(res.headers['x-request-id'], id, 'the client got it back');
    const line = await gw.waitForLog((l) => l.msg === 'access' && l.request_id === id);
    assert.equal(line.route, 'api');
    assert.equal(line.path, '/api/items');
    assert.equal(line.query, undefined, 'no query unless log.access_query');
    assert.equal(line.status, 200);
    assert.equal(line.upstream, up.url.replace(/\/$/, ''), 'a route without a balancer logs its upstream origin');
    assert.ok(Number(line.upstream_ms) >= 0, JSON.stringify(line));
    assert.equal(line.on_request_verdict, 'allow');
    assert.ok(Number(line.on_request_ms) >= 0);
    assert.equal(line.on_response_verdict, 'ok');
    assert.ok(Number(line.on_response_ms) >= 0);
    assert.ok(Number(line.bytes_in) > 0 && Number(line.bytes_out) > 0, JSON.stringify(line));

    await request(`${gw.url}/api/no`, { headers: { 'x-request-id': 'denied-one', 'x-test-verdict': 'deny:401' } });
    const denied = await gw.waitForLog((l) => l.msg === 'access' && l.request_id === 'denied-one');
    assert.equal(denied.status, 401);
    assert.equal(denied.on_request_verdict, 'deny');
    assert.equal(denied.upstream, null, 'a denied request reaches no upstream');
    assert.equal(denied.upstream_ms, null);
  });

  test('/metrics after traffic: upstream time, bytes in and out, open connections per listener, pool connections, config source', async (t) => {
    const s = scope(t);
    const up = await startUpstream(s);
    const gw = await startGateway(
      s,
      baseConfig({
        routes: [{ id: 'api', match: { path: '/api/*' }, plugins: ['fx'], balancer: { targets: [up.target] }, action: { type: 'proxy', upstream: 'http://{target}' } }],
        plugins: { fx: { ...fx, env: { ...fx.env, FIXTURE_HOOKS: 'on_request' } } },
      }),
    );
    await waitFor(async () => (await request(`${gw.admin}/readyz`)).status === 200, { timeoutMs: 30_000, what: 'the plugin ready' });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    s.defer(() => agent.destroy());
    const body = 'x'.repeat(1000);
    for (let i = 0; i < 3; i++) assert.equal(await onAgent(agent, `${gw.url}/api/up`, body), 200);
    // Still open: the agent keeps its one connection.
    const text = (await request(`${gw.admin}/metrics`)).text;
    assert.equal(sample(text, 'hookgate_upstream_duration_seconds_count', { route: 'api' }), 3);
    assert.ok(sample(text, 'hookgate_upstream_duration_seconds_bucket', { route: 'api', le: '+Inf' }) === 3);
    assert.ok(sample(text, 'hookgate_bandwidth_bytes_total', { route: 'api', direction: 'in' })! >= 3 * 1000, text);
    assert.ok(sample(text, 'hookgate_bandwidth_bytes_total', { route: 'api', direction: 'out' })! > 0);
    assert.ok(sample(text, 'hookgate_open_connections', { listener: 'gateway' })! >= 1, 'the agent’s connection is open');
    assert.ok(sample(text, 'hookgate_open_connections', { listener: 'admin' })! >= 1, 'the scrape’s own');
    const busy = sample(text, 'hookgate_hook_pool_connections', { plugin: 'fx', state: 'busy' });
    const idle = sample(text, 'hookgate_hook_pool_connections', { plugin: 'fx', state: 'idle' });
    assert.equal(busy, 0, 'no call in flight');
    assert.ok(idle! >= 1, 'the pool kept its connection');
    assert.equal(sample(text, 'hookgate_config_source_connected'), 1, 'a config file is always there');

    const plugins = JSON.parse((await request(`${gw.admin}/api/plugins`)).text) as { plugins: Array<{ name: string; pool: { size: number; busy: number; idle: number; waiting: number } }> };
    const pool = plugins.plugins.find((p) => p.name === 'fx')!.pool;
    assert.equal(pool.size, 16);
    assert.equal(pool.busy, 0);
    assert.ok(pool.idle >= 1);
    assert.equal(pool.waiting, 0);

    agent.destroy();
    await waitFor(async () => sample((await request(`${gw.admin}/metrics`)).text, 'hookgate_open_connections', { listener: 'gateway' }) === 0, { what: 'the gateway connection counted closed' });
  });

  test('the hook API counts calls by transport and outcome, and key rejections by reason (missing, unknown, expired)', async (t) => {
    const s = scope(t);
    const runner = await startRunner(
      s,
      runnerConfig(
        { routes: [{ id: 'api', match: { path: '/api/*' }, plugins: ['fx'], action: { type: 'static', body: 'ok\n' } }], plugins: { fx: { ...fx, env: { ...fx.env, FIXTURE_HOOKS: 'on_request' } } } },
        { keys: [{ id: 'edge', secret: KEY }, { id: 'old', secret: 'an-old-key-0123456789abcdef', expires_at: '2001-01-01T00:00:00Z' }] },
      ),
    );
    const frame = encodeHookFrame('on_request', { r: 'api', m: 'GET', p: '/api/x', q: '', d: 'a', ho: 'a', pr: 'HTTP/1.1', a: '127.0.0.1:1', cl: 0, h: {}, bd: null, md: '', mg: '', mp: '', v: {}, tg: '' });
    assert.equal((await postFrames(runner.url, KEY, frame)).status, 200);
    assert.equal((await postFrames(runner.url, KEY, frame)).status, 200);
    assert.equal((await postFrames(runner.url, null, frame)).status, 401);
    assert.equal((await postFrames(runner.url, 'not-a-key-of-this-runner-000', frame)).status, 401);
    assert.equal((await postFrames(runner.url, 'an-old-key-0123456789abcdef', frame)).status, 401);
    assert.equal((await postFrames(runner.url, KEY, new Uint8Array([1, 2, 3]))).status, 400);
    const text = (await request(`${runner.admin}/metrics`)).text;
    assert.equal(sample(text, 'hookgate_hook_api_requests_total', { transport: 'http', outcome: 'ok' }), 2);
    assert.equal(sample(text, 'hookgate_hook_api_requests_total', { transport: 'http', outcome: 'unauthorized' }), 3);
    assert.equal(sample(text, 'hookgate_hook_api_requests_total', { transport: 'http', outcome: 'bad_request' }), 1);
    assert.equal(sample(text, 'hookgate_hook_api_key_rejections_total', { reason: 'missing' }), 1);
    assert.equal(sample(text, 'hookgate_hook_api_key_rejections_total', { reason: 'unknown' }), 1);
    assert.equal(sample(text, 'hookgate_hook_api_key_rejections_total', { reason: 'expired' }), 1);
    assert.ok(sample(text, 'hookgate_open_connections', { listener: 'runner' }) !== null);
  });

  test('metrics: { requests: false } records nothing per request; the state gauges stay', async (t) => {
    const s = scope(t);
    const gw = await startGateway(s, baseConfig({ metrics: { requests: false }, routes: [{ id: 'static', match: { path: '/s' }, action: { type: 'static', body: 'hi\n' } }] }));
    for (let i = 0; i < 3; i++) assert.equal((await request(`${gw.url}/s`)).status, 200);
    const text = (await request(`${gw.admin}/metrics`)).text;
    assert.equal(sample(text, 'hookgate_http_requests_total', { route: 'static' }), null);
    assert.equal(sample(text, 'hookgate_http_request_duration_seconds_count', { route: 'static' }), null);
    assert.match(text, /^# TYPE hookgate_http_requests_total counter$/m, 'the family is still declared');
    assert.equal(sample(text, 'hookgate_config_source_connected'), 1);
  });
});
