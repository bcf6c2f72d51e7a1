/**
 * @module plugin/attached
 * A plugin that something else runs (a sidecar container, systemd) and the
 * runner only reaches at its Unix socket (`attach: { socket, hooks }` in
 * the config). It stands where a PluginProcess would for the manager
 * (`state`, `pid`, `failures`, `lastError`, `start`, `stop`, `configure`)
 * and, instead of supervising a process, health-checks the socket.
 *
 * What an attached plugin does not have, by design:
 * - no process: `pid` is undefined and `stop()` never signals anything;
 * - no stdin: it gets no `configure` (`configure()` is a no-op), so it must
 *   not depend on one; its routes are its owner's business;
 * - no stdout: no `ready` (its hooks come from `attach.hooks`), no pushes
 *   (`set_targets`, `set_speed`) and no log lines.
 *
 * The pool, routes and verdicts stay the manager's: this module only says
 * when the socket is reachable (`onReady`) and when it is not (`onDown`).
 */

import { connect, type Socket } from 'node:net';
import type { PluginConfig } from '../../src/core/config.ts';
import type { HookgateError } from '../../src/core/errors.ts';
import type { Logger } from '../../src/core/log.ts';
import { HOOK_BIT } from '../../src/core/protocol.ts';
import { realClock, type Clock, type TimerHandle } from '../clock.ts';
import type { ConfigureParams } from './process.ts';

/** `down`: started, socket not reachable (yet); `attached`: the last check connected. */
export type AttachedState = 'stopped' | 'down' | 'attached';

export interface AttachedPluginOptions {
  logger: Logger;
  clock?: Clock;
  /** called when the socket becomes reachable; `hooks` is the HOOK_BIT mask of `attach.hooks` */
  onReady?: (socket: string, hooks: number) => void;
  /** called when a reachable socket stops being reachable */
  onDown?: (reason: string) => void;
}

/**
 * Health checks one attached plugin's socket. Created stopped; `start()`
 * checks at once and then every `attach.health_interval` (default 2 s), in
 * both states: while down to notice it come back, while attached so that a
 * plugin that went away without traffic is reported down too. A check is a
 * connect that is closed as soon as it succeeds; it fails on a connect
 * error or when it has not connected within the interval.
 *
 * How a failed hook call reaches it: the manager calls `callFailed(err)`
 * for every failed call. A `PLUGIN_UNAVAILABLE` failure (connect refused,
 * socket file gone, connection closed) starts a check at once, so a plugin
 * that went away is marked down within one connect rather than one
 * interval; other failures (timeouts, bad replies) say nothing about the
 * socket and are ignored.
 *
 * Contract: `start()` on a started plugin and `stop()` on a stopped one are
 * no-ops; nothing here throws. `onReady` and `onDown` alternate, starting
 * with `onReady`. After `stop()` no callback is made. Not safe to share
 * between owners.
 */
export class AttachedPlugin {
  /** stopping is final, as for PluginProcess */
  #stoppedForGood = false;
  readonly name: string;
  readonly config: PluginConfig;
  /** where the runner connects: `socket_host_path` when set, else `socket` */
  readonly socketPath: string;
  /** HOOK_BIT mask of `attach.hooks` */
  readonly hooks: number;
  #opts: AttachedPluginOptions;
  #log: Logger;
  #clock: Clock;
  #interval: number;
  #state: AttachedState = 'stopped';
  #failures = 0;
  #lastError = '';
  #timer: TimerHandle | null = null;
  /** the check in flight, if any */
  #probe: { socket: Socket; timer: TimerHandle } | null = null;

  constructor(name: string, config: PluginConfig, opts: AttachedPluginOptions) {
    if (!config.attach) throw new TypeError(`plugin "${name}" has no attach settings`);
    this.name = name;
    this.config = config;
    this.socketPath = config.attach.socket_host_path ?? config.attach.socket;
    this.hooks = config.attach.hooks.reduce((mask, h) => mask | HOOK_BIT[h], 0);
    this.#interval = config.attach.health_interval;
    this.#opts = opts;
    this.#log = opts.logger;
    this.#clock = opts.clock ?? realClock;
  }

  get state(): AttachedState {
    return this.#state;
  }

  /** Always undefined: the runner does not own the plugin's process. */
  get pid(): undefined {
    return undefined;
  }

  /** Consecutive failed checks since the socket was last reachable. */
  get failures(): number {
    return this.#failures;
  }

  /** Why the socket is unreachable, or ''. */
  get lastError(): string {
    return this.#lastError;
  }

  /** Starts health checking, the first check at once. Idempotent. */
  start(): void {
    if (this.#state !== 'stopped' || this.#stoppedForGood) return;
    this.#state = 'down';
    this.#check();
  }

  /** Does nothing: an attached plugin has no stdin to be configured over. */
  configure(_params: ConfigureParams[]): void {}

  /**
   * Tells the plugin that a hook call failed. A `PLUGIN_UNAVAILABLE`
   * failure while attached starts a check at once (see the class doc).
   */
  callFailed(err: unknown): void {
    if (this.#state !== 'attached' || (err as HookgateError)?.code !== 'PLUGIN_UNAVAILABLE') return;
    this.#check();
  }

  /** Stops health checking. Never touches the plugin itself. Idempotent. */
  async stop(): Promise<void> {
    this.#stoppedForGood = true;
    this.#state = 'stopped';
    this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    this.#endProbe();
  }

  /** Runs a check now unless one is in flight; the next one follows an interval after it ends. */
  #check(): void {
    if (this.#probe || this.#state === 'stopped') return;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    const socket = connect(this.socketPath);
    const timer = this.#clock.setTimeout(() => this.#checked(`no connection within ${this.#interval} ms`), this.#interval, true);
    this.#probe = { socket, timer };
    socket.unref();
    socket.once('connect', () => this.#checked(''));
    socket.once('error', (err: NodeJS.ErrnoException) => this.#checked(err.code ?? err.message));
  }

  #checked(problem: string): void {
    if (!this.#probe) return;
    this.#endProbe();
    if (this.#state === 'stopped') return;
    if (!problem) {
      this.#failures = 0;
      this.#lastError = '';
      if (this.#state !== 'attached') {
        this.#state = 'attached';
        this.#log.info({ socket: this.socketPath }, 'attached plugin reachable');
        this.#opts.onReady?.(this.socketPath, this.hooks);
      }
    } else {
      this.#failures++;
      this.#lastError = `plugin "${this.name}": cannot connect to ${this.socketPath} (${problem})`;
      if (this.#state === 'attached' || this.#failures === 1) {
        this.#log.warn({ socket: this.socketPath, err: problem }, 'attached plugin unreachable; its calls get on_error verdicts until it is back');
      }
      if (this.#state === 'attached') {
        this.#state = 'down';
        this.#opts.onDown?.(this.#lastError);
      }
    }
    // A callback may have stopped us (or started a check).
    if ((this.#state as AttachedState) !== 'stopped' && !this.#probe) {
      this.#timer = this.#clock.setTimeout(() => this.#check(), this.#interval, true);
    }
  }

  #endProbe(): void {
    const probe = this.#probe;
    this.#probe = null;
    if (!probe) return;
    this.#clock.clearTimeout(probe.timer);
    probe.socket.removeAllListeners();
    probe.socket.on('error', () => {});
    probe.socket.destroy();
  }
}
