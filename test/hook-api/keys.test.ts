/**
 * The hook API's keys (docs/protocol.md §2): every call carries
 * `Authorization: Bearer <key>`; a missing, unknown or expired key gets 401
 * and no other information, on every endpoint. Every reply, the 401s
 * included, carries `Hookgate-State`. (That keys are compared in constant
 * time is not observable from here.)
 */

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { encodeHookFrame } from '../../src/core/protocol/codec.ts';
import { getState, openLink, postFrames } from '../helpers/hook-api.ts';
import { KEY, runnerConfig, startRunner, type RunnerProcess } from '../helpers/processes.ts';
import { suiteScope } from '../helpers/scope.ts';

const EXPIRED = 'expired-key-0123456789abcdef';

const s = suiteScope();
let runner: RunnerProcess;
/** the runner's state version */
let version: string;

before(async () => {
  runner = await startRunner(
    s,
    runnerConfig(
      { routes: [{ id: 'plain', action: { type: 'static', body: 'ok\n' } }] },
      {
        keys: [
          { id: 'edge', secret: KEY },
          { id: 'old', secret: EXPIRED, expires_at: '2020-01-01T00:00:00Z' },
        ],
      },
    ),
    { ready: false },
  );
  const res = await getState(runner.url, KEY);
  assert.equal(res.status, 200);
  version = res.json<{ version: string }>().version;
});

test('a valid key is answered, and the reply carries Hookgate-State', async () => {
  const hooks = await postFrames(runner.url, KEY, encodeHookFrame('on_request', { r: 'plain', m: 'GET', p: '/' }));
  assert.equal(hooks.status, 200);
  assert.equal(hooks.headers.get('hookgate-state'), version);
  const state = await getState(runner.url, KEY);
  assert.equal(state.status, 200);
  assert.equal(state.headers.get('hookgate-state'), version);
});

const credentials: Array<[string, string | undefined]> = [
  ['a missing key', undefined],
  ['an unknown key', `Bearer unknown-key-0123456789abcdef`],
  ['an expired key', `Bearer ${EXPIRED}`],
  ['a valid key in another scheme', `Basic ${KEY}`],
  ['a bearer without a key', 'Bearer '],
];

for (const [what, authorization] of credentials) {
  describe(`${what}`, () => {
    test('gets a bare 401 from POST /v1/hooks, with Hookgate-State', async () => {
      const res = await postFrames(runner.url, null, encodeHookFrame('on_request', { r: 'plain' }), authorization === undefined ? {} : { authorization });
      assert.equal(res.status, 401);
      assert.equal(res.body.length, 0, `the 401 says nothing more, got ${JSON.stringify(res.text())}`);
      assert.equal(res.headers.get('hookgate-state'), version);
    });

    test('gets a bare 401 from GET /v1/state, with Hookgate-State', async () => {
      const res = await fetch(`${runner.url}/v1/state`, { headers: authorization === undefined ? {} : { authorization } });
      const body = await res.text();
      assert.equal(res.status, 401);
      assert.equal(body, '');
      assert.equal(res.headers.get('hookgate-state'), version);
      assert.equal(res.headers.get('etag'), null, 'no hint of the state beyond its version header');
    });

    test('gets a 401 instead of a WebSocket from GET /v1/hooks/ws, with Hookgate-State', async () => {
      const err = await openLink(s, runner.url, null, authorization === undefined ? {} : { authorization }).then(
        () => null,
        (e: Error & { status?: number; headers?: Record<string, string> }) => e,
      );
      assert.ok(err, 'the upgrade must be refused');
      assert.equal(err.status, 401);
      assert.equal(err.headers?.['hookgate-state'], version);
    });
  });
}

test('an unknown key on an unknown path still gets 401, not 404 (no information before the key is checked)', async () => {
  const res = await fetch(`${runner.url}/v1/nothing-here`, { headers: { authorization: 'Bearer unknown-key-0123456789abcdef' } });
  assert.equal(res.status, 401);
  assert.equal(await res.text(), '');
});

test('with a valid key, even a path that does not exist answers with Hookgate-State', async () => {
  const res = await fetch(`${runner.url}/v1/nothing-here`, { headers: { authorization: `Bearer ${KEY}` } });
  assert.equal(res.status, 404);
  await res.body?.cancel();
  assert.equal(res.headers.get('hookgate-state'), version);
});
