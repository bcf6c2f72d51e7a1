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

import { lstatSync, statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { PluginConfig } from '../../src/core/config/config.ts';
import { HookgateError } from '../../src/core/errors.ts';
import type { PluginInstance } from './instance.ts';
import type { Logger } from '../../src/core/log.ts';
import { HOOK_BIT } from '../../src/core/protocol/protocol.ts';
import { realClock, type Clock, type TimerHandle } from '../../src/core/clock.ts';
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
 * error or when it has not connected within the interval. A socket that
 * someone else could have placed (`socketProblem`: a world-writable folder
 * without the sticky bit, another user's socket) fails the check without
 * a connect, so nothing is ever sent to it.
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
export class AttachedPlugin implements PluginInstance {
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
  /** the check in flight, if any (no socket: refused before connecting) */
  #probe: { socket: Socket | null; timer: TimerHandle | null } | null = null;

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

  /** Never: an attached plugin is not restarted by the runner. */
  get restartDelay(): null {
    return null;
  }

  /** Never: a keeper holds only processes the runner spawned. */
  get adoptable(): false {
    return false;
  }

  /** Why calls fail while the socket is unreachable. */
  unavailable(): HookgateError {
    return new HookgateError('PLUGIN_UNAVAILABLE', `attached plugin is down${this.#lastError ? `: ${this.#lastError}` : ''}`);
  }

  /** Ready without a pool only while its socket is reachable and it declared no hooks. */
  readyWithoutPool(_known: boolean, hooks: number): boolean {
    return this.#state === 'attached' && hooks === 0;
  }

  /** Nothing to adopt: the runner does not own the plugin's process. */
  adopt(): false {
    return false;
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
    const unsafe = socketProblem(this.socketPath, this.config.attach?.uid);
    if (unsafe) {
      this.#probe = { socket: null, timer: null };
      return this.#checked(unsafe, true);
    }
    const socket = connect(this.socketPath);
    const timer = this.#clock.setTimeout(() => this.#checked(`no connection within ${this.#interval} ms`), this.#interval, true);
    this.#probe = { socket, timer };
    socket.unref();
    socket.once('connect', () => this.#checked(''));
    socket.once('error', (err: NodeJS.ErrnoException) => this.#checked(err.code ?? err.message));
  }

  /** `refused`: the socket was not tried, because `socketProblem` found it unsafe. */
  #checked(problem: string, refused = false): void {
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
      this.#lastError = `plugin "${this.name}": ${refused ? 'refusing to connect to' : 'cannot connect to'} ${this.socketPath} (${problem})`;
      if (refused && (this.#state === 'attached' || this.#failures === 1)) {
        this.#log.error({ socket: this.socketPath, err: problem }, "refusing to connect to the attached plugin's socket: someone else could have put it there; its calls get on_error verdicts");
      } else if (this.#state === 'attached' || this.#failures === 1) {
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
    probe.socket?.removeAllListeners();
    probe.socket?.on('error', () => {});
    probe.socket?.destroy();
  }
}

/**
 * Why a socket at `path` may be someone else's ('' when it is fine, or
 * when it does not exist yet: connecting says so). Refused: a folder
 * every user may write to without the sticky bit (anyone could put their
 * own socket there), and a socket (or the symlink to it) owned by a user
 * other than the runner's, root, or `allowedUid` (`attach.uid`).
 *
 * @example
 * socketProblem('/tmp/open/auth.sock') // 'its folder /tmp/open is writable by every user and has no sticky bit, ...'
 */
export function socketProblem(path: string, allowedUid?: number): string {
  const me = process.getuid?.();
  if (me === undefined) return '';
  const folder = dirname(path);
  try {
    const d = statSync(folder);
    if (d.mode & 0o002 && !(d.mode & 0o1000)) return `its folder ${folder} is writable by every user and has no sticky bit, so anyone could put a socket there; use a folder only the plugin's user can write`;
  } catch {
    return '';
  }
  for (const st of socketStats(path)) {
    if (st.uid !== me && st.uid !== 0 && st.uid !== allowedUid) {
      return `it is owned by uid ${st.uid}, not by this user (uid ${me}) or root; if that user runs the plugin, say so with attach.uid: ${st.uid}`;
    }
  }
  return '';
}

/** The socket's own stat and, when it is a symlink, its target's ([] when it does not exist). */
function socketStats(path: string): Array<{ uid: number }> {
  try {
    const link = lstatSync(path);
    return link.isSymbolicLink() ? [link, statSync(path)] : [link];
  } catch {
    return [];
  }
}
