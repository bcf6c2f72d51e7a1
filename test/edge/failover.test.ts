/**
 * Runners that cannot be reached (src/edge/runners.ts, src/edge/hooks.ts):
 * a hooked route gets its `edge_on_error` verdict (deny 503
 * "service unavailable" by default, or the route's own status and body),
 * routes without hooks keep being served from the routing state the
 * isolate holds, and service comes back when a runner answers again. With
 * several runners, a dead one is skipped: the next one is tried, so no
 * request fails.
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { freePort, upgradeAnswer, waitFor } from '../helpers/http.ts';
import { AUTH_TS, EDGE_PLUGIN } from '../helpers/paths.ts';
import { runnerConfig, startRunner, type RunnerProcess } from '../helpers/processes.ts';
import { scope, suiteScope, tempDir } from '../helpers/scope.ts';
import { startUpstream, type EchoBody } from '../helpers/upstream.ts';
import { assertWorkerBuilt, startEdge, type Edge } from './harness.ts';

const alice = { authorization: 'Bearer tok-alice' };

function config(runnerListen?: string): Record<string, unknown> {
  return runnerConfig(
    {
      routes: [
        { id: 'health', match: { path: '/health' }, action: { type: 'static', body: 'ok\n' } },
        { id: 'api', match: { path: '/api/*' }, plugins: ['auth'], action: { type: 'static', body: 'api ok\n' } },
        {
          id: 'custom',
          match: { path: '/custom/*' },
          plugins: ['auth'],
          action: { type: 'static', body: 'custom ok\n' },
          edge_on_error: { status: 502, body: 'runners unreachable, try again soon\n' },
        },
      ],
      plugins: { auth: { path: AUTH_TS, env: { HOOKGATE_AUTH_TOKENS: 'tok-alice:alice' } } },
    },
    runnerListen ? { runnerListen } : {},
  );
}

before(() => assertWorkerBuilt());

for (const transport of ['http', 'ws'] as const) {
  test(`over the ${transport} transport, a killed runner gives hooked routes their edge_on_error verdict, and service returns when a runner starts again on the same port`, async (t) => {
    const s = scope(t);
    const dir = tempDir(s);
    const port = await freePort();
    const first = await startRunner(s, config(`127.0.0.1:${port}`), { dir });
    const edge = await startEdge(s, { runners: [first.url], transport, ttlMs: 200, hookTimeoutMs: 2000 });
    assert.equal((await edge.fetch('/api/me', { headers: alice })).text, 'api ok\n');

    await first.kill();

    const down = await edge.fetch('/api/me', { headers: alice });
    assert.equal(down.status, 503);
    assert.equal(down.text, 'service unavailable\n');
    const custom = await edge.fetch('/custom/me', { headers: alice });
    assert.equal(custom.status, 502, 'the route\'s own edge_on_error status');
    assert.equal(custom.text, 'runners unreachable, try again soon\n');
    const health = await edge.fetch('/health');
    assert.equal(health.status, 200, 'a route without hooks is served from the state the isolate holds');
    assert.equal(health.text, 'ok\n');
    assert.ok(
      edge.logs.some((l) => l.level === 'error' && l.msg.includes('applying edge_on_error') && l.route === 'api'),
      `the edge logs why: ${JSON.stringify(edge.logs)}`,
    );

    const second = await startRunner(s, config(`127.0.0.1:${port}`), { dir });
    assert.equal(second.url, first.url);
    const recovered = performance.now();
    await waitFor(async () => (await edge.fetch('/api/me', { headers: alice })).status === 200, { timeoutMs: 20_000, intervalMs: 100, what: 'the edge to reach the restarted runner' });
    t.diagnostic(`recovered ${Math.round(performance.now() - recovered)} ms after the runner was back`);
    assert.equal((await edge.fetch('/custom/me', { headers: alice })).text, 'custom ok\n');
    assert.equal((await edge.fetch('/api/me')).status, 401, 'the plugin answers again');
  });
}

describe('two runners with the same config, the first listed dead', () => {
  const s = suiteScope();
  let dead: RunnerProcess;
  let live: RunnerProcess;

  before(async () => {
    [dead, live] = await Promise.all([startRunner(s, config()), startRunner(s, config())]);
    await dead.kill();
  });

  for (const transport of ['http', 'ws'] as const) {
    test(`over the ${transport} transport, 50 sequential requests all succeed (the dead runner is skipped and retried)`, async () => {
      // RUNNER_DOWN_MS short: the dead runner is tried again and again, and every time the live one takes over.
      const edge = await startEdge(s, { runners: [dead.url, live.url], transport, downMs: 50 });
      const failures: string[] = [];
      for (let i = 0; i < 50; i++) {
        const res = i % 10 === 9 ? await edge.fetch(`/api/${i}`) : await edge.fetch(`/api/${i}`, { headers: alice });
        const expected = i % 10 === 9 ? 401 : 200; // 401: the plugin itself answered
        if (res.status !== expected) failures.push(`request ${i}: ${res.status} ${res.text.trim()}`);
        if (i % 7 === 0) await new Promise((r) => setTimeout(r, 20)); // let RUNNER_DOWN_MS pass now and then
      }
      assert.deepEqual(failures, []);
      await edge.dispose();
    });
  }
});

for (const transport of ['http', 'ws'] as const) {
  test(`over the ${transport} transport, a runner that stops answering (SIGSTOP) costs a hooked request HOOK_TIMEOUT_MS, not a hang; it serves again on SIGCONT`, async (t) => {
    const s = scope(t);
    const runner = await startRunner(s, config());
    const edge = await startEdge(s, { runners: [runner.url], transport, hookTimeoutMs: 1000, ttlMs: 60_000 });
    assert.equal((await edge.fetch('/api/me', { headers: alice })).status, 200);

    process.kill(runner.pid, 'SIGSTOP');
    s.defer(() => process.kill(runner.pid, 'SIGCONT')); // never leave it frozen (it could not stop)
    const started = performance.now();
    // Answered within 8 s, under the worker's default 10 s: the configured 1 s ended the call (with room for a loaded machine).
    const res = await edge.fetch('/api/me', { headers: alice, timeoutMs: 8000 });
    const took = performance.now() - started;
    assert.equal(res.status, 503);
    assert.equal(res.text, 'service unavailable\n');
    assert.ok(took >= 900, `answered after ${Math.round(took)} ms, before HOOK_TIMEOUT_MS (1000)`);

    process.kill(runner.pid, 'SIGCONT');
    await waitFor(async () => (await edge.fetch('/api/me', { headers: alice })).status === 200, { timeoutMs: 15_000, intervalMs: 100, what: 'the edge to be served again' });
  });
}

describe('edge_on_error when the failing hook call is on_response or on_connect (runner killed)', () => {
  const s = suiteScope();
  let edge: Edge;
  const custom = { status: 502, body: 'runners unreachable, try again soon\n' };

  before(async () => {
    const up = await startUpstream(s, { name: 'app', websocket: true });
    const proxy = { type: 'proxy', upstream: up.url };
    const runner = await startRunner(
      s,
      runnerConfig({
        routes: [
          { id: 'late', match: { path: '/late/*' }, plugins: ['responder'], action: proxy, edge_on_error: custom },
          { id: 'late-default', match: { path: '/late-default/*' }, plugins: ['responder'], action: proxy },
          { id: 'gated', match: { path: '/gated/*' }, plugins: ['gate'], action: proxy, edge_on_error: custom },
          { id: 'gated-default', match: { path: '/gated-default/*' }, plugins: ['gate'], action: proxy },
        ],
        plugins: {
          responder: { path: EDGE_PLUGIN, env: { FIXTURE_HOOKS: 'on_response' } },
          gate: { path: EDGE_PLUGIN, env: { FIXTURE_HOOKS: 'on_connect' } },
        },
      }),
    );
    edge = await startEdge(s, { runners: [runner.url], transport: 'http' });
    assert.equal((await edge.fetch('/late/x')).status, 200, 'served while the runner runs');
    assert.equal((await upgradeAnswer(`${edge.url}/gated/x`)).status, 101, 'upgraded while the runner runs');
    await runner.kill();
  });

  test('on_response, default: 503 "service unavailable"', async () => {
    const res = await edge.fetch('/late-default/x');
    assert.equal(res.status, 503);
    assert.equal(res.text, 'service unavailable\n');
  });

  test('on_response, the route\'s own edge_on_error: its status and body', async () => {
    const res = await edge.fetch('/late/x');
    assert.equal(res.status, custom.status);
    assert.equal(res.text, custom.body);
  });

  test('on_connect, default: the upgrade is answered 503 "service unavailable"', async () => {
    const res = await upgradeAnswer(`${edge.url}/gated-default/x`);
    assert.equal(res.status, 503);
    assert.equal(res.body, 'service unavailable\n');
  });

  test('on_connect, the route\'s own edge_on_error: its status and body', async () => {
    const res = await upgradeAnswer(`${edge.url}/gated/x`);
    assert.equal(res.status, custom.status);
    assert.equal(res.body, custom.body);
  });
});

test('with two healthy runners, hook calls are spread over both, round robin', async (t) => {
  const s = scope(t);
  const up = await startUpstream(s, { name: 'app' });
  const configOf = (name: string) =>
    runnerConfig({
      routes: [{ id: 'spread', match: { path: '/spread/*' }, plugins: ['fixture'], action: { type: 'proxy', upstream: up.url } }],
      plugins: { fixture: { path: EDGE_PLUGIN, env: { FIXTURE_NAME: name, FIXTURE_HOOKS: 'on_request' } } },
    });
  const [one, two] = await Promise.all([startRunner(s, configOf('one')), startRunner(s, configOf('two'))]);
  const edge = await startEdge(s, { runners: [one.url, two.url], transport: 'http', ttlMs: 600_000 });
  const counts: Record<string, number> = {};
  for (let i = 0; i < 20; i++) {
    const res = await edge.fetch(`/spread/${i}`);
    assert.equal(res.status, 200, res.text);
    const by = String(res.json<EchoBody>().headers['x-fixture']);
    counts[by] = (counts[by] ?? 0) + 1;
  }
  assert.deepEqual(Object.keys(counts).sort(), ['one', 'two'], `answered by ${JSON.stringify(counts)}`);
  assert.ok(Math.abs(counts.one - counts.two) <= 2, `evenly: ${JSON.stringify(counts)}`);
});
