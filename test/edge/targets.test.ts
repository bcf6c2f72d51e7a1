/**
 * Balancer targets pushed by a plugin (`set_targets`) reach the edge
 * worker's balancer without restarting anything: the runner's state version
 * changes; the edge notices on its next hook call (the reply's
 * `Hookgate-State` differs) or, on routes that make no hook calls, when its
 * STATE_TTL_MS has passed; it refreshes in the background and routes by the
 * new targets.
 */

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { getState } from '../helpers/hook-api.ts';
import { waitFor } from '../helpers/http.ts';
import { EDGE_PLUGIN } from '../helpers/paths.ts';
import { KEY, runnerConfig, startRunner, type RunnerProcess } from '../helpers/processes.ts';
import { suiteScope, tempDir } from '../helpers/scope.ts';
import { startUpstream, type EchoBody, type Upstream } from '../helpers/upstream.ts';
import { assertWorkerBuilt, startEdge, type Edge } from './harness.ts';

const s = suiteScope();
let runner: RunnerProcess;
let targetsFile: string;
const ups: Record<'a' | 'b' | 'c', Upstream> = {} as never;

before(async () => {
  assertWorkerBuilt();
  const dir = tempDir(s);
  targetsFile = join(dir, 'targets.json');
  for (const name of ['a', 'b', 'c'] as const) ups[name] = await startUpstream(s, { name });
  writeFileSync(targetsFile, JSON.stringify([ups.a.target]));
  const balanced = { balancer: { type: 'roundrobin' }, action: { type: 'proxy', upstream: 'http://{target}' } };
  runner = await startRunner(
    s,
    runnerConfig({
      routes: [
        // Its plugin declares on_request: every request makes a hook call.
        { id: 'hooked', match: { path: '/hooked/*' }, plugins: ['pusher'], ...balanced },
        // No plugins: no hook calls, only the TTL brings news.
        { id: 'quiet', match: { path: '/quiet/*' }, ...balanced },
      ],
      plugins: {
        pusher: { path: EDGE_PLUGIN, env: { FIXTURE_HOOKS: 'on_request', FIXTURE_TARGETS_FILE: targetsFile, FIXTURE_PUSH_ROUTE: '*' } },
      },
    }),
    { dir },
  );
  await waitFor(async () => (await getState(runner.url, KEY)).json<{ targets: Record<string, unknown> }>().targets.quiet, { what: 'the first push' });
});

async function servedBy(edge: Edge, path: string): Promise<string> {
  const res = await edge.fetch(path);
  assert.equal(res.status, 200, res.text);
  return res.json<EchoBody>().upstream;
}

/** Pushes `targets` (the fixture reads the file) and waits until the runner serves them. */
async function push(...targets: Upstream[]): Promise<void> {
  writeFileSync(targetsFile, JSON.stringify(targets.map((u) => u.target)));
  await waitFor(
    async () => {
      const snap = (await getState(runner.url, KEY)).json<{ targets: Record<string, { targets: string[] }> }>();
      return JSON.stringify(snap.targets.quiet?.targets) === JSON.stringify(targets.map((u) => u.target));
    },
    { what: 'the runner to take the push' },
  );
}

for (const transport of ['http', 'ws'] as const) {
  test(`over the ${transport} transport, a push reaches the edge's balancer through the next hook call's Hookgate-State (TTL far away)`, async () => {
    const edge = await startEdge(s, { runners: [runner.url], transport, ttlMs: 600_000 });
    const first = await servedBy(edge, '/hooked/x');
    const next = first === 'b' ? ups.c : ups.b;
    await push(next);
    // The first hook call after the push carries the new version; the refresh runs in the background.
    const seen = await waitFor(async () => (await servedBy(edge, '/hooked/x')) === next.name && true, { what: `requests to be served by ${next.name}` });
    assert.ok(seen);
    for (let i = 0; i < 5; i++) assert.equal(await servedBy(edge, '/hooked/x'), next.name, 'and only by the new target');
    await edge.dispose();
  });
}

test('on a route without hook calls, a push reaches the edge once STATE_TTL_MS has passed', async () => {
  const edge = await startEdge(s, { runners: [runner.url], transport: 'http', ttlMs: 200 });
  const first = await servedBy(edge, '/quiet/x');
  const next = first === 'a' ? ups.b : ups.a;
  await push(next);
  // No hook call carries the new version here: only the TTL's state check can bring it (within waitFor's bound, not a wall-time budget).
  await waitFor(async () => (await servedBy(edge, '/quiet/x')) === next.name, { intervalMs: 50, what: `requests to be served by ${next.name}` });
  await edge.dispose();
});

test('a balancer emptied by a push answers 503 at the edge, and the next push fills it again', async () => {
  const edge = await startEdge(s, { runners: [runner.url], transport: 'http', ttlMs: 100 });
  await push();
  await waitFor(async () => (await edge.fetch('/quiet/x')).status === 503, { what: 'the edge to see the empty balancer' });
  const res = await edge.fetch('/quiet/x');
  assert.equal(res.text, 'no upstream target available\n');
  await push(ups.c);
  await waitFor(async () => (await edge.fetch('/quiet/x')).status === 200, { what: 'the edge to see the new target' });
  assert.equal(await servedBy(edge, '/quiet/x'), 'c');
  await edge.dispose();
});
