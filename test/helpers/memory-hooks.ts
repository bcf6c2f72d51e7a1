/**
 * @module test/helpers/memory-hooks
 * A real hook client with no process and no socket: the runner's
 * `HookDispatcher` (node-runner/plugin/dispatch.ts, the verdict rules:
 * bindings in order, merging, short-circuit, `on_error`, the header
 * mutation checks, verdict caches) over plugins that are functions in this
 * process, written like the SDK's handlers (node-runner/sdk).
 *
 * Every call crosses the wire format both ways, as with a plugin process:
 * the dispatcher's hook frame is unframed and decoded with the core codec
 * as a plugin decodes it, the handler's reply is encoded as the SDK encodes
 * it (`encodeResultFrame`), and the dispatcher decodes and checks that
 * payload. So a handler that returns a CRLF header, or `rawReply` bytes
 * that are not msgpack, fails exactly where a process's reply would.
 *
 * What a plugin process does on failure has an in-process twin: a handler
 * that throws or rejects is a connection the plugin closed
 * (`PLUGIN_UNAVAILABLE`); one that never settles meets the route's
 * `plugin_timeout` on the injected clock (`HOOK_TIMEOUT`); `down(name)` is
 * a plugin without a pool (not started, or crashed).
 *
 * Routes, bindings (`on_error`, `with_body`, `cache`) and timeouts come from
 * a parsed config, as the PluginManager takes them; plugin entries in the
 * config only need a `path` to parse, nothing is run.
 */

import type { Config } from '../../src/core/config/config.ts';
import { decodeEnvelope, decodeHookData, encodeResultFrame } from '../../src/core/protocol/codec.ts';
import { HookgateError } from '../../src/core/errors.ts';
import type { HookClient } from '../../src/core/gateway/pipeline.ts';
import { silentLogger, type Logger } from '../../src/core/log.ts';
import {
  HOOK_BIT,
  HOOK_NAMES,
  hookName,
  type AuthorizeResult,
  type ConnInfo,
  type DisconnectInfo,
  type HookData,
  type HookName,
  type HookType,
  type RequestInfo,
  type ResponseModResult,
  type ResponsePair,
} from '../../src/core/protocol/protocol.ts';
import { VerdictCache } from '../../src/core/gateway/verdict-cache.ts';
import { realClock, type Clock } from '../../src/core/clock.ts';
import { HookDispatcher, type HookBinding, type HookChannel, type HookRoute } from '../../node-runner/plugin/dispatch.ts';
import type { Verdict } from '../../node-runner/sdk/index.ts';

type MaybePromise<T> = T | Promise<T>;

/** Reply bytes sent as they are, in place of an encoded result (a plugin answering garbage). */
export interface RawReply {
  raw: Uint8Array;
}

/** A reply payload of exactly these bytes. */
export function rawReply(bytes: Uint8Array): RawReply {
  return { raw: bytes };
}

/** One in-process plugin: the SDK's handler shapes; a hook without a handler is not declared. */
export interface MemoryPlugin {
  on_request?: (req: RequestInfo) => MaybePromise<Verdict | RawReply>;
  on_response?: (pair: ResponsePair) => MaybePromise<Partial<ResponseModResult> | RawReply | void>;
  on_connect?: (info: ConnInfo) => MaybePromise<boolean | RawReply>;
  on_disconnect?: (info: DisconnectInfo) => MaybePromise<void>;
}

/** A hook call as the plugin received it, decoded from the frame. */
export interface MemoryCall {
  plugin: string;
  hook: HookName;
  data: HookData[HookName];
}

/** A failed call, as the dispatcher reported it to its host. */
export interface MemoryFailure {
  plugin: string;
  route: string;
  hook: HookName;
  error: HookgateError | Error;
}

export interface MemoryHooksOptions {
  /** routes and their bindings (`parseConfig`'s output) */
  config: Config;
  /** handlers by plugin name; a bound plugin missing here is down */
  plugins: Record<string, MemoryPlugin>;
  /** hook deadlines and verdict-cache ages (default: the real clock) */
  clock?: Clock;
  logger?: Logger;
}

interface MemoryEntry {
  readonly name: string;
  hooks: number;
  pool: HookChannel | null;
}

/** A plugin's connections in this process: frames in, the handler's reply out. */
class MemoryChannel implements HookChannel {
  #name: string;
  #plugin: MemoryPlugin;
  #clock: Clock;
  #calls: MemoryCall[];

  constructor(name: string, plugin: MemoryPlugin, clock: Clock, calls: MemoryCall[]) {
    this.#name = name;
    this.#plugin = plugin;
    this.#clock = clock;
    this.#calls = calls;
  }

  callFrame<T>(frame: Uint8Array, timeoutMs: number, decode: (payload: Uint8Array) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const timer = this.#clock.setTimeout(() => {
        if (settled) return;
        settled = true;
        reject(new HookgateError('HOOK_TIMEOUT', `plugin "${this.#name}": no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        this.#clock.clearTimeout(timer);
        fn();
      };
      const closed = (err: unknown) =>
        finish(() => reject(new HookgateError('PLUGIN_UNAVAILABLE', `plugin "${this.#name}": connection closed by the plugin (${(err as Error)?.message ?? String(err)})`)));
      let hook: HookName;
      let reply: unknown;
      try {
        // The frame as a plugin reads it: [u32 length][envelope].
        const env = decodeEnvelope(frame.subarray(4));
        const name = hookName(env.t);
        if (!name) throw new Error(`unknown hook type ${env.t}`);
        hook = name;
        const data = decodeHookData(hook, env.d);
        this.#calls.push({ plugin: this.#name, hook, data });
        const handler = this.#plugin[hook] as ((d: unknown) => unknown) | undefined;
        if (!handler) throw new Error(`no handler for ${hook}`);
        reply = handler(data);
      } catch (err) {
        closed(err);
        return;
      }
      Promise.resolve(reply).then(
        (value) =>
          finish(() => {
            let payload: Uint8Array;
            try {
              payload = replyPayload(hook, value);
            } catch (err) {
              reject(new HookgateError('PLUGIN_UNAVAILABLE', `plugin "${this.#name}": connection closed by the plugin (${(err as Error).message})`));
              return;
            }
            try {
              resolve(decode(payload));
            } catch (err) {
              reject(err);
            }
          }),
        closed,
      );
    });
  }

  notify(type: HookType, data: Uint8Array): boolean {
    const hook = hookName(type);
    if (!hook) return false;
    const decoded = decodeHookData(hook, data);
    this.#calls.push({ plugin: this.#name, hook, data: decoded });
    const handler = this.#plugin[hook] as ((d: unknown) => unknown) | undefined;
    // Fire and forget, as on the socket: nobody waits for or hears about the handler.
    if (handler) Promise.resolve().then(() => handler(decoded)).catch(() => {});
    return true;
  }
}

/** The reply payload the SDK would write for a handler's value. */
function replyPayload(hook: HookName, value: unknown): Uint8Array {
  if (value !== null && typeof value === 'object' && (value as RawReply).raw instanceof Uint8Array) return (value as RawReply).raw;
  const result = hook === 'on_connect' ? { ok: value === true } : ((value ?? {}) as Partial<AuthorizeResult>);
  return encodeResultFrame(hook, result).subarray(4);
}

const ALL_HOOKS = HOOK_BIT.on_request | HOOK_BIT.on_response | HOOK_BIT.on_connect | HOOK_BIT.on_disconnect;

function maskOf(plugin: MemoryPlugin): number {
  let mask = 0;
  for (const h of HOOK_NAMES) if (plugin[h]) mask |= HOOK_BIT[h];
  return mask;
}

/**
 * The in-process hook client.
 *
 * Contract: the HookClient methods are the dispatcher's own (safe to call
 * concurrently, never throw, settle by `plugin_timeout` on the clock).
 * `calls` and `failures` grow as calls are made and are never trimmed.
 * Nothing needs stopping: there are no timers but the pending deadlines.
 *
 * @example
 * const hooks = new MemoryHooks({ config, plugins: { auth: { on_request: (r) => (r.h.Authorization ? allow() : deny(401)) } } });
 * const verdict = await hooks.onRequest('api', info);
 */
export class MemoryHooks extends HookDispatcher<MemoryEntry> implements HookClient {
  /** every frame a plugin received, in order */
  readonly calls: MemoryCall[];
  /** every failed call the dispatcher reported */
  readonly failures: MemoryFailure[];
  #entries: Map<string, MemoryEntry>;
  /** the channels of plugins taken down, to bring them back */
  #held = new Map<string, HookChannel>();

  constructor(opts: MemoryHooksOptions) {
    const clock = opts.clock ?? realClock;
    const calls: MemoryCall[] = [];
    const failures: MemoryFailure[] = [];
    const entries = new Map<string, MemoryEntry>();
    for (const [name, plugin] of Object.entries(opts.plugins)) {
      entries.set(name, { name, hooks: maskOf(plugin), pool: new MemoryChannel(name, plugin, clock, calls) });
    }
    const routes = new Map<string, HookRoute<MemoryEntry>>();
    for (const route of opts.config.routes) {
      const bindings: Array<HookBinding<MemoryEntry>> = route.plugins.map((b) => {
        let plugin = entries.get(b.plugin);
        // A bound plugin that is not here is down, and (like one that has not declared its hooks) fails closed.
        if (!plugin) entries.set(b.plugin, (plugin = { name: b.plugin, hooks: ALL_HOOKS, pool: null }));
        return { plugin, on_error: b.on_error, with_body: b.with_body, cache: b.cache ? new VerdictCache(b.cache, () => clock.now()) : null };
      });
      let mask = 0;
      for (const b of bindings) mask |= b.plugin.hooks;
      routes.set(route.id, { route: { id: route.id, plugin_timeout: route.plugin_timeout }, bindings, mask });
    }
    super({
      route: (id) => routes.get(id),
      unavailable: (p) => new HookgateError('PLUGIN_UNAVAILABLE', `plugin "${p.name}" is not running`),
      failed: (p, route, hook, err) => failures.push({ plugin: p.name, route, hook, error: err as Error }),
      logger: opts.logger ?? silentLogger,
    });
    this.calls = calls;
    this.failures = failures;
    this.#entries = entries;
  }

  /** Takes a plugin down (its calls get their bindings' on_error) or, with `up`, brings it back. */
  down(name: string, up = false): void {
    const e = this.#entries.get(name);
    if (!e) throw new Error(`no plugin "${name}"`);
    if (up) {
      e.pool = this.#held.get(name) ?? e.pool;
      this.#held.delete(name);
    } else if (e.pool) {
      this.#held.set(name, e.pool);
      e.pool = null;
    }
  }

  /** The calls of one plugin (and hook), decoded. */
  callsOf(plugin: string, hook?: HookName): MemoryCall[] {
    return this.calls.filter((c) => c.plugin === plugin && (hook === undefined || c.hook === hook));
  }
}
