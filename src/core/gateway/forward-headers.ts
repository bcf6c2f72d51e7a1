/**
 * @module gateway/forward-headers
 * The request headers a data plane forwards, as header lists: the
 * request id kept or made, the client's identity headers stripped where
 * configured, hop-by-hop headers dropped, a verdict's changes applied and
 * the X-Forwarded-* headers written by the gateway alone.
 */

import { HOP_BY_HOP } from '../protocol/headers.ts';
import type { AuthorizeResult } from '../protocol/protocol.ts';
import type { ClientInfo, HeaderList } from './pipeline.ts';

/** The lower-case names a Connection header lists, or null when there is none. */
function connectionNames(list: HeaderList): Set<string> | null {
  let out: Set<string> | null = null;
  for (let i = 0; i < list.length; i += 2) {
    const n = list[i];
    if (n.length !== 10 || n.toLowerCase() !== 'connection') continue;
    for (const name of list[i + 1].split(',')) (out ??= new Set()).add(name.trim().toLowerCase());
  }
  return out;
}

/** What a client's X-Request-Id may be to be kept: 1 to 128 of these characters. */
const REQUEST_ID = /^[A-Za-z0-9._:+/=@-]{1,128}$/;

/**
 * The request id of a request and its header list carrying it: the
 * client's X-Request-Id when it sent exactly one that is valid (1 to 128
 * letters, digits or `._:+/=@-`), else a new random UUID replacing whatever
 * it sent. Plugins, the upstream and the client's answer all see this id.
 *
 * @example
 * requestIdOf(['Host', 'a', 'X-Request-Id', 'abc-123']).id // 'abc-123'
 */
export function requestIdOf(list: HeaderList): { id: string; headers: HeaderList } {
  let at = -1;
  let count = 0;
  for (let i = 0; i < list.length; i += 2) {
    if (list[i].length === 12 && list[i].toLowerCase() === 'x-request-id') {
      at = i;
      count++;
    }
  }
  if (count === 1 && REQUEST_ID.test(list[at + 1])) return { id: list[at + 1], headers: list };
  const id = crypto.randomUUID();
  const out: HeaderList = [];
  for (let i = 0; i < list.length; i += 2) if (list[i].toLowerCase() !== 'x-request-id') out.push(list[i], list[i + 1]);
  out.push('X-Request-Id', id);
  return { id, headers: out };
}

/**
 * The headers of an upstream's answer that go to the client: hop-by-hop
 * ones, those its Connection header names, and its X-Request-Id removed.
 *
 * @example
 * clientHeaderList(['Connection', 'close, x-secret', 'X-Secret', '1', 'Content-Type', 'text/plain']) // ['Content-Type', 'text/plain']
 */
export function clientHeaderList(list: HeaderList): HeaderList {
  const conn = connectionNames(list);
  const out: HeaderList = [];
  for (let i = 0; i < list.length; i += 2) {
    const l = list[i].toLowerCase();
    // The client gets the gateway's X-Request-Id (the data plane adds it), never a second one.
    if (HOP_BY_HOP.has(l) || (conn !== null && conn.has(l)) || l === 'x-request-id') continue;
    out.push(list[i], list[i + 1]);
  }
  return out;
}

/**
 * The request headers for the upstream: the client's (already stripped by
 * the route's policy) without hop-by-hop ones, those the Connection header
 * names, and Expect; then the verdict's removals and additions; then
 * X-Forwarded-For (the client's chain, unless stripped or removed by a
 * plugin, never a plugin's, plus the client's IP), X-Forwarded-Proto and
 * X-Forwarded-Host.
 *
 * @example
 * forwardHeaderList(['Host', 'a.example', 'Connection', 'close'], null, client, 'a.example')
 * // ['Host', 'a.example', 'x-forwarded-for', '10.0.0.9', 'x-forwarded-proto', 'http', 'x-forwarded-host', 'a.example']
 */
export function forwardHeaderList(list: HeaderList, verdict: AuthorizeResult | null, client: ClientInfo, host: string): HeaderList {
  const conn = connectionNames(list);
  let removed: Set<string> | null = null;
  if (verdict) {
    for (const name of verdict.rm) (removed ??= new Set()).add(name.toLowerCase());
    for (const name in verdict.h) (removed ??= new Set()).add(name.toLowerCase());
  }
  const out: HeaderList = [];
  let xff: string | null = null;
  for (let i = 0; i < list.length; i += 2) {
    const l = list[i].toLowerCase();
    if (HOP_BY_HOP.has(l) || l === 'expect' || (conn !== null && conn.has(l))) continue;
    if (l === 'x-forwarded-for') {
      // The chain survives a plugin's set (the plugin's value is never used), not its removal.
      if (verdict === null || !verdict.rm.some((n) => n.toLowerCase() === l)) xff = xff === null ? list[i + 1] : `${xff}, ${list[i + 1]}`;
      continue;
    }
    if (l === 'x-forwarded-proto' || l === 'x-forwarded-host') continue;
    if (removed !== null && removed.has(l)) continue;
    out.push(list[i], list[i + 1]);
  }
  if (verdict) {
    for (const k in verdict.h) {
      const l = k.toLowerCase();
      if (l === 'x-forwarded-for' || l === 'x-forwarded-proto' || l === 'x-forwarded-host') continue;
      out.push(k, verdict.h[k]);
    }
  }
  out.push('x-forwarded-for', xff ? `${xff}, ${client.ip}` : client.ip, 'x-forwarded-proto', client.tls ? 'https' : 'http', 'x-forwarded-host', host);
  return out;
}
