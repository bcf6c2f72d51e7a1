/**
 * The edge worker's verdict cache (src/core/gateway/verdict-cache.ts in front of
 * src/edge/hooks.ts), in Miniflare against a real runner: the runner says
 * in `/v1/state` which routes' merged verdicts may be cached and how, and
 * the isolate then answers repeated requests itself, also once its runner
 * is gone. A route with a binding that does not cache is always asked.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getState } from '../helpers/hook-api.ts';
import { AUTH_TS, EDGE_PLUGIN } from '../helpers/paths.ts';
import { KEY, runnerConfig, startRunner } from '../helpers/processes.ts';
import { scope } from '../helpers/scope.ts';
import { assertWorkerBuilt, startEdge } from './harness.ts';

const alice = { authorization: 'Bearer tok-alice' };

test('the edge serves cached verdicts with its runner stopped, on routes whose every binding caches, and asks for the rest', async (t) => {
  assertWorkerBuilt();
  const s = scope(t);
  const runner = await startRunner(
    s,
    runnerConfig({
      routes: [
        { id: 'api', match: { path: '/api/*' }, plugins: ['auth'], action: { type: 'static', body: 'api ok\n' } },
        { id: 'mixed', match: { path: '/mixed/*' }, plugins: ['auth', 'fx'], action: { type: 'static', body: 'mixed ok\n' } },
      ],
      plugins: {
        auth: { path: AUTH_TS, env: { HOOKGATE_AUTH_TOKENS: 'tok-alice:alice,tok-bob:bob' }, cache: { ttl: '1h', negative_ttl: '1h', stale_if_error: '1m', key: ['header:Authorization'] } },
        fx: { path: EDGE_PLUGIN, env: { FIXTURE_NAME: 'fx', FIXTURE_HOOKS: 'on_request' } },
      },
    }),
  );

  const state = (await getState(runner.url, KEY)).json<{ cache?: Record<string, unknown> }>();
  assert.deepEqual(state.cache, {
    api: { ttl: 3_600_000, negative_ttl: 3_600_000, stale_if_error: 60_000, key: ['header:Authorization'], max_entries: 10_000, generation: (state.cache?.api as { generation: string }).generation },
  }, 'only the route whose every binding caches is in the state');

  const edge = await startEdge(s, { runners: [runner.url], transport: 'http', hookTimeoutMs: 2000 });
  assert.equal((await edge.fetch('/api/me', { headers: alice })).text, 'api ok\n');
  assert.equal((await edge.fetch('/api/me')).status, 401);
  assert.equal((await edge.fetch('/mixed/me', { headers: alice })).text, 'mixed ok\n');

  await runner.stop();

  const hit = await edge.fetch('/api/me', { headers: alice });
  assert.equal(hit.status, 200, 'a cached allow, with no runner to ask');
  assert.equal(hit.text, 'api ok\n');
  assert.equal((await edge.fetch('/api/elsewhere', { headers: alice })).status, 200, 'the key is the Authorization header alone');
  assert.equal((await edge.fetch('/api/me')).status, 401, 'a cached deny (negative_ttl)');
  const bob = await edge.fetch('/api/me', { headers: { authorization: 'Bearer tok-bob' } });
  assert.equal(bob.status, 503, 'a key never seen gets edge_on_error');
  assert.equal((await edge.fetch('/mixed/me', { headers: alice })).status, 503, 'a route with a binding that does not cache is always asked');
});
