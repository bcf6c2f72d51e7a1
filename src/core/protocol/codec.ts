/**
 * @module codec
 * The only place that knows the wire layout of docs/protocol.md §1: frames
 * (`[u32 BE length][payload]`), the envelope `{t, d}` with `d` as msgpack
 * bin, and the hook structs with their short keys. Used by the runner, the
 * edge worker, the SDK and the tests alike; Web standards and msgpackr only.
 *
 * Encoding writes plain msgpack maps (no records, no extensions) so Go's
 * msgpack decodes them, and omits empty fields like Go's `omitempty`.
 * Decoding is lenient where the protocol says so (missing keys are zero
 * values, unknown keys are ignored) and strict about types: a field of the
 * wrong type is a `BAD_PAYLOAD` error naming the field.
 */

import { C1, Packr, RESERVE_START_SPACE } from 'msgpackr';
import { HookgateError } from '../errors.ts';
import {
  HOOK as HOOK_TYPE,
  MAX_PAYLOAD,
  type AuthorizeResult,
  type ConnInfo,
  type ConnResult,
  type DisconnectInfo,
  type HookData,
  type HookName,
  type HookResult,
  type HookType,
  type RequestInfo,
  type ResponseModResult,
  type ResponsePair,
  type SpeedLimit,
} from './protocol.ts';

const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  variableMapSize: true,
  moreTypes: false,
  int64AsType: 'number',
});

const utf8 = new TextDecoder();
const utf8enc = new TextEncoder();

/**
 * Encodes any plain value as msgpack (plain maps, no extensions).
 *
 * @example
 * const bytes = packValue({ state: 'v42' });
 */
export function packValue(value: unknown): Uint8Array {
  return packr.pack(value);
}

/**
 * Decodes msgpack bytes; throws `BAD_PAYLOAD` when they are not valid
 * msgpack or hold trailing bytes.
 */
export function unpackValue(bytes: Uint8Array): unknown {
  if (bytes.length === 0) throw new HookgateError('BAD_PAYLOAD', 'empty payload is not msgpack');
  let v: unknown;
  try {
    v = packr.unpack(bytes);
  } catch (err) {
    throw new HookgateError('BAD_PAYLOAD', `payload is not valid msgpack (${(err as Error).message})`, { cause: err });
  }
  // msgpackr hands back a marker object for the never-used type byte 0xc1.
  if (v === C1) throw new HookgateError('BAD_PAYLOAD', 'payload is not valid msgpack (type byte 0xc1 is never used)');
  return v;
}

// ---------------------------------------------------------------------------
// Frames

/**
 * Prefixes a payload with its u32 big-endian length, in one new buffer.
 * Throws `FRAME_TOO_LARGE` for payloads over `maxPayload` (1 MiB).
 *
 * @example
 * socket.write(encodeFrame(packValue(result)));
 */
export function encodeFrame(payload: Uint8Array, maxPayload = MAX_PAYLOAD): Uint8Array {
  if (payload.length > maxPayload) {
    throw new HookgateError('FRAME_TOO_LARGE', `frame payload of ${payload.length} bytes exceeds the limit of ${maxPayload}`);
  }
  const out = new Uint8Array(4 + payload.length);
  writeU32(out, 0, payload.length);
  out.set(payload, 4);
  return out;
}

/**
 * Incremental frame decoder for a byte stream: feed it chunks as they
 * arrive, get back every payload that is complete (partial frames wait,
 * several frames in one chunk all come out).
 *
 * Not safe to share between streams. After it has thrown (a frame over the
 * limit) the stream is out of sync: close it. Returned payloads may be views
 * of the pushed chunk; decode them before the chunk's memory is reused.
 *
 * @example
 * const dec = new FrameDecoder();
 * socket.on('data', (chunk) => { for (const p of dec.push(chunk)) handle(p); });
 * socket.on('end', () => dec.end()); // throws FRAME_TRUNCATED mid-frame
 */
export class FrameDecoder {
  readonly maxPayload: number;
  #head = new Uint8Array(4);
  #headLen = 0;
  #body: Uint8Array | null = null;
  #bodyLen = 0;

  constructor(maxPayload = MAX_PAYLOAD) {
    this.maxPayload = maxPayload;
  }

  /** Bytes of an unfinished frame held back, waiting for the rest. */
  get pending(): number {
    return this.#body !== null ? 4 + this.#bodyLen : this.#headLen;
  }

  /** Feeds one chunk; returns the payloads it completed, in order. Throws `FRAME_TOO_LARGE`. */
  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let off = 0;
    const end = chunk.length;
    while (off < end) {
      const body = this.#body;
      if (body !== null) {
        const n = Math.min(body.length - this.#bodyLen, end - off);
        body.set(chunk.subarray(off, off + n), this.#bodyLen);
        this.#bodyLen += n;
        off += n;
        if (this.#bodyLen === body.length) {
          out.push(body);
          this.#body = null;
          this.#bodyLen = 0;
        }
        continue;
      }
      if (this.#headLen > 0 || end - off < 4) {
        const n = Math.min(4 - this.#headLen, end - off);
        this.#head.set(chunk.subarray(off, off + n), this.#headLen);
        this.#headLen += n;
        off += n;
        if (this.#headLen < 4) break;
        this.#headLen = 0;
        this.#startBody(readU32(this.#head, 0), out);
        continue;
      }
      const len = readU32(chunk, off);
      this.#check(len);
      if (end - off - 4 >= len) {
        out.push(chunk.subarray(off + 4, off + 4 + len));
        off += 4 + len;
      } else {
        off += 4;
        this.#startBody(len, out);
      }
    }
    return out;
  }

  /** Declares the stream finished; throws `FRAME_TRUNCATED` when it stopped mid-frame. */
  end(): void {
    const pending = this.pending;
    this.#head.fill(0);
    this.#headLen = 0;
    this.#body = null;
    this.#bodyLen = 0;
    if (pending > 0) {
      throw new HookgateError('FRAME_TRUNCATED', `stream ended in the middle of a frame (${pending} bytes of it received)`);
    }
  }

  #startBody(len: number, out: Uint8Array[]): void {
    this.#check(len);
    if (len === 0) out.push(new Uint8Array(0));
    else {
      this.#body = new Uint8Array(len);
      this.#bodyLen = 0;
    }
  }

  #check(len: number): void {
    if (len > this.maxPayload) {
      throw new HookgateError('FRAME_TOO_LARGE', `frame announces ${len} bytes, over the limit of ${this.maxPayload}`);
    }
  }
}

/**
 * Splits a complete body of concatenated frames into payloads (for the
 * runner's `POST /v1/hooks`). Throws `FRAME_TOO_LARGE` or `FRAME_TRUNCATED`.
 */
export function decodeFrames(body: Uint8Array, maxPayload = MAX_PAYLOAD): Uint8Array[] {
  const dec = new FrameDecoder(maxPayload);
  const out = dec.push(body);
  dec.end();
  return out;
}

// ---------------------------------------------------------------------------
// Envelope

/**
 * Encodes `{t, d}` with `d` as msgpack bin and frames it, in one buffer:
 * the hot path of every hook call, written by hand to avoid a second pack
 * and copy. Throws `FRAME_TOO_LARGE` when the result would exceed 1 MiB.
 *
 * @example
 * socket.write(encodeEnvelopeFrame(HOOK.on_request, encodeHookData('on_request', info)));
 */
export function encodeEnvelopeFrame(t: HookType, data: Uint8Array): Uint8Array {
  const n = data.length;
  const binHead = n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
  const payloadLen = 6 + binHead + n;
  if (payloadLen > MAX_PAYLOAD) {
    throw new HookgateError('FRAME_TOO_LARGE', `hook frame of ${payloadLen} bytes exceeds the limit of ${MAX_PAYLOAD}`);
  }
  const out = new Uint8Array(4 + payloadLen);
  writeU32(out, 0, payloadLen);
  // fixmap(2), "t": positive fixint, "d": bin
  out[4] = 0x82;
  out[5] = 0xa1;
  out[6] = 0x74;
  out[7] = t;
  out[8] = 0xa1;
  out[9] = 0x64;
  let p = 10;
  if (binHead === 2) {
    out[p++] = 0xc4;
    out[p++] = n;
  } else if (binHead === 3) {
    out[p++] = 0xc5;
    out[p++] = n >>> 8;
    out[p++] = n & 0xff;
  } else {
    out[p++] = 0xc6;
    writeU32(out, p, n);
    p += 4;
  }
  out.set(data, p);
  return out;
}

/** The envelope without its frame header: `{t, d}`. */
export function encodeEnvelope(t: HookType, data: Uint8Array): Uint8Array {
  return encodeEnvelopeFrame(t, data).subarray(4);
}

/** Frame header (4) + fixmap/"t"/type/"d" (6) + the largest bin header (5). */
const CALL_HEAD_MAX = 15;

/**
 * Encodes hook data and wraps it in its envelope and frame, ready to write
 * to a plugin socket: the bytes of `encodeEnvelopeFrame(HOOK[hook],
 * encodeHookData(hook, data))`, built without copying the data (msgpackr
 * packs it after reserved space that then takes the headers).
 * Throws `FRAME_TOO_LARGE` over 1 MiB.
 *
 * @example
 * socket.write(encodeHookFrame('on_request', info));
 */
export function encodeHookFrame<K extends HookName>(hook: K, data: Partial<HookData[K]>): Uint8Array {
  const buf: Uint8Array = packr.pack(wireOf(hook, 'data', data), RESERVE_START_SPACE | CALL_HEAD_MAX);
  const n = buf.length - CALL_HEAD_MAX;
  const binHead = n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
  const payloadLen = 6 + binHead + n;
  if (payloadLen > MAX_PAYLOAD) {
    throw new HookgateError('FRAME_TOO_LARGE', `hook frame of ${payloadLen} bytes exceeds the limit of ${MAX_PAYLOAD}`);
  }
  const start = CALL_HEAD_MAX - (10 + binHead);
  writeU32(buf, start, payloadLen);
  let p = start + 4;
  buf[p++] = 0x82;
  buf[p++] = 0xa1;
  buf[p++] = 0x74;
  buf[p++] = HOOK_TYPE[hook];
  buf[p++] = 0xa1;
  buf[p++] = 0x64;
  if (binHead === 2) {
    buf[p++] = 0xc4;
    buf[p++] = n;
  } else if (binHead === 3) {
    buf[p++] = 0xc5;
    buf[p++] = n >>> 8;
    buf[p++] = n & 0xff;
  } else {
    buf[p++] = 0xc6;
    writeU32(buf, p, n);
  }
  return buf.subarray(start);
}

/**
 * Encodes a hook result and frames it, ready to write back to the runner
 * (what `encodeFrame(encodeHookResult(hook, result))` gives, without the
 * copy). Throws `FRAME_TOO_LARGE` over 1 MiB.
 */
export function encodeResultFrame<K extends HookName>(hook: K, result: Partial<NonNullable<HookResult[K]>> | null): Uint8Array {
  const buf: Uint8Array = packr.pack(wireOf(hook, 'result', result ?? {}), RESERVE_START_SPACE | 4);
  const n = buf.length - 4;
  if (n > MAX_PAYLOAD) throw new HookgateError('FRAME_TOO_LARGE', `result frame payload of ${n} bytes exceeds the limit of ${MAX_PAYLOAD}`);
  writeU32(buf, 0, n);
  return buf;
}

/**
 * Decodes an envelope payload. Throws `BAD_PAYLOAD` unless it is a map with
 * a positive integer `t` and a bin (or, leniently, str) `d`.
 */
export function decodeEnvelope(payload: Uint8Array): { t: number; d: Uint8Array } {
  // Fast path: the layout every encoder we know writes ({t, d} in that
  // order, t a positive fixint, d a bin); anything else goes to msgpackr.
  if (payload.length >= 8 && payload[0] === 0x82 && payload[1] === 0xa1 && payload[2] === 0x74 && payload[4] === 0xa1 && payload[5] === 0x64) {
    const t = payload[3];
    const b = payload[6];
    if (t > 0 && t < 0x80) {
      let start = -1;
      let n = -1;
      if (b === 0xc4) {
        start = 8;
        n = payload[7];
      } else if (b === 0xc5 && payload.length >= 9) {
        start = 9;
        n = (payload[7] << 8) | payload[8];
      } else if (b === 0xc6 && payload.length >= 11) {
        start = 11;
        n = readU32(payload, 7);
      }
      if (start > 0 && start + n === payload.length) return { t, d: payload.subarray(start) };
    }
  }
  const v = unpackValue(payload);
  if (!isMap(v)) throw new HookgateError('BAD_PAYLOAD', 'envelope: expected a map with "t" and "d"');
  const t = v.t;
  if (typeof t !== 'number' || !Number.isInteger(t) || t <= 0) {
    throw new HookgateError('BAD_PAYLOAD', 'envelope.t: expected a positive integer hook type');
  }
  const d = v.d;
  if (d instanceof Uint8Array) return { t, d };
  if (typeof d === 'string') return { t, d: utf8enc.encode(d) };
  if (d === undefined || d === null) return { t, d: new Uint8Array(0) };
  throw new HookgateError('BAD_PAYLOAD', 'envelope.d: expected bin (the msgpack-encoded hook data)');
}

// ---------------------------------------------------------------------------
// Structs: encoding (omitempty)

type Wire = Record<string, unknown>;

function putStr(o: Wire, k: string, v: string): void {
  if (v) o[k] = v;
}
function putInt(o: Wire, k: string, v: number): void {
  if (v) o[k] = Math.trunc(v);
}
function putBool(o: Wire, k: string, v: boolean): void {
  if (v) o[k] = true;
}
function putMap(o: Wire, k: string, v: Record<string, string> | null | undefined): void {
  if (v) for (const _ in v) return void (o[k] = v);
}

function requestWire(v: Partial<RequestInfo>): Wire {
  const o: Wire = {};
  putStr(o, 'r', v.r ?? '');
  putStr(o, 'm', v.m ?? '');
  putStr(o, 'p', v.p ?? '');
  putStr(o, 'q', v.q ?? '');
  putStr(o, 'd', v.d ?? '');
  putStr(o, 'ho', v.ho ?? '');
  putStr(o, 'pr', v.pr ?? '');
  putStr(o, 'a', v.a ?? '');
  putInt(o, 'cl', v.cl ?? 0);
  putMap(o, 'h', v.h);
  if (v.bd && v.bd.length) o.bd = v.bd;
  putStr(o, 'md', v.md ?? '');
  putStr(o, 'mg', v.mg ?? '');
  putStr(o, 'mp', v.mp ?? '');
  putMap(o, 'v', v.v);
  putStr(o, 'tg', v.tg ?? '');
  return o;
}

function authorizeWire(v: Partial<AuthorizeResult>): Wire {
  const o: Wire = {};
  putBool(o, 'ok', v.ok ?? false);
  putBool(o, 'dr', v.dr ?? false);
  putBool(o, 'fb', v.fb ?? false);
  putInt(o, 's', v.s ?? 0);
  if (v.b && v.b.length) o.b = v.b;
  putMap(o, 'h', v.h);
  if (v.rm && v.rm.length) o.rm = v.rm;
  if (v.sp && (v.sp.dl || v.sp.ul || v.sp.gk)) {
    const sp: Wire = {};
    if (v.sp.dl) sp.dl = v.sp.dl;
    if (v.sp.ul) sp.ul = v.sp.ul;
    putStr(sp, 'gk', v.sp.gk);
    o.sp = sp;
  }
  putBool(o, 'cq', v.cq ?? false);
  putStr(o, 'rp', v.rp ?? '');
  putStr(o, 'e', v.e ?? '');
  putBool(o, 'nc', v.nc ?? false);
  return o;
}

function responseModWire(v: Partial<ResponseModResult>): Wire {
  const o: Wire = {};
  putInt(o, 's', v.s ?? 0);
  putMap(o, 'h', v.h);
  if (v.rm && v.rm.length) o.rm = v.rm;
  putStr(o, 'e', v.e ?? '');
  putStr(o, 'b', v.b ?? '');
  return o;
}

function wireOf(hook: HookName, kind: 'data' | 'result', v: unknown): Wire {
  if (kind === 'data') {
    switch (hook) {
      case 'on_request':
        return requestWire(v as Partial<RequestInfo>);
      case 'on_response': {
        const pair = v as Partial<ResponsePair>;
        const resp: Wire = {};
        putInt(resp, 's', pair.resp?.s ?? 0);
        putMap(resp, 'h', pair.resp?.h);
        return { req: requestWire(pair.req ?? {}), resp };
      }
      case 'on_connect': {
        const c = v as Partial<ConnInfo>;
        const o: Wire = {};
        putStr(o, 'r', c.r ?? '');
        putStr(o, 'd', c.d ?? '');
        putStr(o, 'a', c.a ?? '');
        putStr(o, 'md', c.md ?? '');
        putStr(o, 'mg', c.mg ?? '');
        return o;
      }
      case 'on_disconnect': {
        const c = v as Partial<DisconnectInfo>;
        const o: Wire = {};
        putStr(o, 'r', c.r ?? '');
        putStr(o, 'tg', c.tg ?? '');
        putStr(o, 'a', c.a ?? '');
        putInt(o, 'rx', c.rx ?? 0);
        putInt(o, 'tx', c.tx ?? 0);
        putInt(o, 'ms', c.ms ?? 0);
        return o;
      }
    }
  }
  switch (hook) {
    case 'on_request':
      return authorizeWire(v as Partial<AuthorizeResult>);
    case 'on_response':
      return responseModWire(v as Partial<ResponseModResult>);
    case 'on_connect': {
      const o: Wire = {};
      const c = v as Partial<ConnResult>;
      putBool(o, 'ok', c.ok ?? false);
      putStr(o, 'e', c.e ?? '');
      putInt(o, 's', c.s ?? 0);
      putStr(o, 'b', c.b ?? '');
      return o;
    }
    case 'on_disconnect':
      return {};
  }
}

/**
 * Encodes hook data (what the runner sends a plugin) as msgpack, short keys,
 * empty fields omitted. Missing fields are treated as empty.
 *
 * @example
 * const d = encodeHookData('on_request', { r: 'api', m: 'GET', p: '/v1/x' });
 */
export function encodeHookData<K extends HookName>(hook: K, data: Partial<HookData[K]>): Uint8Array {
  return packr.pack(wireOf(hook, 'data', data));
}

/**
 * Encodes a hook result (what a plugin answers) as msgpack, short keys,
 * empty fields omitted. on_disconnect encodes as an empty map.
 *
 * @example
 * const r = encodeHookResult('on_request', { ok: true, h: { 'X-User': 'alice' } });
 */
export function encodeHookResult<K extends HookName>(hook: K, result: Partial<NonNullable<HookResult[K]>> | null): Uint8Array {
  return packr.pack(wireOf(hook, 'result', result ?? {}));
}

// ---------------------------------------------------------------------------
// Structs: lenient decoding

/** A decoded msgpack map: a plain object (not an array, bin, Date from a timestamp, or marker). */
function isMap(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function bad(path: string, expected: string): never {
  throw new HookgateError('BAD_PAYLOAD', `${path}: expected ${expected}`);
}

function getStr(o: Record<string, unknown>, k: string, path: string): string {
  const v = o[k];
  if (typeof v === 'string') return v;
  if (v === undefined || v === null) return '';
  if (v instanceof Uint8Array) return utf8.decode(v);
  return bad(`${path}.${k}`, 'a string');
}

function getInt(o: Record<string, unknown>, k: string, path: string): number {
  const v = o[k];
  if (typeof v === 'number' && Number.isFinite(v)) return Math.trunc(v);
  if (v === undefined || v === null) return 0;
  if (typeof v === 'bigint') return Number(v);
  return bad(`${path}.${k}`, 'an integer');
}

function getNum(o: Record<string, unknown>, k: string, path: string): number {
  const v = o[k];
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (v === undefined || v === null) return 0;
  if (typeof v === 'bigint') return Number(v);
  return bad(`${path}.${k}`, 'a number');
}

function getBool(o: Record<string, unknown>, k: string, path: string): boolean {
  const v = o[k];
  if (typeof v === 'boolean') return v;
  if (v === undefined || v === null) return false;
  return bad(`${path}.${k}`, 'a boolean');
}

function getStrMap(o: Record<string, unknown>, k: string, path: string): Record<string, string> {
  const v = o[k];
  if (v === undefined || v === null) return {};
  if (!isMap(v)) return bad(`${path}.${k}`, 'a map of strings');
  for (const name in v) {
    const x = v[name];
    if (typeof x === 'string') continue;
    if (x instanceof Uint8Array) v[name] = utf8.decode(x);
    else bad(`${path}.${k}[${JSON.stringify(name)}]`, 'a string');
  }
  return v as Record<string, string>;
}

function getBytes(o: Record<string, unknown>, k: string, path: string): Uint8Array | null {
  const v = o[k];
  if (v === undefined || v === null) return null;
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return utf8enc.encode(v);
  return bad(`${path}.${k}`, 'bin');
}

function root(v: unknown, path: string): Record<string, unknown> {
  if (isMap(v)) return v;
  return bad(path, 'a map');
}

function requestOf(o: Record<string, unknown>, path: string): RequestInfo {
  return {
    r: getStr(o, 'r', path),
    m: getStr(o, 'm', path),
    p: getStr(o, 'p', path),
    q: getStr(o, 'q', path),
    d: getStr(o, 'd', path),
    ho: getStr(o, 'ho', path),
    pr: getStr(o, 'pr', path),
    a: getStr(o, 'a', path),
    cl: getInt(o, 'cl', path),
    h: getStrMap(o, 'h', path),
    bd: getBytes(o, 'bd', path),
    md: getStr(o, 'md', path),
    mg: getStr(o, 'mg', path),
    mp: getStr(o, 'mp', path),
    v: getStrMap(o, 'v', path),
    tg: getStr(o, 'tg', path),
  };
}

function speedOf(o: Record<string, unknown>, path: string): SpeedLimit | null {
  const v = o.sp;
  if (v === undefined || v === null) return null;
  const sp = root(v, `${path}.sp`);
  return { dl: getNum(sp, 'dl', `${path}.sp`), ul: getNum(sp, 'ul', `${path}.sp`), gk: getStr(sp, 'gk', `${path}.sp`) };
}

function bodyOf(o: Record<string, unknown>, path: string): string | Uint8Array {
  const v = o.b;
  if (typeof v === 'string' || v instanceof Uint8Array) return v;
  if (v === undefined || v === null) return '';
  return bad(`${path}.b`, 'a string or bin');
}

function strList(o: Record<string, unknown>, k: string, path: string): string[] {
  const v = o[k];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) return bad(`${path}.${k}`, 'an array of strings');
  return v.map((x, i) => (typeof x === 'string' ? x : x instanceof Uint8Array ? utf8.decode(x) : bad(`${path}.${k}[${i}]`, 'a string')));
}

/** Decodes a plain msgpack-decoded value as the data of `hook` (zero values for missing keys). */
export function hookDataOf<K extends HookName>(hook: K, v: unknown): HookData[K] {
  const path = hook;
  const o = root(v, path);
  switch (hook) {
    case 'on_request':
      return requestOf(o, path) as HookData[K];
    case 'on_response': {
      const resp = o.resp === undefined || o.resp === null ? {} : root(o.resp, `${path}.resp`);
      const req = o.req === undefined || o.req === null ? {} : root(o.req, `${path}.req`);
      const pair: ResponsePair = {
        req: requestOf(req, `${path}.req`),
        resp: { s: getInt(resp, 's', `${path}.resp`), h: getStrMap(resp, 'h', `${path}.resp`) },
      };
      return pair as HookData[K];
    }
    case 'on_connect':
      return {
        r: getStr(o, 'r', path),
        d: getStr(o, 'd', path),
        a: getStr(o, 'a', path),
        md: getStr(o, 'md', path),
        mg: getStr(o, 'mg', path),
      } satisfies ConnInfo as HookData[K];
    default:
      return {
        r: getStr(o, 'r', path),
        tg: getStr(o, 'tg', path),
        a: getStr(o, 'a', path),
        rx: getInt(o, 'rx', path),
        tx: getInt(o, 'tx', path),
        ms: getInt(o, 'ms', path),
      } satisfies DisconnectInfo as HookData[K];
  }
}

/** Decodes a plain msgpack-decoded value as the result of `hook` (zero values for missing keys). */
export function hookResultOf<K extends HookName>(hook: K, v: unknown): HookResult[K] {
  const path = `${hook} reply`;
  if (hook === 'on_disconnect') return null as HookResult[K];
  const o = root(v, path);
  switch (hook) {
    case 'on_request':
      return {
        ok: getBool(o, 'ok', path),
        dr: getBool(o, 'dr', path),
        fb: getBool(o, 'fb', path),
        s: getInt(o, 's', path),
        b: bodyOf(o, path),
        h: getStrMap(o, 'h', path),
        rm: strList(o, 'rm', path),
        sp: speedOf(o, path),
        cq: getBool(o, 'cq', path),
        rp: getStr(o, 'rp', path),
        e: getStr(o, 'e', path),
        // optional: present only when set, so verdicts compare as before
        ...(getBool(o, 'nc', path) ? { nc: true } : {}),
      } satisfies AuthorizeResult as HookResult[K];
    case 'on_response':
      return {
        s: getInt(o, 's', path),
        h: getStrMap(o, 'h', path),
        rm: strList(o, 'rm', path),
        e: getStr(o, 'e', path),
        b: getStr(o, 'b', path),
      } satisfies ResponseModResult as HookResult[K];
    default:
      return { ok: getBool(o, 'ok', path), e: getStr(o, 'e', path), s: getInt(o, 's', path), b: getStr(o, 'b', path) } satisfies ConnResult as HookResult[K];
  }
}

/**
 * Decodes msgpack hook data (what a plugin receives in `d`). Throws
 * `BAD_PAYLOAD` naming the field when something has the wrong type.
 */
export function decodeHookData<K extends HookName>(hook: K, bytes: Uint8Array): HookData[K] {
  return hookDataOf(hook, unpackValue(bytes));
}

/**
 * Decodes a plugin's msgpack reply for `hook`. Throws `BAD_PAYLOAD` naming
 * the field when something has the wrong type.
 *
 * @example
 * const verdict = decodeHookResult('on_request', payload); // verdict.ok, verdict.h, ...
 */
export function decodeHookResult<K extends HookName>(hook: K, bytes: Uint8Array): HookResult[K] {
  if (hook === 'on_disconnect') return null as HookResult[K];
  return hookResultOf(hook, unpackValue(bytes));
}

// ---------------------------------------------------------------------------

function writeU32(buf: Uint8Array, off: number, n: number): void {
  buf[off] = n >>> 24;
  buf[off + 1] = (n >>> 16) & 0xff;
  buf[off + 2] = (n >>> 8) & 0xff;
  buf[off + 3] = n & 0xff;
}

function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off] << 24) >>> 0) + (buf[off + 1] << 16) + (buf[off + 2] << 8) + buf[off + 3];
}
