/**
 * @module plugin/manager
 * Binds routes to plugins and dispatches hooks and pushes: which plugin
 * processes run (from the config), what each is told in `configure`, the
 * index of which routes have which hooks (read on every request), one call
 * per route and phase fanned out to the route's plugins in order, and the
 * `set_targets` / `set_speed` pushes addressed to routes.
 *
 * Verdict rules (merging, on_error, header rules) are the core's
 * (`src/core/protocol/verdict.ts`), carried out by `dispatch.ts` over this
 * manager's plugins and pools.
 *
 * Verdict cache: a binding with `cache` settings (`src/core/gateway/verdict-cache.ts`)
 * has an LRU of its own, keyed on what that plugin is sent (earlier
 * plugins' header changes included). A fresh verdict stands in for the
 * call; a failed call gets the binding's expired verdict within
 * `stale_if_error` before its `on_error`. The cache lives as long as the
 * binding's generation (the plugin's config and code fingerprint, the
 * binding's settings and the route): a reload (or a `watch` restart) that
 * changes any of them starts it empty, and a plugin that restarts after a
 * crash keeps it. A merged verdict
 * that a stale verdict or an `on_error: allow` skip went into is marked
 * `nc`, so an edge does not cache it.
 *
 * Which hooks a plugin has: until its first `ready` it counts as having all
 * of them (its routes fail closed), unless the config lists them (`hooks`).
 * One that acked a configure and sent no ready within the process's grace
 * (1 s) is push-only, as prox's SDK behaves, unless a ready of it ever
 * declared hooks; a push alone proves nothing.
 *
 * Attached plugins (`attach` in the config: run by something else, reached
 * at their socket) take a process's place: `attached.ts` health-checks the
 * socket, and the manager keeps a pool only while it is reachable, so calls
 * meanwhile get on_error verdicts. Their hooks are the configured ones from
 * the start. They get no configure and make no pushes (no stdin/stdout).
 *
 * Processes are `process.ts`'s business, attached sockets' health
 * `attached.ts`'s, sockets `pool.ts`'s, the pushed state `pushes.ts`'s;
 * HTTP is the gateway's.
 */

import { createHash } from 'node:crypto';
import type { Config, Route } from '../../src/core/config/config.ts';
import type { RouteCacheSettings } from '../../src/core/state/routing-snapshot.ts';
import { HookgateError } from '../../src/core/errors.ts';
import { LogThrottle, type Logger } from '../../src/core/log.ts';
import {
  HOOK_BIT,
  type AuthorizeResult,
  type ConnInfo,
  type ConnResult,
  type DisconnectInfo,
  type HookName,
  type RequestInfo,
  type ResponseModResult,
  type ResponsePair,
} from '../../src/core/protocol/protocol.ts';
import { realClock, type Clock } from '../../src/core/clock.ts';

export type { ApplyChanges, ApplyOptions, HookTable, ManagerOptions, PluginStatus } from './manager-api.ts';

import { codeOf, createEntry, wantedPlugins, definitionKey, hookMask, hookNames, specHash, type EntryHost, type HeldCache, type PluginEntry, type RouteEntry } from './entry.ts';
import { adoptKept, pluginsFileOf, recoverFromKeeper, type Adopting, type Recovery } from './recovery.ts';
import type { ApplyChanges, ApplyOptions, HookTable, ManagerOptions, PluginStatus } from './manager-api.ts';
import { codeFiles } from './code.ts';
import { HookDispatcher } from './dispatch.ts';
import { PushStore } from './pushes.ts';
import { PushRoutes } from './push-routes.ts';
import { removeSnapshot, writeSnapshot } from './plugins-file.ts';
import { mergeCacheSettings, VerdictCache } from '../../src/core/gateway/verdict-cache.ts';

/**
 * The plugin host of one runner.
 *
 * Contract: `apply` may be called again with a new config at any time
 * (calls are serialized); plugins whose config is unchanged keep running
 * and are re-sent `configure` only when their routes changed. The hook
 * methods are safe to call concurrently, never throw, and settle by the
 * route's `plugin_timeout` per plugin. `stop()` stops every plugin and is
 * idempotent; the owner must call it.
 */
export class PluginManager {
  readonly pushes = new PushStore();
  #opts: ManagerOptions;
  #log: Logger;
  #clock: Clock;
  #plugins = new Map<string, PluginEntry>();
  #routes = new Map<string, RouteEntry>();
  #applying: Promise<unknown> = Promise.resolve();
  /** processes spawned per plugin name (for `restarts`) */
  #starts = new Map<string, number>();
  #stopped = false;
  #hookListeners = new Set<() => void>();
  #logThrottle = new LogThrottle();
  #recovered = false;
  #snapshotQueued = false;
  /** binding caches by `route id \n binding index`, kept across applies while their generation holds */
  #caches = new Map<string, HeldCache>();
  #dispatch: HookDispatcher<PluginEntry>;
  #entryHost: EntryHost;
  #pushRoutes = new PushRoutes(this.pushes, () => this.#routes);

  constructor(opts: ManagerOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
    this.#dispatch = new HookDispatcher<PluginEntry>({
      route: (id) => this.#routes.get(id),
      unavailable: (p) => this.#unavailable(p),
      failed: (p, routeId, hook, err) => this.#hookFailed(p, routeId, hook, err),
      logger: opts.logger,
      traffic: opts.traffic,
    });
    this.#clock = opts.clock ?? realClock;
    this.#entryHost = {
      logger: opts.logger,
      clock: this.#clock,
      process: opts.process,
      keeper: opts.keeper,
      spawn: opts.spawn,
      reaper: opts.reaper,
      spawned: (name) => this.#starts.set(name, (this.#starts.get(name) ?? 0) + 1),
      setHooks: (entry, hooks) => this.#setHooks(entry, hooks),
      poolsChanged: () => this.#poolsChanged(),
      changed: () => this.#scheduleSnapshot(),
      push: (entry, log, method, params) => this.#pushRoutes.push(entry, this.#plugins.get(entry.name) === entry, log, method, params),
      wakeIfReady: (entry) => this.#wakeIfReady(entry),
    };
  }

  /**
   * Applies a (validated) config: starts plugins that are bound to a route
   * or autostart, restarts those whose config changed, stops the rest, and
   * sends `configure` for every bound route. A plugin whose code files
   * changed on disk since it started (code.ts) is restarted too. Resolves
   * with what changed, once removed plugins
   * have stopped; does not wait for new ones to become ready.
   */
  apply(config: Config, opts: ApplyOptions = {}): Promise<ApplyChanges> {
    const run = this.#applying.then(() => this.#apply(config, opts));
    this.#applying = run.catch(() => {});
    return run;
  }

  async #apply(config: Config, opts: ApplyOptions): Promise<ApplyChanges> {
    if (this.#stopped) throw new HookgateError('STOPPED', 'plugin manager was stopped');
    const recovery = this.#opts.keeper && !this.#recovered ? await this.#recover() : null;
    this.#recovered = true;
    const wanted = wantedPlugins(config);
    const changes: ApplyChanges = { started: [], restarted: [], stopped: [], settings: [] };
    const stopping: Promise<void>[] = [];
    for (const [name, entry] of this.#plugins) {
      const next = config.plugins[name];
      const why = !wanted.has(name) || !next ? null : opts.restart?.has(name) ? 'restart asked' : definitionKey(next) !== entry.key
            ? 'definition changed'
            : (!opts.code || opts.code.has(name)) && codeOf(next) !== entry.code
              ? 'code changed'
              : '';
      if (why !== '') {
        this.#plugins.delete(name);
        stopping.push(this.#stopEntry(entry));
        if (why === null) changes.stopped.push(name);
        else {
          changes.restarted.push({ plugin: name, why });
          this.#log.info({ plugin: name, files: why === 'code changed' ? codeFiles(next!) : undefined }, `plugin ${why}; restarting it`);
        }
      } else if (JSON.stringify(next) !== JSON.stringify(entry.config)) {
        changes.settings.push(name);
        // Same program, other settings: no restart. Bindings carry on_error and
        // with_body; pool and ready settings apply from the plugin's next start.
        const hooksChanged = JSON.stringify(next.hooks) !== JSON.stringify(entry.config.hooks);
        entry.config = next;
        this.#log.info({ plugin: name }, 'plugin settings changed; the process keeps running (pool and ready settings apply from its next start)');
        // Declared hooks apply at once to a plugin that has not said ready with a socket.
        if (hooksChanged && next.hooks && !entry.pool) this.#setHooks(entry, hookMask(next.hooks));
      }
    }
    const adopting: Adopting[] = [];
    for (const [name, params] of wanted) {
      let entry = this.#plugins.get(name);
      if (!entry) {
        entry = createEntry(name, config.plugins[name], this.#entryHost);
        this.#plugins.set(name, entry);
        const kept = recovery?.kept.get(name);
        if (kept && kept.spec_hash === specHash(entry.key, entry.code) && entry.proc.adoptable) {
          recovery!.kept.delete(name);
          adopting.push({ entry, kept, params });
          continue;
        }
        if (kept) this.#log.info({ plugin: name, pid: kept.pid }, 'plugin definition or code changed while the runner was down; replacing the kept process');
        entry.configure = params;
        entry.proc.configure(params);
        entry.proc.start();
        if (!changes.restarted.some((r) => r.plugin === name)) changes.started.push(name);
      } else if (JSON.stringify(params) !== JSON.stringify(entry.configure)) {
        entry.configure = params;
        entry.proc.configure(params);
      }
    }

    const routes = new Map<string, RouteEntry>();
    const caches = new Map<string, HeldCache>();
    for (const route of config.routes) {
      const bindings = route.plugins.map((b, i) => {
        const plugin = this.#plugins.get(b.plugin)!;
        let cache: VerdictCache<unknown> | null = null;
        if (b.cache) {
          const id = `${route.id}\n${i}`;
          const generation = JSON.stringify([plugin.config, plugin.code, b, route]);
          const held = this.#caches.get(id);
          cache = held?.generation === generation ? held.cache : new VerdictCache(b.cache, () => this.#clock.now());
          caches.set(id, { generation, cache });
        }
        return { plugin, on_error: b.on_error, with_body: b.with_body, cache };
      });
      routes.set(route.id, { route, bindings, mask: 0 });
    }
    this.#routes = routes;
    this.#caches = caches;
    this.#recomputeMasks();
    this.pushes.retain(new Set(routes.keys()));
    if (recovery) this.#adopt(recovery, adopting);
    this.#pushRoutes.replayWide(this.#plugins.values());
    this.#scheduleSnapshot();
    await Promise.all(stopping);
    return changes;
  }

  /**
   * Connects to the keeper and reads what a previous runner left: the
   * plugins the keeper holds (by name; the newest when a name has several,
   * the others are stopped) and the snapshot, which is used only when it
   * was written for this same keeper. Plugins the keeper holds that the
   * config does not adopt are stopped by `#adopt`.
   */
  async #recover(): Promise<Recovery> {
    const { client, stateDir } = this.#opts.keeper!;
    return recoverFromKeeper(client, stateDir, this.#log);
  }

  /** Takes over the kept plugins chosen in `#apply` (see `adoptKept`). */
  #adopt(recovery: Recovery, adopting: Adopting[]): void {
    adoptKept(recovery, adopting, {
      client: this.#opts.keeper!.client,
      routes: this.#routes,
      pushes: this.pushes,
      log: this.#log,
      pushOnly: (entry) => this.#setHooks(entry, 0),
      stopGraceMs: this.#opts.process?.stopGraceMs ?? 2000,
    });
  }

  /** Writes the snapshot soon (once per turn of the event loop). */
  #scheduleSnapshot(): void {
    if (!this.#opts.keeper || this.#snapshotQueued) return;
    this.#snapshotQueued = true;
    setImmediate(() => {
      this.#snapshotQueued = false;
      if (this.#stopped || !this.#opts.keeper) return;
      const { client, stateDir } = this.#opts.keeper;
      const snap = pluginsFileOf(client.keeperPid ?? 0, (pid) => client.startTime(pid), this.#plugins.values(), this.#routes.keys(), this.pushes);
      try {
        writeSnapshot(stateDir, snap);
      } catch (err) {
        this.#log.error({ dir: stateDir, err: (err as Error).message }, 'cannot write the plugin snapshot; a restarted runner would re-send configure and wait for pushes');
      }
    });
  }

  /**
   * The hooks a route's plugins declared, as a HOOK_BIT mask; 0 for a route
   * without plugins or an unknown route. A plugin that has not declared its
   * hooks yet counts as having all of them, so its routes fail closed.
   *
   * @example
   * if (manager.hooksOf('api') & HOOK_BIT.on_request) verdict = await manager.onRequest('api', info);
   */
  hooksOf(routeId: string): number {
    return this.#dispatch.hooksOf(routeId);
  }

  /** Whether the route binds a plugin that wants the request body. */
  wantsBody(routeId: string): boolean {
    return this.#dispatch.wantsBody(routeId);
  }

  /**
   * What a gateway worker needs to make the hook calls itself, over its own
   * pools to the same sockets: each plugin's declared hooks, socket and
   * pool settings, and each route's bindings. Changes are announced through
   * `subscribeHooks`.
   */
  hookTable(): HookTable {
    const plugins: HookTable['plugins'] = {};
    for (const e of this.#plugins.values()) {
      plugins[e.name] = { hooks: e.hooks, socket: e.pool?.path ?? null, size: e.config.pool_size, queueLimit: e.config.queue_limit, perWorker: e.config.pool_per_worker === true };
    }
    const routes: HookTable['routes'] = {};
    for (const [id, r] of this.#routes) {
      routes[id] = {
        timeout: r.route.plugin_timeout,
        bindings: r.bindings.map((b, i) => ({
          plugin: b.plugin.name,
          on_error: b.on_error,
          with_body: b.with_body,
          cache: b.cache?.settings ?? null,
          generation: this.#caches.get(`${id}\n${i}`)?.generation ?? null,
        })),
      };
    }
    return { plugins, routes };
  }

  /** The route as configured, or undefined. */
  route(routeId: string): Route | undefined {
    return this.#routes.get(routeId)?.route;
  }

  /** Resolves when the named plugin has said ready (or was found push-only); rejects after `timeoutMs`. */
  whenReady(name: string, timeoutMs: number): Promise<void> {
    const entry = this.#plugins.get(name);
    if (!entry) return Promise.reject(new HookgateError('PLUGIN_UNAVAILABLE', `no plugin named "${name}" is running`));
    if (this.#isReady(entry)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        const why = entry.proc.lastError ? ` (${entry.proc.lastError})` : '';
        reject(new HookgateError('PLUGIN_UNAVAILABLE', `plugin "${name}" did not become ready within ${timeoutMs} ms${why}`));
      }, timeoutMs);
      entry.readyWaiters.push(() => {
        this.#clock.clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * A plugin serves hooks when it has a pool. One without hooks (push-only,
   * or autostart with no route to serve) is ready while it runs once it has
   * shown what it is: said ready, pushed, or been found push-only. An
   * attached plugin is ready only while its socket is reachable.
   */
  #isReady(e: PluginEntry): boolean {
    if (e.pool !== null) return true;
    return e.proc.readyWithoutPool(e.known, e.hooks, e.configure);
  }

  #wakeIfReady(entry: PluginEntry): void {
    if (this.#isReady(entry)) for (const w of entry.readyWaiters.splice(0)) w();
  }

  /** Status of every plugin the config wants running. */
  status(): PluginStatus[] {
    return [...this.#plugins.values()].map((e) => ({
      name: e.name,
      state: e.proc.state,
      pid: e.proc.pid,
      ready: this.#isReady(e),
      hooks: e.known ? hookNames(e.hooks) : [],
      socket: e.pool?.path ?? null,
      failures: e.proc.failures,
      lastError: e.proc.lastError,
      restarts: Math.max(0, (this.#starts.get(e.name) ?? 0) - 1),
      restartDelayMs: e.proc.restartDelay,
      pool: e.pool ? { size: e.pool.size, busy: e.pool.busy, idle: e.pool.idle, waiting: e.pool.waiting } : null,
    }));
  }

  /** Runs on_request for a route: one merged verdict (see the module doc). Never throws. */
  onRequest(routeId: string, info: RequestInfo): Promise<AuthorizeResult> {
    return this.#dispatch.onRequest(routeId, info);
  }

  /**
   * How an edge may cache the route's merged on_request verdict: null
   * unless every binding whose plugin answers on_request caches (see
   * `mergeCacheSettings`); the generation changes with any config change
   * that empties a binding's cache.
   */
  routeCache(routeId: string): RouteCacheSettings | null {
    const entry = this.#routes.get(routeId);
    if (!entry) return null;
    const bindings = entry.bindings.filter((b) => b.plugin.hooks & HOOK_BIT.on_request);
    const merged = mergeCacheSettings(bindings.map((b) => b.cache?.settings));
    if (!merged) return null;
    const generation = createHash('sha256')
      .update(JSON.stringify(entry.bindings.map((_, i) => this.#caches.get(`${routeId}\n${i}`)?.generation ?? null)))
      .digest('hex')
      .slice(0, 16);
    return { ...merged, generation };
  }

  /** Verdicts held by each caching binding, for tests and metrics. */
  /** Empties the verdict caches of every binding (of `plugin` only, when given); returns how many verdicts were dropped. */
  purgeCaches(plugin?: string): number {
    let n = 0;
    for (const r of this.#routes.values()) {
      for (const b of r.bindings) {
        if (!b.cache || (plugin !== undefined && b.plugin.name !== plugin)) continue;
        n += b.cache.size;
        b.cache.clear();
      }
    }
    return n;
  }

  cacheEntries(): Array<{ route: string; plugin: string; entries: number }> {
    const out: Array<{ route: string; plugin: string; entries: number }> = [];
    for (const r of this.#routes.values()) for (const b of r.bindings) if (b.cache) out.push({ route: r.route.id, plugin: b.plugin.name, entries: b.cache.size });
    return out;
  }

  /** Runs on_response for a route: one merged modification. Never throws. */
  onResponse(routeId: string, pair: ResponsePair): Promise<ResponseModResult> {
    return this.#dispatch.onResponse(routeId, pair);
  }

  /** Runs on_connect for a route: refused by the first plugin that refuses. Never throws. */
  onConnect(routeId: string, info: ConnInfo): Promise<ConnResult> {
    return this.#dispatch.onConnect(routeId, info);
  }

  /** Sends on_disconnect to the route's plugins that declared it; fire-and-forget, never throws. */
  onDisconnect(routeId: string, info: DisconnectInfo): void {
    this.#dispatch.onDisconnect(routeId, info);
  }

  /** Stops every plugin and closes every pool. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#applying;
    const entries = [...this.#plugins.values()];
    this.#plugins.clear();
    this.#routes = new Map();
    await Promise.all(entries.map((e) => this.#stopEntry(e)));
    if (this.#opts.keeper) {
      // A deliberate stop: nothing is left to adopt.
      await this.#opts.keeper.client.shutdown();
      removeSnapshot(this.#opts.keeper.stateDir);
    }
  }

  /** Why a plugin without a pool cannot take a call. */
  #unavailable(p: PluginEntry): HookgateError {
    return p.proc.unavailable();
  }

  #hookFailed(p: PluginEntry, routeId: string, hook: HookName, err: unknown): void {
    // An attached plugin checks its socket at once when a call could not reach it.
    if (p.pool) p.proc.callFailed(err);
    const e = err as HookgateError;
    const held = this.#logThrottle.admit(`${p.name} ${routeId} ${hook} ${e.code}`);
    if (held >= 0) this.#log.warn({ plugin: p.name, route: routeId, hook, code: e.code, err: e.message, suppressed: held }, 'hook call failed; applying on_error');
  }

  #setHooks(entry: PluginEntry, hooks: number): void {
    entry.known = true;
    if (entry.hooks !== hooks) {
      entry.hooks = hooks;
      this.#recomputeMasks();
    }
    this.#wakeIfReady(entry);
  }

  async #stopEntry(entry: PluginEntry): Promise<void> {
    const pool = entry.pool;
    entry.pool = null;
    pool?.close();
    // Let the plugin read the on_disconnect notices already sent before it is told to exit.
    await pool?.flushed();
    await entry.proc.stop();
  }

  #recomputeMasks(): void {
    let changed = false;
    for (const r of this.#routes.values()) {
      let mask = 0;
      for (const b of r.bindings) mask |= b.plugin.hooks;
      if (r.mask !== mask) changed = true;
      r.mask = mask;
    }
    if (changed) for (const fn of this.#hookListeners) fn();
  }

  /** A plugin's pool came or went (ready, exit, attached socket up or down): what `hookTable` says changed. */
  #poolsChanged(): void {
    for (const fn of this.#hookListeners) fn();
  }

  /**
   * Calls `fn` whenever the hooks of some route change (a plugin declared
   * its hooks, a config changed the bindings) or a plugin's pool came or
   * went. Returns an unsubscribe function.
   */
  subscribeHooks(fn: () => void): () => void {
    this.#hookListeners.add(fn);
    return () => this.#hookListeners.delete(fn);
  }

}

