/**
 * @module test/helpers/config
 * The problems `parseConfig` reports for a config it must refuse: one
 * helper for the config tests (a config it accepts fails the test).
 */

import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../src/core/config/config.ts';

/**
 * The problem messages of the ConfigError `parseConfig(input)` throws;
 * fails the test when it accepts `input` or throws anything else.
 *
 * @example
 * assert.match(problemsOf({ routes: 1 }).join('\n'), /routes/);
 */
export function problemsOf(input: unknown): string[] {
  try {
    parseConfig(input);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'BAD_CONFIG');
    assert.equal(err.name, 'HookgateError');
    return err.problems;
  }
  assert.fail('parseConfig accepted an invalid config');
}
