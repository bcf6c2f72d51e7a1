/**
 * The rules of node-runner/gateway/client-limits.ts with a driven clock: a body
 * that pauses longer than body_timeout is stalled, one that keeps moving
 * is not (however long it takes in total), a socket the gateway holds
 * back is never the client's fault, and connections per client address
 * are counted until they close. The same rules on a real gateway are in
 * test/gateway/slow-clients.test.ts.
 */

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, test } from 'node:test';
import { BodyWatch, ConnectionLimit, tickFor, type WatchedRequest } from '../node-runner/gateway/client-limits.ts';
import { FakeClock } from './helpers/fake-clock.ts';

/** A request as BodyWatch sees it, whose socket progress the test moves. */
class FakeRequest implements WatchedRequest {
  complete = false;
  destroyed = false;
  headers: WatchedRequest['headers'];
  socket = { bytesRead: 100, paused: false, isPaused(): boolean { return this.paused; } };
  constructor(headers: WatchedRequest['headers'] = { 'content-length': '1000' }) {
    this.headers = headers;
  }
}

function watchOne(timeoutMs = 1000, headers?: WatchedRequest['headers']) {
  const clock = new FakeClock();
  const stalled: FakeRequest[] = [];
  const watch = new BodyWatch<FakeRequest, null>({ timeoutMs, clock, onStall: (req) => stalled.push(req) });
  const req = new FakeRequest(headers);
  watch.watch(req, null);
  return { clock, watch, req, stalled };
}

describe('body watch', () => {
  test('a body that sends nothing for body_timeout is stalled, once', () => {
    const { clock, req, stalled, watch } = watchOne(1000);
    clock.advance(900);
    assert.deepEqual(stalled, []);
    clock.advance(200);
    assert.deepEqual(stalled, [req]);
    clock.advance(5000);
    assert.equal(stalled.length, 1);
    assert.equal(watch.size, 0);
  });

  test('a body that keeps moving is never stalled, however long it takes in total', () => {
    const { clock, req, stalled } = watchOne(1000);
    for (let i = 0; i < 50; i++) {
      clock.advance(500);
      req.socket.bytesRead += 1;
    }
    assert.deepEqual(stalled, []);
  });

  test('the pause counts from the last chunk: a body that stops after moving is stalled body_timeout later', () => {
    const { clock, req, stalled } = watchOne(1000);
    clock.advance(800);
    req.socket.bytesRead += 10;
    clock.advance(900);
    assert.deepEqual(stalled, [], 'less than body_timeout since the last chunk');
    clock.advance(300);
    assert.deepEqual(stalled, [req]);
  });

  test('time the gateway holds the socket back (backpressure, a request waiting for an upstream slot) is not a stall', () => {
    const { clock, req, stalled } = watchOne(1000);
    req.socket.paused = true;
    clock.advance(10_000);
    assert.deepEqual(stalled, []);
    req.socket.paused = false;
    clock.advance(500);
    assert.deepEqual(stalled, [], 'the pause counts from when the gateway read again');
    clock.advance(700);
    assert.deepEqual(stalled, [req]);
  });

  test('a complete body, or a request that went away, leaves the watch and the tick stops', () => {
    const { clock, req, stalled, watch } = watchOne(1000);
    req.complete = true;
    clock.advance(200);
    assert.equal(watch.size, 0);
    assert.deepEqual(clock.pendingDelays(), [], 'nothing watched, nothing ticks');
    const gone = new FakeRequest();
    watch.watch(gone, null);
    gone.destroyed = true;
    clock.advance(5000);
    assert.deepEqual(stalled, []);
  });

  test('a request without a body is not watched; a chunked one is', () => {
    assert.equal(watchOne(1000, {}).watch.size, 0);
    assert.equal(watchOne(1000, { 'content-length': '0' }).watch.size, 0);
    assert.equal(watchOne(1000, { 'transfer-encoding': 'chunked' }).watch.size, 1);
  });

  test('body_timeout 0 watches nothing', () => {
    assert.equal(watchOne(0).watch.size, 0);
  });

  test('all requests share one coarse tick: a tenth of the timeout, at most a second', () => {
    const { clock, watch } = watchOne(300);
    watch.watch(new FakeRequest(), null);
    watch.watch(new FakeRequest(), null);
    assert.deepEqual(clock.pendingDelays(), [30]);
    assert.equal(tickFor(30_000), 1000);
    assert.equal(tickFor(50), 10);
  });
});

/** A socket as ConnectionLimit sees it. */
function fakeSocket(ip: string | undefined): Socket & { close(): void } {
  const s = new EventEmitter() as unknown as Socket & { close(): void };
  Object.defineProperty(s, 'remoteAddress', { value: ip });
  s.close = () => void s.emit('close');
  return s;
}

describe('connections per client', () => {
  test('an address gets max connections; one more is refused while another address still gets in', () => {
    const limit = new ConnectionLimit(2);
    assert.equal(limit.admit(fakeSocket('10.0.0.1')), true);
    assert.equal(limit.admit(fakeSocket('10.0.0.1')), true);
    assert.equal(limit.admit(fakeSocket('10.0.0.1')), false);
    assert.equal(limit.admit(fakeSocket('10.0.0.2')), true);
    assert.equal(limit.openFrom('10.0.0.1'), 2, 'the refused one is not counted');
  });

  test('a closed connection frees its place, and an address with none open is forgotten', () => {
    const limit = new ConnectionLimit(1);
    const a = fakeSocket('10.0.0.1');
    assert.equal(limit.admit(a), true);
    a.close();
    assert.equal(limit.openFrom('10.0.0.1'), 0);
    assert.equal(limit.admit(fakeSocket('10.0.0.1')), true);
  });

  test('0 means no limit', () => {
    const limit = new ConnectionLimit(0);
    for (let i = 0; i < 1000; i++) assert.equal(limit.admit(fakeSocket('10.0.0.1')), true);
  });
});
