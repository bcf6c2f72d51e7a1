/**
 * `GET /v1/hooks/ws` (docs/protocol.md §2): a WebSocket carrying binary messages
 * `[u32 big-endian call id][frame]` both ways, any number of calls in
 * flight; call id 0 is the runner's notices (`{state}` when the state
 * changes, `{error, id}` when a message could not be read). A link opened
 * with a key that expires is closed at expiry, and the key is refused
 * after.
 */

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { decodeHookResult, encodeFrame, encodeHookFrame, packValue } from '../../src/core/protocol/codec.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { getState, openLink, postFrames, type LinkMessage } from '../helpers/hook-api.ts';
import { waitFor } from '../helpers/http.ts';
import { AUTH_TS, EDGE_PLUGIN } from '../helpers/paths.ts';
import { KEY, runnerConfig, startRunner, type RunnerProcess } from '../helpers/processes.ts';
import { startRunnerInProcess } from '../helpers/runner.ts';
import { scope, suiteScope, tempDir } from '../helpers/scope.ts';

const notice = (m: LinkMessage) => m.id === 0;

describe('a hook link', () => {
  const s = suiteScope();
  let runner: RunnerProcess;
  let targetsFile: string;
  let config: Record<string, unknown>;
  const TEMP = 'temp-key-0123456789abcdef';

  before(async () => {
    const dir = tempDir(s);
    targetsFile = join(dir, 'targets.json');
    writeFileSync(targetsFile, JSON.stringify(['127.0.0.1:7001']));
    config = runnerConfig(
      {
        routes: [
          { id: 'api', match: { path: '/api/*' }, plugins: ['auth'], action: { type: 'static' } },
          { id: 'slow', match: { path: '/slow/*' }, plugins: ['fixture'], action: { type: 'static' } },
          { id: 'pool', match: { path: '/pool/*' }, balancer: {}, action: { type: 'proxy', upstream: 'http://{target}' } },
        ],
        plugins: {
          auth: { path: AUTH_TS, env: { HOOKGATE_AUTH_TOKENS: 'tok-alice:alice' } },
          fixture: { path: EDGE_PLUGIN, env: { FIXTURE_NAME: 'fx', FIXTURE_TARGETS_FILE: targetsFile, FIXTURE_PUSH_ROUTE: 'pool' } },
        },
      },
      { keys: [{ id: 'edge', secret: KEY }, { id: 'temp', secret: TEMP }] },
    );
    runner = await startRunner(s, config, { dir });
    await waitFor(async () => (await getState(runner.url, KEY)).json<{ targets: Record<string, unknown> }>().targets.pool, { what: 'the first push' });
  });

  async function version(): Promise<string> {
    return (await getState(runner.url, KEY)).json<{ version: string }>().version;
  }

  test('is told the current state version first, on call id 0', async () => {
    const link = await openLink(s, runner.url, KEY);
    const first = await link.next(() => true);
    assert.equal(first.id, 0);
    assert.deepEqual(first.value, { state: await version() });
  });

  test('answers several calls in flight, each with its own call id, as each finishes', async () => {
    const link = await openLink(s, runner.url, KEY);
    const BIG = 4_000_000_000; // above 2^31: the id is unsigned
    link.call(7, encodeHookFrame('on_request', { r: 'slow', m: 'GET', p: '/slow/400' }));
    link.call(3, encodeHookFrame('on_request', { r: 'api', m: 'GET', p: '/api/x' }));
    link.call(BIG, encodeHookFrame('on_request', { r: 'api', m: 'GET', p: '/api/x', h: { Authorization: 'Bearer tok-alice' } }));
    const [slow, denied, allowed] = await Promise.all([7, 3, BIG].map((id) => link.next((m) => m.id === id)));

    assert.deepEqual(decodeHookResult('on_request', slow.payload).h, { 'X-Fixture': 'fx', 'X-Slept': '400' });
    const d = decodeHookResult('on_request', denied.payload);
    assert.deepEqual({ ok: d.ok, s: d.s }, { ok: false, s: 401 });
    const a = decodeHookResult('on_request', allowed.payload);
    assert.deepEqual({ ok: a.ok, h: a.h }, { ok: true, h: { 'X-User': 'alice' } });

    const order = link.received.filter((m) => m.id !== 0).map((m) => m.id);
    assert.equal(order.at(-1), 7, `the slow call does not hold up the others (arrival order ${order.join(', ')})`);
  });

  test('a message that cannot be read gets an {error, id} notice on call id 0, and the link stays up', async () => {
    const link = await openLink(s, runner.url, KEY);
    await link.next(notice); // the state notice

    link.ws.send('hello');
    const text = await link.next((m) => notice(m) && (m.value as { error?: string }).error !== undefined);
    assert.match((text.value as { error: string }).error, /expected a binary message/);
    assert.equal((text.value as { id: number }).id, 0, 'no call id could be read');

    const bad: Array<[number, Uint8Array, RegExp]> = [
      [42, encodeFrame(packValue('not an envelope')), /envelope/],
      [43, new Uint8Array([0, 0, 0, 9, 1, 2]), /middle of a frame/],
      [44, Buffer.concat([encodeHookFrame('on_request', { r: 'api' }), encodeHookFrame('on_request', { r: 'api' })]), /exactly one frame/],
      [45, encodeHookFrame('on_request', { m: 'GET' }), /names no route/],
    ];
    for (const [id, frame] of bad) link.call(id, frame);
    for (const [id, , problem] of bad) {
      const n = await link.next((m) => notice(m) && (m.value as { id?: number }).id === id);
      assert.match((n.value as { error: string }).error, problem, `call ${id}`);
    }

    link.call(46, encodeHookFrame('on_request', { r: 'api', h: { Authorization: 'Bearer tok-alice' } }));
    const ok = await link.next((m) => m.id === 46);
    assert.equal(decodeHookResult('on_request', ok.payload).ok, true);
    assert.equal(link.ws.readyState, link.ws.OPEN);
  });

  test('a push of new targets sends a {state} notice with the new version', async () => {
    const link = await openLink(s, runner.url, KEY);
    const first = await link.next(notice);
    const old = (first.value as { state: string }).state;
    writeFileSync(targetsFile, JSON.stringify(['127.0.0.1:7002', '127.0.0.1:7003']));
    const n = await link.next((m) => notice(m) && typeof (m.value as { state?: string }).state === 'string' && (m.value as { state: string }).state !== old);
    const state = (n.value as { state: string }).state;
    assert.equal(state, await version(), 'the notice names the version GET /v1/state serves');
  });

  test('a link whose key is removed from the config is closed (4001) when the runner reloads; links with other keys stay up', async () => {
    const temp = await openLink(s, runner.url, TEMP);
    const steady = await openLink(s, runner.url, KEY);
    const from = runner.logs.length;
    runner.rewrite({ ...config, runner: { listen: '127.0.0.1:0', keys: [{ id: 'edge', secret: KEY }] } });
    await runner.waitForLog('config reloaded', { from });
    const closed = await temp.closed;
    assert.deepEqual({ code: closed.code, reason: closed.reason }, { code: 4001, reason: 'key revoked' });
    assert.equal((await postFrames(runner.url, TEMP, encodeHookFrame('on_request', { r: 'api' }))).status, 401);
    steady.call(9, encodeHookFrame('on_request', { r: 'api', h: { Authorization: 'Bearer tok-alice' } }));
    assert.equal(decodeHookResult('on_request', (await steady.next((m) => m.id === 9)).payload).ok, true);
  });
});

test('a link opened with a key that expires is closed with 4001 at expiry; the key gets 401 after, other keys are unaffected', async (t) => {
  const s = scope(t);
  // Expiry is the subject: the runner's wall clock is driven, so a slow start-up cannot eat the key's life.
  const clock = new FakeClock(Date.parse('2030-01-01T00:00:00Z'));
  const expiresAt = clock.now() + 60_000;
  const runner = await startRunnerInProcess(
    s,
    runnerConfig(
      { routes: [{ id: 'plain', action: { type: 'static' } }] },
      {
        keys: [
          { id: 'edge', secret: KEY },
          { id: 'soon', secret: 'soon-key-0123456789abcdef', expires_at: new Date(expiresAt).toISOString() },
        ],
      },
    ),
    { wallClock: clock },
  );
  const soon = await openLink(s, runner.url, 'soon-key-0123456789abcdef');
  const steady = await openLink(s, runner.url, KEY);
  soon.call(1, encodeHookFrame('on_request', { r: 'plain' }));
  assert.equal(decodeHookResult('on_request', (await soon.next((m) => m.id === 1)).payload).ok, true, 'the key works before expiry');

  clock.advance(expiresAt - 1 - clock.now());
  soon.call(2, encodeHookFrame('on_request', { r: 'plain' }));
  assert.equal(decodeHookResult('on_request', (await soon.next((m) => m.id === 2)).payload).ok, true, 'the link is still up 1 ms before expiry');

  clock.advance(1);
  const closed = await soon.closed;
  assert.equal(closed.code, 4001);
  assert.equal(closed.reason, 'key expired');
  assert.deepEqual(soon.received.filter((m) => m.id !== 0).map((m) => m.id), [1, 2], 'nothing more was answered on the expired link');

  const res = await postFrames(runner.url, 'soon-key-0123456789abcdef', encodeHookFrame('on_request', { r: 'plain' }));
  assert.equal(res.status, 401);
  const refused = await openLink(s, runner.url, 'soon-key-0123456789abcdef').then(
    () => 0,
    (e: { status?: number }) => e.status,
  );
  assert.equal(refused, 401);

  steady.call(3, encodeHookFrame('on_request', { r: 'plain' }));
  assert.equal(decodeHookResult('on_request', (await steady.next((m) => m.id === 3)).payload).ok, true, 'a link with another key stays up');
});
