/**
 * @module plugin/entry
 * The manager's records: a plugin (its instance, pool, declared hooks and
 * what it was told), a route's bindings, and what makes a plugin
 * definition a different process. `createEntry` builds a plugin's record
 * and wires its instance's callbacks to the manager (`EntryHost`); the
 * decisions stay the manager's.
 */

import { createHash } from 'node:crypto';
import type { Config, PluginConfig, Route } from '../../src/core/config/config.ts';
import type { Clock } from '../../src/core/clock.ts';
import type { Logger } from '../../src/core/log.ts';
import { HOOK_BIT, type HookName } from '../../src/core/protocol/protocol.ts';
import type { VerdictCache } from '../../src/core/gateway/verdict-cache.ts';
import { AttachedPlugin } from './attached.ts';
import { codeFiles, codeFingerprint } from './code.ts';
import type { PluginInstance } from './instance.ts';
import type { KeeperClient } from './keeper-client.ts';
import { SocketPool } from './pool.ts';
import { PluginProcess, type ConfigureParams, type PluginProcessOptions, type Spawner } from './process.ts';
import type { PushAddress, TargetSet } from './pushes.ts';
import type { Reaper } from './reaper.ts';

/** Every hook bit: what a plugin that has not declared its hooks yet is assumed to have (fail closed). */
export const ALL_HOOKS = HOOK_BIT.on_request | HOOK_BIT.on_response | HOOK_BIT.on_connect | HOOK_BIT.on_disconnect;

/** A plugin as the manager tracks it. */
export interface PluginEntry {
  name: string;
  /** definitionKey of the running process (or of the attach settings) */
  key: string;
  /** codeFingerprint of its code files when it was created ('' for none) */
  code: string;
  config: PluginConfig;
  proc: PluginInstance;
  pool: SocketPool | null;
  /** HOOK_BIT mask from the last ready; ALL_HOOKS until the plugin has said */
  hooks: number;
  known: boolean;
  /** every hook a `ready` of this definition ever declared: such a plugin is never taken for push-only */
  everHooks: number;
  /** taken for push-only because it acked and sent no ready (not declared by `ready` or the config) */
  guessedPushOnly: boolean;
  configure: ConfigureParams[];
  readyWaiters: Array<() => void>;
  /** the last `set_targets` per wide address ("*" or an action), by address */
  widePushes: Map<string, { to: PushAddress; set: TargetSet; seq: number }>;
}

export interface BindingEntry {
  plugin: PluginEntry;
  on_error: 'deny' | 'allow';
  with_body: boolean;
  /** this binding's verdicts, when it caches */
  cache: VerdictCache<unknown> | null;
}

/** A binding's cache and the generation it was made for (see the module doc). */
export interface HeldCache {
  generation: string;
  cache: VerdictCache<unknown>;
}

export interface RouteEntry {
  route: Route;
  bindings: BindingEntry[];
  mask: number;
}

/** What a plugin's record calls back into: the manager that owns it. */
export interface EntryHost {
  logger: Logger;
  clock: Clock;
  process?: Pick<PluginProcessOptions, 'stopGraceMs' | 'backoffBaseMs' | 'backoffMaxMs'>;
  keeper?: { client: KeeperClient; stateDir: string };
  spawn?: Spawner;
  reaper?: Reaper;
  /** a process was spawned for `name` (counts restarts) */
  spawned(name: string): void;
  /** the plugin's hooks are now `hooks` (a HOOK_BIT mask), declared or found */
  setHooks(entry: PluginEntry, hooks: number): void;
  /** a pool came or went */
  poolsChanged(): void;
  /** something the plugins file records changed */
  changed(): void;
  push(entry: PluginEntry, log: Logger, method: 'set_targets' | 'set_speed', params: unknown): void;
  wakeIfReady(entry: PluginEntry): void;
}

export function createEntry(name: string, config: PluginConfig, host: EntryHost): PluginEntry {
  if (config.attach) return createAttached(name, config, host);
  const log = host.logger.child({ plugin: name });
  // Hooks the config declares are known at once: no fail-closed window for
  // the others, and no guessing whether a plugin without ready is push-only.
  const declared = config.hooks ? hookMask(config.hooks) : null;
  const entry: PluginEntry = {
    name,
    key: definitionKey(config),
    code: codeOf(config),
    config,
    proc: null as unknown as PluginProcess,
    pool: null,
    hooks: declared ?? ALL_HOOKS,
    known: declared !== null,
    everHooks: 0,
    guessedPushOnly: false,
    configure: [],
    readyWaiters: [],
    widePushes: new Map(),
  };
  entry.proc = new PluginProcess(name, config, {
    ...host.process,
    logger: log,
    clock: host.clock,
    spawn: host.keeper ? host.keeper.client.spawner(name, specHash(entry.key, entry.code)) : host.spawn,
    reaper: host.keeper ? undefined : host.reaper,
    onSpawn: () => {
      host.spawned(name);
      host.changed();
    },
    onReady: (socket, hooks) => {
      if (entry.pool && entry.pool.path !== socket) {
        entry.pool.close();
        entry.pool = null;
      }
      if (socket && !entry.pool && hooks !== 0) {
        entry.pool = new SocketPool(socket, { size: entry.config.pool_size, queueLimit: entry.config.queue_limit, clock: host.clock });
      }
      if (hooks !== 0 && entry.guessedPushOnly) {
        log.error(
          { hooks: hookNames(hooks) },
          'plugin said ready with hooks after it was taken for push-only; its hooks are called from now on, and it is never taken for push-only again. Requests before were served without them: declare its hooks in the config ("hooks": [...]) so its routes fail closed until it is ready',
        );
      } else if (hooks !== 0 && entry.config.hooks && hookMask(entry.config.hooks) !== hooks) {
        log.warn({ hooks: hookNames(hooks), configured: entry.config.hooks }, 'plugin declared other hooks than its config says; calling the ones it declared');
      }
      entry.guessedPushOnly = false;
      entry.everHooks |= hooks;
      host.setHooks(entry, hooks);
      host.poolsChanged();
      host.changed();
    },
    onNoReady: (kind) => {
      if (entry.config.hooks) {
        // The config said what it implements; nothing to guess.
        host.wakeIfReady(entry);
        return;
      }
      if (kind === 'acked') {
        if (entry.everHooks !== 0) {
          log.warn(
            { hooks: hookNames(entry.everHooks) },
            'plugin acked its configure and sent no ready; it declared hooks before, so its routes keep failing closed until it says ready',
          );
          return;
        }
        // prox's SDK: a plugin without hooks acks and never says ready.
        entry.guessedPushOnly = true;
        host.setHooks(entry, 0);
        host.changed();
        return;
      }
      if (entry.configure.some((c) => c.route_id !== '')) {
        // Bound to routes but silent about its hooks: its routes keep failing closed.
        log.error(
          'plugin is bound to routes but sent no ready; their hook calls get on_error verdicts. A push-only plugin should ack its configure, send ready with hooks [], or be declared with "hooks": [] in the config',
        );
        return;
      }
      host.setHooks(entry, 0);
      host.changed();
    },
    onExit: () => {
      entry.pool?.close();
      entry.pool = null;
      host.poolsChanged();
      host.changed();
    },
    onPush: (method, params) => {
      host.push(entry, log, method, params);
      host.wakeIfReady(entry);
      host.changed();
    },
  });
  return entry;
}

function createAttached(name: string, config: PluginConfig, host: EntryHost): PluginEntry {
  const proc = new AttachedPlugin(name, config, {
    logger: host.logger.child({ plugin: name }),
    clock: host.clock,
    onReady: (socket, hooks) => {
      entry.pool?.close();
      entry.pool = hooks === 0 ? null : new SocketPool(socket, { size: entry.config.pool_size, queueLimit: entry.config.queue_limit, clock: host.clock });
      for (const w of entry.readyWaiters.splice(0)) w();
      host.poolsChanged();
    },
    onDown: () => {
      entry.pool?.close();
      entry.pool = null;
      host.poolsChanged();
    },
  });
  // The hooks are known from the config, so no fail-closed window: until the
  // socket is reachable there is no pool, and calls get on_error verdicts.
  const entry: PluginEntry = {
    name,
    key: definitionKey(config),
    code: '',
    config,
    proc,
    pool: null,
    hooks: proc.hooks,
    known: true,
    everHooks: proc.hooks,
    guessedPushOnly: false,
    configure: [],
    readyWaiters: [],
    widePushes: new Map(),
  };
  return entry;
}

/**
 * What makes a plugin a different process: its program, arguments,
 * environment (`env`, `inherit_env`), working directory and pinned checksum. A change to any of
 * them restarts it; other settings do not. For an attached plugin, its
 * attach settings: a change replaces its health checks and pool.
 */
export function definitionKey(p: PluginConfig): string {
  if (p.attach) return JSON.stringify(['attach', p.attach]);
  // inherit_env only when set, so the definitions (and spec hashes) of plugins without it stay as they were.
  return JSON.stringify([p.path, p.command, p.args, p.env, p.cwd, p.sha256, ...(p.inherit_env ? ['inherit_env'] : [])]);
}

/**
 * The `spec_hash` the keeper records: the sha256 of a definitionKey, under
 * a generation tag. The tag changed when plugins stopped inheriting the
 * runner's environment, so a process an older runner left with the keeper
 * (holding that environment) is replaced once rather than adopted.
 */
export function specHash(key: string, code: string): string {
  // Without code files (attached plugins) the hash is what it was before code was part of it.
  return createHash('sha256').update(`minimal-env\n${key}${code ? `\ncode ${code}` : ''}`).digest('hex');
}

/** The fingerprint of a plugin's code files (see code.ts); '' for an attached plugin. */
export function codeOf(p: PluginConfig): string {
  return codeFingerprint(codeFiles(p));
}

/** The HOOK_BIT mask of a list of hook names. */
export function hookMask(hooks: readonly HookName[]): number {
  return hooks.reduce((mask, h) => mask | HOOK_BIT[h], 0);
}

/** The hook names of a HOOK_BIT mask, in protocol order. */
export function hookNames(mask: number): HookName[] {
  return (Object.keys(HOOK_BIT) as HookName[]).filter((h) => mask & HOOK_BIT[h]);
}

/**
 * The plugins a config wants running, each with its `configure` lines:
 * one per route that binds it (with the route's domain and path), or one
 * with route '' for an autostart plugin no route binds.
 */
export function wantedPlugins(config: Config): Map<string, ConfigureParams[]> {
  const wanted = new Map<string, ConfigureParams[]>();
  for (const route of config.routes) {
    const params: ConfigureParams = { route_id: route.id };
    const match: ConfigureParams['match'] = {};
    if (route.match.domain) match.domain = route.match.domain;
    if (route.match.path) match.path = route.match.path;
    if (match.domain || match.path) params.match = match;
    for (const b of route.plugins) {
      const list = wanted.get(b.plugin) ?? [];
      if (!list.some((p) => p.route_id === route.id)) list.push(params);
      wanted.set(b.plugin, list);
    }
  }
  for (const [name, p] of Object.entries(config.plugins)) {
    if (p.autostart && !wanted.has(name)) wanted.set(name, [{ route_id: '' }]);
  }
  return wanted;
}
