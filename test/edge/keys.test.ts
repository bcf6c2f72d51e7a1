/**
 * The edge worker's RUNNER_KEY when the runner refuses it (wrong, expired,
 * or expiring while the edge runs): the edge answers 503 — "service
 * unavailable" when it has no routing state at all, the route's
 * `edge_on_error` when it has one — promptly, never hanging, and logs that
 * the runner refused the key so an operator can tell it from an outage.
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { sleep } from '../helpers/http.ts';
import { AUTH_TS } from '../helpers/paths.ts';
import { KEY, runnerConfig, startRunner, type RunnerProcess } from '../helpers/processes.ts';
import { suiteScope } from '../helpers/scope.ts';
import { assertWorkerBuilt, startEdge, type Edge, type EdgeLog } from './harness.ts';

const EXPIRED = 'expired-key-0123456789abcdef';
const SOON = 'soon-key-0123456789abcdef';
const alice = { authorization: 'Bearer tok-alice' };

function config(keys: unknown[]): Record<string, unknown> {
  return runnerConfig(
    {
      routes: [
        { id: 'health', match: { path: '/health' }, action: { type: 'static', body: 'ok\n' } },
        { id: 'api', match: { path: '/api/*' }, plugins: ['auth'], action: { type: 'static', body: 'api ok\n' } },
      ],
      plugins: { auth: { path: AUTH_TS, env: { HOOKGATE_AUTH_TOKENS: 'tok-alice:alice' } } },
    },
    { keys },
  );
}

const mentionsRefusedKey = (l: EdgeLog) => JSON.stringify(l).includes('refused RUNNER_KEY (401)');

before(() => assertWorkerBuilt());

describe('a key the runner does not accept, from the start', () => {
  const s = suiteScope();
  let runner: RunnerProcess;
  before(async () => {
    runner = await startRunner(
      s,
      config([
        { id: 'edge', secret: KEY },
        { id: 'old', secret: EXPIRED, expires_at: '2020-01-01T00:00:00Z' },
      ]),
    );
  });

  const cases: Array<[string, string]> = [
    ['a wrong key', 'wrong-key-0123456789abcdef'],
    ['an expired key', EXPIRED],
  ];
  for (const [what, key] of cases) {
    for (const transport of ['http', 'ws'] as const) {
      test(`${what} (${transport} transport): every route answers 503 at once, and the edge logs that the runner refused the key`, async () => {
        const edge = await startEdge(s, { runners: [runner.url], key, transport });
        for (const path of ['/health', '/api/me']) {
          const started = performance.now();
          const res = await edge.fetch(path, { headers: alice, timeoutMs: 5000 });
          const took = performance.now() - started;
          assert.equal(res.status, 503, `${path}: no routing state without a key the runner accepts`);
          assert.equal(res.text, 'service unavailable\n');
          assert.ok(took < 3000, `${path} answered in ${Math.round(took)} ms`);
        }
        assert.ok(edge.logs.some(mentionsRefusedKey), `logged: ${JSON.stringify(edge.logs)}`);
        assert.ok(edge.logs.some((l) => l.level === 'error' && l.msg.includes('no routing state')));
        await edge.dispose();
      });
    }
  }
});

describe('a key that expires while the edge runs', () => {
  const s = suiteScope();
  const edges = {} as Record<'http' | 'ws', Edge>;
  let expiresAt = 0;

  before(async () => {
    expiresAt = Date.now() + 4000;
    const runner = await startRunner(s, config([{ id: 'soon', secret: SOON, expires_at: new Date(expiresAt).toISOString() }]));
    for (const transport of ['http', 'ws'] as const) {
      const edge = (edges[transport] = await startEdge(s, { runners: [runner.url], key: SOON, transport, ttlMs: 200 }));
      const res = await edge.fetch('/api/me', { headers: alice });
      assert.equal(res.status, 200, `${transport}: the key works before it expires`);
    }
    assert.ok(Date.now() < expiresAt, 'the setup took longer than the key lived');
    await sleep(expiresAt - Date.now() + 300);
  });

  for (const transport of ['http', 'ws'] as const) {
    describe(`over the ${transport} transport`, () => {
      test('hooked routes get their edge_on_error verdict (503), promptly', async () => {
        const started = performance.now();
        const res = await edges[transport].fetch('/api/me', { headers: alice, timeoutMs: 5000 });
        assert.equal(res.status, 503);
        assert.equal(res.text, 'service unavailable\n');
        assert.ok(performance.now() - started < 3000);
      });

      test('routes without hooks are still served from the last good state', async () => {
        const res = await edges[transport].fetch('/health');
        assert.equal(res.status, 200);
        assert.equal(res.text, 'ok\n');
      });

      test(
        'the failed hook call is logged as a refused key, not as a runner failure',
        async () => {
          const edge = edges[transport];
          await edge.fetch('/api/me', { headers: alice }); // at least one hook call after expiry
          const failed = edge.logs.filter((l) => l.msg.includes('hook call failed at the edge'));
          assert.ok(failed.length > 0, `logged: ${JSON.stringify(edge.logs)}`);
          assert.ok(failed.every(mentionsRefusedKey), `the hook failures say why: ${JSON.stringify(failed.map((l) => l.err))}`);
        },
      );
    });
  }
});
