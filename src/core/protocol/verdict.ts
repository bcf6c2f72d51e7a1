/**
 * @module protocol/verdict
 * The verdict rules of docs/protocol.md, defined once for every data plane
 * (the runner's dispatch, gateway workers, the edge): what a plugin's reply
 * may say (header mutation rules, statuses, rewrite paths), how the replies
 * of a route's plugins merge, and the failure verdicts (`on_error`, an
 * unknown route) with the one deny body.
 *
 * In short:
 * - on_request: plugins run in binding order; the first verdict that is not
 *   an allow (deny, drop or fallback) short-circuits and is returned as the
 *   plugin gave it. Allowed headers merge by canonical name (a later plugin
 *   overrides an earlier one's value, and the client's), and later plugins
 *   see the headers earlier ones added; `rm` removes request headers for
 *   later plugins and the upstream (a later `h` may set one again); `rp`
 *   and `sp` take the last non-empty value, `cq` is sticky. Header maps
 *   plugins get are canonical whoever called (gateway, hook API).
 * - on_response: plugins run in order, each seeing the status and headers
 *   as earlier plugins left them; the merged result applies all of them.
 * - on_connect: the first refusal wins.
 * - A plugin that is down, restarting, not yet ready, times out, or answers
 *   garbage, a forbidden header (set or removed) or status (on_response
 *   1xx) yields its binding's `on_error` verdict:
 *   `deny` (503, and the verdict's `e` says why) or `allow` (the plugin is
 *   skipped).
 *
 * Calling the plugins in order and short-circuiting is the caller's
 * business (`node-runner/plugin/dispatch.ts`); this module is plain data in,
 * plain data out.
 */

import { decodeHookResult } from './codec.ts';
import { HookgateError } from '../errors.ts';
import { canonicalHeaderMap, canonicalHeaderName, headerMapProblem, headerProblem } from './headers.ts';
import type { AuthorizeResult, ConnResult, RequestInfo, ResponseModResult, ResponsePair } from './protocol.ts';

/** The body of every failure verdict that names none (a binding's on_error, an unknown route, an edge that cannot reach a runner). */
export const DENY_BODY = 'service unavailable\n';

/**
 * The status a failure verdict answers with: its own when it is a final
 * status (200 to 599), else 503.
 *
 * @example
 * failureStatus(0) // 503
 */
export function failureStatus(s: number): number {
  return s >= 200 && s <= 599 ? s : 503;
}

/** An allow that changes nothing: what merging starts from. */
export function allowResult(): AuthorizeResult {
  return { ok: true, dr: false, fb: false, s: 0, b: '', h: {}, rm: [], sp: null, cq: false, rp: '', e: '' };
}

/** The failure verdict of on_request (a binding's `on_error: deny`, an unknown route): 503, the deny body, `e` saying why. */
export function denyOnError(why: string): AuthorizeResult {
  return { ok: false, dr: false, fb: false, s: 503, b: DENY_BODY, h: {}, rm: [], sp: null, cq: false, rp: '', e: why };
}

/** Whether a header map is empty. */
export function isEmpty(o: object): boolean {
  for (const _ in o) return false;
  return true;
}

/**
 * Adds one allow's header changes to the merged verdict, names canonical:
 * a removal drops what earlier plugins set and is applied to the client's
 * request; a later `h` sets the header again (removals apply before `h`).
 */
export function mergeRequestChanges(merged: AuthorizeResult, res: AuthorizeResult): void {
  for (const raw of res.rm) {
    const name = canonicalHeaderName(raw);
    delete merged.h[name];
    if (!merged.rm.includes(name)) merged.rm.push(name);
  }
  for (const raw in res.h) merged.h[canonicalHeaderName(raw)] = res.h[raw];
}

/** The request info with canonical header names (a hook API caller or `plugin-call` may send any). */
export function canonicalRequest(info: RequestInfo): RequestInfo {
  const h = canonicalHeaderMap(info.h);
  return h === info.h ? info : { ...info, h };
}

/** The response pair with canonical header names, request and response. */
export function canonicalPair(pair: ResponsePair): ResponsePair {
  const req = canonicalRequest(pair.req);
  const h = canonicalHeaderMap(pair.resp.h);
  return req === pair.req && h === pair.resp.h ? pair : { req, resp: { s: pair.resp.s, h } };
}

/** A rewritten path must be an origin-form path: "/" first, no controls, spaces, "?" or "#". */
const SAFE_PATH = /^\/[^\x00-\x20\x7f?#]*$/;

// Decoding a reply with the rules applied. A plugin's reply never carries hookgate's failure fields (`e` and what
// goes with it): those are the runner's to set.
export function decodeAuthorize(payload: Uint8Array): AuthorizeResult {
  const res = decodeHookResult('on_request', payload);
  res.e = '';
  delete res.nc;
  checkAuthorize(res);
  return res;
}

export function decodeResponseMod(payload: Uint8Array): ResponseModResult {
  const res = decodeHookResult('on_response', payload);
  res.e = res.b = '';
  checkResponseMod(res);
  return res;
}

export function decodeConnect(payload: Uint8Array): ConnResult {
  const res = decodeHookResult('on_connect', payload);
  res.e = res.b = '';
  res.s = 0;
  return res;
}

/** Throws `BAD_VERDICT` when an on_request reply breaks the header mutation rules, rewrites to an unsafe path or gives a bad status. */
export function checkAuthorize(res: AuthorizeResult): void {
  const p = headerMapProblem(res.h);
  if (p) throw new HookgateError('BAD_VERDICT', `forbidden verdict: ${p}`);
  // A plugin may remove what it may set: not hop-by-hop headers, Host or Content-Length.
  for (const name of res.rm) {
    if (headerProblem(name, '')) throw new HookgateError('BAD_VERDICT', `forbidden verdict: cannot remove request header ${JSON.stringify(name.slice(0, 100))}`);
  }
  if (res.rp && (!SAFE_PATH.test(res.rp) || res.rp.startsWith('//'))) {
    throw new HookgateError('BAD_VERDICT', `forbidden verdict: rewrite path ${JSON.stringify(res.rp.slice(0, 100))} is not a plain absolute path`);
  }
  if (res.s !== 0 && (res.s < 100 || res.s > 599)) throw new HookgateError('BAD_VERDICT', `forbidden verdict: status ${res.s}`);
}

/** Throws `BAD_VERDICT` when an on_response reply breaks the header mutation rules or gives a status that is not final. */
export function checkResponseMod(res: ResponseModResult): void {
  const p = headerMapProblem(res.h);
  if (p) throw new HookgateError('BAD_VERDICT', `forbidden verdict: ${p}`);
  for (const name of res.rm) {
    if (headerProblem(name, '').startsWith('header name')) throw new HookgateError('BAD_VERDICT', `forbidden verdict: cannot remove ${JSON.stringify(name)}`);
  }
  // 1xx is not a final status: the response it would replace cannot be sent with it.
  if (res.s !== 0 && (res.s < 200 || res.s > 599)) throw new HookgateError('BAD_VERDICT', `forbidden verdict: status ${res.s}`);
}

/** The failure modification of on_response: 503, the deny body, `e` saying why. */
export function failedResponseMod(why: string): ResponseModResult {
  return { s: 503, h: {}, rm: [], e: why, b: DENY_BODY };
}

/** The failure result of on_connect: refused with 503 and the deny body, `e` saying why. */
export function failedConnect(why: string): ConnResult {
  return { ok: false, e: why, s: 503, b: DENY_BODY };
}

/**
 * Adds one on_response modification to the merged one, names canonical: a
 * removal drops what earlier plugins set, a later set takes a removed name
 * back, the last non-zero status wins.
 */
export function mergeResponseChanges(merged: ResponseModResult, res: ResponseModResult): void {
  for (const raw of res.rm) {
    const name = canonicalHeaderName(raw);
    delete merged.h[name];
    if (!merged.rm.includes(name)) merged.rm.push(name);
  }
  for (const raw in res.h) {
    const name = canonicalHeaderName(raw);
    merged.h[name] = res.h[raw];
    const i = merged.rm.indexOf(name);
    if (i >= 0) merged.rm.splice(i, 1);
  }
  if (res.s) merged.s = res.s;
}
