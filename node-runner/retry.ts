/**
 * @module retry
 * The reconnect rhythm the runner's config sources share (the SSE stream,
 * etcd): exponential backoff with ±20 % jitter (`base` doubling per failure
 * up to `max`), reset by the caller once the source works again, and an
 * interruptible sleep on the injected clock (a SIGHUP or a stop wakes it).
 */

import { backoffDelay } from '../src/core/backoff.ts';
import { realClock, type Clock, type TimerHandle } from '../src/core/clock.ts';

export class Retry {
  #clock: Clock;
  #baseMs: number;
  #maxMs: number;
  #random: () => number;
  #failures = 0;
  #timer: TimerHandle | null = null;
  #wake: (() => void) | null = null;

  constructor(opts: { baseMs: number; maxMs: number; clock?: Clock; random?: () => number }) {
    this.#clock = opts.clock ?? realClock;
    this.#baseMs = opts.baseMs;
    this.#maxMs = opts.maxMs;
    this.#random = opts.random ?? Math.random;
  }

  /** The delay before the next attempt, counting this failure. */
  nextDelay(): number {
    return backoffDelay(this.#failures++, this.#baseMs, this.#maxMs, this.#random);
  }

  /** The source works again: the next failure waits `base` again. */
  reset(): void {
    this.#failures = 0;
  }

  /** Waits `ms`, or until `wake()`. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
      this.#timer = this.#clock.setTimeout(() => this.wake(), ms, true);
    });
  }

  /** Ends a sleep in progress now (no-op when none). */
  wake(): void {
    this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}
