/**
 * @module plugin/plugins-file
 * The runner's plugin snapshot, `<state dir>/plugins.json` (docs/keeper.md):
 * what a restarted runner needs to take over the plugins its keeper kept
 * (which plugin process is which definition, what it was told in
 * `configure`, what it had said and pushed). Read leniently (anything
 * unreadable is null, and the caller logs it), written atomically
 * (`atomic-write.ts`).
 *
 * What to do with it is the manager's business.
 */

import { mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { writeFileAtomicSync } from '../atomic-write.ts';
import { join } from 'node:path';
import type { TargetSet } from '../../src/core/routing/balancer.ts';
import type { SpeedSet } from '../../src/core/state/state.ts';
import type { ConfigureParams } from './process.ts';

export const SNAPSHOT_FILE = 'plugins.json';

export interface PluginSnapshot {
  pid: number;
  start_time: number | null;
  spec_hash: string;
  socket: string | null;
  hooks: string[];
  /** it was known to have no hooks (said so, or was found push-only): adopted, it is push-only at once */
  push_only?: boolean;
  /** the configure params last sent */
  configure: ConfigureParams[];
}

export interface Snapshot {
  format: 1;
  keeper_pid: number;
  plugins: Record<string, PluginSnapshot>;
  targets: Record<string, TargetSet>;
  speed: Record<string, SpeedSet>;
}

/**
 * Reads `<dir>/plugins.json`. Returns `{ snapshot: null }` when there is
 * none, and `{ snapshot: null, problem }` when it cannot be read or is not
 * a format-1 snapshot. Never throws.
 *
 * @example
 * const { snapshot, problem } = readSnapshot(stateDir);
 * if (problem) log.warn({ problem }, 'ignoring the plugin snapshot');
 */
export function readSnapshot(dir: string): { snapshot: Snapshot | null; problem?: string } {
  let text: string;
  try {
    text = readFileSync(join(dir, SNAPSHOT_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { snapshot: null };
    return { snapshot: null, problem: (err as Error).message };
  }
  try {
    const v = JSON.parse(text) as Snapshot;
    if (typeof v !== 'object' || v === null || v.format !== 1 || typeof v.plugins !== 'object' || v.plugins === null) {
      return { snapshot: null, problem: 'not a format 1 plugin snapshot' };
    }
    return { snapshot: { format: 1, keeper_pid: Number(v.keeper_pid) || 0, plugins: v.plugins, targets: v.targets ?? {}, speed: v.speed ?? {} } };
  } catch (err) {
    return { snapshot: null, problem: `not JSON (${(err as Error).message})` };
  }
}

/** Writes the snapshot atomically (mode 0600). Throws on failure (the caller logs it). */
export function writeSnapshot(dir: string, snapshot: Snapshot): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, SNAPSHOT_FILE);
  writeFileAtomicSync(file, JSON.stringify(snapshot) + '\n');
}

/** Removes the snapshot (after a deliberate stop: nothing is left to adopt). Never throws. */
export function removeSnapshot(dir: string): void {
  try {
    unlinkSync(join(dir, SNAPSHOT_FILE));
  } catch {
    // none
  }
}
