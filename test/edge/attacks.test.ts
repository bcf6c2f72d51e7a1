/**
 * The routing attacks of test/gateway/attacks.test.ts against the built
 * worker in Miniflare, with a real runner's plugins: requests are written
 * byte for byte to workerd's socket, so the worker sees the path as the
 * client sent it (workerd itself resolves dot segments and turns a raw
 * "\" into "/" before the worker runs, which agrees with the core's rules).
 *
 * Host cases cannot run here: `dispatchFetch` sends Host 127.0.0.1, and
 * over a raw socket Miniflare's own entry worker answers a second Host or
 * a comma-joined one with 500 before ours runs (it builds a URL from it).
 * They are the Node gateway's tests; the worker applies the same core
 * check to the Host it is given.
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { rawExchange } from '../helpers/http.ts';
import { AUTH_TS, PUSH_TARGETS_SH, VERDICT_PLUGIN } from '../helpers/paths.ts';
import { runnerConfig, startRunner, type RunnerProcess } from '../helpers/processes.ts';
import { suiteScope } from '../helpers/scope.ts';
import { startUpstream, type Upstream } from '../helpers/upstream.ts';
import { assertWorkerBuilt, startEdge, type Edge } from './harness.ts';

const s = suiteScope();
let runner: RunnerProcess;
let edge: Edge;
let up: Upstream;
let tenantA: Upstream;
let tenantB: Upstream;

before(async () => {
  assertWorkerBuilt();
  [up, tenantA, tenantB] = await Promise.all([startUpstream(s, { name: 'app' }), startUpstream(s, { name: 'tenant-a' }), startUpstream(s, { name: 'tenant-b' })]);
  runner = await startRunner(
    s,
    runnerConfig({
      routes: [
        { id: 'admin-host', match: { domain: 'admin.example.com' }, plugins: ['guard'], action: 'app' },
        { id: 'admin', match: { path: '/admin/*' }, plugins: ['guard'], action: 'app' },
        { id: 'api', match: { path: '/api/*' }, plugins: ['guard'], action: 'app' },
        { id: 'public', match: { path: '/public/*' }, plugins: ['fx'], action: 'app' },
        { id: 'chain', match: { path: '/chain/*' }, plugins: ['first', 'second'], action: 'app' },
        { id: 'tenants', match: { path: '/tenants/*' }, plugins: ['fx'], balancer: { group_by: 'header:X-Tenant' }, action: { type: 'proxy', upstream: 'http://{target}' } },
        { id: 'rest', action: 'app' },
      ],
      actions: { app: { type: 'proxy', upstream: up.url } },
      plugins: {
        guard: { path: AUTH_TS, env: { HOOKGATE_AUTH_TOKENS: 'tok-alice:alice' } },
        fx: { path: VERDICT_PLUGIN, env: { FIXTURE_NAME: 'fx', FIXTURE_HOOKS: 'on_request,on_response' } },
        first: { path: VERDICT_PLUGIN, env: { FIXTURE_NAME: 'first', FIXTURE_HOOKS: 'on_request' } },
        second: { path: VERDICT_PLUGIN, env: { FIXTURE_NAME: 'second', FIXTURE_HOOKS: 'on_request' } },
        pusher: { path: PUSH_TARGETS_SH, autostart: true, env: { PUSH_ROUTE: 'tenants', PUSH_GROUPS: `a=${tenantA.target};b=${tenantB.target}` } },
      },
    }),
  );
  await runner.waitForLog('set_targets applied');
  edge = await startEdge(s, { runners: [runner.url], transport: 'http' });
});

/** `method target` written byte for byte to the edge, with `headers` lines. */
const raw = (target: string, headers: string[] = [], method = 'GET', body = '') => rawExchange(edge.url, target, { headers, method, body, host: 'example.com' });

const reached = (u: Upstream, marker: string) => u.received.filter((r) => r.url.includes(marker));

describe('the edge normalises paths like the gateway', { concurrency: true, timeout: 90_000 }, () => {
  for (const attack of ['/%61dmin/users-e1', '//admin/users-e2', '/admin;/users-e3', '/admin;x=1/users-e4']) {
    test(`${attack} reaches the /admin/* guard`, async () => {
      const res = await raw(attack);
      assert.equal(res.status, 401, res.body);
      assert.equal(reached(up, attack.slice(-3)).length, 0);
    });
  }

  for (const [attack, why] of [
    ['/admin%2Fusers-e5', 'encoded "/" in the path is not allowed on this route'],
    ['/public/..%2Fapi/me-e6', 'dot segment next to an encoded "/" or "\\" in the path'],
    ['/public/..;/admin-e7', 'dot segment with ";" parameters in the path'],
    ['/public/a%zz-e8', 'malformed percent-escape in the path'],
  ] as const) {
    test(`${attack} is refused with 400`, async () => {
      const res = await raw(attack);
      assert.equal(res.status, 400, res.body);
      assert.equal(res.body, `bad request: ${why}\n`);
      assert.equal(reached(up, attack.slice(-3)).length, 0);
    });
  }

  test('the upstream gets the normal path the plugin saw', async () => {
    const res = await raw('/public/%7euser//a/b%3f-e9?x=1', ['X-Test-Verdict: info']);
    assert.equal(res.status, 200, res.body);
    const seen = res.echo();
    assert.equal(seen.url, '/public/~user/a/b%3F-e9?x=1');
    assert.equal((JSON.parse(String(seen.headers['x-seen-info'])) as { p: string }).p, '/public/~user/a/b%3F-e9');
  });
});

describe('the edge: upgrades, canonical headers, group keys', { concurrency: true, timeout: 90_000 }, () => {
  test('GET with Upgrade: foo is a normal request through on_response', async () => {
    const res = await raw('/public/u-e11', ['Connection: Upgrade', 'Upgrade: foo', 'X-Up-Headers: {"X-Internal":"secret"}', 'X-Test-Response: remove:X-Internal']);
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(res.header('x-internal'), []);
    assert.deepEqual(res.header('x-plugin-name'), ['fx']);
    assert.equal(res.echo().headers.upgrade, undefined);
  });

  test('a WebSocket upgrade the upstream answers without 101 goes through on_response', async () => {
    const res = await raw('/public/u-e12', ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==', 'X-Up-Headers: {"X-Internal":"secret"}', 'X-Test-Response: remove:X-Internal']);
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(res.header('x-internal'), []);
    assert.deepEqual(res.header('x-plugin-name'), ['fx']);
  });

  test("a plugin's x-user replaces the client's X-User for the next plugin", async () => {
    const res = await raw('/chain/p-e13', ['X-User: admin', 'X-Test-Verdict: header:x-user=alice@first;saw:X-User@second']);
    assert.equal(res.status, 200, res.body);
    assert.equal(res.echo().headers['x-saw-x-user'], 'alice');
    assert.equal(res.echo().headers['x-user'], 'alice');
  });

  test("the plugin's X-Tenant wins over the client's; an unknown key is a 503", async () => {
    const res = await raw('/tenants/g-e14', ['X-Tenant: b', 'X-Test-Verdict: header:X-Tenant=a']);
    assert.equal(res.status, 200, res.body);
    assert.equal(res.echo().upstream, 'tenant-a');
    assert.equal((await raw('/tenants/g-e15', ['X-Tenant: zzz'])).status, 503);
  });

  test('client headers with "_" are dropped before the plugins and the upstream', async () => {
    const res = await raw('/public/i-e16', ['x_user: root', 'X-Test-Verdict: saw:X_user']);
    assert.equal(res.echo().headers['x-saw-x_user'], '(absent)');
    assert.equal(res.echo().headers['x_user'], undefined);
  });
});
