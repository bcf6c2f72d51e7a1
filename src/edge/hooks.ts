/**
 * @module edge/hooks
 * The edge's HookClient: the gateway core asks it exactly what it asks the
 * plugin host on a runner, and it answers with one runner call per phase
 * (the runner fans out to the route's plugins and merges). The hook index
 * comes from the routing state. When no runner answers, the verdict is the
 * route's `edge_on_error` (deny 503 by default).
 */

import { decodeHookResult, encodeHookFrame } from '../core/protocol/codec.ts';
import type { HookClient } from '../core/gateway/gateway.ts';
import { LogThrottle, type Logger } from '../core/log.ts';
import type { AuthorizeResult, ConnInfo, ConnResult, DisconnectInfo, HookName, RequestInfo, ResponseModResult, ResponsePair } from '../core/protocol/protocol.ts';
import { DENY_BODY } from '../core/protocol/verdict.ts';
import type { RunnerPool } from './runners.ts';
import type { EdgeStateCache } from './state-cache.ts';

/**
 * Contract: never throws; every method settles by the pool's hook timeout.
 * `onDisconnect` is fire-and-forget; its call is tracked in `pending` so the
 * worker can keep it alive with `ctx.waitUntil`.
 */
export class EdgeHooks implements HookClient {
  #cache: EdgeStateCache;
  #runners: RunnerPool;
  #log: Logger;
  readonly pending = new Set<Promise<unknown>>();
  #logThrottle = new LogThrottle();

  constructor(cache: EdgeStateCache, runners: RunnerPool, log: Logger) {
    this.#cache = cache;
    this.#runners = runners;
    this.#log = log;
  }

  hooksOf(routeId: string): number {
    return this.#cache.current?.masks.get(routeId) ?? 0;
  }

  wantsBody(routeId: string): boolean {
    return this.#cache.current?.body.has(routeId) ?? false;
  }

  /** The route's edge failure verdict: status and body. */
  #edgeError(routeId: string): { status: number; body: string } {
    const r = this.#cache.current?.state.plan(routeId)?.route.edge_on_error;
    return { status: r?.status ?? 503, body: r?.body ?? DENY_BODY };
  }

  async #call<K extends Exclude<HookName, 'on_disconnect'>>(hook: K, routeId: string, frame: Uint8Array) {
    const reply = await this.#runners.call(frame);
    this.#cache.notice(reply.state);
    return decodeHookResult(hook, reply.payload);
  }

  #failed(routeId: string, hook: HookName, err: unknown): string {
    const why = (err as Error).message;
    const held = this.#logThrottle.admit(`${routeId} ${hook} ${why}`);
    if (held >= 0) this.#log.error({ route: routeId, hook, err: why, suppressed: held }, 'hook call failed at the edge; applying edge_on_error');
    return why;
  }

  async onRequest(routeId: string, info: RequestInfo): Promise<AuthorizeResult> {
    try {
      return await this.#call('on_request', routeId, encodeHookFrame('on_request', info));
    } catch (err) {
      const e = this.#failed(routeId, 'on_request', err);
      const { status, body } = this.#edgeError(routeId);
      return { ok: false, dr: false, fb: false, s: status, b: body, h: {}, rm: [], sp: null, cq: false, rp: '', e };
    }
  }

  async onResponse(routeId: string, pair: ResponsePair): Promise<ResponseModResult> {
    try {
      return await this.#call('on_response', routeId, encodeHookFrame('on_response', pair));
    } catch (err) {
      const e = this.#failed(routeId, 'on_response', err);
      const { status, body } = this.#edgeError(routeId);
      return { s: status, h: {}, rm: [], e, b: body };
    }
  }

  async onConnect(routeId: string, info: ConnInfo): Promise<ConnResult> {
    try {
      return await this.#call('on_connect', routeId, encodeHookFrame('on_connect', info));
    } catch (err) {
      const e = this.#failed(routeId, 'on_connect', err);
      const { status, body } = this.#edgeError(routeId);
      return { ok: false, e, s: status, b: body };
    }
  }

  onDisconnect(routeId: string, info: DisconnectInfo): void {
    const p = this.#runners
      .call(encodeHookFrame('on_disconnect', info))
      .catch((err) => this.#failed(routeId, 'on_disconnect', err))
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
  }
}
