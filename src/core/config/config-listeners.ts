/**
 * @module config-listeners
 * The parts of the config schema about how the self-hosted gateway listens
 * (`gateway.listeners`, `gateway.tls`, with `gateway.listen` as the
 * one-listener shorthand) and the L4 `pass` action, with the cross-field
 * rules the schema alone cannot say (a listener list and the shorthand
 * together, `redirect_https` without a TLS listener, a `pass` route that
 * matches by more than its domain or is bound to request hooks). Imported
 * by `config.ts`, which owns the schema as a whole; every problem names
 * its path. Loading certificate files is the node runner's business
 * (`node-runner/gateway/cert-store.ts`).
 */

import * as v from 'valibot';

const PathString = v.pipe(v.string(), v.minLength(1, 'expected a file or folder path'));

/**
 * TLS on a listener: one certificate (`cert` + `key`, PEM files) or a
 * folder of pairs chosen by the client's SNI name (`dir`; naming in
 * docs and `cert-store.ts`). `default` names the pair (its file name
 * without the extension) served to clients that send no SNI or a name no
 * pair covers.
 */
export const TlsSchema = v.pipe(
  v.strictObject({
    cert: v.optional(PathString),
    key: v.optional(PathString),
    dir: v.optional(PathString),
    default: v.optional(v.pipe(v.string(), v.minLength(1, 'expected the name of a pair in dir (its file name without extension)'))),
  }),
  v.check((t) => (t.dir !== undefined) !== (t.cert !== undefined || t.key !== undefined), 'expected either { cert, key } or { dir }'),
  v.check((t) => t.dir !== undefined || (t.cert !== undefined && t.key !== undefined), 'expected both "cert" and "key" (PEM files)'),
  v.check((t) => t.default === undefined || t.dir !== undefined, '"default" picks a pair of "dir"; with one cert it is that one'),
);

/** `gateway.tls` / `gateway.listeners[i].tls`, validated. */
export type TlsSettings = v.InferOutput<typeof TlsSchema>;

/** One listener: where, and whether it speaks TLS (then HTTP/2 too, by ALPN) or redirects to one that does. */
export const ListenerSchema = (listen: v.GenericSchema<string, string>) =>
  v.strictObject({
    listen,
    tls: v.optional(TlsSchema),
    /** answer every request (but ACME's HTTP-01 challenges) with a 308 to the same URL on the first TLS listener */
    redirect_https: v.optional(v.boolean()),
  });

/** A listener as the gateway opens it. */
export interface ListenerSettings {
  listen: string;
  tls?: TlsSettings;
  redirect_https?: boolean;
}

/**
 * The listeners a validated `gateway` block asks for: `listeners` when
 * given, else the shorthand (`listen`, with `tls` when set).
 *
 * @example
 * gatewayListeners({ listen: '127.0.0.1:8443', tls: { cert: 'c.pem', key: 'k.pem' } })
 * // [{ listen: '127.0.0.1:8443', tls: { cert: 'c.pem', key: 'k.pem' } }]
 */
export function gatewayListeners(g: { listen: string; tls?: TlsSettings; listeners?: ListenerSettings[] }): ListenerSettings[] {
  if (g.listeners && g.listeners.length) return g.listeners;
  return [g.tls ? { listen: g.listen, tls: g.tls } : { listen: g.listen }];
}

const obj = (x: unknown): Record<string, unknown> => (typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Record<string, unknown>) : {});

/**
 * The cross-field problems of `gateway` (raw input): `listeners` together
 * with the shorthand, `redirect_https` with no TLS listener or on a TLS
 * listener, two listeners on one address.
 */
export function listenerProblems(input: Record<string, unknown>): string[] {
  const g = obj(input.gateway);
  const problems: string[] = [];
  if (!Array.isArray(g.listeners)) return problems;
  for (const k of ['listen', 'tls'] as const) {
    if (g[k] !== undefined) problems.push(`gateway.${k}: gateway.listeners lists every listener; move this one into it (gateway.listen/gateway.tls are the shorthand for a single listener)`);
  }
  if (g.listeners.length === 0) problems.push('gateway.listeners: expected at least one listener');
  const hasTls = g.listeners.some((l) => obj(l).tls !== undefined);
  const seen = new Map<string, number>();
  g.listeners.forEach((raw, i) => {
    const l = obj(raw);
    if (l.redirect_https === true) {
      if (l.tls !== undefined) problems.push(`gateway.listeners[${i}].redirect_https: this listener speaks TLS itself; redirect_https is for a plain listener`);
      else if (!hasTls) problems.push(`gateway.listeners[${i}].redirect_https: no listener has tls, so there is nowhere to redirect to`);
    }
    // Port 0 asks for any free port: two of them never clash.
    if (typeof l.listen === 'string' && !l.listen.endsWith(':0')) {
      const at = seen.get(l.listen);
      if (at !== undefined) problems.push(`gateway.listeners[${i}].listen: "${l.listen}" is already gateway.listeners[${at}].listen`);
      else seen.set(l.listen, i);
    }
  });
  return problems;
}

/**
 * The problems of one route whose action (`action`, already resolved
 * from a name) is `pass`: it must match by domain alone, and its plugins
 * may only implement on_connect / on_disconnect (when they declare hooks
 * up front, `hooks` or `attach.hooks`; the runner checks the others when
 * they say ready).
 */
export function passRouteProblems(index: number, route: Record<string, unknown>, action: Record<string, unknown>, plugins: Record<string, unknown>): string[] {
  if (action.type !== 'pass') return [];
  const at = `routes[${index}]`;
  const problems: string[] = [];
  const m = obj(route.match);
  if (typeof m.domain !== 'string' || m.domain.trim() === '') problems.push(`${at}.match.domain: a pass route is chosen by the TLS client's SNI name before any request is read, so it needs match.domain`);
  for (const k of ['path', 'methods'] as const) {
    if (m[k] !== undefined) problems.push(`${at}.match.${k}: a pass route relays the TLS connection unread, so it can match by domain only (no path, no methods)`);
  }
  const upstream = action.upstream;
  if (typeof upstream === 'string' && upstream.includes('{target}') && route.balancer === undefined) problems.push(`${at}.balancer: the pass upstream uses {target}, so the route needs a balancer`);
  if (Array.isArray(route.plugins)) {
    route.plugins.forEach((b, j) => {
      const name = typeof b === 'string' ? b : obj(b).plugin;
      const p = obj(typeof name === 'string' ? plugins[name] : undefined);
      const hooks = Array.isArray(p.hooks) ? p.hooks : Array.isArray(obj(p.attach).hooks) ? (obj(p.attach).hooks as unknown[]) : [];
      const http = hooks.filter((h) => h === 'on_request' || h === 'on_response');
      if (http.length) problems.push(`${at}.plugins[${j}]: plugin "${String(name)}" implements ${http.join(' and ')}, but a pass route sees no HTTP request (only on_connect and on_disconnect are called)`);
      if (typeof b !== 'string' && obj(b).with_body === true) problems.push(`${at}.plugins[${j}].with_body: a pass route reads no request body`);
    });
  }
  return problems;
}
