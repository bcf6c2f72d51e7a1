/**
 * @module plugin/stdout-line
 * A plugin's stdout lines (docs/protocol.md §1): each JSON object read
 * into what it says (a configure ack or rejection, `ready`, a push, a
 * `log` line), leniently as go-plugin's and prox's readers are: a field of
 * the wrong type reads as empty, an unknown hook is reported, not fatal.
 * Acting on them is `process.ts`'s business; checking a push's params is
 * `pushes.ts`'s.
 */

import type { LogLevel } from '../../src/core/log.ts';
import { HOOK, HOOK_BIT, type HookName } from '../../src/core/protocol/protocol.ts';

const LOG_LEVELS = new Set<LogLevel>(['debug', 'info', 'warn', 'error']);

/** What a `ready` line declares: its socket (null for none), its hooks as a HOOK_BIT mask, the list as sent, and the entries that are not hooks. */
export interface ReadyLine {
  kind: 'ready';
  socket: string | null;
  mask: number;
  hooks: unknown[];
  unknown: unknown[];
}

/** One stdout line, read. */
export type StdoutLine =
  | { kind: 'blank' }
  | { kind: 'not-object' }
  | { kind: 'ack' }
  | { kind: 'rejected'; error: string }
  | ReadyLine
  | { kind: 'push'; method: 'set_targets' | 'set_speed'; params: Record<string, unknown> }
  | { kind: 'log'; level: LogLevel; fields: Record<string, unknown>; message: string }
  | { kind: 'unknown-method' };

/**
 * Reads one stdout line (without its newline). Never throws.
 *
 * @example
 * parseStdoutLine('{"method":"ready","params":{"socket":"/tmp/p.sock","hooks":["on_request"]}}')
 * // { kind: 'ready', socket: '/tmp/p.sock', mask: 1, hooks: ['on_request'], unknown: [] }
 */
export function parseStdoutLine(line: string): StdoutLine {
  if (line.trim() === '') return { kind: 'blank' };
  let msg: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(line);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return { kind: 'not-object' };
    msg = v as Record<string, unknown>;
  } catch {
    return { kind: 'not-object' };
  }
  if (msg.method === undefined) {
    if (msg.result !== undefined) return { kind: 'ack' };
    if (msg.error !== undefined) return { kind: 'rejected', error: String(msg.error) };
  }
  const params = (typeof msg.params === 'object' && msg.params !== null ? msg.params : {}) as Record<string, unknown>;
  switch (msg.method) {
    case 'ready': {
      const socket = typeof params.socket === 'string' && params.socket !== '' ? params.socket : null;
      const hooks = Array.isArray(params.hooks) ? params.hooks : [];
      let mask = 0;
      const unknown: unknown[] = [];
      for (const h of hooks) {
        if (typeof h === 'string' && h in HOOK) mask |= HOOK_BIT[h as HookName];
        else unknown.push(h);
      }
      return { kind: 'ready', socket, mask, hooks, unknown };
    }
    case 'set_targets':
    case 'set_speed':
      return { kind: 'push', method: msg.method, params };
    case 'log': {
      const level = LOG_LEVELS.has(params.level as LogLevel) ? (params.level as LogLevel) : 'info';
      const fields: Record<string, unknown> = { from: 'plugin' };
      const args = Array.isArray(params.args) ? params.args : [];
      for (let i = 0; i + 1 < args.length; i += 2) fields[String(args[i])] = args[i + 1];
      return { kind: 'log', level, fields, message: String(params.message ?? '') };
    }
    default:
      return { kind: 'unknown-method' };
  }
}
