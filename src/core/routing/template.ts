/**
 * @module template
 * `{name}` templates in action fields (`upstream`, redirect `to`): route
 * variables (`set`, path captures), and the request's `{target}`, `{path}`,
 * `{query}`, `{host}`. Compiled once per config, expanded per request.
 */

/** Variables whose values are already URL-safe and go in verbatim. */
const RAW = new Set(['target', 'path', 'query']);

export type Template = (vars: Record<string, string>) => string;

/**
 * Compiles a template. Unknown names expand to ''. Values go in
 * percent-encoded (a captured `a/../b` cannot climb out of its segment),
 * except `{target}` (a validated host:port) and `{path}` / `{query}` (still
 * encoded as the client sent them).
 *
 * @example
 * compileTemplate('http://{target}/u/{id}')({ target: '10.0.0.1:80', id: 'a b' }) // 'http://10.0.0.1:80/u/a%20b'
 */
export function compileTemplate(tpl: string): Template {
  const parts: Array<string | { name: string }> = [];
  const re = /\{([A-Za-z_][A-Za-z0-9_-]*)\}/g;
  let last = 0;
  for (let m = re.exec(tpl); m; m = re.exec(tpl)) {
    if (m.index > last) parts.push(tpl.slice(last, m.index));
    parts.push({ name: m[1] });
    last = m.index + m[0].length;
  }
  if (last < tpl.length) parts.push(tpl.slice(last));
  return (vars) => {
    let out = '';
    for (const p of parts) {
      if (typeof p === 'string') out += p;
      else {
        const v = vars[p.name] ?? '';
        out += RAW.has(p.name) ? v : encodeURIComponent(v);
      }
    }
    return out;
  };
}

/** The `{names}` a template uses. */
export function templateNames(tpl: string): string[] {
  return [...tpl.matchAll(/\{([A-Za-z_][A-Za-z0-9_-]*)\}/g)].map((m) => m[1]);
}
