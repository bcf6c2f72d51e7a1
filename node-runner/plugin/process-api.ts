/**
 * @module plugin/process-api
 * The data a PluginProcess is made with and speaks of: its options and
 * callbacks, its states, the `configure` line it sends and the spawner it
 * starts programs with. The behaviour is `process.ts`'s.
 */

import type { ChildProcess, SpawnOptions } from 'node:child_process';
import type { Clock } from '../../src/core/clock.ts';
import type { Logger, LogLevel } from '../../src/core/log.ts';
import type { ReadLimits } from '../gateway/throttle.ts';
import type { Reaper } from './reaper.ts';

/** What `configure` carries for one route. */
export interface ConfigureParams {
  route_id: string;
  match?: { domain?: string; path?: string };
}

export type Spawner = (command: string, args: string[], options: SpawnOptions) => ChildProcess;

export type PluginState = 'stopped' | 'starting' | 'running' | 'ready' | 'backoff';

export interface PluginProcessOptions {
  logger: Logger;
  clock?: Clock;
  spawn?: Spawner;
  reaper?: Reaper;
  /** time between closing stdin and SIGTERM, and between SIGTERM and SIGKILL (default 2 s each) */
  stopGraceMs?: number;
  /** first restart delay (default 1 s); doubles per failed start */
  backoffBaseMs?: number;
  /** longest restart delay (default 30 s) */
  backoffMaxMs?: number;
  /**
   * a process that stays up this long (by the clock) resets the failure
   * count, so the next crash is retried after `backoffBaseMs` again (default 30 s)
   */
  healthyMs?: number;
  /** called when the plugin says ready; `hooks` is a HOOK_BIT mask */
  onReady?: (socket: string | null, hooks: number) => void;
  /** called for `set_targets` and `set_speed` lines */
  onPush?: (method: 'set_targets' | 'set_speed', params: unknown) => void;
  /**
   * called once per process that sends no `ready` although it runs:
   * `'acked'` when it acknowledged a configure and `pushOnlyGraceMs` passed
   * (prox's SDK never sends ready for a plugin without hooks), `'talked'`
   * when it said something else and `ready_timeout` passed
   */
  onNoReady?: (kind: 'acked' | 'talked') => void;
  /** how long after its first configure ack a plugin may take to send `ready` before it counts as push-only (default 1 s) */
  pushOnlyGraceMs?: number;
  /** lines and bytes a second read from each of its stdout and stderr before reading pauses for the rest of the second (default READ_LIMITS) */
  readLimits?: ReadLimits;
  /** lines a second of its output (stderr, `log`, ignored lines) the runner logs; the excess is counted and summarised once a second (default 100) */
  logLinesPerSec?: number;
  /** called when a process has started (not for an adopted one) */
  onSpawn?: (pid: number | undefined) => void;
  /** takes each stderr line (without its newline) instead of the log, e.g. plugin-call's own stderr */
  onStderr?: (line: string) => void;
  /** called whenever the process exits (before a restart is scheduled) */
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
}

const LOG_LEVELS = new Set<LogLevel>(['debug', 'info', 'warn', 'error']);
