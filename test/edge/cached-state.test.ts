/**
 * The last good routing state in the Cache API (src/edge/state-cache.ts):
 * every state an isolate loads is saved there, so that a fresh isolate
 * that cannot reach any runner still routes. Miniflare persists the Cache
 * API under `resourcePersistencePath`: a second Miniflare on the same
 * directory is a new isolate (a new workerd process) with the same cache.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AUTH_TS } from '../helpers/paths.ts';
import { runnerConfig, startRunner } from '../helpers/processes.ts';
import { scope, tempDir } from '../helpers/scope.ts';
import { startUpstream, type EchoBody } from '../helpers/upstream.ts';
import { assertWorkerBuilt, startEdge } from './harness.ts';

test('a fresh isolate that reaches no runner routes by the last good state from the cache: routes without hooks are served, hooked routes get edge_on_error', async (t) => {
  assertWorkerBuilt();
  const s = scope(t);
  const persist = tempDir(s, 'hookgate-edge-cache-');
  const app = await startUpstream(s, { name: 'app' });
  const runner = await startRunner(
    s,
    runnerConfig({
      routes: [
        { id: 'health', match: { path: '/health' }, action: { type: 'static', body: 'ok\n' } },
        { id: 'app', match: { path: '/app/*' }, action: { type: 'proxy', upstream: app.url } },
        { id: 'api', match: { path: '/api/*' }, plugins: ['auth'], action: { type: 'static', body: 'api ok\n' } },
      ],
      plugins: { auth: { path: AUTH_TS } },
    }),
  );

  const first = await startEdge(s, { runners: [runner.url], transport: 'http', persistDir: persist });
  assert.equal((await first.fetch('/health')).status, 200, 'the first isolate loads the state from the runner');
  await first.dispose();
  await runner.stop();

  const second = await startEdge(s, { runners: [runner.url], transport: 'http', persistDir: persist, hookTimeoutMs: 2000 });
  const health = await second.fetch('/health');
  assert.equal(health.status, 200);
  assert.equal(health.text, 'ok\n');
  const proxied = await second.fetch('/app/page');
  assert.equal(proxied.status, 200, 'a proxy route to a live upstream is served');
  assert.equal(proxied.json<EchoBody>().url, '/app/page');
  const hooked = await second.fetch('/api/me', { headers: { authorization: 'Bearer demo-token' } });
  assert.equal(hooked.status, 503, 'no runner to ask: the route\'s edge_on_error');
  assert.equal(hooked.text, 'service unavailable\n');
  assert.ok(
    second.logs.some((l) => l.msg.includes('routing by the last good state from the cache')),
    `the edge says where its state came from: ${JSON.stringify(second.logs)}`,
  );

  // Control: the same, without the cache, has no state at all.
  const bare = await startEdge(s, { runners: [runner.url], transport: 'http', persistDir: tempDir(s, 'hookgate-edge-cache-') });
  const none = await bare.fetch('/health');
  assert.equal(none.status, 503);
  assert.equal(none.text, 'service unavailable\n');
});
