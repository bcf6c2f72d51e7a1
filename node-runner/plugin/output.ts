/**
 * @module plugin/output
 * What a plugin process's output costs the log: its stderr lines grouped
 * into records (a stack trace is one record), its log lines within a rate
 * budget (the excess counted and summarised once a second), and lines
 * over 1 MiB counted. One PluginOutput per process; reading the streams
 * is `process.ts`'s business.
 */

import type { Clock, TimerHandle } from '../../src/core/clock.ts';
import type { Logger, LogLevel } from '../../src/core/log.ts';
import { RateBudget } from '../gateway/throttle.ts';

/** stderr lines that arrive within this long of the first are one log record (a stack trace is one record)... */
export const STDERR_GROUP_MS = 50;
/** ... up to this many lines or bytes. */
export const STDERR_GROUP_LINES = 64;
export const STDERR_GROUP_BYTES = 16 * 1024;

/** The output of one process. Not shared between processes. */
export class PluginOutput {
  #log: Logger;
  #clock: Clock;
  #budget: RateBudget;
  #group: string[] = [];
  #groupBytes = 0;
  #groupTimer: TimerHandle | null = null;
  #overlong = { stdout: 0, stderr: 0 };

  constructor(log: Logger, clock: Clock, linesPerSec: number) {
    this.#log = log;
    this.#clock = clock;
    this.#budget = new RateBudget(clock, linesPerSec, (refused) =>
      log.warn({ not_logged: refused, cap_per_s: linesPerSec }, 'plugin output over the log rate cap; lines not logged in the last second'),
    );
  }

  /** Logs what a plugin's output made us say, within its budget (`lines`: how many of its lines this record holds). */
  log(level: LogLevel, fields: Record<string, unknown>, msg: string, lines = 1): void {
    if (!this.#budget.take(lines)) return;
    this.#log[level](fields, msg);
  }

  /** One stderr line: grouped with the lines that follow it within STDERR_GROUP_MS into one record. */
  stderrLine(line: string): void {
    this.#group.push(line);
    this.#groupBytes += line.length + 1;
    if (this.#group.length >= STDERR_GROUP_LINES || this.#groupBytes >= STDERR_GROUP_BYTES) this.#flushStderr();
    else this.#groupTimer ??= this.#clock.setTimeout(() => this.#flushStderr(), STDERR_GROUP_MS, true);
  }

  #flushStderr(): void {
    this.#clock.clearTimeout(this.#groupTimer);
    this.#groupTimer = null;
    const n = this.#group.length;
    if (n === 0) return;
    const text = this.#group.join('\n');
    this.#group = [];
    this.#groupBytes = 0;
    this.log('info', n > 1 ? { stream: 'stderr', lines: n } : { stream: 'stderr' }, text, n);
  }

  /** A line over 1 MiB was dropped. */
  overlong(stream: 'stdout' | 'stderr'): void {
    // Warned once per process and stream; the count of the others is logged when it exits.
    if (this.#overlong[stream]++ === 0) {
      this.#log.warn({ stream }, `plugin wrote a ${stream} line over 1 MiB; it was dropped (later ones are counted, not logged)`);
    }
  }

  /** The process exited: the last group and the counts are logged. */
  end(): void {
    this.#flushStderr();
    this.#budget.flush();
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.#overlong[stream] > 1) this.#log.warn({ stream, lines: this.#overlong[stream] }, `plugin wrote ${this.#overlong[stream]} ${stream} lines over 1 MiB; all were dropped`);
    }
  }
}
