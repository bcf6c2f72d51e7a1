/**
 * @module code
 * What a plugin's code is, on disk: the files whose change means the
 * plugin should run again (`codeFiles`), and a cheap fingerprint of them
 * (`codeFingerprint`: size, mtime and inode of each, folders walked). The
 * manager folds the fingerprint into a plugin's definition, so a reload
 * (SIGHUP, a changed config file, `watch`) restarts a plugin whose code
 * changed, and a runner that restarts does not adopt a kept process that
 * runs old code.
 */

import { readdirSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import type { PluginConfig } from '../../src/core/config/config.ts';

/** At most this many entries are looked at under one watched folder. */
const MAX_ENTRIES = 10_000;
/** Folders never walked: they are not code one edits, and they are big. */
const SKIPPED = new Set(['.git', 'node_modules', '__pycache__', '.venv', '.hookgate-state']);

/**
 * The files and folders that make up a plugin's code: its `path`; for a
 * `command`, each element that names an existing file (a program with a
 * slash, `x.py` in `["python3", "x.py"]`, relative to the plugin's `cwd`);
 * and the paths listed in `watch` (already absolute, see
 * `resolvePluginPaths`). An attached plugin has none.
 */
export function codeFiles(p: Pick<PluginConfig, 'path' | 'command' | 'cwd' | 'attach' | 'watch'>): string[] {
  if (p.attach) return [];
  const out = new Set<string>();
  if (p.path) out.add(p.path);
  for (const [i, arg] of (p.command ?? []).entries()) {
    if (arg.startsWith('-') || arg === '') continue;
    if (i === 0 && !arg.includes('/')) continue; // found on PATH: an interpreter, not the plugin's code
    const file = isAbsolute(arg) ? arg : resolve(p.cwd ?? '.', arg);
    if (isFile(file)) out.add(file);
  }
  if (Array.isArray(p.watch)) for (const w of p.watch) out.add(w);
  return [...out];
}

/** A fingerprint of `files` (see `codeFiles`): changes when any of them is written, replaced, created or removed. */
export function codeFingerprint(files: string[]): string {
  if (files.length === 0) return '';
  const h = createHash('sha256');
  for (const f of files) stamp(h, f, { left: MAX_ENTRIES });
  return h.digest('hex').slice(0, 32);
}

function stamp(h: ReturnType<typeof createHash>, path: string, budget: { left: number }): void {
  if (budget.left-- <= 0) return;
  let st;
  try {
    st = statSync(path);
  } catch {
    h.update(`${path}\0-\n`);
    return;
  }
  if (!st.isDirectory()) {
    h.update(`${path}\0${st.size}\0${st.mtimeMs}\0${st.ino}\n`);
    return;
  }
  h.update(`${path}\0dir\n`);
  let names: string[];
  try {
    names = readdirSync(path).sort();
  } catch {
    return;
  }
  for (const n of names) if (!SKIPPED.has(n)) stamp(h, join(path, n), budget);
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
