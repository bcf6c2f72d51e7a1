/**
 * @module state/routing-snapshot
 * The versioned routing snapshot a runner serves at `GET /v1/state` and an
 * edge worker routes by: the routes and actions (in config form, so the
 * edge validates them with the same schema), which hooks each route's
 * plugins declared, which routes want the request body, how the edge may
 * cache each route's merged on_request verdict, and the balancer targets
 * and speed limits plugins pushed.
 *
 * Building it from the runner's live state, and versioning it, is the
 * runner's business; turning it back into a GatewayState is done here, so
 * both sides agree on its meaning.
 */

import type { TargetSet } from '../routing/balancer.ts';
import { parseConfig, type CacheSettings, type Config } from '../config/config.ts';
import { HookgateError } from '../errors.ts';
import { HOOK_BIT, type HookName } from '../protocol/protocol.ts';
import { GatewayState, type SpeedSet } from './state.ts';

export interface StateSnapshot {
  /** changes whenever anything below changes */
  version: string;
  /**
   * routes and actions as config input (plugins stripped: the edge runs
   * none), and the gateway's request-header policy, which the edge applies
   * too (no listener: the edge has none)
   */
  config: { routes: unknown[]; actions: Record<string, unknown>; gateway?: Record<string, unknown> };
  /** per route id: the hooks its plugins declared (absent = none) */
  hooks: Record<string, HookName[]>;
  /** route ids with a binding that wants the request body */
  body: string[];
  /**
   * per route id whose merged on_request verdict the edge may cache: the
   * merged settings (every binding caches; shortest TTLs; union of keys)
   * and a generation that changes when cached verdicts may have become
   * wrong. Absent for routes the edge must always ask.
   */
  cache?: Record<string, RouteCacheSettings>;
  targets: Record<string, TargetSet>;
  speed: Record<string, SpeedSet>;
}

/** A route's verdict cache as the edge keeps it. */
export interface RouteCacheSettings extends CacheSettings {
  generation: string;
}

/** What an edge needs of a snapshot: a state to route by, and the hook index. */
export interface EdgeState {
  version: string;
  state: GatewayState;
  /** HOOK_BIT mask per route id */
  masks: Map<string, number>;
  body: Set<string>;
  /** per route id: how its merged verdicts may be cached (absent: never) */
  cache: Map<string, RouteCacheSettings>;
}

/**
 * Builds the config part of a snapshot from a validated config: route
 * objects in input form, explicit ids, no plugin bindings.
 *
 * @example
 * const part = snapshotConfig(config);
 */
export function snapshotConfig(config: Config): StateSnapshot['config'] {
  const routes = config.routes.map((r) => {
    const { index: _i, actionName: _a, plugins: _p, ...rest } = r;
    return rest;
  });
  const { strip_request_headers, underscores_in_headers } = config.gateway;
  return { routes, actions: config.actions, gateway: { strip_request_headers, underscores_in_headers } };
}

/** HOOK_BIT mask → hook names. */
export function hookNames(mask: number): HookName[] {
  return (Object.keys(HOOK_BIT) as HookName[]).filter((h) => mask & HOOK_BIT[h]);
}

/**
 * Turns a snapshot (as received, untrusted JSON) into an EdgeState.
 * Throws `BAD_CONFIG` / `BAD_PAYLOAD` when it does not hold together.
 *
 * @example
 * const edge = edgeStateOf(await (await fetch(`${runner}/v1/state`, { headers })).json());
 */
export function edgeStateOf(snapshot: unknown): EdgeState {
  const s = snapshot as Partial<StateSnapshot> | null;
  if (!s || typeof s !== 'object' || typeof s.version !== 'string' || !s.config) {
    throw new HookgateError('BAD_PAYLOAD', 'state snapshot: expected an object with version and config');
  }
  const config = parseConfig({ routes: s.config.routes ?? [], actions: s.config.actions ?? {}, gateway: s.config.gateway ?? {} });
  const targets = s.targets ?? {};
  const speed = s.speed ?? {};
  const state = new GatewayState(config, { targets: (id) => targets[id], speed: (id) => speed[id] });
  const masks = new Map<string, number>();
  for (const [id, names] of Object.entries(s.hooks ?? {})) {
    let m = 0;
    for (const n of names) m |= HOOK_BIT[n] ?? 0;
    masks.set(id, m);
  }
  return { version: s.version, state, masks, body: new Set(s.body ?? []), cache: cacheOf(s.cache) };
}

const ms = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0;

/**
 * The snapshot's cache settings, checked: a route whose entry does not
 * hold together is left out (asked every time, never cached), so a bad
 * entry costs speed, not safety.
 */
function cacheOf(raw: unknown): Map<string, RouteCacheSettings> {
  const out = new Map<string, RouteCacheSettings>();
  if (!raw || typeof raw !== 'object') return out;
  for (const [id, c] of Object.entries(raw as Record<string, Partial<RouteCacheSettings>>)) {
    if (!c || typeof c !== 'object') continue;
    const key = c.key === null ? null : Array.isArray(c.key) && c.key.every((k) => typeof k === 'string') ? [...c.key] : undefined;
    if (key === undefined || !ms(c.ttl) || !ms(c.negative_ttl) || !ms(c.stale_if_error) || !ms(c.max_entries) || c.max_entries < 1 || typeof c.generation !== 'string') continue;
    out.set(id, { ttl: c.ttl, negative_ttl: c.negative_ttl, stale_if_error: c.stale_if_error, key, max_entries: Math.floor(c.max_entries), generation: c.generation });
  }
  return out;
}
