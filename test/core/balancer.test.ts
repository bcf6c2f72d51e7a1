/**
 * Balancers: how each algorithm picks, in-flight counting, groups, and
 * replacing the targets while requests are in flight.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Balancer, type Pick, type TargetSet } from '../../src/core/routing/balancer.ts';
import { isHookgateError } from '../../src/core/errors.ts';

function flat(...targets: string[]): TargetSet {
  return { targets, groups: null };
}

/** Picks `n` times without releasing and returns the targets picked. */
function pickMany(b: Balancer, n: number, key?: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(b.pick(key)!.target);
  return out;
}

/** A random() that replays `values` in a loop. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length];
}

describe('roundrobin', () => {
  test('cycles through the targets in order and wraps around', () => {
    const b = new Balancer('roundrobin', flat('a', 'b', 'c'));
    assert.deepEqual(pickMany(b, 7), ['a', 'b', 'c', 'a', 'b', 'c', 'a']);
  });

  test('a single target is always picked', () => {
    const b = new Balancer('roundrobin', flat('only'));
    assert.deepEqual(pickMany(b, 3), ['only', 'only', 'only']);
  });

  test('pushing the same list again continues the cycle instead of restarting it', () => {
    const b = new Balancer('roundrobin', flat('a', 'b', 'c'));
    pickMany(b, 2);
    b.set(flat('a', 'b', 'c'));
    assert.deepEqual(pickMany(b, 2), ['c', 'a']);
  });
});

describe('random', () => {
  test('picks the target the injected random() points at', () => {
    const b = new Balancer('random', flat('a', 'b', 'c', 'd'), { random: sequence(0, 0.99, 0.5, 0.26) });
    assert.deepEqual(pickMany(b, 4), ['a', 'd', 'c', 'b']);
  });

  test('a random() that returns 1 or garbage still picks a target', () => {
    const b = new Balancer('random', flat('a', 'b'), { random: sequence(1, Number.NaN, -0.5) });
    assert.deepEqual(pickMany(b, 3), ['b', 'a', 'a']);
  });
});

describe('leastconn', () => {
  test('prefers the target with the fewest picks in flight', () => {
    const b = new Balancer('leastconn', flat('a', 'b', 'c'));
    const held = [b.pick()!, b.pick()!, b.pick()!];
    assert.deepEqual(held.map((p) => p.target), ['a', 'b', 'c']);
    held[1].release();
    assert.equal(b.pick()!.target, 'b');
    held[0].release();
    held[2].release();
    // a and c are idle now, b still has one in flight.
    assert.deepEqual(pickMany(b, 2).sort(), ['a', 'c']);
  });

  test('spreads equal loads round-robin', () => {
    const b = new Balancer('leastconn', flat('a', 'b', 'c'));
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      const p = b.pick()!;
      seen.push(p.target);
      p.release();
    }
    assert.deepEqual(seen, ['a', 'b', 'c', 'a', 'b', 'c']);
  });

  test('keeps in-flight counts level under sustained load', () => {
    const b = new Balancer('leastconn', flat('a', 'b', 'c'));
    const held: Pick[] = [];
    for (let i = 0; i < 30; i++) held.push(b.pick()!);
    for (const p of held.filter((p) => p.target === 'a')) p.release();
    assert.deepEqual([b.inFlight('a'), b.inFlight('b'), b.inFlight('c')], [0, 10, 10]);
    pickMany(b, 10);
    assert.deepEqual([b.inFlight('a'), b.inFlight('b'), b.inFlight('c')], [10, 10, 10]);
  });
});

describe('in-flight counting', () => {
  test('counts picks until they are released, for every algorithm', () => {
    for (const type of ['roundrobin', 'random', 'leastconn'] as const) {
      const b = new Balancer(type, flat('a'));
      const p1 = b.pick()!;
      const p2 = b.pick()!;
      assert.equal(b.inFlight('a'), 2, type);
      p1.release();
      p2.release();
      assert.equal(b.inFlight('a'), 0, type);
    }
  });

  test('releasing a pick twice does not decrement twice', () => {
    const b = new Balancer('leastconn', flat('a'));
    const p1 = b.pick()!;
    b.pick();
    p1.release();
    p1.release();
    assert.equal(b.inFlight('a'), 1);
  });

  test('an unknown target has nothing in flight', () => {
    assert.equal(new Balancer('roundrobin', flat('a')).inFlight('zzz'), 0);
  });
});

describe('groups', () => {
  const grouped: TargetSet = { targets: ['eu1', 'eu2', 'us1'], groups: { eu: ['eu1', 'eu2'], us: ['us1'] } };

  test('a key naming a group picks only within that group, with its own cycle', () => {
    const b = new Balancer('roundrobin', grouped);
    assert.deepEqual(pickMany(b, 3, 'eu'), ['eu1', 'eu2', 'eu1']);
    assert.deepEqual(pickMany(b, 2, 'us'), ['us1', 'us1']);
  });

  test('a missing key, or one naming no group, picks from the union', () => {
    const b = new Balancer('roundrobin', grouped);
    assert.deepEqual(pickMany(b, 3), ['eu1', 'eu2', 'us1']);
    assert.deepEqual(pickMany(b, 3, 'asia'), ['eu1', 'eu2', 'us1']);
  });

  test('leastconn within a group sees load from picks made through the union', () => {
    const b = new Balancer('leastconn', grouped);
    assert.equal(b.pick()!.target, 'eu1');
    assert.equal(b.pick('eu')!.target, 'eu2');
  });

  test('a group that is named but empty yields no target rather than another group\'s', () => {
    const b = new Balancer('roundrobin', { targets: [], groups: { eu: ['eu1'], us: [] } });
    assert.equal(b.pick('us'), null);
    assert.equal(b.pick()!.target, 'eu1');
  });

  test('the union of a grouped set is computed from its groups, without duplicates', () => {
    const b = new Balancer('roundrobin', { targets: [], groups: { a: ['x', 'y'], b: ['y', 'z'] } });
    assert.deepEqual(b.targets, { targets: ['x', 'y', 'z'], groups: { a: ['x', 'y'], b: ['y', 'z'] } });
    assert.equal(b.size, 3);
  });

  test('a group key is ignored by a flat set', () => {
    const b = new Balancer('roundrobin', flat('a', 'b'));
    assert.deepEqual(pickMany(b, 2, 'eu'), ['a', 'b']);
  });
});

describe('replacing the targets', () => {
  test('set replaces the targets and size follows', () => {
    const b = new Balancer('roundrobin', flat('a', 'b'));
    b.set(flat('c'));
    assert.deepEqual(b.targets, flat('c'));
    assert.equal(b.size, 1);
    assert.deepEqual(pickMany(b, 2), ['c', 'c']);
  });

  test('in-flight counts of targets that remain are kept', () => {
    const b = new Balancer('leastconn', flat('a', 'b'));
    const pa = b.pick()!;
    b.pick();
    b.pick();
    assert.deepEqual([pa.target, b.inFlight('a'), b.inFlight('b')], ['a', 2, 1]);
    b.set(flat('b', 'a', 'c'));
    assert.deepEqual([b.inFlight('a'), b.inFlight('b'), b.inFlight('c')], [2, 1, 0]);
    assert.equal(b.pick()!.target, 'c');
    pa.release();
    assert.equal(b.inFlight('a'), 1);
  });

  test('releasing a pick of a removed target is harmless, also after the target comes back', () => {
    const b = new Balancer('leastconn', flat('a', 'b'));
    const pa = b.pick()!;
    b.set(flat('b'));
    pa.release();
    assert.equal(b.inFlight('a'), 0);
    b.set(flat('a', 'b'));
    const again = b.pick()!;
    assert.equal(again.target, 'a');
    pa.release();
    assert.equal(b.inFlight('a'), 1);
  });

  test('the balancer keeps its own copy of the arrays it is given', () => {
    const list = ['a', 'b'];
    const b = new Balancer('roundrobin', flat(...list));
    const groups = { eu: ['x'] };
    b.set({ targets: [], groups });
    groups.eu.push('y');
    assert.deepEqual(pickMany(b, 2, 'eu'), ['x', 'x']);
  });

  test('a grouped set can replace a flat one and back', () => {
    const b = new Balancer('roundrobin', flat('a'));
    b.set({ targets: [], groups: { eu: ['x'] } });
    assert.equal(b.pick('eu')!.target, 'x');
    b.set(flat('a'));
    assert.equal(b.pick('eu')!.target, 'a');
  });
});

describe('no targets', () => {
  test('pick returns null for every algorithm', () => {
    for (const type of ['roundrobin', 'random', 'leastconn'] as const) {
      const b = new Balancer(type, flat());
      assert.equal(b.pick(), null, type);
      assert.equal(b.size, 0);
    }
  });

  test('pick returns null once every target has been removed', () => {
    const b = new Balancer('roundrobin', flat('a'));
    b.set(flat());
    assert.equal(b.pick(), null);
  });
});

test('an unknown balancer type is refused with BAD_CONFIG', () => {
  assert.throws(
    () => new Balancer('fastest' as 'random', flat('a')),
    (err: unknown) => isHookgateError(err, 'BAD_CONFIG') && /unknown balancer type "fastest"/.test(err.message),
  );
});
