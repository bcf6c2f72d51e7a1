/**
 * @module log
 * The runner's logger: pino on stderr (stdout is free for a command's own
 * output). Level: `HOOKGATE_LOG_LEVEL`, else the config's `log.level`,
 * else info. Format: `HOOKGATE_LOG_FORMAT` (or `--log-format`, which sets
 * it), else the config's `log.format`: `json` (one JSON object per line,
 * for machines) or `pretty` (one human line per record: time, level,
 * message, fields; coloured on a terminal); without either, pretty when
 * stderr is a terminal, json otherwise.
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
export function createLogger(opts: { name?: string; level?: string; format?: string } = {}): Logger {
  const { level, format } = logSettings(opts);
  const dest = pino.destination({ dest: 2, sync: true });
  return pino(
    { name: opts.name ?? 'hookgate', level, base: undefined },
    format === 'pretty' ? { write: (line: string) => dest.write(prettyLine(line, process.stderr.isTTY === true)) } : dest,
  ) as unknown as Logger;
}

const LEVEL_NAMES = ['debug', 'info', 'warn', 'error'];

/**
 * The log level and format in force: the environment's
 * (`HOOKGATE_LOG_LEVEL`, `HOOKGATE_LOG_FORMAT`) over the config's `log`
 * section (`config`), over the defaults (info; pretty on a terminal, else
 * json). An environment value that is not one of those is reported on
 * stderr and not used.
 *
 * @example
 * logSettings({ level: 'warn' }) // { level: 'warn', format: 'json' } (no env, stderr not a terminal)
 */
export function logSettings(config: { level?: string; format?: string } = {}, env: NodeJS.ProcessEnv = process.env): { level: string; format: 'json' | 'pretty' } {
  let level = config.level ?? 'info';
  const l = env.HOOKGATE_LOG_LEVEL;
  if (l && LEVEL_NAMES.includes(l)) level = l;
  else if (l) process.stderr.write(`hookgate: HOOKGATE_LOG_LEVEL: expected ${LEVEL_NAMES.join(', ')}, got "${l}"; using ${level}\n`);
  let format: 'json' | 'pretty' = config.format === 'json' || config.format === 'pretty' ? config.format : process.stderr.isTTY ? 'pretty' : 'json';
  const f = env.HOOKGATE_LOG_FORMAT;
  if (f === 'json' || f === 'pretty') format = f;
  else if (f) process.stderr.write(`hookgate: HOOKGATE_LOG_FORMAT: expected "json" or "pretty", got "${f}"; using ${format}\n`);
  return { level, format };
}


const LEVELS: Record<number, [string, string]> = {
  10: ['TRACE', '\x1b[90m'],
  20: ['DEBUG', '\x1b[36m'],
  30: ['INFO ', '\x1b[32m'],
  40: ['WARN ', '\x1b[33m'],
  50: ['ERROR', '\x1b[31m'],
  60: ['FATAL', '\x1b[35m'],
};

/**
 * One pino JSON record as a human line: `12:00:01.234 INFO  message  k=v …`
 * (local time; strings with spaces quoted; a multi-line field, such as a
 * stack or a plugin's traceback, and the lines after a multi-line
 * message's first, indented on the lines below).
 *
 * @example
 * prettyLine('{"level":30,"time":0,"msg":"plugin started","plugin":"auth"}\n', false)
 * // '00:00:00.000 INFO  plugin started  plugin=auth\n' (in UTC)
 */
export function prettyLine(json: string, colour: boolean): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { level, time, msg, name: _name, ...fields } = rec;
  const d = new Date(typeof time === 'number' ? time : Date.now());
  const two = (n: number) => String(n).padStart(2, '0');
  const stamp = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
  const [label, tint] = LEVELS[level as number] ?? [String(level).padEnd(5), ''];
  const blocks: string[] = [];
  const pairs: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    const text = typeof v === 'string' ? v : JSON.stringify(v);
    if (typeof v === 'string' && v.includes('\n')) blocks.push(`${k}:\n${v.replace(/\n+$/, '').replace(/^/gm, '    ')}`);
    else pairs.push(`${k}=${typeof v === 'string' && (v === '' || /[\s"=]/.test(v)) ? JSON.stringify(v) : text}`);
  }
  const dim = (s: string) => (colour ? `\x1b[2m${s}\x1b[0m` : s);
  // A multi-line message (a plugin's stderr lines grouped into one record): its first line heads, the rest is indented below.
  const [first, ...more] = String(msg ?? '').replace(/\n+$/, '').split('\n');
  if (more.length) blocks.unshift(more.join('\n').replace(/^/gm, '    '));
  const head = `${dim(stamp)} ${colour ? `${tint}${label}\x1b[0m` : label} ${first}${pairs.length ? `  ${dim(pairs.join(' '))}` : ''}`;
  return `${[head, ...blocks].join('\n')}\n`;
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
