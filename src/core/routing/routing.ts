/**
 * @module routing
 * Route matching: domain and path patterns compiled once into matchers, and
 * the Router that picks the first route matching a request's method, host
 * and path. It also reports what matched (`md`, `mg`, `mp` and the path's
 * captured variables), because plugins receive exactly those fields in
 * RequestInfo (docs/protocol.md §1.6).
 *
 * Pattern syntax, in short:
 *
 * * domain: comma-separated alternatives of dot-separated labels. `*` is one
 *   whole label, `cdn-*` / `*-prod` one label with that prefix or suffix,
 *   `**` as the first (or last) label one or more leading (or trailing)
 *   labels. Case-insensitive; a port in the host is ignored.
 * * path: comma-separated alternatives, each exact (`/health`), a prefix
 *   (`/v1/*`: `/v1`, `/v1/` and everything below `/v1/`), with `:name`
 *   segments capturing one non-empty segment. Compared with the request's
 *   normal path without `;` parameters (`path.ts`), case-sensitively unless
 *   the route says `case_insensitive`; captured values are percent-decoded.
 *   Patterns must themselves be in normal form.
 *
 * The hot path (`Router.match` and the compiled matchers) builds no regular
 * expressions and splits no strings: it scans the host and path in place and
 * allocates only the result of a successful match.
 *
 * Validating the rest of a route and merging the route's `set` variables with
 * the path's captures are left to `config.ts` and the gateway.
 */

import type { Route } from '../config/config.ts';
import { HookgateError } from '../errors.ts';
import { compileDomainNormalized, domainProblems, type DomainMatcher } from './domain-pattern.ts';
import { hostOf } from './host.ts';
import { compilePathField, pathProblems, type PathMatcher } from './path-pattern.ts';

export { compileDomain, type DomainMatch } from './domain-pattern.ts';
export { hostOf, hostProblem } from './host.ts';
export { compilePath, type PathMatch } from './path-pattern.ts';

/**
 * A request matched to a route; `md`, `mg`, `mp` and `vars` feed RequestInfo's fields of the same names.
 *
 * @example
 * const m = router.match('GET', host, path);
 * if (m) info = { ...info, r: m.route.id, md: m.md, mg: m.mg, mp: m.mp, v: { ...m.route.set, ...m.vars } };
 */
export interface RouteMatch {
  route: Route;
  /** matched domain alternative ("" when the route matches any host) */
  md: string;
  /** text matched by the domain's wildcards */
  mg: string;
  /** matched path alternative ("" when the route matches any path) */
  mp: string;
  /** the path's `:name` captures only; merging the route's `set` is the gateway's business */
  vars: Record<string, string>;
}

/**
 * A route's `match` block, as the config holds it.
 *
 * @example
 * const spec: MatchSpec = { domain: '*.example.com', path: '/v1/*', methods: ['GET'] };
 */
export interface MatchSpec {
  domain?: string;
  path?: string;
  methods?: string[];
  case_insensitive?: boolean;
  allow_encoded_slash?: boolean;
}

// ---------------------------------------------------------------------------
// validation

const METHOD = /^[A-Za-z]+$/;

function isBlank(s: string | undefined): boolean {
  return s === undefined || s.trim() === '';
}

/**
 * Every problem of a route's `match` block, each starting with the field it
 * is about; `[]` when the block is fine. Config validation prefixes them with
 * the route's path (`routes[2].match.`). An empty or blank `domain` or `path`
 * is fine: it matches anything.
 *
 * @example
 * matchProblems({ domain: 'a..b', path: 'v1/*' })
 * // ['domain: "a..b": empty label', 'path: "v1/*": must start with "/"']
 */
export function matchProblems(match: MatchSpec): string[] {
  const out: string[] = [];
  if (match.domain !== undefined && !isBlank(match.domain)) {
    for (const p of domainProblems(match.domain).problems) out.push(`domain: ${p}`);
  }
  if (match.path !== undefined && !isBlank(match.path)) {
    for (const p of pathProblems(match.path).problems) out.push(`path: ${p}`);
  }
  if (match.methods !== undefined) {
    match.methods.forEach((m, i) => {
      if (typeof m !== 'string' || !METHOD.test(m)) out.push(`methods[${i}]: ${JSON.stringify(m)} is not an HTTP method`);
    });
  }
  return out;
}

// ---------------------------------------------------------------------------
// router

interface CompiledRoute {
  route: Route;
  domain: DomainMatcher | null;
  path: PathMatcher | null;
  /** `match.case_insensitive`: the path is compared lower-cased */
  ci: boolean;
  /** upper-case; null when any method matches */
  methods: string[] | null;
}

/**
 * Matches requests to routes: the first route, in config order, whose
 * methods, domain and path all match. A route without a `match` block (or
 * with an empty one, or an empty `methods` list) matches everything in the
 * fields it leaves out.
 *
 * Built once per config; `match` is synchronous, keeps no per-request state
 * and may be called by any number of requests in flight. A new config means
 * a new Router.
 *
 * @example
 * const router = new Router(config.routes);
 * const m = router.match('GET', 'api.example.com:443', '/users/42');
 * if (!m) return new Response('not found', { status: 404 });
 * m.route.id; m.vars.id; // e.g. 'users', '42'
 */
export class Router {
  readonly routes: Route[];
  readonly #compiled: CompiledRoute[];
  readonly #anyDomain: boolean;

  /**
   * Compiles every route's patterns. Throws `BAD_CONFIG` listing every bad
   * pattern, each named by its field (`routes[3].match.domain: ...`).
   */
  constructor(routes: Route[]) {
    this.routes = routes;
    const problems: string[] = [];
    this.#compiled = routes.map((route, i) => {
      const at = `routes[${typeof route.index === 'number' ? route.index : i}].match`;
      const match: MatchSpec = route.match ?? {};
      const ci = match.case_insensitive === true;
      const compiled: CompiledRoute = { route, domain: null, path: null, ci, methods: null };
      if (match.domain !== undefined && !isBlank(match.domain)) {
        try {
          compiled.domain = compileDomainNormalized(match.domain, `${at}.domain`);
        } catch (err) {
          problems.push((err as Error).message);
        }
      }
      if (match.path !== undefined && !isBlank(match.path)) {
        try {
          compiled.path = compilePathField(match.path, `${at}.path`, ci);
        } catch (err) {
          problems.push((err as Error).message);
        }
      }
      if (match.methods !== undefined && match.methods.length > 0) {
        compiled.methods = match.methods.map((m) => m.toUpperCase());
      }
      return compiled;
    });
    if (problems.length === 1) throw new HookgateError('BAD_CONFIG', problems[0]);
    if (problems.length > 1) throw new HookgateError('BAD_CONFIG', `invalid route matches:\n  ${problems.join('\n  ')}`);
    this.#anyDomain = this.#compiled.some((c) => c.domain !== null);
  }

  /**
   * The first route matching the request, with what matched; null when no
   * route does (the gateway answers 404). `host` is the raw Host header;
   * `path` is the request's match path (`matchPathOf(normalizePath(raw))`).
   *
   * @example
   * router.match('post', 'Example.COM', '/v1/items') // methods are compared upper-case
   */
  match(method: string, host: string, path: string): RouteMatch | null {
    const h = this.#anyDomain ? hostOf(host) : host;
    let upper: string | null = null;
    let lower: string | null = null;
    for (const c of this.#compiled) {
      if (c.methods !== null) {
        upper ??= method.toUpperCase();
        if (!c.methods.includes(upper)) continue;
      }
      let md = '';
      let mg = '';
      if (c.domain !== null) {
        const d = c.domain(h);
        if (d === null) continue;
        md = d.md;
        mg = d.mg;
      }
      if (c.path === null) return { route: c.route, md, mg, mp: '', vars: {} };
      const p = c.ci ? c.path((lower ??= path.toLowerCase()), path) : c.path(path, path);
      if (p !== null) return { route: c.route, md, mg, mp: p.mp, vars: p.vars };
    }
    return null;
  }
}
