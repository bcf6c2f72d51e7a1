// How gateway.workers sizes things: the worker count and each worker's share of a plugin's pool.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { poolShare, workerCount } from '../node-runner/gateway/workers.ts';

test('"auto" is one worker per available core; a number is itself', () => {
  assert.equal(workerCount('auto'), availableParallelism());
  assert.equal(workerCount(3), 3);
  assert.equal(workerCount(undefined), 1);
});

test('a plugin sized for N connections sees at most N across the workers (at least 1 each), unless pool_per_worker', () => {
  assert.equal(poolShare(16, 2, false), 8);
  assert.equal(poolShare(16, 3, false), 5);
  assert.equal(poolShare(2, 4, false), 1);
  assert.equal(poolShare(16, 4, true), 16);
});
