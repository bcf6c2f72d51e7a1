/**
 * The plugin SDKs (TypeScript, node-runner/sdk; Python, sdk/python) and the
 * example plugins, run as real plugins under the plugin host: the handshake
 * check for a plugin started by hand, the socket directory's lifetime,
 * every verdict helper and hook end to end (the same spec for both SDKs,
 * through their test plugins that behave alike), and the Python example
 * answering like the TypeScript one. What only the Python SDK has to show
 * is in python-sdk.test.ts.
 */

import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, test } from 'node:test';
import type { AuthorizeResult } from '../../src/core/protocol/protocol.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { waitFor } from '../helpers/http.ts';
import { AUTH_PY, AUTH_TS, PY_SDK_DIR, SDK_PLUGIN, SDK_PY_PLUGIN } from '../helpers/paths.ts';
import { applyReady, config, Harness, request, route, runByHand, SDK_FIXTURES, statusOf } from '../helpers/plugin-host.ts';

// A hang bound: plugin start-ups on a loaded machine take seconds.
const T = { timeout: 60_000 };

describe('a plugin started by hand, without the handshake variables', () => {
  const programs = [['a TypeScript SDK plugin', SDK_PLUGIN], ['a Python SDK plugin', SDK_PY_PLUGIN], ['the example auth.ts', AUTH_TS], ['the example auth.py', AUTH_PY]] as const;
  for (const [label, program] of programs) {
    test(`${label} explains in plain words that the runner starts it, and exits 1`, T, async (t) => {
      const h = new Harness(t);

      const { code, stdout, stderr } = await runByHand(h, program, { PYTHONPATH: PY_SDK_DIR });

      assert.equal(code, 1);
      assert.equal(stdout, '');
      assert.match(stderr, /hookgate plugin/);
      assert.match(stderr, /started by the hookgate runner/);
      assert.match(stderr, /not (run )?by hand/);
      assert.deepEqual(readdirSync(h.dir).filter((f) => f !== 'record.jsonl'), [], 'no socket directory was created');
    });
  }
});

for (const [lang, fixture] of Object.entries(SDK_FIXTURES)) describe(`the ${lang} SDK`, () => {
  test('every verdict helper reaches the runner as the protocol says', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, { plugins: { sdk: fixture(h) }, routes: [route('api', ['sdk'])] }, ['sdk']);
    const call = (p: string, fields: Partial<Parameters<typeof request>[0]> = {}) => m.onRequest('api', request({ r: 'api', p, ...fields }));

    const echoed = await call('/', { h: { Authorization: 'Bearer t0ken' } });
    const denied = await call('/deny');
    const dropped = await call('/drop');
    const fellBack = await call('/fallback');
    const helpers = await call('/helpers');
    const removed = await call('/remove', { h: { Cookie: 'session=1', Accept: '*/*' } });

    assert.deepEqual(statusOf(m, 'sdk').hooks, ['on_request', 'on_response', 'on_connect', 'on_disconnect']);
    assert.equal(echoed.ok, true);
    assert.deepEqual(echoed.h, { 'X-Seen-Authorization': 'Bearer t0ken' });
    assert.deepEqual(pick(denied, ['ok', 's', 'b', 'h']), { ok: false, s: 401, b: 'nope\n', h: { 'Www-Authenticate': 'Bearer' } });
    assert.deepEqual(pick(dropped, ['ok', 'dr', 'fb']), { ok: false, dr: true, fb: false });
    assert.deepEqual(pick(fellBack, ['ok', 'dr', 'fb']), { ok: false, dr: false, fb: true });
    assert.deepEqual(pick(helpers, ['ok', 'h', 'rp', 'cq', 'sp']), {
      ok: true,
      h: { 'X-A': '1', 'X-B': '2' },
      rp: '/v2/x',
      cq: true,
      sp: { dl: 50, ul: 10, gk: 'tenant' },
    });
    assert.deepEqual(pick(removed, ['ok', 'h', 'rm']), { ok: true, h: { 'X-A': '1' }, rm: ['Cookie'] });
    for (const v of [echoed, denied, dropped, fellBack, helpers, removed]) assert.equal(v.e, '');
  });

  test('on_response, on_connect and on_disconnect handlers', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, { plugins: { sdk: fixture(h) }, routes: [route('ws', ['sdk'])] }, ['sdk']);
    const conn = { r: 'ws', d: 'app.example.com', a: '192.0.2.1', md: '', mg: '' };

    const mod = await m.onResponse('ws', { req: request({ r: 'ws' }), resp: { s: 200, h: { Server: 'upstream' } } });
    const allowed = await m.onConnect('ws', conn);
    const refused = await m.onConnect('ws', { ...conn, a: '10.6.6.6' });
    m.onDisconnect('ws', { r: 'ws', tg: '10.0.0.1:80', a: '192.0.2.1', rx: 10, tx: 20, ms: 30 });

    assert.deepEqual(mod, { s: 299, h: { 'X-Sdk': 'yes' }, rm: ['Server'], e: '', b: '' });
    assert.equal(allowed.ok, true);
    assert.equal(refused.ok, false);
    const rec = await waitFor(() => h.records({ ev: 'disconnect' })[0], { what: 'the on_disconnect handler to run' });
    assert.deepEqual(rec.info, { r: 'ws', tg: '10.0.0.1:80', a: '192.0.2.1', rx: 10, tx: 20, ms: 30 });
  });

  test('a handler that throws: the runner applies on_error, the plugin logs why through the runner and keeps serving', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, { plugins: { sdk: fixture(h) }, routes: [route('api', ['sdk'])] }, ['sdk']);
    const pid = statusOf(m, 'sdk').pid;

    const failed = await m.onRequest('api', request({ r: 'api', p: '/throw' }));
    const next = await m.onRequest('api', request({ r: 'api', p: '/' }));

    assert.equal(failed.ok, false);
    assert.equal(failed.s, 503);
    assert.match(failed.e, /^plugin "sdk": /);
    assert.equal(next.ok, true);
    assert.equal(statusOf(m, 'sdk').pid, pid);
    const logged = await waitFor(() => h.logs('on_request failed', { plugin: 'sdk', from: 'plugin' })[0], { what: 'the plugin\'s log line' });
    assert.equal(logged.level, 'error');
    assert.equal(logged.error, 'handler failed on purpose');
  });

  test('a rejected configure is reported in the runner\'s log and the plugin does not say ready for it', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, {
      plugins: { sdk: fixture(h) },
      routes: [route('reject-me', ['sdk']), route('api', ['sdk'])],
    }, ['sdk']);

    const rejected = await waitFor(() => h.logs('plugin rejected a configure', { plugin: 'sdk' })[0], { what: 'the rejection' });

    assert.equal(rejected.error, 'this plugin does not serve reject-me');
    assert.deepEqual(h.records({ ev: 'configure' }).map((r) => (r.params as { route_id: string }).route_id), ['reject-me', 'api']);
    assert.equal(h.logs('plugin ready', { plugin: 'sdk' }).length, 1, 'ready follows only the accepted configure');
  });

  test('a route whose only plugin rejected its configure keeps failing closed after ready_timeout', {
    ...T,
  }, async (t) => {
    const h = new Harness(t);
    // ready_timeout is the subject: time is driven, so a slow start-up cannot race it.
    const clock = new FakeClock();
    const m = h.manager({ clock });
    await m.apply(config({
      plugins: { sdk: { ...fixture(h), ready_timeout: '300ms' } },
      routes: [route('reject-me', ['sdk'])],
    }));
    await waitFor(() => h.logs('plugin rejected a configure', { plugin: 'sdk' })[0], { what: 'the rejection' });
    clock.advance(300);
    await waitFor(() => h.logs('sent no ready before its ready_timeout', { plugin: 'sdk' })[0], { what: 'the ready_timeout' });

    const v = await m.onRequest('reject-me', request({ r: 'reject-me' }));

    assert.notEqual(m.hooksOf('reject-me'), 0, 'the gateway must still ask the route\'s plugins');
    assert.equal(v.ok, false);
    assert.equal(v.s, 503);
  });

  test('the socket directory exists while the plugin runs and is removed when it exits (stdin closed or SIGTERM)', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    await applyReady(m, { plugins: { sdk: fixture(h) }, routes: [route('api', ['sdk'])] }, ['sdk']);
    const first = statusOf(m, 'sdk');
    const firstDir = dirname(first.socket!);
    assert.ok(firstDir.startsWith(h.dir) && existsSync(first.socket!));

    process.kill(first.pid!, 'SIGTERM');
    const second = await waitFor(() => {
      const s = statusOf(m, 'sdk');
      return s.ready && s.pid !== first.pid ? s : null;
    }, { what: 'the plugin to be restarted after SIGTERM' });
    assert.equal(existsSync(firstDir), false, 'removed after SIGTERM');
    assert.ok(existsSync(second.socket!));

    await m.stop();
    assert.equal(existsSync(dirname(second.socket!)), false, 'removed after stdin closed');
    assert.deepEqual(readdirSync(h.dir).filter((f) => f.startsWith('hookgate-plugin-')), []);
  });
});

describe('the example auth plugins', () => {
  test('auth.py answers like auth.ts: allow with X-User for a known token, 401 with a Bearer challenge otherwise', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();
    const env = { HOOKGATE_AUTH_TOKENS: 's3cret:alice, other:bob', TMPDIR: h.dir };
    await applyReady(m, {
      plugins: { ts: { path: AUTH_TS, env }, py: { path: AUTH_PY, env } },
      routes: [route('ts', ['ts']), route('py', ['py'])],
    }, ['ts', 'py']);
    const cases: Record<string, string>[] = [
      { Authorization: 'Bearer s3cret' },
      { Authorization: 'Bearer other' },
      { Authorization: 'Bearer  s3cret ' },
      { Authorization: 'Bearer wrong' },
      { Authorization: 'Bearer ' },
      { Authorization: 'Basic czNjcmV0' },
      { 'X-Other': 'Bearer s3cret' },
      {},
    ];

    for (const headers of cases) {
      const [ts, py] = await Promise.all([
        m.onRequest('ts', request({ r: 'ts', h: headers })),
        m.onRequest('py', request({ r: 'py', h: headers })),
      ]);
      assert.deepEqual(py, ts, `same verdict for ${JSON.stringify(headers)}`);
    }
    const alice = await m.onRequest('py', request({ r: 'py', h: { Authorization: 'Bearer s3cret' } }));
    const nobody = await m.onRequest('py', request({ r: 'py', h: {} }));
    assert.deepEqual(pick(alice, ['ok', 'h']), { ok: true, h: { 'X-User': 'alice' } });
    assert.deepEqual(pick(nobody, ['ok', 's', 'b', 'h']), { ok: false, s: 401, b: 'unauthorized\n', h: { 'Www-Authenticate': 'Bearer' } });
  });
});

function pick(v: AuthorizeResult, keys: (keyof AuthorizeResult)[]): Partial<AuthorizeResult> {
  return Object.fromEntries(keys.map((k) => [k, v[k]]));
}
