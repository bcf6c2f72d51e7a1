/**
 * Config checks that close holes (README "Security model"):
 * - `expires_at` is RFC 3339 with a mandatory offset (`Z` or `±hh:mm`),
 *   parsed once into ms since the epoch; anything else is a problem naming
 *   the field, so no key "expires" at NaN (never);
 * - `{host}` in the host part of a proxy `upstream` or redirect `to` needs
 *   a route whose domain match is exact, or any client picks the upstream;
 * - `runner.plugins_allowed` entries are absolute.
 * Checked by `parseConfig` and by `hookgate validate`.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, parseConfig, parseTimestamp } from '../src/core/config/config.ts';
import { runCli, writeConfig } from './helpers/processes.ts';
import { scope, tempDir } from './helpers/scope.ts';

function problemsOf(input: Record<string, unknown>): string[] {
  try {
    parseConfig(input);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
  return [];
}

const key = (expires_at: string) => ({ runner: { keys: [{ id: 'k', secret_env: 'K', expires_at }] } });

describe('expires_at', () => {
  test('RFC 3339 with Z or ±hh:mm is parsed to ms since the epoch', () => {
    assert.equal(parseConfig(key('2027-01-01T00:00:00Z')).runner.keys[0].expires_at, Date.UTC(2027, 0, 1));
    assert.equal(parseConfig(key('2027-01-01T05:30:00.250+05:30')).runner.keys[0].expires_at, Date.UTC(2027, 0, 1, 0, 0, 0, 250));
    assert.equal(parseConfig(key('2026-12-31T23:00:00-01:00')).runner.keys[0].expires_at, Date.UTC(2027, 0, 1));
  });

  for (const bad of ['2020-01-01T00:00:00+05', '2020-01-01T00:00:00', '2020-01-01', '2021-02-29T00:00:00Z', '2020-01-01T24:00:00Z', '2020-01-01T00:00:00+05:60', 'tomorrow']) {
    test(`"${bad}" is a problem naming the field`, () => {
      const problems = problemsOf(key(bad));
      assert.equal(problems.length, 1, JSON.stringify(problems));
      assert.match(problems[0], /^runner\.keys\[0\]\.expires_at: expected an ISO 8601 timestamp with a "Z" or "±hh:mm" offset \(RFC 3339\)/);
      assert.ok(Number.isNaN(parseTimestamp(bad)));
    });
  }

  test('hookgate validate refuses the timestamp that used to validate and never expire', async (t) => {
    const s = scope(t);
    const file = writeConfig(tempDir(s), key('2020-01-01T00:00:00+05'));
    const res = await runCli(['validate', file]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /runner\.keys\[0\]\.expires_at: expected an ISO 8601 timestamp with a "Z" or "±hh:mm" offset/);
  });
});

describe('{host} in the host part of a template', () => {
  const proxy = (upstream: string, domain?: string, extra: Record<string, unknown> = {}) => ({
    routes: [{ ...(domain === undefined ? {} : { match: { domain } }), action: { type: 'proxy', upstream }, ...extra }],
  });
  const HOST_PROBLEM = /puts \{host\} in the URL's host part, so any client could pick where the request goes/;

  for (const [upstream, domain] of [
    ['http://{host}/', undefined],
    ['http://{host}:8080{path}', '*.example.com'],
    ['https://backend-{host}.internal/', 'api.example.com, **.example.org'],
    ['http:{host}/x', 'cdn-*.example.com'],
    ['//{host}/x', undefined],
    ['{host}/x', undefined],
    ['http://user@{host}?q=1', undefined],
  ] as const) {
    test(`"${upstream}" on a route matching ${domain ?? 'any domain'} is refused`, () => {
      const problems = problemsOf(proxy(upstream, domain));
      assert.equal(problems.length, 1, JSON.stringify(problems));
      assert.match(problems[0], /^routes\[0\]\.action\.upstream: /);
      assert.match(problems[0], HOST_PROBLEM);
    });
  }

  test('allowed on a route that lists exact domains, and anywhere after the host part', () => {
    assert.deepEqual(problemsOf(proxy('http://{host}:8080/', 'api.example.com, www.example.com')), []);
    assert.deepEqual(problemsOf(proxy('http://backend.internal/{host}{path}', '*.example.com')), []);
    assert.deepEqual(problemsOf(proxy('http://backend.internal{path}?for={host}')), []);
    assert.deepEqual(problemsOf(proxy('http://backend.internal{query}{host}')), []);
  });

  test('a named action, a redirect and a fallback are checked on each route that uses them', () => {
    const problems = problemsOf({
      routes: [
        { id: 'named', match: { domain: '*.example.com' }, action: 'up' },
        { id: 'exact', match: { domain: 'a.example.com' }, action: 'up' },
        { id: 'moved', action: { type: 'redirect', to: 'https://{host}/new' } },
        { id: 'fb', action: { type: 'proxy', upstream: 'http://backend.internal', fallback: 'away' } },
      ],
      actions: { up: { type: 'proxy', upstream: 'http://{host}' }, away: { type: 'redirect', to: 'https://{host}.example.net/' } },
    });
    assert.equal(problems.length, 3, JSON.stringify(problems));
    assert.match(problems[0], /^routes\[0\]\.action: action "up": "http:\/\/\{host\}" puts \{host\}/);
    assert.match(problems[1], /^routes\[2\]\.action\.to: "https:\/\/\{host\}\/new" puts \{host\}/);
    assert.match(problems[2], /^routes\[3\]\.action\.fallback: action "away": /);
  });

  test('hookgate validate refuses it', async (t) => {
    const s = scope(t);
    const file = writeConfig(tempDir(s), proxy('http://{host}/', '**'));
    const res = await runCli(['validate', file]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /routes\[0\]\.action\.upstream: "http:\/\/\{host\}\/" puts \{host\} in the URL's host part/);
  });
});

test('runner.plugins_allowed entries are absolute paths or globs', () => {
  assert.deepEqual(parseConfig({ runner: { plugins_allowed: ['/opt/hookgate/plugins/*', '/usr/bin/python3'] } }).runner.plugins_allowed, ['/opt/hookgate/plugins/*', '/usr/bin/python3']);
  assert.deepEqual(problemsOf({ runner: { plugins_allowed: ['plugins/*'] } }), ['runner.plugins_allowed[0]: expected an absolute path or glob, such as "/opt/hookgate/plugins/*"']);
});
