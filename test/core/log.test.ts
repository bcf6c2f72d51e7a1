import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogThrottle } from '../../src/core/log.ts';

test('a repeated line is let through once per interval per key, counting what was held back', () => {
  let now = 0;
  const t = new LogThrottle(1000, () => now);
  assert.equal(t.admit('a'), 0, 'the first line goes through');
  assert.equal(t.admit('a'), -1);
  assert.equal(t.admit('a'), -1);
  assert.equal(t.admit('b'), 0, 'another key is independent');
  now = 1000;
  assert.equal(t.admit('a'), 2, 'the next line after the interval reports the two held back');
  assert.equal(t.admit('a'), -1);
});
