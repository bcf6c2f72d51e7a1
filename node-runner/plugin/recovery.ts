/**
 * @module plugin/recovery
 * What a runner with a keeper takes over from the previous one
 * (docs/keeper.md): reading the kept plugins and the plugins file at the
 * first apply, and the plugins file's content from the manager's records.
 * Adopting the kept processes, and writing the file, are the manager's.
 */

import type { Logger } from '../../src/core/log.ts';
import { hookNames, specHash, type PluginEntry } from './entry.ts';
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
