/**
 * The Python SDK (sdk/python/hookgate_plugin.py), run as real python3
 * plugin processes under the real plugin host, on real Unix sockets, in
 * what sdk.test.ts (the spec both SDKs share: every hook and helper, a
 * handler that raises, the socket folder's lifetime) does not cover: every
 * field of the hook data, pushes and logs arriving in the runner, a
 * push-only plugin, stdout kept for the protocol, bad replies and frames
 * that close one connection and leave the plugin serving, the 1 MiB frame
 * limit, concurrent calls on several connections, the protocol version
 * check, and on_stop.
 */

import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { decodeHookResult, encodeFrame, encodeHookFrame, FrameDecoder } from '../../src/core/protocol/codec.ts';
import { MAX_PAYLOAD, type AuthorizeResult, type RequestInfo } from '../../src/core/protocol/protocol.ts';
import { waitFor } from '../helpers/http.ts';
import { PY_SDK_DIR, SDK_PY_PLUGIN } from '../helpers/paths.ts';
import { applyReady, Harness, request, route, runByHand, SDK_FIXTURES, statusOf } from '../helpers/plugin-host.ts';

const T = { timeout: 15_000 };

/** The fixture's plugin config (see SDK_FIXTURES), with `extra` settings. */
function py(h: Harness, env: Record<string, string> = {}, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...SDK_FIXTURES.Python(h, env), ...extra };
}

/** A started manager with the fixture bound to `routes` (default: one route "api"). */
async function started(h: Harness, opts: { env?: Record<string, string>; extra?: Record<string, unknown>; routes?: Record<string, unknown>[]; actions?: Record<string, unknown> } = {}) {
  const m = h.manager();
  await applyReady(m, {
    plugins: { py: py(h, opts.env, opts.extra) },
    routes: opts.routes ?? [route('api', ['py'])],
    ...(opts.actions ? { actions: opts.actions } : {}),
  }, ['py']);
  return m;
}

function pick(v: AuthorizeResult, keys: (keyof AuthorizeResult)[]): Partial<AuthorizeResult> {
  return Object.fromEntries(keys.map((k) => [k, v[k]]));
}

/** A raw connection to a plugin socket, as the runner's pool opens one. */
async function rawConn(h: Harness, path: string): Promise<{ socket: Socket; closed: Promise<void>; next: () => Promise<Uint8Array> }> {
  const socket = connect(path);
  h.defer(() => socket.destroy());
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const dec = new FrameDecoder();
  const frames: Uint8Array[] = [];
  let wake: (() => void) | null = null;
  socket.on('data', (c: Buffer) => {
    frames.push(...dec.push(c).map((f) => new Uint8Array(f)));
    wake?.();
  });
  const next = async (): Promise<Uint8Array> => {
    while (frames.length === 0) {
      const gone = await Promise.race([new Promise<boolean>((r) => (wake = () => r(false))), closed.then(() => true)]);
      if (gone && frames.length === 0) throw new Error('the plugin closed the connection instead of replying');
    }
    return frames.shift()!;
  };
  socket.on('error', () => {});
  return { socket, closed, next };
}

describe('a Python SDK plugin started by hand', () => {
  test('started with the cookie but offered only protocol versions it does not speak, it says so and exits 1', T, async (t) => {
    const h = new Harness(t);

    const { code, stderr } = await runByHand(h, SDK_PY_PLUGIN, {
      PYTHONPATH: PY_SDK_DIR,
      HOOKGATE_PLUGIN_MAGIC_COOKIE: '9c1f4e7a2b5d48a3hookgate',
      HOOKGATE_PLUGIN_PROTOCOL_VERSIONS: '2,3',
    });

    assert.equal(code, 1);
    assert.match(stderr, /speaks hookgate plugin protocol version 1; the runner offers 2,3/);
  });
});

describe('the Python SDK under the plugin host', () => {
  test('on_request data reaches the handler with every field, the body copy included', T, async (t) => {
    const h = new Harness(t);
    const m = await started(h, { routes: [route('echo', [{ plugin: 'py', with_body: true }])] });
    const sent = request({
      r: 'echo', m: 'POST', p: '/echo', q: 'a=1&b=%20', d: 'app.example.com', ho: 'app.example.com:8443', pr: 'HTTP/1.1',
      a: '203.0.113.7', cl: 5, h: { 'Content-Type': 'text/plain', 'X-Forwarded-For': '198.51.100.1, 10.0.0.1' },
      bd: new TextEncoder().encode('hello'), md: '*.example.com', mg: 'app', mp: '/echo', v: { tenant: 'acmé' }, tg: '',
    });

    const v = await m.onRequest('echo', sent);

    assert.equal(v.ok, true);
    assert.deepEqual(JSON.parse(v.h['X-Echo']), { ...sent, bd: Buffer.from('hello').toString('hex') });
  });

  test('set_targets (a list, and groups sent before run()) and set_speed arrive in the runner; log lines keep their fields', T, async (t) => {
    const h = new Harness(t);
    const m = await started(h, {
      env: { FIXTURE_PUSH: '1' },
      actions: { api: { type: 'static' } },
      routes: [route('a', ['py'], { balancer: {} }), route('b', [], { action: 'api', balancer: {} })],
    });

    await waitFor(() => h.logs('set_speed applied', { plugin: 'py' }).length === 1, { what: 'the pushes to be applied' });

    assert.deepEqual(m.pushes.targets('a'), { targets: ['10.0.0.1:80', '10.0.0.2:80'], groups: null });
    assert.deepEqual(m.pushes.targets('b'), { targets: ['10.0.1.1:80', '10.0.2.1:80'], groups: { eu: ['10.0.1.1:80'], us: ['10.0.2.1:80'] } });
    const speed = { download_mbps: 50, upload_mbps: 10.5, group_key: 'tenant' };
    assert.deepEqual(m.pushes.speed('a'), speed);
    assert.deepEqual(m.pushes.speed('b'), speed);
    const logged = await waitFor(() => h.logs('pushed', { plugin: 'py', from: 'plugin' })[0], { what: 'the plugin\'s log line' });
    assert.equal(logged.level, 'info');
    assert.equal(logged.route, 'a');
    assert.equal(logged.count, 2);
  });

  test('a plugin with no hook handler is push-only: ready without a socket, and no socket in the folder the runner made for it', T, async (t) => {
    const h = new Harness(t);
    const m = h.manager();

    await applyReady(m, {
      actions: { api: { type: 'static' } },
      plugins: { py: py(h, { FIXTURE_HOOKS: '', FIXTURE_PUSH: '1' }, { autostart: true }) },
      routes: [route('b', [], { action: 'api', balancer: {} })],
    }, ['py']);
    await waitFor(() => m.pushes.targets('b'), { what: 'the push to be applied' });

    const s = statusOf(m, 'py');
    assert.equal(s.ready, true);
    assert.deepEqual(s.hooks, []);
    assert.equal(s.socket, null);
    const folders = readdirSync(h.dir).filter((f) => f.startsWith('hookgate-plugin-'));
    assert.equal(folders.length, 1, 'the runner\'s folder for this process, none of the SDK\'s own');
    assert.deepEqual(readdirSync(join(h.dir, folders[0])), []);
  });

  test('a reply with an unknown key or over 1 MiB: on_error, logged through the runner, and the plugin keeps serving', T, async (t) => {
    const h = new Harness(t);
    const m = await started(h);
    const pid = statusOf(m, 'py').pid;

    const typo = await m.onRequest('api', request({ r: 'api', p: '/bad-reply' }));
    const huge = await m.onRequest('api', request({ r: 'api', p: '/huge' }));
    const next = await m.onRequest('api', request({ r: 'api', p: '/' }));

    for (const v of [typo, huge]) {
      assert.equal(v.ok, false);
      assert.equal(v.s, 503);
      assert.match(v.e, /^plugin "py": /);
    }
    assert.equal(next.ok, true);
    assert.equal(statusOf(m, 'py').pid, pid);
    const errors = await waitFor(() => {
      const e = h.logs('on_request failed', { plugin: 'py', from: 'plugin' });
      return e.length === 2 ? e : null;
    }, { what: 'the plugin\'s two log lines' });
    assert.deepEqual(errors.map((e) => e.level), ['error', 'error']);
    assert.match(String(errors[0].error), /unknown key 'headers'/);
    assert.match(String(errors[1].error), /exceeds the limit of 1048576/);
  });

  test('print() and child processes write to stderr, which the runner logs, never into the protocol on stdout', T, async (t) => {
    const h = new Harness(t);
    const m = await started(h);

    const v = await m.onRequest('api', request({ r: 'api', p: '/print' }));
    await waitFor(() => h.logs('noise from a child', { plugin: 'py', stream: 'stderr' })[0], { what: 'the child\'s line in the runner\'s log' });

    assert.equal(v.ok, true);
    assert.equal(h.logs('noise from print', { plugin: 'py', stream: 'stderr' }).length, 1);
    assert.deepEqual(h.logs('ignored a stdout line', { plugin: 'py' }), []);
  });

  test('calls on several connections are served at the same time', { timeout: 30_000 }, async (t) => {
    const h = new Harness(t);
    // The handler waits until 4 calls are inside it at once (at most 5 s):
    // served one after another, every call would fail.
    const m = await started(h, { env: { FIXTURE_BARRIER: '4' }, routes: [route('api', ['py'], { plugin_timeout: '10s' })] });

    const verdicts = await Promise.all(Array.from({ length: 4 }, () => m.onRequest('api', request({ r: 'api', p: '/barrier' }))));

    for (const v of verdicts) assert.deepEqual(pick(v, ['ok', 'h', 'e']), { ok: true, h: { 'X-Barrier': 'passed' }, e: '' });
  });
});

describe('the Python SDK on the wire', () => {
  test('a malformed frame closes that connection only: the plugin keeps serving on others', T, async (t) => {
    const h = new Harness(t);
    const m = await started(h);
    const { pid, socket: path } = statusOf(m, 'py');
    const bad = await rawConn(h, path!);
    const good = await rawConn(h, path!);

    bad.socket.write(encodeFrame(new Uint8Array([0xc1])));
    await bad.closed;
    good.socket.write(encodeHookFrame('on_request', request({ r: 'api', p: '/deny' })));
    const reply = decodeHookResult('on_request', await good.next());

    assert.deepEqual(pick(reply, ['ok', 's']), { ok: false, s: 401 });
    assert.equal(statusOf(m, 'py').pid, pid);
    assert.equal((await m.onRequest('api', request({ r: 'api' }))).ok, true);
    const warned = await waitFor(() => h.logs('closing a hook connection after a bad frame', { plugin: 'py' })[0], { what: 'the plugin\'s warning' });
    assert.match(String(warned.error), /0xc1/);
  });

  test('a frame announcing more than 1 MiB is refused before its payload is read; exactly 1 MiB is served', T, async (t) => {
    const h = new Harness(t);
    const m = await started(h);
    const path = statusOf(m, 'py').socket!;
    const over = await rawConn(h, path);
    const limit = await rawConn(h, path);

    const head = new Uint8Array(4);
    new DataView(head.buffer).setUint32(0, MAX_PAYLOAD + 1);
    over.socket.write(head);
    await over.closed;
    limit.socket.write(frameOfExactly(MAX_PAYLOAD));
    const reply = decodeHookResult('on_request', await limit.next());

    assert.equal(reply.ok, true);
    const warned = await waitFor(() => h.logs('closing a hook connection after a bad frame', { plugin: 'py' })[0], { what: 'the plugin\'s warning' });
    assert.match(String(warned.error), /frame announces 1048577 bytes, over the limit of 1048576/);
  });

  test('the socket folder is private (0700), and on_stop handlers run whether SIGTERM or a closed stdin stops the plugin', T, async (t) => {
    const h = new Harness(t);
    const m = await started(h);
    const first = statusOf(m, 'py');

    const mode = statSync(dirname(first.socket!)).mode & 0o777;
    process.kill(first.pid!, 'SIGTERM');
    const second = await waitFor(() => {
      const s = statusOf(m, 'py');
      return s.ready && s.pid !== first.pid ? s : null;
    }, { what: 'the plugin to be restarted after SIGTERM' });
    await m.stop();

    assert.equal(mode, 0o700);
    assert.deepEqual(h.records({ ev: 'stop' }).map((r) => r.pid), [first.pid, second.pid]);
  });
});

/** An on_request call frame whose payload is exactly `size` bytes (padded with a header). */
function frameOfExactly(size: number): Uint8Array {
  const build = (pad: number) => encodeHookFrame('on_request', request({ r: 'api', h: { 'X-Pad': 'a'.repeat(pad) } }));
  // Far enough from the str and bin size steps that the length grows one for one with the pad.
  const guess = size - 200;
  const pad = guess + size - (build(guess).length - 4);
  const frame = build(pad);
  assert.equal(frame.length - 4, size);
  return frame;
}
