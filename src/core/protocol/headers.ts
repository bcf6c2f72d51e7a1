/**
 * @module headers
 * Header names and values between HTTP and plugins: Go's canonical names
 * (prox plugins look headers up case-sensitively by them) and canonical
 * maps and merges, the one-value header maps of docs/protocol.md §1.7,
 * the safety check that every header a plugin asks us to set must pass,
 * which client headers a route strips, and which Upgrade requests are
 * tunnelled.
 *
 * Applying headers to requests and responses is the gateway's business.
 */

import type { HeaderMap } from './protocol.ts';

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const canonicalCache = new Map<string, string>();
const CANONICAL_CACHE_MAX = 2048;

/**
 * Go's `CanonicalMIMEHeaderKey`: the first letter and every letter after a
 * hyphen upper case, the rest lower case. A name that is not a valid token
 * is returned unchanged, as Go does.
 *
 * @example
 * canonicalHeaderName('x-forwarded-for') // 'X-Forwarded-For'
 */
export function canonicalHeaderName(name: string): string {
  const hit = canonicalCache.get(name);
  if (hit !== undefined) return hit;
  let out = name;
  if (TOKEN.test(name)) {
    let upper = true;
    out = '';
    for (let i = 0; i < name.length; i++) {
      const c = name[i];
      out += upper ? c.toUpperCase() : c.toLowerCase();
      upper = c === '-';
    }
  }
  if (canonicalCache.size >= CANONICAL_CACHE_MAX) canonicalCache.clear();
  canonicalCache.set(name, out);
  return out;
}

/**
 * Builds the one-value-per-name map plugins receive: canonical names,
 * several values of one name joined with ", ", Set-Cookie keeps its first.
 *
 * @example
 * toHeaderMap(request.headers) // { 'Content-Type': 'text/plain', ... }
 */
export function toHeaderMap(headers: Iterable<[string, string]>): HeaderMap {
  const out: HeaderMap = {};
  for (const [name, value] of headers) {
    const key = canonicalHeaderName(name);
    const prev = out[key];
    if (prev === undefined) out[key] = value;
    else if (key !== 'Set-Cookie') out[key] = prev + ', ' + value;
  }
  return out;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1 and the usual extras), lower case. */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Headers a plugin may never set: hop-by-hop ones, and those that decide
 * how a message is framed or where it goes (Host, Content-Length), because
 * setting them would let a plugin smuggle requests.
 */
const FORBIDDEN_FROM_PLUGINS = new Set([...HOP_BY_HOP, 'host', 'content-length']);

/**
 * Returns why a header a plugin wants to set is not allowed, or '' when it
 * is fine: the name must be an HTTP token and not hop-by-hop, Host or
 * Content-Length; the value must not contain CR, LF or NUL.
 *
 * @example
 * headerProblem('X-User', 'alice')          // ''
 * headerProblem('X-User', 'a\r\nHost: evil') // 'header "X-User": value contains CR, LF or NUL'
 */
export function headerProblem(name: string, value: string): string {
  if (!TOKEN.test(name)) return `header name ${JSON.stringify(name)} is not a valid HTTP token`;
  if (FORBIDDEN_FROM_PLUGINS.has(name.toLowerCase())) return `header "${name}" may not be set by a plugin`;
  if (typeof value !== 'string') return `header "${name}": value is not a string`;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 13 || c === 10 || c === 0) return `header "${name}": value contains CR, LF or NUL`;
    if (c > 0xff) return `header "${name}": value has a character outside Latin-1 (encode it first)`;
  }
  return '';
}

/**
 * Checks every header of a verdict's map with `headerProblem`; returns the
 * first problem, or '' when all are fine.
 */
export function headerMapProblem(headers: HeaderMap): string {
  for (const name in headers) {
    const p = headerProblem(name, headers[name]);
    if (p) return p;
  }
  return '';
}

/**
 * A header map with every name in canonical form: the same object when it
 * already is (the usual case: maps built by `toHeaderMap`), else a new one
 * in which values of names that differ only in case are joined with ", ",
 * as `toHeaderMap` joins repeated headers. What plugins get is always
 * canonical, so `h['X-User']` finds the value whoever wrote `x-user`.
 *
 * @example
 * canonicalHeaderMap({ authorization: 'Bearer t' }) // { Authorization: 'Bearer t' }
 */
export function canonicalHeaderMap(h: HeaderMap): HeaderMap {
  let canonical = true;
  for (const name in h) {
    if (canonicalHeaderName(name) !== name) {
      canonical = false;
      break;
    }
  }
  if (canonical) return h;
  const out: HeaderMap = {};
  for (const name in h) {
    const key = canonicalHeaderName(name);
    const prev = out[key];
    if (prev === undefined) out[key] = h[name];
    else if (key !== 'Set-Cookie') out[key] = prev + ', ' + h[name];
  }
  return out;
}

/**
 * Applies a verdict's header changes to a canonical header map, as the next
 * plugin (and the merged verdict) must see them: `rm` names removed first,
 * then `set` values set, every name canonical (so a plugin's `x-user`
 * replaces the client's `X-User` instead of sitting next to it). Returns a
 * new map; `h` is not changed.
 *
 * @example
 * withHeaderChanges({ 'X-User': 'admin' }, { 'x-user': 'alice' }, []) // { 'X-User': 'alice' }
 */
export function withHeaderChanges(h: HeaderMap, set: HeaderMap, rm: readonly string[]): HeaderMap {
  const out: HeaderMap = { ...h };
  for (const name of rm) delete out[canonicalHeaderName(name)];
  for (const name in set) out[canonicalHeaderName(name)] = set[name];
  return out;
}

/**
 * True when a request asks for a WebSocket upgrade that the data planes
 * tunnel: a GET whose `Upgrade` is `websocket`. Any other Upgrade (`h2c`,
 * made-up tokens, websocket on POST) is a plain request, whose Upgrade and
 * Connection headers are dropped as hop-by-hop.
 *
 * @example
 * isWebSocketUpgrade('GET', 'websocket') // true
 * isWebSocketUpgrade('GET', 'h2c')       // false
 */
export function isWebSocketUpgrade(method: string, upgrade: string | null | undefined): boolean {
  return method === 'GET' && typeof upgrade === 'string' && upgrade.trim().toLowerCase() === 'websocket';
}

/**
 * Which client request headers a route removes before plugins and the
 * upstream see the request: names listed (lower case) in the gateway's and
 * the route's `strip_request_headers`, and, unless underscores are allowed,
 * every name holding "_" (as nginx ignores them: `X_User` would reach an
 * upstream that folds "_" into "-" as `X-User`).
 *
 * @example
 * const p: StripPolicy = { names: new Set(['x-user']), dropUnderscores: true };
 */
export interface StripPolicy {
  names: ReadonlySet<string>;
  dropUnderscores: boolean;
}

/**
 * The policy for one route from the config's two lists.
 *
 * @example
 * stripPolicy(['X-User'], ['X-Tenant'], 'drop') // { names: Set {'x-user', 'x-tenant'}, dropUnderscores: true }
 */
export function stripPolicy(gateway: readonly string[], route: readonly string[], underscores: 'drop' | 'allow'): StripPolicy {
  return { names: new Set([...gateway, ...route].map((n) => n.toLowerCase())), dropUnderscores: underscores !== 'allow' };
}

/**
 * True when the policy removes the header `name` from a client's request.
 *
 * @example
 * strippedByPolicy('x_user', { names: new Set(), dropUnderscores: true }) // true
 */
export function strippedByPolicy(name: string, policy: StripPolicy): boolean {
  if (policy.dropUnderscores && name.indexOf('_') >= 0) return true;
  return policy.names.size > 0 && policy.names.has(name.toLowerCase());
}

/**
 * The value of a header in a header list (`[name, value, ...]`, names in
 * any case), several values joined with ", " as `Headers.get` joins them;
 * null when it is absent. `lower` is the name in lower case.
 *
 * @example
 * listGet(['Accept', 'a', 'accept', 'b'], 'accept') // 'a, b'
 */
export function listGet(list: readonly string[], lower: string): string | null {
  let out: string | null = null;
  for (let i = 0; i < list.length; i += 2) {
    const n = list[i];
    if (n.length === lower.length && n.toLowerCase() === lower) out = out === null ? list[i + 1] : `${out}, ${list[i + 1]}`;
  }
  return out;
}

/**
 * `toHeaderMap` of a header list (`[name, value, ...]`, Node's `rawHeaders` form).
 *
 * @example
 * headerMapOfList(['authorization', 'Bearer t']) // { Authorization: 'Bearer t' }
 */
export function headerMapOfList(list: readonly string[]): HeaderMap {
  const out: HeaderMap = {};
  for (let i = 0; i < list.length; i += 2) {
    const key = canonicalHeaderName(list[i]);
    const prev = out[key];
    if (prev === undefined) out[key] = list[i + 1];
    else if (key !== 'Set-Cookie') out[key] = prev + ', ' + list[i + 1];
  }
  return out;
}

/**
 * A header list without the headers the policy strips: the same array
 * when none is stripped (the usual case), so nothing is copied.
 *
 * @example
 * stripList(['X_User', 'a', 'Accept', '*'], { names: new Set(), dropUnderscores: true }) // ['Accept', '*']
 */
export function stripList(list: string[], policy: StripPolicy): string[] {
  let out: string[] | null = null;
  for (let i = 0; i < list.length; i += 2) {
    if (!strippedByPolicy(list[i], policy)) {
      out?.push(list[i], list[i + 1]);
      continue;
    }
    out ??= list.slice(0, i);
  }
  return out ?? list;
}
