/**
 * The edge worker's RUNNER_KEY when the runner refuses it (wrong, expired,
 * or expiring while the edge runs): the edge answers 503 — "service
 * unavailable" when it has no routing state at all, the route's
 * `edge_on_error` when it has one — promptly, never hanging, and logs that
 * the runner refused the key so an operator can tell it from an outage.
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { FakeClock } from '../helpers/fake-clock.ts';
import { waitFor } from '../helpers/http.ts';
import { AUTH_TS } from '../helpers/paths.ts';
import { KEY, runnerConfig, startRunner, type RunnerProcess } from '../helpers/processes.ts';
import { startRunnerInProcess } from '../helpers/runner.ts';
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

/**
 * "Promptly" is against the edge's hook deadline (HOOK_TIMEOUT_MS, which
 * also bounds its state fetch): with a 60 s deadline, an answer within 30 s
 * did not wait for it, however slow the machine.
 */
const HOOK_TIMEOUT_MS = 60_000;
const PROMPT_MS = HOOK_TIMEOUT_MS / 2;

/**
 * The worker's log lines matching `pred`, once there is one (they reach us
 * on their own path, maybe after its answer); `poke` runs before each look.
 */
async function logged(edge: Edge, pred: (l: EdgeLog) => boolean, what: string, poke?: () => Promise<unknown>): Promise<EdgeLog[]> {
  const seen = async () => {
    await poke?.();
    return edge.logs.some(pred);
  };
  await waitFor(seen, { what }).catch((err: Error) => {
    throw new Error(`${err.message}; logged: ${JSON.stringify(edge.logs)}`);
  });
  return edge.logs.filter(pred);
}

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
        const edge = await startEdge(s, { runners: [runner.url], key, transport, hookTimeoutMs: HOOK_TIMEOUT_MS });
        for (const path of ['/health', '/api/me']) {
          const res = await edge.fetch(path, { headers: alice, timeoutMs: PROMPT_MS });
          assert.equal(res.status, 503, `${path}: no routing state without a key the runner accepts`);
          assert.equal(res.text, 'service unavailable\n');
        }
        await logged(edge, mentionsRefusedKey, 'a log line saying the runner refused the key');
        await logged(edge, (l) => l.level === 'error' && l.msg.includes('no routing state'), 'the "no routing state" error');
        await edge.dispose();
      });
    }
  }
});

describe('a key that expires while the edge runs', () => {
  const s = suiteScope();
  const edges = {} as Record<'http' | 'ws', Edge>;

  before(async () => {
    // The runner's wall clock is driven: the key expires when the edges are up and have used it, not after a real 4 s.
    const clock = new FakeClock(Date.parse('2030-01-01T00:00:00Z'));
    const expiresAt = clock.now() + 60_000;
    const runner = await startRunnerInProcess(s, config([{ id: 'soon', secret: SOON, expires_at: new Date(expiresAt).toISOString() }]), { wallClock: clock });
    for (const transport of ['http', 'ws'] as const) {
      const edge = (edges[transport] = await startEdge(s, { runners: [runner.url], key: SOON, transport, ttlMs: 200, hookTimeoutMs: HOOK_TIMEOUT_MS }));
      const res = await edge.fetch('/api/me', { headers: alice });
      assert.equal(res.status, 200, `${transport}: the key works before it expires`);
    }
    clock.advance(expiresAt - clock.now());
  });

  for (const transport of ['http', 'ws'] as const) {
    describe(`over the ${transport} transport`, () => {
      test('hooked routes get their edge_on_error verdict (503), promptly', async () => {
        const res = await edges[transport].fetch('/api/me', { headers: alice, timeoutMs: PROMPT_MS });
        assert.equal(res.status, 503);
        assert.equal(res.text, 'service unavailable\n');
      });

      test('routes without hooks are still served from the last good state', async () => {
        const edge = edges[transport];
        // A request past STATE_TTL_MS starts a state check; wait until one has been refused.
        const refusedCheck = (l: EdgeLog) => l.msg.includes('cannot refresh the routing state') && mentionsRefusedKey(l);
        await logged(edge, refusedCheck, 'a state check with the expired key to be refused', () => edge.fetch('/health'));
        const res = await edge.fetch('/health');
        assert.equal(res.status, 200);
        assert.equal(res.text, 'ok\n');
      });

      test(
        'the failed hook call is logged as a refused key, not as a runner failure',
        async () => {
          const edge = edges[transport];
          await edge.fetch('/api/me', { headers: alice }); // at least one hook call after expiry
          const failed = await logged(edge, (l) => l.msg.includes('hook call failed at the edge'), 'a logged hook failure');
          assert.ok(failed.every(mentionsRefusedKey), `the hook failures say why: ${JSON.stringify(failed.map((l) => l.err))}`);
        },
      );
    });
  }
});
