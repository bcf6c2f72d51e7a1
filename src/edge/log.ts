/**
 * @module edge/log
 * The worker's logger: one JSON object per line on the console (what
 * `wrangler tail` and Workers Logs show), at or above a level.
 */

import type { LogFields, Logger, LogLevel } from '../core/log.ts';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/**
 * @example
 * const log = consoleLogger('warn');
 * log.child({ route: 'api' }).error({ err: 'x' }, 'hook call failed');
 */
export function consoleLogger(level: LogLevel = 'info', bindings: LogFields = {}): Logger {
  const at = (l: LogLevel) => (a: LogFields | string, msg?: string) => {
    if (RANK[l] < RANK[level]) return;
    const fields = typeof a === 'string' ? {} : a;
    const line = JSON.stringify({ level: l, ...bindings, ...fields, msg: typeof a === 'string' ? a : (msg ?? '') });
    if (l === 'error') console.error(line);
    else if (l === 'warn') console.warn(line);
    else console.log(line);
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more) => consoleLogger(level, { ...bindings, ...more }),
  };
}
