/**
 * The admin API and /metrics (issue 11, first part): a real `hookgate
 * serve` with a real plugin. /metrics speaks Prometheus text with the
 * process metrics and hookgate's own (plugins up, restarts, targets,
 * config version and reloads); the JSON API lists the overview, routes
 * with their targets, plugins, and the config with its secrets redacted;
 * POST restarts a plugin and drains; `admin.keys` guards /api and /metrics
 * (probes stay open); an admin listener off loopback without keys is a
 * config error.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/core/config/config.ts';
import { request, waitFor } from '../helpers/http.ts';
import { VERDICT_PLUGIN } from '../helpers/paths.ts';
import { baseConfig, isAlive, startGateway, writeConfig } from '../helpers/processes.ts';
import { sample } from '../helpers/metrics.ts';
import { scope } from '../helpers/scope.ts';

const json = async (url: string, opts: { method?: string; headers?: Record<string, string> } = {}) => {
  const res = await request(url, opts);
  return { status: res.status, body: res.status === 404 && !res.text.startsWith('{') ? null : (JSON.parse(res.text) as Record<string, any>), headers: res.headers };
};

const SECRET = 'a-runner-key-secret-0123456789';

function config(extra: Record<string, unknown> = {}) {
  return baseConfig({
    runner: { keys: [{ id: 'edge', secret: SECRET }, { id: 'ref', secret_env: 'SOME_VAR' }] },
    routes: [
      { id: 'api', match: { path: '/api/*' }, plugins: ['fx'], action: { type: 'static', body: 'api\n' } },
      { id: 'lb', match: { path: '/lb/*' }, balancer: { type: 'roundrobin', targets: ['127.0.0.1:1', '127.0.0.1:2'] }, action: { type: 'proxy', upstream: 'http://{target}' } },
    ],
    plugins: { fx: { path: VERDICT_PLUGIN, env: { FIXTURE_HOOKS: 'on_request', FIXTURE_NAME: 'fx', API_TOKEN: 'plugin-secret-value' } } },
    ...extra,
  });
}

describe('admin API and metrics', { concurrency: true, timeout: 90_000 }, () => {
  test('/metrics: process metrics and hookgate_* (build, plugin up and restarts, targets, config version, reloads)', async (t) => {
    const s = scope(t);
    const gw = await startGateway(s, config());
    await waitFor(async () => (await request(`${gw.admin}/readyz`)).status === 200, { timeoutMs: 30_000, what: 'ready' });
    const scrape = async () => {
      const res = await request(`${gw.admin}/metrics`);
      assert.equal(res.status, 200);
      assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
      return res.text;
    };
    let text = await scrape();
    assert.equal(sample(text, 'hookgate_plugin_up', { plugin: 'fx' }), 1);
    assert.equal(sample(text, 'hookgate_plugin_restarts_total', { plugin: 'fx' }), 0);
    assert.equal(sample(text, 'hookgate_balancer_targets', { route: 'lb' }), 2);
    assert.equal(sample(text, 'hookgate_config_info', { source: 'file' }), 1);
    assert.ok(sample(text, 'hookgate_build_info') === 1, 'build info');
    assert.ok(sample(text, 'process_cpu_user_seconds_total') !== null, 'prom-client process metrics');
    assert.ok(sample(text, 'nodejs_eventloop_lag_seconds') !== null, 'event-loop lag');
    assert.ok(!text.includes('/api/'), 'no raw paths in labels');

    // the plugin killed: it comes back, counted as a restart
    const pid = Number((await json(`${gw.admin}/api/plugins`)).body!.plugins[0].pid);
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => sample(await scrape(), 'hookgate_plugin_restarts_total', { plugin: 'fx' }) === 1 && sample(await scrape(), 'hookgate_plugin_up', { plugin: 'fx' }) === 1, {
      timeoutMs: 30_000,
      what: 'the restart counted and the plugin up again',
    });

    // a reload is counted; the config version label follows the state
    const before = sample(text, 'hookgate_config_info', { source: 'file' });
    assert.equal(before, 1);
    const mark = gw.logs.length;
    writeConfig(gw.dir, config({ routes: [{ id: 'api', match: { path: '/api/*' }, plugins: ['fx'], action: { type: 'static', body: 'api2\n' } }] }));
    await gw.waitForLog('config reloaded', { from: mark });
    text = await scrape();
    assert.equal(sample(text, 'hookgate_config_reloads_total', { result: 'applied' }), 1);
  });

  test('/metrics counts requests by route and status, and hook calls by outcome (allow, deny, error while the plugin is down)', async (t) => {
    const s = scope(t);
    const gw = await startGateway(s, config());
    await waitFor(async () => (await request(`${gw.admin}/readyz`)).status === 200, { timeoutMs: 30_000, what: 'ready' });
    for (let i = 0; i < 3; i++) assert.equal((await request(`${gw.url}/api/x`)).status, 200);
    for (let i = 0; i < 2; i++) assert.equal((await request(`${gw.url}/api/x`, { headers: { 'x-test-verdict': 'deny' } })).status, 403);
    assert.equal((await request(`${gw.url}/nowhere`)).status, 404);
    const text = async () => (await request(`${gw.admin}/metrics`)).text;
    let m = await text();
    assert.equal(sample(m, 'hookgate_http_requests_total', { route: 'api', method: 'GET', code: '200' }), 3);
    assert.equal(sample(m, 'hookgate_http_requests_total', { route: 'api', method: 'GET', code: '403' }), 2);
    assert.equal(sample(m, 'hookgate_http_requests_total', { route: 'none', method: 'GET', code: '404' }), 1);
    assert.equal(sample(m, 'hookgate_http_request_duration_seconds_count', { route: 'api' }), 5);
    assert.equal(sample(m, 'hookgate_hook_calls_total', { plugin: 'fx', hook: 'on_request', outcome: 'allow' }), 3);
    assert.equal(sample(m, 'hookgate_hook_calls_total', { plugin: 'fx', hook: 'on_request', outcome: 'deny' }), 2);
    assert.equal(sample(m, 'hookgate_hook_duration_seconds_count', { plugin: 'fx', hook: 'on_request' }), 5);

    const pid = Number((await json(`${gw.admin}/api/plugins`)).body!.plugins[0].pid);
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => (await request(`${gw.url}/api/x`)).status === 503, { timeoutMs: 30_000, what: 'a request failing closed while the plugin is down' });
    m = await text();
    assert.ok((sample(m, 'hookgate_hook_calls_total', { plugin: 'fx', hook: 'on_request', outcome: 'error' }) ?? 0) >= 1, 'the failed call is counted as an error');
    assert.ok((sample(m, 'hookgate_http_requests_total', { route: 'api', method: 'GET', code: '503' }) ?? 0) >= 1);
  });

  test('with gateway.workers: 2, /metrics is one view: the requests both workers served are summed', async (t) => {
    const s = scope(t);
    const gw = await startGateway(s, config({ gateway: { listen: '127.0.0.1:0', workers: 2 } }));
    await waitFor(async () => (await request(`${gw.admin}/readyz`)).status === 200, { timeoutMs: 60_000, what: 'ready with both workers' });
    for (let i = 0; i < 20; i++) assert.equal((await request(`${gw.url}/api/x`)).status, 200);
    const m = (await request(`${gw.admin}/metrics`)).text;
    assert.equal(sample(m, 'hookgate_http_requests_total', { route: 'api', method: 'GET', code: '200' }), 20);
    assert.equal(sample(m, 'hookgate_hook_calls_total', { plugin: 'fx', hook: 'on_request', outcome: 'allow' }), 20);
    assert.equal(sample(m, 'hookgate_plugin_up', { plugin: 'fx' }), 1, 'the runner\'s own gauges are there too');
    assert.equal(sample(m, 'hookgate_http_request_duration_seconds_count', { route: 'api' }), 20);
    assert.ok(sample(m, 'hookgate_bandwidth_bytes_total', { route: 'api', direction: 'out' })! >= 20 * 'api\n'.length);
    // The workers' own pools made the calls: their connections are summed in.
    assert.ok(sample(m, 'hookgate_hook_pool_connections', { plugin: 'fx', state: 'idle' })! >= 1, m);
    assert.equal(sample(m, 'hookgate_open_connections', { listener: 'gateway' }), 0, 'every request closed its connection');
  });

  test('POST /api/cache/purge empties the verdict caches (one plugin\'s or all); the entries gauge and lookups follow', async (t) => {
    const s = scope(t);
    const gw = await startGateway(s, config({ plugins: { fx: { path: VERDICT_PLUGIN, env: { FIXTURE_HOOKS: 'on_request' }, cache: { ttl: '60s' } } } }));
    await waitFor(async () => (await request(`${gw.admin}/readyz`)).status === 200, { timeoutMs: 30_000, what: 'ready' });
    const metric = async (name: string, labels: Record<string, string>) => sample((await request(`${gw.admin}/metrics`)).text, name, labels);
    assert.equal((await request(`${gw.url}/api/x`)).status, 200);
    assert.equal((await request(`${gw.url}/api/x`)).status, 200);
    assert.equal(await metric('hookgate_hook_cache_lookups_total', { plugin: 'fx', result: 'hit' }), 1);
    assert.equal(await metric('hookgate_hook_cache_entries', { plugin: 'fx' }), 1);
    assert.equal(await metric('hookgate_hook_calls_total', { plugin: 'fx', hook: 'on_request', outcome: 'allow' }), 1, 'the hit made no call');

    assert.equal((await json(`${gw.admin}/api/cache/purge`, { method: 'POST', headers: { 'content-type': 'application/json' } })).status, 200);
    assert.equal((await request(`${gw.admin}/api/cache/purge`, { method: 'POST', body: '{"plugin":"ghost"}' })).status, 404);
    assert.equal((await request(`${gw.admin}/api/cache/purge`, { method: 'POST', body: 'nope' })).status, 400);
    const one = await request(`${gw.admin}/api/cache/purge`, { method: 'POST', body: '{"plugin":"fx"}' });
    assert.deepEqual(JSON.parse(one.text), { purged: 0, plugin: 'fx' }, 'already empty after the first purge');
    assert.equal(await metric('hookgate_hook_cache_entries', { plugin: 'fx' }), 0);
    assert.equal((await request(`${gw.url}/api/x`)).status, 200);
    assert.equal(await metric('hookgate_hook_calls_total', { plugin: 'fx', hook: 'on_request', outcome: 'allow' }), 2, 'after a purge the plugin is asked again');
  });

  test('/api: overview, routes with targets, plugins, config with secrets redacted; POST restart and drain; GET on a mutation is 405', async (t) => {
    const s = scope(t);
    const gw = await startGateway(s, config());
    await waitFor(async () => (await request(`${gw.admin}/readyz`)).status === 200, { timeoutMs: 30_000, what: 'ready' });

    const overview = (await json(`${gw.admin}/api/overview`)).body!;
    assert.equal(overview.ready, true);
    assert.equal(overview.routes, 2);
    assert.deepEqual(overview.plugins, { total: 1, ready: 1 });
    assert.equal(overview.targets, 2);
    assert.equal(overview.config.source, 'file');
    assert.match(overview.config.version, /^[0-9a-f]{16}$/);
    assert.match(overview.version, /^\d+\.\d+\.\d+/);

    const routes = (await json(`${gw.admin}/api/routes`)).body!.routes;
    assert.deepEqual(routes.map((r: { id: string }) => r.id), ['api', 'lb']);
    assert.deepEqual(routes[0].plugins, [{ plugin: 'fx', on_error: 'deny', with_body: false }]);
    assert.deepEqual(routes[1].balancer, { type: 'roundrobin', targets: ['127.0.0.1:1', '127.0.0.1:2'] });

    const plugins = (await json(`${gw.admin}/api/plugins`)).body!.plugins;
    assert.equal(plugins.length, 1);
    assert.equal(plugins[0].name, 'fx');
    assert.equal(plugins[0].ready, true);
    assert.deepEqual(plugins[0].hooks, ['on_request']);
    assert.equal(plugins[0].restart_delay_ms, null, 'not waiting for a restart');
    assert.ok(isAlive(plugins[0].pid));

    const cfg = await request(`${gw.admin}/api/config`);
    assert.ok(!cfg.text.includes(SECRET), 'the runner key secret is redacted');
    assert.ok(!cfg.text.includes('plugin-secret-value'), 'plugin env values are redacted');
    const body = JSON.parse(cfg.text).config;
    assert.equal(body.runner.keys[0].secret, '<redacted>');
    assert.equal(body.runner.keys[1].secret_env, 'SOME_VAR', 'references stay');
    assert.equal(body.plugins.fx.env.API_TOKEN, '<redacted>');

    assert.equal((await request(`${gw.admin}/api/plugins/fx/restart`)).status, 405);
    assert.equal((await json(`${gw.admin}/api/plugins/ghost/restart`, { method: 'POST' })).status, 404);
    const restarted = await json(`${gw.admin}/api/plugins/fx/restart`, { method: 'POST' });
    assert.equal(restarted.status, 200);
    const after = await waitFor(async () => {
      const p = (await json(`${gw.admin}/api/plugins`)).body!.plugins[0];
      return p.ready && p.pid !== plugins[0].pid ? p : null;
    }, { timeoutMs: 30_000, what: 'fx in a new process' });
    assert.equal(after.restarts, 1);
    await waitFor(() => !isAlive(plugins[0].pid), { timeoutMs: 10_000, what: 'the old process gone' });

    assert.equal((await json(`${gw.admin}/api/drain`, { method: 'POST' })).status, 200);
    const ready = await json(`${gw.admin}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(ready.body!.draining, true);
    assert.equal((await request(`${gw.url}/api/x`)).text, 'api\n', 'traffic is still served while draining');
  });

  test('admin.keys guard /api and /metrics with a bearer key; the probes stay open', async (t) => {
    const s = scope(t);
    const key = 'admin-key-0123456789abcdef';
    const gw = await startGateway(s, config({ admin: { listen: '127.0.0.1:0', keys: [{ id: 'ops', secret_env: 'HG_ADMIN_KEY' }] } }), { env: { HG_ADMIN_KEY: key } });
    for (const path of ['/api/overview', '/api/config', '/metrics']) {
      const res = await request(`${gw.admin}${path}`);
      assert.equal(res.status, 401, path);
      assert.equal(res.headers['www-authenticate'], 'Bearer');
      assert.equal((await request(`${gw.admin}${path}`, { headers: { authorization: 'Bearer wrong-key-0123456789' } })).status, 401, path);
      assert.equal((await request(`${gw.admin}${path}`, { headers: { authorization: `Bearer ${key}` } })).status, 200, path);
    }
    assert.equal((await request(`${gw.admin}/api/drain`, { method: 'POST' })).status, 401, 'mutations need the key too');
    assert.equal((await request(`${gw.admin}/healthz`)).status, 200);
    assert.notEqual((await request(`${gw.admin}/readyz`)).status, 401);
  });

  test('an admin listener off loopback without admin.keys is a config error; with keys it is fine', () => {
    assert.throws(
      () => parseConfig({ admin: { listen: '0.0.0.0:9090' } }),
      (err: Error & { problems?: string[] }) => (err.problems ?? []).some((p) => p.includes('admin.listen is not a loopback address') && p.includes('admin.keys')),
    );
    assert.doesNotThrow(() => parseConfig({ admin: { listen: '0.0.0.0:9090', keys: [{ id: 'ops', secret_env: 'K' }] } }));
    assert.doesNotThrow(() => parseConfig({ admin: { listen: '[::1]:9090' } }));
  });
});
