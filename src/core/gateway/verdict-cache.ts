/**
 * @module verdict-cache
 * The verdict cache of both data planes: what an on_request verdict's key
 * is made of (`keyMaterial`), and a bounded LRU of verdicts that decides
 * hit, miss and stale on an injected clock and makes one call for
 * concurrent misses on one key (`VerdictCache`). `CachedHooks` puts one in
 * front of any `HookClient`, for a caller that sees one merged verdict per
 * route (the edge worker).
 *
 * Rules (docs: README "Verdict cache"):
 * - Only on_request verdicts are cached. An allow is kept for `ttl`; a deny,
 *   drop or fallback for `negative_ttl` (0: not kept); a failed call (time
 *   out, crash, garbage, plugin down) is never kept.
 * - A failed call is answered with the expired verdict of its key while it
 *   is at most `stale_if_error` past its expiry; after that the caller's
 *   failure verdict (`on_error`) applies.
 * - The default key is everything the plugin is sent (see `keyMaterial`);
 *   a shorter `key` is the operator's statement of what the verdict depends
 *   on. Keys are the material itself when it is short, else its SHA-256
 *   digest, so an entry costs at most a few hundred bytes whatever the
 *   request's size.
 * - Route, plugin and config generation are not in the key: each binding
 *   (or, on the edge, each route) has a cache of its own, replaced when its
 *   generation changes, so entries of an older config are never read.
 *
 * Where a data plane keeps its caches, and how it learns the settings, is
 * the data plane's business (`node-runner/plugin/manager.ts`, `src/edge`).
 */

import type { CacheSettings } from '../config/config.ts';
import { HOP_BY_HOP } from '../protocol/headers.ts';
import type { AuthorizeResult, ConnInfo, ConnResult, DisconnectInfo, RequestInfo, ResponseModResult, ResponsePair } from '../protocol/protocol.ts';
import type { HookClient } from './gateway.ts';

/** Request headers that differ on every request and that no verdict should depend on: never in a default key. */
const NOT_KEYED = new Set(['x-request-id', 'traceparent', 'tracestate']);

/** Turns key material into a key; `subtleDigest` by default, a synchronous hash on Node. */
export type Digest = (material: Uint8Array) => string | Promise<string>;

const hex = (b: ArrayBuffer): string => {
  const u = new Uint8Array(b);
  let out = '';
  for (let i = 0; i < u.length; i++) out += u[i].toString(16).padStart(2, '0');
  return out;
};

/** SHA-256 of the key material through Web Crypto (works on Workers and Node). */
export const subtleDigest: Digest = async (material) => hex(await crypto.subtle.digest('SHA-256', material as Uint8Array<ArrayBuffer>));

/**
 * The client IP of a remote address without its port: `192.0.2.1:5000` →
 * `192.0.2.1`, `[2001:db8::1]:443` → `2001:db8::1`. Anything else (an
 * address without a port, a bare IPv6) is returned as it is.
 *
 * @example
 * clientIp('[::1]:8080') // '::1'
 */
export function clientIp(addr: string): string {
  if (addr.startsWith('[')) {
    const end = addr.indexOf(']');
    return end > 0 ? addr.slice(1, end) : addr;
  }
  const colon = addr.indexOf(':');
  return colon >= 0 && colon === addr.lastIndexOf(':') ? addr.slice(0, colon) : addr;
}

const utf8 = new TextEncoder();

/**
 * The bytes a verdict's cache key is the digest of: the parts of `info`
 * that `key` names, in its order, or with `key` null everything the plugin
 * is sent: method, domain, Host, path, query, client IP (no port), the
 * protocol, content length, the matched patterns, route variables, every
 * header but hop-by-hop ones, `X-Request-Id`, `traceparent` and
 * `tracestate`, and with `withBody` the body copy. Header names are
 * compared case-insensitively, header order does not matter, and the
 * encoding is unambiguous (a JSON array, then the body's bytes).
 *
 * @example
 * keyMaterial(info, ['header:Authorization', 'path'], false)
 */
export function keyMaterial(info: RequestInfo, key: readonly string[] | null, withBody: boolean): Uint8Array {
  const { text, bd } = keyParts(info, key, withBody);
  const head = utf8.encode(text);
  if (!bd) return head;
  const out = new Uint8Array(head.length + bd.length);
  out.set(head);
  out.set(bd, head.length);
  return out;
}

/** Key material this short (and without a body) is its own key: exact, and no digest to compute. */
const SHORT_KEY = 512;

/**
 * The cache key of a request: the key material itself when it is short
 * (a JSON array, so it starts with `[`), else its digest (which never
 * does), so the two kinds never meet.
 *
 * @example
 * const key = await cacheKey(info, settings.key, binding.with_body, subtleDigest);
 */
export function cacheKey(info: RequestInfo, key: readonly string[] | null, withBody: boolean, digest: Digest): string | Promise<string> {
  const { text, bd } = keyParts(info, key, withBody);
  if (!bd && text.length <= SHORT_KEY) return text;
  return digest(keyMaterial(info, key, withBody));
}

function keyParts(info: RequestInfo, key: readonly string[] | null, withBody: boolean): { text: string; bd: Uint8Array | null } {
  const parts: unknown[] = [];
  let body = false;
  if (key === null) {
    const headers: string[] = [];
    for (const name in info.h) {
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower) || NOT_KEYED.has(lower)) continue;
      headers.push(lower, info.h[name]);
    }
    parts.push(info.m, info.d, info.ho, info.p, info.q, clientIp(info.a), info.pr, info.cl, info.md, info.mg, info.mp, info.v, sortedPairs(headers));
    body = withBody;
  } else {
    let lowerHeaders: Map<string, string> | null = null;
    for (const part of key) {
      switch (part) {
        case 'method': parts.push(info.m); break;
        case 'domain': parts.push(info.d); break;
        case 'host': parts.push(info.ho); break;
        case 'path': parts.push(info.p); break;
        case 'query': parts.push(info.q); break;
        case 'client_ip': parts.push(clientIp(info.a)); break;
        case 'body': body = withBody; parts.push('body'); break;
        default: {
          if (!lowerHeaders) {
            lowerHeaders = new Map();
            for (const name in info.h) lowerHeaders.set(name.toLowerCase(), info.h[name]);
          }
          // null (absent) and '' (sent empty) are different values
          parts.push(lowerHeaders.get(part.slice(7).toLowerCase()) ?? null);
        }
      }
    }
  }
  const bd = body && info.bd ? info.bd : null;
  parts.push(bd ? bd.length : -1);
  return { text: JSON.stringify(parts), bd };
}

/** [name, value, name, value, ...] sorted by name. */
function sortedPairs(flat: string[]): string[] {
  const idx: number[] = [];
  for (let i = 0; i < flat.length; i += 2) idx.push(i);
  idx.sort((a, b) => (flat[a] < flat[b] ? -1 : flat[a] > flat[b] ? 1 : 0));
  const out: string[] = [];
  for (const i of idx) out.push(flat[i], flat[i + 1]);
  return out;
}

/** True when a verdict lets the request through (an allow); deny, drop and fallback are the negative ones. */
export function isPositive(v: AuthorizeResult): boolean {
  return v.ok && !v.dr && !v.fb;
}

/** What a cache lookup was, for logs and metrics. */
export type CacheResult = 'hit' | 'miss' | 'stale';

/** What the call behind a cache produced: a verdict (and whether it may be kept), or a failure. */
export type Fresh<F> = { verdict: AuthorizeResult; cacheable: boolean; failure?: undefined } | { failure: F; verdict?: undefined };

/** What a cache answers: a verdict (cached, fresh or stale), or the call's failure when no verdict can stand in. */
export type Cached<F> = { verdict: AuthorizeResult; result: CacheResult; failure?: undefined } | { failure: F; result: 'miss'; verdict?: undefined };

interface Entry {
  verdict: AuthorizeResult;
  /** fresh until then */
  expires: number;
  /** may stand in for a failed call until then */
  staleUntil: number;
}

/**
 * A bounded cache of on_request verdicts for one binding (or one route).
 *
 * Contract: `get` is safe to call concurrently; concurrent misses on one
 * key share one call (single-flight), and each waiter gets its outcome.
 * `get` rejects only when `call` rejects (it should not: failures are
 * values). At most `max_entries` verdicts are kept (least recently used go
 * first); calls in flight are bounded by the caller's concurrency. Cached
 * verdicts are shared objects: callers must not change them.
 */
export class VerdictCache<F = unknown> {
  readonly settings: CacheSettings;
  #now: () => number;
  #entries = new Map<string, Entry>();
  #flights = new Map<string, Promise<Fresh<F>>>();

  constructor(settings: CacheSettings, now: () => number) {
    this.settings = settings;
    this.#now = now;
  }

  /** Verdicts held (fresh or stale). */
  get size(): number {
    return this.#entries.size;
  }

  /** Forgets every verdict (calls in flight still complete, and may store theirs). */
  clear(): void {
    this.#entries.clear();
  }

  /**
   * The verdict for `key`: the cached one while fresh, else `call`'s
   * (stored by the rules above). When `call` fails, the expired verdict
   * within `stale_if_error`, else the failure.
   *
   * @example
   * const got = await cache.get(key, async () => ({ verdict: await ask(), cacheable: true }));
   */
  async get(key: string, call: () => Promise<Fresh<F>>): Promise<Cached<F>> {
    const hit = this.#entries.get(key);
    if (hit && hit.expires > this.#now()) {
      // Map order is recency: move it to the end.
      this.#entries.delete(key);
      this.#entries.set(key, hit);
      return { verdict: hit.verdict, result: 'hit' };
    }
    let flight = this.#flights.get(key);
    if (!flight) {
      flight = this.#fly(key, call);
      this.#flights.set(key, flight);
    }
    const fresh = await flight;
    if (fresh.verdict) return { verdict: fresh.verdict, result: 'miss' };
    const stale = this.#entries.get(key);
    if (stale && stale.staleUntil > this.#now()) return { verdict: stale.verdict, result: 'stale' };
    return { failure: fresh.failure, result: 'miss' };
  }

  async #fly(key: string, call: () => Promise<Fresh<F>>): Promise<Fresh<F>> {
    try {
      const fresh = await call();
      if (fresh.verdict) this.#store(key, fresh.verdict, fresh.cacheable);
      else this.#dropDead(key);
      return fresh;
    } finally {
      this.#flights.delete(key);
    }
  }

  #store(key: string, verdict: AuthorizeResult, cacheable: boolean): void {
    const ttl = isPositive(verdict) ? this.settings.ttl : this.settings.negative_ttl;
    this.#entries.delete(key);
    if (!cacheable || ttl <= 0 || verdict.e) return;
    const now = this.#now();
    this.#entries.set(key, { verdict, expires: now + ttl, staleUntil: now + ttl + this.settings.stale_if_error });
    if (this.#entries.size > this.settings.max_entries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }

  /** An entry past its stale window is of no use any more. */
  #dropDead(key: string): void {
    const e = this.#entries.get(key);
    if (e && e.staleUntil <= this.#now()) this.#entries.delete(key);
  }
}

/** How a `CachedHooks` finds a route's cache: its settings and generation, or null when the route caches nothing. */
export type RouteCacheOf = (routeId: string) => { settings: CacheSettings; generation: string; withBody: boolean } | null;

/**
 * A HookClient that answers on_request from a verdict cache per route,
 * in front of another HookClient whose verdicts are the merged ones of the
 * route (the edge's runner client). The inner client's failure verdicts
 * (`e` set) and verdicts it marks `nc` are never stored; a failure is
 * answered with a stale verdict when there is one. Every other hook passes
 * through.
 *
 * Contract: as the inner client's (never throws). Caches of routes whose
 * generation changed are replaced on their next request; `retain` drops
 * those of routes that are gone.
 *
 * @example
 * const hooks = new CachedHooks(edgeHooks, (id) => state.cacheOf(id), Date.now);
 */
export class CachedHooks implements HookClient {
  #inner: HookClient;
  #cacheOf: RouteCacheOf;
  #now: () => number;
  #digest: Digest;
  #caches = new Map<string, { generation: string; cache: VerdictCache<AuthorizeResult> }>();

  constructor(inner: HookClient, cacheOf: RouteCacheOf, now: () => number, digest: Digest = subtleDigest) {
    this.#inner = inner;
    this.#cacheOf = cacheOf;
    this.#now = now;
    this.#digest = digest;
  }

  hooksOf(routeId: string): number {
    return this.#inner.hooksOf(routeId);
  }

  wantsBody(routeId: string): boolean {
    return this.#inner.wantsBody(routeId);
  }

  /** Verdicts held for a route (for tests and metrics). */
  sizeOf(routeId: string): number {
    return this.#caches.get(routeId)?.cache.size ?? 0;
  }

  /** Drops the caches of routes not in `ids`. */
  retain(ids: ReadonlySet<string>): void {
    for (const id of this.#caches.keys()) if (!ids.has(id)) this.#caches.delete(id);
  }

  async onRequest(routeId: string, info: RequestInfo): Promise<AuthorizeResult> {
    const rc = this.#cacheOf(routeId);
    if (!rc) {
      this.#caches.delete(routeId);
      return this.#inner.onRequest(routeId, info);
    }
    let held = this.#caches.get(routeId);
    if (!held || held.generation !== rc.generation) {
      held = { generation: rc.generation, cache: new VerdictCache<AuthorizeResult>(rc.settings, this.#now) };
      this.#caches.set(routeId, held);
    }
    const key = await cacheKey(info, rc.settings.key, rc.withBody, this.#digest);
    const got = await held.cache.get(key, async () => {
      const v = await this.#inner.onRequest(routeId, info);
      return v.e ? { failure: v } : { verdict: v, cacheable: !v.nc };
    });
    if (!got.verdict) return got.failure;
    // Verdicts are shared (with the cache and other waiters): the caller gets its own copy of what it might change.
    return { ...got.verdict, h: { ...got.verdict.h }, rm: [...got.verdict.rm] };
  }

  onResponse(routeId: string, pair: ResponsePair): Promise<ResponseModResult> {
    return this.#inner.onResponse(routeId, pair);
  }

  onConnect(routeId: string, info: ConnInfo): Promise<ConnResult> {
    return this.#inner.onConnect(routeId, info);
  }

  onDisconnect(routeId: string, info: DisconnectInfo): void {
    this.#inner.onDisconnect(routeId, info);
  }
}

/**
 * The cache settings of a route whose bindings each have their own (the
 * merged verdict the edge caches): null unless every binding that answers
 * on_request caches; else the shortest TTLs and stale window, the union of
 * the keys (everything when any binding keys on everything), the smallest
 * `max_entries`.
 *
 * @example
 * mergeCacheSettings([{ ttl: 30_000, ... , key: ['header:Authorization'] }, { ttl: 5_000, ..., key: ['path'] }])
 * // ttl 5000, key ['header:Authorization', 'path']
 */
export function mergeCacheSettings(list: ReadonlyArray<CacheSettings | undefined | null>): CacheSettings | null {
  if (!list.length) return null;
  let out: CacheSettings | null = null;
  for (const s of list) {
    if (!s) return null;
    if (!out) {
      out = { ...s, key: s.key ? [...s.key] : null };
      continue;
    }
    out.ttl = Math.min(out.ttl, s.ttl);
    out.negative_ttl = Math.min(out.negative_ttl, s.negative_ttl);
    out.stale_if_error = Math.min(out.stale_if_error, s.stale_if_error);
    out.max_entries = Math.min(out.max_entries, s.max_entries);
    if (out.key === null || s.key === null) out.key = null;
    else for (const k of s.key) if (!out.key.includes(k)) out.key.push(k);
  }
  if (out && out.ttl <= 0 && out.negative_ttl <= 0) return null;
  return out;
}
