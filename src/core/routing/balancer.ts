/**
 * @module balancer
 * A route's balancer: picks one upstream target per request from a target
 * set that plugins may replace at any time (`set_targets`, docs/protocol.md §1.3),
 * and counts the requests in flight on each target.
 *
 * Algorithms: `roundrobin` cycles through the targets in order; `random`
 * draws from the injected `random()`; `leastconn` picks the target with the
 * fewest picks in flight, breaking ties round-robin so that equal loads still
 * spread.
 *
 * Groups: a grouped set has one sub-pool per key. `pick(key)` with a key that
 * names a group picks only within that group, with the same algorithm and a
 * cursor of its own; a group that is named but empty yields no target (the
 * gateway answers 503) rather than leaking requests into other groups, since
 * groups often stand for regions or tenants. A missing key, or one that names
 * no group, picks from all targets (the union of the groups) when `pick` is
 * told `unknownGroup: 'all'` (its default), and yields no target with
 * `'deny'` (the default of a route's `group_by`: a tenant's request must not
 * land in any other tenant's pool).
 *
 * In-flight counts are per target, shared by every pool holding it. Where the
 * key comes from (`group_by`) and what to answer without a target are the
 * gateway's business.
 */

import { HookgateError } from '../errors.ts';

/**
 * A balancer's targets: flat (`groups: null`), or grouped into sub-pools by
 * key, in which case `targets` is the union of the groups.
 *
 * @example
 * const flat: TargetSet = { targets: ['10.0.0.1:3000', '10.0.0.2:3000'], groups: null };
 * const grouped: TargetSet = { targets: ['eu1:80', 'us1:80'], groups: { eu: ['eu1:80'], us: ['us1:80'] } };
 */
export interface TargetSet {
  targets: string[];
  groups: Record<string, string[]> | null;
}

/**
 * How a balancer picks.
 *
 * @example
 * const type: BalancerType = route.balancer?.type ?? 'roundrobin';
 */
export type BalancerType = 'roundrobin' | 'random' | 'leastconn';

/**
 * One picked target. `release()` must be called once when the request using
 * the target ends (however it ends); further calls do nothing.
 *
 * @example
 * const pick = balancer.pick();
 * try { await fetch(`http://${pick.target}/`); } finally { pick.release(); }
 */
export interface Pick {
  target: string;
  release(): void;
}

/** A target's in-flight count; pools hold slots so that picks never look targets up by name. */
interface Slot {
  target: string;
  inFlight: number;
}

interface Pool {
  slots: Slot[];
  /** index of the next target to try */
  cursor: number;
}

class PickImpl implements Pick {
  readonly target: string;
  #slot: Slot | null;
  constructor(slot: Slot) {
    this.target = slot.target;
    this.#slot = slot;
    slot.inFlight++;
  }
  release(): void {
    const slot = this.#slot;
    if (slot === null) return;
    this.#slot = null;
    slot.inFlight--;
  }
}

const TYPES: readonly string[] = ['roundrobin', 'random', 'leastconn'];

function unionOf(groups: Record<string, string[]>): string[] {
  const seen = new Set<string>();
  for (const key of Object.keys(groups)) for (const t of groups[key]) seen.add(t);
  return [...seen];
}

/**
 * Picks upstream targets for one route.
 *
 * JavaScript runs `pick`, `release` and `set` one at a time, so they are safe
 * to call from any number of requests in flight; none of them throws after
 * construction. `set` is atomic: a pick sees the old set or the new one,
 * never a mix.
 *
 * @example
 * const b = new Balancer('leastconn', { targets: ['a:80', 'b:80'], groups: null });
 * const pick = b.pick();
 * if (!pick) return new Response('no upstream target available', { status: 503 });
 * try { return await fetch(`http://${pick.target}${path}`); } finally { pick.release(); }
 */
export class Balancer {
  readonly #type: BalancerType;
  readonly #random: () => number;
  #set: TargetSet;
  #all: Pool;
  #groups: Map<string, Pool> | null;
  /** one slot per distinct target of the current set */
  #slots: Map<string, Slot>;

  /**
   * Throws `BAD_CONFIG` for an unknown type. `opts.random` (default
   * `Math.random`) lets tests drive the `random` algorithm.
   */
  constructor(type: BalancerType, initial: TargetSet, opts?: { random?: () => number }) {
    if (!TYPES.includes(type)) {
      throw new HookgateError('BAD_CONFIG', `unknown balancer type ${JSON.stringify(type)}: expected "roundrobin", "random" or "leastconn"`);
    }
    this.#type = type;
    this.#random = opts?.random ?? Math.random;
    this.#set = { targets: [], groups: null };
    this.#all = { slots: [], cursor: 0 };
    this.#groups = null;
    this.#slots = new Map();
    this.set(initial);
  }

  /**
   * Replaces the targets (a push replaces, never patches). Targets that
   * remain keep their in-flight counts; picks of removed targets may still be
   * released, which does nothing. Each pool keeps its round-robin position
   * (modulo its new size), so that frequent pushes of the same list do not
   * send every first request to the first target. For a grouped set,
   * `targets` is taken to be the union of the groups whatever the caller
   * passed. The balancer keeps its own copies of the arrays.
   *
   * @example
   * balancer.set({ targets: [], groups: { eu: ['eu1:80'], us: ['us1:80', 'us2:80'] } });
   */
  set(targets: TargetSet): void {
    const old = this.#slots;
    const slots = new Map<string, Slot>();
    const slotOf = (t: string): Slot => {
      let s = slots.get(t);
      if (s === undefined) {
        s = old.get(t) ?? { target: t, inFlight: 0 };
        slots.set(t, s);
      }
      return s;
    };
    const poolOf = (list: string[], prev: Pool | undefined): Pool => {
      const pool: Pool = { slots: list.map(slotOf), cursor: 0 };
      if (prev !== undefined && pool.slots.length > 0) pool.cursor = prev.cursor % pool.slots.length;
      return pool;
    };

    let groups: Record<string, string[]> | null = null;
    let groupPools: Map<string, Pool> | null = null;
    let all: string[];
    if (targets.groups) {
      groups = {};
      groupPools = new Map();
      for (const key of Object.keys(targets.groups)) {
        const list = [...targets.groups[key]];
        groups[key] = list;
        groupPools.set(key, poolOf(list, this.#groups?.get(key)));
      }
      all = unionOf(groups);
    } else {
      all = [...targets.targets];
    }
    const allPool = poolOf(all, this.#all);

    this.#set = { targets: all, groups };
    this.#all = allPool;
    this.#groups = groupPools;
    this.#slots = slots;
  }

  /**
   * The current set, as normalized by `set`. Do not mutate it.
   *
   * @example
   * balancer.targets.targets // ['a:80', 'b:80']
   */
  get targets(): TargetSet {
    return this.#set;
  }

  /**
   * Number of targets in the union (entries of `targets.targets`).
   *
   * @example
   * if (balancer.size === 0) log.warn('route has no targets yet');
   */
  get size(): number {
    return this.#all.slots.length;
  }

  /**
   * Picks a target, within the group `groupKey` names if it names one (see
   * the module header); else from all targets, or none with
   * `unknownGroup: 'deny'` while the set is grouped. Null when there is no
   * target to pick. The caller owns the returned Pick and must release it.
   *
   * @example
   * const pick = balancer.pick(request.headers.get('X-Region') ?? undefined, 'deny');
   */
  pick(groupKey?: string, unknownGroup: 'deny' | 'all' = 'all'): Pick | null {
    let pool = this.#all;
    if (this.#groups !== null) {
      const group = groupKey === undefined ? undefined : this.#groups.get(groupKey);
      if (group) pool = group;
      else if (unknownGroup === 'deny') return null;
    }
    const slots = pool.slots;
    const n = slots.length;
    if (n === 0) return null;
    let i: number;
    if (this.#type === 'random') {
      i = Math.floor(this.#random() * n);
      // Guards against a random() that returns 1 or garbage.
      if (!(i >= 0 && i < n)) i = i >= n ? n - 1 : 0;
    } else if (this.#type === 'roundrobin') {
      i = pool.cursor;
      pool.cursor = i + 1 === n ? 0 : i + 1;
    } else {
      // Scanning from the cursor makes the round-robin order break ties.
      i = pool.cursor;
      let least = slots[i].inFlight;
      for (let k = 1; k < n && least > 0; k++) {
        const j = (pool.cursor + k) % n;
        if (slots[j].inFlight < least) {
          i = j;
          least = slots[j].inFlight;
        }
      }
      pool.cursor = i + 1 === n ? 0 : i + 1;
    }
    return new PickImpl(slots[i]);
  }

  /**
   * Requests in flight on `target` (picked and not yet released); 0 for a
   * target not in the current set.
   *
   * @example
   * balancer.inFlight('10.0.0.1:3000') // 2
   */
  inFlight(target: string): number {
    return this.#slots.get(target)?.inFlight ?? 0;
  }
}
