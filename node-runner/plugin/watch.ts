/**
 * @module watch
 * The plugin authors' dev loop: watches the code files of plugins that ask
 * for it (`watch: true | [paths]`, or every started plugin with
 * `serve --watch-plugins`) and calls `onChange` once things are quiet again
 * after a change (editors write a file in several steps). What to restart
 * is the manager's business: it compares code fingerprints (code.ts), so a
 * spurious event restarts nothing.
 *
 * A file is watched through its folder, so an editor that replaces the file
 * (write to a temp file, rename over) is seen; a folder is watched
 * recursively.
 */

import { statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Config, PluginConfig } from '../../src/core/config/config.ts';
import type { Logger } from '../../src/core/log.ts';
import { codeFiles } from './code.ts';

/** How long things must stay quiet after a change before `onChange` runs. */
const QUIET_MS = 150;

/** The plugins to watch in `config`: name → the paths that make up its code. */
export function watchedPlugins(config: Config, all: boolean): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [name, p] of Object.entries(config.plugins)) {
    if (p.attach) continue;
    if (p.watch === false || (!p.watch && !all)) continue;
    const files = codeFiles(p as PluginConfig);
    if (files.length) out.set(name, files);
  }
  return out;
}

export class PluginWatcher {
  #log: Logger;
  #onChange: (plugins: Set<string>) => void;
  /** watched folder → its watcher, and the plugins watching each name in it ('' = anything under it) */
  #watchers = new Map<string, { w: FSWatcher; names: Map<string, Set<string>> }>();
  /** plugins whose files changed since the last `onChange` */
  #changedPlugins = new Set<string>();
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  #key = '';

  constructor(onChange: (plugins: Set<string>) => void, log: Logger) {
    this.#onChange = onChange;
    this.#log = log;
  }

  /** Watches exactly the paths of `plugins` (see `watchedPlugins`), dropping the others. */
  set(plugins: Map<string, string[]>): void {
    if (this.#closed) return;
    const key = JSON.stringify([...plugins]);
    if (key === this.#key) return;
    this.#key = key;
    const want = new Map<string, Map<string, Set<string>>>();
    for (const [plugin, paths] of plugins) {
      for (const p of paths) {
        const [folder, name] = isDir(p) ? [p, ''] : [dirname(p), basename(p)];
        const names = want.get(folder) ?? new Map<string, Set<string>>();
        names.set(name, (names.get(name) ?? new Set()).add(plugin));
        want.set(folder, names);
      }
    }
    for (const [folder, entry] of this.#watchers) {
      if (!want.has(folder)) {
        entry.w.close();
        this.#watchers.delete(folder);
      }
    }
    for (const [folder, names] of want) {
      const had = this.#watchers.get(folder);
      if (had) {
        had.names = names;
        continue;
      }
      try {
        const recursive = names.has('');
        const w = watch(folder, { recursive, persistent: false }, (_event, file) => {
          const entry = this.#watchers.get(folder);
          if (!entry) return;
          // Under a watched folder anything counts; next to a watched file, only it.
          const hit = new Set([...(entry.names.get('') ?? []), ...(file === null ? [...entry.names.values()].flatMap((p) => [...p]) : (entry.names.get(basename(String(file))) ?? []))]);
          if (hit.size) this.#changed(hit);
        });
        w.on('error', (err) => this.#log.warn({ folder, err: err.message }, 'cannot watch plugin files any more'));
        this.#watchers.set(folder, { w, names });
      } catch (err) {
        this.#log.warn({ folder, err: (err as Error).message }, 'cannot watch plugin files; edit them and send SIGHUP to restart the plugin');
      }
    }
    if (want.size) this.#log.info({ plugins: [...plugins.keys()] }, 'watching plugin files; a change restarts the plugin');
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    for (const { w } of this.#watchers.values()) w.close();
    this.#watchers.clear();
  }

  #changed(plugins: Set<string>): void {
    if (this.#closed) return;
    for (const p of plugins) this.#changedPlugins.add(p);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      const changed = this.#changedPlugins;
      this.#changedPlugins = new Set();
      if (!this.#closed) this.#onChange(changed);
    }, QUIET_MS);
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
