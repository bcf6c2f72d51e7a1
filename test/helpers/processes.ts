/**
 * @module test/helpers/processes
 * `hookgate` processes, started as users start them and always stopped.
 *
 * * `startGateway` / `startRunner`: write a config into a temp dir, run
 *   `node node-runner/cli/cli.ts serve --config FILE`, and resolve once the
 *   listeners have logged their URLs (a runner: and `/readyz` says every
 *   plugin is ready), or fail with the process's stderr. Stopped with the
 *   scope: SIGTERM, then SIGKILL after a grace period. A gateway the scope
 *   stops must exit 0, or the test that started it fails. Every process
 *   (and, inherited, its plugins) gets a TMPDIR of its own, so even a
 *   plugin killed with SIGKILL leaves no socket folder behind.
 * * `readyz` / `whenReady`: the admin listener's readiness.
 * * `runCli`: the CLI run to completion (`validate FILE`, a `serve` that
 *   must fail).
 * * `isAlive`, `writeConfig`, `readJsonLines`: pids, config files and the
 *   JSON lines fixtures append to.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LineSplitter } from '../../node-runner/lines.ts';
import { request, waitFor } from './http.ts';
import { CLI, ROOT } from './paths.ts';
import { tempDir, type Scope } from './scope.ts';

/** True while a process with this pid runs (a zombie counts as gone). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    // Gone between the probe and the read; without /proc, trust the probe.
    return !existsSync('/proc/self/stat');
  }
}

/** Writes `config` (an object as JSON, which is JSON5; a string as it is) to `dir/name`; returns the path. */
export function writeConfig(dir: string, config: unknown, name = 'hookgate.json5'): string {
  const file = join(dir, name);
  writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  return file;
}

/** The JSON lines of a file a fixture appends to ([] while it does not exist). */
export function readJsonLines<T = Record<string, unknown>>(file: string): T[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as T);
}

// ---------------------------------------------------------------------------
// hookgate serve

/** A pino line from the process's stderr (or `{ msg: line }` for a line that is not JSON). */
export interface LogLine {
  msg: string;
  level?: number;
  [k: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running `hookgate serve`. */
export interface ServeProcess {
  pid: number;
  /** the dir of the config file */
  dir: string;
  configFile: string;
  logs: LogLine[];
  /** the stderr text so far */
  stderr(): string;
  /** Resolves with the first log line (already seen or to come, from index `from`) matching `pred`. */
  waitForLog(pred: string | ((l: LogLine) => boolean), opts?: { timeoutMs?: number; from?: number }): Promise<LogLine>;
  /** Rewrites the config file (the process watches it and reloads). */
  rewrite(config: Record<string, unknown>): void;
  /** Resolves when the process has exited. */
  exited: Promise<Exit>;
  /** True until the process has exited. */
  running(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs` (default 15 s); resolves with the exit. Idempotent. */
  stop(graceMs?: number): Promise<Exit>;
  /** SIGKILL (a crash); resolves with the exit. */
  kill(): Promise<Exit>;
}

interface ServeOptions {
  /** the listeners to wait for ("gateway listening", ...), in the order of the URLs returned */
  listeners: string[];
  /** write the config under this dir (default: a new temp dir) */
  dir?: string;
  /** the config file's name inside its dir */
  fileName?: string;
  /** extra environment */
  env?: Record<string, string>;
  /** wait for `/readyz` 200 too */
  ready?: boolean;
  /** how long to wait for the listeners (and readiness); default 60 s (a hang bound: start-ups on a loaded machine are slow) */
  timeoutMs?: number;
  /** fail the scope's close when the process does not exit 0 on its SIGTERM */
  expectCleanExit?: boolean;
  /** how to run the CLI (default: this Node on the checkout's node-runner/cli/cli.ts), e.g. an installed package's bin */
  bin?: string[];
  /** the working directory (default: the checkout) */
  cwd?: string;
  /** more arguments for `serve`, after `--config FILE` */
  args?: string[];
}

/**
 * Runs `hookgate serve` on `config` (an object written into `opts.dir` or
 * a fresh temp dir, or the path of a file already written); resolves with
 * the process and its listeners' URLs.
 */
async function startServe(s: Scope, config: Record<string, unknown> | string, opts: ServeOptions): Promise<{ proc: ServeProcess; urls: string[] }> {
  let configFile: string;
  let dir: string;
  if (typeof config === 'string') {
    configFile = config;
    dir = join(config, '..');
  } else {
    dir = opts.dir ?? tempDir(s);
    configFile = writeConfig(dir, config, opts.fileName);
  }
  // TMPDIR for the process and (inherited) its plugins: plugin sockets land
  // in a folder the scope removes, even when a test kills a plugin with
  // SIGKILL and it cannot clean up after itself.
  const tmp = tempDir(s, 'hookgate-e2e-tmp-');
  const [cmd, ...args] = opts.bin ?? [process.execPath, CLI];
  const child: ChildProcess = spawn(cmd, [...args, 'serve', '--config', configFile, ...(opts.args ?? [])], {
    cwd: opts.cwd ?? ROOT,
    // A short keeper grace: plugins of a runner a test SIGKILLs do not linger.
    env: { ...process.env, HOOKGATE_LOG_LEVEL: 'info', TMPDIR: tmp, HOOKGATE_KEEPER_GRACE_MS: '5000', ...opts.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let exitInfo: Exit | null = null;
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => resolve((exitInfo = { code, signal })));
  });
  let stderr = '';
  const logs: LogLine[] = [];
  const listeners = new Set<() => void>();
  const lines = new LineSplitter((line) => {
    if (!line.trim()) return;
    let entry: LogLine;
    try {
      entry = JSON.parse(line) as LogLine;
      if (typeof entry !== 'object' || entry === null) throw new Error();
    } catch {
      entry = { msg: line };
    }
    logs.push(entry);
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => {
    stderr += c;
    lines.push(c);
    for (const l of listeners) l();
  });
  // A helper of the runner's may inherit this pipe and keep it open a moment
  // after the runner exits; we never wait for its end, only for the exit.

  let stopping: Promise<Exit> | null = null;
  const stop = (graceMs = 15_000, signal: NodeJS.Signals = 'SIGTERM'): Promise<Exit> =>
    (stopping ??= (async () => {
      if (exitInfo) return exitInfo;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const e = await exited;
      clearTimeout(timer);
      child.stderr!.destroy();
      return e;
    })());
  s.defer(async () => {
    const stoppedBefore = stopping !== null || exitInfo !== null;
    const e = await stop();
    if (opts.expectCleanExit && !stoppedBefore && e.code !== 0) {
      throw new Error(`hookgate serve did not exit 0 on SIGTERM (${e.signal ?? `code ${e.code}`}); stderr:\n${stderr.slice(-4000)}`);
    }
  });

  // How to give up each wait still pending: a failed startup gives up its
  // own waits, whose timers would otherwise keep the test process alive.
  const waits = new Set<() => void>();
  const waitForLog = (pred: string | ((l: LogLine) => boolean), o: { timeoutMs?: number; from?: number } = {}): Promise<LogLine> => {
    const test = typeof pred === 'string' ? (l: LogLine) => typeof l.msg === 'string' && l.msg.includes(pred) : pred;
    const what = typeof pred === 'string' ? JSON.stringify(pred) : 'the predicate';
    const timeoutMs = o.timeoutMs ?? 15_000;
    return new Promise<LogLine>((resolve, reject) => {
      const settle = () => {
        listeners.delete(check);
        waits.delete(giveUp);
        clearTimeout(timer);
      };
      const giveUp = () => {
        settle();
        reject(new Error(`gave up waiting for a log line matching ${what}`));
      };
      const check = () => {
        for (let i = o.from ?? 0; i < logs.length; i++) {
          if (test(logs[i])) {
            settle();
            resolve(logs[i]);
            return;
          }
        }
      };
      const timer = setTimeout(() => {
        settle();
        reject(new Error(`no log line matching ${what} within ${timeoutMs} ms; stderr:\n${stderr.slice(-4000)}`));
      }, timeoutMs);
      listeners.add(check);
      waits.add(giveUp);
      check();
    });
  };

  const timeoutMs = opts.timeoutMs ?? 60_000;
  const died = exited.then((e) => {
    throw new Error(`hookgate serve exited (${e.signal ?? `code ${e.code}`}) before it was ready; stderr:\n${stderr}`);
  });
  died.catch(() => {});
  try {
    const urls = await Promise.race([Promise.all(opts.listeners.map((name) => waitForLog(`${name} listening`, { timeoutMs }).then((l) => String(l.url)))), died]);
    if (opts.ready) await Promise.race([whenReady({ admin: urls[opts.listeners.indexOf('admin')] }, timeoutMs), died]);
    const proc: ServeProcess = {
      pid: child.pid!,
      dir,
      configFile,
      logs,
      stderr: () => stderr,
      waitForLog,
      rewrite: (next) => writeFileSync(configFile, JSON.stringify(next, null, 2)),
      exited,
      running: () => exitInfo === null,
      stop: (graceMs) => stop(graceMs),
      kill: () => stop(0, 'SIGKILL'),
    };
    return { proc, urls };
  } catch (err) {
    for (const giveUp of waits) giveUp();
    await stop(2000);
    throw err;
  }
}

/** GET admin `/readyz`: status and the JSON body. */
export async function readyz(p: { admin: string }): Promise<{ status: number; body: { ready: boolean; config: boolean; plugins: Array<{ name: string; ready: boolean; state: string; hooks: string[]; error?: string; failures?: number; restart_delay_ms?: number }> } }> {
  const res = await request(`${p.admin}/readyz`);
  return { status: res.status, body: res.json() };
}

/** Waits until admin `/readyz` answers 200; fails with its last answer. */
export async function whenReady(p: { admin: string }, timeoutMs = 60_000): Promise<void> {
  let last = '';
  await waitFor(
    async () => {
      const res = await request(`${p.admin}/readyz`);
      last = res.text;
      return res.status === 200;
    },
    { timeoutMs, what: `${p.admin}/readyz to answer 200` },
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last /readyz: ${last}`);
  });
}

// ---------------------------------------------------------------------------
// the gateway

/** A `hookgate serve` seen as a gateway. */
export interface Gateway extends ServeProcess {
  /** "http://127.0.0.1:PORT" of the gateway listener */
  url: string;
  /** "http://127.0.0.1:PORT" of the admin listener */
  admin: string;
}

export interface GatewayOptions {
  /** extra environment for the gateway process */
  env?: Record<string, string>;
  /** how long to wait for both listeners (default 60 s) */
  timeoutMs?: number;
  /** the config file's name inside its temp dir */
  fileName?: string;
  /** how to run the CLI (default: the checkout's node-runner/cli/cli.ts on this Node) */
  bin?: string[];
  /** the working directory (default: the checkout) */
  cwd?: string;
  /** more arguments for `serve`, after `--config FILE` */
  args?: string[];
}

/** The config every gateway test starts from: ephemeral ports on loopback. */
export function baseConfig(rest: Record<string, unknown>): Record<string, unknown> {
  return { gateway: { listen: '127.0.0.1:0' }, admin: { listen: '127.0.0.1:0' }, ...rest };
}

/**
 * Runs `hookgate serve` on `config` (an object written into a fresh temp
 * dir, or the path of a file already written) and resolves when its
 * gateway and admin listeners are up; its plugins may still be starting
 * (`whenReady`). A gateway the scope stops must exit 0.
 *
 * @example
 * const gw = await startGateway(s, baseConfig({ routes: [...] }));
 * const res = await request(`${gw.url}/x`);
 */
export async function startGateway(s: Scope, config: Record<string, unknown> | string, opts: GatewayOptions = {}): Promise<Gateway> {
  const { proc, urls } = await startServe(s, config, { ...opts, listeners: ['gateway', 'admin'], expectCleanExit: true });
  const [url, admin] = urls;
  return { ...proc, url, admin };
}

// ---------------------------------------------------------------------------
// the runner (the hook API of edge workers)

/** The runner API key every runner test config carries (id "edge"). */
export const KEY = 'edge-key-0123456789abcdef';

/** A runner config on loopback, ephemeral ports, with the test key; `rest` adds or overrides. */
export function runnerConfig(rest: Record<string, unknown>, opts: { runnerListen?: string; keys?: unknown[] } = {}): Record<string, unknown> {
  return baseConfig({ runner: { listen: opts.runnerListen ?? '127.0.0.1:0', keys: opts.keys ?? [{ id: 'edge', secret: KEY }] }, ...rest });
}

/** A `hookgate serve` seen as a runner. */
export interface RunnerProcess extends ServeProcess {
  /** base URL of the hook API ("http://127.0.0.1:PORT") */
  url: string;
  /** base URL of the self-hosted gateway */
  gateway: string;
  admin: string;
  /** the hook API's port */
  port: number;
}

export interface RunnerOptions {
  /** write the config under this dir (default: a new temp dir) */
  dir?: string;
  env?: Record<string, string>;
  /** wait for `/readyz` 200 too (default true) */
  ready?: boolean;
  timeoutMs?: number;
}

/**
 * Runs `hookgate serve` on `config` and resolves when its runner, gateway
 * and admin listeners are up and its plugins ready. Its plugins are held by
 * a keeper (in `<dir>/.hookgate-state`): a SIGTERM stops them; after a
 * SIGKILL they outlive the runner for HOOKGATE_KEEPER_GRACE_MS (5 s here).
 *
 * @example
 * const runner = await startRunner(s, runnerConfig({ routes: [...], plugins: {...} }));
 * const res = await postFrames(runner.url, KEY, encodeHookFrame('on_request', { r: 'api' }));
 */
export async function startRunner(s: Scope, config: Record<string, unknown>, opts: RunnerOptions = {}): Promise<RunnerProcess> {
  const { proc, urls } = await startServe(s, config, { ...opts, ready: opts.ready ?? true, listeners: ['runner', 'gateway', 'admin'] });
  const [url, gateway, admin] = urls;
  return { ...proc, url, gateway, admin, port: Number(new URL(url).port) };
}

// ---------------------------------------------------------------------------
// the CLI run to completion

/**
 * Runs the CLI to completion (e.g. `validate FILE`); kills it after
 * `timeoutMs` (60 s: it only bounds a hang, as a start-up on a loaded
 * machine can take many seconds).
 */
export function runCli(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Exit & { stdout: string; stderr: string }> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`hookgate ${args.join(' ')} did not exit within ${timeoutMs} ms; stderr:\n${stderr}`));
    }, timeoutMs);
    // 'close': the process exited and both pipes are drained.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
