/**
 * @module plugin/process
 * One plugin child process and its supervision: start (environment and
 * pin: `spawn-env.ts`), the stdin/stdout JSON lines of docs/protocol.md §1
 * (read by `stdout-line.ts`, logged by `output.ts`), restarts with
 * exponential backoff, the ready deadline, and the stop sequence (close
 * stdin, SIGTERM, SIGKILL). It knows nothing of routes or sockets: it sends
 * the configure lines it is given and reports `ready`, pushes and exits to
 * its owner (the manager).
 */

import { spawn as nodeSpawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HookgateError } from '../../src/core/errors.ts';
import type { Logger, LogLevel } from '../../src/core/log.ts';
import type { PluginConfig } from '../../src/core/config/config.ts';
import { SOCKET_DIR_KEY, SOCKET_DIR_PREFIX } from '../../src/core/protocol/protocol.ts';
import { backoffDelay } from '../../src/core/backoff.ts';
import { realClock, type Clock, type TimerHandle } from '../../src/core/clock.ts';
import { LineSplitter } from '../lines.ts';
import { READ_LIMITS, ReadThrottle } from '../gateway/throttle.ts';
import type { PluginInstance } from './instance.ts';
import { PluginOutput } from './output.ts';
import type { ConfigureParams, PluginProcessOptions, PluginState } from './process-api.ts';
import { parseStdoutLine, type ReadyLine } from './stdout-line.ts';
import { killGroup, pluginEnv, removeSocketDir, sha256File } from './spawn-env.ts';

export type { ConfigureParams, PluginProcessOptions, PluginState, Spawner } from './process-api.ts';

/**
 * Supervises one plugin. Created stopped; `start()` launches it and keeps it
 * running (restarting after every exit, with backoff 1 s, 2 s, 4 s ... 30 s)
 * until `stop()`. The backoff starts over only once a process has stayed up
 * for `healthyMs` (30 s): a plugin that acks, says ready or pushes and then
 * crashes is still a crash loop, and slows down like one.
 *
 * Contract: `start()` on a started plugin and `stop()` on a stopped one are
 * no-ops, and stopping is final: `stop()` before `start()` is not an error
 * and keeps the plugin from ever starting. `configure()` may be called at
 * any time: the lines are sent now when the process runs, and again after
 * every restart. Errors (spawn failure, checksum mismatch) are logged and
 * retried with backoff, never thrown. The owner must call `stop()`; the
 * reaper (when given) kills the process group if the runner dies first.
 */
export class PluginProcess implements PluginInstance {
  readonly name: string;
  readonly config: PluginConfig;
  #opts: PluginProcessOptions;
  #log: Logger;
  #clock: Clock;
  #child: ChildProcess | null = null;
  #state: PluginState = 'stopped';
  #wanted = false;
  #stoppedForGood = false;
  #configure: ConfigureParams[] = [];
  #failures = 0;
  #restartTimer: TimerHandle | null = null;
  #restartDelay: number | null = null;
  #readyTimer: TimerHandle | null = null;
  #graceTimer: TimerHandle | null = null;
  /** the process the push-only grace has already been spent on */
  #settledByGrace: ChildProcess | null = null;
  #settled = false;
  #healthyTimer: TimerHandle | null = null;
  #exited: Promise<void> = Promise.resolve();
  #alive = false;
  #lastError = '';
  #output: PluginOutput | null = null;

  constructor(name: string, config: PluginConfig, opts: PluginProcessOptions) {
    this.name = name;
    this.config = config;
    this.#opts = opts;
    this.#log = opts.logger;
    this.#clock = opts.clock ?? realClock;
  }

  get state(): PluginState {
    return this.#state;
  }

  /** The running process's id, or undefined. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Consecutive failed starts (exits) since a process last stayed up for `healthyMs`. */
  get failures(): number {
    return this.#failures;
  }

  /** Why the last start failed or the last process exited, or '' once a process stayed up for `healthyMs`. */
  get lastError(): string {
    return this.#lastError;
  }

  /**
   * Whether the running process has shown what it is: it said `ready`,
   * pushed, or was found push-only (`onNoReady`). A push-only plugin counts
   * as ready only then, not merely because it runs. False between processes.
   */
  get settled(): boolean {
    return this.#settled;
  }

  /** The delay of the restart now pending (state `backoff`), or null. */
  get restartDelay(): number | null {
    return this.#restartDelay;
  }

  /** Always: a spawned process is one a keeper can hold and hand to the next runner. */
  get adoptable(): true {
    return true;
  }

  /** Why a call cannot be made while the process has no pool. */
  unavailable(): HookgateError {
    return new HookgateError('PLUGIN_UNAVAILABLE', `plugin is ${this.#state === 'backoff' ? 'restarting' : this.#state === 'ready' ? 'without a socket' : 'not ready'}`);
  }

  /** A process's calls fail on their own; nothing to check. */
  callFailed(_err: unknown): void {}

  /** See PluginInstance: running, settled, and push-only or bound to no route. */
  readyWithoutPool(known: boolean, hooks: number, configure: readonly ConfigureParams[]): boolean {
    if (this.#state === 'backoff' || this.#state === 'stopped' || !this.#settled) return false;
    return (known && hooks === 0) || configure.every((c) => c.route_id === '');
  }

  /** The delay before restart number `failures` (1 s, 2 s, 4 s ... capped). */
  backoffDelay(failures: number): number {
    return backoffDelay(failures - 1, this.#opts.backoffBaseMs ?? 1000, this.#opts.backoffMaxMs ?? 30_000);
  }

  /** Starts the plugin and keeps it running. Idempotent. */
  start(): void {
    // Stopped is final (Consul's managed-proxy rule): a plugin stopped before
    // or after starting never starts again; the owner makes a new one.
    if (this.#wanted || this.#stoppedForGood) return;
    this.#wanted = true;
    void this.#launch();
  }

  /**
   * Sets the configure lines (one per bound route) and sends them now if the
   * process is running. They are sent again after every restart.
   */
  configure(params: ConfigureParams[]): void {
    this.#configure = params;
    if (this.#child && this.#state !== 'starting') this.#sendConfigure();
  }

  /**
   * Stops the plugin: closes stdin, then SIGTERM to its process group after
   * the grace period, then SIGKILL after a second one. Resolves when the
   * process has exited. Idempotent; cancels a pending restart.
   */
  async stop(): Promise<void> {
    this.#stoppedForGood = true;
    this.#wanted = false;
    this.#clock.clearTimeout(this.#restartTimer);
    this.#clock.clearTimeout(this.#readyTimer);
    this.#clock.clearTimeout(this.#graceTimer);
    this.#clock.clearTimeout(this.#healthyTimer);
    this.#restartTimer = null;
    this.#restartDelay = null;
    const child = this.#child;
    if (!child) {
      this.#state = 'stopped';
      return;
    }
    const grace = this.#opts.stopGraceMs ?? 2000;
    const exited = this.#exited;
    child.stdin?.end();
    const term = this.#clock.setTimeout(() => {
      this.#log.warn({ pid: child.pid }, 'plugin did not exit after stdin closed; sending SIGTERM');
      killGroup(child, 'SIGTERM');
    }, grace);
    const kill = this.#clock.setTimeout(() => {
      this.#log.warn({ pid: child.pid }, 'plugin did not exit after SIGTERM; sending SIGKILL');
      killGroup(child, 'SIGKILL');
    }, 2 * grace);
    await exited;
    this.#clock.clearTimeout(term);
    this.#clock.clearTimeout(kill);
    this.#state = 'stopped';
  }

  async #launch(): Promise<void> {
    if (!this.#wanted) return;
    this.#state = 'starting';
    this.#alive = false;
    this.#settled = false;
    const cfg = this.config;
    const [program, ...first] = cfg.command ?? [cfg.path as string];
    try {
      if (cfg.sha256) {
        const actual = await sha256File(program).catch((err: NodeJS.ErrnoException) => {
          throw new HookgateError('SPAWN_FAILED', `plugin "${this.name}": cannot read ${program} to check its sha256 (${err.code ?? err.message})`);
        });
        if (actual !== cfg.sha256) {
          throw new HookgateError(
            'CHECKSUM_MISMATCH',
            `plugin "${this.name}": refusing to start ${program}: its sha256 is ${actual}, the config pins ${cfg.sha256}`,
          );
        }
      }
      if (!this.#wanted) return;
      this.#spawn(program, [...first, ...cfg.args]);
    } catch (err) {
      this.#lastError = (err as Error).message;
      this.#log.error({ code: (err as HookgateError).code }, this.#lastError);
      this.#scheduleRestart();
    }
  }

  #spawn(program: string, args: string[]): void {
    const cfg = this.config;
    const env = pluginEnv(cfg);
    // A private folder per process for its socket: removed when the process
    // is gone (here, and by the keeper, which outlives us), however it ended.
    // In the plugin's temp dir (its env's TMPDIR, else ours), or /tmp when
    // a socket path there would be too long for Linux.
    let socketDir: string | null = null;
    let base = env.TMPDIR || tmpdir();
    if (Buffer.byteLength(join(base, `${SOCKET_DIR_PREFIX}XXXXXX`, 'plugin.sock')) > 100) base = '/tmp';
    try {
      socketDir = mkdtempSync(join(base, SOCKET_DIR_PREFIX));
      env[SOCKET_DIR_KEY] = socketDir;
    } catch (err) {
      this.#log.warn({ dir: base, err: (err as Error).message }, 'cannot make a socket folder for the plugin; it makes its own');
    }
    const spawn = this.#opts.spawn ?? nodeSpawn;
    let child: ChildProcess;
    try {
      // detached: the plugin leads its own process group, so stop and the
      // reaper can end it together with anything it started.
      child = spawn(program, args, { cwd: cfg.cwd, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    } catch (err) {
      removeSocketDir(socketDir);
      this.#lastError = `plugin "${this.name}": cannot start ${program}: ${(err as Error).message}`;
      this.#log.error(this.#lastError);
      this.#scheduleRestart();
      return;
    }
    this.#attach(child, program, socketDir);
    child.on('spawn', () => {
      if (child.pid) this.#opts.reaper?.add(child.pid);
      this.#log.info({ pid: child.pid }, 'plugin started');
      this.#state = 'running';
      this.#sendConfigure();
      this.#readyTimer = this.#clock.setTimeout(() => this.#onReadyDeadline(child), this.config.ready_timeout, true);
      this.#armHealthy(child);
      this.#opts.onSpawn?.(child.pid);
    });
  }

  /**
   * Takes over a process that is already running (a plugin the keeper kept
   * while the runner restarted): supervises it as if it had been started
   * here, without starting anything or sending `configure`. `lines` are
   * stdout lines to handle first (the last `ready`, the last pushes), as if
   * the plugin had just written them. On a stopped plugin, or one already
   * started, it does nothing and returns false.
   */
  adopt(child: ChildProcess, lines: string[] = []): boolean {
    if (this.#wanted || this.#stoppedForGood) return false;
    this.#wanted = true;
    this.#attach(child, this.config.command?.[0] ?? String(this.config.path));
    this.#state = 'running';
    // It ran before: a plugin that sends no ready is push-only, not dead.
    this.#alive = true;
    this.#settled = true;
    this.#log.info({ pid: child.pid }, 'plugin adopted');
    this.#readyTimer = this.#clock.setTimeout(() => this.#onReadyDeadline(child), this.config.ready_timeout, true);
    this.#armHealthy(child);
    for (const line of lines) this.#onStdout(line);
    return true;
  }

  #armHealthy(child: ChildProcess): void {
    this.#clock.clearTimeout(this.#healthyTimer);
    this.#healthyTimer = this.#clock.setTimeout(
      () => {
        if (this.#child !== child) return;
        this.#healthyTimer = null;
        if (this.#failures > 0) this.#log.info({ failures: this.#failures, up_ms: this.#opts.healthyMs ?? 30_000 }, 'plugin stayed up; its restart backoff starts over');
        this.#failures = 0;
        this.#lastError = '';
      },
      this.#opts.healthyMs ?? 30_000,
      true,
    );
  }

  #attach(child: ChildProcess, program: string, socketDir: string | null = null): void {
    this.#child = child;
    let resolveExit!: () => void;
    this.#exited = new Promise((r) => (resolveExit = r));
    let spawnError: NodeJS.ErrnoException | null = null;

    child.on('error', (err: NodeJS.ErrnoException) => {
      // Spawn failures (ENOENT, EACCES) arrive here, followed by 'close'.
      spawnError = err;
    });
    child.stdin?.on('error', () => {
      // EPIPE when the plugin died; its exit is handled by 'close'.
    });
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    const output = (this.#output = new PluginOutput(this.#log, this.#clock, this.#opts.logLinesPerSec ?? 100));
    // Reading is bounded per stream: a flood fills the plugin's pipe and
    // blocks the plugin, not the runner (through the keeper, the pause
    // travels back to the keeper, which stops reading that plugin).
    const limits = this.#opts.readLimits ?? READ_LIMITS;
    const outRate = child.stdout ? new ReadThrottle(child.stdout, this.#clock, limits) : null;
    const errRate = child.stderr ? new ReadThrottle(child.stderr, this.#clock, limits) : null;
    const out = new LineSplitter(
      (line) => {
        outRate?.line(line.length);
        this.#onStdout(line);
      },
      () => output.overlong('stdout'),
    );
    const errLines = new LineSplitter(
      (line) => {
        errRate?.line(line.length);
        // plugin-call shows the lines as they come; the runner logs them grouped.
        if (this.#opts.onStderr) this.#opts.onStderr(line);
        else output.stderrLine(line);
      },
      () => output.overlong('stderr'),
    );
    child.stdout?.on('data', (c: string) => out.push(c));
    child.stderr?.on('data', (c: string) => errLines.push(c));
    // A plugin held by the keeper: the keeper splits its lines and reports the over-long ones.
    child.on('overlong', (stream: unknown) => output.overlong(stream === 'stderr' ? 'stderr' : 'stdout'));
    child.on('exit', () => {
      // 'close' waits for every holder of the pipes; a grandchild that kept
      // stdout open would hide the exit. End the group and our pipe ends now.
      killGroup(child, 'SIGKILL');
      child.stdout?.destroy();
      child.stderr?.destroy();
      child.stdin?.destroy();
    });
    child.on('close', (code, signal) => {
      out.end();
      errLines.end();
      outRate?.stop();
      errRate?.stop();
      output.end();
      removeSocketDir(socketDir);
      this.#clock.clearTimeout(this.#readyTimer);
      this.#clock.clearTimeout(this.#graceTimer);
      this.#graceTimer = null;
      this.#settled = false;
      this.#clock.clearTimeout(this.#healthyTimer);
      this.#healthyTimer = null;
      if (child.pid) {
        // Anything the plugin started in its group goes with it.
        killGroup(child, 'SIGKILL');
        this.#opts.reaper?.remove(child.pid);
      }
      this.#child = null;
      if (spawnError) {
        this.#lastError = `plugin "${this.name}": cannot start ${program}: ${spawnError.code ?? ''} ${spawnError.message}`.trim();
        this.#log.error({ code: spawnError.code }, this.#lastError);
      } else if (this.#wanted) {
        this.#lastError = `plugin "${this.name}" exited (${signal ? `signal ${signal}` : `code ${code}`})`;
        this.#log.warn({ code, signal }, 'plugin exited');
      } else {
        this.#log.info({ code, signal }, 'plugin stopped');
      }
      this.#opts.onExit?.(code, signal);
      resolveExit();
      this.#scheduleRestart();
    });
  }

  #scheduleRestart(): void {
    if (!this.#wanted) {
      this.#state = 'stopped';
      return;
    }
    this.#failures++;
    const delay = this.backoffDelay(this.#failures);
    this.#state = 'backoff';
    this.#restartDelay = delay;
    this.#log.info({ delay_ms: delay, failures: this.#failures, reason: this.#lastError }, 'plugin will be restarted');
    this.#restartTimer = this.#clock.setTimeout(() => {
      this.#restartTimer = null;
      this.#restartDelay = null;
      void this.#launch();
    }, delay, true);
  }

  #onReadyDeadline(child: ChildProcess): void {
    if (this.#child !== child || this.#state === 'ready') return;
    if (this.#alive) {
      // It talks (acks, pushes) but declares no socket: a push-only plugin.
      this.#clock.clearTimeout(this.#graceTimer);
      this.#log.info('plugin sent no ready before its ready_timeout; treating it as push-only (no hooks)');
      this.#settled = true;
      this.#opts.onNoReady?.('talked');
      return;
    }
    this.#log.error({ timeout_ms: this.config.ready_timeout }, 'plugin sent nothing before its ready_timeout; killing it');
    killGroup(child, 'SIGKILL');
  }

  #sendConfigure(): void {
    const child = this.#child;
    if (!child?.stdin?.writable) return;
    for (const params of this.#configure) {
      child.stdin.write(JSON.stringify({ method: 'configure', params }) + '\n');
    }
  }

  /**
   * After the first configure ack of a process that has not said ready:
   * prox's SDK acks and then says ready at once when the plugin has hooks,
   * and never when it has none. A push proves nothing (a plugin with hooks
   * may push first), so only the ack starts this.
   */
  #armPushOnlyGrace(): void {
    const child = this.#child;
    if (!child || this.#state === 'ready' || this.#graceTimer || this.#settledByGrace === child) return;
    const grace = this.#opts.pushOnlyGraceMs ?? 1000;
    this.#graceTimer = this.#clock.setTimeout(
      () => {
        this.#graceTimer = null;
        if (this.#child !== child || this.#state === 'ready') return;
        this.#settledByGrace = child;
        this.#clock.clearTimeout(this.#readyTimer);
        this.#log.info({ grace_ms: grace }, 'plugin acked its configure and sent no ready; treating it as push-only (no hooks)');
        this.#settled = true;
        this.#opts.onNoReady?.('acked');
      },
      grace,
      true,
    );
  }

  #succeeded(): void {
    // A valid message proves the plugin runs, not that it stays up: the
    // failure count is reset by #armHealthy's timer, not here.
    this.#alive = true;
  }

  #onStdout(text: string): void {
    const line = parseStdoutLine(text);
    switch (line.kind) {
      case 'blank':
        return;
      case 'ack':
        this.#succeeded();
        this.#armPushOnlyGrace();
        return;
      case 'rejected':
        this.#alive = true;
        return this.#plog('warn', { error: line.error }, 'plugin rejected a configure');
      case 'ready':
        return this.#onReady(line);
      case 'push':
        this.#succeeded();
        this.#settled = true;
        this.#opts.onPush?.(line.method, line.params);
        return;
      case 'log':
        this.#alive = true;
        return this.#plog(line.level, line.fields, line.message);
      default:
        this.#plog('warn', { line: text.slice(0, 200) }, line.kind === 'not-object' ? 'ignored a stdout line that is not a JSON object' : 'ignored a stdout line with an unknown method');
    }
  }

  /** Logs what a plugin's output made us say, within its output's budget. */
  #plog(level: LogLevel, fields: Record<string, unknown>, msg: string): void {
    if (this.#output) this.#output.log(level, fields, msg);
    else this.#log[level](fields, msg);
  }

  #onReady({ socket, mask, hooks, unknown }: ReadyLine): void {
    for (const h of unknown) this.#plog('warn', { hook: h }, 'plugin declared an unknown hook; ignored');
    if (mask !== 0 && socket === null) {
      this.#plog('warn', {}, 'plugin sent ready with hooks but without a socket; ignored');
      return;
    }
    this.#succeeded();
    this.#clock.clearTimeout(this.#readyTimer);
    this.#clock.clearTimeout(this.#graceTimer);
    this.#graceTimer = null;
    this.#settled = true;
    this.#state = 'ready';
    this.#log.info({ socket, hooks }, 'plugin ready');
    this.#opts.onReady?.(socket, mask);
  }
}
