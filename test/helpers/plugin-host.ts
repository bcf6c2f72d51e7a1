/**
 * @module test/helpers/plugin-host
 * What the plugin-host integration tests share: a per-test harness that owns
 * a temp dir, a recording logger and every manager it creates, and tears
 * them down (in reverse order) when the test ends, whether it passed or not
 * (a `Scope`); config building through the real `parseConfig`; builders
 * for hook data; and running a plugin by hand, as a user would. Polling, pids and paths come from the other
 * shared helpers.
 */

import { spawn as nodeSpawn } from 'node:child_process';
import { delimiter, dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { recordingLogger } from '../../node-runner/log.ts';
import { PluginManager, type ManagerOptions } from '../../node-runner/plugin/manager.ts';
import type { Spawner } from '../../node-runner/plugin/process.ts';
import { parseConfig, type Config } from '../../src/core/config/config.ts';
import { MAGIC_COOKIE_KEY, type RequestInfo } from '../../src/core/protocol/protocol.ts';
import type { FakeClock } from './fake-clock.ts';
import { sleep } from './http.ts';
import { CONFIGURABLE, PY_SDK_DIR, SDK_PLUGIN, SDK_PY_PLUGIN } from './paths.ts';
import { readJsonLines } from './processes.ts';
import { requestInfo } from './protocol.ts';
import { scope, tempDir, type Scope } from './scope.ts';

/** Process timings short enough for tests that run in real time. */
export const FAST_PROCESS = { stopGraceMs: 200, backoffBaseMs: 50, backoffMaxMs: 400 };

/** One line a fixture appended to its record file. */
export interface Rec {
  ev: string;
  name: string;
  pid: number;
  [k: string]: unknown;
}

/** Builds a full RequestInfo: a GET / from 192.0.2.10 to app.example.com, with `fields` over it. */
export function request(fields: Partial<RequestInfo> = {}): RequestInfo {
  return requestInfo({ m: 'GET', p: '/', d: 'app.example.com', ho: 'app.example.com', pr: 'HTTP/1.1', a: '192.0.2.10', ...fields });
}

/** A route with a static action and the given plugin bindings. */
export function route(id: string, plugins: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { id, plugins, plugin_timeout: '2s', action: { type: 'static' }, ...extra };
}

export interface HarnessManagerOptions {
  clock?: FakeClock;
  spawn?: Spawner;
  reaper?: ManagerOptions['reaper'];
  process?: ManagerOptions['process'];
}

/**
 * Everything one test owns. Create it first thing in the test; all cleanup
 * is registered on `t.after` and runs in reverse order of registration.
 */
export class Harness {
  readonly dir: string;
  readonly log = recordingLogger();
  /** the record file shared by every fixture of this test (order across plugins is kept) */
  readonly recordFile: string;
  #scope: Scope;

  constructor(t: TestContext) {
    this.#scope = scope(t);
    this.dir = tempDir(this.#scope, 'hg-test-');
    this.recordFile = join(this.dir, 'record.jsonl');
  }

  /** Registers a cleanup step; steps run last-registered first, each even when another failed. */
  defer(fn: () => unknown): void {
    this.#scope.defer(fn);
  }

  /**
   * A PluginManager logging to `this.log`, stopped when the test ends. With
   * a fake clock, cleanup advances it so stop's grace timers can run.
   */
  manager(opts: HarnessManagerOptions = {}): PluginManager {
    const m = new PluginManager({
      logger: this.log,
      clock: opts.clock,
      spawn: opts.spawn,
      reaper: opts.reaper,
      process: opts.process ?? FAST_PROCESS,
    });
    this.defer(async () => {
      let done = false;
      const stopped = m.stop().finally(() => (done = true));
      for (let i = 0; opts.clock && !done && i < 100; i++) {
        await sleep(20);
        opts.clock.advance(1000);
      }
      await stopped;
    });
    return m;
  }

  /** A plugin config for the configurable fixture, wired to this test's dir and record file. */
  fixture(name: string, env: Record<string, string> = {}, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      path: CONFIGURABLE,
      env: { FIXTURE_NAME: name, FIXTURE_DIR: this.dir, FIXTURE_RECORD: this.recordFile, ...env },
      // Not the subject of most tests: long enough for a start-up on a loaded machine.
      ready_timeout: '60s',
      ...extra,
    };
  }

  /** Every record the fixtures wrote so far, optionally only those matching. */
  records(filter: Partial<Rec> = {}): Rec[] {
    return readJsonLines<Rec>(this.recordFile).filter((r) => Object.entries(filter).every(([k, v]) => r[k] === v));
  }

  /** Log entries whose message includes `text` (and whose fields match `fields`). */
  logs(text: string, fields: Record<string, unknown> = {}) {
    return this.log.entries.filter((e) => e.msg.includes(text) && Object.entries(fields).every(([k, v]) => e[k] === v));
  }

  /** Kills `pid`'s process group (then the pid) at cleanup if it is still alive. */
  killAtEnd(pid: number): void {
    this.defer(() => {
      for (const target of [-pid, pid]) {
        try {
          process.kill(target, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    });
  }
}

/**
 * The SDK test plugins, one per SDK, which behave alike (see their
 * headers): a plugin config wired to the harness's dir and record file.
 * The Python one finds its SDK on PYTHONPATH, and PYTHONUNBUFFERED is
 * cleared (some machines set it) so the SDK must flush its lines itself.
 */
export const SDK_FIXTURES: Record<'TypeScript' | 'Python', (h: Harness, env?: Record<string, string>) => { path: string; env: Record<string, string> }> = {
  TypeScript: (h, env = {}) => ({ path: SDK_PLUGIN, env: { TMPDIR: h.dir, FIXTURE_RECORD: h.recordFile, ...env } }),
  Python: (h, env = {}) => ({
    path: SDK_PY_PLUGIN,
    env: { PYTHONPATH: PY_SDK_DIR, PYTHONUNBUFFERED: '', TMPDIR: h.dir, FIXTURE_RECORD: h.recordFile, ...env },
  }),
};

/** Validates a config the way the runner does. */
export function config(input: Record<string, unknown>): Config {
  return parseConfig(input);
}

/** Applies `input` (validated by parseConfig) and waits until every named plugin is ready. */
export async function applyReady(m: PluginManager, input: Record<string, unknown>, ready: string[] = [], timeoutMs = 60_000): Promise<void> {
  await m.apply(config(input));
  await Promise.all(ready.map((name) => m.whenReady(name, timeoutMs)));
}

/** The status entry of one plugin; throws when the manager does not know it. */
export function statusOf(m: PluginManager, name: string) {
  const s = m.status().find((p) => p.name === name);
  if (!s) throw new Error(`no status for plugin "${name}"`);
  return s;
}

/** A spawner that runs the real `spawn` and remembers when it was called. */
export function countingSpawn(now: () => number): Spawner & { calls: number[] } {
  const calls: number[] = [];
  const fn = ((command, args, options) => {
    calls.push(now());
    return nodeSpawn(command, args, options);
  }) as Spawner & { calls: number[] };
  fn.calls = calls;
  return fn;
}

/**
 * Runs a program as a user would, without the runner's handshake variables
 * (and with the project's Node first on PATH, plus `env`, which may put
 * one back to try a partial handshake); resolves with what it printed and
 * its exit code. The process is killed at cleanup.
 */
export function runByHand(h: Harness, program: string, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const full: NodeJS.ProcessEnv = { ...process.env, TMPDIR: h.dir, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}` };
  delete full[MAGIC_COOKIE_KEY];
  Object.assign(full, env);
  const child = nodeSpawn(program, [], { env: full, stdio: ['pipe', 'pipe', 'pipe'] });
  h.defer(() => child.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}
