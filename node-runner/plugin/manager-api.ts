/**
 * @module plugin/manager-api
 * The data the PluginManager takes and gives: its options, what `apply`
 * is asked and answers, a plugin's status row and the hook table gateway
 * workers call hooks by. Plain data; the behaviour is `manager.ts`'s.
 */

import type { CacheSettings } from '../../src/core/config/config.ts';
import type { Clock } from '../../src/core/clock.ts';
import type { Logger } from '../../src/core/log.ts';
import type { HookName } from '../../src/core/protocol/protocol.ts';
import type { TrafficRecorder } from '../admin/traffic-metrics.ts';
import type { AttachedState } from './attached.ts';
import type { KeeperClient } from './keeper-client.ts';
import type { PluginProcessOptions, PluginState, Spawner } from './process.ts';
import type { Reaper } from './reaper.ts';

export interface ManagerOptions {
  logger: Logger;
  /** where hook-call and verdict-cache metrics go (default: nowhere) */
  traffic?: TrafficRecorder;
  clock?: Clock;
  spawn?: Spawner;
  reaper?: Reaper;
  /**
   * The keeper that starts and holds the plugin processes, so they survive
   * a runner restart (docs/keeper.md). With it, the first `apply` adopts
   * the plugins it kept whose definition is unchanged, and the snapshot is
   * kept in `stateDir`. Without it, plugins are spawned directly.
   */
  keeper?: { client: KeeperClient; stateDir: string };
  /** passed to every PluginProcess (tests shorten them) */
  process?: Pick<PluginProcessOptions, 'stopGraceMs' | 'backoffBaseMs' | 'backoffMaxMs'>;
}

/** The plugins and bindings a gateway worker calls hooks by (see `PluginManager.hookTable`); plain data, sent over IPC. */
export interface HookTable {
  plugins: Record<string, { hooks: number; socket: string | null; size: number; queueLimit: number; perWorker: boolean }>;
  /** each binding with its cache settings (null: it does not cache) and the generation its cache is for */
  routes: Record<string, { timeout: number; bindings: Array<{ plugin: string; on_error: 'deny' | 'allow'; with_body: boolean; cache: CacheSettings | null; generation: string | null }> }>;
}

/** Status of one plugin, for health endpoints and tools. */
export interface PluginStatus {
  name: string;
  /** a process's state, or for an attached plugin 'attached' (its socket is reachable), 'down' or 'stopped' */
  state: PluginState | AttachedState;
  pid: number | undefined;
  ready: boolean;
  hooks: HookName[];
  socket: string | null;
  /** consecutive failed starts (for a process, reset once one stayed up 30 s); failed health checks (attached) */
  failures: number;
  lastError: string;
  /** processes started for this name since the runner started, minus the first (restarts and replacements) */
  restarts: number;
  /** the delay of the pending restart while in `backoff`, else null */
  restartDelayMs: number | null;
  /** this process's pool to the plugin's socket (null without one): its size and connections now, calls waiting */
  pool: { size: number; busy: number; idle: number; waiting: number } | null;
}

export interface ApplyOptions {
  /** compare the code of only these plugins (those a watch saw change); default: every plugin's */
  code?: ReadonlySet<string>;
  /** restart these plugins whatever changed (the admin API's restart) */
  restart?: ReadonlySet<string>;
}

/** What an `apply` did to the plugins, for the runner's reload log. */
export interface ApplyChanges {
  /** plugins started that were not running */
  started: string[];
  /** plugins replaced by a new process, and why ("definition changed", "code changed") */
  restarted: Array<{ plugin: string; why: string }>;
  /** plugins stopped: no longer bound or in the config */
  stopped: string[];
  /** plugins whose other settings changed, without a restart */
  settings: string[];
}
