/**
 * The Python SDK's msgpack codec and hook structs against the project's
 * codec (src/core/protocol/codec.ts): values packed by one side decode on the other
 * to what was sent, call frames decode to the same hook data, and the
 * Python verdict helpers' replies are byte for byte what the TypeScript
 * SDK's helpers encode to. One real python3 process (a small driver over
 * stdin/stdout frames, test/fixtures/python/codec_driver.py) serves the file.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { before, describe, test } from 'node:test';
import { decodeHookData, encodeFrame, encodeHookData, encodeHookFrame, encodeHookResult, FrameDecoder, packValue, unpackValue } from '../src/core/protocol/codec.ts';
import type { HookData, HookName, RequestInfo } from '../src/core/protocol/protocol.ts';
import { allow, cleanQuery, deny, drop, fallback, limitSpeed, rewritePath, withHeader } from '../node-runner/sdk/index.ts';
import { PY_CODEC_DRIVER, PY_SDK_DIR } from './helpers/paths.ts';
import { suiteScope, type Scope } from './helpers/scope.ts';

type Ask = (op: string, arg: unknown) => Promise<unknown>;

/**
 * Starts the driver, stopped when `s` closes; `ask` sends one `[op, arg]`
 * frame and resolves with `ok`, or rejects with `error` (or when the driver
 * is gone).
 */
function startDriver(s: Scope): Ask {
  const child = spawn('python3', [PY_CODEC_DRIVER], { env: { ...process.env, PYTHONPATH: PY_SDK_DIR }, stdio: ['pipe', 'pipe', 'inherit'] });
  s.defer(() => child.kill('SIGKILL'));
  const dec = new FrameDecoder();
  const waiting: Array<{ resolve: (payload: Uint8Array) => void; reject: (err: Error) => void }> = [];
  let gone: Error | null = null;
  child.stdout.on('data', (c: Buffer) => {
    for (const f of dec.push(c)) waiting.shift()?.resolve(new Uint8Array(f));
  });
  child.on('exit', (code, signal) => {
    gone = new Error(`the codec driver exited (${signal ?? code})`);
    for (const w of waiting.splice(0)) w.reject(gone);
  });
  child.stdin.on('error', () => {});
  return (op, arg) =>
    new Promise((resolve, reject) => {
      if (gone) return reject(gone);
      waiting.push({
        resolve: (payload) => {
          const reply = unpackValue(payload) as { ok?: unknown; error?: string };
          if (reply.error !== undefined) reject(new Error(reply.error));
          else resolve(reply.ok);
        },
        reject,
      });
      child.stdin.write(encodeFrame(packValue([op, arg])));
    });
}

const bytes = (s: string) => new TextEncoder().encode(s);
/** msgpackr hands out Node Buffers; compare contents as plain Uint8Arrays, deeply. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const keyed = (n: number) => Object.fromEntries(range(n).map((i) => [`k${i}`, i]));

const fullRequest: RequestInfo = {
  r: 'api', m: 'POST', p: '/v1/users', q: 'page=2&sort=name', d: 'api.example.com', ho: 'api.example.com:8443', pr: 'HTTP/1.1',
  a: '203.0.113.7:51234', cl: 17, h: { 'Content-Type': 'application/json', 'X-Forwarded-For': '198.51.100.1, 10.0.0.1' },
  bd: bytes('{"name":"alice"}\n'), md: '*.example.com', mg: 'api', mp: '/v1/*', v: { tenant: 'acme', region: 'eü' }, tg: '10.0.0.1:3000',
};

const calls: { [K in HookName]: Partial<HookData[K]> } = {
  on_request: fullRequest,
  on_response: { req: fullRequest, resp: { s: 502, h: { Server: 'nginx' } } },
  on_connect: { r: 'ws', d: 'chat.example.com', a: '203.0.113.7:40000', md: 'chat.example.com', mg: 'chat' },
  on_disconnect: { r: 'ws', tg: '10.0.0.2:9000', a: '203.0.113.7:40000', rx: 123_456, tx: 7_890_123_456, ms: 61_500 },
};

describe('the Python SDK codec against the project codec', () => {
  const s = suiteScope();
  let ask: Ask;
  before(() => {
    ask = startDriver(s);
  });

  test('values the project codec packs come back unchanged through the Python decoder and encoder', async () => {
    const values: unknown[] = [
      null, true, false,
      0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1,
      -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1,
      0.5, -1.25, 1e300,
      '', 'a'.repeat(31), 'b'.repeat(32), 'c'.repeat(255), 'd'.repeat(256), 'e'.repeat(65535), 'f'.repeat(65536), 'héllo ✓',
      new Uint8Array(0), new Uint8Array([0, 255]), new Uint8Array(256).fill(7), new Uint8Array(65536).fill(9),
      [], range(15), range(16), range(65536),
      {}, keyed(15), keyed(16), { nested: { deeper: { x: new Uint8Array([1]) } }, list: [null, [true]] },
    ];

    for (const v of values) {
      assert.deepEqual(plain(await ask('echo', v)), plain(v), `round trip of ${JSON.stringify(v)?.slice(0, 60)}`);
    }
  });

  test('values the Python encoder packs decode with the project codec to what Python meant, 64-bit integers included', async () => {
    const got = plain(await ask('values', null));

    assert.deepEqual(got, plain({
      ints: [0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 63, 2 ** 64 - 1,
        -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 63)],
      floats: [0.5, -1.25, 1e300],
      strs: ['', 'a'.repeat(31), 'b'.repeat(32), 'c'.repeat(255), 'd'.repeat(256), 'e'.repeat(65535), 'f'.repeat(65536), 'héllo ✓'],
      bins: [new Uint8Array(0), new Uint8Array([0, 255]), bytes('x'.repeat(256)), bytes('y'.repeat(65536))],
      arrays: [[], range(15), range(16), [null, true, false, [1, [2]]]],
      maps: [{}, keyed(15), keyed(16), { nested: { deeper: { x: new Uint8Array([1]) } } }],
    }));
  });

  test('the Python SDK decodes every hook\'s call frame to the hook data the project codec decodes', async () => {
    for (const hook of Object.keys(calls) as HookName[]) {
      const payload = encodeHookFrame(hook, calls[hook]).subarray(4);

      const [name, data] = (await ask('call', payload)) as [string, unknown];

      assert.equal(name, hook);
      assert.deepEqual(plain(data), plain(decodeHookData(hook, encodeHookData(hook, calls[hook]))), hook);
    }
  });

  test('missing keys decode as zero values, bin where a string belongs as UTF-8, and unknown keys are ignored', async () => {
    const d = packValue({ p: bytes('/x'), h: { 'X-A': bytes('é') }, future: 1 });
    const payload = packValue({ d, t: 1 }); // keys out of order, as msgpackr writes them

    const [name, data] = (await ask('call', payload)) as [string, Record<string, unknown>];

    assert.equal(name, 'on_request');
    assert.deepEqual(plain(data), plain({ ...decodeHookData('on_request', d) }));
    assert.equal(data.p, '/x');
    assert.deepEqual(data.h, { 'X-A': 'é' });
    assert.equal(data.bd, null);
    assert.equal(data.cl, 0);
  });

  test('a hook type the protocol does not know decodes as no hook (the plugin sends no reply)', async () => {
    assert.deepEqual(await ask('call', packValue({ t: 9, d: packValue({}) })), [null, null]);
  });

  test('the Python verdict helpers\' replies are byte for byte what the TypeScript SDK\'s helpers encode to', async () => {
    const cases: Record<string, Uint8Array> = {
      allow: encodeHookResult('on_request', allow()),
      'allow-headers': encodeHookResult('on_request', allow({ 'X-User': 'alice', 'X-Roles': 'admin, dev' })),
      'allow-remove': encodeHookResult('on_request', limitSpeed(allow({ 'X-User': 'alice' }, ['Cookie', 'X-Debug']), 5)),
      deny: encodeHookResult('on_request', deny()),
      'deny-full': encodeHookResult('on_request', deny(401, 'unauthorized\n', { 'Www-Authenticate': 'Bearer' })),
      drop: encodeHookResult('on_request', drop()),
      fallback: encodeHookResult('on_request', fallback()),
      helpers: encodeHookResult('on_request', cleanQuery(limitSpeed(rewritePath(withHeader(allow({ 'X-A': '1' }), 'X-B', '2'), '/v2/x'), 50, 10, 'tenant'))),
      'speed-float': encodeHookResult('on_request', limitSpeed(allow(), 2.5)),
      response: encodeHookResult('on_response', { s: 201, h: { 'Cache-Control': 'no-store' }, rm: ['Server', 'X-Powered-By'] }),
      'response-keep': encodeHookResult('on_response', {}),
      'connect-yes': encodeHookResult('on_connect', { ok: true }),
      'connect-no': encodeHookResult('on_connect', { ok: false }),
    };

    for (const [name, expected] of Object.entries(cases)) {
      const got = (await ask('reply', name)) as Uint8Array;
      assert.equal(Buffer.from(got).toString('hex'), Buffer.from(expected).toString('hex'), name);
    }
  });

  test('the Python decoder refuses what is not msgpack, naming why', async () => {
    const refused: Array<[string, number[], RegExp]> = [
      ['empty', [], /empty payload/],
      ['truncated str', [0xa5, 0x61], /truncated/],
      ['truncated map', [0x82, 0xa1, 0x74], /truncated/],
      ['the never-used type byte', [0xc1], /0xc1/],
      ['an ext type (timestamp)', [0xd6, 0xff, 0, 0, 0, 0], /0xd6/],
      ['trailing bytes', [0xc0, 0xc0], /1 trailing bytes/],
      ['a str that is not UTF-8', [0xa2, 0xc3, 0x28], /not valid UTF-8/],
      ['a map as a map key', [0x81, 0x80, 0x01], /map key/],
    ];

    for (const [what, b, why] of refused) {
      await assert.rejects(ask('decode', new Uint8Array(b)), (err: Error) => {
        assert.match(err.message, /^MsgpackError: /, what);
        assert.match(err.message, why, what);
        return true;
      });
    }
  });
});
