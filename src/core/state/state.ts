/**
 * @module state
 * The routing state a data plane serves from: the validated config
 * compiled once (router, resolved actions, templates, group keys) plus the
 * live balancers whose targets plugins push, and pushed speed limits.
 * A new config gives a new GatewayState; pushes mutate the current one.
 *
 * Where the state comes from (a config file and the plugin host on the
 * runner, `GET /v1/state` on the edge) is the data plane's business.
 */

import type { Action, Config, Route } from '../config/config.ts';
import type { UpstreamLimits } from '../gateway/pipeline.ts';
import { Balancer, type TargetSet } from '../routing/balancer.ts';
import { canonicalHeaderName, stripPolicy, type StripPolicy } from '../protocol/headers.ts';
import type { HeaderMap } from '../protocol/protocol.ts';
import { Router } from '../routing/routing.ts';
import { compileTemplate, templateNames, type Template } from '../routing/template.ts';

/** A pushed speed limit, in Mbps; the same group key shares one budget. */
export interface SpeedSet {
  download_mbps: number;
  upload_mbps: number;
  group_key: string;
}

/** Where the pushed state lives (the runner's PushStore implements it). */
export interface PushedState {
  targets(routeId: string): TargetSet | undefined;
  speed(routeId: string): SpeedSet | undefined;
}

/** An action compiled for serving. */
export interface ActionPlan {
  action: Action;
  /** proxy: the upstream template; redirect: the `to` template */
  template: Template | null;
  /** proxy: whether the template places `{path}` itself (else path and query are appended) */
  placesPath: boolean;
  /** whether the template places `{query}` itself (else the query is appended) */
  placesQuery: boolean;
  timeoutMs: number;
  /** proxy: its connection limits per upstream */
  limits: UpstreamLimits | null;
}

/** Everything the gateway needs about one route, computed once per config. */
export interface RoutePlan {
  route: Route;
  action: ActionPlan;
  fallback: ActionPlan | null;
  balancer: Balancer | null;
  /** where a grouped balancer's key comes from */
  groupBy: { from: 'header' | 'var'; name: string } | null;
  /** `balancer.unknown_group`: what a key that names no group gets */
  unknownGroup: 'deny' | 'all';
  /** which client request headers are removed before plugins and the upstream see the request */
  strip: StripPolicy;
  /** `match.allow_encoded_slash` */
  allowEncodedSlash: boolean;
}

/**
 * The group key of a request for a route's `group_by`: a route variable, or
 * a header. For a header, the on_request verdict's value wins (a plugin that
 * sets `X-Tenant` decides the pool, whatever the client sent); the client's
 * header counts only when no plugin set one. Routes whose key is an identity
 * strip the client's header (`strip_request_headers`), so only plugins set
 * it. `undefined` when there is no key.
 *
 * @example
 * groupKeyOf({ from: 'header', name: 'X-Tenant' }, { 'X-Tenant': 'a' }, 'b', {}) // 'a'
 */
export function groupKeyOf(
  groupBy: RoutePlan['groupBy'],
  verdictHeaders: HeaderMap | null,
  clientValue: string | null,
  vars: Record<string, string>,
): string | undefined {
  if (!groupBy) return undefined;
  if (groupBy.from === 'var') return Object.hasOwn(vars, groupBy.name) ? vars[groupBy.name] : undefined;
  if (verdictHeaders) {
    const canonical = verdictHeaders[canonicalHeaderName(groupBy.name)];
    if (canonical !== undefined) return canonical;
    const lower = groupBy.name.toLowerCase();
    for (const k in verdictHeaders) if (k.toLowerCase() === lower) return verdictHeaders[k];
  }
  return clientValue ?? undefined;
}

/** `key` names who shares the action's connection limits: its name, or `routes/<id>` for an inline one. */
function planAction(action: Action, key: string): ActionPlan {
  if (action.type === 'proxy') {
    const names = templateNames(action.upstream);
    return {
      action,
      template: compileTemplate(action.upstream),
      placesPath: names.includes('path'),
      placesQuery: names.includes('query'),
      timeoutMs: action.timeout,
      limits: { key, maxConnections: action.max_connections, queueTimeoutMs: action.queue_timeout },
    };
  }
  if (action.type === 'redirect') {
    return { action, template: compileTemplate(action.to), placesPath: true, placesQuery: templateNames(action.to).includes('query'), timeoutMs: 0, limits: null };
  }
  return { action, template: null, placesPath: false, placesQuery: false, timeoutMs: 0, limits: null };
}

/**
 * Compiled routing state.
 *
 * Contract: construction validates nothing new (the config was validated
 * by `parseConfig`) but compiles patterns, which throws `BAD_CONFIG` for a
 * bad one. Reads are safe at any time; `setTargets` replaces a balancer's
 * targets atomically.
 *
 * @example
 * const state = new GatewayState(config, manager.pushes);
 * const m = state.router.match('GET', 'api.example.com', '/v1/users');
 * const plan = m && state.plan(m.route.id);
 */
export class GatewayState {
  readonly config: Config;
  readonly router: Router;
  #plans = new Map<string, RoutePlan>();
  #speed = new Map<string, SpeedSet>();

  constructor(config: Config, pushed?: PushedState) {
    this.config = config;
    this.router = new Router(config.routes);
    const plans = new Map<string, ActionPlan>();
    const named = (name: string) => {
      let p = plans.get(name);
      if (!p) plans.set(name, (p = planAction(config.actions[name], name)));
      return p;
    };
    for (const route of config.routes) {
      const action = typeof route.action === 'string' ? named(route.action) : planAction(route.action, `routes/${route.id}`);
      const fb = action.action.type === 'proxy' && action.action.fallback ? named(action.action.fallback) : null;
      let balancer: Balancer | null = null;
      if (route.balancer) {
        const initial = pushed?.targets(route.id) ?? { targets: route.balancer.targets, groups: null };
        balancer = new Balancer(route.balancer.type, initial);
      }
      const g = route.balancer?.group_by;
      const groupBy = g ? { from: g.startsWith('header:') ? ('header' as const) : ('var' as const), name: g.slice(g.indexOf(':') + 1) } : null;
      const strip = stripPolicy(config.gateway.strip_request_headers, route.strip_request_headers ?? [], config.gateway.underscores_in_headers);
      this.#plans.set(route.id, {
        route,
        action,
        fallback: fb,
        balancer,
        groupBy,
        unknownGroup: route.balancer?.unknown_group ?? 'deny',
        strip,
        allowEncodedSlash: route.match.allow_encoded_slash === true,
      });
      const sp = pushed?.speed(route.id);
      if (sp) this.#speed.set(route.id, sp);
    }
  }

  /** The plan of a route, or undefined for an unknown id. */
  plan(routeId: string): RoutePlan | undefined {
    return this.#plans.get(routeId);
  }

  /** Replaces the targets of a route's balancer (ignored for routes without one). */
  setTargets(routeId: string, set: TargetSet): void {
    this.#plans.get(routeId)?.balancer?.set(set);
  }

  /** The pushed speed limit of a route, if any. */
  speed(routeId: string): SpeedSet | undefined {
    return this.#speed.get(routeId);
  }

  /** Sets (or with undefined clears) a route's pushed speed limit. */
  setSpeed(routeId: string, set: SpeedSet | undefined): void {
    if (set) this.#speed.set(routeId, set);
    else this.#speed.delete(routeId);
  }
}
