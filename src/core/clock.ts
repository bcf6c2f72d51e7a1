/**
 * @module clock
 * Time as a dependency: everything in the runner that waits (restart
 * backoff, ready and stop deadlines, hook deadlines, key expiry) asks a
 * Clock, so tests can drive time instead of sleeping.
 */

export type TimerHandle = { readonly __timer: unique symbol } | object | number;

export interface Clock {
  /** Milliseconds since some fixed point; only differences matter. */
  now(): number;
  /** Calls `fn` once after `ms`. The timer does not keep the process alive when `unref` is true. */
  setTimeout(fn: () => void, ms: number, unref?: boolean): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined | null): void;
}

/** The real clock: performance.now and Node timers. */
export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn, ms, unref = false) {
    const t = setTimeout(fn, ms);
    // Node's timers keep the process alive unless unref'd; other runtimes' timers have no unref.
    if (unref) (t as { unref?: () => void }).unref?.();
    return t;
  },
  clearTimeout(handle) {
    if (handle) clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

/**
 * The real clock on the wall: like `realClock`, but `now()` is Date.now (ms
 * since the epoch), for deadlines that are dates (a runner key's `expires_at`).
 *
 * @example
 * const left = Date.parse(key.expires_at) - systemClock.now();
 */
export const systemClock: Clock = { ...realClock, now: () => Date.now() };
