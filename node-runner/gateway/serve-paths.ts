/**
 * @module gateway/serve-paths
 * The file system side of `serve` actions in a config: their `root` and
 * `file` made absolute against the config file's folder (as plugin paths
 * are, `config/config-file.ts`), and what `validate` and `serve` check on this
 * machine: a `root` that is not a folder, a `file` that is not a regular
 * file. Serving is `serve.ts`'s; the schema is the core's
 * (`src/core/config/config-actions.ts`).
 */

import { stat } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';

/** The actions of a config (raw input or validated) with the config path of each: named ones and routes' inline ones. */
function actionsOf(config: { actions?: unknown; routes?: unknown }): Array<[string, Record<string, unknown>]> {
  const out: Array<[string, Record<string, unknown>]> = [];
  const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (isObj(config.actions)) for (const [name, a] of Object.entries(config.actions)) if (isObj(a)) out.push([`actions.${name}`, a]);
  if (Array.isArray(config.routes)) {
    config.routes.forEach((r, i) => {
      if (isObj(r) && isObj(r.action)) out.push([`routes[${i}].action`, r.action]);
    });
  }
  return out;
}

/**
 * Makes every serve action's `root` and `file` absolute against `baseDir`,
 * in place. Works on validated configs and raw input alike.
 *
 * @example
 * resolveServePaths({ actions: { site: { type: 'serve', root: 'public' } } }, '/etc/hookgate') // root: '/etc/hookgate/public'
 */
export function resolveServePaths(config: { actions?: unknown; routes?: unknown }, baseDir: string): void {
  for (const [, a] of actionsOf(config)) {
    if (a.type !== 'serve') continue;
    for (const k of ['root', 'file'] as const) if (typeof a[k] === 'string' && !isAbsolute(a[k])) a[k] = resolve(baseDir, a[k]);
  }
}

/**
 * What keeps each serve action from serving on this machine, in config
 * order: a `root` that does not exist or is not a folder, a `file` that
 * does not exist or is not a regular file (symlinks followed). Only for
 * configs whose paths are this machine's (`validate`, `serve`).
 *
 * @example
 * await serveProblems({ actions: { site: { type: 'serve', root: '/nope' } } }) // ['actions.site.root: "/nope" does not exist']
 */
export async function serveProblems(config: { actions?: unknown; routes?: unknown }): Promise<string[]> {
  const problems: string[] = [];
  for (const [at, a] of actionsOf(config)) {
    if (a.type !== 'serve') continue;
    for (const k of ['root', 'file'] as const) {
      const p = a[k];
      if (typeof p !== 'string') continue;
      try {
        const st = await stat(p);
        if (k === 'root' && !st.isDirectory()) problems.push(`${at}.root: "${p}" is not a folder (to serve one file, use "file")`);
        if (k === 'file' && !st.isFile()) problems.push(`${at}.file: "${p}" is not a regular file (to serve a folder, use "root")`);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        problems.push(`${at}.${k}: "${p}" ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}`);
      }
    }
  }
  return problems;
}
