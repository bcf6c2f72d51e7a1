/**
 * The bounded wait for an upstream connection (node-runner/gateway/upstream-slots.ts),
 * with a driven clock: a request over an action's max_connections waits
 * its turn for at most queue_timeout, at most max_connections of them wait,
 * and each action and origin has slots of its own.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isHookgateError } from '../src/core/errors.ts';
import { originOf, UpstreamSlots, type Slot } from '../node-runner/gateway/upstream-slots.ts';
import { FakeClock } from './helpers/fake-clock.ts';

const ORIGIN = 'http://127.0.0.1:3000';
const limits = (maxConnections: number, queueTimeoutMs = 300, key = 'api') => ({ key, maxConnections, queueTimeoutMs });

/** Where a wait stands: 'waiting' until it settles. */
function track(p: Promise<Slot>): { state: 'waiting' | 'granted' | 'busy' | 'aborted'; slot?: Slot } {
  const t: { state: 'waiting' | 'granted' | 'busy' | 'aborted'; slot?: Slot } = { state: 'waiting' };
  p.then(
    (slot) => Object.assign(t, { state: 'granted', slot }),
    (err) => (t.state = isHookgateError(err, 'UPSTREAM_BUSY') ? 'busy' : 'aborted'),
  );
  return t;
}

const settle = () => new Promise<void>((r) => setImmediate(r));

describe('upstream slots', () => {
  test('requests up to max_connections get a slot at once; the next waits until one is released', async () => {
    const slots = new UpstreamSlots(new FakeClock());
    const a = slots.take(limits(2), ORIGIN);
    const b = slots.take(limits(2), ORIGIN);
    assert.ok(a && b);
    assert.equal(slots.take(limits(2), ORIGIN), null);
    const c = track(slots.wait(limits(2), ORIGIN));
    await settle();
    assert.equal(c.state, 'waiting');
    slots.release(a);
    await settle();
    assert.equal(c.state, 'granted');
    assert.equal(slots.inflight('api', ORIGIN), 2, 'the released slot went to the waiter');
  });

  test('a request still waiting when queue_timeout passes is refused with UPSTREAM_BUSY', async () => {
    const clock = new FakeClock();
    const slots = new UpstreamSlots(clock);
    slots.take(limits(1), ORIGIN);
    assert.equal(slots.take(limits(1), ORIGIN), null);
    const w = track(slots.wait(limits(1), ORIGIN));
    clock.advance(299);
    await settle();
    assert.equal(w.state, 'waiting');
    clock.advance(1);
    await settle();
    assert.equal(w.state, 'busy');
  });

  test('waiters are served first come, first served, and a newcomer does not overtake them', async () => {
    const slots = new UpstreamSlots(new FakeClock());
    const held = slots.take(limits(1), ORIGIN)!;
    slots.take(limits(1), ORIGIN);
    const first = track(slots.wait(limits(1), ORIGIN));
    await settle();
    slots.release(held);
    assert.equal(slots.take(limits(1), ORIGIN), null, 'the freed slot is the waiter\'s, not the newcomer\'s');
    await settle();
    assert.equal(first.state, 'granted');
  });

  test('at most max_connections requests wait; one more is refused at once', async () => {
    const slots = new UpstreamSlots(new FakeClock());
    slots.take(limits(2), ORIGIN);
    slots.take(limits(2), ORIGIN);
    slots.take(limits(2), ORIGIN);
    const waiting = [track(slots.wait(limits(2), ORIGIN)), track(slots.wait(limits(2), ORIGIN))];
    slots.take(limits(2), ORIGIN);
    const extra = track(slots.wait(limits(2), ORIGIN));
    await settle();
    assert.deepEqual(waiting.map((w) => w.state), ['waiting', 'waiting']);
    assert.equal(extra.state, 'busy');
  });

  test('queue_timeout 0 refuses at once instead of waiting', async () => {
    const slots = new UpstreamSlots(new FakeClock());
    slots.take(limits(1, 0), ORIGIN);
    slots.take(limits(1, 0), ORIGIN);
    const w = track(slots.wait(limits(1, 0), ORIGIN));
    await settle();
    assert.equal(w.state, 'busy');
  });

  test('a waiter whose request is given up leaves the queue and never holds a slot', async () => {
    const slots = new UpstreamSlots(new FakeClock());
    const held = slots.take(limits(1), ORIGIN)!;
    slots.take(limits(1), ORIGIN);
    const ctl = new AbortController();
    const w = track(slots.wait(limits(1), ORIGIN, ctl.signal));
    ctl.abort();
    await settle();
    assert.equal(w.state, 'aborted');
    slots.release(held);
    assert.equal(slots.inflight('api', ORIGIN), 0, 'the slot went back to the pool, not to the gone waiter');
  });

  test('each action and each origin has slots of its own', () => {
    const slots = new UpstreamSlots(new FakeClock());
    assert.ok(slots.take(limits(1, 300, 'api'), ORIGIN));
    assert.ok(slots.take(limits(1, 300, 'api'), 'http://127.0.0.1:3001'));
    assert.ok(slots.take(limits(1, 300, 'admin'), ORIGIN));
    assert.equal(slots.take(limits(1, 300, 'api'), ORIGIN), null);
  });

  test('a lowered limit (a reload) applies to new requests; slots in flight finish', () => {
    const slots = new UpstreamSlots(new FakeClock());
    const a = slots.take(limits(2), ORIGIN)!;
    slots.take(limits(2), ORIGIN);
    assert.equal(slots.take(limits(1), ORIGIN), null);
    slots.release(a);
    assert.equal(slots.take(limits(1), ORIGIN), null, 'one is still in flight, which is the new limit');
  });

  test('an origin with nothing in flight holds no memory', () => {
    const slots = new UpstreamSlots(new FakeClock());
    const a = slots.take(limits(1), ORIGIN)!;
    slots.release(a);
    assert.equal(slots.inflight('api', ORIGIN), 0);
    assert.ok(slots.take(limits(1), ORIGIN), 'and it starts afresh');
  });
});

describe('originOf', () => {
  for (const [url, origin] of [
    ['http://10.0.0.1:3000/v1?x=1', 'http://10.0.0.1:3000'],
    ['https://api.example.com?q', 'https://api.example.com'],
    ['http://[::1]:8080#x', 'http://[::1]:8080'],
    ['http://host', 'http://host'],
  ]) {
    test(`${url} → ${origin}`, () => assert.equal(originOf(url), origin));
  }
});
