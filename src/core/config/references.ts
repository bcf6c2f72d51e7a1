/**
 * @module config/references
 * The config checks a schema cannot make: names that must exist (actions,
 * plugins bound to routes), ids that must be unique, route matches, and
 * templates whose host part must not come from the client. Read
 * defensively from the raw input, so they report even when the schema
 * found problems elsewhere.
 */

import { matchProblems } from '../routing/routing.ts';
import { dropBindingProblems, fileActionProblems } from './config-actions.ts';
import { listenerProblems, passRouteProblems } from './config-listeners.ts';

/** Cross-references (names that must exist, ids that must be unique), checked defensively on raw input. */
export function referenceProblems(input: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const obj = (x: unknown): Record<string, unknown> =>
    typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Record<string, unknown>) : {};
  const actions = obj(input.actions);
  const plugins = obj(input.plugins);
  const fallbackProblem = (where: string, action: Record<string, unknown>) => {
    if (action.type !== 'proxy' || typeof action.fallback !== 'string') return;
    const fb = actions[action.fallback];
    if (fb === undefined) problems.push(`${where}.fallback: no action named "${action.fallback}" in actions`);
    else if (typeof obj(fb).type === 'string' && obj(fb).type !== 'static' && obj(fb).type !== 'redirect') problems.push(`${where}.fallback: "${action.fallback}" is a ${String(obj(fb).type)}; a fallback must be static or redirect`);
  };
  const ids = new Map<string, number>();
  const routes = Array.isArray(input.routes) ? input.routes : [];
  routes.forEach((raw, index) => {
    const r = obj(raw);
    const id = typeof r.id === 'string' ? r.id : String(index);
    const seen = ids.get(id);
    if (seen !== undefined) problems.push(`routes[${index}].id: "${id}" is already the id of routes[${seen}]`);
    else ids.set(id, index);
    if (Array.isArray(r.plugins)) {
      r.plugins.forEach((b, j) => {
        const name = typeof b === 'string' ? b : obj(b).plugin;
        if (typeof name === 'string' && plugins[name] === undefined) problems.push(`routes[${index}].plugins[${j}]: no plugin named "${name}" in plugins`);
        // "body" in the effective cache key needs the body: binding fields over the plugin's.
        const p = obj(typeof name === 'string' ? plugins[name] : undefined);
        const over = typeof b === 'string' ? {} : obj(b);
        const key = obj(over.cache).key ?? obj(p.cache).key;
        const withBody = over.with_body ?? p.with_body ?? false;
        if (Array.isArray(key) && key.includes('body') && withBody !== true) {
          problems.push(`routes[${index}].plugins[${j}]: the cache key names "body", but this binding sends plugin "${name}" no body (set with_body: true, or take "body" out of the key)`);
        }
      });
    }
    let action: Record<string, unknown> | undefined;
    if (typeof r.action === 'string') {
      if (actions[r.action] === undefined) problems.push(`routes[${index}].action: no action named "${r.action}" in actions`);
      else action = obj(actions[r.action]);
    } else if (r.action !== undefined) {
      action = obj(r.action);
      fallbackProblem(`routes[${index}].action`, action);
      problems.push(...fileActionProblems(`routes[${index}].action`, action));
    }
    if (action) problems.push(...dropBindingProblems(`routes[${index}]`, action, r.plugins));
    if (action?.type === 'proxy' && typeof action.upstream === 'string' && action.upstream.includes('{target}') && r.balancer === undefined) {
      problems.push(`routes[${index}].balancer: the action's upstream uses {target}, so the route needs a balancer`);
    }
    const m = obj(r.match);
    const str = (x: unknown) => (typeof x === 'string' ? x : undefined);
    if (action && !isExactDomain(str(m.domain))) {
      const fallback = action.type === 'proxy' && typeof action.fallback === 'string' ? action.fallback : undefined;
      const checks: Array<[string, Record<string, unknown>, string]> = [
        [typeof r.action === 'string' ? `routes[${index}].action` : `routes[${index}].action.${action.type === 'redirect' ? 'to' : 'upstream'}`, action, typeof r.action === 'string' ? `action "${r.action}": ` : ''],
      ];
      if (fallback) checks.push([`routes[${index}].action.fallback`, obj(actions[fallback]), `action "${fallback}": `]);
      for (const [at, a, which] of checks) {
        const tpl = a.type === 'proxy' ? a.upstream : a.type === 'redirect' ? a.to : undefined;
        if (typeof tpl !== 'string' || !templateAuthority(tpl).includes('{host}')) continue;
        problems.push(
          `${at}: ${which}"${tpl}" puts {host} in the URL's host part, so any client could pick where the request goes; ` +
            'use {host} there only on a route whose match.domain lists exact domains (no "*"), or write the host into the template',
        );
      }
    }
    for (const p of matchProblems({ domain: str(m.domain), path: str(m.path) })) problems.push(`routes[${index}].match.${p}`);
    if (action) problems.push(...passRouteProblems(index, r, action, plugins));
  });
  problems.push(...listenerProblems(input));
  for (const [name, a] of Object.entries(actions)) {
    fallbackProblem(`actions.${name}`, obj(a));
    problems.push(...fileActionProblems(`actions.${name}`, obj(a)));
  }
  return problems;
}

/**
 * The authority part (host and port) of a URL template: after a literal
 * `scheme:` and the slashes that follow it, or after a leading `//`; a
 * template that starts with neither a scheme nor `/` (e.g. `{host}/x`) is
 * read from its start. It ends at the first `/`, backslash, `?`, `#`,
 * `{path}` or `{query}`. A template that starts with one `/` (a path) has none ('').
 */
function templateAuthority(tpl: string): string {
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:[/\\]*/.exec(tpl) ?? /^[/\\]{2,}/.exec(tpl);
  if (!scheme && /^[/\\]/.test(tpl)) return '';
  const rest = tpl.slice(scheme?.[0].length ?? 0);
  const end = rest.search(/[/\\?#]|\{(?:path|query)\}/);
  return end < 0 ? rest : rest.slice(0, end);
}

/** True when a route's `match.domain` lists only exact domains: a Host that matches it is one the author wrote. */
function isExactDomain(domain: string | undefined): boolean {
  if (domain === undefined) return false;
  const parts = domain.split(',').map((d) => d.trim());
  return parts.every((d) => d !== '' && !d.includes('*'));
}
