/**
 * @module upstream-slots
 * The bounded wait for an upstream connection on the self-hosted gateway:
 * each proxy action may have `max_connections` requests in flight to each
 * upstream origin (host:port); more wait, first come first served, at most
 * `queue_timeout` and at most `max_connections` of them, and are then
 * refused with `UPSTREAM_BUSY` (the core answers `503 upstream busy`).
 * This replaces undici's own queue, which is unbounded in time and length.
 *
 * Holding a slot for the length of the exchange (until the response body
 * is done) is the upstream client's business (`upstream.ts`).
 */

import { HookgateError } from '../../src/core/errors.ts';
import type { UpstreamLimits } from '../../src/core/gateway/gateway.ts';
import { realClock, type Clock, type TimerHandle } from '../../src/core/clock.ts';

/** The longest delay a Node timer takes; longer ones would fire at once. */
const MAX_TIMER_MS = 2_147_483_647;

/** The slots of one action to one origin. Held by whoever took it; give it back with `UpstreamSlots.release`. */
export interface Slot {
  readonly key: string;
  readonly origin: string;
  inflight: number;
  max: number;
  /** grants, first come first served */
  readonly waiters: Array<() => void>;
}

/**
 * Slots per (action, origin).
 *
 * Contract: `take` never waits; when it returns null, `wait` queues the
 * request (FIFO) and resolves once a slot is handed over, or rejects with
 * `UPSTREAM_BUSY` (queue full, or `queueTimeoutMs` passed) or with the
 * signal's reason (the request was given up). Every slot granted must be
 * released exactly once. The limit in force is the one the latest request
 * brought, so a reload applies to new requests; entries with nothing in
 * flight are dropped, so the map holds only origins in use.
 *
 * @example
 * const slots = new UpstreamSlots();
 * const slot = slots.take(limits, '127.0.0.1:3000') ?? (await slots.wait(limits, '127.0.0.1:3000', signal));
 * try { ... } finally { slots.release(slot); }
 */
export class UpstreamSlots {
  #clock: Clock;
  #byKey = new Map<string, Map<string, Slot>>();

  constructor(clock: Clock = realClock) {
    this.#clock = clock;
  }

  /** Takes a free slot, or returns null when all are in use (or others already wait). */
  take(limits: UpstreamLimits, origin: string): Slot | null {
    let origins = this.#byKey.get(limits.key);
    if (!origins) this.#byKey.set(limits.key, (origins = new Map()));
    let slot = origins.get(origin);
    if (!slot) origins.set(origin, (slot = { key: limits.key, origin, inflight: 0, max: limits.maxConnections, waiters: [] }));
    slot.max = limits.maxConnections;
    if (slot.inflight >= slot.max || slot.waiters.length > 0) return null;
    slot.inflight++;
    return slot;
  }

  /** Waits for a slot after `take` returned null. */
  wait(limits: UpstreamLimits, origin: string, signal?: AbortSignal): Promise<Slot> {
    const slot = this.#byKey.get(limits.key)?.get(origin);
    if (!slot) return Promise.reject(new Error('UpstreamSlots.wait without a failed take'));
    const busy = (why: string) => new HookgateError('UPSTREAM_BUSY', `all ${slot.max} connections of "${slot.key}" to ${origin} are busy and ${why}`);
    if (limits.queueTimeoutMs <= 0 || slot.waiters.length >= slot.max) {
      this.#dropIfIdle(slot);
      return Promise.reject(busy(limits.queueTimeoutMs <= 0 ? 'queue_timeout is 0' : `${slot.waiters.length} requests already wait`));
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<Slot>((resolve, reject) => {
      const settle = () => {
        this.#clock.clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const leave = (err: unknown) => {
        settle();
        const i = slot.waiters.indexOf(grant);
        if (i >= 0) slot.waiters.splice(i, 1);
        this.#dropIfIdle(slot);
        reject(err);
      };
      const grant = () => {
        settle();
        resolve(slot);
      };
      const onAbort = () => leave(signal!.reason);
      slot.waiters.push(grant);
      const timer = this.#clock.setTimeout(() => leave(busy(`none freed up within ${limits.queueTimeoutMs} ms`)), Math.min(limits.queueTimeoutMs, MAX_TIMER_MS), true);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Gives a slot back: to the first waiter when one waits (and the limit allows), else to the pool. */
  release(slot: Slot): void {
    if (slot.inflight <= slot.max) {
      const next = slot.waiters.shift();
      if (next) return next();
    }
    slot.inflight--;
    this.#dropIfIdle(slot);
  }

  /** Requests in flight for `key` to `origin` (0 when none). */
  inflight(key: string, origin: string): number {
    return this.#byKey.get(key)?.get(origin)?.inflight ?? 0;
  }

  #dropIfIdle(slot: Slot): void {
    if (slot.inflight > 0 || slot.waiters.length > 0) return;
    const origins = this.#byKey.get(slot.key);
    if (origins?.get(slot.origin) !== slot) return;
    origins.delete(slot.origin);
    if (origins.size === 0) this.#byKey.delete(slot.key);
  }
}

/**
 * The origin (scheme and `host:port`, as written) of an absolute http(s)
 * URL, found without parsing the whole URL: the key slots are counted by.
 *
 * @example
 * originOf('http://10.0.0.1:3000/v1?x=1') // 'http://10.0.0.1:3000'
 */
export function originOf(url: string): string {
  const start = url.indexOf('//') + 2;
  for (let i = start; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c === 47 /* / */ || c === 63 /* ? */ || c === 35 /* # */) return url.slice(0, i);
  }
  return url;
}
