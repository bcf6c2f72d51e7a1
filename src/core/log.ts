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
