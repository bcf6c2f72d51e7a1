/**
 * @module test/helpers/fake-clock
 * A Clock (src/core/clock.ts) whose time moves only when a test calls
 * `advance(ms)`, so restart backoff, ready deadlines, stop grace periods and
 * hook deadlines can be driven without sleeping; started at a date, it
 * stands in for the wall clock (`systemClock`) that key expiry reads.
 */

import type { Clock, TimerHandle } from '../../src/core/clock.ts';

interface FakeTimer {
  id: number;
  due: number;
  ms: number;
  fn: () => void;
}

/**
 * Manual time. Timers fire only inside `advance`, in order of their due time
 * (then of creation), each with `now()` equal to its due time; timers that a
 * callback schedules within the advanced window fire in the same call.
 *
 * @example
 * const clock = new FakeClock();
 * clock.setTimeout(() => fired = true, 1000);
 * clock.advance(999); // not yet
 * clock.advance(1);   // fired
 */
export class FakeClock implements Clock {
  #now: number;
  #nextId = 1;
  #timers: FakeTimer[] = [];

  /** `start`: what `now()` says until the first `advance` (a date in ms since the epoch, to stand in for `systemClock`). */
  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: FakeTimer = { id: this.#nextId++, due: this.#now + Math.max(0, ms), ms, fn };
    this.#timers.push(timer);
    return { id: timer.id };
  }

  clearTimeout(handle: TimerHandle | undefined | null): void {
    if (!handle) return;
    const id = (handle as { id?: number }).id;
    this.#timers = this.#timers.filter((t) => t.id !== id);
  }

  /** Moves time forward by `ms`, firing every timer that falls due. */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      let next: FakeTimer | undefined;
      for (const t of this.#timers) if (t.due <= target && (!next || t.due < next.due || (t.due === next.due && t.id < next.id))) next = t;
      if (!next) break;
      this.#timers = this.#timers.filter((t) => t !== next);
      this.#now = next.due;
      next.fn();
    }
    this.#now = target;
  }

  /** The delays (as given to setTimeout) of the timers still pending, in due order. */
  pendingDelays(): number[] {
    return [...this.#timers].sort((a, b) => a.due - b.due || a.id - b.id).map((t) => t.ms);
  }
}

/**
 * When, in `clock`'s time, `p` settled: the returned function lets pending
 * I/O and callbacks run for a turn, then says the time, or null while `p`
 * is still pending. For "not before its deadline, and at it".
 *
 * @example
 * const endedAt = settleTime(clock, call);
 * clock.advance(299);
 * assert.equal(await endedAt(), null);
 * clock.advance(1);
 * assert.equal(await endedAt(), 300);
 */
export function settleTime(clock: FakeClock, p: Promise<unknown>): () => Promise<number | null> {
  let at: number | null = null;
  const mark = () => {
    at = clock.now();
  };
  p.then(mark, mark);
  return async () => {
    await new Promise((r) => setImmediate(r));
    return at;
  };
}
