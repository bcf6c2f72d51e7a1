/**
 * @module plugin/pushes
 * The state plugins push: balancer targets (`set_targets`) and speed limits
 * (`set_speed`), per route. Parsing and validating a push's params, and
 * storing the result atomically with a version and change listeners.
 * Which routes a push addresses is the manager's call (it knows the routes).
 */

import type { TargetSet } from '../../src/core/routing/balancer.ts';
import { isTarget } from '../../src/core/config/config.ts';
import type { SpeedSet } from '../../src/core/state/state.ts';
import { HookgateError } from '../../src/core/errors.ts';

export { isTarget };
export type { SpeedSet, TargetSet };

/** Who a push is for: one route, every route with a balancer ("*"), or every route using an action. */
export type PushAddress = { route_id: string } | { action: string };

export interface Change {
  kind: 'targets' | 'speed';
  routes: string[];
  version: number;
}

const MAX_TARGETS = 10_000;

function address(params: Record<string, unknown>, method: string): PushAddress {
  if (typeof params.route_id === 'string' && params.route_id !== '') return { route_id: params.route_id };
  if (typeof params.action === 'string' && params.action !== '') return { action: params.action };
  throw new HookgateError('BAD_PAYLOAD', `${method}: expected "route_id" or "action"`);
}

function targetList(v: unknown, where: string): string[] {
  if (!Array.isArray(v)) throw new HookgateError('BAD_PAYLOAD', `set_targets: ${where}: expected an array of "host:port"`);
  if (v.length > MAX_TARGETS) throw new HookgateError('BAD_PAYLOAD', `set_targets: ${where}: more than ${MAX_TARGETS} targets`);
  v.forEach((t, i) => {
    if (!isTarget(t)) throw new HookgateError('BAD_PAYLOAD', `set_targets: ${where}[${i}]: ${JSON.stringify(t)} is not "host:port"`);
  });
  return v as string[];
}

/**
 * Parses `set_targets` params. Throws `BAD_PAYLOAD` naming the problem:
 * no address, both or neither of `targets` and `groups`, a bad target.
 *
 * @example
 * parseSetTargets({ route_id: '*', targets: ['10.0.0.1:3000'] })
 */
export function parseSetTargets(params: unknown): { to: PushAddress; set: TargetSet } {
  const p = (params ?? {}) as Record<string, unknown>;
  const to = address(p, 'set_targets');
  const hasTargets = p.targets !== undefined && p.targets !== null;
  const hasGroups = p.groups !== undefined && p.groups !== null;
  if (hasTargets === hasGroups) throw new HookgateError('BAD_PAYLOAD', 'set_targets: expected exactly one of "targets" or "groups"');
  if (hasTargets) return { to, set: { targets: targetList(p.targets, 'targets'), groups: null } };
  if (typeof p.groups !== 'object' || Array.isArray(p.groups)) {
    throw new HookgateError('BAD_PAYLOAD', 'set_targets: groups: expected a map of group key to targets');
  }
  const groups: Record<string, string[]> = {};
  const all: string[] = [];
  for (const [k, list] of Object.entries(p.groups as Record<string, unknown>)) {
    groups[k] = targetList(list, `groups[${JSON.stringify(k)}]`);
    all.push(...groups[k]);
  }
  return { to, set: { targets: [...new Set(all)], groups } };
}

/** Parses `set_speed` params. Throws `BAD_PAYLOAD` naming the problem. */
export function parseSetSpeed(params: unknown): { to: PushAddress; set: SpeedSet } {
  const p = (params ?? {}) as Record<string, unknown>;
  const to = address(p, 'set_speed');
  const num = (k: string): number => {
    const x = p[k] ?? 0;
    if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw new HookgateError('BAD_PAYLOAD', `set_speed: ${k}: expected a number >= 0`);
    return x;
  };
  const gk = p.group_key ?? '';
  if (typeof gk !== 'string') throw new HookgateError('BAD_PAYLOAD', 'set_speed: group_key: expected a string');
  return { to, set: { download_mbps: num('download_mbps'), upload_mbps: num('upload_mbps'), group_key: gk } };
}

/**
 * Per-route pushed targets and speed limits, with a version that grows on
 * every change. Each `set*` call replaces the entries of all its routes at
 * once and notifies listeners once. Reads are plain map lookups.
 */
export class PushStore {
  #targets = new Map<string, TargetSet>();
  #speed = new Map<string, SpeedSet>();
  #listeners = new Set<(c: Change) => void>();
  #version = 0;

  get version(): number {
    return this.#version;
  }

  /** The targets pushed for a route, or undefined when none were. */
  targets(routeId: string): TargetSet | undefined {
    return this.#targets.get(routeId);
  }

  /** The speed limit pushed for a route, or undefined. */
  speed(routeId: string): SpeedSet | undefined {
    return this.#speed.get(routeId);
  }

  /** Replaces the targets of `routes` with `set`, atomically. */
  setTargets(routes: string[], set: TargetSet): void {
    if (routes.length === 0) return;
    for (const r of routes) this.#targets.set(r, set);
    this.#emit('targets', routes);
  }

  /** Replaces the speed limit of `routes` with `set`, atomically. */
  setSpeed(routes: string[], set: SpeedSet): void {
    if (routes.length === 0) return;
    for (const r of routes) this.#speed.set(r, set);
    this.#emit('speed', routes);
  }

  /** Drops everything pushed for routes not in `keep` (after a config change). */
  retain(keep: Set<string>): void {
    const gone = [...this.#targets.keys()].filter((r) => !keep.has(r));
    const goneSpeed = [...this.#speed.keys()].filter((r) => !keep.has(r));
    for (const r of gone) this.#targets.delete(r);
    for (const r of goneSpeed) this.#speed.delete(r);
    if (gone.length) this.#emit('targets', gone);
    if (goneSpeed.length) this.#emit('speed', goneSpeed);
  }

  /**
   * Calls `fn` after every change; returns a function that unsubscribes.
   * A listener that throws is not called again for that change and does not
   * stop the others.
   */
  subscribe(fn: (c: Change) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #emit(kind: Change['kind'], routes: string[]): void {
    const change = { kind, routes, version: ++this.#version };
    for (const fn of this.#listeners) {
      try {
        fn(change);
      } catch {
        // A listener's failure is its own business.
      }
    }
  }
}
