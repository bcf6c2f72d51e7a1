/**
 * @module plugin/keeper-client
 * The runner's side of the keeper (docs/keeper.md): connects to
 * `<state dir>/keeper.sock`, starting the keeper when nothing answers, and
 * turns the control protocol back into what `process.ts` expects of a
 * child process: `spawn()` returns a ChildProcess-like object (pid, stdin,
 * stdout, stderr; 'spawn', 'error', 'exit' and 'close' events) whose
 * process actually belongs to the keeper. `list()` and `adopt()` find the
 * plugins a previous runner left running.
 *
 * It decides nothing about which plugin to adopt or replace: that is the
 * manager's business.
 */

import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import type { Logger } from '../../src/core/log.ts';
import { LineSplitter } from '../lines.ts';
import { ownFile } from '../own-file.ts';
import { ensureSocketDir, keeperSocketPath } from './keeper-path.ts';
import type { KeeperSpec, KeptPlugin } from './keeper.ts';

/** The keeper's log file in the state dir (keeper.ts writes it; kept here so the client need not load the keeper). */
const KEEPER_LOG = 'keeper.log';

export type { KeptPlugin };

const KEEPER_MAIN = ownFile(import.meta.url, './keeper');

/**
 * A plugin process held by the keeper, seen as a ChildProcess. Signals go
 * to the keeper (`killGroup`), which only signals children it still holds.
 */
export class KeptChild extends EventEmitter {
  readonly id: string;
  pid: number | undefined;
  startTime: number | null = null;
  readonly stdin: Writable;
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  #client: KeeperClient;
  #done = false;
  /** whether we asked the keeper to stop reading this plugin (our stream buffers are full) */
  #paused = false;

  constructor(client: KeeperClient, id: string) {
    super();
    this.#client = client;
    this.id = id;
    this.stdin = new Writable({
      decodeStrings: false,
      write: (chunk: string | Buffer, _enc, cb) => {
        client.send({ type: 'stdin', id, data: chunk.toString() });
        cb();
      },
      final: (cb) => {
        client.send({ type: 'stdin_end', id });
        cb();
      },
    });
  }

  /**
   * @internal a line the keeper relayed. Backpressure: when the owner reads
   * slower than the plugin writes (our buffer is full), the keeper is asked
   * to stop reading the plugin until we have drained, so neither we nor
   * the keeper buffer a flood.
   */
  deliver(stream: 'stdout' | 'stderr', line: string): void {
    const s = stream === 'stdout' ? this.stdout : this.stderr;
    if (s.writableEnded || s.destroyed) return;
    if (!s.write(line + '\n') && !this.#paused && !this.#done) {
      this.#paused = true;
      this.#client.send({ type: 'pause', id: this.id });
      s.once('drain', () => {
        this.#paused = false;
        if (!this.#done) this.#client.send({ type: 'resume', id: this.id });
      });
    }
  }

  /** Asks the keeper to signal the plugin's process group (while it still holds the plugin). */
  killGroup(signal: NodeJS.Signals): void {
    if (!this.#done) this.#client.send({ type: 'signal', id: this.id, signal });
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    this.killGroup(signal);
    return true;
  }

  /** @internal the keeper said the process exited (or the keeper is gone) */
  finish(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#done) return;
    this.#done = true;
    this.exitCode = code;
    this.signalCode = signal;
    // 'exit' and 'close' only after the streams have delivered what they hold:
    // the owner destroys them on 'exit'.
    const ended = (s: PassThrough) =>
      s.readableEnded || s.destroyed ? Promise.resolve() : new Promise<void>((r) => s.once('end', r).once('close', r));
    this.stdout.end();
    this.stderr.end();
    let timer: NodeJS.Timeout | undefined;
    void Promise.race([Promise.all([ended(this.stdout), ended(this.stderr)]), new Promise((r) => (timer = setTimeout(r, 1000)))]).then(() => {
      clearTimeout(timer);
      this.emit('exit', code, signal);
      this.emit('close', code, signal);
    });
  }
}

export interface KeeperClientOptions {
  /** the state dir: `keeper.sock` lives there */
  dir: string;
  logger: Logger;
  /** how long to wait for a newly started keeper to listen (default 5 s) */
  startTimeoutMs?: number;
}

/**
 * One runner's connection to its keeper.
 *
 * Contract: `connect()` is idempotent and starts the keeper if none
 * answers; `spawn()` may be called before the connection is up (messages
 * are queued). If the keeper connection drops, every child it held is
 * reported exited (so supervision restarts them through a new keeper).
 * `shutdown()` tells the keeper to stop every plugin and exit; it resolves
 * when the keeper has closed the connection (bounded). Not safe to share
 * between runners: the keeper serves one runner at a time.
 */
export class KeeperClient {
  readonly dir: string;
  readonly sockPath: string;
  #log: Logger;
  #opts: KeeperClientOptions;
  #sock: Socket | null = null;
  #connecting: Promise<void> | null = null;
  #queue: string[] = [];
  #children = new Map<string, KeptChild>();
  #lists: Array<(r: { keeper_pid: number; plugins: KeptPlugin[] }) => void> = [];
  #closed = false;
  #started = false;
  /** the pid of the keeper, once `list()` has answered */
  keeperPid: number | undefined;

  constructor(opts: KeeperClientOptions) {
    this.#opts = opts;
    this.dir = opts.dir;
    this.sockPath = keeperSocketPath(opts.dir);
    this.#log = opts.logger.child({ component: 'keeper' });
  }

  /** Whether `connect()` started a new keeper (rather than finding one). */
  get startedKeeper(): boolean {
    return this.#started;
  }

  /** Connects to the keeper, starting one when nothing answers. Idempotent. */
  connect(): Promise<void> {
    if (this.#sock && !this.#sock.destroyed) return Promise.resolve();
    return (this.#connecting ??= this.#connect().finally(() => (this.#connecting = null)));
  }

  async #connect(): Promise<void> {
    let sock = await tryConnect(this.sockPath);
    if (!sock) {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      ensureSocketDir(this.sockPath);
      // Its stderr (a crash's stack) goes to its log in the state dir.
      let logFd: number | 'ignore' = 'ignore';
      try {
        logFd = openSync(join(this.dir, KEEPER_LOG), 'a', 0o600);
      } catch (err) {
        this.#log.warn({ err: (err as Error).message }, 'cannot open the keeper log');
      }
      const child = nodeSpawn(process.execPath, [KEEPER_MAIN, this.dir], { detached: true, stdio: ['ignore', 'ignore', logFd], cwd: '/', env: process.env });
      if (typeof logFd === 'number') closeSync(logFd);
      child.on('error', (err) => this.#log.error({ err: err.message }, 'cannot start the keeper'));
      child.unref();
      this.#started = true;
      this.#log.info({ pid: child.pid, socket: this.sockPath, log: join(this.dir, KEEPER_LOG) }, 'keeper started');
      const deadline = Date.now() + (this.#opts.startTimeoutMs ?? 5000);
      while (!sock && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25));
        sock = await tryConnect(this.sockPath);
      }
      if (!sock) throw new Error(`the keeper did not listen on ${this.sockPath} within ${this.#opts.startTimeoutMs ?? 5000} ms`);
    } else {
      this.#log.info({ socket: this.sockPath }, 'connected to a running keeper');
    }
    this.#attach(sock);
  }

  #attach(sock: Socket): void {
    this.#sock = sock;
    sock.setEncoding('utf8');
    const lines = new LineSplitter((line) => this.#onLine(line), () => {}, 256 * 1024 * 1024);
    sock.on('data', (c: string) => lines.push(c));
    sock.on('error', () => {});
    sock.on('close', () => {
      if (this.#sock !== sock) return;
      this.#sock = null;
      if (!this.#closed) this.#log.warn('lost the connection to the keeper; its plugins are treated as exited');
      for (const child of this.#children.values()) child.finish(null, 'SIGKILL');
      this.#children.clear();
      for (const l of this.#lists.splice(0)) l({ keeper_pid: 0, plugins: [] });
    });
    for (const line of this.#queue.splice(0)) sock.write(line);
  }

  /** @internal sends one control message (queued while connecting) */
  send(msg: Record<string, unknown>): void {
    const line = JSON.stringify(msg) + '\n';
    if (this.#sock && !this.#sock.destroyed) this.#sock.write(line);
    else {
      this.#queue.push(line);
      if (!this.#closed) this.connect().catch((err: Error) => this.#failQueued(err));
    }
  }

  #failQueued(err: Error): void {
    this.#log.error({ err: err.message }, 'cannot reach the keeper');
    this.#queue = [];
    for (const child of this.#children.values()) {
      child.emit('error', Object.assign(new Error(err.message), { code: 'EKEEPER' }));
      child.finish(null, null);
    }
    this.#children.clear();
  }

  /** The plugins the keeper holds. */
  async list(): Promise<{ keeper_pid: number; plugins: KeptPlugin[] }> {
    await this.connect();
    const reply = new Promise<{ keeper_pid: number; plugins: KeptPlugin[] }>((r) => this.#lists.push(r));
    this.send({ type: 'list' });
    const r = await reply;
    if (r.keeper_pid) this.keeperPid = r.keeper_pid;
    return r;
  }

  /**
   * A `Spawner` for one plugin: each call asks the keeper to start a new
   * process (with its own id) and returns it as a ChildProcess.
   */
  spawner(name: string, specHash: string): (command: string, args: string[], options: SpawnOptions) => ChildProcess {
    return (command, args, options) => {
      const id = `${name}/${randomUUID().slice(0, 8)}`;
      const child = new KeptChild(this, id);
      this.#children.set(id, child);
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(options.env ?? process.env)) if (v !== undefined) env[k] = v;
      const spec: KeeperSpec = { program: command, args, env, cwd: String(options.cwd ?? process.cwd()) };
      this.send({ type: 'start', id, name, spec, spec_hash: specHash });
      return child as unknown as ChildProcess;
    };
  }

  /** The start time the keeper recorded for a process it holds for us, or null. */
  startTime(pid: number): number | null {
    for (const c of this.#children.values()) if (c.pid === pid) return c.startTime;
    return null;
  }

  /** Takes over a plugin the keeper already holds (from `list()`), without starting anything. */
  adopt(p: KeptPlugin): KeptChild {
    const child = new KeptChild(this, p.id);
    child.pid = p.pid;
    child.startTime = p.start_time;
    this.#children.set(p.id, child);
    return child;
  }

  /** Stops a plugin the keeper holds that nobody adopted (close stdin, SIGTERM, SIGKILL in the keeper). */
  stopUnadopted(id: string, graceMs: number): void {
    this.send({ type: 'stop', id, grace_ms: graceMs });
  }

  /**
   * Tells the keeper to stop every plugin and exit; resolves when it has
   * closed the connection, or after `timeoutMs`. Does nothing when not
   * connected. Idempotent.
   */
  async shutdown(timeoutMs = 10_000): Promise<void> {
    this.#closed = true;
    this.#queue = [];
    const sock = this.#sock;
    if (!sock || sock.destroyed) return;
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.write(JSON.stringify({ type: 'exit' }) + '\n');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    sock.destroy();
  }

  /** Drops the connection without stopping anything (the keeper's grace starts). For tests. */
  disconnect(): void {
    this.#closed = true;
    this.#sock?.destroy();
  }

  #onLine(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if (msg.type === 'list') {
      this.#lists.shift()?.({ keeper_pid: Number(msg.keeper_pid) || 0, plugins: (msg.plugins as KeptPlugin[]) ?? [] });
      return;
    }
    const child = typeof msg.id === 'string' ? this.#children.get(msg.id) : undefined;
    if (!child) return;
    switch (msg.type) {
      case 'started':
        child.pid = Number(msg.pid);
        child.startTime = typeof msg.start_time === 'number' ? msg.start_time : null;
        child.emit('spawn');
        return;
      case 'stdout':
      case 'stderr':
        child.deliver(msg.type, String(msg.line));
        return;
      case 'overlong':
        child.emit('overlong', msg.stream === 'stderr' ? 'stderr' : 'stdout');
        return;
      case 'spawn_error':
        child.emit('error', Object.assign(new Error(String(msg.message)), { code: String(msg.code ?? '') }));
        return;
      case 'exited':
        this.#children.delete(child.id);
        child.finish(typeof msg.code === 'number' ? msg.code : null, (msg.signal as NodeJS.Signals | null) ?? null);
        return;
    }
  }
}

function tryConnect(path: string): Promise<Socket | null> {
  return new Promise((resolve) => {
    const sock = connect(path);
    sock.once('connect', () => {
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', () => {
      sock.destroy();
      resolve(null);
    });
  });
}
