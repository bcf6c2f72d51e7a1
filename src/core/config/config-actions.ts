/**
 * @module config-actions
 * The config schema of the actions that answer without an upstream besides
 * `static` and `redirect`: `serve` (files from a folder, or one file) and
 * `drop` (close the connection without a response), with the checks that
 * span their fields. `config.ts` puts them in the action variant and calls
 * `fileActionProblems`; the rules they follow are `serve.ts`'s and the data
 * planes'.
 *
 * Whether a `root` or `file` exists is not checked here (a runtime-neutral
 * schema has no file system): `node-runner/gateway/serve-paths.ts` resolves
 * them against the config file's folder and reports missing ones.
 */

import * as v from 'valibot';

/** A path relative to a serve action's root: no leading "/", no "." or ".." segments, no "\" or NUL. */
function isInsidePath(p: string): boolean {
  if (p === '' || p.startsWith('/') || p.includes('\\') || p.includes('\0')) return false;
  return p.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

const NonEmpty = (what: string) => v.pipe(v.string(`expected ${what}`), v.minLength(1, `expected ${what}`));

/**
 * `{ type: "serve", root, index?, fallback? }` or `{ type: "serve", file }`:
 * files below `root` (a directory answers with its `index`, default
 * `index.html`; there are no listings), else `fallback` (a file below
 * `root`, for single-page apps) when the named file does not exist; or
 * the one `file` for every request on the route.
 */
export const ServeAction = v.strictObject({
  type: v.literal('serve'),
  /** a folder; relative paths are against the config file's folder */
  root: v.optional(NonEmpty('a folder path')),
  /** one file, served for every path of the route */
  file: v.optional(NonEmpty('a file path')),
  /** the file a directory answers with */
  index: v.optional(
    v.pipe(NonEmpty('a file name'), v.check((s) => isInsidePath(s) && !s.includes('/'), 'expected a file name such as "index.html" (no "/")')),
    'index.html',
  ),
  /** a file below root served (200) for a path that names no file: a single-page app's entry */
  fallback: v.optional(v.pipe(NonEmpty('a file path'), v.check(isInsidePath, 'expected a path below root, such as "index.html" or "app/shell.html" (no leading "/", no ".." )'))),
});

/** `{ type: "drop" }`: the connection is closed without a response (before the TLS handshake where the listener can tell). */
export const DropAction = v.strictObject({
  type: v.literal('drop'),
});

/**
 * What the schema cannot say about a serve action, checked on raw input
 * (so it is reported with every other problem): exactly one of `root` and
 * `file`, and `index` and `fallback` only with `root`. `where` is the
 * action's config path.
 *
 * @example
 * fileActionProblems('actions.site', { type: 'serve', root: 'a', file: 'b' }) // ['actions.site: expected exactly one of ...']
 */
export function fileActionProblems(where: string, action: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (action.type !== 'serve') return problems;
  const has = (k: string) => action[k] !== undefined;
  if (has('root') === has('file')) problems.push(`${where}: expected exactly one of "root" (a folder to serve files from) or "file" (one file for every path)`);
  else if (has('file')) {
    for (const k of ['index', 'fallback']) if (has(k)) problems.push(`${where}.${k}: only with "root" (a single "file" is served for every path already)`);
  }
  return problems;
}

/**
 * A route whose action drops binds no plugins: they would never be asked
 * (the connection is closed as soon as the route is known). `at` is the
 * route's config path, `plugins` its raw `plugins`.
 *
 * @example
 * dropBindingProblems('routes[0]', { type: 'drop' }, ['auth']) // ['routes[0].plugins: this route's action is "drop", ...']
 */
export function dropBindingProblems(at: string, action: Record<string, unknown>, plugins: unknown): string[] {
  if (action.type !== 'drop' || !Array.isArray(plugins) || plugins.length === 0) return [];
  return [`${at}.plugins: this route's action is "drop", which closes the connection before any plugin is asked; remove the plugins, or let a plugin drop with its verdict ("dr") on another action`];
}

/** Action types an edge worker cannot carry out: it answers 501 for their routes. */
export const EDGE_UNSUPPORTED: readonly string[] = ['serve', 'pass'];

/**
 * Warnings for a config that edge workers route by: one per route whose
 * action the edge answers with 501 (`serve`, `pass`). A `drop` route is
 * fine there (an empty 403, as a drop verdict). Whether the config is used
 * by edge workers is the caller's to know (`runner.listen` set, or
 * `validate --edge`).
 *
 * @example
 * edgeWarnings({ routes: [{ action: { type: 'serve', root: '/srv' } }], actions: {} }) // ['routes[0].action: ...']
 */
export function edgeWarnings(config: { routes: ReadonlyArray<{ id?: string; action: unknown }>; actions: Record<string, unknown> }): string[] {
  const out: string[] = [];
  config.routes.forEach((r, i) => {
    const a = typeof r.action === 'string' ? config.actions[r.action] : r.action;
    const type = typeof a === 'object' && a !== null ? (a as { type?: unknown }).type : undefined;
    if (typeof type !== 'string' || !EDGE_UNSUPPORTED.includes(type)) return;
    const named = typeof r.action === 'string' ? ` (action "${r.action}")` : '';
    const what = type === 'serve' ? 'serve files' : 'pass TLS connections through';
    out.push(`routes[${i}].action: route "${r.id ?? i}" is a "${type}" route${named}; an edge worker cannot ${what} and answers it with 501 (only the self-hosted gateway carries it out)`);
  });
  return out;
}
