/**
 * The wire layout of docs/protocol.md §1: frames, the `{t, d}` envelope and the
 * hook structs with their short keys, as a Go plugin would see them.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { unpack as genericUnpack } from 'msgpackr';
import {
  FrameDecoder,
  decodeEnvelope,
  decodeFrames,
  decodeHookData,
  decodeHookResult,
  encodeEnvelope,
  encodeEnvelopeFrame,
  encodeFrame,
  encodeHookData,
  encodeHookResult,
  packValue,
  unpackValue,
} from '../../src/core/protocol/codec.ts';
import { HookgateError } from '../../src/core/errors.ts';
import {
  HOOK,
  MAX_PAYLOAD,
  type AuthorizeResult,
  type ConnInfo,
  type ConnResult,
  type DisconnectInfo,
  type HookName,
  type RequestInfo,
  type ResponseModResult,
  type ResponsePair,
} from '../../src/core/protocol/protocol.ts';

// ---------------------------------------------------------------------------
// Fixtures: every struct of docs/protocol.md §1 with every field set.

const request: RequestInfo = {
  r: 'api',
  m: 'POST',
  p: '/v1/users',
  q: 'page=2&sort=name',
  d: 'api.example.com',
  ho: 'api.example.com:8443',
  pr: 'HTTP/1.1',
  a: '203.0.113.7:51234',
  cl: 17,
  h: { 'Content-Type': 'application/json', 'X-Forwarded-For': '198.51.100.1, 10.0.0.1' },
  bd: new TextEncoder().encode('{"name":"alice"}\n'),
  md: '*.example.com',
  mg: 'api',
  mp: '/v1/*',
  v: { tenant: 'acme', region: 'eu' },
  tg: '10.0.0.1:3000',
};

const authorize: AuthorizeResult = {
  ok: true,
  dr: true,
  fb: true,
  s: 403,
  b: 'forbidden\n',
  h: { 'X-User': 'alice', 'X-Roles': 'admin, dev' },
  rm: ['X-Client-User'],
  sp: { dl: 50, ul: 10.5, gk: 'tenant-acme' },
  cq: true,
  rp: '/internal/v1/users',
  e: 'plugin "auth" timed out',
};

const responsePair: ResponsePair = {
  req: request,
  resp: { s: 502, h: { 'Content-Type': 'text/html', Server: 'nginx' } },
};

const responseMod: ResponseModResult = {
  s: 201,
  h: { 'Cache-Control': 'no-store' },
  rm: ['Server', 'X-Powered-By'],
  e: 'plugin "mod" crashed',
  b: 'service unavailable\n',
};

/** RequestInfo with every field at its zero value. */
const emptyRequest: RequestInfo = {
  r: '', m: '', p: '', q: '', d: '', ho: '', pr: '', a: '', cl: 0, h: {}, bd: null, md: '', mg: '', mp: '', v: {}, tg: '',
};

const connInfo: ConnInfo = { r: 'ws', d: 'chat.example.com', a: '203.0.113.7:40000', md: 'chat.example.com', mg: 'chat' };
const connResult: ConnResult = { ok: true, e: 'plugin "gate" timed out', s: 503, b: 'service unavailable\n' };
const disconnect: DisconnectInfo = { r: 'ws', tg: '10.0.0.2:9000', a: '203.0.113.7:40000', rx: 123_456, tx: 7_890_123, ms: 61_500 };

const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);
const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
};
/** msgpackr hands out Node Buffers; compare byte contents as plain Uint8Arrays. */
const raw = (b: Uint8Array): Uint8Array => new Uint8Array(b);
const plainBytes = (b: Uint8Array | null): Uint8Array | null => (b === null ? null : new Uint8Array(b));

function hookError(code: HookgateError['code'], message?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof HookgateError, `expected a HookgateError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (message) assert.match(err.message, message);
    return true;
  };
}

/**
 * An independent, deliberately strict msgpack reader: only the core types
 * Go's msgpack writes for these structs (nil, bool, int, float, str, bin,
 * array, map with str keys). Any extension type or the never-used 0xc1
 * throws, so a value that decodes here holds no msgpackr records or
 * extensions. bin comes back as Uint8Array, str as string.
 */
function strictUnpack(buf: Uint8Array): unknown {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 0;
  const take = (n: number): Uint8Array => {
    if (pos + n > buf.length) throw new Error('truncated');
    const out = buf.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const str = (n: number): string => new TextDecoder('utf-8', { fatal: true }).decode(take(n));
  const u8 = (): number => take(1)[0];
  const u16 = (): number => view.getUint16((pos += 2) - 2);
  const u32 = (): number => view.getUint32((pos += 4) - 4);
  const map = (n: number): Record<string, unknown> => {
    const o: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const k = read();
      if (typeof k !== 'string') throw new Error(`map key at ${pos} is not a str`);
      o[k] = read();
    }
    return o;
  };
  const arr = (n: number): unknown[] => Array.from({ length: n }, () => read());
  function read(): unknown {
    const b = u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b >= 0x80 && b <= 0x8f) return map(b & 0x0f);
    if (b >= 0x90 && b <= 0x9f) return arr(b & 0x0f);
    if (b >= 0xa0 && b <= 0xbf) return str(b & 0x1f);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return new Uint8Array(take(u8()));
      case 0xc5: return new Uint8Array(take(u16()));
      case 0xc6: return new Uint8Array(take(u32()));
      case 0xca: return view.getFloat32((pos += 4) - 4);
      case 0xcb: return view.getFloat64((pos += 8) - 8);
      case 0xcc: return u8();
      case 0xcd: return u16();
      case 0xce: return u32();
      case 0xcf: return Number(view.getBigUint64((pos += 8) - 8));
      case 0xd0: return view.getInt8((pos += 1) - 1);
      case 0xd1: return view.getInt16((pos += 2) - 2);
      case 0xd2: return view.getInt32((pos += 4) - 4);
      case 0xd3: return Number(view.getBigInt64((pos += 8) - 8));
      case 0xd9: return str(u8());
      case 0xda: return str(u16());
      case 0xdb: return str(u32());
      case 0xdc: return arr(u16());
      case 0xdd: return arr(u32());
      case 0xde: return map(u16());
      case 0xdf: return map(u32());
      default: throw new Error(`type byte 0x${b.toString(16)} at ${pos - 1} is not plain msgpack`);
    }
  }
  const v = read();
  if (pos !== buf.length) throw new Error('trailing bytes');
  return v;
}

// ---------------------------------------------------------------------------

describe('hook structs round trip with every field set', () => {
  test('RequestInfo (on_request data)', () => {
    const got = decodeHookData('on_request', encodeHookData('on_request', request));
    assert.deepEqual({ ...got, bd: plainBytes(got.bd) }, request);
  });

  test('AuthorizeResult (on_request reply), string body', () => {
    const got = decodeHookResult('on_request', encodeHookResult('on_request', authorize));
    assert.deepEqual(got, authorize);
  });

  test('AuthorizeResult (on_request reply), bin body stays bytes', () => {
    const body = bytes(0, 1, 2, 0xff);
    const got = decodeHookResult('on_request', encodeHookResult('on_request', { ...authorize, b: body }));
    assert.ok(got.b instanceof Uint8Array);
    assert.deepEqual({ ...got, b: raw(got.b) }, { ...authorize, b: body });
  });

  test('ResponsePair (on_response data)', () => {
    const got = decodeHookData('on_response', encodeHookData('on_response', responsePair));
    assert.deepEqual({ ...got, req: { ...got.req, bd: plainBytes(got.req.bd) } }, responsePair);
  });

  test('ResponseModResult (on_response reply)', () => {
    assert.deepEqual(decodeHookResult('on_response', encodeHookResult('on_response', responseMod)), responseMod);
  });

  test('ConnInfo (on_connect data)', () => {
    assert.deepEqual(decodeHookData('on_connect', encodeHookData('on_connect', connInfo)), connInfo);
  });

  test('ConnResult (on_connect reply)', () => {
    assert.deepEqual(decodeHookResult('on_connect', encodeHookResult('on_connect', connResult)), connResult);
  });

  test('DisconnectInfo (on_disconnect data)', () => {
    assert.deepEqual(decodeHookData('on_disconnect', encodeHookData('on_disconnect', disconnect)), disconnect);
  });

  test('on_disconnect has no reply: it encodes as an empty map and decodes as null', () => {
    const encoded = encodeHookResult('on_disconnect', null);
    assert.deepEqual(raw(encoded), bytes(0x80));
    assert.equal(decodeHookResult('on_disconnect', encoded), null);
  });

  test('the whole envelope frame carries hook data to the other side unchanged', () => {
    const frame = encodeEnvelopeFrame(HOOK.on_connect, encodeHookData('on_connect', connInfo));
    const [payload] = decodeFrames(frame);
    const env = decodeEnvelope(payload);
    assert.equal(env.t, HOOK.on_connect);
    assert.deepEqual(decodeHookData('on_connect', env.d), connInfo);
  });

  test('encoded bytes stay intact while many more values are encoded', () => {
    const first = encodeHookResult('on_request', authorize);
    const copy = first.slice();
    for (let i = 0; i < 5000; i++) encodeHookData('on_request', { ...request, r: `route-${i}` });
    assert.deepEqual(first, copy);
  });
});

describe('omitempty: encoders write only non-empty keys', () => {
  const keysOf = (b: Uint8Array): string[] => Object.keys(unpackValue(b) as object);

  test('RequestInfo with only route and method set has just "r" and "m"', () => {
    const encoded = encodeHookData('on_request', {
      r: 'api',
      m: 'GET',
      p: '',
      q: '',
      cl: 0,
      h: {},
      bd: new Uint8Array(0),
      v: {},
      tg: '',
    });
    assert.deepEqual(keysOf(encoded), ['r', 'm']);
  });

  test('RequestInfo with every field set has every key of the table', () => {
    assert.deepEqual(keysOf(encodeHookData('on_request', request)).sort(), Object.keys(request).sort());
  });

  test('an AuthorizeResult that denies with all defaults is an empty map', () => {
    const encoded = encodeHookResult('on_request', {
      ok: false,
      dr: false,
      fb: false,
      s: 0,
      b: '',
      h: {},
      sp: { dl: 0, ul: 0, gk: '' },
      cq: false,
      rp: '',
      e: '',
    });
    assert.deepEqual(raw(encoded), bytes(0x80));
  });

  test('a speed limit keeps only its non-zero parts', () => {
    const decoded = unpackValue(encodeHookResult('on_request', { ok: true, sp: { dl: 0, ul: 5, gk: '' } }));
    assert.deepEqual(decoded, { ok: true, sp: { ul: 5 } });
  });

  test('a ResponseModResult with an empty removal list is an empty map', () => {
    assert.deepEqual(keysOf(encodeHookResult('on_response', { s: 0, h: {}, rm: [] })), []);
  });

  test('ResponsePair omits the empty fields inside req and resp', () => {
    const decoded = unpackValue(encodeHookData('on_response', { req: { ...emptyRequest, r: 'api' }, resp: { s: 200, h: {} } }));
    assert.deepEqual(decoded, { req: { r: 'api' }, resp: { s: 200 } });
  });

  test('ConnInfo and DisconnectInfo omit empty strings and zero counters', () => {
    assert.deepEqual(keysOf(encodeHookData('on_connect', { r: 'ws', d: '', a: '', md: '', mg: '' })), ['r']);
    assert.deepEqual(keysOf(encodeHookData('on_disconnect', { r: 'ws', tg: '', a: '', rx: 0, tx: 5, ms: 0 })), ['r', 'tx']);
  });

  test('a ConnResult that denies is an empty map', () => {
    assert.deepEqual(raw(encodeHookResult('on_connect', { ok: false })), bytes(0x80));
  });
});

describe('decoding is lenient about missing and unknown keys', () => {
  test('an empty map decodes as RequestInfo with zero values', () => {
    assert.deepEqual(decodeHookData('on_request', packValue({})), emptyRequest);
  });

  test('an empty map decodes as an AuthorizeResult that denies', () => {
    assert.deepEqual(decodeHookResult('on_request', packValue({})), {
      ok: false, dr: false, fb: false, s: 0, b: '', h: {}, rm: [], sp: null, cq: false, rp: '', e: '',
    });
  });

  test('an empty map decodes as empty ResponsePair, ResponseModResult, ConnInfo, ConnResult and DisconnectInfo', () => {
    const empty = packValue({});
    assert.deepEqual(decodeHookData('on_response', empty).resp, { s: 0, h: {} });
    assert.deepEqual(decodeHookData('on_response', empty).req, emptyRequest);
    assert.deepEqual(decodeHookResult('on_response', empty), { s: 0, h: {}, rm: [], e: '', b: '' });
    assert.deepEqual(decodeHookData('on_connect', empty), { r: '', d: '', a: '', md: '', mg: '' });
    assert.deepEqual(decodeHookResult('on_connect', empty), { ok: false, e: '', s: 0, b: '' });
    assert.deepEqual(decodeHookData('on_disconnect', empty), { r: '', tg: '', a: '', rx: 0, tx: 0, ms: 0 });
  });

  test('nil values decode as zero values', () => {
    const got = decodeHookResult('on_request', packValue({ ok: null, s: null, h: null, sp: null, b: null }));
    assert.deepEqual([got.ok, got.s, got.h, got.sp, got.b], [false, 0, {}, null, '']);
  });

  test('unknown keys are ignored', () => {
    const got = decodeHookResult('on_request', packValue({ ok: true, future: { nested: [1, 2] }, xx: 'y' }));
    assert.equal(got.ok, true);
    assert.equal('future' in got, false);
    assert.equal('xx' in got, false);
  });

  test('keys in any order decode the same', () => {
    // {"tx": 2, "r": "ws", "rx": 1} as Go might order it
    const payload = bytes(0x83, 0xa2, 0x74, 0x78, 0x02, 0xa1, 0x72, 0xa2, 0x77, 0x73, 0xa2, 0x72, 0x78, 0x01);
    assert.deepEqual(decodeHookData('on_disconnect', payload), { r: 'ws', tg: '', a: '', rx: 1, tx: 2, ms: 0 });
  });
});

describe('decoding is strict about types and names the bad field', () => {
  const cases: Array<[string, HookName, 'data' | 'result', unknown, RegExp]> = [
    ['reply.ok not a bool', 'on_request', 'result', { ok: 'yes' }, /^on_request reply\.ok: expected a boolean$/],
    ['reply.dr not a bool', 'on_request', 'result', { dr: 1 }, /^on_request reply\.dr: expected a boolean$/],
    ['reply.s not an int', 'on_request', 'result', { s: '403' }, /^on_request reply\.s: expected an integer$/],
    ['reply.b a map', 'on_request', 'result', { b: { x: 1 } }, /^on_request reply\.b: expected a string or bin$/],
    ['reply.h not a map', 'on_request', 'result', { h: ['X-A', '1'] }, /^on_request reply\.h: expected a map of strings$/],
    ['reply.h value not a string', 'on_request', 'result', { h: { 'X-A': 1 } }, /^on_request reply\.h\["X-A"\]: expected a string$/],
    ['reply.sp not a map', 'on_request', 'result', { sp: 5 }, /^on_request reply\.sp: expected a map$/],
    ['reply.sp.dl not a number', 'on_request', 'result', { sp: { dl: 'fast' } }, /^on_request reply\.sp\.dl: expected a number$/],
    ['reply.rp not a string', 'on_request', 'result', { rp: 7 }, /^on_request reply\.rp: expected a string$/],
    ['reply not a map', 'on_request', 'result', [true], /^on_request reply: expected a map$/],
    ['on_response reply.rm not an array', 'on_response', 'result', { rm: 'Server' }, /^on_response reply\.rm: expected an array of strings$/],
    ['on_response reply.rm item not a string', 'on_response', 'result', { rm: ['Server', 1] }, /^on_response reply\.rm\[1\]: expected a string$/],
    ['on_connect reply.ok not a bool', 'on_connect', 'result', { ok: 1 }, /^on_connect reply\.ok: expected a boolean$/],
    ['on_request data cl not an int', 'on_request', 'data', { cl: 'big' }, /^on_request\.cl: expected an integer$/],
    ['on_request data bd a number', 'on_request', 'data', { bd: 5 }, /^on_request\.bd: expected bin$/],
    ['on_request data v value not a string', 'on_request', 'data', { v: { a: true } }, /^on_request\.v\["a"\]: expected a string$/],
    ['on_response data req not a map', 'on_response', 'data', { req: 'x' }, /^on_response\.req: expected a map$/],
    ['on_response data req.p not a string', 'on_response', 'data', { req: { p: 5 } }, /^on_response\.req\.p: expected a string$/],
    ['on_response data resp.s not an int', 'on_response', 'data', { resp: { s: true } }, /^on_response\.resp\.s: expected an integer$/],
    ['on_connect data a not a string', 'on_connect', 'data', { a: [] }, /^on_connect\.a: expected a string$/],
    ['on_disconnect data rx not an int', 'on_disconnect', 'data', { rx: '1' }, /^on_disconnect\.rx: expected an integer$/],
  ];
  for (const [name, hook, kind, value, message] of cases) {
    test(`${name} is BAD_PAYLOAD naming the field`, () => {
      const payload = packValue(value);
      const decode = kind === 'data' ? () => decodeHookData(hook, payload) : () => decodeHookResult(hook, payload);
      assert.throws(decode, hookError('BAD_PAYLOAD', message));
    });
  }
});

describe('bin is accepted where strings are expected (Go may send []byte)', () => {
  const b = (s: string): Buffer => Buffer.from(s, 'utf8');

  test('RequestInfo strings, header values and variables may be bin', () => {
    const got = decodeHookData('on_request', packValue({ r: b('api'), p: b('/ü'), h: { 'X-A': b('1') }, v: { tenant: b('acme') } }));
    assert.deepEqual([got.r, got.p, got.h, got.v], ['api', '/ü', { 'X-A': '1' }, { tenant: 'acme' }]);
  });

  test('AuthorizeResult path, headers and speed group key may be bin', () => {
    const got = decodeHookResult('on_request', packValue({ ok: true, rp: b('/x'), h: { 'X-User': b('alice') }, sp: { dl: 1, gk: b('g') } }));
    assert.deepEqual([got.rp, got.h, got.sp], ['/x', { 'X-User': 'alice' }, { dl: 1, ul: 0, gk: 'g' }]);
  });

  test('ResponseModResult removal names may be bin', () => {
    assert.deepEqual(decodeHookResult('on_response', packValue({ rm: [b('Server'), 'Via'] })).rm, ['Server', 'Via']);
  });

  test('a str body is accepted where bin is expected', () => {
    const got = decodeHookData('on_request', packValue({ bd: 'hello' }));
    assert.deepEqual(plainBytes(got.bd), new TextEncoder().encode('hello'));
  });
});

describe('Go compatibility of the envelope', () => {
  test('a small envelope is fixmap {"t": fixint, "d": bin8} behind its length', () => {
    const frame = encodeEnvelopeFrame(HOOK.on_request, bytes(0x81, 0xa1, 0x72));
    assert.deepEqual(frame, bytes(0, 0, 0, 11, 0x82, 0xa1, 0x74, 0x01, 0xa1, 0x64, 0xc4, 0x03, 0x81, 0xa1, 0x72));
  });

  test('every hook type goes into "t" as a positive fixint', () => {
    for (const t of [HOOK.on_request, HOOK.on_response, HOOK.on_connect, HOOK.on_disconnect]) {
      assert.equal(encodeEnvelopeFrame(t, bytes(0x80))[7], t);
    }
  });

  const sizes: Array<[number, number[]]> = [
    [0, [0xc4, 0x00]],
    [255, [0xc4, 0xff]],
    [256, [0xc5, 0x01, 0x00]],
    [65_535, [0xc5, 0xff, 0xff]],
    [65_536, [0xc6, 0x00, 0x01, 0x00, 0x00]],
    [300_000, [0xc6, 0x00, 0x04, 0x93, 0xe0]],
  ];
  for (const [n, head] of sizes) {
    test(`data of ${n} bytes gets the bin header ${head.map((x) => x.toString(16).padStart(2, '0')).join(' ')}`, () => {
      const data = new Uint8Array(n).map((_, i) => i & 0xff);
      const frame = encodeEnvelopeFrame(HOOK.on_response, data);
      const payloadLen = 6 + head.length + n;
      assert.equal(new DataView(frame.buffer, frame.byteOffset).getUint32(0), payloadLen);
      assert.equal(frame.length, 4 + payloadLen);
      assert.deepEqual(frame.subarray(10, 10 + head.length), new Uint8Array(head));
      assert.deepEqual(frame.subarray(10 + head.length), data);
    });
  }

  test('a generic msgpack decoder reads "d" as bin, not as a nested map', () => {
    const data = encodeHookData('on_request', { r: 'api', m: 'GET' });
    const env = genericUnpack(encodeEnvelope(HOOK.on_request, data)) as { t: unknown; d: unknown };
    assert.equal(env.t, 1);
    assert.ok(env.d instanceof Uint8Array, 'd must be bin');
    assert.deepEqual(raw(env.d), raw(data));
  });

  test('an envelope of exactly 1 MiB is accepted and one byte more is FRAME_TOO_LARGE', () => {
    const largest = MAX_PAYLOAD - 6 - 5;
    assert.equal(encodeEnvelopeFrame(HOOK.on_request, new Uint8Array(largest)).length, 4 + MAX_PAYLOAD);
    assert.throws(() => encodeEnvelopeFrame(HOOK.on_request, new Uint8Array(largest + 1)), hookError('FRAME_TOO_LARGE'));
  });

  test('encodeEnvelope is the envelope frame without its length', () => {
    const data = bytes(1, 2, 3);
    assert.deepEqual(encodeEnvelope(HOOK.on_connect, data), encodeEnvelopeFrame(HOOK.on_connect, data).subarray(4));
  });
});

describe('encoded structs are plain msgpack maps (no records, no extensions)', () => {
  const all: Array<[string, Uint8Array]> = [
    ['on_request data', encodeHookData('on_request', request)],
    ['on_response data', encodeHookData('on_response', responsePair)],
    ['on_connect data', encodeHookData('on_connect', connInfo)],
    ['on_disconnect data', encodeHookData('on_disconnect', disconnect)],
    ['on_request reply', encodeHookResult('on_request', authorize)],
    ['on_request reply with bin body', encodeHookResult('on_request', { ...authorize, b: bytes(1, 2) })],
    ['on_response reply', encodeHookResult('on_response', responseMod)],
    ['on_connect reply', encodeHookResult('on_connect', connResult)],
  ];
  for (const [name, encoded] of all) {
    test(`${name} is a map a strict core-types decoder reads completely`, () => {
      const first = encoded[0];
      assert.ok((first >= 0x80 && first <= 0x8f) || first === 0xde, `first byte 0x${first.toString(16)} is not fixmap or map16`);
      const value = strictUnpack(encoded);
      assert.equal(typeof value, 'object');
    });
  }

  test('a RequestInfo with all 16 keys is a map16, body as bin and strings as str', () => {
    const encoded = encodeHookData('on_request', request);
    assert.deepEqual(raw(encoded.subarray(0, 3)), bytes(0xde, 0x00, 0x10));
    const value = strictUnpack(encoded) as Record<string, unknown>;
    assert.ok(value.bd instanceof Uint8Array, 'bd must be bin');
    assert.equal(value.r, 'api');
    assert.deepEqual(value.h, request.h);
  });

  test('a tiny ConnResult is byte for byte {"ok": true}', () => {
    assert.deepEqual(raw(encodeHookResult('on_connect', { ok: true })), bytes(0x81, 0xa2, 0x6f, 0x6b, 0xc3));
  });

  test('a tiny DisconnectInfo is byte for byte {"r": "a", "rx": 5}', () => {
    assert.deepEqual(raw(encodeHookData('on_disconnect', { r: 'a', rx: 5 })), bytes(0x82, 0xa1, 0x72, 0xa1, 0x61, 0xa2, 0x72, 0x78, 0x05));
  });

  test('packValue writes plain maps for notices', () => {
    assert.deepEqual(strictUnpack(packValue({ state: 'v42' })), { state: 'v42' });
  });
});

describe('decodeEnvelope', () => {
  test('reads a Go-ordered envelope {"d": bin, "t": 2}', () => {
    const env = decodeEnvelope(bytes(0x82, 0xa1, 0x64, 0xc4, 0x01, 0xff, 0xa1, 0x74, 0x02));
    assert.equal(env.t, 2);
    assert.deepEqual(raw(env.d), bytes(0xff));
  });

  test('accepts "d" as str and a missing "d" as empty data', () => {
    assert.deepEqual(raw(decodeEnvelope(packValue({ t: 1, d: 'hi' })).d), new TextEncoder().encode('hi'));
    assert.equal(decodeEnvelope(packValue({ t: 4 })).d.length, 0);
  });

  const rejects: Array<[string, unknown, RegExp]> = [
    ['a non-map', [1, new Uint8Array(1)], /^envelope: expected a map/],
    ['a bin instead of a map', new Uint8Array(3), /^envelope: expected a map/],
    ['a missing "t"', { d: new Uint8Array(1) }, /^envelope\.t: /],
    ['a negative "t"', { t: -1, d: new Uint8Array(1) }, /^envelope\.t: /],
    ['a zero "t"', { t: 0, d: new Uint8Array(1) }, /^envelope\.t: /],
    ['a non-integer "t"', { t: 1.5, d: new Uint8Array(1) }, /^envelope\.t: /],
    ['a string "t"', { t: '1', d: new Uint8Array(1) }, /^envelope\.t: /],
    ['a nested map as "d"', { t: 1, d: { r: 'api' } }, /^envelope\.d: expected bin/],
    ['a number as "d"', { t: 1, d: 5 }, /^envelope\.d: expected bin/],
  ];
  for (const [name, value, message] of rejects) {
    test(`rejects ${name} with BAD_PAYLOAD`, () => {
      assert.throws(() => decodeEnvelope(packValue(value)), hookError('BAD_PAYLOAD', message));
    });
  }
});

describe('unpackValue', () => {
  test('round trips plain values', () => {
    const value = { state: 'v42', list: [1, -2, 3.5, 'x', null, true], nested: { a: { b: 'c' } } };
    assert.deepEqual(unpackValue(packValue(value)), value);
  });

  test('an empty payload is BAD_PAYLOAD', () => {
    assert.throws(() => unpackValue(new Uint8Array(0)), hookError('BAD_PAYLOAD', /empty payload/));
  });

  test('a truncated map is BAD_PAYLOAD', () => {
    assert.throws(() => unpackValue(bytes(0x82, 0xa1)), hookError('BAD_PAYLOAD', /not valid msgpack/));
  });

  test('trailing bytes after a value are BAD_PAYLOAD', () => {
    assert.throws(() => unpackValue(bytes(0x01, 0x02)), hookError('BAD_PAYLOAD', /not valid msgpack/));
  });

  test('an unknown extension type is BAD_PAYLOAD', () => {
    assert.throws(() => unpackValue(bytes(0xd4, 0x01, 0x02)), hookError('BAD_PAYLOAD', /not valid msgpack/));
  });

  test('the never-used type byte 0xc1 is BAD_PAYLOAD', () => {
    assert.throws(() => unpackValue(bytes(0xc1)), hookError('BAD_PAYLOAD'));
  });

  test('a plugin reply of 0xc1 is BAD_PAYLOAD, not a zero-valued deny verdict', () => {
    assert.throws(() => decodeHookResult('on_request', bytes(0xc1)), hookError('BAD_PAYLOAD'));
  });

  test('a plugin reply that is a msgpack timestamp, not a map, is BAD_PAYLOAD', () => {
    assert.throws(() => decodeHookResult('on_connect', bytes(0xd6, 0xff, 0, 0, 0, 1)), hookError('BAD_PAYLOAD', /on_connect reply: expected a map/));
  });
});

// ---------------------------------------------------------------------------
// Frames

describe('encodeFrame', () => {
  test('prefixes the payload with its u32 big-endian length', () => {
    assert.deepEqual(encodeFrame(bytes(0xaa, 0xbb, 0xcc)), bytes(0, 0, 0, 3, 0xaa, 0xbb, 0xcc));
  });

  test('a zero-length payload is just four zero bytes', () => {
    assert.deepEqual(encodeFrame(new Uint8Array(0)), bytes(0, 0, 0, 0));
  });

  test('a payload of exactly 1 MiB is framed and one byte more is FRAME_TOO_LARGE', () => {
    const frame = encodeFrame(new Uint8Array(MAX_PAYLOAD));
    assert.deepEqual(frame.subarray(0, 4), bytes(0x00, 0x10, 0x00, 0x00));
    assert.throws(() => encodeFrame(new Uint8Array(MAX_PAYLOAD + 1)), hookError('FRAME_TOO_LARGE', /1048577 bytes/));
  });
});

describe('FrameDecoder', () => {
  const p1 = new TextEncoder().encode('first payload');
  const p2 = bytes(0x81, 0xa2, 0x6f, 0x6b, 0xc3);
  const stream = concat(encodeFrame(p1), encodeFrame(new Uint8Array(0)), encodeFrame(p2));
  const expected = [p1, new Uint8Array(0), p2];
  const plain = (list: Uint8Array[]): Uint8Array[] => list.map(raw);

  test('three frames split into three chunks at every pair of byte boundaries come out whole and in order', () => {
    for (let i = 0; i <= stream.length; i++) {
      for (let j = i; j <= stream.length; j++) {
        const dec = new FrameDecoder();
        const out = [...dec.push(stream.subarray(0, i)), ...dec.push(stream.subarray(i, j)), ...dec.push(stream.subarray(j))];
        assert.deepEqual(plain(out), expected, `split at ${i} and ${j}`);
        assert.equal(dec.pending, 0);
        dec.end();
      }
    }
  });

  test('a stream fed one byte at a time yields every frame', () => {
    const dec = new FrameDecoder();
    const out: Uint8Array[] = [];
    for (let i = 0; i < stream.length; i++) out.push(...dec.push(stream.subarray(i, i + 1)));
    assert.deepEqual(plain(out), expected);
  });

  test('several frames in one chunk all come out of one push', () => {
    assert.deepEqual(plain(new FrameDecoder().push(stream)), expected);
  });

  test('a header split across chunks waits for the rest', () => {
    const frame = encodeFrame(p2);
    const dec = new FrameDecoder();
    assert.deepEqual(dec.push(frame.subarray(0, 2)), []);
    assert.equal(dec.pending, 2);
    assert.deepEqual(plain(dec.push(frame.subarray(2))), [p2]);
  });

  test('a zero-length payload whose header arrives in pieces comes out as an empty payload', () => {
    const dec = new FrameDecoder();
    const out = [...dec.push(bytes(0, 0)), ...dec.push(bytes(0)), ...dec.push(bytes(0))];
    assert.deepEqual(plain(out), [new Uint8Array(0)]);
  });

  test('a payload of exactly 1 MiB is accepted', () => {
    const payload = new Uint8Array(MAX_PAYLOAD).fill(7);
    const frame = encodeFrame(payload);
    const dec = new FrameDecoder();
    const out = [...dec.push(frame.subarray(0, 1000)), ...dec.push(frame.subarray(1000))];
    assert.equal(out.length, 1);
    assert.equal(out[0].length, MAX_PAYLOAD);
    assert.equal(out[0][MAX_PAYLOAD - 1], 7);
  });

  test('a header announcing 1 MiB + 1 is FRAME_TOO_LARGE before any of the body arrives', () => {
    assert.throws(() => new FrameDecoder().push(bytes(0x00, 0x10, 0x00, 0x01)), hookError('FRAME_TOO_LARGE', /1048577 bytes/));
  });

  test('a too-large header split across chunks is FRAME_TOO_LARGE once it is complete', () => {
    const dec = new FrameDecoder();
    dec.push(bytes(0x00, 0x10));
    assert.throws(() => dec.push(bytes(0x00, 0x01, 0xff)), hookError('FRAME_TOO_LARGE'));
  });

  test('a smaller limit can be set per decoder', () => {
    const dec = new FrameDecoder(4);
    assert.deepEqual(plain(dec.push(encodeFrame(bytes(1, 2, 3, 4)))), [bytes(1, 2, 3, 4)]);
    assert.throws(() => dec.push(encodeFrame(bytes(1, 2, 3, 4, 5))), hookError('FRAME_TOO_LARGE', /over the limit of 4/));
  });

  test('end() in the middle of a body is FRAME_TRUNCATED naming the bytes received', () => {
    const dec = new FrameDecoder();
    dec.push(encodeFrame(new Uint8Array(10)).subarray(0, 7));
    assert.throws(() => dec.end(), hookError('FRAME_TRUNCATED', /\(7 bytes of it received\)/));
  });

  test('end() in the middle of a header is FRAME_TRUNCATED naming the bytes received', () => {
    const dec = new FrameDecoder();
    dec.push(bytes(0, 0));
    assert.throws(() => dec.end(), hookError('FRAME_TRUNCATED', /\(2 bytes of it received\)/));
  });

  test('end() at a frame boundary does not throw', () => {
    const dec = new FrameDecoder();
    dec.push(stream);
    assert.doesNotThrow(() => dec.end());
  });
});

describe('decodeFrames', () => {
  test('splits a body of concatenated frames into payloads', () => {
    const body = concat(encodeFrame(bytes(1)), encodeFrame(bytes(2, 3)), encodeFrame(bytes()));
    assert.deepEqual(decodeFrames(body).map(raw), [bytes(1), bytes(2, 3), bytes()]);
  });

  test('an empty body has no frames', () => {
    assert.deepEqual(decodeFrames(new Uint8Array(0)), []);
  });

  test('a body that stops mid-frame is FRAME_TRUNCATED', () => {
    const body = concat(encodeFrame(bytes(1)), encodeFrame(bytes(2, 3)).subarray(0, 5));
    assert.throws(() => decodeFrames(body), hookError('FRAME_TRUNCATED', /5 bytes/));
  });

  test('a body with a frame over the limit is FRAME_TOO_LARGE', () => {
    assert.throws(() => decodeFrames(concat(encodeFrame(bytes(1)), bytes(0xff, 0xff, 0xff, 0xff))), hookError('FRAME_TOO_LARGE'));
  });
});
