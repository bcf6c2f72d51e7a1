/**
 * `POST /v1/hooks` (docs/protocol.md §2): a body of one or more hook frames,
 * each the §1 envelope naming its route; the reply has one result frame per
 * request frame, in order, each the merged verdict of the route's plugins
 * with `on_error` already applied. Real runner, real plugin processes (the
 * example auth plugin and the SDK fixture).
 */

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { FRAMES_TYPE } from '../../node-runner/hook-api/hook-api.ts';
import { decodeFrames, decodeHookResult, encodeEnvelopeFrame, encodeFrame, encodeHookData, encodeHookFrame, packValue, unpackValue } from '../../src/core/protocol/codec.ts';
import { getState, postFrames } from '../helpers/hook-api.ts';
import { waitFor } from '../helpers/http.ts';
import { AUTH_TS, EDGE_PLUGIN } from '../helpers/paths.ts';
import { KEY, readJsonLines, runnerConfig, startRunner, type RunnerProcess } from '../helpers/processes.ts';
import { requestInfo } from '../helpers/protocol.ts';
import { suiteScope, tempDir } from '../helpers/scope.ts';

const s = suiteScope();
let runner: RunnerProcess;
let record: string;

before(async () => {
  const dir = tempDir(s);
  record = join(dir, 'disconnects.jsonl');
  const action = { type: 'static', body: 'ok\n' };
  runner = await startRunner(
    s,
    runnerConfig({
      routes: [
        { id: 'api', match: { path: '/api/*' }, plugins: ['auth', 'fixture'], action },
        { id: 'guarded', match: { path: '/guarded/*' }, plugins: ['fixture'], action },
        { id: 'strict', match: { path: '/strict/*' }, plugin_timeout: '300ms', plugins: ['fixture'], action },
        { id: 'lenient', match: { path: '/lenient/*' }, plugin_timeout: '300ms', plugins: [{ plugin: 'fixture', on_error: 'allow' }], action },
        { id: 'patient', match: { path: '/patient/*' }, plugin_timeout: '30s', plugins: ['fixture'], action },
      ],
      plugins: {
        auth: { path: AUTH_TS, env: { HOOKGATE_AUTH_TOKENS: 'tok-alice:alice' } },
        fixture: { path: EDGE_PLUGIN, env: { FIXTURE_NAME: 'fx', FIXTURE_RECORD: record, FIXTURE_REFUSE_CONNECT: 'guarded' } },
      },
    }),
    { dir },
  );
});

async function version(): Promise<string> {
  return (await getState(runner.url, KEY)).json<{ version: string }>().version;
}

test('a batch gets one result frame per request frame, in order, each the merged verdict of the route', async () => {
  const res = await postFrames(runner.url, KEY, [
    encodeHookFrame('on_request', { r: 'api', m: 'GET', p: '/api/me', h: { Authorization: 'Bearer tok-alice' } }),
    encodeHookFrame('on_request', { r: 'api', m: 'GET', p: '/api/me', h: {} }),
    encodeHookFrame('on_response', { req: requestInfo({ r: 'api', m: 'GET', p: '/api/teapot' }), resp: { s: 200, h: { 'X-Upstream-Secret': 's3cret' } } }),
    encodeHookFrame('on_connect', { r: 'api', a: '192.0.2.1:1234' }),
    encodeHookFrame('on_connect', { r: 'guarded', a: '192.0.2.1:1234' }),
    encodeHookFrame('on_disconnect', { r: 'api', tg: '10.0.0.1:80', a: '192.0.2.1:1234', rx: 11, tx: 22, ms: 333 }),
  ]);
  assert.equal(res.status, 200, res.text());
  assert.equal(res.headers.get('content-type'), FRAMES_TYPE);
  assert.equal(res.headers.get('hookgate-state'), await version());
  const results = decodeFrames(res.body);
  assert.equal(results.length, 6);

  const allowed = decodeHookResult('on_request', results[0]);
  assert.equal(allowed.ok, true);
  assert.deepEqual(allowed.h, { 'X-User': 'alice', 'X-Fixture': 'fx' }, 'both plugins ran; their headers merged');
  assert.equal(allowed.e, '');

  const denied = decodeHookResult('on_request', results[1]);
  assert.equal(denied.ok, false);
  assert.equal(denied.s, 401);
  assert.equal(denied.b, 'unauthorized\n');
  assert.deepEqual(denied.h, { 'Www-Authenticate': 'Bearer' }, 'the first deny short-circuits: the fixture added nothing');
  assert.equal(denied.e, '', 'a plugin deny is not a failure');

  const mod = decodeHookResult('on_response', results[2]);
  assert.deepEqual({ s: mod.s, h: mod.h, rm: mod.rm, e: mod.e }, { s: 418, h: { 'X-Fixture-Response': 'fx' }, rm: ['X-Upstream-Secret'], e: '' });

  assert.deepEqual(decodeHookResult('on_connect', results[3]), { ok: true, e: '', s: 0, b: '' });
  assert.deepEqual(decodeHookResult('on_connect', results[4]), { ok: false, e: '', s: 0, b: '' }, 'the fixture refuses "guarded"');

  assert.deepEqual(unpackValue(results[5]), {}, 'on_disconnect gets an empty result');
  const [seen] = await waitFor(() => readJsonLines(record).length > 0 && readJsonLines(record), { what: 'the fixture to record the on_disconnect' });
  assert.deepEqual(seen, { plugin: 'fx', r: 'api', tg: '10.0.0.1:80', a: '192.0.2.1:1234', rx: 11, tx: 22, ms: 333 }, 'the plugin got the data as sent');
});

test("a plugin that does not answer within the route's plugin_timeout gets the binding's on_error verdict", async () => {
  // The frame that is answered has a route with a 30 s plugin_timeout: on a
  // loaded machine a prompt answer can take longer than 300 ms. The batch
  // ending at all (postFrames gives up after 15 s) shows the timeout bounds the hung frames.
  const res = await postFrames(runner.url, KEY, [
    encodeHookFrame('on_request', { r: 'strict', m: 'GET', p: '/strict/hang' }),
    encodeHookFrame('on_request', { r: 'lenient', m: 'GET', p: '/lenient/hang' }),
    encodeHookFrame('on_request', { r: 'patient', m: 'GET', p: '/patient/fine' }),
  ]);
  assert.equal(res.status, 200);
  const [strict, lenient, fine] = decodeFrames(res.body).map((p) => decodeHookResult('on_request', p));

  assert.equal(strict.ok, false, 'on_error deny (the default)');
  assert.equal(strict.s, 503);
  assert.match(strict.e, /fixture/, 'e says which plugin failed');

  assert.equal(lenient.ok, true, 'on_error allow skips the plugin');
  assert.equal(lenient.e, '');
  assert.equal(lenient.nc, true, 'a verdict with a skipped failure is marked not cacheable (nc) for the edge');

  assert.equal(fine.ok, true, 'the other frames of the batch are unaffected');
  assert.deepEqual(fine.h, { 'X-Fixture': 'fx' });
});

test('a frame for a route the runner does not know gets a failure verdict saying so (the caller routes by stale state)', async () => {
  const res = await postFrames(runner.url, KEY, [
    encodeHookFrame('on_request', { r: 'nope', m: 'GET', p: '/' }),
    encodeHookFrame('on_response', { req: requestInfo({ r: 'nope' }), resp: { s: 200, h: {} } }),
    encodeHookFrame('on_connect', { r: 'nope' }),
  ]);
  assert.equal(res.status, 200);
  const [req, resp, conn] = decodeFrames(res.body);
  const verdict = decodeHookResult('on_request', req);
  assert.equal(verdict.ok, false);
  assert.equal(verdict.s, 503);
  assert.match(verdict.e, /unknown route "nope"/);
  const mod = decodeHookResult('on_response', resp);
  assert.equal(mod.s, 503);
  assert.match(mod.e, /unknown route "nope"/);
  const c = decodeHookResult('on_connect', conn);
  assert.equal(c.ok, false);
  assert.match(c.e, /unknown route "nope"/);
});

describe('a body that cannot be read gets 400 with a JSON error naming the problem', () => {
  const good = () => encodeHookFrame('on_request', { r: 'api', m: 'GET', p: '/' });
  const cases: Array<[string, () => Uint8Array | Uint8Array[], RegExp]> = [
    ['an empty body', () => new Uint8Array(0), /no frames/],
    ['a frame cut short', () => new Uint8Array([0, 0, 0, 10, 0x82, 0xa1]), /middle of a frame/],
    ['a payload that is not an envelope', () => encodeFrame(packValue('hello')), /^frame 0: envelope/],
    ['an unknown hook type', () => encodeEnvelopeFrame(9 as never, encodeHookData('on_request', { r: 'api' })), /^frame 0: unknown hook type 9/],
    ['hook data with a field of the wrong type', () => encodeEnvelopeFrame(1, packValue({ r: 'api', m: 5 })), /^frame 0: on_request\.m: expected a string/],
    ['hook data that names no route', () => encodeHookFrame('on_request', { m: 'GET', p: '/' }), /^frame 0: on_request: the data names no route/],
    ['a bad frame after a good one (the index says which)', () => [good(), encodeFrame(packValue([1, 2]))], /^frame 1: envelope/],
  ];
  for (const [what, body, problem] of cases) {
    test(what, async () => {
      const res = await postFrames(runner.url, KEY, body());
      assert.equal(res.status, 400, res.text());
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
      assert.ok(res.headers.get('hookgate-state'));
      assert.match(res.json().error, problem);
    });
  }
});

test('a body sent with another Content-Type gets 400 naming the expected one', async () => {
  const res = await postFrames(runner.url, KEY, encodeHookFrame('on_request', { r: 'api' }), { contentType: 'application/octet-stream' });
  assert.equal(res.status, 400);
  assert.match(res.json().error, /application\/vnd\.hookgate\.frames/);
  assert.ok(res.headers.get('hookgate-state'));
});

test('a frame over 1 MiB gets 413', async () => {
  const payload = new Uint8Array(1_048_577);
  const frame = new Uint8Array(4 + payload.length);
  new DataView(frame.buffer).setUint32(0, payload.length);
  const res = await postFrames(runner.url, KEY, frame);
  assert.equal(res.status, 413, res.text());
  assert.match(res.json().error, /1048577 bytes.*limit of 1048576/);
  assert.ok(res.headers.get('hookgate-state'));
});

test('a frame of exactly 1 MiB is not refused for its size', async () => {
  // A valid on_request frame padded (in a header) to a payload of exactly 1,048,576 bytes.
  const frameOf = (pad: number) => encodeHookFrame('on_request', { r: 'guarded', m: 'GET', p: '/', h: { 'X-Pad': 'x'.repeat(pad) } });
  const probe = frameOf(1_000_000).length - 4;
  const frame = frameOf(1_000_000 + 1_048_576 - probe);
  assert.equal(frame.length - 4, 1_048_576);
  const res = await postFrames(runner.url, KEY, frame);
  assert.equal(res.status, 200, res.text());
  const verdict = decodeHookResult('on_request', decodeFrames(res.body)[0]);
  assert.deepEqual({ ok: verdict.ok, e: verdict.e }, { ok: true, e: '' }, 'and the plugin got it too');
});

test('a batch over 16 MiB gets 413', async () => {
  // 17 frames just under 1 MiB each: every frame is fine, the batch is not.
  const frame = encodeEnvelopeFrame(1, encodeHookData('on_request', { r: 'api', h: { 'X-Pad': 'x'.repeat(1_048_000) } }));
  const res = await postFrames(runner.url, KEY, Array.from({ length: 17 }, () => frame));
  assert.equal(res.status, 413, res.text());
  assert.match(res.json().error, /batch body over 16777216 bytes/);
});

test('a batch of more than 1024 frames gets 413', async () => {
  const frame = encodeHookFrame('on_request', { r: 'api' });
  const res = await postFrames(runner.url, KEY, Array.from({ length: 1025 }, () => frame));
  assert.equal(res.status, 413);
  assert.match(res.json().error, /more than 1024 frames/);
});
