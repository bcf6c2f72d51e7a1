/**
 * @module log
 * The runner's logger: pino, JSON lines on stderr (stdout is free for a
 * command's own output), level from `HOOKGATE_LOG_LEVEL` (default info).
 * Also a recording logger for tests and tools that need to read logs back.
 */

import { pino } from 'pino';
import type { LogFields, Logger, LogLevel } from '../src/core/log.ts';

/**
 * Creates the process logger.
 *
 * @example
 * const log = createLogger({ name: 'hookgate' });
 * log.child({ plugin: 'auth' }).info({ pid: 42 }, 'plugin started');
 */
export function createLogger(opts: { name?: string; level?: string } = {}): Logger {
  return pino(
    { name: opts.name ?? 'hookgate', level: opts.level ?? process.env.HOOKGATE_LOG_LEVEL ?? 'info', base: undefined },
    pino.destination({ dest: 2, sync: true }),
  ) as unknown as Logger;
}

export interface LogEntry extends LogFields {
  level: LogLevel;
  msg: string;
}

/**
 * A logger that keeps every entry in memory (with its child bindings),
 * so tests can assert on what was logged.
 *
 * @example
 * const log = recordingLogger();
 * ...; assert.ok(log.entries.some((e) => e.msg.includes('ignored')));
 */
export function recordingLogger(entries: LogEntry[] = [], bindings: LogFields = {}): Logger & { entries: LogEntry[] } {
  const at = (level: LogLevel) => (a: LogFields | string, msg?: string) => {
    const fields = typeof a === 'string' ? {} : a;
    entries.push({ ...bindings, ...fields, level, msg: typeof a === 'string' ? a : (msg ?? '') });
  };
  return {
    entries,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more: LogFields) => recordingLogger(entries, { ...bindings, ...more }),
  };
}
