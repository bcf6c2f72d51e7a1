/**
 * @module protocol/envelope
 * The envelope `{t, d}` (docs/protocol.md §1.2) with `d` as msgpack bin,
 * framed: the bytes written to and read from a plugin socket on every hook
 * call, built by hand in one buffer on the hot path.
 */

import { RESERVE_START_SPACE } from 'msgpackr';
import { HookgateError } from '../errors.ts';
import { readU32, writeU32 } from './frames.ts';
import { isMap, packr, unpackValue, utf8enc } from './msgpack.ts';
import { HOOK as HOOK_TYPE, MAX_PAYLOAD, type HookData, type HookName, type HookResult, type HookType } from './protocol.ts';
import { wireOf } from './structs.ts';

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
