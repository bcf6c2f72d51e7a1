/**
 * @module log
 * The logger interface every part of hookgate writes to: structured
 * (an object of fields, then a message), with child loggers per plugin and
 * route. pino satisfies it on Node; the worker passes a console-backed one.
 * Library code never prints with console.log.
 */

export type LogFields = Record<string, unknown>;

export interface LogFn {
  (fields: LogFields, msg?: string): void;
  (msg: string): void;
}

export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  /** A logger that adds `bindings` to every line. */
  child(bindings: LogFields): Logger;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** A logger that discards everything. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};

/**
 * Lets a repeated log line through at most once per interval per key, and
 * says how many were held back meanwhile, so a failure on every request
 * (a dead upstream, a crashed plugin) is reported without flooding the log.
 *
 * @example
 * const throttle = new LogThrottle();
 * const held = throttle.admit(`upstream ${route} ${target}`);
 * if (held >= 0) log.warn({ route, target, suppressed: held }, 'upstream unreachable');
 */
export class LogThrottle {
  readonly intervalMs: number;
  #now: () => number;
  #keys = new Map<string, { at: number; held: number }>();

  constructor(intervalMs = 1000, now: () => number = Date.now) {
    this.intervalMs = intervalMs;
    this.#now = now;
  }

  /** Returns the number of lines held back since the last one let through, or -1 to hold this one back. */
  admit(key: string): number {
    const now = this.#now();
    const k = this.#keys.get(key);
    if (k && now - k.at < this.intervalMs) {
      k.held++;
      return -1;
    }
    if (this.#keys.size >= 10_000) this.#keys.clear();
    this.#keys.set(key, { at: now, held: 0 });
    return k?.held ?? 0;
  }
}
