/**
 * @module headers
 * Header names and values between HTTP and plugins: Go's canonical names
 * (prox plugins look headers up case-sensitively by them), the one-value
 * header maps of PROTOCOL.md, and the safety check that every header a
 * plugin asks us to set must pass.
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
