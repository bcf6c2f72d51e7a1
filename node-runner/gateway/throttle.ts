/**
 * @module throttle
 * Bounds how fast we read a plugin's output, so that a plugin flooding its
 * stdout or stderr slows down itself (its writes block once the pipe is
 * full) and never the gateway: `ReadThrottle` pauses a readable stream for
 * the rest of the second once a line or byte budget is spent, and holds it
 * paused while a downstream asks (backpressure). `RateBudget` is the same
 * per-second budget for what we log, counting the excess for a summary.
 *
 * Used on both sides of the keeper (the keeper reads the plugin's pipes, the
 * runner reads what the keeper relays or a plugin's pipes directly). What to
 * do with the lines is the caller's business.
 */

import type { Readable } from 'node:stream';
import type { Clock, TimerHandle } from '../../src/core/clock.ts';

/** What one plugin stream may deliver per second before it is paused for the rest of that second. */
export interface ReadLimits {
  linesPerSec: number;
  bytesPerSec: number;
}

/** Default read limits per plugin stream: far above what the protocol needs, far below a flood. */
export const READ_LIMITS: ReadLimits = { linesPerSec: 2000, bytesPerSec: 4 * 1024 * 1024 };

/**
 * A per-second budget on a readable stream, plus named holds.
 *
 * Contract: `line()` counts one line (call it for each line read); once the
 * second's lines or bytes are spent the stream is paused until the second
 * is over (by the clock). `hold(why)` keeps it paused until `release(why)`
 * (idempotent per reason: backpressure from the keeper socket, from the
 * runner). `stop()` clears the timer; the stream is left as it is. Not
 * reentrant-sensitive: lines of a chunk already read are still delivered
 * after a pause (the next chunk waits).
 *
 * @example
 * const t = new ReadThrottle(child.stdout, realClock);
 * const split = new LineSplitter((l) => { t.line(l.length); handle(l); });
 */
export class ReadThrottle {
  #stream: Readable;
  #clock: Clock;
  #limits: ReadLimits;
  #windowStart: number;
  #lines = 0;
  #bytes = 0;
  #over = false;
  #timer: TimerHandle | null = null;
  #holds = new Set<string>();
  #stopped = false;

  constructor(stream: Readable, clock: Clock, limits: ReadLimits = READ_LIMITS) {
    this.#stream = stream;
    this.#clock = clock;
    this.#limits = limits;
    this.#windowStart = clock.now();
  }

  /** Whether the stream is paused by the budget or a hold. */
  get paused(): boolean {
    return this.#over || this.#holds.size > 0;
  }

  /** Counts one line of `bytes` (its length without the newline). */
  line(bytes: number): void {
    if (this.#stopped) return;
    const now = this.#clock.now();
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#lines = 0;
      this.#bytes = 0;
    }
    this.#lines++;
    this.#bytes += bytes + 1;
    if (!this.#over && (this.#lines >= this.#limits.linesPerSec || this.#bytes >= this.#limits.bytesPerSec)) {
      this.#over = true;
      this.#apply();
      this.#timer = this.#clock.setTimeout(() => {
        this.#timer = null;
        this.#over = false;
        this.#windowStart = this.#clock.now();
        this.#lines = 0;
        this.#bytes = 0;
        this.#apply();
      }, Math.max(1, 1000 - (now - this.#windowStart)), true);
    }
  }

  /** Keeps the stream paused until `release(why)`. */
  hold(why: string): void {
    this.#holds.add(why);
    this.#apply();
  }

  release(why: string): void {
    if (this.#holds.delete(why)) this.#apply();
  }

  stop(): void {
    this.#stopped = true;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
  }

  #apply(): void {
    if (this.#stopped || this.#stream.destroyed) return;
    if (this.paused) this.#stream.pause();
    else this.#stream.resume();
  }
}

/**
 * A budget of `perSec` units a second (by the clock), for log lines: `take()`
 * says whether one more may be logged; what is refused is counted, and
 * `onSummary(refused)` is called once after each second in which some was.
 *
 * @example
 * const budget = new RateBudget(clock, 100, (n) => log.warn({ not_logged: n }, 'plugin output over the log rate cap'));
 * if (budget.take()) log.info(line);
 */
export class RateBudget {
  #clock: Clock;
  #perSec: number;
  #onSummary: (refused: number) => void;
  #windowStart: number;
  #used = 0;
  #refused = 0;
  #timer: TimerHandle | null = null;

  constructor(clock: Clock, perSec: number, onSummary: (refused: number) => void) {
    this.#clock = clock;
    this.#perSec = perSec;
    this.#onSummary = onSummary;
    this.#windowStart = clock.now();
  }

  /** Takes `n` units (default 1); false when the second's budget is spent (they are counted as refused). */
  take(n = 1): boolean {
    const now = this.#clock.now();
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#used = 0;
    }
    if (this.#used + n <= this.#perSec) {
      this.#used += n;
      return true;
    }
    this.#refused += n;
    this.#timer ??= this.#clock.setTimeout(() => this.flush(), Math.max(1, 1000 - (now - this.#windowStart)), true);
    return false;
  }

  /** Reports what was refused so far (if anything) now, and clears the timer. */
  flush(): void {
    this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    const refused = this.#refused;
    this.#refused = 0;
    if (refused > 0) this.#onSummary(refused);
  }
}
