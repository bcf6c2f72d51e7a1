/**
 * The edge worker's settings (src/edge/worker.ts header): a worker deployed
 * with a missing or malformed setting answers every request 503 "service
 * unavailable" and logs what is wrong and what to set, rather than
 * failing in some less obvious way.
 */

import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { runnerConfig, startRunner, type RunnerProcess } from '../helpers/processes.ts';
import { suiteScope } from '../helpers/scope.ts';
import { assertWorkerBuilt, startEdge } from './harness.ts';

const s = suiteScope();
let runner: RunnerProcess;

before(async () => {
  assertWorkerBuilt();
  runner = await startRunner(s, runnerConfig({ routes: [{ id: 'health', match: { path: '/health' }, action: { type: 'static', body: 'ok\n' } }] }));
});

const cases: Array<[string, Record<string, string>, RegExp]> = [
  ['RUNNER_URL unset', { RUNNER_URL: '' }, /RUNNER_URL is not set/],
  ['RUNNER_KEY unset', { RUNNER_KEY: '' }, /RUNNER_KEY is not set/],
  ['HOOK_TRANSPORT neither http nor ws', { HOOK_TRANSPORT: 'carrier-pigeon' }, /HOOK_TRANSPORT: expected "http" or "ws", got "carrier-pigeon"/],
  ['STATE_TTL_MS not a number', { STATE_TTL_MS: 'soon' }, /STATE_TTL_MS: expected a number of milliseconds, got "soon"/],
];

for (const [what, bindings, problem] of cases) {
  test(`${what}: every request gets 503, and the worker logs what to fix`, async () => {
    const edge = await startEdge(s, { runners: [runner.url], transport: 'http', bindings });
    const res = await edge.fetch('/health', { timeoutMs: 30_000 });
    assert.equal(res.status, 503);
    assert.equal(res.text, 'service unavailable\n');
    assert.ok(
      edge.logs.some((l) => l.level === 'error' && problem.test(l.msg)),
      `logged: ${JSON.stringify(edge.logs)}`,
    );
    await edge.dispose();
  });
}

test('with valid settings the same worker serves', async () => {
  const edge = await startEdge(s, { runners: [`${runner.url}/`], transport: 'http' });
  const res = await edge.fetch('/health');
  assert.equal(res.status, 200, 'a trailing slash on RUNNER_URL is fine');
  assert.equal(res.text, 'ok\n');
  await edge.dispose();
});
