/**
 * @module protocol/structs
 * The hook structs with their short keys (docs/protocol.md §1.6): encoded
 * as plain maps with empty fields omitted (like Go's `omitempty`), decoded
 * leniently where the protocol says so (missing keys are zero values,
 * unknown keys are ignored) and strictly about types (a field of the wrong
 * type is a `BAD_PAYLOAD` error naming it). RequestInfo, the struct every
 * hook carries, is encoded and decoded from one field table.
 */

import { HookgateError } from '../errors.ts';
import { isMap, packr, unpackValue, utf8, utf8enc } from './msgpack.ts';
import type {
  AuthorizeResult,
  ConnInfo,
  ConnResult,
  DisconnectInfo,
  HookData,
  HookName,
  HookResult,
  RequestInfo,
  ResponseModResult,
  ResponsePair,
  SpeedLimit,
} from './protocol.ts';

// ---------------------------------------------------------------------------
// encoding (omitempty)

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

/**
 * RequestInfo's fields in wire order, each with its kind: the one list
 * both `requestWire` and `requestOf` walk, so a new field is added once.
 */
const REQUEST_FIELDS: ReadonlyArray<readonly [keyof RequestInfo, 'str' | 'int' | 'map' | 'bytes']> = [
  ['r', 'str'],
  ['m', 'str'],
  ['p', 'str'],
  ['q', 'str'],
  ['d', 'str'],
  ['ho', 'str'],
  ['pr', 'str'],
  ['a', 'str'],
  ['cl', 'int'],
  ['h', 'map'],
  ['bd', 'bytes'],
  ['md', 'str'],
  ['mg', 'str'],
  ['mp', 'str'],
  ['v', 'map'],
  ['tg', 'str'],
];

function requestWire(v: Partial<RequestInfo>): Wire {
  const o: Wire = {};
  for (const [k, kind] of REQUEST_FIELDS) {
    const x = v[k];
    if (x === undefined || x === null) continue;
    if (kind === 'str') putStr(o, k, x as string);
    else if (kind === 'int') putInt(o, k, x as number);
    else if (kind === 'map') putMap(o, k, x as Record<string, string>);
    else if ((x as Uint8Array).length) o[k] = x;
  }
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

/** The plain map `encodeHookData` / `encodeHookResult` pack (the envelope encoder packs it in place). */
export function wireOf(hook: HookName, kind: 'data' | 'result', v: unknown): Wire {
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
// lenient decoding


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
  const out: Record<string, unknown> = {};
  for (const [k, kind] of REQUEST_FIELDS) {
    out[k] = kind === 'str' ? getStr(o, k, path) : kind === 'int' ? getInt(o, k, path) : kind === 'map' ? getStrMap(o, k, path) : getBytes(o, k, path);
  }
  return out as unknown as RequestInfo;
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
