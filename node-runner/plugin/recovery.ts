/**
 * @module plugin/recovery
 * What a runner with a keeper takes over from the previous one
 * (docs/keeper.md): reading the kept plugins and the plugins file at the
 * first apply, and the plugins file's content from the manager's records.
 * Adopting the kept processes, and writing the file, are the manager's.
 */

import type { ChildProcess } from 'node:child_process';
import type { Logger } from '../../src/core/log.ts';
import { hookNames, specHash, type PluginEntry, type RouteEntry } from './entry.ts';
import type { ConfigureParams } from './process.ts';
import type { KeeperClient, KeptPlugin } from './keeper-client.ts';
import { readSnapshot, type Snapshot } from './plugins-file.ts';
import type { PushStore } from './pushes.ts';

/** What a runner found at its first apply with a keeper (see `recoverFromKeeper`). */
export interface Recovery {
  /** one kept plugin per name, not yet adopted or stopped */
  kept: Map<string, KeptPlugin>;
  /** older processes under a name that has a newer one: stopped */
  extra: KeptPlugin[];
  /** the snapshot, when written for the keeper we are connected to */
  snapshot: Snapshot | null;
}

/**
 * Connects to the keeper and reads what a previous runner left: the
 * plugins the keeper holds (by name; the newest when a name has several,
 * the others go in `extra`) and the plugins file, which is used only when
 * it was written for this same keeper.
 */
export async function recoverFromKeeper(client: KeeperClient, stateDir: string, log: Logger): Promise<Recovery> {
  const { snapshot: read, problem } = readSnapshot(stateDir);
  if (problem) log.warn({ dir: stateDir, problem }, 'cannot read the plugin snapshot; ignoring it (only warm state is lost)');
  const { keeper_pid, plugins } = await client.list();
  const kept = new Map<string, KeptPlugin>();
  const extra: KeptPlugin[] = [];
  for (const p of plugins) {
    const other = kept.get(p.name);
    if (other && other.pid > p.pid) extra.push(p);
    else {
      if (other) extra.push(other);
      kept.set(p.name, p);
    }
  }
  const snapshot = read && read.keeper_pid === keeper_pid ? read : null;
  if (read && !snapshot) log.info({ dir: stateDir }, 'the plugin snapshot is from a keeper that is gone; starting plugins fresh');
  if (plugins.length) log.info({ plugins: plugins.map((p) => ({ name: p.name, pid: p.pid })) }, 'the keeper holds plugins from a previous runner');
  return { kept, extra, snapshot };
}

/** The plugins file for the manager's plugins now: every spawned process with a pid, and the routes' pushed targets and speed limits. */
export function pluginsFileOf(
  keeperPid: number,
  startTime: (pid: number) => number | null,
  plugins: Iterable<PluginEntry>,
  routes: Iterable<string>,
  pushes: PushStore,
): Snapshot {
  const snap: Snapshot = { format: 1, keeper_pid: keeperPid, plugins: {}, targets: {}, speed: {} };
  for (const e of plugins) {
    if (!e.proc.adoptable || !e.proc.pid) continue;
    snap.plugins[e.name] = {
      pid: e.proc.pid,
      start_time: startTime(e.proc.pid),
      spec_hash: specHash(e.key, e.code),
      socket: e.pool?.path ?? null,
      hooks: e.known ? hookNames(e.hooks) : [],
      ...(e.known && e.hooks === 0 ? { push_only: true } : {}),
      configure: e.configure,
    };
  }
  for (const r of routes) {
    const t = pushes.targets(r);
    if (t) snap.targets[r] = t;
    const sp = pushes.speed(r);
    if (sp) snap.speed[r] = sp;
  }
  return snap;
}

/** A kept plugin the config adopts: the manager's new record for it and its configure lines. */
export interface Adopting {
  entry: PluginEntry;
  kept: KeptPlugin;
  params: ConfigureParams[];
}

/**
 * Takes over the kept plugins chosen at the first apply (routes are in place, so
 * their replayed pushes reach them), restores the snapshot's targets and
 * speed limits, re-sends `configure` only where it changed, and stops
 * what the keeper holds that nobody adopted.
 */
export function adoptKept(
  recovery: Recovery,
  adopting: Adopting[],
  { client, routes, pushes, log, pushOnly, stopGraceMs }: {
    client: KeeperClient;
    routes: Map<string, RouteEntry>;
    pushes: PushStore;
    log: Logger;
    /** the plugin is push-only (its hooks are none) */
    pushOnly: (entry: PluginEntry) => void;
    stopGraceMs: number;
  },
): void {
  const snap = recovery.snapshot;
  if (snap) {
    for (const [r, set] of Object.entries(snap.targets)) if (routes.get(r)?.route.balancer && !pushes.targets(r)) pushes.setTargets([r], set);
    for (const [r, set] of Object.entries(snap.speed)) if (routes.has(r) && !pushes.speed(r)) pushes.setSpeed([r], set);
  }
  for (const { entry, kept, params } of adopting) {
    const proc = entry.proc;
    const was = snap?.plugins[entry.name];
    const same = was && was.pid === kept.pid && was.start_time === kept.start_time;
    entry.configure = params;
    proc.configure(params);
    const lines = [...(kept.last_ready ? [kept.last_ready] : []), ...kept.last_pushes, ...kept.held];
    if (kept.held_dropped) log.warn({ plugin: entry.name, lines: kept.held_dropped }, 'the keeper dropped stdout lines this plugin wrote while no runner was connected (over its bound)');
    proc.adopt(client.adopt(kept) as unknown as ChildProcess, lines);
    // The same process was push-only before the runner restarted: no ready is coming, and no grace either.
    if (same && was.push_only && !kept.last_ready && !entry.config.hooks) pushOnly(entry);
    if (!same || JSON.stringify(was.configure) !== JSON.stringify(params)) proc.configure(params);
  }
  for (const p of [...recovery.kept.values(), ...recovery.extra]) {
    log.info({ plugin: p.name, pid: p.pid }, 'stopping a kept plugin the config does not adopt');
    client.stopUnadopted(p.id, stopGraceMs);
  }
}
