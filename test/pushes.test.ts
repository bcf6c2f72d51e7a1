/**
 * What plugins push (docs/protocol.md §1.3 `set_targets`, `set_speed`): parsing
 * and validating the params, and the per-route store with its versions.
 */

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PushStore, isTarget, parseSetSpeed, parseSetTargets, type Change } from '../node-runner/plugin/pushes.ts';
import { HookgateError } from '../src/core/errors.ts';

function badPayload(message: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof HookgateError, `expected a HookgateError, got ${String(err)}`);
    assert.equal(err.code, 'BAD_PAYLOAD');
    assert.match(err.message, message);
    return true;
  };
}

describe('parseSetTargets', () => {
  test('a flat list for one route', () => {
    assert.deepEqual(parseSetTargets({ route_id: 'api', targets: ['10.0.0.1:3000', 'backend.internal:8080'] }), {
      to: { route_id: 'api' },
      set: { targets: ['10.0.0.1:3000', 'backend.internal:8080'], groups: null },
    });
  });

  test('groups for every route with a balancer, with all targets listed once', () => {
    const parsed = parseSetTargets({
      route_id: '*',
      groups: { eu: ['10.0.0.1:3000', '10.0.0.2:3000'], us: ['10.1.0.1:3000', '10.0.0.1:3000'] },
    });
    assert.deepEqual(parsed, {
      to: { route_id: '*' },
      set: {
        targets: ['10.0.0.1:3000', '10.0.0.2:3000', '10.1.0.1:3000'],
        groups: { eu: ['10.0.0.1:3000', '10.0.0.2:3000'], us: ['10.1.0.1:3000', '10.0.0.1:3000'] },
      },
    });
  });

  test('addressed by action', () => {
    assert.deepEqual(parseSetTargets({ action: 'api', targets: [] }).to, { action: 'api' });
  });

  test('route_id wins over action when both are given', () => {
    assert.deepEqual(parseSetTargets({ route_id: 'api', action: 'other', targets: [] }).to, { route_id: 'api' });
  });

  test('an empty route_id falls back to the action', () => {
    assert.deepEqual(parseSetTargets({ route_id: '', action: 'api', targets: [] }).to, { action: 'api' });
  });

  test('an empty list clears the targets', () => {
    assert.deepEqual(parseSetTargets({ route_id: 'api', targets: [] }).set, { targets: [], groups: null });
  });

  test('neither route_id nor action is BAD_PAYLOAD', () => {
    assert.throws(() => parseSetTargets({ targets: ['10.0.0.1:3000'] }), badPayload(/^set_targets: expected "route_id" or "action"$/));
  });

  test('missing params are BAD_PAYLOAD', () => {
    assert.throws(() => parseSetTargets(undefined), badPayload(/expected "route_id" or "action"/));
  });

  test('both targets and groups is BAD_PAYLOAD', () => {
    assert.throws(
      () => parseSetTargets({ route_id: 'api', targets: ['10.0.0.1:3000'], groups: { eu: ['10.0.0.2:3000'] } }),
      badPayload(/^set_targets: expected exactly one of "targets" or "groups"$/),
    );
  });

  test('neither targets nor groups is BAD_PAYLOAD', () => {
    assert.throws(() => parseSetTargets({ route_id: 'api' }), badPayload(/^set_targets: expected exactly one of "targets" or "groups"$/));
  });

  test('targets that are not an array are BAD_PAYLOAD', () => {
    assert.throws(() => parseSetTargets({ route_id: 'api', targets: '10.0.0.1:3000' }), badPayload(/^set_targets: targets: expected an array/));
  });

  test('groups that are not a map are BAD_PAYLOAD', () => {
    assert.throws(() => parseSetTargets({ route_id: 'api', groups: [['10.0.0.1:3000']] }), badPayload(/^set_targets: groups: expected a map/));
  });

  const badTargets: Array<[string, unknown]> = [
    ['a path', '10.0.0.1:3000/admin'],
    ['a space', '10.0.0.1 :3000'],
    ['a CRLF', '10.0.0.1:3000\r\n'],
    ['port 0', '10.0.0.1:0'],
    ['port 70000', '10.0.0.1:70000'],
    ['a URL', 'http://10.0.0.1:3000'],
    ['no port', '10.0.0.1'],
    ['a user', 'admin@10.0.0.1:3000'],
    ['a number', 3000],
  ];
  for (const [what, bad] of badTargets) {
    test(`a target with ${what} is rejected, naming its index`, () => {
      assert.throws(
        () => parseSetTargets({ route_id: 'api', targets: ['10.0.0.1:3000', bad] }),
        badPayload(/^set_targets: targets\[1\]: .* is not "host:port"$/),
      );
    });
  }

  test('a bad target in a group is rejected, naming the group and index', () => {
    assert.throws(
      () => parseSetTargets({ route_id: 'api', groups: { eu: ['10.0.0.1:3000'], us: ['10.1.0.1:3000', '10.1.0.2:3000/x'] } }),
      badPayload(/^set_targets: groups\["us"\]\[1\]: "10\.1\.0\.2:3000\/x" is not "host:port"$/),
    );
  });

  test('more than 10000 targets are rejected', () => {
    const targets = Array.from({ length: 10_001 }, (_, i) => `10.0.${i >> 8}.${i & 0xff}:80`);
    assert.throws(() => parseSetTargets({ route_id: 'api', targets }), badPayload(/more than 10000 targets/));
  });
});

describe('isTarget', () => {
  const good = ['10.0.0.1:3000', 'localhost:1', 'backend-1.internal.example.com:65535', '[::1]:8080', '[2001:db8::1]:443'];
  for (const t of good) {
    test(`${t} is a target`, () => assert.equal(isTarget(t), true));
  }
  const bad = ['', ':80', 'host:', 'host:65536', '-host:80', 'host-:80', 'a..b:80', '[::1:80', 'host:80\n', 'host:80:90'];
  for (const t of bad) {
    test(`${JSON.stringify(t)} is not a target`, () => assert.equal(isTarget(t), false));
  }
});

describe('parseSetSpeed', () => {
  test('a full speed limit for a route', () => {
    assert.deepEqual(parseSetSpeed({ route_id: 'api', download_mbps: 50, upload_mbps: 10.5, group_key: 'tenant-a' }), {
      to: { route_id: 'api' },
      set: { download_mbps: 50, upload_mbps: 10.5, group_key: 'tenant-a' },
    });
  });

  test('missing fields are zero and empty, addressed by action', () => {
    assert.deepEqual(parseSetSpeed({ action: 'downloads' }), {
      to: { action: 'downloads' },
      set: { download_mbps: 0, upload_mbps: 0, group_key: '' },
    });
  });

  test('no address is BAD_PAYLOAD', () => {
    assert.throws(() => parseSetSpeed({ download_mbps: 5 }), badPayload(/^set_speed: expected "route_id" or "action"$/));
  });

  const badSpeeds: Array<[string, Record<string, unknown>, RegExp]> = [
    ['a negative download', { download_mbps: -1 }, /^set_speed: download_mbps: expected a number >= 0$/],
    ['a string upload', { upload_mbps: '10' }, /^set_speed: upload_mbps: expected a number >= 0$/],
    ['an infinite download', { download_mbps: Infinity }, /^set_speed: download_mbps: /],
    ['a NaN upload', { upload_mbps: NaN }, /^set_speed: upload_mbps: /],
    ['a numeric group key', { group_key: 5 }, /^set_speed: group_key: expected a string$/],
  ];
  for (const [what, fields, message] of badSpeeds) {
    test(`${what} is BAD_PAYLOAD naming the field`, () => {
      assert.throws(() => parseSetSpeed({ route_id: 'api', ...fields }), badPayload(message));
    });
  }
});

describe('PushStore', () => {
  const flat = (...targets: string[]) => ({ targets, groups: null });
  const speed = { download_mbps: 5, upload_mbps: 1, group_key: '' };

  test('starts at version 0 with nothing pushed', () => {
    const store = new PushStore();
    assert.equal(store.version, 0);
    assert.equal(store.targets('api'), undefined);
    assert.equal(store.speed('api'), undefined);
  });

  test('setTargets replaces the targets of several routes and notifies once', () => {
    const store = new PushStore();
    const changes: Change[] = [];
    store.subscribe((c) => changes.push(c));
    store.setTargets(['a', 'b'], flat('10.0.0.1:80'));
    store.setTargets(['a', 'b', 'c'], flat('10.0.0.2:80', '10.0.0.3:80'));
    assert.deepEqual(['a', 'b', 'c'].map((r) => store.targets(r)), [
      flat('10.0.0.2:80', '10.0.0.3:80'),
      flat('10.0.0.2:80', '10.0.0.3:80'),
      flat('10.0.0.2:80', '10.0.0.3:80'),
    ]);
    assert.deepEqual(changes, [
      { kind: 'targets', routes: ['a', 'b'], version: 1 },
      { kind: 'targets', routes: ['a', 'b', 'c'], version: 2 },
    ]);
    assert.equal(store.version, 2);
  });

  test('listeners see every route already updated when they are notified', () => {
    const store = new PushStore();
    store.setTargets(['a', 'b'], flat('10.0.0.1:80'));
    let seen: unknown[] = [];
    store.subscribe(() => (seen = ['a', 'b'].map((r) => store.targets(r))));
    store.setTargets(['a', 'b'], flat('10.0.0.9:80'));
    assert.deepEqual(seen, [flat('10.0.0.9:80'), flat('10.0.0.9:80')]);
  });

  test('setSpeed stores a limit per route and shares the version with targets', () => {
    const store = new PushStore();
    const changes: Change[] = [];
    store.subscribe((c) => changes.push(c));
    store.setTargets(['a'], flat('10.0.0.1:80'));
    store.setSpeed(['a', 'b'], speed);
    assert.deepEqual(store.speed('b'), speed);
    assert.deepEqual(changes.at(-1), { kind: 'speed', routes: ['a', 'b'], version: 2 });
  });

  test('a push to no routes changes nothing and notifies no one', () => {
    const store = new PushStore();
    let calls = 0;
    store.subscribe(() => calls++);
    store.setTargets([], flat('10.0.0.1:80'));
    store.setSpeed([], speed);
    assert.equal(calls, 0);
    assert.equal(store.version, 0);
  });

  test('retain drops what was pushed for routes not kept, once per kind', () => {
    const store = new PushStore();
    store.setTargets(['a', 'b', 'c'], flat('10.0.0.1:80'));
    store.setSpeed(['b', 'c'], speed);
    const changes: Change[] = [];
    store.subscribe((c) => changes.push(c));
    store.retain(new Set(['a']));
    assert.deepEqual([store.targets('a'), store.targets('b'), store.targets('c')], [flat('10.0.0.1:80'), undefined, undefined]);
    assert.deepEqual([store.speed('b'), store.speed('c')], [undefined, undefined]);
    assert.deepEqual(changes, [
      { kind: 'targets', routes: ['b', 'c'], version: 3 },
      { kind: 'speed', routes: ['b', 'c'], version: 4 },
    ]);
  });

  test('retain keeping every route notifies no one', () => {
    const store = new PushStore();
    store.setTargets(['a'], flat('10.0.0.1:80'));
    let calls = 0;
    store.subscribe(() => calls++);
    store.retain(new Set(['a', 'b']));
    assert.equal(calls, 0);
    assert.equal(store.version, 1);
  });

  test('a throwing listener does not stop the others', () => {
    const store = new PushStore();
    const seen: number[] = [];
    store.subscribe(() => seen.push(1));
    store.subscribe(() => {
      throw new Error('listener failed');
    });
    store.subscribe(() => seen.push(3));
    store.setTargets(['a'], flat('10.0.0.1:80'));
    assert.deepEqual(seen, [1, 3]);
    assert.deepEqual(store.targets('a'), flat('10.0.0.1:80'));
  });

  test('an unsubscribed listener is not called again', () => {
    const store = new PushStore();
    let calls = 0;
    const unsubscribe = store.subscribe(() => calls++);
    store.setTargets(['a'], flat('10.0.0.1:80'));
    unsubscribe();
    store.setTargets(['a'], flat('10.0.0.2:80'));
    assert.equal(calls, 1);
  });
});
