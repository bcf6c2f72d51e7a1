/**
 * @module plugin/instance
 * What the manager holds for each plugin, whether it spawned the process
 * (`process.ts`) or something else runs it and the runner only reaches its
 * socket (`attached.ts`): one interface, so the manager starts, calls and
 * stops plugins without asking which kind it has.
 */

import type { ChildProcess } from 'node:child_process';
import type { HookgateError } from '../../src/core/errors.ts';
import type { AttachedState } from './attached.ts';
import type { ConfigureParams, PluginState } from './process.ts';

/**
 * One plugin instance: a spawned process or an attached socket.
 *
 * Contract (both kinds): `start()` on a started instance and `stop()` on a
 * stopped one are no-ops, stopping is final (the owner makes a new
 * instance), nothing here throws, and the owner must call `stop()`.
 */
export interface PluginInstance {
  readonly name: string;
  /** a process's state, or for an attached plugin 'attached' (its socket is reachable), 'down' or 'stopped' */
  readonly state: PluginState | AttachedState;
  /** the running process's id; undefined when there is none or the runner does not own it */
  readonly pid: number | undefined;
  /** consecutive failed starts (process) or failed health checks (attached) */
  readonly failures: number;
  readonly lastError: string;
  /** the delay of the pending restart while in `backoff`, else null (always null for an attached plugin) */
  readonly restartDelay: number | null;
  /** whether it is a spawned process, which a keeper can hold and hand to the next runner (and which goes into the plugins file) */
  readonly adoptable: boolean;
  start(): void;
  /**
   * Takes over a process a keeper held for the previous runner instead of
   * starting one, replaying the stdout `lines` it kept; false when it
   * cannot (already started, or an attached plugin, which has none).
   */
  adopt(child: ChildProcess, lines?: string[]): boolean;
  /** Sets the `configure` lines (one per bound route); an attached plugin has no stdin and ignores them. */
  configure(params: ConfigureParams[]): void;
  stop(): Promise<void>;
  /** A hook call over its pool failed: an attached plugin checks its socket at once. */
  callFailed(err: unknown): void;
  /** Why it cannot take a call while it has no pool (a `PLUGIN_UNAVAILABLE` error). */
  unavailable(): HookgateError;
  /**
   * Whether it is ready without a pool: it has no hooks to serve (`hooks`
   * is its HOOK_BIT mask, `known` whether it has said so) and has shown
   * what it is, or serves no route (every `configure` line has route '').
   */
  readyWithoutPool(known: boolean, hooks: number, configure: readonly ConfigureParams[]): boolean;
}
