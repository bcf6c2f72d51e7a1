/**
 * @module test/helpers/plugin-host
 * What the plugin-host integration tests share: a per-test harness that owns
 * a temp dir, a recording logger and every manager it creates, and tears
 * them down (in reverse order) when the test ends, whether it passed or not;
 * config building through the real `parseConfig`; bounded polling; and
 * builders for hook data.
 */

import { spawn as nodeSpawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { recordingLogger } from '../../node-runner/log.ts';
import { PluginManager, type ManagerOptions } from '../../node-runner/plugin/manager.ts';
import type { Spawner } from '../../node-runner/plugin/process.ts';
import { parseConfig, type Config } from '../../src/core/config.ts';
import type { RequestInfo } from '../../src/core/protocol.ts';
import type { FakeClock } from './fake-clock.ts';

const here = (rel: string) => fileURLToPath(new URL(rel, import.meta.url));

/** The raw-protocol test plugin, configured by FIXTURE_* env vars. */
export const CONFIGURABLE = here('../fixtures/plugins/configurable.ts');
/** The SDK-based test plugin. */
export const SDK_PLUGIN = here('../fixtures/plugins/sdk-plugin.ts');
/** A runner process for the "runner killed" test. */
export const RUNNER_CHILD = here('../fixtures/runner-child.ts');
export const AUTH_TS = here('../../examples/plugins/auth.ts');
export const AUTH_PY = here('../../examples/plugins/auth.py');
export const PUSH_TARGETS_SH = here('../../examples/plugins/push-targets.sh');

/** Process timings short enough for tests that run in real time. */
export const FAST_PROCESS = { stopGraceMs: 200, backoffBaseMs: 50, backoffMaxMs: 400 };

/** One line a fixture appended to its record file. */
export interface Rec {
  ev: string;
  name: string;
  pid: number;
  [k: string]: unknown;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Polls `cond` every `intervalMs` until it returns a truthy value, which is
 * returned; throws after `timeoutMs` with `what` in the message.
 *
 * @example
 * await waitFor(() => manager.status()[0].ready, { what: 'plugin ready' });
 */
export async function waitFor<T>(cond: () => T | Promise<T>, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<NonNullable<T>> {
  const deadline = performance.now() + (opts.timeoutMs ?? 5000);
  for (;;) {
    const v = await cond();
    if (v) return v as NonNullable<T>;
    if (performance.now() > deadline) throw new Error(`timed out after ${opts.timeoutMs ?? 5000} ms waiting for ${opts.what ?? 'a condition'}`);
    await sleep(opts.intervalMs ?? 10);
  }
}

/**
 * True while a process with this pid runs. Signal 0 probes without killing;
 * a zombie (dead, not yet reaped by whoever inherited it) counts as gone.
 */
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
    return true; // no /proc: trust the probe
  }
}

/** Builds a full RequestInfo from the fields a test cares about. */
export function request(fields: Partial<RequestInfo> = {}): RequestInfo {
  return {
    r: '',
    m: 'GET',
    p: '/',
    q: '',
    d: 'app.example.com',
    ho: 'app.example.com',
    pr: 'HTTP/1.1',
    a: '192.0.2.10',
    cl: 0,
    h: {},
    bd: null,
    md: '',
    mg: '',
    mp: '',
    v: {},
    tg: '',
    ...fields,
  };
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
  #cleanups: Array<() => unknown> = [];

  constructor(t: TestContext) {
    this.dir = mkdtempSync(join(tmpdir(), 'hg-test-'));
    this.recordFile = join(this.dir, 'record.jsonl');
    this.defer(() => rmSync(this.dir, { recursive: true, force: true }));
    t.after(() => this.#cleanup());
  }

  /** Registers a cleanup step; steps run last-registered first, each even when another failed. */
  defer(fn: () => unknown): void {
    this.#cleanups.push(fn);
  }

  async #cleanup(): Promise<void> {
    const errors: unknown[] = [];
    for (const fn of this.#cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length) throw new AggregateError(errors, 'test cleanup failed');
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
      ready_timeout: '5s',
      ...extra,
    };
  }

  /** Every record the fixtures wrote so far, optionally only those matching. */
  records(filter: Partial<Rec> = {}): Rec[] {
    let text = '';
    try {
      text = readFileSync(this.recordFile, 'utf8');
    } catch {
      return [];
    }
    return text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Rec)
      .filter((r) => Object.entries(filter).every(([k, v]) => r[k] === v));
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

/** Validates a config the way the runner does. */
export function config(input: Record<string, unknown>): Config {
  return parseConfig(input);
}

/** Applies `input` (validated by parseConfig) and waits until every named plugin is ready. */
export async function applyReady(m: PluginManager, input: Record<string, unknown>, ready: string[] = [], timeoutMs = 5000): Promise<void> {
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
