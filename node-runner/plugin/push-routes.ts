/**
 * @module plugin/push-routes
 * Where a plugin's pushes land: `set_targets` and `set_speed` addressed to
 * a route, an action's routes or every route ("*"), checked and applied to
 * the PushStore, and the wide pushes replayed for routes a later config
 * adds. What the pushes hold is `pushes.ts`'s business.
 */

import type { Route } from '../../src/core/config/config.ts';
import { silentLogger, type Logger } from '../../src/core/log.ts';
import type { PluginEntry, RouteEntry } from './entry.ts';
import { parseSetSpeed, parseSetTargets, type PushAddress, type PushStore, type TargetSet } from './pushes.ts';

/**
 * Routes the pushes of a manager's plugins to its routes. Holds only the
 * arrival order of wide pushes; the routes are read from the owner at each
 * call, so a new config applies at once.
 */
export class PushRoutes {
  #pushes: PushStore;
  #routes: () => Map<string, RouteEntry>;
  #seq = 0;

  constructor(pushes: PushStore, routes: () => Map<string, RouteEntry>) {
    this.#pushes = pushes;
    this.#routes = routes;
  }

  /**
   * Applies a plugin's `set_targets` or `set_speed` line to the routes it
   * addresses (`current` says whether `entry` is still the plugin's
   * record: a replaced plugin's old process may still push while it
   * stops). Logs and ignores a bad push; never throws.
   */
  push(entry: PluginEntry, current: boolean, log: Logger, method: 'set_targets' | 'set_speed', params: unknown): void {
    if (!current) return;
    try {
      if (method === 'set_targets') {
        const { to, set } = parseSetTargets(params);
        const routes = this.#address(to, true, log, method);
        this.#pushes.setTargets(routes, set);
        // A push to every route ("*") or to an action's routes also holds for
        // matching routes a later config adds (see replayWide).
        if (!('route_id' in to) || to.route_id === '*') {
          const key = JSON.stringify(to);
          entry.widePushes.delete(key);
          entry.widePushes.set(key, { to, set, seq: ++this.#seq });
        }
        log.info({ routes, targets: set.targets.length, groups: set.groups ? Object.keys(set.groups) : undefined }, 'set_targets applied');
      } else {
        const { to, set } = parseSetSpeed(params);
        const routes = this.#address(to, false, log, method);
        this.#pushes.setSpeed(routes, set);
        log.info({ routes, ...set }, 'set_speed applied');
      }
    } catch (err) {
      log.warn({ err: (err as Error).message }, `${method} ignored`);
    }
  }

  /**
   * Gives balanced routes that have no pushed targets yet what the wide
   * pushes already said, replayed in the order they arrived (the last one
   * that addresses a route wins, as it would have live).
   */
  replayWide(plugins: Iterable<PluginEntry>): void {
    const wide = [...plugins].flatMap((e) => [...e.widePushes.values()]).sort((a, b) => a.seq - b.seq);
    if (!wide.length) return;
    const fresh = new Set([...this.#routes().values()].filter((r) => r.route.balancer && !this.#pushes.targets(r.route.id)).map((r) => r.route.id));
    const chosen = new Map<string, TargetSet>();
    for (const { to, set } of wide) {
      for (const r of this.#address(to, true, silentLogger, 'set_targets')) if (fresh.has(r)) chosen.set(r, set);
    }
    for (const [r, set] of chosen) this.#pushes.setTargets([r], set);
  }

  #address(to: PushAddress, needsBalancer: boolean, log: Logger, method: string): string[] {
    const all = [...this.#routes().values()].map((r) => r.route);
    const eligible = (r: Route) => !needsBalancer || r.balancer !== undefined;
    if ('action' in to) {
      const hits = all.filter((r) => r.actionName === to.action && eligible(r)).map((r) => r.id);
      if (!hits.length) log.warn({ action: to.action }, `${method}: no route${needsBalancer ? ' with a balancer' : ''} uses this action`);
      return hits;
    }
    if (to.route_id === '*') return all.filter(eligible).map((r) => r.id);
    const r = this.#routes().get(to.route_id)?.route;
    if (!r) {
      log.warn({ route_id: to.route_id }, `${method}: no such route`);
      return [];
    }
    if (!eligible(r)) {
      log.warn({ route_id: to.route_id }, `${method}: the route has no balancer`);
      return [];
    }
    return [r.id];
  }
}
