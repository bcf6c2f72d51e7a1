/**
 * @module plugin/dispatch
 * The hook calls of routes to their plugins, with the verdict rules of
 * `src/core/protocol/verdict.ts`: one call per route and phase fanned out to the
 * route's bindings in order, merged, `on_error` applied, and a caching
 * binding's verdict cache consulted (`src/core/gateway/verdict-cache.ts`). The
 * plugins, their pools and the bindings' caches are the host's (the
 * PluginManager of the runner, or a gateway worker with its own pools to
 * the same sockets); this module only calls.
 */

import { createHash } from 'node:crypto';
import { encodeHookData, encodeHookFrame } from '../../src/core/protocol/codec.ts';
import { HookgateError, isHookgateError } from '../../src/core/errors.ts';
import type { HookClient } from '../../src/core/gateway/pipeline.ts';
import { withHeaderChanges } from '../../src/core/protocol/headers.ts';
import { LogThrottle, type Logger } from '../../src/core/log.ts';
import {
  HOOK,
  HOOK_BIT,
  type AuthorizeResult,
  type ConnInfo,
  type ConnResult,
  type DisconnectInfo,
  type HookName,
  type HookType,
  type RequestInfo,
  type ResponseModResult,
  type ResponsePair,
} from '../../src/core/protocol/protocol.ts';
import {
  allowResult,
  canonicalPair,
  canonicalRequest,
  decodeAuthorize,
  decodeConnect,
  decodeResponseMod,
  denyOnError,
  failedConnect,
  failedResponseMod,
  isEmpty,
  mergeRequestChanges,
  mergeResponseChanges,
} from '../../src/core/protocol/verdict.ts';
import { cacheKey, type VerdictCache } from '../../src/core/gateway/verdict-cache.ts';
import type { HookOutcome, TrafficRecorder } from '../admin/traffic-metrics.ts';

/**
 * What the dispatcher needs of a plugin's connections: a `SocketPool`
 * (`pool.ts`), or anything else that answers hook frames the same way (the
 * tests' in-process plugins). `callFrame` rejects with a HookgateError
 * (`HOOK_TIMEOUT` by `timeoutMs`, `PLUGIN_UNAVAILABLE`, ...) or resolves with
 * `decode` of the reply payload; `notify` sends a frame that gets no reply
 * and says false when it was dropped.
 */
export interface HookChannel {
  callFrame<T>(frame: Uint8Array, timeoutMs: number, decode: (payload: Uint8Array) => T): Promise<T>;
  notify(type: HookType, data: Uint8Array): boolean;
}

/** A plugin as the dispatcher sees it: its declared hooks and its connections (null while it cannot take calls). */
export interface HookPlugin {
  readonly name: string;
  /** HOOK_BIT mask */
  readonly hooks: number;
  readonly pool: HookChannel | null;
}

export interface HookBinding<P extends HookPlugin = HookPlugin> {
  plugin: P;
  on_error: 'deny' | 'allow';
  with_body: boolean;
  /** this binding's verdicts, when it caches */
  cache: VerdictCache<unknown> | null;
}

/** A route's bindings, in order, and the mask of every hook they declared. */
export interface HookRoute<P extends HookPlugin = HookPlugin> {
  route: { id: string; plugin_timeout: number };
  bindings: Array<HookBinding<P>>;
  mask: number;
}

/** What the dispatcher asks its owner. */
export interface HookHost<P extends HookPlugin = HookPlugin> {
  route(routeId: string): HookRoute<P> | undefined;
  /** why a plugin without a pool cannot take the call (a `PLUGIN_UNAVAILABLE` error) */
  unavailable(p: P): HookgateError;
  /** a call failed (its binding's on_error applies): log it, check an attached socket, ... */
  failed(p: P, routeId: string, hook: HookName, err: unknown): void;
  logger: Logger;
  /** where hook-call and cache metrics go (default: nowhere) */
  traffic?: TrafficRecorder;
}

/** The cache key's digest on Node: SHA-256, synchronous. */
function digest(material: Uint8Array): string {
  return createHash('sha256').update(material).digest('base64');
}

/**
 * Runs hooks for routes over the host's plugins.
 *
 * Contract: the hook methods are safe to call concurrently, never throw,
 * and settle by the route's `plugin_timeout` per plugin. An unknown route
 * gets a failure verdict (the caller's routing state is out of date).
 *
 * @example
 * const hooks = new HookDispatcher({ route: (id) => routes.get(id), unavailable, failed, logger });
 * const verdict = await hooks.onRequest('api', info);
 */
export class HookDispatcher<P extends HookPlugin = HookPlugin> implements HookClient {
  #host: HookHost<P>;
  #logThrottle = new LogThrottle();

  constructor(host: HookHost<P>) {
    this.#host = host;
  }

  /**
   * The hooks a route's plugins declared, as a HOOK_BIT mask; 0 for a route
   * without plugins or an unknown route. A plugin that has not declared its
   * hooks yet counts as having all of them, so its routes fail closed.
   *
   * @example
   * if (manager.hooksOf('api') & HOOK_BIT.on_request) verdict = await manager.onRequest('api', info);
   */
  hooksOf(routeId: string): number {
    return this.#host.route(routeId)?.mask ?? 0;
  }

  /** Whether the route binds a plugin that wants the request body. */
  wantsBody(routeId: string): boolean {
    return this.#host.route(routeId)?.bindings.some((b) => b.with_body) ?? false;
  }

  /**
   * Runs on_request for a route: one merged verdict (see the module doc).
   * Never throws. An unknown route is denied (503): the caller's routing
   * state is out of date.
   */
  async onRequest(routeId: string, info: RequestInfo): Promise<AuthorizeResult> {
    const entry = this.#host.route(routeId);
    if (!entry) return denyOnError(`unknown route "${routeId}"`);
    let data = canonicalRequest(info);
    let withBody: Uint8Array | null = null;
    let noBody: Uint8Array | null = null;
    let merged: AuthorizeResult | null = null;
    /** a stale verdict or an on_error allow went into the verdict: an edge must not cache it */
    let degraded = false;
    const bindings = entry.bindings;
    for (let i = 0; i < bindings.length; i++) {
      const b = bindings[i];
      const p = b.plugin;
      if (!(p.hooks & HOOK_BIT.on_request)) continue;
      const call = () => {
        const frame = b.with_body || !data.bd
          ? (withBody ??= encodeHookFrame('on_request', data))
          : (noBody ??= encodeHookFrame('on_request', { ...data, bd: null }));
        return this.#call(p, 'on_request', b.on_error, frame, entry.route.plugin_timeout, decodeAuthorize);
      };
      let res: AuthorizeResult;
      if (b.cache) {
        const input = data;
        const got = await b.cache.get(cacheKey(input, b.cache.settings.key, b.with_body, digest) as string, () =>
          call().then(
            (verdict) => ({ verdict, cacheable: true }),
            (failure: unknown) => ({ failure }),
          ),
        );
        if (got.verdict === undefined) {
          this.#host.failed(p, routeId, 'on_request', got.failure);
          if (b.on_error === 'allow') {
            degraded = true;
            continue;
          }
          return denyOnError(`plugin "${p.name}": ${(got.failure as Error).message}`);
        }
        this.#host.traffic?.cache(p.name, got.result);
        if (got.result === 'stale') {
          degraded = true;
          const held = this.#logThrottle.admit(`${p.name} ${routeId} stale`);
          if (held >= 0) this.#host.logger.warn({ plugin: p.name, route: routeId, suppressed: held }, 'hook call failed; serving a cached verdict past its ttl (stale_if_error)');
        }
        res = got.verdict;
        // Cached verdicts are shared (with the cache and other waiters): what leaves here is a copy.
        if (!res.ok || res.dr || res.fb) return { ...res, h: { ...res.h }, rm: [...res.rm], ...(degraded ? { nc: true } : {}) };
      } else {
        try {
          res = await call();
        } catch (err) {
          this.#host.failed(p, routeId, 'on_request', err);
          if (b.on_error === 'allow') {
            degraded = true;
            continue;
          }
          return denyOnError(`plugin "${p.name}": ${(err as Error).message}`);
        }
        if (!res.ok || res.dr || res.fb) return degraded ? { ...res, nc: true } : res;
      }
      merged ??= allowResult();
      if (res.rm.length || !isEmpty(res.h)) {
        mergeRequestChanges(merged, res);
        // What the next plugin sees; the last one's changes (the usual single plugin) only go into the verdict.
        if (laterOnRequest(bindings, i)) {
          data = { ...data, h: withHeaderChanges(data.h, res.h, res.rm) };
          withBody = noBody = null;
        }
      }
      if (res.rp) merged.rp = res.rp;
      if (res.cq) merged.cq = true;
      if (res.sp) merged.sp = res.sp;
    }
    merged ??= allowResult();
    if (degraded) merged.nc = true;
    return merged;
  }

  /** Runs on_response for a route: one merged modification. Never throws. */
  async onResponse(routeId: string, pair: ResponsePair): Promise<ResponseModResult> {
    const entry = this.#host.route(routeId);
    if (!entry) return failedResponseMod(`unknown route "${routeId}"`);
    const merged: ResponseModResult = { s: 0, h: {}, rm: [], e: '', b: '' };
    let cur = canonicalPair(pair);
    // Encoded once per variant (with or without the body copy) until a plugin changes the response.
    let withBody: Uint8Array | null = null;
    let noBody: Uint8Array | null = null;
    for (const b of entry.bindings) {
      const p = b.plugin;
      if (!(p.hooks & HOOK_BIT.on_response)) continue;
      let res: ResponseModResult;
      try {
        const frame = b.with_body || !cur.req.bd
          ? (withBody ??= encodeHookFrame('on_response', cur))
          : (noBody ??= encodeHookFrame('on_response', { req: { ...cur.req, bd: null }, resp: cur.resp }));
        res = await this.#call(p, 'on_response', b.on_error, frame, entry.route.plugin_timeout, decodeResponseMod);
      } catch (err) {
        this.#host.failed(p, routeId, 'on_response', err);
        if (b.on_error === 'allow') continue;
        return failedResponseMod(`plugin "${p.name}": ${(err as Error).message}`);
      }
      if (res.s === 0 && res.rm.length === 0 && isEmpty(res.h)) continue;
      mergeResponseChanges(merged, res);
      cur = { req: cur.req, resp: { s: res.s || cur.resp.s, h: withHeaderChanges(cur.resp.h, res.h, res.rm) } };
      withBody = noBody = null;
    }
    return merged;
  }

  /** Runs on_connect for a route: refused by the first plugin that refuses. Never throws. */
  async onConnect(routeId: string, info: ConnInfo): Promise<ConnResult> {
    const entry = this.#host.route(routeId);
    if (!entry) return failedConnect(`unknown route "${routeId}"`);
    let bytes: Uint8Array | null = null;
    for (const b of entry.bindings) {
      const p = b.plugin;
      if (!(p.hooks & HOOK_BIT.on_connect)) continue;
      try {
        bytes ??= encodeHookFrame('on_connect', info);
        const res = await this.#call(p, 'on_connect', b.on_error, bytes, entry.route.plugin_timeout, decodeConnect);
        if (!res.ok) return { ok: false, e: '', s: 0, b: '' };
      } catch (err) {
        this.#host.failed(p, routeId, 'on_connect', err);
        if (b.on_error === 'allow') continue;
        return failedConnect(`plugin "${p.name}": ${(err as Error).message}`);
      }
    }
    return { ok: true, e: '', s: 0, b: '' };
  }

  /** Sends on_disconnect to the route's plugins that declared it; fire-and-forget, never throws. */
  onDisconnect(routeId: string, info: DisconnectInfo): void {
    const entry = this.#host.route(routeId);
    if (!entry) return;
    let bytes: Uint8Array | null = null;
    for (const b of entry.bindings) {
      const p = b.plugin;
      if (!(p.hooks & HOOK_BIT.on_disconnect) || !p.pool) continue;
      bytes ??= encodeHookData('on_disconnect', info);
      if (!p.pool.notify(HOOK.on_disconnect, bytes)) {
        this.#host.logger.warn({ plugin: p.name, route: routeId }, 'on_disconnect dropped: the plugin is not keeping up');
      }
    }
  }

  #call<T>(p: P, hook: HookName, onError: 'deny' | 'allow', frame: Uint8Array, timeoutMs: number, decode: (payload: Uint8Array) => T): Promise<T> {
    const traffic = this.#host.traffic;
    if (!p.pool) {
      traffic?.hook(p.name, hook, onError === 'allow' ? 'on_error_allowed' : 'error', 0);
      return Promise.reject(this.#host.unavailable(p));
    }
    if (!traffic) return p.pool.callFrame(frame, timeoutMs, decode);
    const t0 = performance.now();
    return p.pool.callFrame(frame, timeoutMs, decode).then(
      (res) => {
        traffic.hook(p.name, hook, hook === 'on_request' ? verdictOutcome(res as AuthorizeResult) : 'ok', (performance.now() - t0) / 1000);
        return res;
      },
      (err: unknown) => {
        const outcome = onError === 'allow' ? 'on_error_allowed' : isHookgateError(err, 'HOOK_TIMEOUT') ? 'timeout' : 'error';
        traffic.hook(p.name, hook, outcome, (performance.now() - t0) / 1000);
        throw err;
      },
    );
  }

}

/** What an on_request verdict did, for the hook-call metrics. */
function verdictOutcome(v: AuthorizeResult): HookOutcome {
  return v.dr ? 'drop' : v.fb ? 'fallback' : v.ok ? 'allow' : 'deny';
}

/** Whether a binding after `i` declared on_request (and so sees the request as earlier plugins changed it). */
function laterOnRequest(bindings: ReadonlyArray<HookBinding>, i: number): boolean {
  for (let j = i + 1; j < bindings.length; j++) if (bindings[j].plugin.hooks & HOOK_BIT.on_request) return true;
  return false;
}
